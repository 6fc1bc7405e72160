//! Where consensus is: the current view and its leader, the finalized tip, and how often views
//! were skipped, followed from simplex's reports and exposed without engine types.
//!
//! The view is derived from certificates only (notarization, nullification, finalization):
//! each needs 2f+1 signatures, so a faulty peer cannot push it forward with votes for far
//! views. A certificate for view v moves every honest replica to view v + 1, so the current
//! view is the highest certified view plus one. The leader of a view follows from the
//! round-robin elector simplex uses, built over the same participant set.

use super::Scheme;
use commonware_actor::Feedback;
use commonware_codec::Encode as _;
use commonware_consensus::{
    Reporter, Viewable as _,
    simplex::{
        elector::{Config as _, Elector as _, RoundRobin, RoundRobinElector},
        types::Activity,
    },
    types::{Epoch, Round, View},
};
use commonware_cryptography::{ed25519::PublicKey, sha256::Digest, sha256::Sha256};
use commonware_utils::ordered::Set;
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

/// Nullified views remembered to count each once (certificates may be reported again).
const NULLIFIED_VIEWS_MEMORY: usize = 4_096;

/// A snapshot of one replica's consensus progress (see [`ConsensusHandle::stats`]).
///
/// [`ConsensusHandle::stats`]: super::ConsensusHandle::stats
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsensusStats {
    /// The view this replica is in: one past the highest view it saw certified (1 at start).
    pub view: u64,
    /// The ed25519 public key of the current view's leader.
    pub leader: Option<[u8; 32]>,
    /// Height of the highest finalized block this replica knows of (it may not be executed
    /// yet).
    pub finalized_height: u64,
    /// Height of the last executed (applied and persisted) block.
    pub executed_height: u64,
    /// Finalization certificates seen.
    pub finalizations: u64,
    /// Views skipped: nullification certificates seen (leader timeouts, faulty leaders).
    pub nullifications: u64,
    /// Blocks executed as soon as their finalization certificate was reported, ahead of
    /// marshal's delivery (see `consensus::early`).
    pub executed_early: u64,
}

#[derive(Debug, Default)]
struct Inner {
    highest_certified: Option<u64>,
    finalized_height: u64,
    finalizations: u64,
    last_finalized_view: Option<u64>,
    nullifications: u64,
    nullified: BTreeSet<u64>,
    executed_early: u64,
}

/// Shared between the reporters (writers) and the handle (reader).
#[derive(Clone)]
pub(crate) struct Tracker {
    inner: Arc<Mutex<Inner>>,
    elector: RoundRobinElector<Scheme>,
    participants: Arc<Vec<[u8; 32]>>,
}

impl Tracker {
    pub(crate) fn new(participants: &Set<PublicKey>) -> Self {
        let elector = RoundRobin::<Sha256>::default().build(participants);
        let keys = participants
            .iter()
            .map(|k| {
                let mut key = [0u8; 32];
                key.copy_from_slice(&k.encode());
                key
            })
            .collect();
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            elector,
            participants: Arc::new(keys),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn certified(inner: &mut Inner, view: u64) {
        inner.highest_certified = Some(inner.highest_certified.map_or(view, |h| h.max(view)));
    }

    /// The leader simplex elects for `view` (epoch zero: the replica set never changes).
    pub(crate) fn leader(&self, view: u64) -> Option<[u8; 32]> {
        let round = Round::new(Epoch::zero(), View::new(view));
        let index = self.elector.elect(round, ());
        let index = usize::try_from(index.get()).ok()?;
        self.participants.get(index).copied()
    }

    /// Marshal reported a new finalized tip.
    pub(crate) fn finalized_tip(&self, height: u64) {
        let mut inner = self.lock();
        inner.finalized_height = inner.finalized_height.max(height);
    }

    /// The executor applied a block handed over on its finalization certificate.
    pub(crate) fn executed_early(&self) {
        self.lock().executed_early += 1;
    }

    pub(crate) fn snapshot(&self, executed_height: u64) -> ConsensusStats {
        let (view, inner) = {
            let inner = self.lock();
            (
                inner.highest_certified.map_or(1, |v| v + 1),
                (
                    inner.finalized_height,
                    inner.finalizations,
                    inner.nullifications,
                    inner.executed_early,
                ),
            )
        };
        ConsensusStats {
            view,
            leader: self.leader(view),
            finalized_height: inner.0.max(executed_height),
            executed_height,
            finalizations: inner.1,
            nullifications: inner.2,
            executed_early: inner.3,
        }
    }
}

impl Reporter for Tracker {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        let view = activity.view().get();
        let mut inner = self.lock();
        match activity {
            Activity::Notarization(_) | Activity::Certification(_) => {
                Self::certified(&mut inner, view)
            }
            Activity::Finalization(_) => {
                Self::certified(&mut inner, view);
                // Finalized views only grow; a certificate reported again is not counted.
                if inner.last_finalized_view.is_none_or(|last| view > last) {
                    inner.last_finalized_view = Some(view);
                    inner.finalizations += 1;
                }
            }
            Activity::Nullification(_) => {
                Self::certified(&mut inner, view);
                // Nullifications may arrive out of order and more than once: count each view
                // once. A view older than everything remembered was counted when it was new.
                let full = inner.nullified.len() >= NULLIFIED_VIEWS_MEMORY;
                let forgotten = full && inner.nullified.first().is_some_and(|o| view < *o);
                if !forgotten && inner.nullified.insert(view) {
                    inner.nullifications += 1;
                    if inner.nullified.len() > NULLIFIED_VIEWS_MEMORY {
                        inner.nullified.pop_first();
                    }
                }
            }
            _ => {}
        }
        Feedback::Ok
    }
}

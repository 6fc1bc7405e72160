//! Block building and verification, plugged into marshal's inline-verification wrapper.
//!
//! Proposal rule: the leader takes pending transactions from its mempool in arrival order,
//! skipping those already carried by an unfinalized ancestor, within the configured count and
//! byte limits.
//!
//! Verification rule (every replica, before its notarize vote): the block must name the view it
//! was proposed in, hold at most `MAX_BLOCK_TXS` transactions and `MAX_BLOCK_BYTES` bytes, and
//! every transaction must pass the stateless check (canonical encoding, size limits, chain id,
//! signature) with no txid repeated inside the block. A block that breaks any of these is not
//! voted for (the view then times out and moves to the next leader). State-dependent failures
//! (unknown or spent input, insufficient funds, replayed mint) are deliberately not checked
//! here: they depend on execution order, so such transactions are included and receive a
//! deterministic rejection receipt when the block executes. Parent and height linkage are
//! checked by marshal's wrapper before this runs.

use super::block::{Block, MAX_BLOCK_BYTES, MAX_BLOCK_TXS};
use crate::{
    mempool::Mempool,
    tx::{MAX_TX_BYTES, TxVerifier, Txid},
};
use commonware_consensus::{
    Application, Heightable as _, marshal::ancestry::Ancestry, simplex::types::Context,
};
use commonware_cryptography::{Digested, Digestible as _, ed25519::PublicKey, sha256::Digest};
use futures::StreamExt as _;
use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};
use tracing::{debug, warn};

/// How far a proposer walks back through unfinalized ancestors to avoid re-proposing their
/// transactions. Beyond this, a repeated transaction is still safe: execution rejects it.
const MAX_ANCESTRY_WALK: usize = 64;

/// Limits a leader applies when building a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalLimits {
    /// Maximum transactions per block (at most [`MAX_BLOCK_TXS`]).
    pub max_txs: usize,
    /// Maximum total transaction bytes per block.
    pub max_bytes: usize,
    /// How long a leader whose mempool is empty waits for a transaction before proposing an
    /// empty block (zero: at once). Must stay well below the leader timeout.
    pub idle_wait: std::time::Duration,
    /// How long a leader with only a few new transactions ([`BATCH_FEW`] or fewer) waits for
    /// more before proposing (zero: at once). Every view costs every replica a fixed amount of
    /// work (votes, journal writes, certification, a receipts message), so at moderate load a
    /// short window trades a little latency for much bigger blocks.
    pub batch_wait: std::time::Duration,
}

/// "A few" new transactions for [`ProposalLimits::batch_wait`].
pub const BATCH_FEW: usize = 64;

impl Default for ProposalLimits {
    fn default() -> Self {
        Self {
            max_txs: 500,
            max_bytes: 1024 * 1024,
            idle_wait: std::time::Duration::ZERO,
            batch_wait: std::time::Duration::ZERO,
        }
    }
}

/// The application marshal drives: builds blocks from the mempool and checks peers' blocks.
#[derive(Clone)]
pub(crate) struct App<V: TxVerifier> {
    pub(crate) mempool: Arc<Mutex<Mempool>>,
    pub(crate) verifier: V,
    /// Height of the last executed block; ancestors at or below it were already removed from
    /// the mempool.
    pub(crate) executed: Arc<AtomicU64>,
    pub(crate) limits: ProposalLimits,
    /// Signalled whenever a transaction enters the mempool, so an idle leader proposes as soon
    /// as there is something to propose instead of polling.
    pub(crate) arrivals: Arc<tokio::sync::Notify>,
    /// Test hook: propose blocks carrying an invalid transaction (see
    /// [`ConsensusConfig::byzantine_proposer`](super::ConsensusConfig::byzantine_proposer)).
    pub(crate) byzantine: bool,
}

impl<V: TxVerifier> App<V> {
    fn build(&self, parent: &Digested<Block>, view: u64, exclude: &HashSet<Txid>) -> Block {
        let max_txs = self.limits.max_txs.min(MAX_BLOCK_TXS);
        let max_bytes = self.limits.max_bytes.min(MAX_BLOCK_BYTES);
        let picked = {
            let pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
            pool.select(max_txs, max_bytes, exclude)
        };
        let mut txs: Vec<_> = picked.into_iter().map(|(_, tx)| tx).collect();
        if self.byzantine {
            txs.push(bytes::Bytes::from(vec![0xAB; 144]));
        }
        Block {
            parent: parent.digest(),
            height: parent.height().get() + 1,
            view,
            txs,
        }
    }

    /// The stateless block check described in the module docs.
    pub(crate) fn check_block(&self, block: &Block, view: u64) -> Result<(), String> {
        if block.view != view {
            return Err(format!(
                "block names view {} but was proposed in view {view}",
                block.view
            ));
        }
        if block.txs.len() > MAX_BLOCK_TXS {
            return Err(format!("{} transactions in block", block.txs.len()));
        }
        let bytes: usize = block.txs.iter().map(|tx| tx.len()).sum();
        if bytes > MAX_BLOCK_BYTES {
            return Err(format!("{bytes} transaction bytes in block"));
        }
        let mut seen = HashSet::with_capacity(block.txs.len());
        for tx in &block.txs {
            if tx.len() > MAX_TX_BYTES {
                return Err(format!("transaction of {} bytes", tx.len()));
            }
            // A byte-identical transaction pending in our mempool passed the same check on
            // admission; skip its signature verification. (Txids may exclude the signature,
            // hence the byte comparison.)
            let txid = self.verifier.txid(tx);
            let admitted = self
                .mempool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_exact(&txid, tx);
            if !admitted {
                let checked = self
                    .verifier
                    .check(tx)
                    .map_err(|e| format!("transaction rejected: {e}"))?;
                debug_assert_eq!(checked, txid);
            }
            if !seen.insert(txid) {
                return Err(format!("duplicate transaction {txid} in block"));
            }
        }
        Ok(())
    }
}

impl<V: TxVerifier> App<V> {
    /// Returns once the mempool holds a transaction that no unfinalized ancestor carries
    /// (`exclude`), or after the idle wait. (Transactions stay pending until their block is
    /// executed, so a non-empty mempool alone would yield an empty block at low load and delay
    /// the next transaction by a view.)
    ///
    /// A wake-up is registered before each emptiness check, so an arrival between the check and
    /// the wait is not missed (`notify_one` also stores a permit when nobody waits; a stale
    /// permit only causes one more check).
    async fn await_transactions<E: commonware_runtime::Clock>(
        &self,
        runtime: &E,
        exclude: &HashSet<Txid>,
    ) {
        if self.limits.idle_wait.is_zero() {
            return;
        }
        let deadline = runtime.current() + self.limits.idle_wait;
        loop {
            let arrival = self.arrivals.notified();
            futures::pin_mut!(arrival);
            arrival.as_mut().enable();
            if self
                .mempool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .has_candidate(exclude)
            {
                return;
            }
            let timeout = runtime.sleep_until(deadline);
            futures::pin_mut!(timeout);
            if let futures::future::Either::Right(_) =
                futures::future::select(arrival, timeout).await
            {
                return;
            }
        }
    }
}

impl<E, V> Application<E> for App<V>
where
    E: commonware_runtime::Clock + Send + 'static,
    V: TxVerifier,
{
    type SigningScheme = super::Scheme;
    type Context = Context<Digest, PublicKey>;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, context): (E, Self::Context),
        mut ancestry: impl Ancestry<Self::Block>,
        _input: (),
    ) -> Option<Digested<Self::Block>> {
        let parent = ancestry.next().await?;
        let executed = self.executed.load(Ordering::Acquire);
        let mut exclude = HashSet::new();
        let mut cursor = Some(parent.clone());
        let mut walked = 0;
        while let Some(block) = cursor {
            if block.height().get() <= executed || walked >= MAX_ANCESTRY_WALK {
                break;
            }
            exclude.extend(block.inner().txs.iter().map(|tx| self.verifier.txid(tx)));
            walked += 1;
            cursor = ancestry.next().await;
        }
        self.await_transactions(&runtime, &exclude).await;
        if !self.limits.batch_wait.is_zero()
            && self.mempool.lock().unwrap_or_else(|e| e.into_inner()).len()
                <= exclude.len() + BATCH_FEW
        {
            runtime.sleep(self.limits.batch_wait).await;
        }
        let block = self.build(&parent, context.round.view().get(), &exclude);
        debug!(
            height = block.height,
            txs = block.txs.len(),
            "proposing block"
        );
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (_, context): (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
    ) -> bool {
        // Marshal's wrapper yields the candidate first, then its parent.
        let Some(block) = ancestry.peek() else {
            warn!("verification stream yielded no candidate");
            return false;
        };
        match self.check_block(block.inner(), context.round.view().get()) {
            Ok(()) => true,
            Err(reason) => {
                warn!(height = block.inner().height, %reason, "refusing to vote for block");
                false
            }
        }
    }
}

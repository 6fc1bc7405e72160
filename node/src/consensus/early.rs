//! Early execution: a replica executes a finalized block as soon as simplex reports the
//! finalization certificate, when it already holds the block (it proposed or verified it).
//!
//! Marshal delivers a finalized block only after it has persisted the certificate and the block
//! (two synced writes, about 3 ms of an 8 ms view on the reference machine). The certificate
//! alone settles the block: 2f+1 replicas signed its digest. So the blocks this replica built
//! or checked before voting are kept here for a few views, and a finalization hands the
//! finalized block (and any of its unexecuted ancestors still held) to the executor at once.
//!
//! Nothing else changes: marshal still persists, delivers and backfills every finalized block,
//! and the executor applies each height once, in order (a block executed early arrives again
//! from marshal as a duplicate and is acknowledged at once). A block the replica never held,
//! or one the bounded hand-off queue has no room for, simply waits for marshal.

use super::{Scheme, block::Block};
use commonware_actor::Feedback;
use commonware_consensus::{Reporter, Viewable as _, simplex::types::Activity};
use commonware_cryptography::{Digested, Digestible as _, sha256::Digest};
use futures::channel::mpsc;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};
use tracing::debug;

/// Blocks held at most. Only blocks of unfinalized views stay (a finalization drops the rest),
/// so this is reached only when views go unfinalized for long.
const MAX_HELD_BLOCKS: usize = 64;
/// Transaction bytes held at most (blocks may carry up to 4 MiB each).
const MAX_HELD_BYTES: usize = 32 * 1024 * 1024;
/// Blocks handed to the executor but not yet taken. When it is full (the executor is stalled,
/// e.g. on an unavailable store), further blocks wait for marshal's delivery.
pub(crate) const QUEUE: usize = 256;

/// Blocks of recent views this replica proposed or voted for, by digest.
#[derive(Debug, Default)]
pub(crate) struct Held {
    blocks: VecDeque<Digested<Block>>,
    bytes: usize,
}

fn size(block: &Block) -> usize {
    block.txs.iter().map(|tx| tx.len()).sum()
}

impl Held {
    /// Keeps a block this replica proposed or found valid; the oldest go first past the limits.
    pub(crate) fn insert(&mut self, block: Digested<Block>) {
        let digest = block.digest();
        if self.blocks.iter().any(|b| b.digest() == digest) {
            return;
        }
        self.bytes += size(block.inner());
        self.blocks.push_back(block);
        while self.blocks.len() > MAX_HELD_BLOCKS || self.bytes > MAX_HELD_BYTES {
            let Some(old) = self.blocks.pop_front() else {
                break;
            };
            self.bytes -= size(old.inner());
        }
    }

    /// The block `digest` was finalized in `view`: returns it and the ancestors held, lowest
    /// height first (finalizing a block finalizes its ancestors, whose own certificates may
    /// never form), and forgets every block of `view` or earlier.
    pub(crate) fn finalized(&mut self, view: u64, digest: &Digest) -> Vec<Digested<Block>> {
        let mut chain = Vec::new();
        let mut next = *digest;
        while let Some(block) = self.blocks.iter().find(|b| b.digest() == next) {
            next = block.inner().parent;
            chain.push(block.clone());
        }
        chain.reverse();
        self.blocks.retain(|b| b.inner().view > view);
        self.bytes = self.blocks.iter().map(|b| size(b.inner())).sum();
        chain
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.blocks.len()
    }
}

/// Simplex reporter that hands held blocks to the executor when their view is finalized.
#[derive(Clone)]
pub(crate) struct EarlyFinality {
    pub(crate) held: Arc<Mutex<Held>>,
    pub(crate) tx: mpsc::Sender<Digested<Block>>,
}

impl EarlyFinality {
    /// Hands the block finalized in `view` (and its held ancestors) to the executor. Always
    /// [`Feedback::Ok`]: this path is a shortcut, and nothing about it may hold up or stop
    /// simplex (marshal, reported to alongside, delivers every block regardless).
    fn hand_off(&mut self, view: u64, digest: &Digest) -> Feedback {
        let blocks = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finalized(view, digest);
        for block in blocks {
            if let Err(e) = self.tx.try_send(block) {
                if e.is_full() {
                    debug!(
                        view,
                        "early execution queue full; the block waits for marshal"
                    );
                }
                break;
            }
        }
        Feedback::Ok
    }
}

impl Reporter for EarlyFinality {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match activity {
            Activity::Finalization(finalization) => {
                self.hand_off(finalization.view().get(), &finalization.proposal.payload)
            }
            _ => Feedback::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn block(parent: Digest, height: u64, view: u64, tx_bytes: usize) -> Digested<Block> {
        let block = Block {
            parent,
            height,
            view,
            txs: vec![Bytes::from(vec![7u8; tx_bytes])],
        };
        let digest = block.digest();
        Digested::precomputed(block, digest)
    }

    #[test]
    fn a_finalization_yields_the_block_and_its_held_ancestors_in_height_order() {
        let genesis = Block::genesis("early").digest();
        let mut held = Held::default();
        let b1 = block(genesis, 1, 1, 10);
        let b2 = block(b1.digest(), 2, 2, 10);
        // A competing block of view 3 that was never finalized, and one of a later view.
        let other = block(b2.digest(), 3, 3, 10);
        let b3 = block(b2.digest(), 3, 4, 10);
        let later = block(b3.digest(), 4, 5, 10);
        for b in [&b1, &b2, &other, &b3, &later] {
            held.insert(b.clone());
        }
        held.insert(b2.clone());
        assert_eq!(held.len(), 5, "a block held twice is kept once");

        let chain = held.finalized(4, &b3.digest());
        let heights: Vec<_> = chain.iter().map(|b| b.inner().height).collect();
        assert_eq!(heights, vec![1, 2, 3]);
        assert_eq!(
            chain[2].digest(),
            b3.digest(),
            "the finalized block, not its rival"
        );
        // Views up to the finalized one are forgotten; the later view stays.
        assert_eq!(held.len(), 1);
        assert_eq!(held.finalized(5, &later.digest()).len(), 1);
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn an_unknown_block_yields_nothing_and_still_prunes() {
        let genesis = Block::genesis("early").digest();
        let mut held = Held::default();
        held.insert(block(genesis, 1, 1, 10));
        held.insert(block(genesis, 1, 2, 10));
        assert!(held.finalized(1, &genesis).is_empty());
        assert_eq!(held.len(), 1, "view 2 is kept");
    }

    #[test]
    fn the_oldest_blocks_go_first_past_the_limits() {
        let genesis = Block::genesis("early").digest();
        let mut held = Held::default();
        let first = block(genesis, 1, 1, 10);
        held.insert(first.clone());
        for view in 2..=(MAX_HELD_BLOCKS as u64 + 1) {
            held.insert(block(genesis, 1, view, 10));
        }
        assert_eq!(held.len(), MAX_HELD_BLOCKS);
        assert!(held.finalized(1, &first.digest()).is_empty(), "evicted");

        // Bytes: three blocks of 12 MiB do not fit in 32 MiB.
        let mut held = Held::default();
        for view in 1..=3 {
            held.insert(block(genesis, 1, view, 12 * 1024 * 1024));
        }
        assert_eq!(held.len(), 2);
        assert!(held.bytes <= MAX_HELD_BYTES);
    }

    #[test]
    fn blocks_go_to_the_queue_until_it_is_full_and_a_closed_queue_is_harmless() {
        let genesis = Block::genesis("early").digest();
        // A zero-capacity channel has one slot for its one sender.
        let (tx, mut rx) = mpsc::channel(0);
        let mut early = EarlyFinality {
            held: Arc::default(),
            tx,
        };
        let b1 = block(genesis, 1, 1, 10);
        let b2 = block(b1.digest(), 2, 2, 10);
        let b3 = block(b2.digest(), 3, 3, 10);
        for b in [&b1, &b2, &b3] {
            early.held.lock().expect("lock").insert(b.clone());
        }
        assert_eq!(early.hand_off(2, &b2.digest()), Feedback::Ok);
        // b1 took the slot; b2 found the queue full and waits for marshal.
        assert_eq!(rx.try_recv().expect("queued").digest(), b1.digest());
        assert!(rx.try_recv().is_err(), "nothing else was queued");
        drop(rx);
        assert_eq!(early.hand_off(3, &b3.digest()), Feedback::Ok);
        assert_eq!(early.held.lock().expect("lock").len(), 0, "still pruned");
    }
}

//! Applies finalized blocks to the state machine in height order, exactly once.
//!
//! Finalized blocks may arrive twice (marshal redelivers after a restart) or out of order (a
//! delivery source other than marshal); the executor keeps the last applied height, skips what
//! is at or below it, buffers a bounded number of blocks above a gap and applies them once the
//! gap fills. Every executed block is recorded in a [`BlockStore`] and published to subscribers
//! (the REST layer signs receipts from these).

use crate::{
    mempool::Mempool,
    tx::{Receipt, StateMachine},
};
use bytes::Bytes;
use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::broadcast;
use tracing::{debug, warn};

/// Blocks buffered above a gap before further ones are dropped (they will be redelivered).
const MAX_BUFFERED_BLOCKS: usize = 1_024;

/// A finalized block as handed to the executor: consensus types do not leak past this point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizedBlock {
    /// Height (genesis is zero and is never executed).
    pub height: u64,
    /// The block's digest.
    pub digest: [u8; 32],
    /// Transactions in execution order.
    pub txs: Vec<Bytes>,
}

/// The result of executing one finalized block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutedBlock {
    /// Height of the block.
    pub height: u64,
    /// Digest of the block.
    pub digest: [u8; 32],
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// State commitment after the block.
    pub commitment: [u8; 32],
}

/// Errors of a [`BlockStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed.
    #[error("block store backend failed: {0}")]
    Backend(String),
    /// A record was written out of height order.
    #[error("out of order write: height {got}, expected {expected}")]
    OutOfOrder {
        /// Height offered.
        got: u64,
        /// Height expected.
        expected: u64,
    },
}

/// Where executed blocks are recorded; the Redis store implements this too.
pub trait BlockStore: Send + 'static {
    /// Height of the last recorded block (zero when none).
    fn applied_height(&self) -> u64;
    /// Records the next executed block; must be durable when this returns.
    fn put(&mut self, block: &ExecutedBlock) -> Result<(), StoreError>;
    /// The executed block at `height`, if still retained.
    fn get(&self, height: u64) -> Option<ExecutedBlock>;
}

/// An in-memory [`BlockStore`] keeping the most recent `retain` blocks (ephemeral mode, tests).
#[derive(Debug)]
pub struct MemoryStore {
    applied: u64,
    retain: usize,
    blocks: VecDeque<ExecutedBlock>,
}

impl MemoryStore {
    /// A store retaining the last `retain` executed blocks.
    pub fn new(retain: usize) -> Self {
        Self {
            applied: 0,
            retain,
            blocks: VecDeque::new(),
        }
    }
}

impl BlockStore for MemoryStore {
    fn applied_height(&self) -> u64 {
        self.applied
    }

    fn put(&mut self, block: &ExecutedBlock) -> Result<(), StoreError> {
        if block.height != self.applied + 1 {
            return Err(StoreError::OutOfOrder {
                got: block.height,
                expected: self.applied + 1,
            });
        }
        self.applied = block.height;
        self.blocks.push_back(block.clone());
        while self.blocks.len() > self.retain {
            self.blocks.pop_front();
        }
        Ok(())
    }

    fn get(&self, height: u64) -> Option<ExecutedBlock> {
        let first = self.blocks.front()?.height;
        let index = usize::try_from(height.checked_sub(first)?).ok()?;
        self.blocks.get(index).cloned()
    }
}

/// What [`Executor::offer`] did with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Executed (possibly together with buffered successors).
    Applied,
    /// At or below the applied height: ignored.
    Duplicate,
    /// Above a gap: buffered until the gap fills.
    Buffered,
    /// Above a gap, but the buffer is full: dropped (it will be delivered again).
    Dropped,
}

/// Applies finalized blocks to a [`StateMachine`] exactly once, in height order.
pub struct Executor<M: StateMachine, S: BlockStore> {
    machine: M,
    store: S,
    mempool: Arc<Mutex<Mempool>>,
    executed: Arc<AtomicU64>,
    pending: BTreeMap<u64, FinalizedBlock>,
    events: broadcast::Sender<Arc<ExecutedBlock>>,
}

impl<M: StateMachine, S: BlockStore> Executor<M, S> {
    /// An executor over `machine` and `store`, whose state must correspond to
    /// `store.applied_height()`.
    pub fn new(
        machine: M,
        store: S,
        mempool: Arc<Mutex<Mempool>>,
        executed: Arc<AtomicU64>,
        events: broadcast::Sender<Arc<ExecutedBlock>>,
    ) -> Self {
        executed.store(store.applied_height(), Ordering::Release);
        Self {
            machine,
            store,
            mempool,
            executed,
            pending: BTreeMap::new(),
            events,
        }
    }

    /// Height of the last applied block.
    pub fn applied_height(&self) -> u64 {
        self.store.applied_height()
    }

    /// The state machine (read-only).
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Offers a finalized block; applies it and any buffered successors when it is next.
    pub fn offer(&mut self, block: FinalizedBlock) -> Result<Offered, StoreError> {
        let applied = self.applied_height();
        if block.height <= applied {
            return Ok(Offered::Duplicate);
        }
        if block.height > applied + 1 {
            if self.pending.len() >= MAX_BUFFERED_BLOCKS
                && !self.pending.contains_key(&block.height)
            {
                return Ok(Offered::Dropped);
            }
            self.pending.insert(block.height, block);
            return Ok(Offered::Buffered);
        }
        self.apply(block)?;
        while let Some(next) = self.pending.remove(&(self.applied_height() + 1)) {
            self.apply(next)?;
        }
        // Anything left at or below the applied height is a stale duplicate.
        let applied = self.applied_height();
        self.pending.retain(|height, _| *height > applied);
        Ok(Offered::Applied)
    }

    fn apply(&mut self, block: FinalizedBlock) -> Result<(), StoreError> {
        assert_eq!(
            block.height,
            self.applied_height() + 1,
            "executor must apply blocks in height order"
        );
        let receipts = self.machine.apply_block(block.height, &block.txs);
        assert_eq!(
            receipts.len(),
            block.txs.len(),
            "one receipt per transaction"
        );
        let executed = ExecutedBlock {
            height: block.height,
            digest: block.digest,
            receipts,
            commitment: self.machine.commitment(),
        };
        self.store.put(&executed)?;
        self.executed.store(executed.height, Ordering::Release);
        {
            let mut pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
            for receipt in &executed.receipts {
                pool.finalize(&receipt.txid);
            }
            let machine = &self.machine;
            let evicted = pool.evict(|tx| machine.is_stale(tx));
            if evicted > 0 {
                debug!(evicted, "evicted stale transactions");
            }
        }
        debug!(
            height = executed.height,
            txs = executed.receipts.len(),
            commitment = hex::encode(executed.commitment),
            "executed block"
        );
        if self.events.send(Arc::new(executed)).is_err() {
            // No subscriber: nothing to notify.
        }
        Ok(())
    }
}

/// Logs a store failure; the executor cannot continue without durable records.
pub(crate) fn fatal_store_error(error: &StoreError) -> ! {
    warn!(%error, "block store failed");
    panic!("block store failed: {error}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::{ledger::LedgerMachine, mempool::MempoolLimits};
    use coffer_ledger::{
        Amount, ChainId, Genesis, Keypair, Limits, Mint, OutPoint, ReplicaInfo, ReplicaKey,
        Transaction, Transfer, TxOut,
    };

    fn block(height: u64, txs: Vec<Bytes>) -> FinalizedBlock {
        FinalizedBlock {
            height,
            digest: [height as u8; 32],
            txs,
        }
    }

    #[test]
    fn applies_in_order_exactly_once() {
        let issuer = Keypair::from_secret_bytes([1; 32]).unwrap();
        let alice = Keypair::from_secret_bytes([2; 32]).unwrap();
        let bob = Keypair::from_secret_bytes([3; 32]).unwrap();
        let chain = ChainId::new("exec").unwrap();
        let genesis = Genesis {
            chain_id: chain.clone(),
            issuers: vec![issuer.public_key()],
            replicas: vec![ReplicaInfo {
                name: "r0".into(),
                public_key: ReplicaKey([1; 32]),
            }],
            limits: Limits::default(),
        };
        let mint = issuer.sign_tx(Transaction::Mint(Mint {
            chain_id: chain.clone(),
            issuer: issuer.public_key(),
            nonce: 0,
            outputs: vec![TxOut::to_address(Amount(10), alice.address())],
        }));
        let pay = |to: &Keypair| {
            Bytes::from(
                alice
                    .sign_tx(Transaction::Transfer(Transfer {
                        chain_id: chain.clone(),
                        signer: alice.public_key(),
                        inputs: vec![OutPoint {
                            txid: mint.txid(),
                            vout: 0,
                        }],
                        outputs: vec![TxOut::to_address(Amount(10), to.address())],
                    }))
                    .encode(),
            )
        };
        let (events, mut rx) = broadcast::channel(16);
        let mut exec = Executor::new(
            LedgerMachine::new(genesis).unwrap(),
            MemoryStore::new(10),
            Arc::new(Mutex::new(Mempool::new(MempoolLimits::default()))),
            Arc::new(AtomicU64::new(0)),
            events,
        );
        let b1 = block(1, vec![Bytes::from(mint.encode())]);
        let b2 = block(2, vec![pay(&bob)]);
        let b3 = block(3, vec![pay(&issuer)]);
        assert_eq!(exec.offer(b2.clone()).unwrap(), Offered::Buffered);
        assert_eq!(exec.offer(b3.clone()).unwrap(), Offered::Buffered);
        assert_eq!(exec.offer(b1.clone()).unwrap(), Offered::Applied);
        assert_eq!(exec.applied_height(), 3);
        assert_eq!(exec.offer(b1).unwrap(), Offered::Duplicate);
        assert_eq!(exec.offer(b2).unwrap(), Offered::Duplicate);
        assert_eq!(exec.machine().state().balance(&bob.address()), Amount(10));
        assert_eq!(exec.machine().state().height(), 3);
        let heights: Vec<u64> = (0..3).map(|_| rx.try_recv().unwrap().height).collect();
        assert_eq!(heights, vec![1, 2, 3]);
        let third = exec.store.get(3).unwrap();
        assert_eq!(third.receipts[0].rejection, Some("input_already_spent"));
        assert!(rx.try_recv().is_err());
    }
}

//! Applies finalized blocks to the state machine in height order, exactly once.
//!
//! Finalized blocks may arrive twice (marshal redelivers after a restart) or out of order (a
//! delivery source other than marshal); the executor keeps the last applied height, skips what
//! is at or below it, buffers a bounded number of blocks above a gap and applies them once the
//! gap fills. Every applied block is persisted by the state machine
//! ([`StateMachine::persist`]) before it counts as executed: only then is it published to
//! subscribers (which sign receipts and answer clients) and the executed height advanced.
//!
//! A persist that fails (the store already retried within its own budget, e.g. Redis down for
//! longer than `[storage.retry] max_elapsed_ms`) is retried here with a capped backoff for as
//! long as it takes: nothing about the block is published, acknowledged to consensus or
//! signed meanwhile, the replica reports an unhealthy store (`/v1/health`,
//! `coffer_store_persist_failures_total`), and execution resumes where it stopped once the
//! store answers again.

use crate::{
    mempool::Mempool,
    tx::{PersistError, Receipt, StateMachine},
};
use bytes::Bytes;
use std::time::{Duration, Instant};
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

/// Blocks buffered above a gap before further ones are dropped (they will be redelivered).
const MAX_BUFFERED_BLOCKS: usize = 1_024;
/// First delay before retrying a failed persist; it doubles up to [`PERSIST_RETRY_CAP`].
const PERSIST_RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest delay between two persist attempts: short enough to resume soon after the store
/// returns, long enough not to hammer a store that is down.
const PERSIST_RETRY_CAP: Duration = Duration::from_secs(2);

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
    /// The state machine's full commitment record after the block (for coffer-ledger,
    /// `Commitment::to_bytes`: height, state hash, UTXO-set hash, supply).
    pub commitment_encoding: Vec<u8>,
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
pub struct Executor<M: StateMachine> {
    machine: M,
    mempool: Arc<Mutex<Mempool>>,
    executed: Arc<AtomicU64>,
    pending: BTreeMap<u64, FinalizedBlock>,
    events: broadcast::Sender<Arc<ExecutedBlock>>,
}

impl<M: StateMachine> Executor<M> {
    /// An executor over `machine`, resuming after its applied height.
    pub fn new(
        machine: M,
        mempool: Arc<Mutex<Mempool>>,
        executed: Arc<AtomicU64>,
        events: broadcast::Sender<Arc<ExecutedBlock>>,
    ) -> Self {
        executed.store(machine.applied_height(), Ordering::Release);
        Self {
            machine,
            mempool,
            executed,
            pending: BTreeMap::new(),
            events,
        }
    }

    /// Height of the last applied block.
    pub fn applied_height(&self) -> u64 {
        self.machine.applied_height()
    }

    /// The state machine (read-only).
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Offers a finalized block; applies it and any buffered successors when it is next.
    ///
    /// Persist failures are retried inside until the block is durable, so this never returns
    /// `Err`; the `Result` is kept for callers written against the fail-stop executor.
    pub async fn offer(&mut self, block: FinalizedBlock) -> Result<Offered, PersistError> {
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
        self.apply(block).await?;
        while let Some(next) = self.pending.remove(&(self.applied_height() + 1)) {
            self.apply(next).await?;
        }
        // Anything left at or below the applied height is a stale duplicate.
        let applied = self.applied_height();
        self.pending.retain(|height, _| *height > applied);
        Ok(Offered::Applied)
    }

    async fn apply(&mut self, block: FinalizedBlock) -> Result<(), PersistError> {
        assert_eq!(
            block.height,
            self.applied_height() + 1,
            "executor must apply blocks in height order"
        );
        self.machine.ready().await;
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
            commitment_encoding: self.machine.commitment_encoding(),
        };
        self.persist(executed.height).await;
        assert_eq!(
            self.machine.applied_height(),
            executed.height,
            "persist advances the applied height"
        );
        {
            let mut pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
            // Pending transactions this block made inapplicable (a conflicting spend) are not
            // dropped: they are proposed and get a rejection receipt, so that every admitted
            // transaction ends with an outcome its client can prove.
            for receipt in &executed.receipts {
                pool.finalize(&receipt.txid);
            }
        }
        // Published only after the pool forgot this block's transactions: a proposer excludes
        // the transactions of ancestors above the executed height, so a height published first
        // would let it propose a just-executed transaction again (rejected as a replay, a wasted
        // slot).
        self.executed.store(executed.height, Ordering::Release);
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

impl<M: StateMachine> Executor<M> {
    /// Persists the block just applied, retrying with a capped backoff until it is durable.
    async fn persist(&mut self, height: u64) {
        let started = Instant::now();
        let mut delay = PERSIST_RETRY_FIRST;
        let mut failures: u64 = 0;
        loop {
            match self.machine.persist().await {
                Ok(()) => {
                    if failures > 0 {
                        info!(
                            height,
                            failures,
                            down_ms =
                                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                            "store answers again; block persisted, execution resumes"
                        );
                    }
                    return;
                }
                Err(error) => {
                    failures += 1;
                    // First failure, then ever more rarely: an outage of hours logs tens of
                    // lines, not thousands.
                    if failures.is_power_of_two() {
                        warn!(
                            height,
                            failures,
                            %error,
                            "cannot persist executed block; retrying (nothing about it is published until it is persisted)"
                        );
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(PERSIST_RETRY_CAP);
                }
            }
        }
    }
}

/// Stops the replica on a persistence failure. The executor no longer returns one (it retries
/// until the store answers); kept for callers of [`Executor::offer`]'s `Result`.
pub(crate) fn fatal_store_error(error: &PersistError) -> ! {
    warn!(%error, "cannot persist executed block");
    panic!("cannot persist executed block: {error}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::{ledger::LedgerMachine, mempool::MempoolLimits};
    use coffer_ledger::{Amount, ChainId, Keypair, Mint, OutPoint, Transaction, Transfer, TxOut};

    /// A one-replica chain named `chain` and its issuer's first mint: 10 to `to`, or to the
    /// issuer itself.
    fn minted(
        chain: &str,
        to: Option<coffer_ledger::Address>,
    ) -> (
        Keypair,
        ChainId,
        coffer_ledger::Genesis,
        coffer_ledger::SignedTransaction,
    ) {
        let issuer = Keypair::from_secret_bytes([1; 32]).unwrap();
        let chain = ChainId::new(chain).unwrap();
        let genesis = crate::ledger::tests::single_replica_genesis(&chain, &issuer);
        let mint = issuer.sign_tx(Transaction::Mint(Mint {
            chain_id: chain.clone(),
            issuer: issuer.public_key(),
            nonce: 0,
            outputs: vec![TxOut::to_address(
                Amount(10),
                to.unwrap_or_else(|| issuer.address()),
            )],
        }));
        (issuer, chain, genesis, mint)
    }

    fn block(height: u64, txs: Vec<Bytes>) -> FinalizedBlock {
        FinalizedBlock {
            height,
            digest: [height as u8; 32],
            txs,
        }
    }

    #[tokio::test]
    async fn applies_in_order_exactly_once() {
        let alice = Keypair::from_secret_bytes([2; 32]).unwrap();
        let bob = Keypair::from_secret_bytes([3; 32]).unwrap();
        let (issuer, chain, genesis, mint) = minted("exec", Some(alice.address()));
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
            Arc::new(Mutex::new(Mempool::new(MempoolLimits::default()))),
            Arc::new(AtomicU64::new(0)),
            events,
        );
        let b1 = block(1, vec![Bytes::from(mint.encode())]);
        let b2 = block(2, vec![pay(&bob)]);
        let b3 = block(3, vec![pay(&issuer)]);
        assert_eq!(exec.offer(b2.clone()).await.unwrap(), Offered::Buffered);
        assert_eq!(exec.offer(b3.clone()).await.unwrap(), Offered::Buffered);
        assert_eq!(exec.offer(b1.clone()).await.unwrap(), Offered::Applied);
        assert_eq!(exec.applied_height(), 3);
        assert_eq!(exec.offer(b1).await.unwrap(), Offered::Duplicate);
        assert_eq!(exec.offer(b2).await.unwrap(), Offered::Duplicate);
        assert_eq!(exec.machine().state().balance(&bob.address()), Amount(10));
        assert_eq!(exec.machine().state().height(), 3);
        let heights: Vec<u64> = (0..3).map(|_| rx.try_recv().unwrap().height).collect();
        assert_eq!(heights, vec![1, 2, 3]);
        assert!(rx.try_recv().is_err());
        // Every block was persisted before it was published; the store holds block 3 and the
        // rejected transfer's record.
        use crate::storage::Store as _;
        let store = exec.machine().store();
        assert_eq!(store.applied_height().await.unwrap(), Some(3));
        let rejected = crate::storage::ledger::receipt(
            &*store,
            &coffer_ledger::SignedTransaction::decode(&b3.txs[0])
                .unwrap()
                .txid(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(rejected.height, 3);
        assert!(rejected.outcome.into_result().is_err());
    }

    #[test]
    fn the_executed_height_is_published_after_the_pool_forgot_the_block() {
        let (_, _, genesis, mint) = minted("exec", None);
        let bytes = Bytes::from(mint.encode());
        let txid = crate::tx::Txid(mint.txid().0);
        let pool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
        pool.lock().unwrap().insert(txid, bytes.clone());
        let executed = Arc::new(AtomicU64::new(0));
        let (events, _rx) = broadcast::channel(16);
        let mut exec = Executor::new(
            LedgerMachine::new(genesis).unwrap(),
            pool.clone(),
            executed.clone(),
            events,
        );
        // A proposer that sees height 1 executed stops excluding block 1's transactions: by
        // then the pool must not offer them. Hold the pool while the block executes.
        let held = pool.lock().unwrap();
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(exec.offer(block(1, vec![bytes]))).unwrap()
        });
        // Applied and persisted by now (or soon); either way not yet published.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(executed.load(Ordering::Acquire), 0);
        assert!(held.contains(&txid));
        drop(held);
        assert_eq!(worker.join().unwrap(), Offered::Applied);
        assert_eq!(executed.load(Ordering::Acquire), 1);
        assert!(!pool.lock().unwrap().contains(&txid));
    }

    /// Fails the first `failures` persists, then delegates.
    struct Flaky {
        inner: LedgerMachine,
        failures: Arc<AtomicU64>,
    }

    impl StateMachine for Flaky {
        fn applied_height(&self) -> u64 {
            self.inner.applied_height()
        }
        fn apply_block(&mut self, height: u64, txs: &[Bytes]) -> Vec<Receipt> {
            self.inner.apply_block(height, txs)
        }
        async fn persist(&mut self) -> Result<(), PersistError> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(PersistError::Backend {
                    height: self.inner.state().height(),
                    reason: "store down".into(),
                });
            }
            self.inner.persist().await
        }
        fn commitment(&self) -> [u8; 32] {
            self.inner.commitment()
        }
    }

    /// A store that fails for a while (longer than any single retry budget) delays the block,
    /// never loses or publishes it early, and execution resumes when the store answers.
    #[tokio::test(start_paused = true)]
    async fn persist_failures_are_retried_and_nothing_is_published_before() {
        let (_, _, genesis, mint) = minted("retry", None);
        let failures = Arc::new(AtomicU64::new(40));
        let (events, mut rx) = broadcast::channel(16);
        let executed = Arc::new(AtomicU64::new(0));
        let mut exec = Executor::new(
            Flaky {
                inner: LedgerMachine::new(genesis).unwrap(),
                failures: failures.clone(),
            },
            Arc::new(Mutex::new(Mempool::new(MempoolLimits::default()))),
            executed.clone(),
            events,
        );
        let started = tokio::time::Instant::now();
        let mut offer = Box::pin(exec.offer(block(1, vec![Bytes::from(mint.encode())])));
        // While the store fails, the block is neither executed nor published.
        let waited = tokio::time::timeout(Duration::from_secs(30), &mut offer).await;
        assert!(waited.is_err(), "still retrying after 30 s");
        assert!(failures.load(Ordering::SeqCst) < 40, "retried meanwhile");
        assert_eq!(executed.load(Ordering::SeqCst), 0);
        assert!(rx.try_recv().is_err(), "nothing published before persisted");
        assert_eq!(offer.await.unwrap(), Offered::Applied);
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        assert_eq!(executed.load(Ordering::SeqCst), 1);
        assert_eq!(rx.try_recv().unwrap().height, 1);
        // 40 failures with the delay capped at 2 s: well past the old fail-stop point, bounded.
        let took = started.elapsed();
        assert!(
            took > Duration::from_secs(30) && took < Duration::from_secs(90),
            "{took:?}"
        );
        assert_eq!(exec.machine().inner.state().height(), 1);
    }
}

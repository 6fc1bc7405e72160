//! Block building and verification, plugged into marshal's inline-verification wrapper.
//!
//! Proposal rule: the leader takes pending transactions from its mempool in arrival order,
//! skipping those already carried by an unfinalized ancestor, within the configured count and
//! byte limits.
//!
//! Verification rule (every replica, before its notarize vote): the block must name the view it
//! was proposed in, hold at most `MAX_BLOCK_TXS` transactions (or the genesis `max_block_txs`,
//! if lower: execution would reject a larger block whole) and `MAX_BLOCK_BYTES` bytes, and
//! every transaction must pass the stateless check (canonical encoding, size limits, chain id,
//! signature) with no txid repeated inside the block. A block that breaks any of these is not
//! voted for (the view then times out and moves to the next leader). State-dependent failures
//! (unknown or spent input, insufficient funds, replayed mint) are deliberately not checked
//! here: they depend on execution order, so such transactions are included and receive a
//! deterministic rejection receipt when the block executes. Parent and height linkage are
//! checked by marshal's wrapper before this runs.

use super::{
    block::{Block, MAX_BLOCK_BYTES, MAX_BLOCK_TXS},
    early::Held,
};
use crate::{
    mempool::Mempool,
    tx::{MAX_TX_BYTES, TxVerifier, Txid},
};
use commonware_consensus::{
    Application, Heightable as _, marshal::ancestry::Ancestry, simplex::types::Context,
};
use commonware_cryptography::{Digested, Digestible as _, ed25519::PublicKey, sha256::Digest};
use foldhash::{HashSet, HashSetExt as _};
use futures::StreamExt as _;
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
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
    /// more before proposing (zero: never). Every view costs every replica a fixed amount of
    /// work (votes, journal writes, certification, a receipts message), so at moderate load a
    /// short window trades a little latency for much bigger blocks. The leader waits only
    /// when transactions arrive fast enough to fill it (see [`BatchWindow`]): at low load the
    /// window would add latency and gather nothing. It stops waiting once the block is full
    /// enough and, alone (f = 0), once the transactions its arrival rate predicts are in.
    pub batch_wait: std::time::Duration,
}

/// "A few" new transactions for [`ProposalLimits::batch_wait`].
pub const BATCH_FEW: usize = 64;

/// Transactions expected to arrive during the batch window for the leader to wait for them.
const BATCH_MIN_EXPECTED: f64 = 1.0;

/// Time constant of the arrival-rate estimate.
const RATE_SMOOTHING: std::time::Duration = std::time::Duration::from_millis(50);

/// How a leader gathers more transactions before building its block: until the mempool's
/// admission counter reaches `until`, or for `within` at most, whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gather {
    pub(crate) until: u64,
    pub(crate) within: std::time::Duration,
}

/// Decides whether a leader waits [`ProposalLimits::batch_wait`] before building its block,
/// from the arrival rate it observes between its proposals (every replica admits every
/// transaction, through gossip, so its own counter sees the whole load), and until when: the
/// wait ends early once enough transactions arrived to fill the block past [`BATCH_FEW`].
///
/// A replica alone (f = 0) also ends it once the transactions its rate predicts for the
/// window are in, instead of at the timer's tick (tokio rounds a 2 ms sleep up to 2-3 ms): its
/// views cost only its own work. Replicas with peers wait out the window, because each view
/// costs every replica votes, messages and journal writes, and more, shorter views cost
/// throughput and latency where the cores are busy: in measurements on two cores, the early
/// end took n=1 at half load from p50 4.0 to 3.4 ms but n=4 at half load from 16.6 to 19.0
/// (`docs/EVALUATION.md`, session 24).
#[derive(Debug, Default)]
pub(crate) struct BatchWindow {
    /// No peers: end the wait at the predicted count.
    alone: bool,
    /// Time and admission count at the previous decision.
    last: Option<(std::time::SystemTime, u64)>,
    /// Smoothed arrivals per second.
    rate: f64,
}

impl BatchWindow {
    /// A window for a replica alone (`alone`, f = 0) or with peers.
    pub(crate) fn new(alone: bool) -> Self {
        Self {
            alone,
            ..Self::default()
        }
    }

    /// Whether and how to gather before building a block, given the time, the mempool's
    /// admission counter and how many pending transactions the block could take.
    pub(crate) fn decide(
        &mut self,
        now: std::time::SystemTime,
        admitted: u64,
        new_pending: usize,
        window: std::time::Duration,
    ) -> Option<Gather> {
        if let Some((then, count)) = self.last {
            let elapsed = now.duration_since(then).unwrap_or_default().as_secs_f64();
            if elapsed > 0.0 {
                let sample = admitted.saturating_sub(count) as f64 / elapsed;
                // Smoothed over about `RATE_SMOOTHING` (one interval holds few arrivals at
                // moderate load), and forgotten after a quiet spell.
                let keep = (-elapsed / RATE_SMOOTHING.as_secs_f64()).exp();
                self.rate = keep * self.rate + (1.0 - keep) * sample;
            }
        }
        self.last = Some((now, admitted));
        let expected = self.rate * window.as_secs_f64();
        if window.is_zero() || new_pending > BATCH_FEW || expected < BATCH_MIN_EXPECTED {
            return None;
        }
        // At most `BATCH_FEW + 1` (`new_pending` is at most `BATCH_FEW` here).
        let to_fill = u32::try_from(BATCH_FEW + 1 - new_pending).unwrap_or(u32::MAX);
        let more = if self.alone {
            // The least count that reaches `expected`, if fewer fill the block.
            (1..to_fill)
                .find(|&k| f64::from(k) >= expected)
                .unwrap_or(to_fill)
        } else {
            to_fill
        };
        Some(Gather {
            until: admitted.saturating_add(u64::from(more)),
            within: window,
        })
    }
}

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
    /// Blocks this replica proposed or found valid, for early execution on finalization.
    pub(crate) held: Arc<Mutex<Held>>,
    pub(crate) limits: ProposalLimits,
    /// Signalled whenever a transaction enters the mempool, so an idle leader proposes as soon
    /// as there is something to propose instead of polling.
    pub(crate) arrivals: Arc<tokio::sync::Notify>,
    /// Whether this leader's next proposal waits for more transactions.
    pub(crate) window: Arc<Mutex<BatchWindow>>,
    /// Test hook: propose blocks carrying an invalid transaction (see
    /// [`ConsensusConfig::byzantine_proposer`](super::ConsensusConfig::byzantine_proposer)).
    pub(crate) byzantine: bool,
}

impl<V: TxVerifier> App<V> {
    pub(crate) fn build(
        &self,
        parent: &Digested<Block>,
        view: u64,
        exclude: &HashSet<Txid>,
    ) -> Block {
        let max_txs = self.max_txs().min(self.limits.max_txs);
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

    /// Keeps a block this replica built or found valid for early execution (`early`).
    fn hold(&self, block: &Digested<Block>) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(block.clone());
    }

    /// Most transactions in a block: the block format's bound, and the state machine's (a
    /// genesis may set `max_block_txs` lower).
    fn max_txs(&self) -> usize {
        MAX_BLOCK_TXS.min(self.verifier.max_block_txs())
    }

    /// The stateless block check described in the module docs.
    pub(crate) fn check_block(&self, block: &Block, view: u64) -> Result<(), String> {
        if block.view != view {
            return Err(format!(
                "block names view {} but was proposed in view {view}",
                block.view
            ));
        }
        if block.txs.len() > self.max_txs() {
            return Err(format!(
                "{} transactions in block, at most {}",
                block.txs.len(),
                self.max_txs()
            ));
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
    async fn await_transactions<E: commonware_runtime::Clock>(
        &self,
        runtime: &E,
        exclude: &HashSet<Txid>,
    ) {
        if self.limits.idle_wait.is_zero() {
            return;
        }
        let deadline = runtime.current() + self.limits.idle_wait;
        until_arrivals(runtime, &self.arrivals, deadline, || {
            self.mempool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .has_candidate(exclude)
        })
        .await;
    }
}

/// Waits until `admitted()` reaches `plan.until` or `plan.within` has passed.
async fn gather<E: commonware_runtime::Clock>(
    runtime: &E,
    arrivals: &tokio::sync::Notify,
    plan: Gather,
    admitted: impl Fn() -> u64,
) {
    let deadline = runtime.current() + plan.within;
    until_arrivals(runtime, arrivals, deadline, || admitted() >= plan.until).await;
}

/// Returns once `done()` holds or at `deadline`, checking `done()` again after each signal on
/// `arrivals` (sent after each mempool admission). The wake-up is registered before each
/// check, so an admission between the check and the wait is not missed (`notify_one` also
/// stores a permit when nobody waits; a stale permit only causes one more check).
async fn until_arrivals<E: commonware_runtime::Clock>(
    runtime: &E,
    arrivals: &tokio::sync::Notify,
    deadline: std::time::SystemTime,
    done: impl Fn() -> bool,
) {
    loop {
        let arrival = arrivals.notified();
        futures::pin_mut!(arrival);
        arrival.as_mut().enable();
        if done() {
            return;
        }
        let timeout = runtime.sleep_until(deadline);
        futures::pin_mut!(timeout);
        if let futures::future::Either::Right(_) = futures::future::select(arrival, timeout).await {
            return;
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
        loop {
            let Some(block) = cursor else {
                warn!(
                    parent = parent.height().get(),
                    executed, walked, "ancestry ended above the executed height"
                );
                break;
            };
            if block.height().get() <= executed {
                break;
            }
            if walked >= MAX_ANCESTRY_WALK {
                debug!(
                    parent = parent.height().get(),
                    executed, "ancestor walk stopped at its limit"
                );
                break;
            }
            exclude.extend(block.inner().txs.iter().map(|tx| self.verifier.txid(tx)));
            walked += 1;
            cursor = ancestry.next().await;
        }
        self.await_transactions(&runtime, &exclude).await;
        if !self.limits.batch_wait.is_zero() {
            let (admitted, pending) = {
                let pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
                (pool.admitted(), pool.len())
            };
            let plan = self
                .window
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .decide(
                    runtime.current(),
                    admitted,
                    pending.saturating_sub(exclude.len()),
                    self.limits.batch_wait,
                );
            if let Some(plan) = plan {
                gather(&runtime, &self.arrivals, plan, || {
                    self.mempool
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .admitted()
                })
                .await;
            }
        }
        let block = self.build(&parent, context.round.view().get(), &exclude);
        debug!(
            height = block.height,
            view = block.view,
            txs = block.txs.len(),
            executed,
            excluded = exclude.len(),
            walked,
            "proposing block"
        );
        let digest = block.digest();
        let block = Digested::precomputed(block, digest);
        self.hold(&block);
        Some(block)
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
            Ok(()) => {
                self.hold(block);
                true
            }
            Err(reason) => {
                warn!(height = block.inner().height, %reason, "refusing to vote for block");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BATCH_FEW, BatchWindow, Gather, gather};
    use commonware_runtime::{
        Clock as _, Runner as _, Spawner as _, Supervisor as _, deterministic,
    };
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };
    use std::time::{Duration, SystemTime};

    const WINDOW: Duration = Duration::from_millis(2);

    /// Feeds proposals `interval` apart to a replica `alone` or with peers, while transactions
    /// arrive at `per_second`; returns the last decision.
    fn steady(alone: bool, per_second: u64, interval: Duration, proposals: u32) -> Option<Gather> {
        let mut window = BatchWindow::new(alone);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut decision = None;
        for i in 0..proposals {
            let elapsed = interval * i;
            let admitted =
                per_second * u64::try_from(elapsed.as_micros()).expect("short test") / 1_000_000;
            decision = window.decide(start + elapsed, admitted, 3, WINDOW);
        }
        decision
    }

    /// A window that saw one proposal at the epoch, and a time 10 ms later.
    fn after_a_first_proposal(alone: bool) -> (BatchWindow, SystemTime) {
        let mut window = BatchWindow::new(alone);
        let t = SystemTime::UNIX_EPOCH;
        window.decide(t, 0, 1, WINDOW);
        (window, t + Duration::from_millis(10))
    }

    #[test]
    fn a_leader_waits_only_when_arrivals_would_fill_the_window() {
        for alone in [false, true] {
            // 20/s: one transaction per 25 views; waiting would only add latency.
            assert_eq!(steady(alone, 20, Duration::from_millis(40), 10), None);
            // 300/s: 0.6 expected in 2 ms.
            assert_eq!(steady(alone, 300, Duration::from_millis(40), 10), None);
        }
        // 700/s: 1.4 expected. With peers the leader waits out the window (or until the 3
        // pending and 62 more fill the block); alone, until the two predicted are in (252
        // admitted by the last proposal).
        let window = |until| {
            Some(Gather {
                until,
                within: WINDOW,
            })
        };
        assert_eq!(
            steady(false, 700, Duration::from_millis(40), 10),
            window(314)
        );
        assert_eq!(
            steady(true, 700, Duration::from_millis(40), 10),
            window(254)
        );
        // 20,000/s, alone: 40 expected.
        assert_eq!(
            steady(true, 20_000, Duration::from_millis(10), 20).map(|g| g.until - 3_800),
            Some(40)
        );
    }

    #[test]
    fn the_first_proposal_and_a_zero_window_never_wait() {
        let mut window = BatchWindow::default();
        assert_eq!(
            window.decide(SystemTime::UNIX_EPOCH, 1_000_000, 1, WINDOW),
            None
        );
        assert_eq!(steady(true, 5_000, Duration::from_millis(10), 1), None);
        let mut zero = BatchWindow::default();
        let t = SystemTime::UNIX_EPOCH;
        zero.decide(t, 0, 1, Duration::ZERO);
        assert_eq!(
            zero.decide(t + Duration::from_millis(10), 100, 1, Duration::ZERO),
            None
        );
    }

    #[test]
    fn a_full_block_is_proposed_at_once_and_a_nearly_full_one_waits_to_fill() {
        for alone in [false, true] {
            let (mut window, busy) = after_a_first_proposal(alone);
            assert_eq!(window.decide(busy, 100, BATCH_FEW + 1, WINDOW), None);
            // About 3,300/s by now, so 7 expected in the window, but one more fills the block.
            assert_eq!(
                window.decide(busy + Duration::from_millis(10), 200, BATCH_FEW, WINDOW),
                Some(Gather {
                    until: 201,
                    within: WINDOW
                })
            );
        }
    }

    #[test]
    fn the_rate_decays_when_the_load_stops() {
        let (mut window, busy) = after_a_first_proposal(true);
        // 10,000/s seen for 10 ms, smoothed to about 1,800/s: 3.6 expected.
        assert_eq!(
            window.decide(busy, 100, 1, WINDOW),
            Some(Gather {
                until: 104,
                within: WINDOW
            })
        );
        // A long quiet spell, then one transaction: no wait for it.
        let quiet = busy + Duration::from_secs(2);
        assert_eq!(window.decide(quiet, 101, 1, WINDOW), None);
    }

    /// Runs [`gather`] for `plan` (from 0 admitted) while a task admits one transaction every
    /// `every`; returns how long it waited and how many were admitted by then.
    fn gathered(plan: Gather, every: Duration) -> (Duration, u64) {
        deterministic::Runner::new(
            deterministic::Config::new()
                .with_cycle(Duration::from_micros(100))
                .with_timeout(Some(Duration::from_secs(10))),
        )
        .start(|context| async move {
            let arrivals = Arc::new(tokio::sync::Notify::new());
            let admitted = Arc::new(AtomicU64::new(0));
            let feeder = {
                let (arrivals, admitted) = (arrivals.clone(), admitted.clone());
                context.child("feeder").spawn(move |context| async move {
                    loop {
                        context.sleep(every).await;
                        admitted.fetch_add(1, Ordering::SeqCst);
                        arrivals.notify_one();
                    }
                })
            };
            let start = context.current();
            gather(&context, &arrivals, plan, || {
                admitted.load(Ordering::SeqCst)
            })
            .await;
            let waited = context.current().duration_since(start).expect("monotonic");
            feeder.abort();
            (waited, admitted.load(Ordering::SeqCst))
        })
    }

    #[test]
    fn gathering_ends_at_the_predicted_arrival_or_at_the_window() {
        // (until, window ms, one arrival every ms, admitted at the end, ended within ms)
        for (until, within, every, admitted, ended) in [
            // The fifth arrival, at 5 ms, well inside the window.
            (5, 20, 1, 5, 5),
            // Arrivals too slow: one by the end of the 4 ms window.
            (5, 4, 3, 1, 4),
        ] {
            let plan = Gather {
                until,
                within: Duration::from_millis(within),
            };
            let (waited, got) = gathered(plan, Duration::from_millis(every));
            assert_eq!(got, admitted, "{plan:?}");
            let ended = Duration::from_millis(ended);
            // One cycle (0.1 ms) of the deterministic clock's granularity, and then some.
            assert!(
                waited >= ended && waited < ended + Duration::from_millis(1),
                "{plan:?}: {waited:?}"
            );
        }
    }

    #[test]
    fn gathering_what_is_already_in_does_not_wait() {
        let plan = Gather {
            until: 0,
            within: Duration::from_millis(4),
        };
        assert_eq!(
            gathered(plan, Duration::from_millis(1)),
            (Duration::ZERO, 0)
        );
    }
}

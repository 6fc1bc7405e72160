//! Replica metrics in the Prometheus text exposition format (0.0.4), served at `/metrics` next
//! to the gateway's own ([`crate::api::metrics`]).
//!
//! Hand-written like the gateway's: a few counters, gauges and two histograms do not justify a
//! metrics framework. What is measured and where:
//! - executed height, committed transactions and rejections per reason code: from the executed
//!   blocks the executor publishes ([`NodeMetrics::on_executed`]);
//! - commit latency: from the moment this replica accepted a submission into its mempool
//!   ([`NodeMetrics::submit_accepted`]) to the moment it executed and persisted it;
//! - store latency and failures: around every block persist ([`NodeMetrics::persist_started`],
//!   [`NodeMetrics::persist_finished`]);
//! - anything else a component wants to export: [`NodeMetrics::register`] takes a gauge or a
//!   counter as a closure read at scrape time, [`NodeMetrics::register_text`] a whole block of
//!   exposition text (the consensus runtime's own registry is exported that way).

use crate::executor::ExecutedBlock;
use foldhash::HashMap;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histograms, in seconds: from a fast local store write to a
/// commit that needed several view changes.
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Submissions remembered for the commit-latency histogram; past it the oldest are forgotten
/// (a transaction that never commits must not hold memory forever).
pub const MAX_TRACKED_SUBMISSIONS: usize = 65_536;

/// Metrics registered by other components, at most (keeps a scrape bounded).
pub const MAX_REGISTERED: usize = 256;

/// A cumulative histogram over [`LATENCY_BUCKETS_S`].
#[derive(Debug, Default)]
pub struct Histogram {
    inner: Mutex<HistogramInner>,
}

#[derive(Debug, Default, Clone)]
struct HistogramInner {
    counts: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (bound, count) in LATENCY_BUCKETS_S.iter().zip(h.counts.iter_mut()) {
            if secs <= *bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum_s += secs;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, count) in LATENCY_BUCKETS_S.iter().zip(h.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}", h.sum_s);
        let _ = writeln!(out, "{name}_count {}", h.count);
    }
}

/// The kind of a registered metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Goes up and down.
    Gauge,
    /// Only goes up (the scraper computes rates).
    Counter,
}

type Reader = Box<dyn Fn() -> u64 + Send + Sync>;
type TextSource = Box<dyn Fn() -> String + Send + Sync>;

struct Registered {
    name: String,
    help: String,
    kind: Kind,
    read: Reader,
}

/// Why a metric could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is not a Prometheus metric name (`[a-zA-Z_][a-zA-Z0-9_]*`).
    #[error("invalid metric name {0:?}")]
    Name(String),
    /// The name is already registered.
    #[error("metric {0:?} already registered")]
    Duplicate(String),
    /// [`MAX_REGISTERED`] reached.
    #[error("more than {MAX_REGISTERED} metrics registered")]
    Full,
}

/// When the submissions still waiting for their commit were accepted.
#[derive(Debug, Default)]
struct Submissions {
    at: HashMap<[u8; 32], Instant>,
    order: VecDeque<[u8; 32]>,
}

/// The replica's metrics. Shared (`Arc`) between the executor's subscriber, the store wrapper,
/// the REST backend and whatever registers more.
#[derive(Default)]
pub struct NodeMetrics {
    executed_height: AtomicU64,
    last_executed: Mutex<Option<Instant>>,
    committed: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    commit_latency: Histogram,
    persist_latency: Histogram,
    persist_failures: AtomicU64,
    /// Start of the persist in progress, if any.
    persisting_since: Mutex<Option<Instant>>,
    /// First failure since the last successful persist, if any.
    failing_since: Mutex<Option<Instant>>,
    submissions: Mutex<Submissions>,
    registered: Mutex<Vec<Registered>>,
    texts: Mutex<Vec<TextSource>>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics")
            .field("executed_height", &self.executed_height())
            .field("committed", &self.committed())
            .finish_non_exhaustive()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl NodeMetrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exports a gauge or counter read by `read` at every scrape.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Result<(), RegisterError> {
        if !valid_name(name) {
            return Err(RegisterError::Name(name.to_owned()));
        }
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if registered.iter().any(|r| r.name == name) {
            return Err(RegisterError::Duplicate(name.to_owned()));
        }
        if registered.len() >= MAX_REGISTERED {
            return Err(RegisterError::Full);
        }
        registered.push(Registered {
            name: name.to_owned(),
            // A newline in the help text would break the exposition format.
            help: help.replace('\n', " "),
            kind,
            read: Box::new(read),
        });
        Ok(())
    }

    /// Appends the exposition text `source` returns to every scrape (another registry's).
    pub fn register_text(
        &self,
        source: impl Fn() -> String + Send + Sync + 'static,
    ) -> Result<(), RegisterError> {
        let mut texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
        if texts.len() >= MAX_REGISTERED {
            return Err(RegisterError::Full);
        }
        texts.push(Box::new(source));
        Ok(())
    }

    /// This replica accepted `txid` into its mempool: its commit latency starts now.
    pub fn submit_accepted(&self, txid: [u8; 32]) {
        let mut s = self.submissions.lock().unwrap_or_else(|e| e.into_inner());
        if s.at.contains_key(&txid) {
            return;
        }
        while s.order.len() >= MAX_TRACKED_SUBMISSIONS {
            if let Some(old) = s.order.pop_front() {
                s.at.remove(&old);
            }
        }
        s.at.insert(txid, Instant::now());
        s.order.push_back(txid);
    }

    /// An executed (persisted) block: height, outcomes and commit latencies.
    pub fn on_executed(&self, block: &ExecutedBlock) {
        let now = Instant::now();
        self.executed_height
            .fetch_max(block.height, Ordering::Relaxed);
        *self.last_executed.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        if block.receipts.is_empty() {
            return;
        }
        let mut accepted = 0u64;
        {
            let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
            for receipt in &block.receipts {
                match receipt.rejection {
                    None => accepted += 1,
                    Some(code) => *rejected.entry(code).or_default() += 1,
                }
            }
        }
        self.committed.fetch_add(accepted, Ordering::Relaxed);
        let mut s = self.submissions.lock().unwrap_or_else(|e| e.into_inner());
        for receipt in &block.receipts {
            if let Some(at) = s.at.remove(&receipt.txid.0) {
                self.commit_latency
                    .observe(now.saturating_duration_since(at));
            }
        }
        // Forget the executed ones' order entries lazily: drop the front while it is gone.
        while let Some(front) = s.order.front() {
            if s.at.contains_key(front) {
                break;
            }
            s.order.pop_front();
        }
    }

    /// A block persist starts.
    pub fn persist_started(&self) {
        *self
            .persisting_since
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// The persist started last ended after `elapsed`, successfully or not.
    pub fn persist_finished(&self, elapsed: Duration, ok: bool) {
        *self
            .persisting_since
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.persist_latency.observe(elapsed);
        let mut failing = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            *failing = None;
        } else {
            self.persist_failures.fetch_add(1, Ordering::Relaxed);
            failing.get_or_insert_with(Instant::now);
        }
    }

    /// Highest executed height seen.
    pub fn executed_height(&self) -> u64 {
        self.executed_height.load(Ordering::Relaxed)
    }

    /// Time since the last executed block, `None` before the first.
    pub fn since_executed(&self) -> Option<Duration> {
        self.last_executed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    /// Transactions committed and applied.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Transactions committed but rejected with `code`.
    pub fn rejected(&self, code: &str) -> u64 {
        let rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        rejected.get(code).copied().unwrap_or(0)
    }

    /// Failed persists (each after the store's own retries).
    pub fn persist_failures(&self) -> u64 {
        self.persist_failures.load(Ordering::Relaxed)
    }

    /// Observations in the commit-latency histogram.
    pub fn commit_latency_count(&self) -> u64 {
        self.commit_latency.count()
    }

    /// Whether the store is failing: a persist failed since the last success, or the persist in
    /// progress has taken longer than `slow`. `Some(how long)` when failing.
    pub fn store_failing(&self, slow: Duration) -> Option<Duration> {
        let failing = *self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = failing {
            return Some(since.elapsed());
        }
        let persisting = *self
            .persisting_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        persisting.map(|t| t.elapsed()).filter(|d| *d > slow)
    }

    /// The exposition text of everything above.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let simple: [(&str, &str, &str, u64); 3] = [
            (
                "coffer_executed_height",
                "gauge",
                "Height of the last block this replica executed and persisted.",
                self.executed_height(),
            ),
            (
                "coffer_transactions_committed_total",
                "counter",
                "Transactions in executed blocks that applied (rate() gives committed tx/s).",
                self.committed(),
            ),
            (
                "coffer_store_persist_failures_total",
                "counter",
                "Block persists that failed after the store's own retries (then retried).",
                self.persist_failures(),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "coffer_transactions_rejected_total";
        let _ = writeln!(
            out,
            "# HELP {name} Transactions in executed blocks that the ledger rejected, by code."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        {
            let rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
            // Codes are the ledger's static snake_case codes: bounded label cardinality.
            for (code, n) in rejected.iter() {
                let _ = writeln!(out, "{name}{{code=\"{code}\"}} {n}");
            }
        }
        self.commit_latency.render(
            "coffer_commit_latency_seconds",
            "From a submission accepted by this replica to its execution here.",
            &mut out,
        );
        self.persist_latency.render(
            "coffer_store_persist_seconds",
            "Time to persist one executed block (Redis or memory), failures included.",
            &mut out,
        );
        {
            let registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
            for r in registered.iter() {
                let kind = match r.kind {
                    Kind::Gauge => "gauge",
                    Kind::Counter => "counter",
                };
                let _ = writeln!(out, "# HELP {} {}", r.name, r.help);
                let _ = writeln!(out, "# TYPE {} {kind}", r.name);
                let _ = writeln!(out, "{} {}", r.name, (r.read)());
            }
        }
        let texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
        for source in texts.iter() {
            // OpenMetrics encoders end with `# EOF`; in the middle of this text it would end
            // an OpenMetrics parser's reading early, so it is dropped.
            for line in source().lines().filter(|l| l.trim() != "# EOF") {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tx::{Receipt, Txid};
    use std::sync::Arc;

    fn block(height: u64, receipts: Vec<Receipt>) -> ExecutedBlock {
        ExecutedBlock {
            height,
            digest: [0; 32],
            receipts,
            commitment: [0; 32],
            commitment_encoding: Vec::new(),
        }
    }

    #[test]
    fn counts_outcomes_latency_and_store() {
        let m = NodeMetrics::new();
        m.submit_accepted([1; 32]);
        m.submit_accepted([9; 32]);
        m.on_executed(&block(
            3,
            vec![
                Receipt {
                    txid: Txid([1; 32]),
                    rejection: None,
                    code: 0,
                },
                Receipt {
                    txid: Txid([2; 32]),
                    rejection: Some("input_already_spent"),
                    code: 7,
                },
            ],
        ));
        assert_eq!(m.executed_height(), 3);
        assert_eq!(m.committed(), 1);
        assert_eq!(m.rejected("input_already_spent"), 1);
        assert_eq!(m.commit_latency_count(), 1, "only the submission seen here");
        assert!(m.since_executed().is_some());
        m.persist_started();
        assert_eq!(m.store_failing(Duration::from_secs(60)), None);
        assert!(m.store_failing(Duration::ZERO).is_some(), "slow persist");
        m.persist_finished(Duration::from_millis(3), false);
        assert!(m.store_failing(Duration::from_secs(60)).is_some());
        m.persist_finished(Duration::from_millis(3), true);
        assert_eq!(m.store_failing(Duration::from_secs(60)), None);

        let gauge = Arc::new(AtomicU64::new(5));
        let g = gauge.clone();
        m.register(
            "coffer_view_changes_total",
            "Views.",
            Kind::Counter,
            move || g.load(Ordering::Relaxed),
        )
        .unwrap();
        assert!(matches!(
            m.register("coffer_view_changes_total", "x", Kind::Gauge, || 0),
            Err(RegisterError::Duplicate(_))
        ));
        assert!(matches!(
            m.register("bad name", "x", Kind::Gauge, || 0),
            Err(RegisterError::Name(_))
        ));
        m.register_text(|| "other_metric 1\n# EOF\n".to_owned())
            .unwrap();
        gauge.store(8, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("coffer_executed_height 3\n"));
        assert!(text.contains("coffer_transactions_committed_total 1\n"));
        assert!(
            text.contains("coffer_transactions_rejected_total{code=\"input_already_spent\"} 1\n")
        );
        assert!(text.contains("coffer_commit_latency_seconds_count 1\n"));
        assert!(text.contains("coffer_store_persist_seconds_count 2\n"));
        assert!(text.contains("coffer_store_persist_failures_total 1\n"));
        assert!(
            text.contains(
                "# TYPE coffer_view_changes_total counter\ncoffer_view_changes_total 8\n"
            )
        );
        assert!(text.ends_with("other_metric 1\n"));
    }

    #[test]
    fn tracked_submissions_are_bounded() {
        let m = NodeMetrics::new();
        for i in 0..(MAX_TRACKED_SUBMISSIONS + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            m.submit_accepted(id);
        }
        let s = m.submissions.lock().unwrap();
        assert_eq!(s.at.len(), MAX_TRACKED_SUBMISSIONS);
        assert_eq!(s.order.len(), MAX_TRACKED_SUBMISSIONS);
    }
}

//! A hiccup meter, after jHiccup: a thread asks to sleep 1 ms, over and over, during the
//! measured window, and records how much later than asked it woke up.
//!
//! What it sees, every thread on the machine sees: time when a ready thread was not run (CPU
//! contention, or the hypervisor taking the virtual CPU away). A transfer's latency cannot be
//! reliably below the machine's own hiccups, so the report shows them next to the latencies.

use crate::workload::histogram;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The sleep the meter asks for.
pub const TICK: Duration = Duration::from_millis(1);

/// Overshoots above this count as stalls in [`Hiccups::stalls_over_10ms`].
const STALL: Duration = Duration::from_millis(10);

/// How late the meter's 1 ms sleeps woke up during the window, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Hiccups {
    /// Sleeps measured.
    pub samples: u64,
    /// Median overshoot.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Sleeps that overshot by more than 10 ms.
    pub stalls_over_10ms: u64,
}

impl Hiccups {
    /// The summary of a histogram of overshoots in microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Hiccups::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let stall_us = u64::try_from(STALL.as_micros()).unwrap_or(u64::MAX);
        Hiccups {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            stalls_over_10ms: h.count_between(stall_us + 1, h.max().max(stall_us + 1)),
        }
    }
}

/// Measures from `start` to `end` on a thread of its own; the result arrives on the returned
/// channel once `end` has passed.
pub fn measure(start: Instant, end: Instant) -> tokio::sync::oneshot::Receiver<Hiccups> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("hiccup-meter".into())
        .spawn(move || {
            if let Some(wait) = start.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut h = histogram();
            while Instant::now() < end {
                let asked = Instant::now();
                std::thread::sleep(TICK);
                let late = asked.elapsed().saturating_sub(TICK);
                // At least 1 µs: the histogram's lowest bound.
                let _ = h.record(u64::try_from(late.as_micros()).unwrap_or(u64::MAX).max(1));
            }
            let _ = tx.send(Hiccups::from_histogram(&h));
        });
    // Without a thread there is no measurement; the receiver then reports it as missing.
    drop(spawned);
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_the_histogram() {
        let mut h = histogram();
        for _ in 0..989 {
            h.record(50).expect("in range");
        }
        for _ in 0..10 {
            h.record(2_000).expect("in range");
        }
        h.record(40_000).expect("in range");
        let s = Hiccups::from_histogram(&h);
        assert_eq!(s.samples, 1000);
        assert!((s.p50_ms - 0.05).abs() < 0.001, "{s:?}");
        assert!((s.p99_ms - 2.0).abs() < 0.01, "{s:?}");
        assert!((s.max_ms - 40.0).abs() < 0.05, "{s:?}");
        assert_eq!(s.stalls_over_10ms, 1);
        assert_eq!(Hiccups::from_histogram(&histogram()), Hiccups::default());
    }

    #[tokio::test]
    async fn the_meter_samples_its_window_only() {
        let start = Instant::now() + Duration::from_millis(100);
        let end = start + Duration::from_millis(300);
        let s = measure(start, end).await.expect("meter thread");
        assert!(Instant::now() >= end);
        // Each sample takes at least the 1 ms tick, so a 300 ms window holds at most 300
        // (plus the one in progress at its end); even a busy machine fits dozens.
        assert!((20..=301).contains(&s.samples), "{s:?}");
        assert!(s.p50_ms <= s.p99_ms && s.p99_ms <= s.p999_ms && s.p999_ms <= s.max_ms);
    }
}

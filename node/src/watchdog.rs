//! A stall warning for operators: when no block has been executed for [`STALL_AFTER`], the
//! replica logs a warning with where consensus is (view, leader, finalized and executed heights,
//! skipped views), its pending transactions and which peers it hears, again every
//! [`STALL_AFTER`] while the stall lasts, and one line when blocks execute again.
//!
//! A live cluster executes a block at least every idle wait (leaders propose empty blocks when
//! nothing is pending), and a view with a dead leader costs a leader timeout (1 s by default):
//! five seconds without a block is a fault worth a line in the log, at the default log level.

use crate::{consensus::ConsensusHandle, tx::TxVerifier, witness::Witness};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tracing::{info, warn};

/// How long without an executed block before a warning.
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// What the watchdog has to say after an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Quiet,
    /// No block executed for this long (said every [`STALL_AFTER`] while it lasts).
    Stalled(Duration),
    /// Blocks execute again after a stall that was warned about, which lasted this long.
    Resumed(Duration),
}

/// Follows the executed height over time.
#[derive(Debug)]
pub struct Watchdog {
    height: u64,
    since: Instant,
    warned: u32,
}

impl Watchdog {
    /// A watchdog that last saw `height` executed at `now`.
    pub fn new(height: u64, now: Instant) -> Self {
        Self {
            height,
            since: now,
            warned: 0,
        }
    }

    /// Records the executed height at `now`.
    pub fn observe(&mut self, height: u64, now: Instant) -> Verdict {
        let stalled = now.saturating_duration_since(self.since);
        if height != self.height {
            let warned = self.warned > 0;
            *self = Self::new(height, now);
            return if warned {
                Verdict::Resumed(stalled)
            } else {
                Verdict::Quiet
            };
        }
        if stalled >= STALL_AFTER * (self.warned + 1) {
            self.warned += 1;
            return Verdict::Stalled(stalled);
        }
        Verdict::Quiet
    }
}

/// Looks at `handle`'s executed height once a second, for as long as the replica runs, and
/// logs what a [`Watchdog`] has to say.
pub async fn watch<V: TxVerifier>(handle: ConsensusHandle<V>, witness: Arc<Witness>) {
    let me = witness.name().to_owned();
    let mut dog = Watchdog::new(handle.executed_height(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let height = handle.executed_height();
        match dog.observe(height, Instant::now()) {
            Verdict::Quiet => {}
            Verdict::Stalled(stalled) => {
                let stats = handle.stats();
                let peers: Vec<String> = witness
                    .peers(height)
                    .into_iter()
                    .filter(|(name, ..)| *name != me)
                    .map(|(name, _, h, reachable)| {
                        let h = h.map_or_else(|| "?".to_owned(), |h| h.to_string());
                        let state = if reachable { "" } else { ", unreachable" };
                        format!("{name} (height {h}{state})")
                    })
                    .collect();
                warn!(
                    stalled = ?stalled,
                    height,
                    finalized = stats.finalized_height,
                    view = stats.view,
                    leader = stats.leader.map(hex::encode).unwrap_or_default(),
                    nullifications = stats.nullifications,
                    pending = handle.pending(),
                    peers = if peers.is_empty() {
                        "none".to_owned()
                    } else {
                        peers.join(", ")
                    },
                    "no block executed"
                );
            }
            Verdict::Resumed(after) => info!(stalled = ?after, height, "blocks executing again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_every_stall_period_and_once_on_recovery() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut dog = Watchdog::new(7, t0);
        // Blocks every second: nothing to say.
        for s in 1..=10 {
            assert_eq!(dog.observe(7 + s, at(s * 1_000)), Verdict::Quiet);
        }
        // Height 17 from 10 s on: quiet until 15 s, then a warning every 5 s.
        assert_eq!(dog.observe(17, at(14_900)), Verdict::Quiet);
        assert_eq!(
            dog.observe(17, at(15_000)),
            Verdict::Stalled(Duration::from_secs(5))
        );
        assert_eq!(dog.observe(17, at(16_000)), Verdict::Quiet);
        assert_eq!(dog.observe(17, at(19_999)), Verdict::Quiet);
        assert_eq!(
            dog.observe(17, at(20_500)),
            Verdict::Stalled(Duration::from_millis(10_500))
        );
        assert_eq!(
            dog.observe(18, at(21_000)),
            Verdict::Resumed(Duration::from_secs(11))
        );
        // A new stall is measured from the recovery.
        assert_eq!(dog.observe(18, at(25_999)), Verdict::Quiet);
        assert_eq!(
            dog.observe(18, at(26_000)),
            Verdict::Stalled(Duration::from_secs(5))
        );
    }

    #[test]
    fn a_short_gap_is_not_a_stall() {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(1, t0);
        assert_eq!(
            dog.observe(1, t0 + Duration::from_millis(4_999)),
            Verdict::Quiet
        );
        assert_eq!(dog.observe(2, t0 + Duration::from_secs(6)), Verdict::Quiet);
    }
}

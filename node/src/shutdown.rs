//! Graceful shutdown of a replica process.
//!
//! On SIGTERM or SIGINT (Ctrl-C) the replica, in order:
//! 1. reports itself unhealthy (`/v1/health`: `stopping`), stops accepting API connections and
//!    lets every open one finish its current request (a submission waiting for its commit
//!    still gets its receipts: execution and the peers keep running meanwhile), for at most
//!    [`ShutdownConfig::grace_ms`]; connections still open then are closed;
//! 2. closes the [`BlockGate`]: the block being executed (if any) finishes executing and
//!    persisting, no further block starts, for at most [`ShutdownConfig::block_timeout_ms`];
//! 3. stops consensus and exits 0 (1 if the in-flight block could not be persisted in time: it
//!    is then replayed from the consensus archive at the next start, as after a crash).
//!
//! A second signal during the shutdown exits at once (status 130).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Shutdown bounds (`[shutdown]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long open API connections may take to finish their current request.
    pub grace_ms: u64,
    /// How long the block in flight may take to finish executing and persisting.
    pub block_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            // Above the default submit deadline's answer time (28 s) would keep a replica
            // around for long; 10 s covers a commit in a healthy cluster.
            grace_ms: 10_000,
            block_timeout_ms: 30_000,
        }
    }
}

impl ShutdownConfig {
    /// [`Self::grace_ms`] as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    /// [`Self::block_timeout_ms`] as a duration.
    pub fn block_timeout(&self) -> Duration {
        Duration::from_millis(self.block_timeout_ms)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct GateState {
    closed: bool,
    in_flight: bool,
}

/// Lets blocks into execution one at a time until closed; closing waits for the block in
/// flight to be persisted.
///
/// The executor's state machine calls [`BlockGate::enter`] before applying a block and
/// [`BlockGate::leave`] once it is persisted; a closed gate never lets the next block in (it
/// stays unacknowledged in the consensus archive and is executed after a restart).
#[derive(Debug)]
pub struct BlockGate {
    state: watch::Sender<GateState>,
}

impl Default for BlockGate {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockGate {
    /// An open gate.
    pub fn new() -> Self {
        Self {
            state: watch::Sender::new(GateState::default()),
        }
    }

    /// Waits for permission to start a block: at once while open, never once closed.
    pub async fn enter(&self) {
        let mut admitted = false;
        self.state.send_modify(|s| {
            assert!(!s.in_flight, "a block entered the gate twice");
            if !s.closed {
                s.in_flight = true;
                admitted = true;
            }
        });
        if !admitted {
            std::future::pending::<()>().await;
        }
    }

    /// The block that entered is persisted.
    pub fn leave(&self) {
        self.state
            .send_if_modified(|s| std::mem::replace(&mut s.in_flight, false));
    }

    /// Whether a block is between [`Self::enter`] and [`Self::leave`].
    pub fn in_flight(&self) -> bool {
        self.state.borrow().in_flight
    }

    /// Closes the gate and waits until no block is in flight, at most `within`. Returns whether
    /// the gate emptied in time.
    pub async fn close(&self, within: Duration) -> bool {
        self.state.send_modify(|s| s.closed = true);
        let mut rx = self.state.subscribe();
        matches!(
            tokio::time::timeout(within, rx.wait_for(|s| !s.in_flight)).await,
            Ok(Ok(_))
        )
    }
}

/// Which signal asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (docker stop, systemd, kill).
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        })
    }
}

/// Listens for SIGTERM and SIGINT from now on (the default "terminate at once" is replaced as
/// soon as this returns).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. Needs a tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
        }
    }
}

/// How a replica's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Consensus stopped by itself (an engine error, logged where it happened).
    Stopped,
    /// A signal asked to stop; the API drained and no block is left half done.
    Clean,
    /// A signal asked to stop, but the block in flight was not persisted within the timeout
    /// (the store is failing); it is replayed at the next start.
    BlockUnfinished,
}

/// Runs until `root` (the replica's consensus task) ends or a signal arrives, then shuts
/// down as described in the module docs.
pub async fn run_until_signal(
    mut signals: Signals,
    root: &mut commonware_runtime::Handle<()>,
    server: Option<crate::api::ApiServer>,
    gate: &BlockGate,
    stopping: &AtomicBool,
    config: &ShutdownConfig,
) -> Ended {
    let signal = tokio::select! {
        _ = &mut *root => return Ended::Stopped,
        signal = signals.recv() => signal,
    };
    stopping.store(true, Ordering::Relaxed);
    info!(%signal, grace_ms = config.grace_ms, "shutting down: no new API connections, draining open ones");
    tokio::spawn(async move {
        let again = signals.recv().await;
        warn!(signal = %again, "second signal: exiting now");
        std::process::exit(130);
    });
    if let Some(server) = server {
        server.drain(config.grace()).await;
    }
    info!("API drained; finishing the block in flight");
    let finished = gate.close(config.block_timeout()).await;
    root.abort();
    if finished {
        info!("stopped cleanly between blocks");
        Ended::Clean
    } else {
        warn!(
            block_timeout_ms = config.block_timeout_ms,
            "the block in flight was not persisted in time; it is replayed at the next start"
        );
        Ended::BlockUnfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn close_waits_for_the_block_in_flight_and_blocks_the_next() {
        let gate = std::sync::Arc::new(BlockGate::new());
        gate.enter().await;
        assert!(gate.in_flight());
        assert!(
            !gate.close(Duration::from_millis(50)).await,
            "a block is still in flight"
        );
        let closer = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.close(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!closer.is_finished());
        gate.leave();
        assert!(closer.await.unwrap_or(false), "emptied once persisted");
        let next = tokio::time::timeout(Duration::from_millis(50), gate.enter()).await;
        assert!(next.is_err(), "a closed gate admits no further block");
        assert!(!gate.in_flight());
    }
}

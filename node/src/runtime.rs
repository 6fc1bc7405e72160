//! Which async runtime drives a replica (`[runtime]` in the config file).
//!
//! - `tokio` (the default): commonware's tokio runtime runs everything: consensus, p2p, the
//!   REST gateway and the Redis client. Its file I/O (the consensus journal and archives,
//!   about 50 calls per view) goes to tokio's blocking thread pool, a thread hand-off each.
//!   `blocking_threads` bounds that pool ([`DEFAULT_BLOCKING_THREADS`]): a call finding its
//!   threads busy waits in the pool's queue and is picked up without waking another thread.
//! - `io_uring` (Linux 6.1 or newer): commonware's io_uring runtime runs consensus, p2p and
//!   their storage, each worker submitting its file and socket I/O to its own ring, with no
//!   hand-offs. The REST gateway and the Redis client, which are written for tokio, run on a
//!   small tokio runtime beside it (`api_workers` threads). The executor, which calls the
//!   store, runs with that tokio runtime entered ([`InTokio`]).
//!
//! Measured in `docs/EVALUATION.md` (session 17).

use serde::{Deserialize, Serialize};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// The runtime engines a replica can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// commonware's tokio runtime for everything.
    #[default]
    Tokio,
    /// commonware's io_uring runtime for consensus, p2p and storage; tokio beside it for the
    /// REST gateway and the Redis client.
    IoUring,
}

impl Engine {
    /// The name used in the config file and `COFFER_RUNTIME`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::IoUring => "io_uring",
        }
    }

    /// Parses a name from the config file's vocabulary.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tokio" => Some(Self::Tokio),
            "io_uring" => Some(Self::IoUring),
            _ => None,
        }
    }
}

/// Largest accepted worker count (a typo guard, not a tuning limit).
pub const MAX_WORKERS: usize = 256;

/// Default bound on the tokio engine's blocking threads, which do the file I/O of consensus
/// and its archives (and resolve host names). tokio's own default, 512, hands nearly every call
/// to a thread of its own, parked and woken each time: on two cores shared by four replicas
/// that hand-off was a quarter of the CPU a replica spends per view (`docs/EVALUATION.md`,
/// session 20). Two keep a sync from waiting behind a slow one, and a host-name lookup from
/// holding up the journal.
pub const DEFAULT_BLOCKING_THREADS: usize = 2;

/// The `[runtime]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// See [`Engine`].
    pub engine: Engine,
    /// Worker threads of the main runtime (with `io_uring`, those driving consensus and p2p).
    pub workers: usize,
    /// With `io_uring`: threads of the tokio runtime beside it (REST gateway, Redis client).
    pub api_workers: usize,
    /// With `tokio`: the most threads doing blocking work at once (file I/O, host-name
    /// lookups); see [`DEFAULT_BLOCKING_THREADS`].
    pub blocking_threads: usize,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            engine: Engine::Tokio,
            workers: 2,
            api_workers: 1,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
        }
    }
}

impl RuntimeSection {
    /// Checks the worker counts.
    pub fn validate(&self) -> Result<(), String> {
        for (name, n) in [
            ("workers", self.workers),
            ("api_workers", self.api_workers),
            ("blocking_threads", self.blocking_threads),
        ] {
            if n == 0 || n > MAX_WORKERS {
                return Err(format!("[runtime] {name} = {n}: must be 1..={MAX_WORKERS}"));
            }
        }
        Ok(())
    }
}

/// Whether this kernel and process may create the io_uring rings the runtime needs
/// (single issuer, deferred task work: Linux 6.1). Container seccomp profiles often refuse
/// io_uring; the error says why.
pub fn probe_io_uring() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(8)
            .map(drop)
            .map_err(|e| e.to_string())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("io_uring exists only on Linux".into())
    }
}

/// A future polled with a tokio runtime entered (or as is without one), so tokio timers,
/// sockets and `tokio::spawn` work from threads tokio does not own.
pub(crate) struct InTokio<F> {
    handle: Option<tokio::runtime::Handle>,
    inner: Pin<Box<F>>,
}

impl<F> InTokio<F> {
    pub(crate) fn new(handle: Option<tokio::runtime::Handle>, inner: F) -> Self {
        Self {
            handle,
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for InTokio<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.as_ref().map(tokio::runtime::Handle::enter);
        this.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{Engine, InTokio, RuntimeSection};

    #[test]
    fn engine_names_round_trip_and_unknown_ones_are_refused() {
        for engine in [Engine::Tokio, Engine::IoUring] {
            assert_eq!(Engine::parse(engine.name()), Some(engine));
        }
        assert_eq!(Engine::parse("iouring"), None);
        assert_eq!(Engine::parse(""), None);
    }

    #[test]
    fn worker_counts_are_checked() {
        assert!(RuntimeSection::default().validate().is_ok());
        for (workers, api_workers) in [(0, 1), (1, 0), (super::MAX_WORKERS + 1, 1)] {
            let section = RuntimeSection {
                workers,
                api_workers,
                ..RuntimeSection::default()
            };
            assert!(section.validate().is_err(), "{workers} / {api_workers}");
        }
    }

    #[test]
    fn tokio_timers_and_spawns_work_from_a_foreign_executor() {
        let side = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        // `futures`' executor polls on this thread, which tokio does not own.
        let answer =
            futures::executor::block_on(InTokio::new(Some(side.handle().clone()), async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                tokio::spawn(async { 7 })
                    .await
                    .expect("spawned on the side runtime")
            }));
        assert_eq!(answer, 7);
        let bare = futures::executor::block_on(InTokio::new(None, async {
            tokio::runtime::Handle::try_current().is_ok()
        }));
        assert!(!bare, "no runtime is entered without a handle");
    }
}

//! `coffer-bench`: throughput and latency of a Coffer cluster, measured the way the evaluation
//! asks (see `docs/EVALUATION.md`).
//!
//! - [`cluster`]: starts a local cluster of a given shape (n, storage mode, a Byzantine
//!   replica) as real processes and tears it down on drop.
//! - [`workload`]: funds wallets by minting and runs clients doing verified transfers.
//! - [`sigcost`]: the machine's BIP340 verification cost and the throughput limit it implies.
//! - [`hiccup`]: the machine's own scheduling stalls during the window.
//! - [`report`] and [`plot`]: JSON, CSV, Markdown and SVG output.
//! - [`configs`]: the named configurations `compare` runs.

pub mod cluster;
pub mod configs;
pub mod hiccup;
pub mod pacer;
pub mod plot;
pub mod report;
pub mod sigcost;
pub mod workload;

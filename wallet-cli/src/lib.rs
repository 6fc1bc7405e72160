//! Coffer client library: keys, coin selection and quorum-verified requests.
//!
//! - [`Client`]: built from a [`ClusterConfig`] (replica URLs and ed25519 keys, f, the CA
//!   certificate, the chain id). Reads ([`Client::balance`], [`Client::utxos_page`],
//!   [`Client::history_page`], [`Client::supply`]) and writes ([`Client::submit`],
//!   [`Client::send`], [`Client::mint`]) are accepted only with f+1 matching replica
//!   signatures; a replica that fails or lies is skipped and reported in `problems`.
//! - [`keystore::Keystore`]: the encrypted key file (argon2id + XChaCha20-Poly1305).
//! - [`coins::select`]: deterministic coin selection with change.
//! - [`error::exit`]: the CLI's exit codes.

pub mod client;
pub mod coins;
pub mod config;
pub mod error;
pub mod keystore;
pub mod net;
pub mod wire;

pub use client::{
    AgreedBlocks, Balance, Client, Committed, Page, ReplicaReport, TxInfo, Verified, sign_with,
};
pub use config::{ClusterConfig, ConfigError, ReplicaEndpoint};
pub use error::{ClientError, ProblemKind, ReplicaProblem};
pub use keystore::{KdfParams, KeyInfo, Keystore, KeystoreError};

//! The REST gateway: JSON over HTTPS (hyper 1 + rustls, TLS 1.3 by default), under `/v1`.
//!
//! Every replica serves it. Nothing it returns needs to be trusted: writes come back with the
//! replicas' signed receipts and reads with their signed read statements
//! ([`coffer_ledger::attest`]), which the client checks against the genesis replica set.
//!
//! The gateway is bounded everywhere: body size, open connections, requests per second per
//! client address, TLS handshake, header, body and answer deadlines, page sizes and block
//! ranges ([`ApiConfig`]). Errors are `{"error": {"code", "message"}}` with stable codes
//! ([`error::codes`]). It reaches the replica only through the [`Backend`] trait.

pub mod answer;
pub mod backend;
pub mod error;
pub mod gather;
pub mod limits;
pub mod metrics;
mod routes;
mod server;
pub mod tls;

pub use backend::{
    AttestedRead, Backend, BackendError, BlockList, BlockTx, BlockView, ClusterStatus, Health,
    HealthCheck, ReceiptBundle, ReplicaStatus, SubmitOutcome, TxStatus,
};
pub use error::ApiError;
pub use routes::OPENAPI_JSON;
pub use server::{ApiConfig, ApiServer};

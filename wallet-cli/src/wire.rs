//! The REST API's JSON shapes, as the client reads them (`docs/openapi.json`): the gateway's
//! own types from [`coffer_ledger::rest`], plus the error envelope. Unknown fields are tolerated
//! so that a newer gateway does not break an older wallet; nothing read here is trusted before
//! the signatures in it are checked.

use serde::Deserialize;

pub use coffer_ledger::rest::{
    AttestedRead, BlockList, BlockTx, BlockView, ClusterStatus, ReceiptBundle, ReplicaStatus,
    SubmitOutcome, TxStatus,
};

/// The error envelope `{"error": {"code", "message", "details"?}}`.
#[derive(Clone, Debug, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// Body of [`ErrorEnvelope`].
#[derive(Clone, Debug, Deserialize)]
pub struct ErrorBody {
    /// Stable snake_case code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Extra data (a committed rejection carries its [`SubmitOutcome`] here).
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

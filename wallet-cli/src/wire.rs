//! The REST API's JSON shapes, as the client reads them (`docs/openapi.json`). Mirrors of the
//! gateway's types, kept here so that the wallet does not link the node. Unknown fields are
//! tolerated so that a newer gateway does not break an older wallet; nothing read here is
//! trusted before the signatures in it are checked.

use coffer_ledger::Txid;
use coffer_ledger::attest::{ReadResult, ReadStatement, ReceiptStatement, Signed};
use serde::{Deserialize, Serialize};

/// Whether a transaction is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// In a replica's mempool, not yet in a finalized block.
    Pending,
    /// In a finalized block.
    Committed,
}

/// A transaction's status and the receipts one gateway gathered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBundle {
    /// The transaction id.
    pub txid: Txid,
    /// Pending or committed.
    pub status: TxStatus,
    /// Height of the block holding it, when committed.
    pub height: Option<u64>,
    /// `ok` or the ledger's reject code, when committed.
    pub code: Option<String>,
    /// Signed receipts from distinct replicas.
    pub receipts: Vec<Signed<ReceiptStatement>>,
}

/// Answer of `POST /v1/transactions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOutcome {
    /// The transaction had been committed before this submission.
    pub replayed: bool,
    /// Status and receipts.
    pub bundle: ReceiptBundle,
}

/// Answer of the balance, UTXO, history and supply reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedRead {
    /// Height claimed by the gateway (the signed statements are what count).
    pub height: u64,
    /// State commitment claimed by the gateway, hex.
    pub commitment: String,
    /// The result.
    pub result: ReadResult,
    /// Replicas' signed statements.
    pub attestations: Vec<Signed<ReadStatement>>,
}

/// One transaction in a block listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTx {
    /// Its id.
    pub txid: Txid,
    /// `ok` or the reject code.
    pub code: String,
}

/// A finalized block as listed by `GET /v1/blocks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// Height.
    pub height: u64,
    /// State commitment after the block, hex.
    pub commitment: String,
    /// Its transactions with their result codes.
    pub transactions: Vec<BlockTx>,
}

/// Answer of `GET /v1/blocks`.
#[derive(Clone, Debug, Deserialize)]
pub struct BlockList {
    /// The blocks, ascending.
    pub blocks: Vec<BlockView>,
}

/// One replica as seen by the answering replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Name from the genesis.
    pub name: String,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// Last finalized height it reported.
    pub height: Option<u64>,
    /// Whether it answered recently.
    pub reachable: bool,
}

/// Answer of `GET /v1/status` (not signed: informational).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Network identifier.
    pub chain_id: String,
    /// Name of the replica answering.
    pub replica: String,
    /// Its last finalized height.
    pub height: u64,
    /// Current consensus view.
    pub view: u64,
    /// Current leader's key, hex.
    pub leader: Option<String>,
    /// Every genesis replica.
    pub replicas: Vec<ReplicaStatus>,
    /// Whether it is in sync with a reachable quorum.
    pub healthy: bool,
    /// f.
    pub max_faulty: u64,
}

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

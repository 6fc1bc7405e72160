//! The REST API's JSON shapes (`docs/api.md`, `docs/openapi.json`), shared by the gateway,
//! which writes them, and the wallet, which reads them. Plain data: nothing read here is trusted
//! before the signatures in it are checked ([`crate::attest`]). Unknown fields are tolerated
//! when reading, so that a newer gateway does not break an older wallet.

use crate::Txid;
use crate::attest::{ReadResult, ReadStatement, ReceiptStatement, Signed};
use serde::{Deserialize, Serialize};

/// Whether a transaction is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Accepted into the mempool, not yet in a finalized block.
    Pending,
    /// In a finalized block; `code` and receipts say how it went.
    Committed,
}

/// A transaction's status and every receipt this replica gathered for it.
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
    /// Signed receipts from distinct replicas (this one included). For a committed transaction
    /// at least f+1 of them match; 2f+1 when the peers answered in time.
    pub receipts: Vec<Signed<ReceiptStatement>>,
}

/// What a submission did (`POST /v1/transactions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOutcome {
    /// True when the transaction had already been committed before this submission: nothing was
    /// applied again and the receipts are the original ones.
    pub replayed: bool,
    /// Status and receipts.
    pub bundle: ReceiptBundle,
}

/// A read answered at one height, with the replicas' signed statements about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedRead {
    /// Height of the state that was read.
    pub height: u64,
    /// State commitment at that height. JSON: hex.
    pub commitment: String,
    /// The result.
    pub result: ReadResult,
    /// Signed statements from distinct replicas, at least f+1 of them matching `result` at
    /// `height`.
    pub attestations: Vec<Signed<ReadStatement>>,
}

/// One transaction in a block, as listed by the block endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTx {
    /// Its id.
    pub txid: Txid,
    /// `ok` or the ledger's reject code.
    pub code: String,
}

/// A finalized block of the global ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// Height (1 is the first block after genesis).
    pub height: u64,
    /// State commitment after the block. JSON: hex.
    pub commitment: String,
    /// Transactions in block order with their result codes.
    pub transactions: Vec<BlockTx>,
}

/// Answer of `GET /v1/blocks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockList {
    /// The blocks, ascending.
    pub blocks: Vec<BlockView>,
}

/// One replica as seen by the replica answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Name from the genesis.
    pub name: String,
    /// ed25519 public key. JSON: hex.
    pub public_key: String,
    /// Last finalized height it reported, if known.
    pub height: Option<u64>,
    /// Whether it answered recently.
    pub reachable: bool,
}

/// Cluster status as seen by the replica answering.
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
    /// Public key of the current view's leader (hex), if known.
    pub leader: Option<String>,
    /// Every genesis replica.
    pub replicas: Vec<ReplicaStatus>,
    /// Whether this replica is in sync and a quorum is reachable.
    pub healthy: bool,
    /// f: the number of faulty replicas tolerated.
    pub max_faulty: u64,
}

/// One check of a replica's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `api`, `executing`, `store`, `peers` or `stopping`.
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// What was seen, for an operator.
    pub detail: String,
}

/// A replica's own health: served at `/v1/health` (200 when healthy, 503 when not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Every check passes.
    pub healthy: bool,
    /// Name of the replica answering.
    pub replica: String,
    /// Its last executed (persisted) height.
    pub height: u64,
    /// The checks.
    pub checks: Vec<HealthCheck>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_gateways_extra_fields_are_tolerated_and_known_ones_round_trip() {
        let status = ClusterStatus {
            chain_id: "coffer-test".into(),
            replica: "replica0".into(),
            height: 7,
            view: 9,
            leader: None,
            replicas: vec![ReplicaStatus {
                name: "replica0".into(),
                public_key: "00".repeat(32),
                height: Some(7),
                reachable: true,
            }],
            healthy: true,
            max_faulty: 0,
        };
        let mut json = serde_json::to_value(&status).expect("serializes");
        assert_eq!(
            serde_json::from_value::<ClusterStatus>(json.clone()).expect("round trips"),
            status
        );
        json["added_in_a_later_release"] = serde_json::json!({"x": 1});
        json["replicas"][0]["also_new"] = serde_json::json!(true);
        assert_eq!(
            serde_json::from_value::<ClusterStatus>(json).expect("extra fields tolerated"),
            status
        );
        // A missing field is still an error: tolerance covers additions only.
        let mut partial = serde_json::to_value(&status).expect("serializes");
        partial.as_object_mut().expect("an object").remove("height");
        assert!(serde_json::from_value::<ClusterStatus>(partial).is_err());
    }
}

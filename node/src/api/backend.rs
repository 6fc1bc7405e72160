//! The seam between the REST gateway and the replica: everything the API serves comes through
//! [`Backend`]. The node implements it over consensus, the mempool and storage; tests implement
//! it in memory.

use coffer_ledger::attest::{ReadQuery, ReadResult, ReadStatement, ReceiptStatement, Signed};
use coffer_ledger::{RejectCode, SignedTransaction, Txid};
use serde::{Deserialize, Serialize};
use std::future::Future;

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
#[serde(deny_unknown_fields)]
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

/// What [`Backend::submit`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitOutcome {
    /// True when the transaction had already been committed before this submission: nothing was
    /// applied again and the receipts are the original ones.
    pub replayed: bool,
    /// Status and receipts.
    pub bundle: ReceiptBundle,
}

/// A read answered at one height, with the replicas' signed statements about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct BlockTx {
    /// Its id.
    pub txid: Txid,
    /// `ok` or the ledger's reject code.
    pub code: String,
}

/// A finalized block of the global ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockView {
    /// Height (1 is the first block after genesis).
    pub height: u64,
    /// State commitment after the block. JSON: hex.
    pub commitment: String,
    /// Transactions in block order with their result codes.
    pub transactions: Vec<BlockTx>,
}

/// One replica as seen by the replica answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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

/// Why the backend could not serve a request. Maps to the API's status codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The ledger refused the transaction before consensus (malformed, bad signature, wrong
    /// chain, ...): 422 with the code.
    #[error("rejected: {code}: {message}")]
    Rejected {
        /// The ledger's stable code.
        code: RejectCode,
        /// Detail.
        message: String,
    },
    /// The request names something outside what exists (a height above the tip, ...): 400.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Overloaded or not ready (mempool full, syncing): 503 `busy`.
    #[error("busy: {0}")]
    Busy(String),
    /// Not reached in time (commit, peers' signatures): 504 `timeout`.
    #[error("timeout: {0}")]
    Timeout(String),
    /// Storage or another internal failure: 500 `internal`. Never caused by input.
    #[error("internal: {0}")]
    Internal(String),
}

/// Everything the REST API needs from a replica. Methods are async (`Send` futures, so the
/// gateway can run them on tokio's worker threads); the gateway enforces its own timeout around
/// each call, so an implementation may wait (e.g. for a commit) without a clock of its own.
pub trait Backend: Send + Sync + 'static {
    /// Submits a decoded transaction. With `wait`, resolves once the transaction is committed
    /// and at least f+1 matching receipts are gathered (more if they arrive in time); without,
    /// once it is accepted into the mempool (status `pending`). A transaction that was already
    /// committed is not applied again: its original receipts come back with `replayed: true`.
    fn submit(
        &self,
        tx: SignedTransaction,
        wait: bool,
    ) -> impl Future<Output = Result<SubmitOutcome, BackendError>> + Send;

    /// Status and receipts of a transaction, `None` if this replica never saw it.
    fn transaction(
        &self,
        txid: Txid,
    ) -> impl Future<Output = Result<Option<ReceiptBundle>, BackendError>> + Send;

    /// Answers a read (balance, UTXOs, history, supply) at one height with f+1 or more
    /// matching signed statements. Addresses in `query` are already validated; page limits are
    /// within the configured maximum.
    fn read(
        &self,
        query: ReadQuery,
    ) -> impl Future<Output = Result<AttestedRead, BackendError>> + Send;

    /// The finalized block at `height`, `None` above the tip.
    fn block(
        &self,
        height: u64,
    ) -> impl Future<Output = Result<Option<BlockView>, BackendError>> + Send;

    /// Finalized blocks `from..=to` that exist, ascending. The range length is bounded by the
    /// gateway.
    fn blocks(
        &self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<BlockView>, BackendError>> + Send;

    /// Cluster status.
    fn status(&self) -> impl Future<Output = Result<ClusterStatus, BackendError>> + Send;

    /// This replica's health. By default: healthy when [`Backend::status`] says so.
    fn health(&self) -> impl Future<Output = Result<Health, BackendError>> + Send {
        async {
            let status = self.status().await?;
            Ok(Health {
                healthy: status.healthy,
                replica: status.replica,
                height: status.height,
                checks: vec![HealthCheck {
                    name: "status".into(),
                    ok: status.healthy,
                    detail: "as reported by /v1/status".into(),
                }],
            })
        }
    }

    /// Exposition text appended to the gateway's own at `/metrics` (the replica's metrics).
    fn metrics(&self) -> String {
        String::new()
    }
}

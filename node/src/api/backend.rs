//! The seam between the REST gateway and the replica: everything the API serves comes through
//! [`Backend`]. The node implements it over consensus, the mempool and storage; tests implement
//! it in memory.

use coffer_ledger::attest::ReadQuery;
use coffer_ledger::{DecodeError, RejectCode, SignedTransaction, Txid};
use std::future::Future;

pub use coffer_ledger::rest::{
    AttestedRead, BlockList, BlockTx, BlockView, ClusterStatus, Health, HealthCheck, ReceiptBundle,
    ReplicaStatus, SubmitOutcome, TxStatus,
};

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

    /// Decodes a transaction the client sent in its canonical encoding. The default parses
    /// the signer's key afresh; a replica parses it through its cache of parsed keys.
    fn decode_tx(&self, bytes: &[u8]) -> Result<SignedTransaction, DecodeError> {
        SignedTransaction::decode(bytes)
    }

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

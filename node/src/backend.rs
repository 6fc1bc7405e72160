//! The replica's implementation of the REST [`Backend`]: submissions go to the mempool (and so
//! to consensus), committed results come from the executed, persisted state and the store, and
//! every answer carries signatures gathered from the peers by the [`Witness`].

use crate::api::answer::outcome_code;
use crate::api::{
    AttestedRead, Backend, BackendError, BlockTx, BlockView, ClusterStatus, Health, ReceiptBundle,
    ReplicaStatus, SubmitOutcome, TxStatus,
};
use crate::consensus::{ConsensusHandle, SubmitError};
use crate::health::{self, HealthConfig, Observed};
use crate::ledger::LedgerVerifier;
use crate::metrics::NodeMetrics;
use crate::storage::{Storage, Store as _, ledger as stored};
use crate::witness::{StoreMark, Witness};
use coffer_ledger::attest::{ReadQuery, ReceiptStatement, Signed};
use coffer_ledger::{DecodeError, Genesis, SignedTransaction, Txid};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Deadlines the backend keeps inside the gateway's own (so it answers before the gateway
/// gives up on it).
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// Waiting for a submitted transaction's commit and receipts.
    pub submit: Duration,
    /// Answering a read or a receipt lookup.
    pub read: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            submit: Duration::from_secs(25),
            read: Duration::from_secs(8),
        }
    }
}

/// What the backend reports on besides consensus and storage: metrics, health thresholds and
/// whether a shutdown started.
#[derive(Clone, Debug, Default)]
pub struct Operations {
    /// The replica's metrics (appended to `/metrics`; submissions start commit latency).
    pub metrics: Arc<NodeMetrics>,
    /// Health thresholds.
    pub health: HealthConfig,
    /// Set once a shutdown started.
    pub stopping: Arc<AtomicBool>,
}

/// The node's [`Backend`].
pub struct NodeBackend {
    genesis: Arc<Genesis>,
    handle: ConsensusHandle<LedgerVerifier>,
    witness: Arc<Witness>,
    store: Arc<Storage>,
    deadlines: Deadlines,
    ops: Operations,
}

impl NodeBackend {
    /// A backend over a running replica.
    pub fn new(
        genesis: Arc<Genesis>,
        handle: ConsensusHandle<LedgerVerifier>,
        witness: Arc<Witness>,
        store: Arc<Storage>,
        deadlines: Deadlines,
    ) -> Self {
        Self {
            genesis,
            handle,
            witness,
            store,
            deadlines,
            ops: Operations::default(),
        }
    }

    /// Reports to `ops` (metrics, health) instead of private defaults.
    pub fn with_operations(mut self, ops: Operations) -> Self {
        self.ops = ops;
        self
    }

    /// This replica's health now.
    pub fn health_now(&self) -> Health {
        let height = self.handle.executed_height();
        let peers = self.witness.peers(height);
        let replicas = self.witness.replicas();
        health::evaluate(
            &self.ops.health,
            &self.ops.metrics,
            &Observed {
                replica: self.witness.name().to_owned(),
                height,
                reachable: peers.iter().filter(|p| p.3).count(),
                quorum: replicas.strong_quorum(),
                replicas: peers.len(),
                stopping: self.ops.stopping.load(Ordering::Relaxed),
            },
        )
    }

    fn committed(
        &self,
        txid: Txid,
        receipts: Vec<Signed<ReceiptStatement>>,
    ) -> Result<ReceiptBundle, BackendError> {
        let me = self.witness.me();
        let own = receipts
            .iter()
            .find(|r| r.attestation.replica == me)
            .ok_or_else(|| BackendError::Internal(format!("own receipt for {txid} missing")))?;
        Ok(ReceiptBundle {
            txid,
            status: TxStatus::Committed,
            height: Some(own.statement.height),
            code: Some(own.statement.code.clone()),
            receipts,
        })
    }

    /// Receipts for `txid` within `within`; `checked`: see [`Witness::gather_receipts`].
    async fn gather(
        &self,
        txid: Txid,
        within: Duration,
        checked: Option<StoreMark>,
    ) -> Result<Option<ReceiptBundle>, BackendError> {
        let deadline = tokio::time::Instant::now() + within;
        match self
            .witness
            .gather_receipts(&txid, deadline, checked)
            .await?
        {
            Some(receipts) => Ok(Some(self.committed(txid, receipts)?)),
            None => Ok(None),
        }
    }

    fn internal(e: crate::storage::StorageError) -> BackendError {
        BackendError::Internal(e.to_string())
    }

    async fn block_view(&self, height: u64) -> Result<Option<BlockView>, BackendError> {
        let Some(block) = self.store.block(height).await.map_err(Self::internal)? else {
            return Ok(None);
        };
        let decoded = coffer_ledger::Block::decode(&block.block)
            .map_err(|e| BackendError::Internal(format!("stored block {height}: {e}")))?;
        let commitment = stored::decode_commitment(&block.record).map_err(Self::internal)?;
        let mut transactions = Vec::with_capacity(decoded.txs.len());
        for tx in &decoded.txs {
            let txid = tx.txid();
            let receipt = stored::receipt(&*self.store, &txid)
                .await
                .map_err(Self::internal)?
                .ok_or_else(|| BackendError::Internal(format!("record of {txid} missing")))?;
            transactions.push(BlockTx {
                txid,
                code: outcome_code(receipt.outcome).to_owned(),
            });
        }
        Ok(Some(BlockView {
            height,
            commitment: coffer_ledger::hash::Hex::new(&commitment.state_hash.0).to_string(),
            transactions,
        }))
    }
}

impl Backend for NodeBackend {
    fn decode_tx(&self, bytes: &[u8]) -> Result<SignedTransaction, DecodeError> {
        SignedTransaction::decode_with(bytes, self.handle.verifier().signatures().keys())
    }

    async fn submit(
        &self,
        tx: SignedTransaction,
        wait: bool,
    ) -> Result<SubmitOutcome, BackendError> {
        // Parsed from JSON already: remembered decoded, so no check below decodes it again.
        let signatures = self.handle.verifier().signatures();
        let bytes = signatures.encode_and_keep(tx);
        // The replica's own check: its signature cache makes the mempool's check below (same
        // bytes) skip the signature.
        let txid = self.handle.verifier().check_code(&bytes).map_err(|code| {
            signatures.forget(&crate::sigcache::wtxid_of(&bytes));
            BackendError::Rejected {
                code,
                message: format!("transaction refused: {}", code.as_str()),
            }
        })?;
        let checked = self.witness.store_mark();
        if stored::receipt(&*self.store, &txid)
            .await
            .map_err(Self::internal)?
            .is_some()
        {
            // Already committed: the original receipts, nothing applied again.
            let bundle = self
                .gather(txid, self.deadlines.read, None)
                .await?
                .ok_or_else(|| BackendError::Internal(format!("receipt of {txid} vanished")))?;
            return Ok(SubmitOutcome {
                replayed: true,
                bundle,
            });
        }
        tracing::debug!(%txid, "transaction submitted");
        match self.handle.submit(bytes::Bytes::from(bytes)) {
            Ok(_) => self.ops.metrics.submit_accepted(txid.0),
            Err(SubmitError::Busy) => return Err(BackendError::Busy("mempool is full".into())),
            Err(SubmitError::Stopped) => {
                return Err(BackendError::Busy("replica is stopping".into()));
            }
            Err(e) => {
                return Err(BackendError::Invalid(format!("transaction refused: {e}")));
            }
        }
        if !wait {
            return Ok(SubmitOutcome {
                replayed: false,
                bundle: ReceiptBundle::pending(txid),
            });
        }
        // The store did not hold it at `checked`: gathering need not ask it again at once.
        let gathered = self
            .gather(txid, self.deadlines.submit, Some(checked))
            .await?;
        tracing::debug!(%txid, "submission answered");
        match gathered {
            Some(bundle) => Ok(SubmitOutcome {
                replayed: false,
                bundle,
            }),
            None => Err(BackendError::Timeout(format!(
                "{txid} not committed within {} ms",
                self.deadlines.submit.as_millis()
            ))),
        }
    }

    async fn transaction(&self, txid: Txid) -> Result<Option<ReceiptBundle>, BackendError> {
        if self.witness.own_receipt(&txid).await?.is_some() {
            return match self.gather(txid, self.deadlines.read, None).await {
                Ok(bundle) => Ok(bundle),
                // Fewer than f+1 so far: show what there is; the client verifies.
                Err(BackendError::Timeout(_)) => self
                    .committed(txid, self.witness.cached_receipts(&txid))
                    .map(Some),
                Err(e) => Err(e),
            };
        }
        if self.handle.is_pending(&crate::tx::Txid(txid.0)) {
            return Ok(Some(ReceiptBundle::pending(txid)));
        }
        Ok(None)
    }

    async fn read(&self, query: ReadQuery) -> Result<AttestedRead, BackendError> {
        let deadline = tokio::time::Instant::now() + self.deadlines.read;
        self.witness.read(&query, deadline).await
    }

    async fn block(&self, height: u64) -> Result<Option<BlockView>, BackendError> {
        self.block_view(height).await
    }

    async fn blocks(&self, from: u64, to: u64) -> Result<Vec<BlockView>, BackendError> {
        let mut out = Vec::new();
        // Heights start at 1: a range from 0 is served from 1 (it stopped at the missing 0).
        for height in from.max(1)..=to {
            match self.block_view(height).await? {
                Some(view) => out.push(view),
                None => break,
            }
        }
        Ok(out)
    }

    async fn health(&self) -> Result<Health, BackendError> {
        Ok(self.health_now())
    }

    fn metrics(&self) -> String {
        let health = self.health_now();
        let mut text = self.ops.metrics.render();
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "# HELP coffer_healthy Whether every health check passes (see /v1/health).\n\
             # TYPE coffer_healthy gauge\ncoffer_healthy {}",
            u8::from(health.healthy)
        );
        let _ = writeln!(
            text,
            "# HELP coffer_health_check Each health check: 1 passing, 0 failing.\n\
             # TYPE coffer_health_check gauge"
        );
        for check in &health.checks {
            let _ = writeln!(
                text,
                "coffer_health_check{{check=\"{}\"}} {}",
                check.name,
                u8::from(check.ok)
            );
        }
        text
    }

    async fn status(&self) -> Result<ClusterStatus, BackendError> {
        let stats = self.handle.stats();
        let height = stats.executed_height;
        let peers = self.witness.peers(height);
        let reachable = peers.iter().filter(|p| p.3).count();
        let replicas = peers
            .into_iter()
            .map(|(name, key, height, reachable)| ReplicaStatus {
                name,
                public_key: hex::encode(key),
                height,
                reachable,
            })
            .collect();
        Ok(ClusterStatus {
            chain_id: self.genesis.chain_id.as_str().to_owned(),
            replica: self.witness.name().to_owned(),
            height,
            view: stats.view,
            leader: stats.leader.map(hex::encode),
            replicas,
            // The replica's whole health (executing, store, peers, not stopping), so the
            // status and the health endpoint never disagree.
            healthy: reachable >= self.witness.replicas().strong_quorum()
                && self.health_now().healthy,
            max_faulty: u64::try_from(self.witness.replicas().max_faulty()).unwrap_or(u64::MAX),
        })
    }
}

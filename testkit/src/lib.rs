//! Test helpers shared by the node's and the wallet's integration tests (dev-only, never
//! published).
//!
//! Both crates test the REST layer against an in-process stand-in for a 4-replica cluster: one
//! real [`LedgerState`] behind the node's `Backend` trait, every receipt and read statement
//! signed with real ed25519 replica keys. Consensus is not simulated: [`InstantLedger`] applies
//! each submission at once as a one-transaction block, as the live cluster would after ordering
//! it. How the replicas misbehave (altered statements, bad signatures, lies, stalls) stays in
//! each crate's tests.

use coffer_ledger::attest::{ReceiptStatement, Signed};
use coffer_ledger::{
    Block, ChainId, Genesis, Keypair, LedgerState, ReplicaInfo, ReplicaKey, SignedTransaction, Txid,
};
use coffer_node::api::answer;
use coffer_node::api::{BackendError, BlockTx, BlockView, ReceiptBundle, ReplicaStatus, TxStatus};
use ed25519_dalek::SigningKey;
use std::collections::HashMap;

/// Genesis of `chain` with one issuer and one replica (`replica-{i}`) per key, default limits.
///
/// # Panics
/// If `chain` is not a valid chain id.
pub fn genesis(chain: &str, issuer: &Keypair, keys: &[SigningKey]) -> Genesis {
    Genesis {
        chain_id: ChainId::new(chain).expect("chain id"),
        issuers: vec![issuer.public_key()],
        replicas: keys
            .iter()
            .enumerate()
            .map(|(i, k)| ReplicaInfo {
                name: format!("replica-{i}"),
                public_key: ReplicaKey(k.verifying_key().to_bytes()),
            })
            .collect(),
        limits: Default::default(),
    }
}

/// Every replica (`replica-{i}`, by key) as reachable and at `height`.
pub fn replica_statuses(keys: &[SigningKey], height: u64) -> Vec<ReplicaStatus> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| ReplicaStatus {
            name: format!("replica-{i}"),
            public_key: hex::encode(k.verifying_key().to_bytes()),
            height: Some(height),
            reachable: true,
        })
        .collect()
}

/// A ledger that commits every submission at once as a one-transaction block, and remembers
/// each transaction's receipts and each block's summary.
pub struct InstantLedger {
    ledger: LedgerState,
    txs: HashMap<Txid, ReceiptBundle>,
    blocks: Vec<BlockView>,
}

impl InstantLedger {
    /// An empty ledger from `genesis`.
    ///
    /// # Panics
    /// If `genesis` is not valid.
    pub fn new(genesis: Genesis) -> Self {
        InstantLedger {
            ledger: LedgerState::new(genesis).expect("valid genesis"),
            txs: HashMap::new(),
            blocks: Vec::new(),
        }
    }

    /// The ledger state after the last block.
    pub fn ledger(&self) -> &LedgerState {
        &self.ledger
    }

    /// The committed answer for `txid`, if it was applied.
    pub fn bundle(&self, txid: &Txid) -> Option<&ReceiptBundle> {
        self.txs.get(txid)
    }

    /// Checks `tx` as the gateway does before ordering (a failure is a `Rejected` answer), then
    /// applies it as the next block. `attest` signs its receipt statement as the replicas
    /// would. Returns the committed answer, also kept for [`bundle`](Self::bundle).
    ///
    /// # Errors
    /// `Rejected` with the ledger's code when the stateless check fails; `Internal` when the
    /// block does not apply.
    pub fn apply(
        &mut self,
        tx: SignedTransaction,
        attest: impl FnOnce(&ReceiptStatement) -> Vec<Signed<ReceiptStatement>>,
    ) -> Result<ReceiptBundle, BackendError> {
        let txid = tx.txid();
        self.ledger
            .verify_stateless(&tx)
            .map_err(|code| BackendError::Rejected {
                code,
                message: format!("transaction {txid}"),
            })?;
        let height = self.ledger.height() + 1;
        let applied = self
            .ledger
            .apply(&Block {
                height,
                txs: vec![tx],
            })
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        let statement = answer::receipt_statement(
            &self.ledger.genesis().chain_id,
            &applied.receipts[0],
            &applied.commitment,
        );
        let code = statement.code.clone();
        let bundle = ReceiptBundle {
            txid,
            status: TxStatus::Committed,
            height: Some(height),
            code: Some(code.clone()),
            receipts: attest(&statement),
        };
        self.txs.insert(txid, bundle.clone());
        self.blocks.push(BlockView {
            height,
            commitment: hex::encode(applied.commitment.state_hash.0),
            transactions: vec![BlockTx { txid, code }],
        });
        Ok(bundle)
    }

    /// The summaries of the blocks from `from` to `to`, both included.
    pub fn blocks(&self, from: u64, to: u64) -> Vec<BlockView> {
        self.blocks
            .iter()
            .filter(|b| (from..=to).contains(&b.height))
            .cloned()
            .collect()
    }
}

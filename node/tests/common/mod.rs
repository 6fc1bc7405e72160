//! Shared by the API tests: an in-memory [`Backend`] that simulates a 4-replica cluster in one
//! process (a real `LedgerState`, real ed25519 replica keys signing every receipt and read
//! statement, optionally one Byzantine replica), the dev TLS files and an HTTPS client.
//!
//! Consensus is not simulated: each submission is applied at once as a one-transaction block.
//! The live 4-replica cluster replaces this backend when the node wires consensus.

#![allow(dead_code, missing_docs)]

pub mod client;

use coffer_ledger::attest::{self, ReadQuery, Signed};
use coffer_ledger::{
    Address, Amount, Block, ChainId, Genesis, Keypair, Mint, OutPoint, ReplicaInfo, ReplicaKey,
    SignedTransaction, Transaction, Transfer, TxOut, Txid,
};
use coffer_node::api::answer;
use coffer_node::api::{
    AttestedRead, Backend, BackendError, BlockTx, BlockView, ClusterStatus, ReceiptBundle,
    ReplicaStatus, SubmitOutcome, TxStatus,
};
use ed25519_dalek::SigningKey;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub const CHAIN: &str = "coffer-apitest";
pub const REPLICAS: u8 = 4;

/// What the Byzantine replica (the last one) does, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Every replica is honest.
    None,
    /// Signs receipts and reads with altered contents (result code, commitment, result digest).
    AltersStatements,
    /// Returns statements with signatures that do not verify.
    BadSignatures,
}

/// The dev TLS directory checked in at `fixtures/tls`.
pub fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tls")
}

pub fn dev_ca() -> Vec<u8> {
    std::fs::read(tls_dir().join("ca.pem")).expect("fixtures/tls/ca.pem")
}

pub fn dev_server_tls(replica: usize) -> std::sync::Arc<rustls::ServerConfig> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    coffer_node::api::tls::TlsSettings::dev(&root, replica)
        .load()
        .expect("dev server TLS config")
}

/// Deterministic replica keys (seeds 1..=4) and issuer.
pub fn replica_keys() -> Vec<SigningKey> {
    (1..=REPLICAS)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect()
}

pub fn issuer() -> Keypair {
    Keypair::from_secret_bytes([7; 32]).expect("issuer key")
}

pub fn genesis() -> Genesis {
    let replicas = replica_keys()
        .iter()
        .enumerate()
        .map(|(i, k)| ReplicaInfo {
            name: format!("replica-{i}"),
            public_key: ReplicaKey(k.verifying_key().to_bytes()),
        })
        .collect();
    Genesis {
        chain_id: ChainId::new(CHAIN).expect("chain id"),
        issuers: vec![issuer().public_key()],
        replicas,
        limits: Default::default(),
    }
}

pub fn replica_set() -> attest::ReplicaSet {
    attest::ReplicaSet::new(replica_keys().iter().map(|k| k.verifying_key().to_bytes()))
        .expect("replica set")
}

/// A signed mint of `amount` to `to`.
pub fn mint(to: Address, amount: u64, nonce: u64) -> SignedTransaction {
    Transaction::Mint(Mint {
        chain_id: ChainId::new(CHAIN).expect("chain id"),
        issuer: issuer().public_key(),
        nonce,
        outputs: vec![TxOut::to_address(Amount(amount), to)],
    })
    .sign(&issuer())
}

/// A signed transfer spending `inputs` of `from`.
pub fn transfer(
    from: &Keypair,
    inputs: Vec<OutPoint>,
    outputs: Vec<(Address, u64)>,
) -> SignedTransaction {
    Transaction::Transfer(Transfer {
        chain_id: ChainId::new(CHAIN).expect("chain id"),
        signer: from.public_key(),
        inputs,
        outputs: outputs
            .into_iter()
            .map(|(a, v)| TxOut::to_address(Amount(v), a))
            .collect(),
    })
    .sign(from)
}

struct Inner {
    ledger: coffer_ledger::LedgerState,
    txs: HashMap<Txid, ReceiptBundle>,
    blocks: Vec<BlockView>,
}

pub struct MemoryCluster {
    keys: Vec<SigningKey>,
    byzantine: Byzantine,
    /// When set, `status` takes this long (to exercise the gateway's deadline).
    pub stall_status: Option<std::time::Duration>,
    inner: Mutex<Inner>,
}

impl MemoryCluster {
    pub fn new(byzantine: Byzantine) -> Self {
        let ledger = coffer_ledger::LedgerState::new(genesis()).expect("valid genesis");
        MemoryCluster {
            keys: replica_keys(),
            byzantine,
            stall_status: None,
            inner: Mutex::new(Inner {
                ledger,
                txs: HashMap::new(),
                blocks: Vec::new(),
            }),
        }
    }

    /// Every replica's attestation of `statement`, the last one's per `byzantine`.
    fn attest_all<S: attest::Statement>(
        &self,
        statement: &S,
        alter: impl Fn(&mut S),
    ) -> Vec<Signed<S>> {
        let mut out = Vec::with_capacity(self.keys.len());
        for (i, key) in self.keys.iter().enumerate() {
            let last = i + 1 == self.keys.len();
            let mut s = statement.clone();
            if last && self.byzantine == Byzantine::AltersStatements {
                alter(&mut s);
            }
            let mut signed = attest::sign(s, key).expect("valid statement");
            if last && self.byzantine == Byzantine::BadSignatures {
                signed.attestation.signature[10] ^= 0x40;
            }
            out.push(signed);
        }
        out
    }
}

impl Backend for MemoryCluster {
    async fn submit(
        &self,
        tx: SignedTransaction,
        wait: bool,
    ) -> Result<SubmitOutcome, BackendError> {
        let mut inner = self.inner.lock().expect("lock");
        let txid = tx.txid();
        if let Some(bundle) = inner.txs.get(&txid) {
            return Ok(SubmitOutcome {
                replayed: true,
                bundle: bundle.clone(),
            });
        }
        inner
            .ledger
            .verify_stateless(&tx)
            .map_err(|code| BackendError::Rejected {
                code,
                message: format!("transaction {txid}"),
            })?;
        let height = inner.ledger.height() + 1;
        let applied = inner
            .ledger
            .apply(&Block {
                height,
                txs: vec![tx],
            })
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        let commitment = applied.commitment.state_hash.0;
        let statement = answer::receipt_statement(
            &inner.ledger.genesis().chain_id,
            &applied.receipts[0],
            &applied.commitment,
        );
        let code = statement.code.clone();
        let receipts = self.attest_all(&statement, |s| {
            s.code = if s.code == attest::CODE_OK {
                "insufficient_funds".into()
            } else {
                attest::CODE_OK.into()
            };
        });
        let bundle = ReceiptBundle {
            txid,
            status: TxStatus::Committed,
            height: Some(height),
            code: Some(code.clone()),
            receipts,
        };
        inner.txs.insert(txid, bundle.clone());
        inner.blocks.push(BlockView {
            height,
            commitment: hex::encode(commitment),
            transactions: vec![BlockTx { txid, code }],
        });
        if wait {
            Ok(SubmitOutcome {
                replayed: false,
                bundle,
            })
        } else {
            // As if the answer left before the commit: pending, no receipts yet.
            let pending = ReceiptBundle {
                txid,
                status: TxStatus::Pending,
                height: None,
                code: None,
                receipts: Vec::new(),
            };
            Ok(SubmitOutcome {
                replayed: false,
                bundle: pending,
            })
        }
    }

    async fn transaction(&self, txid: Txid) -> Result<Option<ReceiptBundle>, BackendError> {
        Ok(self.inner.lock().expect("lock").txs.get(&txid).cloned())
    }

    async fn read(&self, query: ReadQuery) -> Result<AttestedRead, BackendError> {
        let inner = self.inner.lock().expect("lock");
        let ledger = &inner.ledger;
        let result = answer::answer_read(ledger, &query)?;
        let commitment = ledger.commitment();
        let chain_id = &ledger.genesis().chain_id;
        let statement = answer::read_statement(chain_id, &commitment, &query, &result)?;
        let attestations = self.attest_all(&statement, |s| s.result_digest[0] ^= 1);
        Ok(AttestedRead {
            height: commitment.height,
            commitment: hex::encode(commitment.state_hash.0),
            result,
            attestations,
        })
    }

    async fn block(&self, height: u64) -> Result<Option<BlockView>, BackendError> {
        let inner = self.inner.lock().expect("lock");
        let index = usize::try_from(height).ok().and_then(|h| h.checked_sub(1));
        Ok(index.and_then(|i| inner.blocks.get(i)).cloned())
    }

    async fn blocks(&self, from: u64, to: u64) -> Result<Vec<BlockView>, BackendError> {
        let inner = self.inner.lock().expect("lock");
        Ok(inner
            .blocks
            .iter()
            .filter(|b| (from..=to).contains(&b.height))
            .cloned()
            .collect())
    }

    async fn status(&self) -> Result<ClusterStatus, BackendError> {
        if let Some(stall) = self.stall_status {
            tokio::time::sleep(stall).await;
        }
        let inner = self.inner.lock().expect("lock");
        let height = inner.ledger.height();
        let replicas = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| ReplicaStatus {
                name: format!("replica-{i}"),
                public_key: hex::encode(k.verifying_key().to_bytes()),
                height: Some(height),
                reachable: true,
            })
            .collect();
        Ok(ClusterStatus {
            chain_id: CHAIN.to_owned(),
            replica: "replica-0".to_owned(),
            height,
            view: height,
            leader: Some(hex::encode(self.keys[0].verifying_key().to_bytes())),
            replicas,
            healthy: true,
            max_faulty: 1,
        })
    }
}

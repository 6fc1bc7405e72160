//! Shared by the API tests: an in-memory [`Backend`] that simulates a 4-replica cluster in one
//! process (a real `LedgerState`, real ed25519 replica keys signing every receipt and read
//! statement, optionally one Byzantine replica), the dev TLS files and an HTTPS client.
//!
//! Consensus is not simulated: each submission is applied at once as a one-transaction block
//! (`coffer_testkit::InstantLedger`, shared with the wallet's tests). The live 4-replica cluster
//! replaces this backend when the node wires consensus.

#![allow(dead_code, missing_docs)]

pub mod client;

use coffer_ledger::attest::{self, ReadQuery, Signed};
use coffer_ledger::{
    Address, Amount, ChainId, Genesis, Keypair, Mint, OutPoint, SignedTransaction, Transaction,
    Transfer, TxOut, Txid,
};
use coffer_node::api::answer;
use coffer_node::api::{
    AttestedRead, Backend, BackendError, BlockView, ClusterStatus, ReceiptBundle, SubmitOutcome,
};
use coffer_testkit::InstantLedger;
use ed25519_dalek::SigningKey;
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
    coffer_testkit::genesis(CHAIN, &issuer(), &replica_keys())
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

pub struct MemoryCluster {
    keys: Vec<SigningKey>,
    byzantine: Byzantine,
    /// When set, `status` takes this long (to exercise the gateway's deadline).
    pub stall_status: Option<std::time::Duration>,
    chain: Mutex<InstantLedger>,
}

impl MemoryCluster {
    pub fn new(byzantine: Byzantine) -> Self {
        MemoryCluster {
            keys: replica_keys(),
            byzantine,
            stall_status: None,
            chain: Mutex::new(InstantLedger::new(genesis())),
        }
    }

    /// Every replica's attestation of `statement`, the last one's per `byzantine`.
    fn attest_all<S: attest::Statement>(
        &self,
        statement: &S,
        alter: impl Fn(&mut S),
    ) -> Vec<Signed<S>> {
        self.attest_all_with(statement, alter, |s, key| {
            attest::sign(s, key).expect("valid statement")
        })
    }

    /// [`attest_all`](Self::attest_all) for a receipt, signed the way replicas sign a block's
    /// receipts: over their Merkle root, with an inclusion proof (here a block of one).
    fn attest_receipt(
        &self,
        statement: &attest::ReceiptStatement,
        alter: impl Fn(&mut attest::ReceiptStatement),
    ) -> Vec<Signed<attest::ReceiptStatement>> {
        self.attest_all_with(statement, alter, |s, key| {
            attest::sign_receipts(vec![s], key)
                .expect("valid statement")
                .pop()
                .expect("one receipt")
        })
    }

    fn attest_all_with<S: attest::Statement>(
        &self,
        statement: &S,
        alter: impl Fn(&mut S),
        sign: impl Fn(S, &SigningKey) -> Signed<S>,
    ) -> Vec<Signed<S>> {
        let mut out = Vec::with_capacity(self.keys.len());
        for (i, key) in self.keys.iter().enumerate() {
            let last = i + 1 == self.keys.len();
            let mut s = statement.clone();
            if last && self.byzantine == Byzantine::AltersStatements {
                alter(&mut s);
            }
            let mut signed = sign(s, key);
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
        let mut chain = self.chain.lock().expect("lock");
        let txid = tx.txid();
        if let Some(bundle) = chain.bundle(&txid) {
            return Ok(SubmitOutcome {
                replayed: true,
                bundle: bundle.clone(),
            });
        }
        let bundle = chain.apply(tx, |statement| {
            self.attest_receipt(statement, |s| {
                s.code = if s.code == attest::CODE_OK {
                    "insufficient_funds".into()
                } else {
                    attest::CODE_OK.into()
                };
            })
        })?;
        Ok(SubmitOutcome {
            replayed: false,
            // Without `wait`, as if the answer left before the commit.
            bundle: if wait {
                bundle
            } else {
                ReceiptBundle::pending(txid)
            },
        })
    }

    async fn transaction(&self, txid: Txid) -> Result<Option<ReceiptBundle>, BackendError> {
        Ok(self.chain.lock().expect("lock").bundle(&txid).cloned())
    }

    async fn read(&self, query: ReadQuery) -> Result<AttestedRead, BackendError> {
        let chain = self.chain.lock().expect("lock");
        let ledger = chain.ledger();
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
        Ok(self.blocks(height, height).await?.pop())
    }

    async fn blocks(&self, from: u64, to: u64) -> Result<Vec<BlockView>, BackendError> {
        Ok(self.chain.lock().expect("lock").blocks(from, to))
    }

    async fn status(&self) -> Result<ClusterStatus, BackendError> {
        if let Some(stall) = self.stall_status {
            tokio::time::sleep(stall).await;
        }
        let height = self.chain.lock().expect("lock").ledger().height();
        let replicas = coffer_testkit::replica_statuses(&self.keys, height);
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

//! Shared by the wallet's tests: four REST gateways (the node's real `ApiServer`, real TLS with
//! the checked-in dev certificates) in front of one in-memory ledger that stands in for a
//! 4-replica cluster. Every receipt and read statement is signed with the four replicas' real
//! ed25519 keys. Each gateway can misbehave on its own: lie (fabricated results signed by its
//! own key), be down (503) or stall (never answers in time). One more "blackhole" endpoint
//! accepts TCP connections and never speaks, for client-side timeouts.
//!
//! Consensus is not simulated: each submission is applied at once as a one-transaction block,
//! as the live cluster would after ordering it (`coffer_testkit::InstantLedger`, shared with the
//! node's API tests).

#![allow(dead_code, missing_docs)]

use coffer_ledger::attest::{self, ReadQuery, ReadResult, ReceiptStatement, Signed, UtxoEntry};
use coffer_ledger::{Genesis, Keypair, LedgerState, SignedTransaction, Txid};
use coffer_node::api::answer;
use coffer_node::api::{
    ApiConfig, ApiServer, AttestedRead, Backend, BackendError, BlockView, ClusterStatus,
    ReceiptBundle, SubmitOutcome, TxStatus,
};
use coffer_testkit::InstantLedger;
use coffer_wallet::{ClusterConfig, ReplicaEndpoint};
use ed25519_dalek::SigningKey;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const CHAIN: &str = "coffer-wallettest";
pub const N: usize = 4;

/// How one gateway behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Fabricates results (inflated balances, fake commits it never applies) and signs them
    /// with its own replica key; also signs altered statements inside honest gateways' answers.
    Liar,
    /// Answers 503 `busy` to everything.
    Down,
    /// Never answers; the gateway's deadline turns that into 504.
    Stall,
    /// Honest, but serves reads from the state frozen by [`Shared::freeze`] (a replica that
    /// has not executed the latest blocks yet); every replica's signature on that older state
    /// is genuine.
    Lagging,
    /// Honest, but answers every submission `pending` (as a gateway whose commit wait ran
    /// out would, before the block is finalized); the receipts come later by txid.
    AnswersPending,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn ca_path() -> PathBuf {
    repo_root().join("fixtures/tls/ca.pem")
}

pub fn replica_keys() -> Vec<SigningKey> {
    (0..N)
        .map(|i| SigningKey::from_bytes(&[u8::try_from(i).expect("small") + 41; 32]))
        .collect()
}

/// The genesis issuer's key (dev only).
pub fn issuer() -> Keypair {
    Keypair::from_secret_bytes([7; 32]).expect("issuer key")
}

pub fn genesis() -> Genesis {
    coffer_testkit::genesis(CHAIN, &issuer(), &replica_keys())
}

struct Inner {
    chain: InstantLedger,
    frozen: Option<LedgerState>,
}

/// The one ledger behind every gateway, and which replica (if any) lies.
pub struct Shared {
    keys: Vec<SigningKey>,
    liar: Option<usize>,
    inner: Mutex<Inner>,
}

impl Shared {
    fn new(liar: Option<usize>) -> Self {
        Shared {
            keys: replica_keys(),
            liar,
            inner: Mutex::new(Inner {
                chain: InstantLedger::new(genesis()),
                frozen: None,
            }),
        }
    }

    /// Every replica's signature on `statement`; the liar signs an altered one.
    fn attest_all<S: attest::Statement>(
        &self,
        statement: &S,
        alter: impl Fn(&mut S),
    ) -> Vec<Signed<S>> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let mut s = statement.clone();
                if Some(i) == self.liar {
                    alter(&mut s);
                }
                attest::sign(s, key).expect("valid statement")
            })
            .collect()
    }

    /// From now on, lagging gateways read this state.
    pub fn freeze(&self) {
        let mut inner = self.inner.lock().expect("lock");
        inner.frozen = Some(inner.chain.ledger().clone());
    }

    /// Number of blocks applied (each submission that was not a replay makes one).
    pub fn height(&self) -> u64 {
        self.inner.lock().expect("lock").chain.ledger().height()
    }
}

pub struct Gateway {
    shared: Arc<Shared>,
    index: usize,
    behaviour: Behaviour,
}

const FOREVER: Duration = Duration::from_secs(3600);

impl Gateway {
    async fn gate(&self) -> Result<(), BackendError> {
        match self.behaviour {
            Behaviour::Down => Err(BackendError::Busy("replica down for the test".into())),
            Behaviour::Stall => {
                tokio::time::sleep(FOREVER).await;
                Err(BackendError::Timeout("stalled".into()))
            }
            _ => Ok(()),
        }
    }

    fn my_key(&self) -> &SigningKey {
        &self.shared.keys[self.index]
    }

    /// A receipt claiming `txid` committed fine, signed by this (lying) replica only.
    fn fake_bundle(&self, txid: Txid) -> ReceiptBundle {
        let statement = ReceiptStatement {
            chain_id: CHAIN.into(),
            txid: txid.0,
            height: 999,
            code: attest::CODE_OK.into(),
            commitment: [0xAB; 32],
        };
        ReceiptBundle {
            txid,
            status: TxStatus::Committed,
            height: Some(999),
            code: Some(attest::CODE_OK.into()),
            receipts: vec![attest::sign(statement, self.my_key()).expect("sign")],
        }
    }
}

impl Backend for Gateway {
    async fn submit(
        &self,
        tx: SignedTransaction,
        wait: bool,
    ) -> Result<SubmitOutcome, BackendError> {
        self.gate().await?;
        let txid = tx.txid();
        if self.behaviour == Behaviour::Liar {
            // Claims a commit it never performed.
            return Ok(SubmitOutcome {
                replayed: false,
                bundle: self.fake_bundle(txid),
            });
        }
        let shared = &self.shared;
        let mut inner = shared.inner.lock().expect("lock");
        if let Some(bundle) = inner.chain.bundle(&txid) {
            let bundle = if self.behaviour == Behaviour::AnswersPending {
                ReceiptBundle::pending(txid)
            } else {
                bundle.clone()
            };
            return Ok(SubmitOutcome {
                replayed: self.behaviour != Behaviour::AnswersPending,
                bundle,
            });
        }
        let bundle = inner.chain.apply(tx, |statement| {
            shared.attest_all(statement, |s| s.commitment[0] ^= 1)
        })?;
        let bundle = if wait && self.behaviour != Behaviour::AnswersPending {
            bundle
        } else {
            ReceiptBundle::pending(txid)
        };
        Ok(SubmitOutcome {
            replayed: false,
            bundle,
        })
    }

    async fn transaction(&self, txid: Txid) -> Result<Option<ReceiptBundle>, BackendError> {
        self.gate().await?;
        if self.behaviour == Behaviour::Liar {
            return Ok(Some(self.fake_bundle(txid)));
        }
        Ok(self
            .shared
            .inner
            .lock()
            .expect("lock")
            .chain
            .bundle(&txid)
            .cloned())
    }

    async fn read(&self, query: ReadQuery) -> Result<AttestedRead, BackendError> {
        self.gate().await?;
        let inner = self.shared.inner.lock().expect("lock");
        let ledger = match (&inner.frozen, self.behaviour) {
            (Some(frozen), Behaviour::Lagging) => frozen,
            _ => inner.chain.ledger(),
        };
        let truth = answer::answer_read(ledger, &query)?;
        let commitment = ledger.commitment();
        let chain_id = &ledger.genesis().chain_id;
        let true_statement = answer::read_statement(chain_id, &commitment, &query, &truth)?;
        if self.behaviour == Behaviour::Liar {
            let lie = match truth {
                ReadResult::Balance { amount, utxo_count } => ReadResult::Balance {
                    amount: amount + 1_000_000,
                    utxo_count: utxo_count + 1,
                },
                ReadResult::Utxos {
                    mut entries,
                    next_cursor,
                } => {
                    entries.push(UtxoEntry {
                        txid: [0xEE; 32],
                        vout: 0,
                        amount: 1_000_000,
                    });
                    ReadResult::Utxos {
                        entries,
                        next_cursor,
                    }
                }
                ReadResult::History { .. } => ReadResult::History {
                    entries: Vec::new(),
                    next_cursor: None,
                },
                ReadResult::Supply { total } => ReadResult::Supply { total: total * 2 },
                other => other,
            };
            // Its own signature on the lie, plus the honest replicas' genuine signatures on
            // the truth, hoping the client counts signatures without matching them.
            let lie_statement = answer::read_statement(chain_id, &commitment, &query, &lie)?;
            let mut attestations = vec![attest::sign(lie_statement, self.my_key()).expect("sign")];
            attestations.extend(
                self.shared
                    .keys
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != self.index)
                    .map(|(_, k)| attest::sign(true_statement.clone(), k).expect("sign")),
            );
            return Ok(AttestedRead {
                height: commitment.height,
                commitment: hex::encode(commitment.state_hash.0),
                result: lie,
                attestations,
            });
        }
        let attestations = self
            .shared
            .attest_all(&true_statement, |s| s.result_digest[0] ^= 1);
        Ok(AttestedRead {
            height: commitment.height,
            commitment: hex::encode(commitment.state_hash.0),
            result: truth,
            attestations,
        })
    }

    async fn block(&self, height: u64) -> Result<Option<BlockView>, BackendError> {
        Ok(self.blocks(height, height).await?.pop())
    }

    async fn blocks(&self, from: u64, to: u64) -> Result<Vec<BlockView>, BackendError> {
        self.gate().await?;
        let mut found = self
            .shared
            .inner
            .lock()
            .expect("lock")
            .chain
            .blocks(from, to);
        if self.behaviour == Behaviour::Liar {
            for b in &mut found {
                b.commitment = "ab".repeat(32);
            }
        }
        Ok(found)
    }

    async fn status(&self) -> Result<ClusterStatus, BackendError> {
        self.gate().await?;
        let height = self.shared.height();
        Ok(ClusterStatus {
            chain_id: CHAIN.into(),
            replica: format!("replica-{}", self.index),
            height,
            view: height,
            leader: None,
            replicas: coffer_testkit::replica_statuses(&self.shared.keys, height),
            healthy: true,
            max_faulty: 1,
        })
    }
}

/// Four gateways over one ledger, and a cluster config file pointing at them.
pub struct TestCluster {
    pub servers: Vec<ApiServer>,
    pub shared: Arc<Shared>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl TestCluster {
    pub async fn start(behaviours: [Behaviour; N]) -> TestCluster {
        let liar = behaviours.iter().position(|b| *b == Behaviour::Liar);
        let shared = Arc::new(Shared::new(liar));
        let api = ApiConfig {
            request_timeout: Duration::from_millis(500),
            submit_timeout: Duration::from_millis(500),
            ..ApiConfig::default()
        };
        let mut servers = Vec::with_capacity(N);
        for (index, behaviour) in behaviours.into_iter().enumerate() {
            let tls = coffer_node::api::tls::TlsSettings::dev(&repo_root(), index)
                .load()
                .expect("dev TLS");
            let gateway = Gateway {
                shared: shared.clone(),
                index,
                behaviour,
            };
            servers.push(
                ApiServer::start(
                    "127.0.0.1:0".parse().expect("addr"),
                    tls,
                    api.clone(),
                    Arc::new(gateway),
                )
                .await
                .expect("gateway starts"),
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("cluster.json");
        let cluster = TestCluster {
            servers,
            shared,
            dir,
            config_path,
        };
        let json = serde_json::to_string_pretty(&cluster.config()).expect("json");
        std::fs::write(&cluster.config_path, json).expect("write cluster config");
        cluster
    }

    /// The client config for these gateways, CA by path (as the testnet generator writes it).
    pub fn config(&self) -> ClusterConfig {
        let replicas = self
            .servers
            .iter()
            .zip(replica_keys())
            .enumerate()
            .map(|(i, (s, k))| ReplicaEndpoint {
                name: format!("replica-{i}"),
                url: format!("https://127.0.0.1:{}", s.local_addr().port()),
                public_key: hex::encode(k.verifying_key().to_bytes()),
            })
            .collect();
        let config = ClusterConfig {
            chain_id: CHAIN.into(),
            f: 1,
            replicas,
            ca_cert: Some(ca_path()),
            ca_cert_pem: None,
            request_timeout_ms: 2_000,
            submit_timeout_ms: 3_000,
            max_inputs: 256,
        };
        let text = serde_json::to_string(&config).expect("json");
        ClusterConfig::from_json(&text, &repo_root()).expect("valid config")
    }

    /// [`config`](Self::config) with other replica keys than the gateways sign with: no answer
    /// verifies.
    pub fn config_with_wrong_keys(&self) -> ClusterConfig {
        let mut config = self.config();
        for (i, r) in config.replicas.iter_mut().enumerate() {
            let k = SigningKey::from_bytes(&[u8::try_from(i).expect("small") + 90; 32]);
            r.public_key = hex::encode(k.verifying_key().to_bytes());
        }
        config
    }

    /// [`config`](Self::config) with every replica's URL a port nothing listens on.
    pub fn config_all_down(&self) -> ClusterConfig {
        let mut config = self.config();
        for r in &mut config.replicas {
            r.url = closed_port_url();
        }
        config
    }

    pub async fn stop(self) {
        for s in self.servers {
            s.shutdown().await;
        }
    }
}

/// A TCP listener that completes handshakes (kernel backlog) but never reads or writes: a
/// replica that hangs. Returns the listener (keep it alive) and its URL.
pub fn blackhole() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("https://127.0.0.1:{}", l.local_addr().expect("addr").port());
    (l, url)
}

/// A port with nothing listening (bound then released).
pub fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("https://127.0.0.1:{port}")
}

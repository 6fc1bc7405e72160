//! Spawns clusters of real `coffer-node` processes on loopback for tests and benchmarks, and
//! builds ledger transactions for them.

#![allow(dead_code)]

use coffer_ledger::{
    Amount, ChainId, Genesis, Keypair, Limits, Mint, OutPoint, ReplicaInfo, Transaction, Transfer,
    TxOut, Txid,
};
use coffer_node::{
    config::{
        ConsensusSection, NodeConfig, PeerEntry, genesis_key, private_key_hex, public_key_hex,
    },
    ingress::Client,
};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running cluster; its processes are killed and its directory removed on drop.
pub struct ProcessCluster {
    pub children: Vec<Option<Child>>,
    pub ingress: Vec<SocketAddr>,
    pub configs: Vec<PathBuf>,
    pub dir: PathBuf,
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Set COFFER_KEEP_LOGS to inspect the replicas' logs and data after a run.
        if std::env::var_os("COFFER_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The issuer of test money.
pub fn issuer() -> Keypair {
    Keypair::from_secret_bytes([42; 32]).expect("valid secret")
}

/// A test wallet.
pub fn wallet(i: u32) -> Keypair {
    let mut secret = [7u8; 32];
    secret[..4].copy_from_slice(&i.to_be_bytes());
    Keypair::from_secret_bytes(secret).expect("valid secret")
}

/// Encoded mint of `outputs` outputs of `amount` each to `to`.
pub fn mint(chain: &ChainId, nonce: u64, to: &Keypair, outputs: usize, amount: u64) -> Vec<u8> {
    let issuer = issuer();
    issuer
        .sign_tx(Transaction::Mint(Mint {
            chain_id: chain.clone(),
            issuer: issuer.public_key(),
            nonce,
            outputs: vec![TxOut::to_address(Amount(amount), to.address()); outputs],
        }))
        .encode()
}

/// Encoded transfer of output `vout` of `txid` (owned by `from`, worth `amount`) to `to`.
pub fn spend(
    chain: &ChainId,
    from: &Keypair,
    txid: Txid,
    vout: u32,
    amount: u64,
    to: &Keypair,
) -> Vec<u8> {
    from.sign_tx(Transaction::Transfer(Transfer {
        chain_id: chain.clone(),
        signer: from.public_key(),
        inputs: vec![OutPoint { txid, vout }],
        outputs: vec![TxOut::to_address(Amount(amount), to.address())],
    }))
    .encode()
}

/// The txid of encoded transaction bytes, as the node reports it.
pub fn txid_of(bytes: &[u8]) -> coffer_node::tx::Txid {
    let txid = coffer_ledger::SignedTransaction::decode(bytes)
        .expect("valid transaction")
        .txid();
    coffer_node::tx::Txid(txid.0)
}

/// Writes a genesis and configs for `n` replicas and starts them.
pub fn start_cluster(name: &str, n: usize) -> (ProcessCluster, ChainId) {
    let dir = std::env::temp_dir().join(format!("coffer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let keys: Vec<PrivateKey> = (0..n)
        .map(|i| PrivateKey::from_seed(5_000 + i as u64))
        .collect();
    let p2p: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
    let ingress: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
    let peers: Vec<PeerEntry> = keys
        .iter()
        .zip(&p2p)
        .map(|(k, a)| PeerEntry {
            public_key: public_key_hex(&k.public_key()),
            address: a.to_string(),
        })
        .collect();
    let chain = ChainId::new(format!("{name}-chain")).expect("valid chain id");
    let genesis = Genesis {
        chain_id: chain.clone(),
        issuers: vec![issuer().public_key()],
        replicas: keys
            .iter()
            .enumerate()
            .map(|(i, k)| ReplicaInfo {
                name: format!("r{i}"),
                public_key: genesis_key(&k.public_key()),
            })
            .collect(),
        limits: Limits::default(),
    };
    std::fs::write(dir.join("genesis.json"), genesis.to_json()).expect("write genesis");
    let mut configs = Vec::new();
    let mut children = Vec::new();
    for i in 0..n {
        let config = NodeConfig {
            genesis: "genesis.json".into(),
            data_dir: dir.join(format!("node{i}")),
            private_key: private_key_hex(&keys[i]),
            p2p_listen: p2p[i],
            ingress_listen: Some(ingress[i]),
            api: None,
            storage: coffer_node::storage::StorageConfig::Memory,
            consensus: ConsensusSection::default(),
            health: Default::default(),
            shutdown: Default::default(),
            peers: peers.clone(),
            base_dir: PathBuf::new(),
        };
        let path = dir.join(format!("node{i}.toml"));
        std::fs::write(&path, config.to_toml()).expect("write config");
        configs.push(path.clone());
        children.push(Some(spawn(&path, &dir.join(format!("node{i}.log")))));
    }
    (
        ProcessCluster {
            children,
            ingress,
            configs,
            dir,
        },
        chain,
    )
}

pub fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_coffer-node"))
        .arg("start")
        .arg("--config")
        .arg(config)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn coffer-node")
}

/// Connects to an ingress, retrying while the process starts.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Client {
    let deadline = Instant::now() + timeout;
    loop {
        match Client::connect(addr) {
            Ok(client) => return client,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {addr}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

//! Spawns clusters of real `coffer-node` processes on loopback for tests and benchmarks.

#![allow(dead_code)]

use coffer_node::{
    config::{
        ConsensusSection, GenesisAccount, NodeConfig, PeerEntry, private_key_hex, public_key_hex,
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

/// Writes configs for `n` replicas with `accounts` funded dev accounts and starts them.
pub fn start_cluster(
    name: &str,
    n: usize,
    accounts: &[PrivateKey],
    balance: u64,
) -> ProcessCluster {
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
            address: *a,
        })
        .collect();
    let genesis: Vec<GenesisAccount> = accounts
        .iter()
        .map(|k| GenesisAccount {
            public_key: public_key_hex(&k.public_key()),
            balance,
        })
        .collect();
    let mut configs = Vec::new();
    let mut children = Vec::new();
    for i in 0..n {
        let config = NodeConfig {
            chain_id: format!("{name}-chain"),
            data_dir: dir.join(format!("node{i}")),
            private_key: private_key_hex(&keys[i]),
            p2p_listen: p2p[i],
            ingress_listen: Some(ingress[i]),
            consensus: ConsensusSection::default(),
            peers: peers.clone(),
            genesis_accounts: genesis.clone(),
        };
        let path = dir.join(format!("node{i}.toml"));
        std::fs::write(&path, config.to_toml()).expect("write config");
        configs.push(path.clone());
        children.push(Some(spawn(&path, &dir.join(format!("node{i}.log")))));
    }
    ProcessCluster {
        children,
        ingress,
        configs,
        dir,
    }
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

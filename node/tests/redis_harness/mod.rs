//! Test harness: real `redis-server` processes on free loopback ports, killed on drop, plus a
//! deterministic block generator standing in for the executor.
//!
//! Every server is a child of the test process (not daemonized), so dropping its handle kills it
//! and a panicking test still cleans up. Ports come from a per-process counter seeded from the
//! pid and are probed before use, so test binaries and threads running at once do not clash;
//! a server that still fails to bind is retried on the next port.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use coffer_node::storage::{
    BlockChange, CreatedOutput, HistoryItem, RedisConfig, RedisMode, Snapshot, SpentOutput, TxItem,
};

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// First and last port handed out: 20000..=22767, so that a port and its cluster bus port
/// (+10000, at most 32767) both lie below Linux's ephemeral range (from 32768), where an
/// outgoing connection could take them between this check and the server's bind, and above
/// the replicas' ports (`coffer_node::testnet::free_base_port`, below 20000).
const FIRST_PORT: u16 = 20_000;
const LAST_PORT: u16 = 22_767;

/// A port whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    if NEXT_PORT.load(Ordering::SeqCst) == 0 {
        // Spread processes over the range so that concurrent test binaries start far apart.
        let span = u32::from(LAST_PORT - FIRST_PORT);
        let seed = FIRST_PORT + u16::try_from(std::process::id() % span).unwrap_or(0);
        let _ = NEXT_PORT.compare_exchange(0, seed, Ordering::SeqCst, Ordering::SeqCst);
    }
    loop {
        let p = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        if p > LAST_PORT {
            NEXT_PORT.store(FIRST_PORT, Ordering::SeqCst);
            continue;
        }
        let ok = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        if ok(p) && ok(p + 10_000) {
            return p;
        }
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU16 = AtomicU16::new(0);
        let dir = std::env::temp_dir().join(format!(
            "coffer-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One redis-server (or sentinel) child process.
pub struct RedisProc {
    pub port: u16,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisProc {
    /// Starts a server on a fresh port with `extra` arguments, AOF on and `appendfsync`.
    pub fn start(dir: &Path, extra: &[String]) -> Self {
        for _ in 0..20 {
            let port = free_port();
            let mut p = Self {
                port,
                args: extra.to_vec(),
                dir: dir.join(port.to_string()),
                child: None,
            };
            if p.spawn() {
                return p;
            }
        }
        panic!("could not start redis-server on any port");
    }

    fn spawn(&mut self) -> bool {
        std::fs::create_dir_all(&self.dir).unwrap();
        let sentinel = self.args.first().is_some_and(|a| a.ends_with(".conf"));
        let mut cmd = Command::new("redis-server");
        if sentinel {
            cmd.arg(&self.args[0]).arg("--sentinel");
            cmd.args(["--port", &self.port.to_string()]);
        } else {
            cmd.args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                ])
                .args(&self.args);
        }
        cmd.arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("redis-server is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false; // exited: most likely the port was taken meanwhile
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts with extra arguments appended (later ones override earlier ones).
    pub fn restart_with(&mut self, extra: &[String]) {
        self.args.extend_from_slice(extra);
        self.restart();
    }

    /// Starts the same server again (same port, same data directory).
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart redis on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -p PORT ARGS...` output, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn ping(port: u16) -> bool {
    cli(port, &["ping"]) == "PONG"
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// A standalone server.
pub struct Standalone {
    pub server: RedisProc,
    _dir: TempDir,
}

impl Standalone {
    pub fn start() -> Self {
        let dir = TempDir::new("standalone");
        let server = RedisProc::start(&dir.0, &[]);
        Self { server, _dir: dir }
    }

    pub fn config(&self, prefix: &str) -> RedisConfig {
        RedisConfig::standalone(self.server.url(), prefix)
    }
}

/// 1 master, 2 replicas, 3 sentinels (quorum 2), failover tuned for tests.
pub struct SentinelGroup {
    pub master: RedisProc,
    pub replicas: Vec<RedisProc>,
    pub sentinels: Vec<RedisProc>,
    dir: TempDir,
}

pub const MASTER_NAME: &str = "coffer";

impl SentinelGroup {
    pub fn start() -> Self {
        let dir = TempDir::new("sentinel");
        let master = RedisProc::start(&dir.0, &[]);
        let replicas: Vec<RedisProc> = (0..2)
            .map(|_| {
                RedisProc::start(
                    &dir.0,
                    &[
                        "--replicaof".into(),
                        "127.0.0.1".into(),
                        master.port.to_string(),
                    ],
                )
            })
            .collect();
        wait_until("replicas online", Duration::from_secs(10), || {
            cli(master.port, &["info", "replication"])
                .matches("state=online")
                .count()
                == 2
        });
        let sentinels = (0..3)
            .map(|i| {
                let conf = dir.0.join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "bind 127.0.0.1\nprotected-mode no\n\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 3000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        master.port
                    ),
                )
                .unwrap();
                RedisProc::start(&dir.0, &[conf.display().to_string()])
            })
            .collect::<Vec<_>>();
        // Each sentinel must know the replicas and the other sentinels before a failover can run.
        for s in &sentinels {
            wait_until("sentinel discovery", Duration::from_secs(15), || {
                let info = cli(s.port, &["sentinel", "master", MASTER_NAME]);
                let field = |name: &str| {
                    let lines: Vec<&str> = info.lines().collect();
                    lines
                        .iter()
                        .position(|l| *l == name)
                        .and_then(|i| lines.get(i + 1))
                        .and_then(|v| v.parse::<u32>().ok())
                        .unwrap_or(0)
                };
                field("num-slaves") == 2 && field("num-other-sentinels") == 2
            });
        }
        Self {
            master,
            replicas,
            sentinels,
            dir,
        }
    }

    pub fn config(&self, prefix: &str) -> RedisConfig {
        let mut c = RedisConfig::with_mode(
            RedisMode::Sentinel {
                master_name: MASTER_NAME.into(),
                sentinels: self.sentinels.iter().map(RedisProc::url).collect(),
            },
            prefix,
        );
        c.durability.wait_replicas = 1;
        c.retry.max_elapsed_ms = 30_000;
        c
    }

    /// The master's port as the sentinels currently see it.
    pub fn current_master_port(&self) -> Option<u16> {
        let out = cli(
            self.sentinels[0].port,
            &["sentinel", "get-master-addr-by-name", MASTER_NAME],
        );
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }
}

/// 3 masters with one replica each, cluster-node-timeout 1000.
pub struct Cluster {
    pub nodes: Vec<RedisProc>,
    dir: TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = TempDir::new("cluster");
        let nodes: Vec<RedisProc> = (0..6)
            .map(|i| {
                RedisProc::start(
                    &dir.0,
                    &[
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        format!("nodes-{i}.conf"),
                        "--cluster-node-timeout".into(),
                        "1000".into(),
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = Self { nodes, dir };
        c.wait_healthy();
        c
    }

    /// Every node reports `cluster_state:ok` and sees 3 masters with a connected replica each.
    pub fn wait_healthy(&self) {
        for n in &self.nodes {
            wait_until("cluster ok", Duration::from_secs(20), || {
                cli(n.port, &["cluster", "info"]).contains("cluster_state:ok")
            });
        }
        wait_until("replicas in sync", Duration::from_secs(20), || {
            self.masters().iter().all(|&p| {
                cli(p, &["info", "replication"]).contains("connected_slaves:1")
                    && cli(p, &["info", "replication"]).contains("state=online")
            })
        });
    }

    /// Ports of the nodes that are masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .filter(|n| cli(n.port, &["role"]).starts_with("master"))
            .map(|n| n.port)
            .collect()
    }

    pub fn config(&self, prefix: &str) -> RedisConfig {
        let mut c = RedisConfig::with_mode(
            RedisMode::Cluster {
                seeds: self.nodes.iter().map(RedisProc::url).collect(),
            },
            prefix,
        );
        c.durability.wait_replicas = 1;
        c.retry.max_elapsed_ms = 30_000;
        c
    }
}

/// A deterministic stand-in for the executor: produces blocks whose changes look like the
/// ledger's (outputs created and spent, history, tx records, mints, rejections in every other
/// block, so the set's key is sometimes left alone) and a commitment computed
/// from the resulting UTXO set, so a restored snapshot can be checked against it.
pub struct Model {
    pub height: u64,
    next_id: u64,
    seqs: BTreeMap<String, u64>,
    /// Remembered spends: (height, outpoint) of the last [`Model::SPENT_HORIZON`] heights.
    spent: Vec<(u64, Vec<u8>)>,
    utxos: BTreeMap<Vec<u8>, (String, u64, Vec<u8>)>,
    supply: u64,
    addresses: u64,
    mints: BTreeSet<[u8; 32]>,
    rejected: BTreeSet<[u8; 32]>,
}

impl Model {
    /// Short, so that every test that writes a few blocks also has the store forget spends.
    pub const SPENT_HORIZON: u64 = 3;

    pub fn new(addresses: u64) -> Self {
        Self {
            height: 0,
            next_id: 0,
            seqs: BTreeMap::new(),
            spent: Vec::new(),
            utxos: BTreeMap::new(),
            supply: 0,
            addresses,
            mints: BTreeSet::new(),
            rejected: BTreeSet::new(),
        }
    }

    fn txid(&mut self) -> [u8; 32] {
        self.next_id += 1;
        let mut h = std::hash::DefaultHasher::new();
        self.next_id.hash(&mut h);
        let x = h.finish().to_be_bytes();
        let mut t = [0u8; 32];
        for (i, b) in t.iter_mut().enumerate() {
            *b = x[i % 8] ^ (i as u8);
        }
        t[24..].copy_from_slice(&self.next_id.to_be_bytes());
        t
    }

    /// The next block: one mint, then `txs` transfers each spending the oldest output.
    pub fn next_block(&mut self, txs: usize) -> (u64, Vec<u8>, BlockChange) {
        self.height += 1;
        let h = self.height;
        let mut c = BlockChange::default();
        let mut position = 0u32;
        let mint = self.txid();
        let addr = format!("cof1addr{}", h % self.addresses);
        self.create(&mut c, mint, 0, &addr, 1_000, h, &mut position);
        c.mints.push(mint);
        self.mints.insert(mint);
        self.supply += 1_000;
        c.txs.push(TxItem {
            txid: mint,
            record: [b"mint:".as_slice(), &h.to_be_bytes()].concat(),
        });
        if h.is_multiple_of(2) {
            let rejected = self.txid();
            c.rejected.push(rejected);
            self.rejected.insert(rejected);
            c.txs.push(TxItem {
                txid: rejected,
                record: [b"rejected:".as_slice(), &h.to_be_bytes()].concat(),
            });
        }
        for i in 0..txs {
            let Some((op, (owner, amount, _))) = self.utxos.pop_first() else {
                break;
            };
            let txid = self.txid();
            c.spent.push(SpentOutput {
                outpoint: op.clone(),
            });
            let seq = self.next_seq(&owner);
            c.history.push(HistoryItem {
                address: owner,
                seq,
                entry: [b"send:".as_slice(), &op].concat(),
            });
            position += 1;
            self.spent.push((h, op));
            let to = format!("cof1addr{}", (h + i as u64) % self.addresses);
            let half = amount / 2;
            self.create(&mut c, txid, 0, &to, half, h, &mut position);
            self.create(&mut c, txid, 1, &to, amount - half, h, &mut position);
            c.txs.push(TxItem {
                txid,
                record: [b"tx:".as_slice(), &h.to_be_bytes()].concat(),
            });
        }
        c.spent_from = h.saturating_sub(Self::SPENT_HORIZON) + 1;
        self.spent.retain(|(at, _)| *at >= c.spent_from);
        c.supply = self.supply;
        c.commitment = self.commitment();
        c.block_record = [b"record:".as_slice(), &h.to_be_bytes()].concat();
        let block = [b"block:".as_slice(), &h.to_be_bytes(), &[7u8; 64]].concat();
        (h, block, c)
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        c: &mut BlockChange,
        txid: [u8; 32],
        vout: u32,
        addr: &str,
        amount: u64,
        h: u64,
        position: &mut u32,
    ) {
        let outpoint = [txid.as_slice(), &vout.to_be_bytes()].concat();
        let output = [addr.as_bytes(), &amount.to_be_bytes()].concat();
        self.utxos
            .insert(outpoint.clone(), (addr.to_owned(), amount, output.clone()));
        c.created.push(CreatedOutput {
            outpoint: outpoint.clone(),
            amount,
            output,
        });
        let seq = self.next_seq(addr);
        c.history.push(HistoryItem {
            address: addr.to_owned(),
            seq,
            entry: [
                b"recv:".as_slice(),
                &outpoint,
                &h.to_be_bytes(),
                &position.to_be_bytes(),
            ]
            .concat(),
        });
        *position += 1;
    }

    fn next_seq(&mut self, address: &str) -> u64 {
        let s = self.seqs.entry(address.to_owned()).or_default();
        *s += 1;
        *s - 1
    }

    /// Each address with history and its number of entries, as a snapshot lists them.
    pub fn history_lengths(&self) -> Vec<(String, u64)> {
        self.seqs.iter().map(|(a, n)| (a.clone(), *n)).collect()
    }

    /// Every remembered spent outpoint with its height, sorted.
    pub fn spent_list(&self) -> Vec<(u64, Vec<u8>)> {
        let mut v = self.spent.clone();
        v.sort();
        v
    }

    /// What the ledger's commitment is in these tests: a hash over the sorted UTXO set.
    pub fn commitment(&self) -> Vec<u8> {
        commitment_of(
            self.utxos
                .iter()
                .map(|(k, (_, _, v))| (k.clone(), v.clone())),
        )
    }

    pub fn supply(&self) -> u64 {
        self.supply
    }

    /// Every mint txid, sorted.
    pub fn mint_list(&self) -> Vec<[u8; 32]> {
        self.mints.iter().copied().collect()
    }

    /// Every rejected txid, sorted.
    pub fn rejected_list(&self) -> Vec<[u8; 32]> {
        self.rejected.iter().copied().collect()
    }

    /// The UTXO set as a snapshot lists it.
    pub fn utxo_list(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.utxos
            .iter()
            .map(|(k, (_, _, v))| (k.clone(), v.clone()))
            .collect()
    }
}

pub fn commitment_of(utxos: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Vec<u8> {
    let mut out = [0u8; 32];
    let mut h = std::hash::DefaultHasher::new();
    for (k, v) in utxos {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    let x = h.finish().to_be_bytes();
    for (i, b) in out.iter_mut().enumerate() {
        *b = x[i % 8];
    }
    out.to_vec()
}

/// Recomputes the commitment from a restored snapshot and checks it against the persisted one.
pub fn assert_snapshot_consistent(s: &Snapshot) {
    let recomputed = commitment_of(s.utxos.iter().cloned());
    assert_eq!(
        recomputed, s.commitment,
        "commitment recomputed from restored state differs at height {}",
        s.height
    );
}

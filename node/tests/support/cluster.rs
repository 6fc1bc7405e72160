//! The one harness for clusters of real `coffer-node` processes on loopback: `coffer-node
//! testnet` generates keys, dev PKI and configs on free ports; each replica runs as `coffer-node
//! start --home DIR/replicaK` with its output appended to `DIR/replicaK/replica.log`. Replicas
//! can be killed (SIGKILL), signalled (SIGSTOP, SIGCONT, SIGTERM) and restarted on the same
//! home. Every process is killed, and the directory removed, when the harness is dropped, even
//! on panic.

use super::Https;
use coffer_ledger::{ChainId, Keypair};
use coffer_wallet::{Client, ClusterConfig};
use rustix::process::{Pid, Signal, kill_process};
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

/// How many of a replica's last log lines a failure message shows.
const TAIL_LINES: usize = 20;

/// The node binary: `COFFER_NODE_BIN` when set (a target directory shared between work trees
/// may hold another tree's build at the uplifted path), else the one cargo built for this test.
pub fn bin() -> String {
    std::env::var("COFFER_NODE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_coffer-node").into())
}

/// A generated testnet and its running replicas.
pub struct ProcessCluster {
    /// Replica `i`'s process; `None` while it is stopped (killed, or seen to exit).
    pub children: Vec<Option<Child>>,
    /// The testnet directory (`coffer-node testnet --out`).
    pub dir: PathBuf,
    /// REST address of each replica.
    pub api: Vec<SocketAddr>,
    /// The genesis chain id.
    pub chain: ChainId,
    /// The genesis issuer.
    pub issuer: Keypair,
    /// The client TLS configuration (trusts the generated CA only).
    pub tls: Arc<rustls::ClientConfig>,
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            // A paused replica is resumed first so that it can be reaped.
            let _ = kill_process(Pid::from_child(child), Signal::CONT);
            let _ = child.kill();
            let _ = child.wait();
        }
        // Set COFFER_KEEP_LOGS to inspect the replicas' logs and data after a run.
        if std::env::var_os("COFFER_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A base port whose API and p2p ranges are free right now, below the ephemeral port range
/// (see [`coffer_node::testnet::free_base_port`]).
fn free_base(n: usize) -> u16 {
    coffer_node::testnet::free_base_port(n).expect("no free port range")
}

/// The last lines of a log.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Generates a testnet of `n` replicas (in-memory stores) named `name`, applies `tune` to each
/// replica's config text and starts them.
pub fn start_cluster(name: &str, n: usize, tune: impl Fn(String) -> String) -> ProcessCluster {
    ProcessCluster::start(name, n, None, tune)
}

impl ProcessCluster {
    /// Runs `coffer-node testnet` for `n` replicas in `$TMP/coffer-{name}-{pid}`, every store in
    /// the Redis at `redis` (memory when `None`); `edit` rewrites each replica's config text
    /// before any replica starts. Then starts every replica.
    pub fn start(
        name: &str,
        n: usize,
        redis: Option<&str>,
        edit: impl Fn(String) -> String,
    ) -> ProcessCluster {
        Self::start_with(name, n, redis, &[], edit)
    }

    /// [`ProcessCluster::start`], with `testnet_args` added to `coffer-node testnet`'s (a
    /// genesis limit, say).
    pub fn start_with(
        name: &str,
        n: usize,
        redis: Option<&str>,
        testnet_args: &[&str],
        edit: impl Fn(String) -> String,
    ) -> ProcessCluster {
        let dir = std::env::temp_dir().join(format!("coffer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(bin())
            .args(["testnet", "--replicas", &n.to_string(), "--out"])
            .arg(&dir)
            .args(["--base-port", &free_base(n).to_string()])
            .args(redis.map_or(vec![], |url| vec!["--redis", url]))
            .args(testnet_args)
            .output()
            .expect("run testnet");
        assert!(
            out.status.success(),
            "testnet failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for i in 0..n {
            let path = dir.join(format!("replica{i}/config.toml"));
            let text = std::fs::read_to_string(&path).expect("config.toml");
            std::fs::write(&path, edit(text)).expect("config.toml");
        }
        let config = ClusterConfig::load(&dir.join("cluster.json")).expect("cluster.json");
        let api = config
            .replicas
            .iter()
            .map(|r| {
                r.url
                    .trim_start_matches("https://")
                    .parse::<SocketAddr>()
                    .expect("loopback url")
            })
            .collect();
        let secret = std::fs::read_to_string(dir.join("issuer.key")).expect("issuer.key");
        let issuer = Keypair::from_secret_hex(secret.trim()).expect("issuer key");
        let ca = std::fs::read(dir.join("tls/ca.pem")).expect("ca");
        let tls = coffer_node::api::tls::client_config(&ca).expect("client tls");
        let mut cluster = ProcessCluster {
            children: Vec::new(),
            dir,
            api,
            chain: ChainId::new(config.chain_id).expect("chain id"),
            issuer,
            tls,
        };
        for i in 0..n {
            let child = cluster.spawn(i);
            cluster.children.push(Some(child));
        }
        cluster
    }

    /// Number of replicas.
    pub fn replicas(&self) -> usize {
        self.api.len()
    }

    /// Replica `i`'s home directory (its `config.toml`, `replica.log` and data).
    pub fn home(&self, i: usize) -> PathBuf {
        self.dir.join(format!("replica{i}"))
    }

    /// Starts replica `i`'s process, appending its output to its log.
    fn spawn(&self, i: usize) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home(i).join("replica.log"))
            .expect("log");
        Command::new(bin())
            .args(["start", "--home"])
            .arg(self.home(i))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn replica")
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// Starts a stopped replica again on its home (and so on its data).
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "replica{i} still running");
        self.children[i] = Some(self.spawn(i));
    }

    /// Sends `signal` to running replica `i`.
    pub fn signal(&self, i: usize, signal: Signal) {
        let child = self.children[i].as_ref().expect("running");
        kill_process(Pid::from_child(child), signal)
            .unwrap_or_else(|e| panic!("signal {signal:?} to replica{i}: {e}"));
    }

    /// Waits for replica `i` to exit; its exit code.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Option<i32> {
        let started = Instant::now();
        let child = self.children[i].as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.children[i] = None;
                return status.code();
            }
            assert!(
                started.elapsed() < within,
                "replica{i} still running after {within:?}\n{}",
                self.tail(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything replica `i` logged, over all its runs.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.home(i).join("replica.log")).unwrap_or_default()
    }

    /// The last lines of replica `i`'s log.
    pub fn tail(&self, i: usize) -> String {
        tail(&self.log(i))
    }

    /// The last lines of every replica's log, for failure messages.
    pub fn tails(&self) -> String {
        (0..self.replicas())
            .map(|i| format!("--- replica{i}\n{}\n", self.tail(i)))
            .collect()
    }

    /// The wallet's configuration of this cluster (`cluster.json`).
    pub fn cluster_json(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }

    /// The wallet configuration as `cluster.json` holds it.
    pub fn config(&self) -> ClusterConfig {
        ClusterConfig::load(&self.cluster_json()).expect("cluster.json")
    }

    /// A verifying wallet client of the whole cluster, holding the issuer's key as "issuer".
    pub fn client(&self) -> Client {
        let mut client = Client::new(self.config()).expect("client");
        client.add_key("issuer", self.issuer.clone());
        client
    }

    /// A client that asks replica `i` alone (f = 0), for its own unsigned status.
    pub fn solo(&self, i: usize) -> Client {
        let mut config = self.config();
        config.replicas = vec![config.replicas[i].clone()];
        config.f = 0;
        config.request_timeout_ms = 1_000;
        Client::new(config).expect("solo client")
    }

    /// A keep-alive HTTPS connection to replica `i`, retrying while the process starts.
    pub async fn connect(&self, i: usize, timeout: Duration) -> Https {
        let deadline = Instant::now() + timeout;
        loop {
            match Https::connect(self.api[i], self.tls.clone()).await {
                Ok(conn) => return conn,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot connect to replica {i} at {}: {e}",
                        self.api[i]
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The `[runtime]` lines that put a replica on commonware's io_uring runtime, one worker (as
/// the benchmark runs four replicas on two cores).
pub const IO_URING: &str = "\n[runtime]\nengine = \"io_uring\"\nworkers = 1\n";

/// Whether replicas can run on io_uring here. When they cannot (an old kernel, a seccomp
/// profile refusing it), checks instead that a replica configured for it refuses to start and
/// says why, and returns `false`.
pub fn io_uring_or_refusal(name: &str) -> bool {
    let Err(reason) = coffer_node::runtime::probe_io_uring() else {
        return true;
    };
    eprintln!("io_uring unavailable here ({reason}): checking that a replica refuses it");
    let mut cluster = start_cluster(name, 1, |text| text + IO_URING);
    let code = cluster.wait_exit(0, Duration::from_secs(30));
    assert_ne!(
        code,
        Some(0),
        "a replica without io_uring exits with an error"
    );
    let log = cluster.log(0);
    assert!(
        log.contains("io_uring is not available here") && log.contains("engine = \"tokio\""),
        "the error names the cause and the way out:\n{}",
        tail(&log)
    );
    false
}

//! A local cluster of the requested shape, started for one measurement and torn down after it:
//! the testnet files (`coffer_node::testnet::generate`), optional Redis servers started with
//! `scripts/redis-*.sh`, and one replica process per replica (this binary's hidden `replica`
//! subcommand, i.e. the same `coffer_node::node::run` as `coffer-node start`).
//!
//! Everything started here is owned by [`LocalCluster`] and stopped when it is dropped,
//! including on panic, so a failed run leaves no processes behind.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where replicas keep their state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    /// In process memory (ephemeral).
    Memory,
    /// One Redis server shared by the replicas (each under its own key prefix).
    Standalone,
    /// A Redis master with two replicas behind three sentinels.
    Sentinel,
    /// A six-node Redis Cluster (three masters, three replicas).
    Cluster,
}

impl Store {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Standalone => "standalone",
            Store::Sentinel => "sentinel",
            Store::Cluster => "cluster",
        }
    }
}

/// The replicas' runtime engine (`[runtime] engine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// commonware's tokio runtime (the replica's default).
    Tokio,
    /// commonware's io_uring runtime (Linux 6.1+), tokio beside it for REST and Redis.
    IoUring,
}

impl Runtime {
    /// The engine in the replica's configuration.
    pub fn engine(self) -> coffer_node::runtime::Engine {
        match self {
            Self::Tokio => coffer_node::runtime::Engine::Tokio,
            Self::IoUring => coffer_node::runtime::Engine::IoUring,
        }
    }
}

/// How the last replica misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Byzantine {
    /// Every replica is honest.
    None,
    /// The last replica signs wrong receipts and read statements (`COFFER_BYZANTINE=forge`).
    Forge,
    /// The last replica is stopped (SIGSTOP) before the measurement: it accepts TCP
    /// connections but never answers, votes or sends anything.
    Silent,
}

impl Byzantine {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Byzantine::None => "none",
            Byzantine::Forge => "forge",
            Byzantine::Silent => "silent",
        }
    }
}

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Bad options.
    #[error("invalid cluster options: {0}")]
    Options(String),
    /// Generating the testnet failed.
    #[error("testnet: {0}")]
    Testnet(String),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A process could not be started or stopped.
    #[error("process {what}: {reason}")]
    Process {
        /// Which.
        what: String,
        /// Why.
        reason: String,
    },
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Number of replicas.
    pub replicas: usize,
    /// Storage of every replica.
    pub store: Store,
    /// Misbehaviour of the last replica (needs at least 4 replicas).
    pub byzantine: Byzantine,
    /// Directory for the testnet files, logs and Redis data (created).
    pub dir: PathBuf,
    /// First REST port; p2p ports are 100 above, Redis ports 150 above.
    pub base_port: u16,
    /// The executable that runs a replica with `replica --home DIR` (normally this binary).
    pub replica_exe: PathBuf,
    /// Directory holding `redis-{standalone,sentinel,cluster}.sh`.
    pub scripts_dir: PathBuf,
    /// `[consensus] retain_blocks` of every replica (Redis stores only); `None` keeps every
    /// finalized block, the generated default.
    pub retain_blocks: Option<u64>,
    /// `[runtime] engine` of every replica.
    pub runtime: coffer_node::runtime::Engine,
    /// `[runtime] workers` of every replica; `None`: the replica's default.
    pub workers: Option<usize>,
    /// `[runtime] api_workers` of every replica (io_uring only); `None`: the default.
    pub api_workers: Option<usize>,
}

/// Redis servers started by a script, stopped by the same script.
struct RedisServers {
    script: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Drop for RedisServers {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A running local cluster. Dropping it kills the replicas and stops Redis.
pub struct LocalCluster {
    /// Directory of the testnet.
    pub dir: PathBuf,
    /// The wallet's cluster config.
    pub cluster_json: PathBuf,
    /// The issuer's secret key, hex.
    pub issuer_secret_hex: String,
    children: Vec<Child>,
    // Declared after the replicas: dropped after them, so replicas never see Redis vanish
    // while they still run (fields drop in declaration order; `Drop` below kills first anyway).
    redis: Option<RedisServers>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("dir", &self.dir)
            .field("replicas", &self.children.len())
            .finish()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SIGKILL also ends a stopped (SIGSTOPped) process.
            let _ = child.kill();
            let _ = child.wait();
        }
        self.redis.take();
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The `[storage]` section for `store`, with Redis servers at `redis_port`.
fn storage_section(store: Store, redis_port: u16, prefix: &str) -> String {
    let p = redis_port;
    match store {
        Store::Memory => "backend = \"memory\"\n".into(),
        Store::Standalone => format!(
            "backend = \"redis\"\nmode = \"standalone\"\nurl = \"redis://127.0.0.1:{p}\"\nprefix = \"{prefix}\"\n"
        ),
        Store::Sentinel => format!(
            "backend = \"redis\"\nmode = \"sentinel\"\nmaster_name = \"coffer\"\n\
             sentinels = [\"redis://127.0.0.1:{}\", \"redis://127.0.0.1:{}\", \"redis://127.0.0.1:{}\"]\n\
             prefix = \"{prefix}\"\n",
            p + 3,
            p + 4,
            p + 5
        ),
        Store::Cluster => format!(
            "backend = \"redis\"\nmode = \"cluster\"\nseeds = [{}]\nprefix = \"{prefix}\"\n",
            (0..6)
                .map(|i| format!("\"redis://127.0.0.1:{}\"", p + i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Rewrites a generated replica config for benchmarking: the storage section, and a per-client
/// rate limit high enough for every benchmark client sharing the loopback address.
fn rewrite_config(text: &str, storage: &str) -> Result<String, String> {
    let start = text
        .find("\n[storage]")
        .ok_or("generated config has no [storage] section")?;
    let end = text[start + 1..]
        .find("\n[")
        .map(|e| start + 1 + e)
        .ok_or("generated config has nothing after [storage]")?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push_str("\n[storage]\n");
    out.push_str(storage);
    out.push_str(&text[end..]);
    let limited = "requests_per_second = 200";
    if !out.contains(limited) {
        return Err("generated config has no requests_per_second = 200".into());
    }
    // All benchmark clients share 127.0.0.1; the default 200/s per address would throttle
    // the benchmark rather than measure the replicas.
    Ok(out.replace(limited, "requests_per_second = 1000000"))
}

/// Sets `retain_blocks` in a generated replica config (which carries it commented out).
fn set_retention(text: &str, retain_blocks: Option<u64>) -> Result<String, String> {
    let Some(n) = retain_blocks else {
        return Ok(text.to_owned());
    };
    let commented = "\n# retain_blocks = ";
    let Some(at) = text.find(commented) else {
        return Err("generated config has no commented retain_blocks line".into());
    };
    let end = text[at + 1..].find('\n').map_or(text.len(), |e| at + 1 + e);
    Ok(format!(
        "{}\nretain_blocks = {n}{}",
        &text[..at],
        &text[end..]
    ))
}

impl LocalCluster {
    /// Generates the testnet, starts Redis if needed and every replica, and waits until each
    /// replica's gateway answers and the chain has finalized a block (or `ready_timeout`).
    pub async fn start(spec: &ClusterSpec, ready_timeout: Duration) -> Result<Self, ClusterError> {
        let n = spec.replicas;
        if n == 0 {
            return Err(ClusterError::Options("0 replicas".into()));
        }
        if spec.byzantine != Byzantine::None && n < 4 {
            return Err(ClusterError::Options(format!(
                "a Byzantine replica needs n >= 4 (f >= 1), not n = {n}"
            )));
        }
        std::fs::create_dir_all(&spec.dir).map_err(|e| io_err(&spec.dir, e))?;
        let redis_port = spec.base_port + REDIS_PORT_OFFSET;
        let redis = match spec.store {
            Store::Memory => None,
            store => {
                let script = spec.scripts_dir.join(format!("redis-{}.sh", store.name()));
                let dir = spec.dir.join("redis");
                // The guard exists before the script runs, so a half-started group is stopped.
                let guard = RedisServers {
                    script: script.clone(),
                    dir: dir.clone(),
                    port: redis_port,
                };
                let out = Command::new("bash")
                    .arg(&script)
                    .arg("start")
                    .arg(&dir)
                    .arg(redis_port.to_string())
                    .output()
                    .map_err(|e| ClusterError::Process {
                        what: script.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if !out.status.success() {
                    return Err(ClusterError::Process {
                        what: script.display().to_string(),
                        reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    });
                }
                Some(guard)
            }
        };
        let net_dir = spec.dir.join("testnet");
        let net = coffer_node::testnet::generate(&coffer_node::testnet::TestnetOptions {
            replicas: n,
            out: net_dir.clone(),
            base_port: spec.base_port,
            redis: None,
            limits: coffer_ledger::Limits::default(),
            host: "127.0.0.1".into(),
        })
        .map_err(|e| ClusterError::Testnet(e.to_string()))?;
        for (i, path) in net.configs.iter().enumerate() {
            let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
            let prefix = format!("coffer:bench:r{i}");
            let text = rewrite_config(&text, &storage_section(spec.store, redis_port, &prefix))
                .and_then(|t| set_retention(&t, spec.retain_blocks))
                .map_err(ClusterError::Testnet)?;
            std::fs::write(path, text).map_err(|e| io_err(path, e))?;
        }
        let mut cluster = LocalCluster {
            dir: net_dir.clone(),
            cluster_json: net_dir.join("cluster.json"),
            issuer_secret_hex: net.issuer_secret_hex.clone(),
            children: Vec::with_capacity(n),
            redis,
        };
        for (i, path) in net.configs.iter().enumerate() {
            let home = path.parent().unwrap_or(Path::new("."));
            let log_path = home.join("replica.log");
            let log = std::fs::File::create(&log_path).map_err(|e| io_err(&log_path, e))?;
            let mut cmd = Command::new(&spec.replica_exe);
            cmd.arg("replica")
                .arg("--home")
                .arg(home)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| io_err(&log_path, e))?)
                .stderr(log);
            cmd.env("COFFER_RUNTIME", spec.runtime.name());
            match spec.workers {
                Some(workers) => cmd.env("COFFER_RUNTIME_WORKERS", workers.to_string()),
                None => cmd.env_remove("COFFER_RUNTIME_WORKERS"),
            };
            match spec.api_workers {
                Some(workers) => cmd.env("COFFER_RUNTIME_API_WORKERS", workers.to_string()),
                None => cmd.env_remove("COFFER_RUNTIME_API_WORKERS"),
            };
            if spec.byzantine == Byzantine::Forge && i == n - 1 {
                cmd.env(coffer_node::byzantine::ENV, "forge");
            } else {
                cmd.env_remove(coffer_node::byzantine::ENV);
            }
            let child = cmd.spawn().map_err(|e| ClusterError::Process {
                what: format!("replica {i} ({})", spec.replica_exe.display()),
                reason: e.to_string(),
            })?;
            cluster.children.push(child);
        }
        cluster.wait_ready(ready_timeout).await?;
        Ok(cluster)
    }

    /// Until every replica answers its status, the chain has a finalized block and no replica
    /// process exited.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        let config = coffer_wallet::ClusterConfig::load(&self.cluster_json)
            .map_err(|e| ClusterError::Testnet(e.to_string()))?;
        let client =
            coffer_wallet::Client::new(config).map_err(|e| ClusterError::Testnet(e.to_string()))?;
        let started = Instant::now();
        loop {
            for (i, child) in self.children.iter_mut().enumerate() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(ClusterError::Process {
                        what: format!("replica {i}"),
                        reason: format!(
                            "exited with {status} during start-up (log: {})",
                            self.dir.join(format!("replica{i}/replica.log")).display()
                        ),
                    });
                }
            }
            let reports = client.status().await;
            let ready = reports
                .iter()
                .all(|r| r.status.as_ref().is_some_and(|s| s.height >= 1));
            if ready {
                return Ok(());
            }
            if started.elapsed() > timeout {
                let missing: Vec<String> = reports
                    .iter()
                    .filter(|r| r.status.as_ref().is_none_or(|s| s.height < 1))
                    .map(|r| format!("{}: {}", r.name, r.error.clone().unwrap_or_default()))
                    .collect();
                return Err(ClusterError::Process {
                    what: "cluster".into(),
                    reason: format!(
                        "not ready after {} s: {}",
                        timeout.as_secs(),
                        missing.join("; ")
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops replica `index` with SIGSTOP (a silent replica: its sockets stay open, nothing
    /// is ever answered).
    pub fn silence(&self, index: usize) -> Result<(), ClusterError> {
        let child = self
            .children
            .get(index)
            .ok_or_else(|| ClusterError::Options(format!("no replica {index}")))?;
        let status = Command::new("kill")
            .arg("-STOP")
            .arg(child.id().to_string())
            .status()
            .map_err(|e| ClusterError::Process {
                what: "kill -STOP".into(),
                reason: e.to_string(),
            })?;
        if !status.success() {
            return Err(ClusterError::Process {
                what: "kill -STOP".into(),
                reason: status.to_string(),
            });
        }
        Ok(())
    }

    /// Process ids of the replicas.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Number of replicas.
    pub fn replicas(&self) -> usize {
        self.children.len()
    }
}

/// Port blocks: `coffer_node::testnet`'s local blocks (bases 10000 to 19800, 200 apart). With
/// the Redis ports 150 above a block's base and their cluster bus ports 10,000 above those,
/// every port stays below Linux's default ephemeral range (32768 and up), where outgoing
/// connections could already hold one.
const PORT_BLOCKS: usize = coffer_node::testnet::LOCAL_PORT_BLOCKS as usize;
/// Redis ports above a block's base (a six-node cluster uses six).
const REDIS_PORT_OFFSET: u16 = 150;
/// Redis Cluster's bus port offset.
const REDIS_BUS_OFFSET: u16 = 10_000;

/// Every loopback port a local cluster of `replicas` starting at `base` would listen on: REST,
/// p2p, Redis servers and sentinels, and the Redis Cluster bus.
pub fn cluster_ports(base: u16, replicas: usize) -> Vec<u16> {
    let n = u16::try_from(replicas).unwrap_or(u16::MAX);
    // Six Redis ports: a sentinel group's three servers and three sentinels, or a cluster's six.
    let redis = (0..6).map(|i| base + REDIS_PORT_OFFSET + i);
    (0..n)
        .map(|i| base + i)
        .chain((0..n).map(|i| base + coffer_node::testnet::P2P_PORT_OFFSET + i))
        .chain(redis.clone())
        .chain(redis.map(|p| p + REDIS_BUS_OFFSET))
        .collect()
}

/// The first base port, from block `start` on (wrapping), whose every [`cluster_ports`] can be
/// bound on 127.0.0.1 now. Another process may still take one before the cluster starts; this
/// avoids the ports that are already taken.
pub fn free_base_port(start: usize, replicas: usize) -> Option<u16> {
    coffer_node::testnet::first_free_block((0..PORT_BLOCKS).map(|k| start + k), |base| {
        cluster_ports(base, replicas)
    })
}

/// Writes a testnet whose replica `i` listens on `hosts[i]` (REST `base_port + i`, p2p
/// `base_port + 100 + i`), with TLS certificates valid for every host, the memory store and
/// the benchmark's rate limit: the emulated multi-machine setup of `scripts/netns-3host.sh`.
/// Returns the cluster.json path.
pub fn generate_on_hosts(
    dir: &Path,
    hosts: &[String],
    base_port: u16,
) -> Result<PathBuf, ClusterError> {
    let first = hosts
        .first()
        .ok_or_else(|| ClusterError::Options("no hosts".into()))?;
    if first == "127.0.0.1" || first == "localhost" {
        return Err(ClusterError::Options(
            "hosts must be real addresses (use `run` for loopback clusters)".into(),
        ));
    }
    let net = coffer_node::testnet::generate(&coffer_node::testnet::TestnetOptions {
        replicas: hosts.len(),
        out: dir.to_owned(),
        base_port,
        redis: None,
        limits: coffer_ledger::Limits::default(),
        host: first.clone(),
    })
    .map_err(|e| ClusterError::Testnet(e.to_string()))?;
    // Certificates naming every host: a replica's certificate must match the address the
    // client dials.
    let names: Vec<String> = net
        .genesis
        .replicas
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut unique: Vec<&str> = hosts.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let pki = coffer_node::api::tls::generate_dev_pki(&name_refs, &unique)
        .map_err(|e| ClusterError::Testnet(e.to_string()))?;
    let tls = dir.join("tls");
    coffer_node::api::tls::write_dev_pki(&pki, &tls).map_err(|e| io_err(&tls, e))?;
    let relocate = |text: &str| {
        let mut text = text.to_owned();
        for (j, host) in hosts.iter().enumerate() {
            let j = u16::try_from(j).unwrap_or(u16::MAX);
            for port in [
                base_port + j,
                base_port + coffer_node::testnet::P2P_PORT_OFFSET + j,
            ] {
                text = text.replace(&format!("{first}:{port}\""), &format!("{host}:{port}\""));
            }
        }
        text
    };
    for path in &net.configs {
        let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
        let text = rewrite_config(&relocate(&text), &storage_section(Store::Memory, 0, ""))
            .map_err(ClusterError::Testnet)?;
        std::fs::write(path, text).map_err(|e| io_err(path, e))?;
    }
    let cluster_json = dir.join("cluster.json");
    let text = std::fs::read_to_string(&cluster_json).map_err(|e| io_err(&cluster_json, e))?;
    std::fs::write(&cluster_json, relocate(&text)).map_err(|e| io_err(&cluster_json, e))?;
    Ok(cluster_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The base port of block `slot` (< [`PORT_BLOCKS`]).
    fn block_base(slot: usize) -> Option<u16> {
        (slot < PORT_BLOCKS).then(|| coffer_node::testnet::port_block(slot))
    }

    #[test]
    fn a_port_block_with_a_taken_port_is_skipped_and_all_stay_below_the_ephemeral_range() {
        let last = block_base(PORT_BLOCKS - 1).expect("in range");
        assert!(cluster_ports(last, 4).iter().all(|p| *p < 32_768));
        let ports = cluster_ports(12_000, 4);
        assert_eq!(ports.len(), 4 + 4 + 6 + 6);
        assert!(ports.contains(&12_003) && ports.contains(&12_103));
        assert!(ports.contains(&12_155) && ports.contains(&22_150));
        // Take one port of some free block (its Redis Cluster bus port): that block is skipped.
        let start = (0..PORT_BLOCKS)
            .find(|slot| free_base_port(*slot, 4) == block_base(*slot))
            .expect("a free block");
        let base = block_base(start).expect("in range");
        let _held = std::net::TcpListener::bind(("127.0.0.1", base + 150 + REDIS_BUS_OFFSET))
            .expect("bind a free port");
        let other = free_base_port(start, 4).expect("another free block");
        assert_ne!(other, base);
        assert!(
            cluster_ports(other, 4)
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        );
    }

    #[test]
    fn config_rewrite_replaces_storage_and_rate_limit() {
        let text = "a = 1\n[api]\nrequests_per_second = 200        # x\n\n[storage]\nbackend = \"memory\"\n# c\n\n[consensus]\nk = 2\n";
        let out = rewrite_config(
            text,
            &storage_section(Store::Sentinel, 7000, "coffer:bench:r0"),
        )
        .expect("rewrite");
        assert!(out.contains("requests_per_second = 1000000"));
        assert!(out.contains("mode = \"sentinel\""));
        assert!(out.contains("redis://127.0.0.1:7005"));
        assert!(!out.contains("backend = \"memory\""));
        assert!(out.contains("\n[consensus]\nk = 2\n"));
        assert!(rewrite_config("x = 1\n", "").is_err());
    }

    #[test]
    fn retention_is_set_only_when_asked() {
        let text = "[consensus]\nk = 2\n# retain_blocks = 1000000   # c\n#      more\n\n[health]\n";
        assert_eq!(set_retention(text, None).expect("unchanged"), text);
        let set = set_retention(text, Some(5_000)).expect("set");
        assert_eq!(
            set,
            "[consensus]\nk = 2\nretain_blocks = 5000\n#      more\n\n[health]\n"
        );
        assert!(set_retention("[consensus]\n", Some(5_000)).is_err());
    }
}

//! The replica's TOML configuration file (`coffer-node testnet` writes a commented one per
//! replica).
//!
//! ```toml
//! genesis = "genesis.json"             # coffer-ledger genesis (JSON); relative to this file
//! data_dir = "data"                     # consensus journals and block archives
//! private_key = "<hex ed25519 private key>"
//! p2p_listen = "127.0.0.1:7000"
//!
//! [api]                                # the REST gateway (HTTPS)
//! listen = "127.0.0.1:8443"
//! tls_cert = "tls/replica0.pem"        # relative to this file
//! tls_key = "tls/replica0.key"
//! max_connections = 1024
//! max_body_bytes = 131072
//! requests_per_second = 200
//! request_timeout_ms = 10000
//! submit_timeout_ms = 30000
//!
//! [storage]                            # see `storage::StorageConfig`; default: memory
//! backend = "redis"
//! mode = "standalone"
//! url = "redis://127.0.0.1:6379"
//! prefix = "coffer:replica0"
//!
//! [consensus]                          # optional; these are the defaults
//! leader_timeout_ms = 1000
//! certification_timeout_ms = 2000
//! timeout_retry_ms = 5000
//! skip_timeout_ms = 10000
//! fetch_timeout_ms = 1000
//! max_block_txs = 500
//! max_block_bytes = 1048576
//! mempool_max_txs = 50000
//! mempool_max_bytes = 67108864
//! idle_block_ms = 300
//! batch_wait_ms = 2
//! # retain_blocks = 1000000           # unset: keep every finalized block (Redis store only)
//!
//! [health]                             # optional; see `health::HealthConfig`
//! stall_after_ms = 10000
//! slow_persist_ms = 5000
//!
//! [shutdown]                           # optional; see `shutdown::ShutdownConfig`
//! grace_ms = 10000
//! block_timeout_ms = 30000
//!
//! [runtime]                            # optional; see `runtime::RuntimeSection`
//! engine = "tokio"                     # or "io_uring" (Linux 6.1+)
//! workers = 2                          # worker threads (io_uring: of consensus and p2p)
//! api_workers = 1                      # io_uring only: tokio threads for REST and Redis
//! blocking_threads = 2                 # tokio only: threads for file I/O and name lookups
//!
//! [[peers]]                            # address of every genesis replica, this one included
//! public_key = "<hex>"
//! address = "127.0.0.1:7000"           # or "replica0:7000" (resolved at start)
//! ```
//!
//! The replica set (and so n and f) comes from the genesis; `peers` only locates its members
//! (`IP:port` or `host:port`; names are resolved at start, with retries).
//!
//! Environment variables override the file (for containers and scripts): `COFFER_P2P_LISTEN`,
//! `COFFER_API_LISTEN`, `COFFER_DATA_DIR`, `COFFER_RUNTIME` (the engine),
//! `COFFER_RUNTIME_WORKERS`, `COFFER_RUNTIME_API_WORKERS`, `COFFER_RUNTIME_BLOCKING_THREADS`,
//! and the store:
//! - `COFFER_STORAGE_URL`: a Redis URL switches the store to Redis standalone at that URL;
//!   `memory` switches to memory;
//! - `COFFER_REDIS_SENTINELS` (comma-separated sentinel URLs) with `COFFER_REDIS_MASTER_NAME`:
//!   Redis behind sentinels;
//! - `COFFER_REDIS_CLUSTER_SEEDS` (comma-separated node URLs): Redis Cluster;
//! - `COFFER_STORAGE_PREFIX`: the key prefix; `COFFER_REDIS_WAIT_REPLICAS`: replicas that must
//!   acknowledge each block.
//!
//! At most one of the first three may be set. Switching to Redis keeps the file's other Redis
//! settings (prefix, durability, retries, TLS); a file without Redis settings gets the
//! defaults and the prefix `coffer:<replica key prefix>`.

use crate::{
    api::{ApiConfig, limits::RateLimit},
    consensus::{ConsensusConfig, ProposalLimits, Timeouts},
    mempool::MempoolLimits,
    storage::{RedisConfig, RedisMode, StorageConfig},
};
use coffer_ledger::{Genesis, ReplicaKey};
use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::{
    Signer as _,
    ed25519::{PrivateKey, PublicKey},
};
use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Largest configuration file accepted, in bytes.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than allowed.
    #[error("config {0} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge(PathBuf),
    /// The TOML is invalid.
    #[error("invalid config: {0}")]
    Toml(String),
    /// A key is malformed.
    #[error("invalid key {field}: {reason}")]
    Key {
        /// Which field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The peer set is unusable.
    #[error("invalid peer set: {0}")]
    Peers(String),
    /// The genesis file is invalid.
    #[error("invalid genesis: {0}")]
    Genesis(String),
}

/// Consensus tuning (all optional).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// See [`Timeouts::leader`].
    pub leader_timeout_ms: u64,
    /// See [`Timeouts::certification`].
    pub certification_timeout_ms: u64,
    /// See [`Timeouts::retry`].
    pub timeout_retry_ms: u64,
    /// See [`Timeouts::skip`].
    pub skip_timeout_ms: u64,
    /// See [`Timeouts::fetch`].
    pub fetch_timeout_ms: u64,
    /// See [`ProposalLimits::max_txs`].
    pub max_block_txs: usize,
    /// See [`ProposalLimits::max_bytes`].
    pub max_block_bytes: usize,
    /// See [`MempoolLimits::max_txs`].
    pub mempool_max_txs: usize,
    /// See [`MempoolLimits::max_bytes`].
    pub mempool_max_bytes: usize,
    /// See [`ProposalLimits::idle_wait`]: how long a leader with nothing to propose waits for
    /// a transaction before proposing an empty block.
    pub idle_block_ms: u64,
    /// See [`ProposalLimits::batch_wait`]: how long at most a leader with only a few new
    /// transactions waits for more before proposing.
    pub batch_wait_ms: u64,
    /// See [`ConsensusConfig::retain_blocks`]: finalized blocks kept in the local archive
    /// below the executed height, at least
    /// [`MIN_RETAIN_BLOCKS`](crate::consensus::MIN_RETAIN_BLOCKS). Unset: every block is kept.
    /// Needs a Redis store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_blocks: Option<u64>,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        let t = Timeouts::default();
        let p = ProposalLimits::default();
        let m = MempoolLimits::default();
        Self {
            leader_timeout_ms: millis(t.leader),
            certification_timeout_ms: millis(t.certification),
            timeout_retry_ms: millis(t.retry),
            skip_timeout_ms: millis(t.skip),
            fetch_timeout_ms: millis(t.fetch),
            max_block_txs: p.max_txs,
            max_block_bytes: p.max_bytes,
            mempool_max_txs: m.max_txs,
            mempool_max_bytes: m.max_bytes,
            // An idle cluster then holds each height for a moment, which lets replicas agree
            // on reads at one height (see `witness`), and does not spin through empty blocks.
            idle_block_ms: 300,
            // Measured on 2 cores, n=4 (docs/EVALUATION.md, run 5): at half load p50 24 -> 18 ms,
            // at saturation +20% throughput.
            batch_wait_ms: 2,
            retain_blocks: None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One member of the genesis replica set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// Hex ed25519 public key.
    pub public_key: String,
    /// P2P address: `IP:port`, or `host:port` with a DNS name (docker compose service names),
    /// resolved when the replica starts (retried for [`PEER_RESOLVE_TIMEOUT`]).
    pub address: String,
}

/// How long a replica keeps retrying to resolve its peers' DNS names at start (containers
/// started together register their names at slightly different times).
pub const PEER_RESOLVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest peer address accepted (a DNS name is at most 253 bytes, plus the port).
const MAX_PEER_ADDRESS_BYTES: usize = 260;

/// Resolves a `host:port` peer address, retrying until `within` has passed.
pub fn resolve_peer(address: &str, within: Duration) -> Result<SocketAddr, ConfigFileError> {
    use std::net::ToSocketAddrs as _;
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let well_formed = address.len() <= MAX_PEER_ADDRESS_BYTES
        && address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !well_formed {
        return Err(ConfigFileError::Peers(format!(
            "peer address {address:?} is not host:port"
        )));
    }
    let deadline = std::time::Instant::now() + within;
    let mut delay = Duration::from_millis(100);
    loop {
        let error = match address.to_socket_addrs() {
            // Prefer IPv4: the p2p listener of a generated config is an IPv4 address.
            Ok(found) => {
                let found: Vec<SocketAddr> = found.collect();
                if let Some(addr) = found.iter().find(|a| a.is_ipv4()).or_else(|| found.first()) {
                    return Ok(*addr);
                }
                "no address".to_owned()
            }
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() + delay > deadline {
            return Err(ConfigFileError::Peers(format!(
                "cannot resolve peer address {address:?} within {} ms: {error}",
                within.as_millis()
            )));
        }
        tracing::warn!(address, %error, "peer address does not resolve yet; retrying");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The REST gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// PEM certificate chain, relative to the config file's directory.
    pub tls_cert: PathBuf,
    /// PEM private key, relative to the config file's directory.
    pub tls_key: PathBuf,
    /// Most connections open at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Sustained requests per second per client address.
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: u32,
    /// Deadline of a read.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Deadline of a submission waiting for its commit.
    #[serde(default = "default_submit_timeout_ms")]
    pub submit_timeout_ms: u64,
}

fn default_max_connections() -> usize {
    ApiConfig::default().max_connections
}
fn default_max_body_bytes() -> usize {
    ApiConfig::default().max_body_bytes
}
fn default_requests_per_second() -> u32 {
    RateLimit::default().per_second
}
fn default_request_timeout_ms() -> u64 {
    millis(ApiConfig::default().request_timeout)
}
fn default_submit_timeout_ms() -> u64 {
    millis(ApiConfig::default().submit_timeout)
}

impl ApiSection {
    /// The gateway's limits.
    pub fn api_config(&self) -> ApiConfig {
        let per_second = self.requests_per_second.max(1);
        ApiConfig {
            max_connections: self.max_connections.max(1),
            max_body_bytes: self.max_body_bytes,
            rate_limit: RateLimit {
                per_second,
                burst: per_second.saturating_mul(2),
                ..RateLimit::default()
            },
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            submit_timeout: Duration::from_millis(self.submit_timeout_ms),
            ..ApiConfig::default()
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Path of the ledger genesis (JSON), relative to the config file's directory.
    pub genesis: PathBuf,
    /// Where consensus journals and block archives live.
    pub data_dir: PathBuf,
    /// Hex ed25519 private key of this replica.
    pub private_key: String,
    /// P2P listen address.
    pub p2p_listen: SocketAddr,
    /// The REST gateway; none when absent.
    #[serde(default)]
    pub api: Option<ApiSection>,
    /// Where executed blocks are persisted (memory when absent: ephemeral).
    #[serde(default = "memory_storage", skip_serializing)]
    pub storage: StorageConfig,
    /// Consensus tuning.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// Health thresholds.
    #[serde(default)]
    pub health: crate::health::HealthConfig,
    /// Graceful shutdown bounds.
    #[serde(default)]
    pub shutdown: crate::shutdown::ShutdownConfig,
    /// The async runtime.
    #[serde(default)]
    pub runtime: crate::runtime::RuntimeSection,
    /// Addresses of the genesis replicas.
    pub peers: Vec<PeerEntry>,
    /// Directory the relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn memory_storage() -> StorageConfig {
    StorageConfig::Memory
}

/// Parses a hex ed25519 public key.
pub fn parse_public_key(field: &str, hex_key: &str) -> Result<PublicKey, ConfigFileError> {
    let bytes = hex::decode(hex_key).map_err(|e| ConfigFileError::Key {
        field: field.into(),
        reason: e.to_string(),
    })?;
    PublicKey::decode(bytes).map_err(|e| ConfigFileError::Key {
        field: field.into(),
        reason: e.to_string(),
    })
}

/// The ed25519 key of a genesis replica.
pub fn replica_key(key: &ReplicaKey) -> Result<PublicKey, ConfigFileError> {
    PublicKey::decode(key.0.to_vec()).map_err(|e| ConfigFileError::Key {
        field: "genesis replica".into(),
        reason: e.to_string(),
    })
}

/// The genesis form of a replica's ed25519 key.
pub fn genesis_key(key: &PublicKey) -> ReplicaKey {
    let mut out = [0u8; 32];
    out.copy_from_slice(&key.encode());
    ReplicaKey(out)
}

/// Hex encoding of a public key, as the config expects it.
pub fn public_key_hex(key: &PublicKey) -> String {
    hex::encode(key.encode())
}

/// Hex encoding of a private key, as the config expects it.
pub fn private_key_hex(key: &PrivateKey) -> String {
    hex::encode(key.encode())
}

impl NodeConfig {
    /// Reads and parses `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigFileError> {
        let io = |source| ConfigFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigFileError::TooLarge(path.to_path_buf()));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mut config = Self::parse(&text)?;
        config.base_dir = path.parent().map(PathBuf::from).unwrap_or_default();
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies the `COFFER_*` overrides listed in the module docs, read through `var`.
    pub fn apply_env(
        &mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigFileError> {
        fn number<T: std::str::FromStr>(name: &str, value: String) -> Result<T, ConfigFileError>
        where
            T::Err: std::fmt::Display,
        {
            value
                .parse()
                .map_err(|e| ConfigFileError::Toml(format!("{name}={value:?}: {e}")))
        }
        let addr = |name: &str, value: String| number::<SocketAddr>(name, value);
        if let Some(v) = var("COFFER_P2P_LISTEN") {
            self.p2p_listen = addr("COFFER_P2P_LISTEN", v)?;
        }
        if let Some(v) = var("COFFER_RUNTIME") {
            self.runtime.engine = crate::runtime::Engine::parse(&v).ok_or_else(|| {
                ConfigFileError::Toml(format!(
                    "COFFER_RUNTIME={v:?}: expected \"tokio\" or \"io_uring\""
                ))
            })?;
        }
        if let Some(v) = var("COFFER_RUNTIME_WORKERS") {
            self.runtime.workers = number("COFFER_RUNTIME_WORKERS", v)?;
        }
        if let Some(v) = var("COFFER_RUNTIME_API_WORKERS") {
            self.runtime.api_workers = number("COFFER_RUNTIME_API_WORKERS", v)?;
        }
        if let Some(v) = var("COFFER_RUNTIME_BLOCKING_THREADS") {
            self.runtime.blocking_threads = number("COFFER_RUNTIME_BLOCKING_THREADS", v)?;
        }
        self.runtime.validate().map_err(ConfigFileError::Toml)?;
        if let Some(v) = var("COFFER_API_LISTEN") {
            let listen = addr("COFFER_API_LISTEN", v)?;
            match self.api.as_mut() {
                Some(api) => api.listen = listen,
                None => {
                    return Err(ConfigFileError::Toml(
                        "COFFER_API_LISTEN set but the config has no [api] section".into(),
                    ));
                }
            }
        }
        if let Some(v) = var("COFFER_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let url = var("COFFER_STORAGE_URL");
        let sentinels = var("COFFER_REDIS_SENTINELS");
        let seeds = var("COFFER_REDIS_CLUSTER_SEEDS");
        let given = [url.is_some(), sentinels.is_some(), seeds.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ConfigFileError::Toml(
                "set at most one of COFFER_STORAGE_URL, COFFER_REDIS_SENTINELS, COFFER_REDIS_CLUSTER_SEEDS"
                    .into(),
            ));
        }
        let mode = match (url, sentinels, seeds) {
            (Some(url), _, _) if url == "memory" => {
                self.storage = StorageConfig::Memory;
                None
            }
            (Some(url), _, _) => Some(RedisMode::Standalone { url }),
            (_, Some(sentinels), _) => {
                let master_name = var("COFFER_REDIS_MASTER_NAME").ok_or_else(|| {
                    ConfigFileError::Toml(
                        "COFFER_REDIS_SENTINELS needs COFFER_REDIS_MASTER_NAME".into(),
                    )
                })?;
                Some(RedisMode::Sentinel {
                    master_name,
                    sentinels: list(sentinels),
                })
            }
            (_, _, Some(seeds)) => Some(RedisMode::Cluster { seeds: list(seeds) }),
            _ => None,
        };
        if let Some(mode) = mode {
            // Keep the file's other Redis settings (prefix, durability, retries, TLS).
            self.storage = match &self.storage {
                StorageConfig::Redis(r) => StorageConfig::Redis(RedisConfig { mode, ..r.clone() }),
                _ => StorageConfig::Redis(RedisConfig::with_mode(
                    mode,
                    format!("coffer:{}", &self.private_key_fingerprint()),
                )),
            };
        }
        if let StorageConfig::Redis(redis) = &mut self.storage {
            if let Some(prefix) = var("COFFER_STORAGE_PREFIX") {
                redis.prefix = prefix;
            }
            if let Some(n) = var("COFFER_REDIS_WAIT_REPLICAS") {
                redis.durability.wait_replicas = number("COFFER_REDIS_WAIT_REPLICAS", n)?;
            }
        } else if var("COFFER_STORAGE_PREFIX").is_some()
            || var("COFFER_REDIS_WAIT_REPLICAS").is_some()
        {
            return Err(ConfigFileError::Toml(
                "COFFER_STORAGE_PREFIX / COFFER_REDIS_WAIT_REPLICAS set but the store is memory"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A short, stable, non-secret name for this replica (a prefix of its public key).
    fn private_key_fingerprint(&self) -> String {
        self.signer()
            .map(|k| public_key_hex(&k.public_key())[..16].to_owned())
            .unwrap_or_else(|_| "replica".into())
    }

    /// A path from the file, resolved against the file's directory.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// Reads the ledger genesis named by the config.
    pub fn load_genesis(&self) -> Result<Genesis, ConfigFileError> {
        let path = self.base_dir.join(&self.genesis);
        let io = |source| ConfigFileError::Io {
            path: path.clone(),
            source,
        };
        let len = std::fs::metadata(&path).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigFileError::TooLarge(path));
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        Genesis::from_json(&text).map_err(|e| ConfigFileError::Genesis(e.to_string()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigFileError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigFileError::Toml(e.to_string()))?;
        config.runtime.validate().map_err(ConfigFileError::Toml)?;
        Ok(config)
    }

    /// Renders the configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// This replica's private key.
    pub fn signer(&self) -> Result<PrivateKey, ConfigFileError> {
        let bytes = hex::decode(&self.private_key).map_err(|e| ConfigFileError::Key {
            field: "private_key".into(),
            reason: e.to_string(),
        })?;
        PrivateKey::decode(bytes).map_err(|e| ConfigFileError::Key {
            field: "private_key".into(),
            reason: e.to_string(),
        })
    }

    /// The genesis replicas with their addresses, in genesis order; DNS names are resolved,
    /// retried for at most [`PEER_RESOLVE_TIMEOUT`].
    pub fn peer_set(
        &self,
        genesis: &Genesis,
    ) -> Result<Vec<(PublicKey, SocketAddr)>, ConfigFileError> {
        self.peer_keys(genesis)?
            .into_iter()
            .map(|(key, address)| Ok((key, resolve_peer(&address, PEER_RESOLVE_TIMEOUT)?)))
            .collect()
    }

    /// The genesis replicas with their configured (unresolved) addresses, in genesis order.
    pub fn peer_keys(
        &self,
        genesis: &Genesis,
    ) -> Result<Vec<(PublicKey, String)>, ConfigFileError> {
        let mut addresses = std::collections::HashMap::new();
        for (i, p) in self.peers.iter().enumerate() {
            let key = parse_public_key(&format!("peers[{i}]"), &p.public_key)?;
            if addresses.insert(key.clone(), p.address.clone()).is_some() {
                return Err(ConfigFileError::Peers(format!("{key} listed twice")));
            }
        }
        if addresses.len() != genesis.replicas.len() {
            return Err(ConfigFileError::Peers(format!(
                "{} peers listed, genesis has {} replicas",
                addresses.len(),
                genesis.replicas.len()
            )));
        }
        genesis
            .replicas
            .iter()
            .map(|r| {
                let key = replica_key(&r.public_key)?;
                let address = addresses.get(&key).cloned().ok_or_else(|| {
                    ConfigFileError::Peers(format!("no address for genesis replica {}", r.name))
                })?;
                Ok((key, address))
            })
            .collect()
    }

    /// The consensus configuration this file describes.
    pub fn consensus(&self, genesis: &Genesis) -> Result<ConsensusConfig, ConfigFileError> {
        let signer = self.signer()?;
        let participants = self
            .peer_keys(genesis)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let c = &self.consensus;
        let mut cfg = ConsensusConfig::new(genesis.chain_id.as_str(), signer, participants);
        cfg.partition_prefix = format!("coffer-{}", public_key_hex(&cfg.signer.public_key()));
        cfg.timeouts = Timeouts {
            leader: Duration::from_millis(c.leader_timeout_ms),
            certification: Duration::from_millis(c.certification_timeout_ms),
            retry: Duration::from_millis(c.timeout_retry_ms),
            skip: Duration::from_millis(c.skip_timeout_ms),
            fetch: Duration::from_millis(c.fetch_timeout_ms),
        };
        cfg.proposal = ProposalLimits {
            max_txs: c.max_block_txs,
            max_bytes: c.max_block_bytes,
            idle_wait: Duration::from_millis(c.idle_block_ms),
            batch_wait: Duration::from_millis(c.batch_wait_ms),
        };
        if c.retain_blocks.is_some() && matches!(self.storage, StorageConfig::Memory) {
            return Err(ConfigFileError::Toml(
                "consensus.retain_blocks needs a Redis store: a replica with the memory store \
                 rebuilds its state from every finalized block at each start"
                    .into(),
            ));
        }
        cfg.retain_blocks = c.retain_blocks;
        cfg.mempool = MempoolLimits {
            max_txs: c.mempool_max_txs,
            max_bytes: c.mempool_max_bytes,
            ..MempoolLimits::default()
        };
        Ok(cfg)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use coffer_ledger::{ChainId, Keypair, Limits, ReplicaInfo};

    #[test]
    fn parse_roundtrip() {
        let key = PrivateKey::from_seed(7);
        let genesis = Genesis {
            chain_id: ChainId::new("cfg").unwrap(),
            issuers: vec![Keypair::from_secret_bytes([3; 32]).unwrap().public_key()],
            replicas: vec![ReplicaInfo {
                name: "r0".into(),
                public_key: genesis_key(&key.public_key()),
            }],
            limits: Limits::default(),
        };
        let cfg = NodeConfig {
            genesis: "genesis.json".into(),
            data_dir: "/tmp/x".into(),
            private_key: private_key_hex(&key),
            p2p_listen: "127.0.0.1:1".parse().unwrap(),
            api: None,
            storage: StorageConfig::Memory,
            consensus: ConsensusSection::default(),
            health: Default::default(),
            shutdown: Default::default(),
            runtime: Default::default(),
            peers: vec![PeerEntry {
                public_key: public_key_hex(&key.public_key()),
                address: "127.0.0.1:1".into(),
            }],
            base_dir: PathBuf::new(),
        };
        let back = NodeConfig::parse(&cfg.to_toml()).expect("parses");
        assert_eq!(back.signer().unwrap().public_key(), key.public_key());
        let consensus = back.consensus(&genesis).expect("valid");
        assert_eq!(consensus.participants, vec![key.public_key()]);
        assert_eq!(consensus.chain_id, "cfg");
        assert_eq!(consensus.proposal.batch_wait, Duration::from_millis(2));
        assert_eq!(consensus.proposal.idle_wait, Duration::from_millis(300));
        let mut slow = back.clone();
        slow.consensus.batch_wait_ms = 0;
        let reparsed = NodeConfig::parse(&slow.to_toml()).expect("parses");
        assert_eq!(
            reparsed.consensus(&genesis).unwrap().proposal.batch_wait,
            Duration::ZERO
        );
        assert!(NodeConfig::parse("genesis = 1").is_err());
        let mut two = back.clone();
        two.peers.push(two.peers[0].clone());
        assert!(two.peer_set(&genesis).is_err());
        let mut env = back.clone();
        env.apply_env(|name| match name {
            "COFFER_DATA_DIR" => Some("/data/r0".into()),
            "COFFER_STORAGE_URL" => Some("redis://10.0.0.1:6379".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(env.data_dir, PathBuf::from("/data/r0"));
        assert!(matches!(env.storage, StorageConfig::Redis(_)));
        assert!(
            env.apply_env(|n| (n == "COFFER_API_LISTEN").then(|| "127.0.0.1:1".into()))
                .is_err(),
            "no [api] section to override"
        );
        let mut sentinel = back.clone();
        sentinel
            .apply_env(|name| match name {
                "COFFER_REDIS_SENTINELS" => Some("redis://s1:26379, redis://s2:26379".into()),
                "COFFER_REDIS_MASTER_NAME" => Some("coffer".into()),
                "COFFER_STORAGE_PREFIX" => Some("coffer:r0".into()),
                "COFFER_REDIS_WAIT_REPLICAS" => Some("1".into()),
                _ => None,
            })
            .unwrap();
        let StorageConfig::Redis(redis) = &sentinel.storage else {
            panic!("sentinel store expected")
        };
        assert_eq!(
            redis.mode,
            RedisMode::Sentinel {
                master_name: "coffer".into(),
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
            }
        );
        assert_eq!(redis.prefix, "coffer:r0");
        assert_eq!(redis.durability.wait_replicas, 1);
        let mut cluster = sentinel.clone();
        cluster
            .apply_env(|name| {
                (name == "COFFER_REDIS_CLUSTER_SEEDS").then(|| "redis://n1:6379".to_owned())
            })
            .unwrap();
        let StorageConfig::Redis(redis) = &cluster.storage else {
            panic!("cluster store expected")
        };
        assert!(matches!(redis.mode, RedisMode::Cluster { ref seeds } if seeds.len() == 1));
        assert_eq!(redis.prefix, "coffer:r0", "the file's prefix is kept");
        assert!(
            back.clone()
                .apply_env(|name| {
                    matches!(name, "COFFER_STORAGE_URL" | "COFFER_REDIS_CLUSTER_SEEDS")
                        .then(|| "redis://x:1".to_owned())
                })
                .is_err(),
            "two store overrides conflict"
        );
        assert!(
            back.clone()
                .apply_env(|name| (name == "COFFER_REDIS_SENTINELS").then(|| "redis://x:1".into()))
                .is_err(),
            "sentinels need a master name"
        );
        let mut named = back.clone();
        named.peers[0].address = "localhost:7000".into();
        let set = named.peer_set(&genesis).expect("a DNS name resolves");
        assert!(set[0].1.ip().is_loopback());
        assert_eq!(set[0].1.port(), 7000);
        assert!(resolve_peer("no-port", Duration::from_millis(10)).is_err());
        assert!(resolve_peer(":7000", Duration::from_millis(10)).is_err());
        let mut stranger = back.clone();
        stranger.peers[0].public_key = public_key_hex(&PrivateKey::from_seed(8).public_key());
        assert!(stranger.peer_set(&genesis).is_err());

        // Block retention: absent by default, read from the file, Redis stores only.
        assert_eq!(consensus.retain_blocks, None);
        assert!(
            !back.to_toml().contains("retain_blocks"),
            "unset is not written"
        );
        let mut pruned = back.clone();
        pruned.consensus.retain_blocks = Some(50_000);
        let mut reparsed = NodeConfig::parse(&pruned.to_toml()).expect("parses");
        assert_eq!(reparsed.consensus.retain_blocks, Some(50_000));
        let refused = reparsed
            .consensus(&genesis)
            .expect_err("memory store refused");
        assert!(refused.to_string().contains("retain_blocks"), "{refused}");
        reparsed.storage = env.storage.clone();
        assert_eq!(
            reparsed.consensus(&genesis).unwrap().retain_blocks,
            Some(50_000)
        );
    }

    #[test]
    fn the_runtime_section_and_its_overrides() {
        use crate::runtime::{Engine, RuntimeSection};
        let key = PrivateKey::from_seed(9);
        let head = format!(
            "genesis = \"g.json\"\ndata_dir = \"d\"\nprivate_key = \"{}\"\np2p_listen = \"127.0.0.1:1\"\n\
             peers = []\n",
            private_key_hex(&key)
        );
        let plain = NodeConfig::parse(&head).expect("no [runtime]: the defaults");
        assert_eq!(plain.runtime, RuntimeSection::default());
        assert_eq!(plain.runtime.engine, Engine::Tokio);
        let uring = NodeConfig::parse(&format!(
            "{head}[runtime]\nengine = \"io_uring\"\nworkers = 1\napi_workers = 3\n\
             blocking_threads = 4\n"
        ))
        .expect("parses");
        assert_eq!(
            uring.runtime,
            RuntimeSection {
                engine: Engine::IoUring,
                workers: 1,
                api_workers: 3,
                blocking_threads: 4,
            }
        );
        let back = NodeConfig::parse(&uring.to_toml()).expect("round trip");
        assert_eq!(back.runtime, uring.runtime);
        for bad in [
            "engine = \"uring\"",
            "workers = 0",
            "api_workers = 0",
            "blocking_threads = 0",
            "workers = 100000",
            "threads = 2",
        ] {
            let refused = NodeConfig::parse(&format!("{head}[runtime]\n{bad}\n"));
            assert!(refused.is_err(), "{bad} accepted");
        }

        let mut env = plain.clone();
        env.apply_env(|name| match name {
            "COFFER_RUNTIME" => Some("io_uring".into()),
            "COFFER_RUNTIME_WORKERS" => Some("1".into()),
            "COFFER_RUNTIME_API_WORKERS" => Some("2".into()),
            "COFFER_RUNTIME_BLOCKING_THREADS" => Some("8".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(env.runtime.engine, Engine::IoUring);
        assert_eq!(env.runtime.workers, 1);
        assert_eq!(env.runtime.api_workers, 2);
        assert_eq!(env.runtime.blocking_threads, 8);
        for (name, value) in [
            ("COFFER_RUNTIME", "uring"),
            ("COFFER_RUNTIME_WORKERS", "0"),
            ("COFFER_RUNTIME_WORKERS", "two"),
            ("COFFER_RUNTIME_API_WORKERS", "0"),
            ("COFFER_RUNTIME_BLOCKING_THREADS", "0"),
        ] {
            let refused = plain
                .clone()
                .apply_env(|n| (n == name).then(|| value.to_owned()));
            assert!(refused.is_err(), "{name}={value} accepted");
        }
    }
}

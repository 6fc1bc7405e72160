//! The cluster's client configuration: everything a wallet needs to talk to a Coffer cluster
//! and to trust nothing but what f+1 replicas signed. The testnet generator writes this file;
//! the format is documented in `wallet-cli/README.md`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest configuration file read (a cluster of 256 replicas with an inline CA is far below).
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Default deadline of one read request, in milliseconds.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default deadline of a submission that waits for its commit (the gateway's own is 30 s).
pub const DEFAULT_SUBMIT_TIMEOUT_MS: u64 = 35_000;
/// Default most inputs per transfer (the genesis default).
pub const DEFAULT_MAX_INPUTS: u16 = 256;

/// Why a cluster configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read cluster config {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("cluster config {path} is not valid: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A field has a value that cannot work.
    #[error("cluster config: {0}")]
    Invalid(String),
}

/// One replica's REST endpoint and identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaEndpoint {
    /// Name from the genesis (used in messages only).
    pub name: String,
    /// Base URL of its REST API: `https://host:port` (no path).
    pub url: String,
    /// Its ed25519 public key as listed in the genesis, hex (64 characters).
    pub public_key: String,
}

/// The client configuration of a cluster. JSON; see the crate README for an example.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Network identifier (the genesis chain id).
    pub chain_id: String,
    /// Faulty replicas tolerated; must be `(n-1)/3` for the `n` replicas listed.
    pub f: usize,
    /// Every genesis replica, in the order the client tries them.
    pub replicas: Vec<ReplicaEndpoint>,
    /// Path of the PEM CA certificate that signed the replicas' TLS certificates; relative
    /// paths are relative to the configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// The CA certificate inline (PEM), instead of `ca_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_pem: Option<String>,
    /// Deadline of one request to one replica, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Deadline of a submission waiting for its commit at one replica, in milliseconds.
    #[serde(default = "default_submit_timeout_ms")]
    pub submit_timeout_ms: u64,
    /// Most inputs the wallet puts in one transfer (the genesis `max_inputs`).
    #[serde(default = "default_max_inputs")]
    pub max_inputs: u16,
}

fn default_request_timeout_ms() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}
fn default_submit_timeout_ms() -> u64 {
    DEFAULT_SUBMIT_TIMEOUT_MS
}
fn default_max_inputs() -> u16 {
    DEFAULT_MAX_INPUTS
}

impl ClusterConfig {
    /// Reads and validates a configuration file, loading `ca_cert` into `ca_cert_pem`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |e: std::io::Error| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                reason: format!("{len} bytes, above {MAX_CONFIG_BYTES}"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_json(&text, base).map_err(|e| match e {
            ConfigError::Parse { reason, .. } => ConfigError::Parse {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Parses and validates JSON; a relative `ca_cert` is resolved against `base_dir`.
    pub fn from_json(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: ClusterConfig =
            serde_json::from_str(text).map_err(|e| ConfigError::Parse {
                path: PathBuf::from("<memory>"),
                reason: e.to_string(),
            })?;
        if config.ca_cert_pem.is_none() {
            let Some(ca) = &config.ca_cert else {
                return Err(ConfigError::Invalid(
                    "neither ca_cert nor ca_cert_pem is set".into(),
                ));
            };
            let ca = if ca.is_absolute() {
                ca.clone()
            } else {
                base_dir.join(ca)
            };
            let pem = std::fs::read_to_string(&ca).map_err(|e| ConfigError::Read {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            config.ca_cert_pem = Some(pem);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields: a chain id, 1..=256 replicas with distinct valid keys and https
    /// URLs, `f = (n-1)/3`, non-zero timeouts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        coffer_ledger::ChainId::new(self.chain_id.clone())
            .map_err(|e| ConfigError::Invalid(format!("chain_id {:?}: {e}", self.chain_id)))?;
        let n = self.replicas.len();
        if n == 0 || n > coffer_ledger::attest::MAX_REPLICAS {
            return Err(ConfigError::Invalid(format!(
                "{n} replicas; want 1..={}",
                coffer_ledger::attest::MAX_REPLICAS
            )));
        }
        if self.f != (n - 1) / 3 {
            return Err(ConfigError::Invalid(format!(
                "f = {} but {n} replicas tolerate f = {}",
                self.f,
                (n - 1) / 3
            )));
        }
        for r in &self.replicas {
            crate::net::Endpoint::parse(&r.url)
                .map_err(|e| ConfigError::Invalid(format!("replica {}: {e}", r.name)))?;
            parse_replica_key(&r.public_key)
                .map_err(|e| ConfigError::Invalid(format!("replica {}: {e}", r.name)))?;
        }
        self.replica_set()?;
        if self.request_timeout_ms == 0 || self.submit_timeout_ms == 0 {
            return Err(ConfigError::Invalid("timeouts must be above 0 ms".into()));
        }
        if self.max_inputs == 0 {
            return Err(ConfigError::Invalid("max_inputs must be above 0".into()));
        }
        Ok(())
    }

    /// The replica set whose signatures count.
    pub fn replica_set(&self) -> Result<coffer_ledger::attest::ReplicaSet, ConfigError> {
        let keys = self
            .replicas
            .iter()
            .map(|r| parse_replica_key(&r.public_key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::Invalid)?;
        coffer_ledger::attest::ReplicaSet::new(keys)
            .map_err(|e| ConfigError::Invalid(format!("replica keys: {e}")))
    }

    /// The config of a cluster described by `genesis`, whose replica `i` serves its API at
    /// `urls[i]`, with the CA certificate at `ca_cert` and default timeouts. For the testnet
    /// generator; validated like a loaded file (except that the CA is not read here).
    pub fn from_genesis(
        genesis: &coffer_ledger::Genesis,
        urls: &[String],
        ca_cert: PathBuf,
    ) -> Result<Self, ConfigError> {
        if urls.len() != genesis.replicas.len() {
            return Err(ConfigError::Invalid(format!(
                "{} urls for {} genesis replicas",
                urls.len(),
                genesis.replicas.len()
            )));
        }
        let config = ClusterConfig {
            chain_id: genesis.chain_id.as_str().to_owned(),
            f: genesis.f(),
            replicas: genesis
                .replicas
                .iter()
                .zip(urls)
                .map(|(r, url)| ReplicaEndpoint {
                    name: r.name.clone(),
                    url: url.clone(),
                    public_key: hex::encode(r.public_key.0),
                })
                .collect(),
            ca_cert: Some(ca_cert),
            ca_cert_pem: None,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            submit_timeout_ms: DEFAULT_SUBMIT_TIMEOUT_MS,
            max_inputs: genesis.limits.max_inputs,
        };
        config.validate()?;
        Ok(config)
    }

    /// f+1: matching signatures needed to accept a result.
    pub fn threshold(&self) -> usize {
        self.f + 1
    }

    /// The default location: `$XDG_CONFIG_HOME/coffer/cluster.json`, else
    /// `$HOME/.config/coffer/cluster.json`.
    pub fn default_path() -> Option<PathBuf> {
        config_dir().map(|d| d.join("cluster.json"))
    }
}

/// The wallet's configuration directory: `$XDG_CONFIG_HOME/coffer` or `$HOME/.config/coffer`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("coffer"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config").join("coffer"))
}

fn parse_replica_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s).map_err(|e| format!("public key {s:?} is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("public key {s:?} is {} bytes, want 32", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(f: usize, keys: &[&str]) -> String {
        let replicas: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                serde_json::json!({"name": format!("r{i}"), "url": format!("https://127.0.0.1:{}", 7000 + i), "public_key": k})
            })
            .collect();
        serde_json::json!({"chain_id": "coffer-test", "f": f, "replicas": replicas, "ca_cert_pem": "x"})
            .to_string()
    }

    fn key(seed: u8) -> String {
        hex::encode(
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes(),
        )
    }

    #[test]
    fn valid_config_parses_with_defaults() {
        let c = ClusterConfig::from_json(&sample(0, &[&key(1)]), Path::new(".")).expect("valid");
        assert_eq!(c.threshold(), 1);
        assert_eq!(c.request_timeout_ms, DEFAULT_REQUEST_TIMEOUT_MS);
        assert_eq!(c.max_inputs, DEFAULT_MAX_INPUTS);
    }

    #[test]
    fn wrong_f_duplicate_keys_and_bad_urls_are_refused() {
        let (k1, k2) = (key(1), key(2));
        let (k1, k2) = (k1.as_str(), k2.as_str());
        let err = ClusterConfig::from_json(&sample(1, &[k1, k2]), Path::new("."));
        assert!(matches!(err, Err(ConfigError::Invalid(m)) if m.contains("f = 1")));
        let err = ClusterConfig::from_json(&sample(0, &[k1, k1]), Path::new("."));
        assert!(matches!(err, Err(ConfigError::Invalid(m)) if m.contains("twice")));
        let bad_url = sample(0, &[k1]).replace("https://", "http://");
        assert!(ClusterConfig::from_json(&bad_url, Path::new(".")).is_err());
        let bad_key = sample(0, &["abcd"]);
        assert!(ClusterConfig::from_json(&bad_key, Path::new(".")).is_err());
        let unknown = sample(0, &[k1]).replace("\"f\"", "\"faults\"");
        assert!(matches!(
            ClusterConfig::from_json(&unknown, Path::new(".")),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn from_genesis_matches_the_genesis() {
        let genesis = coffer_ledger::Genesis {
            chain_id: coffer_ledger::ChainId::new("coffer-gen").expect("chain"),
            issuers: vec![],
            replicas: (1..=4)
                .map(|i| coffer_ledger::ReplicaInfo {
                    name: format!("replica-{i}"),
                    public_key: coffer_ledger::ReplicaKey(
                        ed25519_dalek::SigningKey::from_bytes(&[i; 32])
                            .verifying_key()
                            .to_bytes(),
                    ),
                })
                .collect(),
            limits: Default::default(),
        };
        let urls: Vec<String> = (0..4).map(|i| format!("https://10.0.0.{i}:8443")).collect();
        let c = ClusterConfig::from_genesis(&genesis, &urls, "ca.pem".into()).expect("valid");
        assert_eq!((c.f, c.threshold(), c.replicas.len()), (1, 2, 4));
        assert_eq!(c.replicas[2].public_key, key(3));
        assert!(ClusterConfig::from_genesis(&genesis, &urls[..3], "ca.pem".into()).is_err());
        // Round trip through JSON with the CA inline.
        let mut c = c;
        c.ca_cert = None;
        c.ca_cert_pem = Some("pem".into());
        let json = serde_json::to_string(&c).expect("json");
        assert_eq!(
            ClusterConfig::from_json(&json, Path::new(".")).expect("parse"),
            c
        );
    }
}

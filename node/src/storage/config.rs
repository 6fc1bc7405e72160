//! Storage configuration, deserialized from the node's config file.
//!
//! ```toml
//! [storage]
//! backend = "redis"
//! mode = "sentinel"                     # or "standalone" (url) / "cluster" (seeds)
//! master_name = "coffer"
//! sentinels = ["redis://127.0.0.1:26379", "redis://127.0.0.1:26380"]
//! prefix = "coffer:r0"
//! durability = { wait_replicas = 1, wait_timeout_ms = 2000 }
//! ```

use serde::Deserialize;

/// Which backend holds the replica's state.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StorageConfig {
    /// In memory, lost on exit: tests and the ephemeral devnet only.
    Memory,
    /// Redis.
    Redis(RedisConfig),
}

/// How to reach Redis and how durable a write must be before `persist` returns.
// No `deny_unknown_fields`: serde does not support it together with `flatten`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct RedisConfig {
    /// Deployment shape and addresses.
    #[serde(flatten)]
    pub mode: RedisMode,
    /// This replica's key namespace (printable ASCII, no braces, at most 64 bytes).
    pub prefix: String,
    /// TLS to every Redis node and sentinel (needs the `redis-tls` cargo feature; URLs then use
    /// `rediss://`).
    #[serde(default)]
    pub tls: bool,
    /// PEM file with the CA that signed the Redis servers' certificates; without it the
    /// system's trust store is used.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// Replica acknowledgement required per block.
    #[serde(default)]
    pub durability: DurabilityConfig,
    /// Retries on transient failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Connect timeout per attempt.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Response timeout per command or pipeline.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
}

/// The three deployment shapes.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "mode", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RedisMode {
    /// One server (`redis://host:port[/db]`).
    Standalone {
        /// The server's URL.
        url: String,
    },
    /// A master found through sentinels.
    Sentinel {
        /// The name the sentinels monitor the master under.
        master_name: String,
        /// Sentinel URLs (`redis://host:port`).
        sentinels: Vec<String>,
    },
    /// Redis Cluster.
    Cluster {
        /// Seed node URLs; the rest of the topology is discovered.
        seeds: Vec<String>,
    },
}

/// Replica acknowledgement: after each block, `WAIT wait_replicas wait_timeout_ms`.
///
/// With 0 (the default, and the only value that makes sense standalone) a block counts as
/// persisted when the master answered; how safe that is depends on the master's `appendfsync`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DurabilityConfig {
    /// Replicas that must acknowledge each block.
    #[serde(default)]
    pub wait_replicas: u32,
    /// How long one `WAIT` may block; a shortfall is retried like a connection error.
    #[serde(default = "default_wait_timeout_ms")]
    pub wait_timeout_ms: u64,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        Self {
            wait_replicas: 0,
            wait_timeout_ms: default_wait_timeout_ms(),
        }
    }
}

/// Bounded exponential backoff for transient failures (connection loss, failover).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First delay.
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
    /// Largest delay between attempts.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// Give up after this long; must cover a failover (sentinel: down-after-milliseconds plus
    /// election; cluster: cluster-node-timeout plus election).
    #[serde(default = "default_max_elapsed_ms")]
    pub max_elapsed_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_delay_ms: default_base_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
            max_elapsed_ms: default_max_elapsed_ms(),
        }
    }
}

impl RedisConfig {
    /// A standalone configuration with defaults, for tests and tools.
    pub fn standalone(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self::with_mode(RedisMode::Standalone { url: url.into() }, prefix)
    }

    /// A configuration with defaults for any mode.
    pub fn with_mode(mode: RedisMode, prefix: impl Into<String>) -> Self {
        Self {
            mode,
            prefix: prefix.into(),
            tls: false,
            tls_ca_file: None,
            durability: DurabilityConfig::default(),
            retry: RetryConfig::default(),
            connect_timeout_ms: default_connect_timeout_ms(),
            response_timeout_ms: default_response_timeout_ms(),
        }
    }
}

fn default_wait_timeout_ms() -> u64 {
    2_000
}
fn default_base_delay_ms() -> u64 {
    20
}
fn default_max_delay_ms() -> u64 {
    1_000
}
fn default_max_elapsed_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    1_000
}
fn default_response_timeout_ms() -> u64 {
    5_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_mode() {
        let s: StorageConfig = serde_json::from_str(
            r#"{"backend":"redis","mode":"standalone","url":"redis://127.0.0.1:6379","prefix":"r0"}"#,
        )
        .expect("standalone parses");
        assert_eq!(
            s,
            StorageConfig::Redis(RedisConfig::standalone("redis://127.0.0.1:6379", "r0"))
        );
        let s: StorageConfig = serde_json::from_str(
            r#"{"backend":"redis","mode":"sentinel","master_name":"coffer",
                "sentinels":["redis://127.0.0.1:26379"],"prefix":"r1",
                "durability":{"wait_replicas":1,"wait_timeout_ms":500}}"#,
        )
        .expect("sentinel parses");
        let StorageConfig::Redis(r) = s else {
            panic!("expected redis config")
        };
        assert_eq!(r.durability.wait_replicas, 1);
        assert!(matches!(r.mode, RedisMode::Sentinel { .. }));
        let s: StorageConfig = serde_json::from_str(
            r#"{"backend":"redis","mode":"cluster","seeds":["redis://127.0.0.1:7000"],"prefix":"r2"}"#,
        )
        .expect("cluster parses");
        assert!(matches!(
            s,
            StorageConfig::Redis(RedisConfig {
                mode: RedisMode::Cluster { .. },
                ..
            })
        ));
        let s: StorageConfig = serde_json::from_str(r#"{"backend":"memory"}"#).expect("memory");
        assert_eq!(s, StorageConfig::Memory);
    }

    #[test]
    fn rejects_unknown_mode() {
        assert!(
            serde_json::from_str::<StorageConfig>(
                r#"{"backend":"redis","mode":"ring","prefix":"r0"}"#
            )
            .is_err()
        );
    }
}

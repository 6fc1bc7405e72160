//! A replica's own health, as `/v1/health` reports it and `coffer-node health` checks it.
//!
//! Healthy means every check passes:
//! - `executing`: a block was executed and persisted within [`HealthConfig::stall_after_ms`]
//!   (an idle cluster still finalizes an empty block every `idle_block_ms`, so silence means
//!   consensus or execution is stuck);
//! - `store`: no persist failed since the last success and the one in progress (if any) is not
//!   older than [`HealthConfig::slow_persist_ms`];
//! - `peers`: a quorum (2f+1, this replica included) was heard from recently;
//! - `stopping`: the replica is not shutting down.
//!
//! The API answering at all is the implicit fifth check (`api`): the probe fails when it
//! cannot connect.

use crate::api::{Health, HealthCheck, tls};
use crate::metrics::NodeMetrics;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Health thresholds (`[health]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// No block executed for this long: unhealthy.
    pub stall_after_ms: u64,
    /// A persist in progress for this long: the store is unhealthy.
    pub slow_persist_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            // Several leader timeouts (1 s each) with idle blocks every 300 ms.
            stall_after_ms: 10_000,
            slow_persist_ms: 5_000,
        }
    }
}

/// What [`evaluate`] looks at besides the metrics.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Name of this replica.
    pub replica: String,
    /// Its executed height.
    pub height: u64,
    /// Replicas heard from recently, this one included.
    pub reachable: usize,
    /// Replicas needed for progress (2f+1).
    pub quorum: usize,
    /// Replicas in the genesis.
    pub replicas: usize,
    /// Whether a shutdown started.
    pub stopping: bool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The health verdict from the metrics and what the replica observes.
pub fn evaluate(config: &HealthConfig, metrics: &NodeMetrics, seen: &Observed) -> Health {
    let stall = Duration::from_millis(config.stall_after_ms);
    let executing = match metrics.since_executed() {
        Some(age) if age <= stall => HealthCheck {
            name: "executing".into(),
            ok: true,
            detail: format!("height {}, last block {} ms ago", seen.height, millis(age)),
        },
        Some(age) => HealthCheck {
            name: "executing".into(),
            ok: false,
            detail: format!(
                "no block executed for {} ms (limit {}); height {}",
                millis(age),
                config.stall_after_ms,
                seen.height
            ),
        },
        None => HealthCheck {
            name: "executing".into(),
            ok: false,
            detail: format!("no block executed since start; height {}", seen.height),
        },
    };
    let store = match metrics.store_failing(Duration::from_millis(config.slow_persist_ms)) {
        None => HealthCheck {
            name: "store".into(),
            ok: true,
            detail: format!("{} failed persists in total", metrics.persist_failures()),
        },
        Some(for_how_long) => HealthCheck {
            name: "store".into(),
            ok: false,
            detail: format!(
                "block persist failing or stalled for {} ms ({} failed persists); retrying",
                millis(for_how_long),
                metrics.persist_failures()
            ),
        },
    };
    let peers = HealthCheck {
        name: "peers".into(),
        ok: seen.reachable >= seen.quorum,
        detail: format!(
            "{} of {} replicas reachable, quorum {}",
            seen.reachable, seen.replicas, seen.quorum
        ),
    };
    let stopping = HealthCheck {
        name: "stopping".into(),
        ok: !seen.stopping,
        detail: if seen.stopping {
            "shutting down".into()
        } else {
            "running".into()
        },
    };
    let checks = vec![executing, store, peers, stopping];
    Health {
        healthy: checks.iter().all(|c| c.ok),
        replica: seen.replica.clone(),
        height: seen.height,
        checks,
    }
}

/// Longest answer a probe reads (a health or status document is a few KiB).
const MAX_PROBE_BYTES: u64 = 1 << 20;

/// An HTTPS GET of `path` on `url` (`https://host:port`), verified against `ca_pem`, with
/// `Connection: close`. Returns the status code and the body.
pub async fn probe(
    url: &str,
    path: &str,
    ca_pem: &[u8],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let rest = url
        .trim_end_matches('/')
        .strip_prefix("https://")
        .ok_or_else(|| format!("not an https url: {url}"))?;
    let (host, _) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("no port in {url}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let config = tls::client_config(ca_pem).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
    let name = tls::server_name(host).map_err(|e| e.to_string())?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(rest)
            .await
            .map_err(|e| format!("connect {rest}: {e}"))?;
        let mut stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {rest}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {rest}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        // A peer closing without close_notify still delivered what it sent.
        let _ = (&mut stream)
            .take(MAX_PROBE_BYTES)
            .read_to_end(&mut response)
            .await;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {:?}", head.lines().next()))?;
        Ok((code, body.to_owned()))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{url} did not answer within {} ms", millis(timeout)))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::ExecutedBlock;

    fn seen(reachable: usize, stopping: bool) -> Observed {
        Observed {
            replica: "replica0".into(),
            height: 4,
            reachable,
            quorum: 3,
            replicas: 4,
            stopping,
        }
    }

    #[test]
    fn every_check_can_fail_on_its_own() {
        let config = HealthConfig::default();
        let m = NodeMetrics::new();
        let h = evaluate(&config, &m, &seen(4, false));
        assert!(!h.healthy, "nothing executed yet");
        m.on_executed(&ExecutedBlock {
            height: 4,
            digest: [0; 32],
            receipts: Vec::new(),
            commitment: [0; 32],
            commitment_encoding: Vec::new(),
        });
        let h = evaluate(&config, &m, &seen(4, false));
        assert!(h.healthy, "{h:?}");
        assert!(!evaluate(&config, &m, &seen(2, false)).healthy, "no quorum");
        assert!(!evaluate(&config, &m, &seen(4, true)).healthy, "stopping");
        m.persist_started();
        m.persist_finished(Duration::from_millis(1), false);
        let h = evaluate(&config, &m, &seen(4, false));
        let store = h.checks.iter().find(|c| c.name == "store").map(|c| c.ok);
        assert_eq!(store, Some(false));
        assert!(!h.healthy);
        let stalled = HealthConfig {
            stall_after_ms: 0,
            ..HealthConfig::default()
        };
        m.persist_finished(Duration::from_millis(1), true);
        std::thread::sleep(Duration::from_millis(2));
        assert!(!evaluate(&stalled, &m, &seen(4, false)).healthy, "stalled");
    }
}

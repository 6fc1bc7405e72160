//! Gateway metrics in the Prometheus text exposition format, hand-written: a handful of
//! counters and one histogram do not justify a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the request duration histogram, in seconds.
const DURATION_BUCKETS_S: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Counters kept by the gateway. Route labels are route templates (never raw paths), so label
/// cardinality is bounded by the route table.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    durations: Mutex<Histogram>,
    /// Connections currently open.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections dropped because the connection limit was reached.
    pub connections_refused: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
    /// Requests refused by the rate limiter.
    pub rate_limited: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; DURATION_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

impl Metrics {
    /// Records one finished request.
    pub fn record(&self, route: &'static str, status: u16, elapsed: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((route, status)).or_default() += 1;
        drop(requests);
        let secs = elapsed.as_secs_f64();
        let mut h = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        for (bound, count) in DURATION_BUCKETS_S.iter().zip(h.counts.iter_mut()) {
            if secs <= *bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum_s += secs;
    }

    /// Number of requests recorded for `route` with `status`.
    pub fn requests(&self, route: &'static str, status: u16) -> u64 {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.get(&(route, status)).copied().unwrap_or(0)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(
            out,
            "# HELP coffer_api_requests_total Requests served, by route and status."
        );
        let _ = writeln!(out, "# TYPE coffer_api_requests_total counter");
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, status), n) in requests.iter() {
            let _ = writeln!(
                out,
                "coffer_api_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        drop(requests);
        let h = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP coffer_api_request_duration_seconds Request latency."
        );
        let _ = writeln!(out, "# TYPE coffer_api_request_duration_seconds histogram");
        for (bound, count) in DURATION_BUCKETS_S.iter().zip(h.counts.iter()) {
            let _ = writeln!(
                out,
                "coffer_api_request_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "coffer_api_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "coffer_api_request_duration_seconds_sum {}", h.sum_s);
        let _ = writeln!(out, "coffer_api_request_duration_seconds_count {}", h.count);
        drop(h);
        let gauges: [(&str, &str, &str, &AtomicU64); 5] = [
            (
                "coffer_api_connections_open",
                "gauge",
                "Connections open now.",
                &self.connections_open,
            ),
            (
                "coffer_api_connections_total",
                "counter",
                "Connections accepted.",
                &self.connections_total,
            ),
            (
                "coffer_api_connections_refused_total",
                "counter",
                "Connections dropped at the connection limit.",
                &self.connections_refused,
            ),
            (
                "coffer_api_tls_failures_total",
                "counter",
                "Failed TLS handshakes.",
                &self.tls_failures,
            ),
            (
                "coffer_api_rate_limited_total",
                "counter",
                "Requests refused by the per-client rate limit.",
                &self.rate_limited,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.record("/v1/status", 200, Duration::from_millis(3));
        m.record("/v1/status", 200, Duration::from_millis(200));
        m.rate_limited.fetch_add(1, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("coffer_api_requests_total{route=\"/v1/status\",status=\"200\"} 2"));
        assert!(text.contains("coffer_api_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("coffer_api_request_duration_seconds_bucket{le=\"0.25\"} 2"));
        assert!(text.contains("coffer_api_request_duration_seconds_count 2"));
        assert!(text.contains("coffer_api_rate_limited_total 1"));
    }
}

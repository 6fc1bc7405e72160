//! Per-client request rate limiting: one token bucket per client IP address, in a table of
//! bounded size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Token-bucket parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (sustained requests per second).
    pub per_second: u32,
    /// Bucket size (largest burst).
    pub burst: u32,
    /// Most client addresses tracked at once. When full, buckets that have refilled are
    /// forgotten; if none has, new clients are refused until one does, so an address flood
    /// cannot grow the table.
    pub max_clients: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 200,
            burst: 400,
            max_clients: 65_536,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The rate limiter. Tokens are fractional (time-proportional refill): this is a rate, not
/// money, so floating point is fine here.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// A limiter with the given parameters.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip` at `now`; false when the client is over its rate. IPv6 clients
    /// are counted by their /64 (one host usually holds a whole /64, and would otherwise get a
    /// fresh bucket per address).
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = client_of(ip);
        let burst = f64::from(self.limit.burst.max(1));
        let rate = f64::from(self.limit.per_second);
        // A poisoned lock only means another request panicked mid-update; the table is still
        // a valid map of buckets.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&ip) && buckets.len() >= self.limit.max_clients {
            buckets.retain(|_, b| refill(b, now, rate, burst) < burst);
            if buckets.len() >= self.limit.max_clients {
                return false;
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let tokens = refill(bucket, now, rate, burst);
        bucket.updated = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            true
        } else {
            bucket.tokens = tokens;
            false
        }
    }

    /// Number of clients tracked (for metrics).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The client an address counts as: an IPv4 address itself (also when IPv4-mapped), an IPv6
/// address its /64 prefix.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            )),
        },
    }
}

fn refill(bucket: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let l = RateLimiter::new(RateLimit {
            per_second: 10,
            burst: 3,
            max_clients: 8,
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow(ip, t0)));
        assert!(!l.allow(ip, t0));
        // 10 per second: one token after 100 ms.
        assert!(l.allow(ip, t0 + Duration::from_millis(100)));
        assert!(!l.allow(ip, t0 + Duration::from_millis(100)));
        // Another client has its own bucket.
        assert!(l.allow([127, 0, 0, 2].into(), t0));
    }

    #[test]
    fn an_ipv6_host_counts_once_per_64_and_mapped_ipv4_as_ipv4() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1,
            burst: 2,
            max_clients: 8,
        });
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("address");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("address");
        assert!(l.allow(a, t0) && l.allow(b, t0));
        assert!(!l.allow(a, t0), "one /64, one bucket");
        assert!(l.allow("2001:db8:1:3::1".parse().expect("address"), t0));
        let v4: IpAddr = [192, 0, 2, 7].into();
        assert!(l.allow(v4, t0) && l.allow(v4, t0));
        assert!(!l.allow("::ffff:192.0.2.7".parse().expect("address"), t0));
        assert_eq!(
            client_of(a),
            "2001:db8:1:2::".parse::<IpAddr>().expect("address")
        );
    }

    #[test]
    fn table_is_bounded() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1,
            burst: 2,
            max_clients: 2,
        });
        let t0 = Instant::now();
        assert!(l.allow([10, 0, 0, 1].into(), t0));
        assert!(l.allow([10, 0, 0, 2].into(), t0));
        // Both buckets are below full: a third client must wait.
        assert!(!l.allow([10, 0, 0, 3].into(), t0));
        assert_eq!(l.tracked(), 2);
        // Once they refilled, they are forgotten and the newcomer gets in.
        assert!(l.allow([10, 0, 0, 3].into(), t0 + Duration::from_secs(5)));
        assert!(l.tracked() <= 2);
    }
}

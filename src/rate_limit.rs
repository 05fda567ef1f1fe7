//! Per-client-address token buckets, and the two limits built on them (used by the API and the
//! relay alike):
//!
//! - `RateLimiter` (`api.rate_limit`, off by default): requests to `/api` per second;
//! - `FailedAuthLimiter` (`api.auth.failure_limit`, on by default; `relay.failure_per_minute`):
//!   wrong credentials per minute. While an address has spent its budget, it is refused before
//!   what it presents is looked at.
//!
//! The table is bounded: idle buckets are dropped, and past `MAX_CLIENTS` the oldest half goes,
//! so a flood of addresses cannot grow memory without limit. The address is the TCP peer's;
//! behind a reverse proxy, limit there instead (every client would share the proxy's budget
//! here). How a refusal is answered is the caller's (`api::rate_limit`: 429 with `Retry-After`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(requests_per_second: f64, burst: u32) -> Arc<Self> {
        Arc::new(RateLimiter {
            rate: requests_per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token for `ip` at `now`; `Err(wait)` when none is left.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.refilled(ip, now, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Whether `ip` has a token left at `now`, without taking it; `Err(wait)` when it has none.
    pub fn peek(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.refilled(ip, now, |b| b.tokens >= 1.0)
    }

    /// Refills `ip`'s bucket up to `now`, then lets `take` decide (and maybe take a token).
    fn refilled(&self, ip: IpAddr, now: Instant, take: impl FnOnce(&mut Bucket) -> bool) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(&ip) {
            // A full bucket needs burst/rate seconds to refill: older than that is idle.
            let idle = Duration::from_secs_f64(self.burst / self.rate);
            map.retain(|_, b| now.duration_since(b.at) < idle);
            if map.len() >= MAX_CLIENTS {
                let mut ages: Vec<Instant> = map.values().map(|b| b.at).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                map.retain(|_, b| b.at > cut);
            }
        }
        let b = map.entry(ip).or_insert(Bucket { tokens: self.burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if take(b) { Ok(()) } else { Err(Duration::from_secs_f64((1.0 - b.tokens).max(0.0) / self.rate)) }
    }

    pub fn clients(&self) -> usize {
        self.buckets.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Wrong credentials per client address: `burst` in a row, then `per_minute`.
#[derive(Debug)]
pub struct FailedAuthLimiter(Arc<RateLimiter>);

impl FailedAuthLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Arc<Self> {
        Arc::new(FailedAuthLimiter(RateLimiter::new(f64::from(per_minute.max(1)) / 60.0, burst)))
    }

    /// Whether `ip` may present a credential now; `Err(wait)` while its budget is spent.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.0.peek(ip, now)
    }

    /// Counts a wrong credential from `ip`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let _ = self.0.check(ip, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let l = RateLimiter::new(2.0, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip, t0).is_ok());
        }
        let wait = l.check(ip, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        // Half a second later one token is back.
        assert!(l.check(ip, t0 + Duration::from_millis(500)).is_ok());
        assert!(l.check(ip, t0 + Duration::from_millis(500)).is_err());
        // Another address has its own bucket.
        assert!(l.check("10.0.0.2".parse().unwrap(), t0).is_ok());
    }

    #[test]
    fn failed_attempts_spend_a_budget_that_comes_back() {
        let l = FailedAuthLimiter::new(6, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.admit(ip, t0).is_ok(), "looking does not spend");
            l.record_failure(ip, t0);
        }
        let wait = l.admit(ip, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 10.0).abs() < 0.01, "one attempt per 10 s: {wait:?}");
        assert!(l.admit("10.0.0.2".parse().unwrap(), t0).is_ok(), "per address");
        assert!(l.admit(ip, t0 + Duration::from_secs(10)).is_ok());
        l.record_failure(ip, t0 + Duration::from_secs(10));
        assert!(l.admit(ip, t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = RateLimiter::new(1.0, 1);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check(ip, t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(l.clients() <= MAX_CLIENTS, "{}", l.clients());
    }
}

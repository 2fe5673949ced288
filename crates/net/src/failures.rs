//! A budget of failed handshakes per IP address, for the network services
//! (`gateway`, `fleet serve`): one mechanism, used by both.
//!
//! Every failed TLS handshake (garbage, a stall until the time limit, a
//! client that aborts after the server's key exchange and signature, a
//! refused client certificate) spends one unit of its address's budget; the
//! budget refills at [`FAILURES_PER_SECOND`] up to [`FAILURE_BURST`]. An
//! address whose budget is empty has its connections closed at accept,
//! before any TLS work, until it refills. Clients whose handshakes succeed
//! never spend it, so a device never loses its place to an attacker on
//! another address. The values, and why: docs/hardening.md ("Failed
//! handshakes: one budget per address").
//!
//! Memory is bounded: at most [`TRACKED`] addresses are kept; past that,
//! the ones whose budget is full again are forgotten, and a new address is
//! not tracked while every kept one is still spending.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Failed handshakes one address may have per second, on average.
pub const FAILURES_PER_SECOND: f64 = 10.0;

/// Failed handshakes one address may have in a burst.
pub const FAILURE_BURST: f64 = 50.0;

/// Addresses whose budget is kept at most.
pub const TRACKED: usize = 65_536;

/// A token bucket of failed handshakes.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: f64,
    at: Instant,
}

impl Bucket {
    fn now(self, now: Instant) -> f64 {
        let refill = now.duration_since(self.at).as_secs_f64() * FAILURES_PER_SECOND;
        (self.left + refill).min(FAILURE_BURST)
    }
}

/// The failure budgets of every address a service has seen fail.
#[derive(Debug, Default)]
pub struct FailureBudget {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl FailureBudget {
    /// No address has failed yet.
    pub fn new() -> FailureBudget {
        FailureBudget::default()
    }

    /// Whether `ip` has used up its budget: close its connection at accept.
    pub fn exhausted(&self, ip: IpAddr) -> bool {
        self.exhausted_at(ip, Instant::now())
    }

    /// Spends one of `ip`'s failed handshakes.
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now())
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exhausted_at(&self, ip: IpAddr, now: Instant) -> bool {
        self.lock().get(&ip).is_some_and(|b| b.now(now) < 1.0)
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        let mut buckets = self.lock();
        if buckets.len() >= TRACKED && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| b.now(now) < FAILURE_BURST);
            if buckets.len() >= TRACKED {
                return;
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            left: FAILURE_BURST,
            at: now,
        });
        *bucket = Bucket {
            left: (bucket.now(now) - 1.0).max(0.0),
            at: now,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)))
    }

    #[test]
    fn a_failing_address_spends_its_burst_then_refills_and_others_are_untouched() {
        let budget = FailureBudget::new();
        let t0 = Instant::now();
        for _ in 0..FAILURE_BURST as usize {
            assert!(!budget.exhausted_at(ip(1), t0), "within the burst");
            budget.failed_at(ip(1), t0);
        }
        assert!(budget.exhausted_at(ip(1), t0));
        assert!(!budget.exhausted_at(ip(2), t0), "another address");
        // One failure's worth refills in 1 / FAILURES_PER_SECOND seconds.
        let later = t0 + Duration::from_secs_f64(1.0 / FAILURES_PER_SECOND);
        assert!(!budget.exhausted_at(ip(1), later));
        budget.failed_at(ip(1), later);
        assert!(budget.exhausted_at(ip(1), later));
    }

    #[test]
    fn memory_is_bounded_and_refilled_addresses_are_forgotten() {
        let budget = FailureBudget::new();
        let t0 = Instant::now();
        for n in 0..TRACKED as u32 + 10 {
            budget.failed_at(ip(n), t0);
        }
        assert_eq!(budget.tracked(), TRACKED, "no more than TRACKED kept");
        // Once the kept ones have refilled, a new address takes their place.
        let later = t0 + Duration::from_secs(1);
        budget.failed_at(ip(0x00ff_fff0), later);
        assert_eq!(budget.tracked(), 1);
    }
}

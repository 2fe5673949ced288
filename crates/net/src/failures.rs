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
//! A failure is known only when its handshake ends, so an address that
//! opens hundreds of handshakes at once would get all of them past a
//! budget with one unit left. Once an address has spent half its burst it
//! is on probation: each handshake it starts is counted ahead against what
//! is left ([`FailureBudget::begin`] reserves, [`FailureBudget::end`] gives
//! back), so it has at most as many handshakes in flight as it has
//! failures left. An address with a full budget is forgotten; one with a
//! few failures is not limited in how many handshakes it runs at once.
//!
//! Memory is bounded: at most [`TRACKED`] addresses are kept; past that,
//! the ones whose budget is full again are forgotten, and a new address is
//! not tracked while every kept one is still spending.
//!
//! "An address" is [`client_of`] it: an IPv4 address, or an IPv6 address's
//! /64 (one host is commonly given a whole /64, so per exact IPv6 address
//! an attacker would have 2^64 budgets). The per-address connection bounds
//! of both services count by the same key.

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

/// The client `ip` stands for, the key of every per-address bound: an IPv4
/// address as it is (also when it arrives IPv4-mapped on an IPv6 socket),
/// an IPv6 address as its /64 prefix.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// A token bucket of failed handshakes, and the handshakes counted ahead.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: f64,
    at: Instant,
    /// Handshakes started on probation and not yet ended.
    in_flight: u32,
}

impl Bucket {
    fn now(self, now: Instant) -> f64 {
        let refill = now.duration_since(self.at).as_secs_f64() * FAILURES_PER_SECOND;
        (self.left + refill).min(FAILURE_BURST)
    }

    /// Nothing to remember: a full budget and nothing counted ahead.
    fn idle(self, now: Instant) -> bool {
        self.in_flight == 0 && self.now(now) >= FAILURE_BURST
    }
}

/// A handshake admitted by [`FailureBudget::begin`]; give it to
/// [`FailureBudget::end`] when the handshake ends, whatever its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Attempt {
    ip: IpAddr,
    counted_ahead: bool,
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

    /// A handshake from `ip` (its [`client_of`]) may start, or `None`: its budget is spent
    /// (with the handshakes counted ahead): close the connection at accept.
    pub fn begin(&self, ip: IpAddr) -> Option<Attempt> {
        self.begin_at(ip, Instant::now())
    }

    /// The handshake of `attempt` ended (call [`FailureBudget::failed`]
    /// first when it failed).
    pub fn end(&self, attempt: Attempt) {
        self.end_at(attempt, Instant::now())
    }

    /// Spends one of `ip`'s (its [`client_of`]'s) failed handshakes.
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

    fn begin_at(&self, ip: IpAddr, now: Instant) -> Option<Attempt> {
        let ip = client_of(ip);
        let mut buckets = self.lock();
        let Some(bucket) = buckets.get_mut(&ip) else {
            return Some(Attempt {
                ip,
                counted_ahead: false,
            });
        };
        let left = bucket.now(now);
        if left - f64::from(bucket.in_flight) < 1.0 {
            return None;
        }
        if bucket.idle(now) {
            buckets.remove(&ip);
            return Some(Attempt {
                ip,
                counted_ahead: false,
            });
        }
        let counted_ahead = left < FAILURE_BURST / 2.0;
        if counted_ahead {
            bucket.in_flight += 1;
        }
        Some(Attempt { ip, counted_ahead })
    }

    fn end_at(&self, attempt: Attempt, now: Instant) {
        let mut buckets = self.lock();
        let Some(bucket) = buckets.get_mut(&attempt.ip) else {
            return;
        };
        if attempt.counted_ahead {
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
        }
        if bucket.idle(now) {
            buckets.remove(&attempt.ip);
        }
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        let ip = client_of(ip);
        let mut buckets = self.lock();
        if buckets.len() >= TRACKED && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| !b.idle(now));
            if buckets.len() >= TRACKED {
                return;
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            left: FAILURE_BURST,
            at: now,
            in_flight: 0,
        });
        bucket.left = (bucket.now(now) - 1.0).max(0.0);
        bucket.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)))
    }

    /// One handshake from `ip` that fails.
    fn fail(budget: &FailureBudget, ip: IpAddr, at: Instant) -> bool {
        match budget.begin_at(ip, at) {
            Some(attempt) => {
                budget.failed_at(ip, at);
                budget.end_at(attempt, at);
                true
            }
            None => false,
        }
    }

    #[test]
    fn a_failing_address_spends_its_burst_then_refills_and_others_are_untouched() {
        let budget = FailureBudget::new();
        let t0 = Instant::now();
        for _ in 0..FAILURE_BURST as usize {
            assert!(fail(&budget, ip(1), t0), "within the burst");
        }
        assert!(budget.begin_at(ip(1), t0).is_none());
        assert!(budget.begin_at(ip(2), t0).is_some(), "another address");
        // One failure's worth refills in 1 / FAILURES_PER_SECOND seconds.
        let later = t0 + Duration::from_secs_f64(1.0 / FAILURES_PER_SECOND);
        assert!(fail(&budget, ip(1), later));
        assert!(budget.begin_at(ip(1), later).is_none());
        // Full again: forgotten.
        let refilled = later + Duration::from_secs(6);
        budget.end_at(budget.begin_at(ip(1), refilled).unwrap(), refilled);
        assert_eq!(budget.tracked(), 0);
    }

    #[test]
    fn on_probation_handshakes_in_flight_are_counted_ahead() {
        let budget = FailureBudget::new();
        let t0 = Instant::now();
        for _ in 0..40 {
            assert!(fail(&budget, ip(1), t0));
        }
        // Ten failures left: ten handshakes at once, not a hundred.
        let started: Vec<Attempt> = (0..100)
            .filter_map(|_| budget.begin_at(ip(1), t0))
            .collect();
        assert_eq!(started.len(), 10);
        // They succeed: nothing spent, the places come back.
        for attempt in started {
            budget.end_at(attempt, t0);
        }
        assert!(budget.begin_at(ip(1), t0).is_some());
    }

    #[test]
    fn a_few_failures_do_not_limit_how_many_handshakes_run_at_once() {
        let budget = FailureBudget::new();
        let t0 = Instant::now();
        assert!(fail(&budget, ip(1), t0));
        let started: Vec<Attempt> = (0..1000)
            .filter_map(|_| budget.begin_at(ip(1), t0))
            .collect();
        assert_eq!(started.len(), 1000);
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

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        let budget = FailureBudget::new();
        let t0 = Instant::now();
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        // Failures from ever new addresses of one /64 spend one budget.
        for n in 0..FAILURE_BURST as u32 {
            let ip = v6(&format!("2001:db8:1:2:{:x}:{:x}::1", n >> 16, n & 0xffff));
            assert!(fail(&budget, ip, t0), "within the /64's burst");
        }
        assert!(budget.begin_at(v6("2001:db8:1:2:ffff::9"), t0).is_none());
        assert!(
            budget.begin_at(v6("2001:db8:1:3::1"), t0).is_some(),
            "the next /64"
        );
        assert_eq!(budget.tracked(), 1);
        // An IPv4 client reaching an IPv6 socket is the same client.
        for _ in 0..FAILURE_BURST as usize {
            budget.failed_at(ip(7), t0);
        }
        assert!(budget.begin_at(v6("::ffff:10.0.0.7"), t0).is_none());
        assert_eq!(client_of(v6("::ffff:10.0.0.7")), ip(7));
        assert_eq!(client_of(ip(7)), ip(7));
        assert_eq!(
            client_of(v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            v6("2001:db8:1:2::")
        );
    }
}

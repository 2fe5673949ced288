//! Admission before any TLS work: how many connections may be in their
//! handshake (accepted, TLS not yet established) at once, in all and from
//! one address (an IPv4 address, an IPv6 /64: one host is commonly given a
//! whole /64). A connection over either limit is closed at once, before
//! a byte is read, so a client that opens thousands of connections and
//! sends nothing (or fails its handshakes) holds a bounded share of the
//! gateway's memory and tasks, and clients from other addresses still get
//! through. A connection gives its place back when its handshake ends
//! (relayed or failed) or times out (the route's `connect_timeout`).
//!
//! An address whose handshakes keep failing (garbage, stalls, clients that
//! abort after the gateway's key exchange and signature) gets the budget
//! of [`devtls_net::failures`] (shared with `fleet serve`). Past it, its
//! connections are closed at accept, before any TLS work, until the budget
//! refills; clients whose handshakes succeed never spend it. The values
//! are set by measurement: docs/gateway.md, "Under attack".

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use devtls_net::failures::{client_of, Attempt, FailureBudget, FAILURES_PER_SECOND};

/// Connections in their handshake at once, all addresses together.
pub const MAX_HANDSHAKES: usize = 4096;

/// Connections in their handshake at once from one IP address: room for
/// a fleet behind one NAT address reconnecting at once (the gateway test
/// sends 700 well-behaved handshakes from one address at the same time).
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 1024;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`MAX_HANDSHAKES`] are in progress.
    Full(usize),
    /// This address already has [`MAX_HANDSHAKES_PER_ADDRESS`] in progress.
    Address(usize),
    /// This address used up its budget of failed handshakes.
    Failing,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Full(n) => write!(f, "refused: {n} handshakes already in progress"),
            Refused::Address(n) => write!(
                f,
                "refused: {n} handshakes already in progress from this address"
            ),
            Refused::Failing => write!(
                f,
                "refused: too many failed handshakes from this address (more than \
                 {FAILURES_PER_SECOND} a second); it may try again shortly"
            ),
        }
    }
}

/// The counts of connections in their handshake.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    per_address: usize,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
    failures: FailureBudget,
}

/// A place in the handshake phase, given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    /// The client it is counted as.
    ip: IpAddr,
    attempt: Attempt,
}

impl Admission {
    /// At most `max` handshakes in all and `per_address` from one address.
    pub fn new(max: usize, per_address: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max,
            per_address,
            counts: Mutex::new((0, HashMap::new())),
            failures: FailureBudget::new(),
        })
    }

    /// A place for a connection from `ip`, or why not. Counted per client:
    /// an IPv4 address, an IPv6 /64 ([`client_of`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let attempt = self.failures.begin(ip).ok_or(Refused::Failing)?;
        let ip = client_of(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *counts;
        let refused = if *total >= self.max {
            Some(Refused::Full(self.max))
        } else if per.get(&ip).is_some_and(|&n| n >= self.per_address) {
            Some(Refused::Address(self.per_address))
        } else {
            None
        };
        if let Some(refused) = refused {
            drop(counts);
            self.failures.end(attempt);
            return Err(refused);
        }
        *per.entry(ip).or_insert(0) += 1;
        *total += 1;
        Ok(Ticket {
            admission: self.clone(),
            ip,
            attempt,
        })
    }

    /// Spends one of `ip`'s failed handshakes (its ticket, dropped when the
    /// handshake ended, gave back what was counted ahead for it).
    pub fn failed(&self, ip: IpAddr) {
        self.failures.failed(ip)
    }

    /// Connections in their handshake now (all addresses).
    pub fn in_progress(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self
            .admission
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *counts;
        *total -= 1;
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
        drop(counts);
        self.admission.failures.end(self.attempt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_net::failures::FAILURE_BURST;

    #[test]
    fn one_address_cannot_take_every_place_and_places_come_back() {
        let a = Admission::new(5, 3);
        let (x, y): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
        let held: Vec<Ticket> = (0..3).map(|_| a.admit(x).unwrap()).collect();
        assert_eq!(a.admit(x).unwrap_err(), Refused::Address(3));
        let other: Vec<Ticket> = (0..2).map(|_| a.admit(y).unwrap()).collect();
        assert_eq!(a.admit(y).unwrap_err(), Refused::Full(5));
        drop(held);
        assert_eq!(a.in_progress(), 2);
        let again = a.admit(x).expect("a place given back is taken again");
        drop((other, again));
        assert_eq!(a.in_progress(), 0);
        assert!(a.counts.lock().unwrap().1.is_empty(), "no address kept");
    }

    #[test]
    fn an_ipv6_64_is_one_address() {
        let a = Admission::new(100, 2);
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let held = [
            a.admit(v6("2001:db8:0:1::1")).unwrap(),
            a.admit(v6("2001:db8:0:1::2")).unwrap(),
        ];
        assert_eq!(
            a.admit(v6("2001:db8:0:1:ffff::3")).unwrap_err(),
            Refused::Address(2),
            "another address of the same /64"
        );
        let other = a.admit(v6("2001:db8:0:2::1")).expect("the next /64");
        drop((held, other));
        assert!(a.counts.lock().unwrap().1.is_empty(), "no address kept");
    }

    #[test]
    fn an_address_whose_handshakes_keep_failing_is_refused_and_others_are_not() {
        let a = Admission::new(100, 100);
        let (bad, good): (IpAddr, IpAddr) =
            ("127.0.0.3".parse().unwrap(), "127.0.0.1".parse().unwrap());
        for _ in 0..FAILURE_BURST as usize {
            drop(a.admit(bad).expect("within the burst"));
            a.failed(bad);
        }
        assert_eq!(a.admit(bad).unwrap_err(), Refused::Failing);
        for _ in 0..1000 {
            drop(
                a.admit(good)
                    .expect("a client that does not fail is never refused"),
            );
        }
    }
}

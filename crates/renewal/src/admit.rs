//! Admission: what a connection may hold before it has proved anything.
//! Decided at accept time, before any TLS work (docs/hardening.md, "fleet
//! serve"):
//!
//! - at most `per_address` unauthenticated connections per IP address (an
//!   IPv4 address, an IPv6 /64: [`devtls_net::failures::client_of`]);
//!   one more from that address evicts that address's oldest (one that has
//!   sent nothing yet first): an address can hold no more places, and its
//!   newest connection (a device connecting now) still gets in;
//! - at most `max_connections` open connections; when full, a new one
//!   evicts the oldest unauthenticated connection (one that has sent
//!   nothing yet first), and is closed at once when every open connection
//!   is authenticated;
//! - one client certificate holds at most `per_address` authenticated
//!   connections at once (more are answered 503 with `Retry-After`);
//! - an address whose TLS handshakes keep failing has its connections
//!   closed at once once its budget of failures is spent (the gateway's
//!   mechanism, [`devtls_net::failures`]); a device whose handshakes
//!   succeed never spends it.
//!
//! Authenticated connections (a completed mutual-TLS handshake) are never
//! evicted.
//!
//! A TCP proxy in front ([`Gate::trusting`]: nginx `stream`, HAProxy in TCP
//! mode) brings every device from its one address, so the two per-address
//! bounds (unfinished connections, the failure budget) would count the whole
//! fleet as one client: its connections are exempt from them, and the proxy,
//! which sees the devices' addresses, bounds each address instead
//! (docs/renewal.md, "Behind a TCP proxy"). The total bound and the
//! per-certificate bound still apply to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use devtls_net::failures::{client_of, Attempt, FailureBudget};
use tokio::sync::Notify;

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most (unauthenticated and authenticated).
    pub max_connections: usize,
    /// Unauthenticated connections per IP address, and authenticated ones
    /// per client certificate.
    pub per_address: usize,
}

/// Where an unauthenticated connection is; evicted in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Nothing received yet.
    Silent,
    /// In its TLS handshake.
    Handshaking,
}

type Key = (Stage, u64);

/// The admission state of one listener.
pub struct Gate {
    limits: Limits,
    state: Mutex<State>,
    failures: FailureBudget,
    /// Addresses of trusted TCP proxies: no per-address bounds.
    proxies: Vec<IpAddr>,
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every place is held by an authenticated connection.
    Busy,
    /// The address used up its budget of failed handshakes.
    Failing,
}

impl Refused {
    /// The outcome counted for it (`fleet status`).
    pub fn outcome(self) -> &'static str {
        match self {
            Refused::Busy => "refused-busy",
            Refused::Failing => "refused-failing",
        }
    }
}

#[derive(Default)]
struct State {
    next: u64,
    open: usize,
    /// Connections not yet authenticated, by stage, oldest first.
    unauthenticated: BTreeMap<Key, (IpAddr, Arc<Notify>)>,
    /// The same, per address.
    addresses: HashMap<IpAddr, BTreeSet<Key>>,
    /// Authenticated connections open per client certificate (its SHA-256).
    devices: HashMap<String, usize>,
}

impl State {
    fn evict(&mut self, key: Key) {
        if let Some((ip, notify)) = self.unauthenticated.remove(&key) {
            notify.notify_one();
            self.forget(ip, key);
        }
    }

    fn forget(&mut self, ip: IpAddr, key: Key) {
        if let Some(keys) = self.addresses.get_mut(&ip) {
            keys.remove(&key);
            if keys.is_empty() {
                self.addresses.remove(&ip);
            }
        }
    }
}

/// One admitted connection; dropping it gives its place back.
pub struct Ticket {
    gate: Arc<Gate>,
    key: Mutex<Option<Key>>,
    ip: IpAddr,
    /// What the per-address bound counts it as ([`client_of`] `ip`).
    client: IpAddr,
    evicted: Arc<Notify>,
    device: Mutex<Option<String>>,
    /// Until the handshake ends: counted ahead against a failing address.
    attempt: Mutex<Option<Attempt>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gate {
    /// A gate with these bounds (each at least 1).
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            limits: Limits {
                max_connections: limits.max_connections.max(1),
                per_address: limits.per_address.max(1),
            },
            state: Mutex::default(),
            failures: FailureBudget::new(),
            proxies: Vec::new(),
        })
    }

    /// A gate with these bounds that exempts connections from `proxies`
    /// (trusted TCP proxies in front) from the per-address bounds.
    pub fn trusting(limits: Limits, proxies: &[IpAddr]) -> Arc<Gate> {
        let mut gate = Arc::into_inner(Gate::new(limits)).expect("just made");
        gate.proxies = proxies.to_vec();
        Arc::new(gate)
    }

    fn is_proxy(&self, ip: IpAddr) -> bool {
        self.proxies.contains(&ip)
    }

    /// Admits a connection from `ip`, evicting as the module says, or says
    /// why it is to be closed now.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let proxy = self.is_proxy(ip);
        let attempt = if proxy {
            None
        } else {
            Some(self.failures.begin(ip).ok_or(Refused::Failing)?)
        };
        // Bounded per client: an IPv4 address, an IPv6 /64 (devtls_net::failures).
        let client = client_of(ip);
        let mut s = lock(&self.state);
        let mine = s.addresses.get(&client).map_or(0, BTreeSet::len);
        if !proxy && mine >= self.limits.per_address {
            let oldest = s.addresses.get(&client).and_then(|k| k.first().copied());
            if let Some(key) = oldest {
                s.evict(key);
            }
        } else if s.open >= self.limits.max_connections {
            let Some(&key) = s.unauthenticated.keys().next() else {
                drop(s);
                if let Some(attempt) = attempt {
                    self.failures.end(attempt);
                }
                return Err(Refused::Busy);
            };
            s.evict(key);
        }
        s.open += 1;
        s.next += 1;
        let key = (Stage::Silent, s.next);
        let evicted = Arc::new(Notify::new());
        s.unauthenticated.insert(key, (client, evicted.clone()));
        s.addresses.entry(client).or_default().insert(key);
        Ok(Ticket {
            gate: self.clone(),
            key: Mutex::new(Some(key)),
            ip,
            client,
            evicted,
            device: Mutex::new(None),
            attempt: Mutex::new(attempt),
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        lock(&self.state).open
    }
}

impl Ticket {
    /// Takes this connection out of the unauthenticated ones (unless it
    /// was evicted meanwhile); `stage`: puts it back at that stage.
    fn leave(&self, s: &mut State, stage: Option<Stage>) {
        let mut key = lock(&self.key);
        let Some(old) = *key else { return };
        let Some(entry) = s.unauthenticated.remove(&old) else {
            *key = None;
            return;
        };
        s.forget(self.client, old);
        *key = stage.map(|stage| (stage, old.1));
        if let Some(new) = *key {
            s.unauthenticated.insert(new, entry);
            s.addresses.entry(self.client).or_default().insert(new);
        }
    }

    /// The handshake failed (garbage, a stall, an abort, a refused
    /// certificate): spends one of the address's failures.
    pub fn failed(&self) {
        if !self.gate.is_proxy(self.ip) {
            self.gate.failures.failed(self.ip);
        }
        self.handshake_ended();
    }

    /// Gives back what the failure budget counted ahead for this handshake.
    fn handshake_ended(&self) {
        if let Some(attempt) = lock(&self.attempt).take() {
            self.gate.failures.end(attempt);
        }
    }

    /// The client sent its first bytes: the handshake starts.
    pub fn handshaking(&self) {
        self.leave(&mut lock(&self.gate.state), Some(Stage::Handshaking));
    }

    /// Resolves when the gate evicts this connection to make room.
    pub async fn evicted(&self) {
        self.evicted.notified().await
    }

    /// The handshake completed with the client certificate `device` (its
    /// SHA-256, hex): the connection can no longer be evicted. `false` when
    /// that certificate already has `per_address` authenticated connections
    /// open (the caller answers 503).
    pub fn authenticated(&self, device: String) -> bool {
        self.handshake_ended();
        let mut s = lock(&self.gate.state);
        self.leave(&mut s, None);
        let open = s.devices.entry(device.clone()).or_insert(0);
        if *open >= self.gate.limits.per_address {
            return false;
        }
        *open += 1;
        *lock(&self.device) = Some(device);
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.handshake_ended();
        let mut s = lock(&self.gate.state);
        s.open -= 1;
        self.leave(&mut s, None);
        if let Some(d) = lock(&self.device).take() {
            if let Some(open) = s.devices.get_mut(&d) {
                *open -= 1;
                if *open == 0 {
                    s.devices.remove(&d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    async fn told_to_go(t: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(200), t.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_full_gate_evicts_the_oldest_unauthenticated_connection() {
        let gate = Gate::new(Limits {
            max_connections: 2,
            per_address: 8,
        });
        let idle = gate.admit(ip(2)).unwrap();
        let device = gate.admit(ip(1)).unwrap();
        assert!(device.authenticated("1".into()));
        let newcomer = gate.admit(ip(1)).unwrap();
        // The idle holder is told to go; the authenticated device is not.
        assert!(told_to_go(&idle).await);
        drop(idle);
        assert_eq!(gate.open(), 2);
        assert!(newcomer.authenticated("2".into()));
        // Everything open is authenticated: a newcomer is closed at once.
        assert_eq!(gate.admit(ip(3)).err(), Some(Refused::Busy));
        assert!(!told_to_go(&device).await);
        drop(device);
        assert!(gate.admit(ip(3)).is_ok());
    }

    #[tokio::test]
    async fn connections_that_sent_nothing_are_evicted_before_handshakes() {
        let gate = Gate::new(Limits {
            max_connections: 2,
            per_address: 8,
        });
        let device = gate.admit(ip(1)).unwrap();
        device.handshaking();
        let idle = gate.admit(ip(2)).unwrap();
        let _newcomer = gate.admit(ip(3)).unwrap();
        // The idle connection is newer than the handshaking device, and goes first.
        assert!(told_to_go(&idle).await);
        assert!(!told_to_go(&device).await);
    }

    #[tokio::test]
    async fn an_address_holds_at_most_its_places() {
        let gate = Gate::new(Limits {
            max_connections: 100,
            per_address: 2,
        });
        let a: Vec<Ticket> = (0..2).map(|_| gate.admit(ip(2)).unwrap()).collect();
        a[0].handshaking();
        // A third from the same address evicts its silent one, not the handshake.
        let third = gate.admit(ip(2)).unwrap();
        assert!(told_to_go(&a[1]).await && !told_to_go(&a[0]).await);
        // Another address is not touched.
        let other = gate.admit(ip(1)).unwrap();
        assert!(!told_to_go(&other).await && !told_to_go(&third).await);
        drop((a, third, other));
        assert!(lock(&gate.state).addresses.is_empty());
        // One device certificate: at most `per_address` authenticated connections.
        let b: Vec<Ticket> = (0..3)
            .map(|_| gate.admit(IpAddr::from([10, 0, 0, 1])).unwrap())
            .collect();
        assert!(b[0].authenticated("7".into()));
        let c = gate.admit(ip(3)).unwrap();
        assert!(c.authenticated("7".into()));
        assert!(!b[2].authenticated("7".into()));
        drop((b, c));
        let s = lock(&gate.state);
        assert!(s.devices.is_empty() && s.unauthenticated.is_empty() && s.open == 0);
    }

    #[tokio::test]
    async fn an_ipv6_64_holds_the_places_of_one_address() {
        let gate = Gate::new(Limits {
            max_connections: 100,
            per_address: 2,
        });
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = gate.admit(v6("2001:db8:0:1::1")).unwrap();
        let second = gate.admit(v6("2001:db8:0:1::2")).unwrap();
        // A third address of the same /64 takes the place of its oldest.
        let third = gate.admit(v6("2001:db8:0:1:ffff::3")).unwrap();
        assert!(told_to_go(&first).await && !told_to_go(&second).await);
        // The next /64 is another client.
        let other = gate.admit(v6("2001:db8:0:2::1")).unwrap();
        assert!(!told_to_go(&second).await && !told_to_go(&third).await);
        drop((first, second, third, other));
        assert!(lock(&gate.state).addresses.is_empty());
    }

    #[tokio::test]
    async fn an_address_whose_handshakes_keep_failing_is_closed_at_accept() {
        let gate = Gate::new(Limits {
            max_connections: 100,
            per_address: 100,
        });
        let burst = devtls_net::failures::FAILURE_BURST as usize;
        for _ in 0..burst {
            gate.admit(ip(3)).expect("within the budget").failed();
        }
        assert_eq!(gate.admit(ip(3)).err(), Some(Refused::Failing));
        assert_eq!(gate.open(), 0, "nothing held for it");
        // A device on another address, whose handshakes succeed, is not touched.
        for n in 0..1000 {
            let t = gate.admit(ip(1)).expect("never refused");
            assert!(t.authenticated(format!("{n}")));
        }
    }

    #[tokio::test]
    async fn a_trusted_proxy_is_not_bounded_per_address_but_in_total() {
        let limits = Limits {
            max_connections: 300,
            per_address: 2,
        };
        let proxy = ip(9);
        let gate = Gate::trusting(limits, &[proxy]);
        // Many devices' handshakes through the proxy at once: none evicts
        // another, and their failures close nothing at accept.
        let held: Vec<Ticket> = (0..200).map(|_| gate.admit(proxy).unwrap()).collect();
        assert!(!told_to_go(&held[0]).await, "none evicted");
        let burst = devtls_net::failures::FAILURE_BURST as usize;
        for _ in 0..burst * 2 {
            gate.admit(proxy)
                .expect("never closed for failing")
                .failed();
        }
        // The total bound still holds: past it, the oldest unfinished go.
        let _more: Vec<Ticket> = (0..150).map(|_| gate.admit(proxy).unwrap()).collect();
        assert!(told_to_go(&held[49]).await, "200 + 150 in a gate of 300");
        assert!(!told_to_go(&held[50]).await);
        // Any other address keeps its per-address bound.
        let a = gate.admit(ip(1)).unwrap();
        let b = gate.admit(ip(1)).unwrap();
        let _c = gate.admit(ip(1)).unwrap();
        assert!(told_to_go(&a).await, "the address's oldest was evicted");
        assert!(!told_to_go(&b).await);
    }
}

//! Admission: what a connection may hold before it has proved anything.
//! Decided at accept time, before any TLS work (docs/hardening.md, "fleet
//! serve"):
//!
//! - at most `max_connections` open connections; when full, a new one
//!   evicts the oldest connection that has not finished its handshake (an
//!   idle holder is the oldest; a device handshaking now is the newest),
//!   and is closed at once when every open connection is authenticated;
//! - at most `per_address` handshakes at once per IP address; more
//!   connections from that address wait, reading nothing, for one of its
//!   slots (within the handshake time limit, and evictable meanwhile).
//!
//! Only authenticated connections (a completed mutual-TLS handshake) are
//! never evicted; one client certificate holds at most `per_address` of
//! them at once (more are answered 503 with `Retry-After`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most (handshaking, waiting and authenticated).
    pub max_connections: usize,
    /// Handshakes at once per IP address.
    pub per_address: usize,
}

/// The admission state of one listener.
pub struct Gate {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    open: usize,
    /// Connections not yet authenticated, oldest first.
    unauthenticated: BTreeMap<u64, Arc<Notify>>,
    /// Handshake slots of each address with a connection open.
    addresses: HashMap<IpAddr, (Arc<Semaphore>, usize)>,
    /// Authenticated connections open per client certificate (its SHA-256).
    devices: HashMap<String, usize>,
}

/// One admitted connection; dropping it gives its place back.
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    ip: IpAddr,
    evicted: Arc<Notify>,
    slots: Arc<Semaphore>,
    device: Mutex<Option<String>>,
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
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, evicting the oldest unauthenticated
    /// one when full; `None`: close it now (every place is authenticated).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Ticket> {
        let mut s = self.state();
        if s.open >= self.limits.max_connections {
            let (_, oldest) = s.unauthenticated.pop_first()?;
            oldest.notify_one();
        }
        s.open += 1;
        s.next += 1;
        let id = s.next;
        let evicted = Arc::new(Notify::new());
        s.unauthenticated.insert(id, evicted.clone());
        let per_address = self.limits.per_address;
        let entry = s
            .addresses
            .entry(ip)
            .or_insert_with(|| (Arc::new(Semaphore::new(per_address)), 0));
        entry.1 += 1;
        let slots = entry.0.clone();
        Some(Ticket {
            gate: self.clone(),
            id,
            ip,
            evicted,
            slots,
            device: Mutex::new(None),
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.state().open
    }
}

impl Ticket {
    /// Waits for a handshake slot of this connection's address.
    pub async fn handshake_slot(&self) -> OwnedSemaphorePermit {
        match self.slots.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Resolves when the gate evicts this connection to make room.
    pub async fn evicted(&self) {
        self.evicted.notified().await
    }

    /// The handshake completed with the client certificate `device` (its
    /// SHA-256, hex): the connection can no longer be evicted. `false` when that
    /// certificate already has `per_address` authenticated connections open
    /// (the caller answers 503).
    pub fn authenticated(&self, device: String) -> bool {
        let mut s = self.gate.state();
        s.unauthenticated.remove(&self.id);
        let open = s.devices.entry(device.clone()).or_insert(0);
        if *open >= self.gate.limits.per_address {
            return false;
        }
        *open += 1;
        *self.device.lock().unwrap_or_else(|p| p.into_inner()) = Some(device);
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.gate.state();
        s.open -= 1;
        s.unauthenticated.remove(&self.id);
        let device = self.device.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(d) = device {
            if let Some(open) = s.devices.get_mut(&d) {
                *open -= 1;
                if *open == 0 {
                    s.devices.remove(&d);
                }
            }
        }
        if let Some(entry) = s.addresses.get_mut(&self.ip) {
            entry.1 -= 1;
            if entry.1 == 0 {
                s.addresses.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
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
        tokio::time::timeout(std::time::Duration::from_secs(5), idle.evicted())
            .await
            .unwrap();
        drop(idle);
        assert_eq!(gate.open(), 2);
        assert!(newcomer.authenticated("2".into()));
        // Everything open is authenticated: a newcomer is closed at once.
        assert!(gate.admit(ip(3)).is_none());
        drop(device);
        assert!(gate.admit(ip(3)).is_some());
    }

    #[tokio::test]
    async fn an_address_gets_only_its_handshake_slots() {
        let gate = Gate::new(Limits {
            max_connections: 100,
            per_address: 2,
        });
        let a: Vec<Ticket> = (0..3).map(|_| gate.admit(ip(2)).unwrap()).collect();
        let p0 = a[0].handshake_slot().await;
        let _p1 = a[1].handshake_slot().await;
        let third = a[2].handshake_slot();
        tokio::pin!(third);
        assert!(futures_poll_once(&mut third).await.is_none(), "waits");
        // Another address is not held up by the first one's connections.
        let other = gate.admit(ip(1)).unwrap();
        let _ = other.handshake_slot().await;
        drop(p0);
        assert!(futures_poll_once(&mut third).await.is_some());
        drop(a);
        assert_eq!(gate.state().addresses.len(), 1);
        // One device certificate: at most `per_address` authenticated connections.
        let b: Vec<Ticket> = (0..3).map(|_| gate.admit(ip(3)).unwrap()).collect();
        assert!(b[0].authenticated("7".into()) && b[1].authenticated("7".into()));
        assert!(!b[2].authenticated("7".into()));
        drop(b);
        assert!(gate.state().devices.is_empty());
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = f => Some(out),
            _ = tokio::task::yield_now() => None,
        }
    }
}

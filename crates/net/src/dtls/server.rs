//! The DTLS server: many clients at once on one UDP socket, a stateless
//! cookie exchange in front of rtc-dtls, and the guide's echo. [`DtlsServer`]
//! serves from a blocking socket, [`AsyncDtlsServer`] from a tokio one; both
//! drive the same socket-free state, so they answer alike.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use devtls_pki::profile::Profile;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::cookie::{self, CookieJar};
use super::crypto::{self, ProfileProvider, RustlsSigner};
use super::defrag::Defrag;
use super::{chain, DtlsError, MAX_DATAGRAM, VERSION};

/// Most clients in the middle of a handshake or conversation at once; past
/// this, new clients are ignored until some finish (their retransmissions
/// get in later).
const MAX_PEERS: usize = 4096;

/// Most half-open handshakes (cookie exchange done, handshake not finished)
/// one source IP address may hold at once: one host cannot take every slot
/// and the memory behind them. Further clients from it are ignored until
/// some finish or time out (their retransmissions get in later).
pub const MAX_HALF_OPEN_PER_ADDRESS: usize = 256;

/// Longest the loop sleeps, so limits are checked even when all is quiet.
const TICK: Duration = Duration::from_millis(100);

/// After the last counted client, how long the server keeps answering the
/// clients it has: a reply lost on the way makes the client send again, and
/// nobody would answer if the server had already gone. Also how long a
/// served client may be quiet before the server closes it.
const LINGER: Duration = Duration::from_millis(1500);

/// What a DTLS server needs.
#[derive(Clone)]
pub struct ServerOptions {
    /// The server's certificate chain and key.
    pub identity: (
        Vec<CertificateDer<'static>>,
        Arc<dyn rustls::sign::SigningKey>,
    ),
    /// When set, every client must present a certificate this accepts (mTLS).
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The device profile the server behaves like.
    pub profile: &'static Profile,
    /// A client that has not finished its handshake in this time is dropped;
    /// a served client silent for this long is forgotten.
    pub handshake_timeout: Duration,
    /// What the server answers every message (the guide's `hello\n`).
    pub reply: Vec<u8>,
}

/// A client that completed the handshake and was answered.
#[derive(Debug, Clone)]
pub struct ServedClient {
    /// Its address.
    pub peer: SocketAddr,
    /// Always [`VERSION`].
    pub version: &'static str,
    /// The negotiated cipher suite's IANA name.
    pub suite: String,
    /// The client's certificate chain, leaf first (empty without mTLS).
    pub client_chain: Vec<CertificateDer<'static>>,
    /// What it sent first.
    pub received: Vec<u8>,
}

/// One verdict per client that got past the cookie exchange.
#[derive(Debug)]
pub enum ServerEvent {
    /// Handshake done, message received and answered.
    Served(ServedClient),
    /// The handshake failed or timed out.
    Failed {
        /// The client's address.
        peer: SocketAddr,
        /// Why.
        error: DtlsError,
        /// The client's certificate chain, if it sent one.
        presented: Vec<CertificateDer<'static>>,
    },
}

/// Counters that show what the server did with datagrams that never became
/// a handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// HelloVerifyRequests sent (no state kept for them).
    pub hello_verify_requests: usize,
    /// Datagrams from unknown addresses that were not a ClientHello.
    pub garbage: usize,
    /// Handshakes started after a valid cookie.
    pub handshakes: usize,
    /// Valid second ClientHellos ignored because their address already
    /// held [`MAX_HALF_OPEN_PER_ADDRESS`] half-open handshakes.
    pub capped: usize,
    /// Half-open handshakes dropped because they did not finish in time.
    pub expired: usize,
}

struct Peer {
    defrag: Defrag,
    started: Instant,
    last_seen: Instant,
    completed: bool,
    served: bool,
}

#[derive(Default)]
struct Seen {
    failure: Option<rustls::Error>,
}

/// A UDP socket a DTLS server can run on: std's (blocking) or tokio's.
pub trait Socket {
    /// The address the socket is bound to.
    fn local_addr(&self) -> std::io::Result<SocketAddr>;
}

impl Socket for UdpSocket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }
}

impl Socket for tokio::net::UdpSocket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }
}

/// A DTLS server on a socket of kind `S`; see [`DtlsServer`] and
/// [`AsyncDtlsServer`].
pub struct ServerOn<S> {
    socket: S,
    core: Core,
}

/// A DTLS server on a blocking UDP socket.
pub type DtlsServer = ServerOn<UdpSocket>;

/// A DTLS server on a tokio UDP socket: [`DtlsServer`] without a thread of
/// its own, for programs that already run on tokio.
pub type AsyncDtlsServer = ServerOn<tokio::net::UdpSocket>;

impl<S: Socket> ServerOn<S> {
    /// The address the socket is bound to (the port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// What happened to datagrams that did not become handshakes.
    pub fn stats(&self) -> Stats {
        self.core.stats
    }

    /// Clients currently holding state (mid-handshake or recently served).
    pub fn active_clients(&self) -> usize {
        self.core.peers.len()
    }

    /// Clients past the cookie exchange whose handshake has not finished.
    pub fn half_open(&self) -> usize {
        self.core.half_open()
    }
}

impl DtlsServer {
    /// Binds `addr` and prepares the handshake configuration.
    pub fn bind(addr: SocketAddr, options: ServerOptions) -> Result<Self, DtlsError> {
        let socket = UdpSocket::bind(addr)?;
        let core = Core::new(socket.local_addr()?, options)?;
        Ok(ServerOn { socket, core })
    }

    /// Serves until `count` verdicts were given (all of them if `None`) or
    /// `max_time` passed, calling `on_event` for each. After the count it
    /// still answers the clients it has for a moment (see `LINGER`).
    pub fn serve(
        &mut self,
        count: Option<usize>,
        max_time: Option<Duration>,
        mut on_event: impl FnMut(&ServerEvent),
    ) -> Result<usize, DtlsError> {
        let mut serving = Serving::new(count, max_time);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut events = Vec::new();
        while !serving.should_stop(&mut self.core, Instant::now()) {
            let wait = self.core.wait(Instant::now());
            self.socket.set_read_timeout(Some(wait))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, peer)) => self.core.on_datagram(peer, &buf[..n], &mut events),
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(DtlsError::Io(e)),
            }
            self.core.on_timers(Instant::now(), &mut events);
            self.flush();
            serving.deliver(&mut events, &mut on_event);
        }
        self.flush();
        Ok(serving.given)
    }

    fn flush(&mut self) {
        while let Some((to, datagram)) = self.core.next_datagram() {
            // A vanished client is not the server's failure.
            let _ = self.socket.send_to(&datagram, to);
        }
    }
}

impl AsyncDtlsServer {
    /// Binds `addr` and prepares the handshake configuration.
    pub async fn bind(addr: SocketAddr, options: ServerOptions) -> Result<Self, DtlsError> {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        let core = Core::new(socket.local_addr()?, options)?;
        Ok(ServerOn { socket, core })
    }

    /// [`DtlsServer::serve`], awaiting datagrams instead of blocking.
    pub async fn serve(
        &mut self,
        count: Option<usize>,
        max_time: Option<Duration>,
        mut on_event: impl FnMut(&ServerEvent),
    ) -> Result<usize, DtlsError> {
        let mut serving = Serving::new(count, max_time);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut events = Vec::new();
        while !serving.should_stop(&mut self.core, Instant::now()) {
            let wait = self.core.wait(Instant::now());
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, peer))) => self.core.on_datagram(peer, &buf[..n], &mut events),
                Ok(Err(e)) if is_transient(&e) => {}
                Ok(Err(e)) => return Err(DtlsError::Io(e)),
                Err(_elapsed) => {}
            }
            self.core.on_timers(Instant::now(), &mut events);
            self.flush().await;
            serving.deliver(&mut events, &mut on_event);
        }
        self.flush().await;
        Ok(serving.given)
    }

    async fn flush(&mut self) {
        while let Some((to, datagram)) = self.core.next_datagram() {
            let _ = self.socket.send_to(&datagram, to).await;
        }
    }
}

/// Receive errors that say nothing about the server: a timeout, or ICMP
/// news about a client that went away.
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
    )
}

/// The bookkeeping of one `serve` call: how many verdicts were given, and
/// the linger after the last counted one.
struct Serving {
    start: Instant,
    count: Option<usize>,
    max_time: Option<Duration>,
    given: usize,
    linger_until: Option<Instant>,
}

impl Serving {
    fn new(count: Option<usize>, max_time: Option<Duration>) -> Self {
        Serving {
            start: Instant::now(),
            count,
            max_time,
            given: 0,
            linger_until: None,
        }
    }

    /// Whether `serve` should return now; once the count is reached the
    /// server stops taking new clients and lingers for the ones it has.
    fn should_stop(&mut self, core: &mut Core, now: Instant) -> bool {
        if self.max_time.is_some_and(|m| now - self.start >= m)
            || self
                .linger_until
                .is_some_and(|t| now >= t || core.peers.is_empty())
        {
            return true;
        }
        if self.linger_until.is_none() && self.count.is_some_and(|c| self.given >= c) {
            self.linger_until = Some(now + LINGER.min(core.options.handshake_timeout));
            core.accepting = false;
        }
        false
    }

    fn deliver(&mut self, events: &mut Vec<ServerEvent>, on_event: &mut impl FnMut(&ServerEvent)) {
        for event in events.drain(..) {
            if self.linger_until.is_none() {
                self.given += 1;
                on_event(&event);
            }
        }
    }
}

/// Everything a DTLS server knows, without its socket: the drivers above
/// feed it datagrams and timer ticks and send what it queues.
struct Core {
    endpoint: Endpoint,
    provider: Arc<ProfileProvider>,
    jar: CookieJar,
    peers: HashMap<SocketAddr, Peer>,
    seen: Arc<Mutex<Seen>>,
    options: ServerOptions,
    stats: Stats,
    /// False once the count is reached: only known clients are answered.
    accepting: bool,
    /// Datagrams to send, with their destination.
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    /// `stats.handshakes` when the heap was last trimmed.
    trimmed_at: usize,
}

impl Core {
    fn new(local: SocketAddr, options: ServerOptions) -> Result<Self, DtlsError> {
        let provider = ProfileProvider::new(options.profile);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let config = server_config(&options, provider.clone(), seen.clone())?;
        Ok(Core {
            endpoint: Endpoint::new(
                local,
                rtc_shared::TransportProtocol::UDP,
                Some(Arc::new(config)),
            ),
            provider,
            jar: CookieJar::new(),
            peers: HashMap::new(),
            seen,
            options,
            stats: Stats::default(),
            accepting: true,
            outbox: VecDeque::new(),
            trimmed_at: 0,
        })
    }

    /// How long the driver may wait for a datagram before the next timer.
    fn wait(&self, now: Instant) -> Duration {
        self.next_wake(now)
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), TICK)
    }

    /// The next datagram to send and where.
    fn next_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.stash();
        self.outbox.pop_front()
    }

    /// Moves what rtc-dtls queued into the outbox, in order.
    fn stash(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.outbox
                .push_back((t.transport.peer_addr, t.message.to_vec()));
        }
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + TICK;
        for (addr, peer) in &self.peers {
            if let Some(t) = self.endpoint.poll_timeout(addr) {
                wake = wake.min(t);
            }
            wake = wake.min(peer.last_seen.max(peer.started) + self.options.handshake_timeout);
        }
        wake
    }

    fn on_datagram(&mut self, peer: SocketAddr, data: &[u8], events: &mut Vec<ServerEvent>) {
        let now = Instant::now();
        let hello = cookie::parse_client_hello(data);
        if let Some(p) = self.peers.get(&peer) {
            // A fresh first ClientHello from an address we already served is
            // a new client on a reused port: start over with it.
            let fresh = hello
                .as_ref()
                .is_some_and(|h| h.message_seq == 0 && h.cookie.is_empty());
            if !(fresh && p.completed) {
                self.feed(peer, data, now, events);
                return;
            }
            self.endpoint.stop(now, peer);
            self.peers.remove(&peer);
        }
        let Some(hello) = hello else {
            self.stats.garbage += 1;
            return;
        };
        if !self.accepting {
            return;
        }
        if !self.jar.check(peer, &hello.cookie) {
            let reply = cookie::hello_verify_request(&hello, &self.jar.issue(peer));
            self.outbox.push_back((peer, reply));
            self.stats.hello_verify_requests += 1;
            return;
        }
        if self.peers.len() >= MAX_PEERS {
            return;
        }
        if self.half_open_from(peer.ip()) >= MAX_HALF_OPEN_PER_ADDRESS {
            self.stats.capped += 1;
            return;
        }
        let Some(first) = cookie::first_hello_from_second(data, &hello) else {
            return;
        };
        // rtc-dtls runs its own cookie exchange: let it "send" our cookie for
        // the rebuilt first ClientHello, discard that HelloVerifyRequest, and
        // hand it the real second ClientHello, whose cookie then matches.
        let mut cookie = [0u8; cookie::COOKIE_LEN];
        cookie.copy_from_slice(&hello.cookie);
        self.stash();
        self.provider.set_next_cookie(Some(cookie));
        let primed = self
            .endpoint
            .read(now, peer, None, BytesMut::from(&first[..]));
        self.provider.set_next_cookie(None);
        while self.endpoint.poll_transmit().is_some() {}
        if primed.is_err() {
            self.endpoint.stop(now, peer);
            while self.endpoint.poll_transmit().is_some() {}
            return;
        }
        self.stats.handshakes += 1;
        self.peers.insert(
            peer,
            Peer {
                defrag: Defrag::default(),
                started: now,
                last_seen: now,
                completed: false,
                served: false,
            },
        );
        self.feed(peer, data, now, events);
    }

    fn feed(&mut self, peer: SocketAddr, data: &[u8], now: Instant, events: &mut Vec<ServerEvent>) {
        let data = match self.peers.get_mut(&peer) {
            Some(p) => {
                p.last_seen = now;
                p.defrag.process(data)
            }
            None => data.to_vec(),
        };
        let alert = super::plaintext_alert(&data).or_else(|| {
            super::user_canceled(&data).then_some(rustls::AlertDescription::UserCanceled)
        });
        match self
            .endpoint
            .read(now, peer, None, BytesMut::from(&data[..]))
        {
            Ok(evs) => {
                for ev in evs {
                    match ev {
                        EndpointEvent::HandshakeComplete => {
                            if let Some(p) = self.peers.get_mut(&peer) {
                                p.completed = true;
                            }
                        }
                        EndpointEvent::ApplicationData(received) => {
                            let _ = self.endpoint.write(now, peer, &self.options.reply);
                            let first = self.peers.get_mut(&peer).is_some_and(|p| {
                                let first = !p.served;
                                p.served = true;
                                first
                            });
                            if first {
                                let state = self.endpoint.get_connection_state(peer);
                                events.push(ServerEvent::Served(ServedClient {
                                    peer,
                                    version: VERSION,
                                    suite: state
                                        .and_then(|s| s.cipher_suite().map(|c| c.to_string()))
                                        .unwrap_or_default(),
                                    client_chain: state
                                        .map(|s| chain(&s.peer_certificates))
                                        .unwrap_or_default(),
                                    received: received.to_vec(),
                                }));
                            }
                        }
                        EndpointEvent::PeerClosed => {
                            self.peers.remove(&peer);
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                let verify = self.seen.lock().ok().and_then(|mut s| s.failure.take());
                let presented = self
                    .endpoint
                    .get_connection_state(peer)
                    .map(|s| chain(&s.peer_certificates))
                    .unwrap_or_default();
                let served = self.peers.remove(&peer).is_some_and(|p| p.served);
                // Send what rtc-dtls queued (its alert), then forget the client.
                self.stash();
                self.endpoint.stop(now, peer);
                while self.endpoint.poll_transmit().is_some() {}
                if !served {
                    events.push(ServerEvent::Failed {
                        peer,
                        error: DtlsError::from_rtc(&e, verify, alert),
                        presented,
                    });
                }
            }
        }
    }

    /// Clients past the cookie exchange whose handshake has not finished.
    fn half_open(&self) -> usize {
        self.peers.values().filter(|p| !p.completed).count()
    }

    fn half_open_from(&self, ip: std::net::IpAddr) -> usize {
        self.peers
            .iter()
            .filter(|(a, p)| a.ip() == ip && !p.completed)
            .count()
    }

    /// Gives back the memory of forgotten clients: the peer table shrinks
    /// once it is mostly empty (a burst of thousands must not pin its
    /// high-water mark for ever).
    fn release(&mut self) {
        if self.peers.capacity() > 64 && self.peers.len() * 4 < self.peers.capacity() {
            self.peers.shrink_to(self.peers.len() * 2);
        }
        if self.outbox.is_empty() && self.outbox.capacity() > 64 {
            self.outbox.shrink_to_fit();
        }
        // The allocator keeps freed handshake memory for reuse; once a
        // burst is over (nobody left), hand it back to the system.
        if self.peers.is_empty() && self.stats.handshakes >= self.trimmed_at + 64 {
            self.trimmed_at = self.stats.handshakes;
            trim_heap();
        }
    }

    fn on_timers(&mut self, now: Instant, events: &mut Vec<ServerEvent>) {
        let limit = self.options.handshake_timeout;
        let addrs: Vec<SocketAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            let Some(p) = self.peers.get(&addr) else {
                continue;
            };
            let (completed, served, started, last_seen) =
                (p.completed, p.served, p.started, p.last_seen);
            if !completed && now.duration_since(started) >= limit {
                self.endpoint.stop(now, addr);
                while self.endpoint.poll_transmit().is_some() {}
                self.peers.remove(&addr);
                self.stats.expired += 1;
                events.push(ServerEvent::Failed {
                    peer: addr,
                    error: DtlsError::Stalled {
                        peer: addr,
                        after: limit,
                    },
                    presented: Vec::new(),
                });
                continue;
            }
            // A served client is closed (close_notify) once it has been
            // quiet for `LINGER`: long enough to answer a retry whose answer
            // was lost, and a device's `read(n)`, which waits for n bytes or
            // the end of the conversation, returns then instead of after the
            // idle timeout (docs/device-behaviour.md).
            let quiet_limit = if served { LINGER.min(limit) } else { limit };
            if completed && now.duration_since(last_seen) >= quiet_limit {
                self.endpoint.stop(now, addr);
                self.peers.remove(&addr);
                if !served {
                    events.push(ServerEvent::Failed {
                        peer: addr,
                        error: DtlsError::NoReply {
                            peer: addr,
                            after: limit,
                        },
                        presented: Vec::new(),
                    });
                }
                continue;
            }
            if self.endpoint.poll_timeout(&addr).is_some_and(|t| t <= now) {
                if let Err(e) = self.endpoint.handle_timeout(addr, now) {
                    self.endpoint.stop(now, addr);
                    while self.endpoint.poll_transmit().is_some() {}
                    self.peers.remove(&addr);
                    events.push(ServerEvent::Failed {
                        peer: addr,
                        error: DtlsError::Handshake(format!("gave up retransmitting: {e}")),
                        presented: Vec::new(),
                    });
                }
            }
        }
        self.release();
    }
}

/// Returns free heap memory to the system (glibc keeps it otherwise).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

fn server_config(
    options: &ServerOptions,
    provider: Arc<ProfileProvider>,
    seen: Arc<Mutex<Seen>>,
) -> Result<HandshakeConfig, DtlsError> {
    let verifier = options.client_verifier.clone();
    let client_auth = if verifier.is_some() {
        ClientAuthType::RequireAnyClientCert
    } else {
        ClientAuthType::NoClientCert
    };
    let (certs, key) = &options.identity;
    ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_certificates(vec![Certificate::from_signing_key(
            certs.clone(),
            Arc::new(RustlsSigner::new(key.clone())),
        )])
        .with_cipher_suites(crypto::suites(options.profile))
        .with_signature_schemes(crypto::signature_schemes(options.profile))
        .with_extended_master_secret(ExtendedMasterSecretType::Request)
        .with_client_auth(client_auth)
        .with_verify_peer_certificate(Some(Arc::new(
            move |raw: &[Vec<u8>], _: &[CertificateDer<'static>]| {
                let Some(v) = &verifier else {
                    return Ok(());
                };
                let presented = chain(raw);
                let outcome = match presented.split_first() {
                    None => Err(rustls::Error::NoCertificatesPresented),
                    Some((leaf, rest)) => v
                        .verify_client_cert(leaf, rest, UnixTime::now())
                        .map(|_| ()),
                };
                if let Ok(mut s) = seen.lock() {
                    s.failure = outcome.as_ref().err().cloned();
                }
                outcome.map_err(|e| rtc_shared::error::Error::Other(e.to_string()))
            },
        )))
        .build(false, None)
        .map_err(|e| {
            DtlsError::Config(format!(
                "the {} profile has no DTLS cipher suite this key can serve ({e})",
                options.profile.name
            ))
        })
}

#[cfg(test)]
mod tests {
    //! Half-open handshakes on the socket-free core: they expire, their
    //! state is released, and one address cannot hold more than its share.
    use super::*;
    use crate::config::Identity;
    use devtls_pki::issue::{self, CertSpec, Role};
    use devtls_pki::keys::{KeyType, PrivateKey};

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn core() -> Core {
        let profile = devtls_pki::profile::by_name("openmv").unwrap();
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new("localhost", Role::Server, 30);
        spec.dns = vec!["localhost".into()];
        let cert = issue::self_signed(&spec, &key).unwrap();
        let id = Identity::from_bytes(&cert.der, &key.pkcs8_der(), profile).unwrap();
        let options = ServerOptions {
            identity: (id.certified.cert.clone(), id.certified.key.clone()),
            client_verifier: None,
            profile,
            handshake_timeout: TIMEOUT,
            reply: b"hello\n".to_vec(),
        };
        Core::new("127.0.0.1:4433".parse().unwrap(), options).unwrap()
    }

    /// A DTLS 1.2 ClientHello record a device could send (ECDHE-ECDSA, P-256).
    fn client_hello(record_seq: u8, message_seq: u8, cookie: &[u8]) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[0x42; 32]);
        body.push(0);
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        let suites: [u16; 4] = [0xc02b, 0xc0ae, 0xc023, 0xc009];
        body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            body.extend_from_slice(&s.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let exts: [&[u8]; 4] = [
            &[0x00, 0x0a, 0, 4, 0, 2, 0x00, 0x17],
            &[0x00, 0x0b, 0, 2, 1, 0],
            &[0x00, 0x0d, 0, 4, 0, 2, 0x04, 0x03],
            &[0xff, 0x01, 0, 1, 0],
        ];
        let ext_len: usize = exts.iter().map(|e| e.len()).sum();
        body.extend_from_slice(&(ext_len as u16).to_be_bytes());
        for e in exts {
            body.extend_from_slice(e);
        }
        let len = (body.len() as u32).to_be_bytes();
        let mut hs = vec![1, len[1], len[2], len[3], 0, message_seq, 0, 0, 0];
        hs.extend_from_slice(&len[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, record_seq];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    /// One peer does the cookie exchange and sends its second ClientHello,
    /// then says nothing more.
    fn stall(core: &mut Core, peer: SocketAddr, events: &mut Vec<ServerEvent>) {
        core.on_datagram(peer, &client_hello(0, 0, &[]), events);
        let cookie = core.jar.issue(peer);
        core.on_datagram(peer, &client_hello(1, 1, &cookie), events);
        while core.next_datagram().is_some() {}
    }

    #[test]
    fn stalled_handshakes_expire_and_one_address_is_capped() {
        let mut core = core();
        let mut events = Vec::new();
        let n = MAX_HALF_OPEN_PER_ADDRESS + 44;
        for port in 0..n {
            let peer = SocketAddr::from(([127, 0, 0, 1], 20_000 + port as u16));
            stall(&mut core, peer, &mut events);
        }
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(core.half_open(), MAX_HALF_OPEN_PER_ADDRESS);
        assert_eq!(core.stats.capped, 44);
        assert_eq!(core.stats.hello_verify_requests, n);
        // Another address still gets in.
        stall(&mut core, "127.0.0.2:20000".parse().unwrap(), &mut events);
        assert_eq!(core.half_open(), MAX_HALF_OPEN_PER_ADDRESS + 1);

        // Before the timeout nothing goes; after it everything does.
        core.on_timers(Instant::now() + TIMEOUT / 2, &mut events);
        assert_eq!(core.half_open(), MAX_HALF_OPEN_PER_ADDRESS + 1);
        core.on_timers(Instant::now() + TIMEOUT + TICK, &mut events);
        assert_eq!(core.half_open(), 0);
        assert_eq!(core.peers.len(), 0);
        assert_eq!(core.stats.expired, MAX_HALF_OPEN_PER_ADDRESS + 1);
        assert_eq!(events.len(), MAX_HALF_OPEN_PER_ADDRESS + 1);
        assert!(matches!(
            events[0],
            ServerEvent::Failed {
                error: DtlsError::Stalled { .. },
                ..
            }
        ));
        // rtc-dtls forgot them too, and the peer table gave its memory back.
        assert_eq!(core.endpoint.get_connections_keys().count(), 0);
        assert!(core.peers.capacity() <= 64, "{}", core.peers.capacity());

        // The address is welcome again.
        stall(&mut core, "127.0.0.1:30000".parse().unwrap(), &mut events);
        assert_eq!(core.half_open(), 1);
    }
}

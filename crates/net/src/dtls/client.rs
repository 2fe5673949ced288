//! The DTLS client: handshake, one message, one reply, over a blocking
//! socket ([`connect`]) or a tokio one ([`connect_async`]); both drive the
//! same state machine, so they behave alike on loss, refusal and timeouts.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use devtls_pki::profile::Profile;
use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::crypto::{self, ProfileProvider, RustlsSigner};
use super::defrag::Defrag;
use super::{chain, DtlsError, DtlsFailure, MAX_DATAGRAM, VERSION};

/// How long the client waits for the reply before sending its message again:
/// application data is not retransmitted by DTLS, so a lost message or reply
/// would otherwise end the exchange.
const RESEND_AFTER: Duration = Duration::from_millis(700);

/// What a DTLS client needs besides the address.
#[derive(Clone)]
pub struct ClientOptions {
    /// Sent as SNI and checked against the certificate (DNS name or IP literal).
    pub server_name: String,
    /// Checks the server's chain; `None` accepts any (`--insecure`).
    pub verifier: Option<Arc<dyn ServerCertVerifier>>,
    /// A client certificate chain and its key, for mTLS.
    pub identity: Option<(
        Vec<CertificateDer<'static>>,
        Arc<dyn rustls::sign::SigningKey>,
    )>,
    /// The device profile the client behaves like.
    pub profile: &'static Profile,
    /// Limit for the handshake, and again for the reply.
    pub timeout: Duration,
}

/// A completed DTLS exchange.
#[derive(Debug, Clone)]
pub struct DtlsExchange {
    /// The server's address.
    pub peer: SocketAddr,
    /// Always [`VERSION`].
    pub version: &'static str,
    /// The negotiated cipher suite's IANA name.
    pub suite: String,
    /// The server's certificate chain, leaf first.
    pub presented: Vec<CertificateDer<'static>>,
    /// Whether the server made us repeat the ClientHello with a cookie.
    pub cookie_exchange: bool,
    /// Whether the server asked for a client certificate.
    pub asked_for_cert: bool,
    /// What the server answered.
    pub reply: Vec<u8>,
    /// How many datagrams we sent (retransmissions included).
    pub datagrams_sent: usize,
}

/// What the verification callback saw: rtc-dtls only passes text errors
/// back, so the chain and the typed reason are kept here.
#[derive(Default)]
struct Seen {
    presented: Vec<CertificateDer<'static>>,
    failure: Option<rustls::Error>,
}

/// Connects to `peer` over a blocking UDP socket, completes a DTLS 1.2
/// handshake, sends `message` and returns the first reply.
pub fn connect(
    peer: SocketAddr,
    options: &ClientOptions,
    message: &[u8],
) -> Result<DtlsExchange, DtlsFailure> {
    let socket = UdpSocket::bind(any_local(peer)).map_err(DtlsError::Io)?;
    // A connected socket only hears from the server and reports ICMP port
    // unreachable as ConnectionRefused.
    socket.connect(peer).map_err(DtlsError::Io)?;
    let local = socket.local_addr().map_err(DtlsError::Io)?;
    let mut exchange = Exchange::start(peer, local, options, message)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let mut outcome = exchange.send_with(|d| socket.send(d));
        if outcome.is_none() {
            let wait = exchange
                .wake_at()
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            socket.set_read_timeout(Some(wait)).map_err(DtlsError::Io)?;
            outcome = exchange.on_received(socket.recv(&mut buf).map(|n| &buf[..n]));
        }
        if let Some(result) = outcome.or_else(|| exchange.on_wake(Instant::now())) {
            // What the endpoint queued last (its close_notify or alert) is a
            // courtesy: the outcome is already known.
            let _ = exchange.send_with(|d| socket.send(d));
            return result;
        }
    }
}

/// [`connect`] on a tokio UDP socket: the same exchange, without blocking a
/// thread, so one task per device can run by the thousand.
pub async fn connect_async(
    peer: SocketAddr,
    options: &ClientOptions,
    message: &[u8],
) -> Result<DtlsExchange, DtlsFailure> {
    let socket = tokio::net::UdpSocket::bind(any_local(peer))
        .await
        .map_err(DtlsError::Io)?;
    socket.connect(peer).await.map_err(DtlsError::Io)?;
    let local = socket.local_addr().map_err(DtlsError::Io)?;
    let mut exchange = Exchange::start(peer, local, options, message)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let mut outcome = send_queued(&socket, &mut exchange).await;
        if outcome.is_none() {
            let wake = tokio::time::Instant::from_std(exchange.wake_at());
            outcome = match tokio::time::timeout_at(wake, socket.recv(&mut buf)).await {
                Ok(received) => exchange.on_received(received.map(|n| &buf[..n])),
                Err(_elapsed) => None,
            };
        }
        if let Some(result) = outcome.or_else(|| exchange.on_wake(Instant::now())) {
            let _ = send_queued(&socket, &mut exchange).await;
            return result;
        }
    }
}

/// [`Exchange::send_with`] for a tokio socket.
async fn send_queued(socket: &tokio::net::UdpSocket, exchange: &mut Exchange) -> Outcome {
    while let Some(datagram) = exchange.next_datagram() {
        if let Err(e) = socket.send(&datagram).await {
            return Some(Err(exchange.send_failed(e)));
        }
    }
    None
}

/// The unspecified address of `peer`'s family, any port.
fn any_local(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    }
}

type Outcome = Option<Result<DtlsExchange, DtlsFailure>>;

/// One client exchange as a state machine without I/O: the blocking and the
/// async driver feed it datagrams and wake-ups and send what it queues.
struct Exchange {
    peer: SocketAddr,
    endpoint: Endpoint,
    seen: Arc<Mutex<Seen>>,
    message: Vec<u8>,
    timeout: Duration,
    start: Instant,
    handshake_done: Option<Instant>,
    last_send: Instant,
    sent: usize,
    heard: bool,
    cookie_exchange: bool,
    asked_for_cert: bool,
    alert: Option<rustls::AlertDescription>,
    defrag: Defrag,
}

impl Exchange {
    fn start(
        peer: SocketAddr,
        local: SocketAddr,
        options: &ClientOptions,
        message: &[u8],
    ) -> Result<Self, DtlsFailure> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let config = client_config(peer, options, seen.clone())?;
        let start = Instant::now();
        let mut endpoint = Endpoint::new(local, rtc_shared::TransportProtocol::UDP, None);
        endpoint
            .connect(start, peer, Arc::new(config), None)
            .map_err(|e| DtlsError::Handshake(e.to_string()))?;
        Ok(Exchange {
            peer,
            endpoint,
            seen,
            message: message.to_vec(),
            timeout: options.timeout,
            start,
            handshake_done: None,
            last_send: start,
            sent: 0,
            heard: false,
            cookie_exchange: false,
            asked_for_cert: false,
            alert: None,
            defrag: Defrag::default(),
        })
    }

    /// The next datagram to send, if any.
    fn next_datagram(&mut self) -> Option<BytesMut> {
        let t = self.endpoint.poll_transmit()?;
        self.sent += 1;
        Some(t.message)
    }

    /// Sends every queued datagram with `send`; a failure ends the exchange.
    fn send_with(&mut self, mut send: impl FnMut(&[u8]) -> std::io::Result<usize>) -> Outcome {
        while let Some(datagram) = self.next_datagram() {
            if let Err(e) = send(&datagram) {
                return Some(Err(self.send_failed(e)));
            }
        }
        None
    }

    fn send_failed(&self, e: std::io::Error) -> DtlsFailure {
        if e.kind() == ErrorKind::ConnectionRefused {
            self.fail(DtlsError::Refused(self.peer))
        } else {
            self.fail(DtlsError::Io(e))
        }
    }

    /// When the driver must call [`Exchange::on_wake`] if nothing arrives.
    fn wake_at(&self) -> Instant {
        let mut wake = self.deadline();
        if let Some(t) = self.endpoint.poll_timeout(&self.peer) {
            wake = wake.min(t);
        }
        if self.handshake_done.is_some() {
            wake = wake.min(self.last_send + RESEND_AFTER);
        }
        wake
    }

    fn deadline(&self) -> Instant {
        self.handshake_done.unwrap_or(self.start) + self.timeout
    }

    fn fail(&self, error: DtlsError) -> DtlsFailure {
        let presented = self
            .seen
            .lock()
            .map(|s| s.presented.clone())
            .unwrap_or_default();
        DtlsFailure {
            error,
            presented,
            cookie_exchange: self.cookie_exchange,
            asked_for_cert: self.asked_for_cert,
        }
    }

    /// What a receive on the socket gave: a datagram, nothing yet, or an error.
    fn on_received(&mut self, received: std::io::Result<&[u8]>) -> Outcome {
        match received {
            Ok(datagram) => self.on_datagram(datagram),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                Some(Err(self.fail(DtlsError::Refused(self.peer))))
            }
            Err(e) => Some(Err(self.fail(DtlsError::Io(e)))),
        }
    }

    fn on_datagram(&mut self, datagram: &[u8]) -> Outcome {
        let now = Instant::now();
        self.heard = true;
        let types = plaintext_handshake_types(datagram);
        self.cookie_exchange |= types.contains(&3);
        self.asked_for_cert |= types.contains(&13);
        if let Some(a) = super::plaintext_alert(datagram) {
            self.alert = Some(a);
        }
        let datagram = self.defrag.process(datagram);
        let events = match self
            .endpoint
            .read(now, self.peer, None, BytesMut::from(&datagram[..]))
        {
            Ok(events) => events,
            Err(e) => {
                let verify = self.seen.lock().ok().and_then(|mut s| s.failure.take());
                return Some(Err(self.fail(DtlsError::from_rtc(&e, verify, self.alert))));
            }
        };
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete => {
                    self.handshake_done = Some(now);
                    if let Err(e) = self.endpoint.write(now, self.peer, &self.message) {
                        return Some(Err(self.fail(DtlsError::Handshake(e.to_string()))));
                    }
                    self.last_send = now;
                }
                EndpointEvent::ApplicationData(data) => {
                    let suite = self
                        .endpoint
                        .get_connection_state(self.peer)
                        .and_then(|s| s.cipher_suite().map(|c| c.to_string()))
                        .unwrap_or_default();
                    let _ = self.endpoint.close(now);
                    let presented = self
                        .seen
                        .lock()
                        .map(|s| s.presented.clone())
                        .unwrap_or_default();
                    return Some(Ok(DtlsExchange {
                        peer: self.peer,
                        version: VERSION,
                        suite,
                        presented,
                        cookie_exchange: self.cookie_exchange,
                        asked_for_cert: self.asked_for_cert,
                        reply: data.to_vec(),
                        datagrams_sent: self.sent,
                    }));
                }
                EndpointEvent::PeerClosed => {
                    return Some(Err(
                        self.fail(DtlsError::Alert(rustls::AlertDescription::CloseNotify))
                    ));
                }
                _ => {}
            }
        }
        None
    }

    /// Time passed: give up at the deadline, let rtc-dtls retransmit its
    /// flight, and send the message again while no reply came.
    fn on_wake(&mut self, now: Instant) -> Outcome {
        if now >= self.deadline() {
            let (peer, after) = (self.peer, self.timeout);
            let error = match (self.handshake_done, self.heard) {
                (Some(_), _) => DtlsError::NoReply { peer, after },
                (None, false) => DtlsError::Silent { peer, after },
                (None, true) => DtlsError::Stalled { peer, after },
            };
            return Some(Err(self.fail(error)));
        }
        if self
            .endpoint
            .poll_timeout(&self.peer)
            .is_some_and(|t| t <= now)
        {
            if let Err(e) = self.endpoint.handle_timeout(self.peer, now) {
                let error = if self.heard {
                    DtlsError::Handshake(format!("gave up retransmitting: {e}"))
                } else {
                    DtlsError::Silent {
                        peer: self.peer,
                        after: now - self.start,
                    }
                };
                return Some(Err(self.fail(error)));
            }
        }
        if self.handshake_done.is_some() && now >= self.last_send + RESEND_AFTER {
            if let Err(e) = self.endpoint.write(now, self.peer, &self.message) {
                return Some(Err(self.fail(DtlsError::Handshake(e.to_string()))));
            }
            self.last_send = now;
        }
        None
    }
}

/// The plaintext (epoch 0) handshake message types in a datagram: the server's
/// first flight is readable, which tells whether it sent a
/// HelloVerifyRequest (3) or a CertificateRequest (13), things rtc-dtls does
/// not report.
fn plaintext_handshake_types(datagram: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 13 {
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let Some(body) = rest.get(13..13 + len) else {
            break;
        };
        if rest[0] == 22 && rest[3..5] == [0, 0] {
            let mut msgs = body;
            while msgs.len() >= 12 {
                types.push(msgs[0]);
                let frag = (usize::from(msgs[9]) << 16)
                    | (usize::from(msgs[10]) << 8)
                    | usize::from(msgs[11]);
                msgs = msgs.get(12 + frag..).unwrap_or(&[]);
            }
        }
        rest = &rest[13 + len..];
    }
    types
}

fn client_config(
    peer: SocketAddr,
    options: &ClientOptions,
    seen: Arc<Mutex<Seen>>,
) -> Result<rtc_dtls::config::HandshakeConfig, DtlsError> {
    let provider = ProfileProvider::new(options.profile);
    let server_name = if options.server_name.is_empty() {
        peer.ip().to_string()
    } else {
        options.server_name.clone()
    };
    let name = ServerName::try_from(server_name.clone())
        .map_err(|_| DtlsError::Config(format!("`{server_name}` is not a valid server name")))?;
    let verifier = options.verifier.clone();
    let mut builder = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_cipher_suites(crypto::suites(options.profile))
        .with_signature_schemes(crypto::signature_schemes(options.profile))
        .with_extended_master_secret(ExtendedMasterSecretType::Request)
        .with_server_name(server_name)
        // rtc-dtls's own check has no CN fallback and no typed errors: ours
        // runs in the callback below instead.
        .with_insecure_skip_verify(true)
        .with_verify_peer_certificate(Some(Arc::new(
            move |raw: &[Vec<u8>], _: &[CertificateDer<'static>]| {
                let presented = chain(raw);
                let outcome = match (&verifier, presented.split_first()) {
                    (None, _) => Ok(()),
                    (Some(_), None) => Err(rustls::Error::NoCertificatesPresented),
                    (Some(v), Some((leaf, rest))) => v
                        .verify_server_cert(leaf, rest, &name, &[], UnixTime::now())
                        .map(|_| ()),
                };
                if let Ok(mut s) = seen.lock() {
                    s.presented = presented;
                    s.failure = outcome.as_ref().err().cloned();
                }
                outcome.map_err(|e| rtc_shared::error::Error::Other(e.to_string()))
            },
        )));
    if let Some((certs, key)) = &options.identity {
        builder = builder.with_certificates(vec![Certificate::from_signing_key(
            certs.clone(),
            Arc::new(RustlsSigner::new(key.clone())),
        )]);
    }
    builder
        .build(true, Some(peer))
        .map_err(|e| DtlsError::Config(format!("cannot set up the DTLS client: {e}")))
}

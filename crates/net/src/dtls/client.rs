//! The blocking DTLS client: handshake, one message, one reply.

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

/// Connects to `peer`, completes a DTLS 1.2 handshake, sends `message` and
/// returns the first reply.
pub fn connect(
    peer: SocketAddr,
    options: &ClientOptions,
    message: &[u8],
) -> Result<DtlsExchange, DtlsFailure> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = client_config(peer, options, seen.clone())?;
    let bind: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).map_err(DtlsError::Io)?;
    // A connected socket only hears from the server and reports ICMP port
    // unreachable as ConnectionRefused.
    socket.connect(peer).map_err(DtlsError::Io)?;
    let local = socket.local_addr().map_err(DtlsError::Io)?;

    let mut run = Run {
        socket,
        peer,
        endpoint: Endpoint::new(local, rtc_shared::TransportProtocol::UDP, None),
        sent: 0,
        heard: false,
        cookie_exchange: false,
        asked_for_cert: false,
        alert: None,
    };
    let failed = |error: DtlsError, run: &Run| {
        let presented = seen.lock().map(|s| s.presented.clone()).unwrap_or_default();
        DtlsFailure {
            error,
            presented,
            cookie_exchange: run.cookie_exchange,
            asked_for_cert: run.asked_for_cert,
        }
    };

    let start = Instant::now();
    run.endpoint
        .connect(start, peer, Arc::new(config), None)
        .map_err(|e| DtlsError::Handshake(e.to_string()))?;
    run.flush()?;

    let mut handshake_done: Option<Instant> = None;
    let mut last_send = start;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let now = Instant::now();
        let deadline = match handshake_done {
            None => start + options.timeout,
            Some(t) => t + options.timeout,
        };
        if now >= deadline {
            let error = match (handshake_done, run.heard) {
                (Some(_), _) => DtlsError::NoReply {
                    peer,
                    after: options.timeout,
                },
                (None, false) => DtlsError::Silent {
                    peer,
                    after: options.timeout,
                },
                (None, true) => DtlsError::Stalled {
                    peer,
                    after: options.timeout,
                },
            };
            return Err(failed(error, &run));
        }
        let mut wake = deadline;
        if let Some(t) = run.endpoint.poll_timeout(&peer) {
            wake = wake.min(t);
        }
        if handshake_done.is_some() {
            wake = wake.min(last_send + RESEND_AFTER);
        }
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        run.socket
            .set_read_timeout(Some(wait))
            .map_err(DtlsError::Io)?;
        match run.socket.recv(&mut buf) {
            Ok(n) => {
                run.heard = true;
                let types = plaintext_handshake_types(&buf[..n]);
                run.cookie_exchange |= types.contains(&3);
                run.asked_for_cert |= types.contains(&13);
                if let Some(a) = super::plaintext_alert(&buf[..n]) {
                    run.alert = Some(a);
                }
                let events =
                    run.endpoint
                        .read(Instant::now(), peer, None, BytesMut::from(&buf[..n]));
                let events = match events {
                    Ok(events) => events,
                    Err(e) => {
                        let verify = seen.lock().ok().and_then(|mut s| s.failure.take());
                        let _ = run.flush();
                        return Err(failed(DtlsError::from_rtc(&e, verify, run.alert), &run));
                    }
                };
                for event in events {
                    match event {
                        EndpointEvent::HandshakeComplete => {
                            handshake_done = Some(Instant::now());
                            run.endpoint
                                .write(Instant::now(), peer, message)
                                .map_err(|e| DtlsError::Handshake(e.to_string()))?;
                            last_send = Instant::now();
                        }
                        EndpointEvent::ApplicationData(data) => {
                            let suite = run
                                .endpoint
                                .get_connection_state(peer)
                                .and_then(|s| s.cipher_suite().map(|c| c.to_string()))
                                .unwrap_or_default();
                            let _ = run.endpoint.close(Instant::now());
                            let _ = run.flush();
                            let presented =
                                seen.lock().map(|s| s.presented.clone()).unwrap_or_default();
                            return Ok(DtlsExchange {
                                peer,
                                version: VERSION,
                                suite,
                                presented,
                                cookie_exchange: run.cookie_exchange,
                                asked_for_cert: run.asked_for_cert,
                                reply: data.to_vec(),
                                datagrams_sent: run.sent,
                            });
                        }
                        EndpointEvent::PeerClosed => {
                            let _ = run.flush();
                            return Err(failed(
                                DtlsError::Alert(rustls::AlertDescription::CloseNotify),
                                &run,
                            ));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                return Err(failed(DtlsError::Refused(peer), &run));
            }
            Err(e) => return Err(failed(DtlsError::Io(e), &run)),
        }
        let now = Instant::now();
        if run.endpoint.poll_timeout(&peer).is_some_and(|t| t <= now) {
            if let Err(e) = run.endpoint.handle_timeout(peer, now) {
                let _ = run.flush();
                let error = if run.heard {
                    DtlsError::Handshake(format!("gave up retransmitting: {e}"))
                } else {
                    DtlsError::Silent {
                        peer,
                        after: now - start,
                    }
                };
                return Err(failed(error, &run));
            }
        }
        if handshake_done.is_some() && now >= last_send + RESEND_AFTER {
            run.endpoint
                .write(now, peer, message)
                .map_err(|e| DtlsError::Handshake(e.to_string()))?;
            last_send = now;
        }
        if let Err(e) = run.flush() {
            return Err(failed(e, &run));
        }
    }
}

struct Run {
    socket: UdpSocket,
    peer: SocketAddr,
    endpoint: Endpoint,
    sent: usize,
    heard: bool,
    cookie_exchange: bool,
    asked_for_cert: bool,
    alert: Option<rustls::AlertDescription>,
}

impl Run {
    fn flush(&mut self) -> Result<(), DtlsError> {
        while let Some(t) = self.endpoint.poll_transmit() {
            match self.socket.send(&t.message) {
                Ok(_) => self.sent += 1,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    return Err(DtlsError::Refused(self.peer));
                }
                Err(e) => return Err(DtlsError::Io(e)),
            }
        }
        Ok(())
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

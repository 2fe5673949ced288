//! The DTLS endpoints behind the same settings and reports as the TLS ones,
//! so `connect --dtls` and `serve --dtls` differ from TCP only in transport.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use rustls::AlertDescription;

use crate::config::{Anchors, ClientSettings, ConfigError, ServerSettings};
use crate::diagnose::{self, Context, Failure, Side};
use crate::report::{
    summarize, ClientReport, ConnectError, HandshakeFailure, Outcome, Served, SessionInfo,
};
use crate::tls::server::ServerError;

use super::client::{self, ClientOptions};
use super::server::{DtlsServer, ServerEvent, ServerOptions};
use super::{DtlsError, DtlsFailure};

/// Connects over DTLS to `addr` (`host:port`), verifies the server as
/// `settings` say, sends `data` and returns the reply; a failure comes
/// diagnosed like a TLS one.
pub fn exchange(
    addr: &str,
    settings: &ClientSettings,
    data: &[u8],
) -> Result<(SessionInfo, Vec<u8>), ConnectError> {
    let peer = resolve(addr)?;
    let (_, verifier, _) = crate::tls::client::client_config(settings)?;
    let options = ClientOptions {
        server_name: settings.server_name.clone(),
        verifier: Some(verifier),
        identity: settings
            .identity
            .as_ref()
            .map(|i| (i.certified.cert.clone(), i.certified.key.clone())),
        profile: settings.profile,
        timeout: settings.timeout,
    };
    match client::connect(peer, &options, data) {
        Ok(done) => Ok((
            SessionInfo {
                peer,
                version: done.version.to_string(),
                cipher_suite: done.suite,
                chain: summarize(&done.presented),
                verified: settings.verification == crate::config::Verification::Required,
                client_cert_requested: done.asked_for_cert,
            },
            done.reply,
        )),
        Err(DtlsFailure {
            error: DtlsError::Config(text),
            ..
        }) => Err(ConfigError::Mismatch(text).into()),
        Err(f) => {
            let chain = summarize(&f.presented);
            let anchors = match &settings.anchors {
                Anchors::Mozilla => "the bundled Mozilla roots".to_string(),
                Anchors::Given(certs) => format!(
                    "--ca: {}",
                    summarize(certs)
                        .iter()
                        .map(|c| c.common_name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let failure = failure(f.error);
            let ctx = Context {
                side: Side::Client,
                profile: settings.profile,
                server_name: &settings.server_name,
                anchors: &anchors,
                presented: &chain,
                asked_for_cert: f.asked_for_cert,
                sent_cert: settings.identity.is_some(),
                probe: None,
            };
            let diagnosis = diagnose::diagnose(&failure, &ctx);
            Err(ConnectError::Handshake(Box::new(HandshakeFailure {
                failure,
                diagnosis,
                chain,
                probe: None,
            })))
        }
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.to_socket_addrs()
        .map_err(|e| ConfigError::Input(format!("cannot resolve '{addr}': {e}")))?
        .next()
        .ok_or_else(|| ConfigError::Input(format!("'{addr}' resolves to no address")))
}

/// DTLS failures in the terms the shared diagnosis understands.
fn failure(error: DtlsError) -> Failure {
    match error {
        DtlsError::Refused(_) => Failure::Connect(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "UDP port unreachable",
        )),
        DtlsError::Silent { .. } => Failure::Timeout("DTLS handshake (no answer at all)"),
        DtlsError::Stalled { .. } => Failure::Timeout("DTLS handshake"),
        DtlsError::NoReply { .. } => Failure::Timeout("the reply"),
        DtlsError::Certificate(e) => Failure::Tls(e),
        DtlsError::Alert(AlertDescription::CloseNotify) => Failure::Closed,
        DtlsError::Alert(a) => Failure::Tls(rustls::Error::AlertReceived(a)),
        DtlsError::Io(e) => Failure::Io(e),
        DtlsError::Handshake(text) | DtlsError::Config(text) => {
            Failure::Tls(rustls::Error::General(text))
        }
    }
}

/// A DTLS server with the TLS server's settings and reports.
pub struct Server {
    inner: DtlsServer,
    settings: ServerSettings,
    anchors: String,
}

impl Server {
    /// Binds UDP `addr` (port 0 picks a free port: see [`Server::local_addr`]).
    pub fn bind(addr: SocketAddr, settings: ServerSettings) -> Result<Self, ServerError> {
        let client_verifier = crate::tls::server::client_verifier(&settings)?;
        let options = ServerOptions {
            identity: (
                settings.identity.certified.cert.clone(),
                settings.identity.certified.key.clone(),
            ),
            client_verifier,
            profile: settings.profile,
            handshake_timeout: settings.handshake_timeout,
            reply: settings.reply.clone(),
        };
        let inner = DtlsServer::bind(addr, options).map_err(|e| match e {
            DtlsError::Io(io) => ServerError::Bind(addr, io),
            other => ServerError::Config(ConfigError::Mismatch(other.to_string())),
        })?;
        let anchors = match &settings.client_ca {
            Some(cas) => format!(
                "--ca: {}",
                summarize(cas)
                    .iter()
                    .map(|c| c.common_name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "none".into(),
        };
        Ok(Server {
            inner,
            settings,
            anchors,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Serves clients (many at once), calling `on_report` once per client
    /// that got past the cookie exchange, served or failed. Returns after
    /// `count` reports (never without one) or `max_time`.
    pub fn serve(
        &mut self,
        count: Option<usize>,
        max_time: Option<Duration>,
        mut on_report: impl FnMut(&ClientReport),
    ) -> std::io::Result<usize> {
        let profile = self.settings.profile;
        let anchors = self.anchors.clone();
        let served = self.inner.serve(count, max_time, |event| {
            let report = match event {
                ServerEvent::Served(s) => ClientReport {
                    peer: s.peer,
                    outcome: Outcome::Served(Served {
                        version: s.version.to_string(),
                        cipher_suite: s.suite.clone(),
                        client_chain: summarize(&s.client_chain),
                        received: String::from_utf8_lossy(&s.received).into_owned(),
                    }),
                },
                ServerEvent::Failed {
                    peer,
                    error,
                    presented,
                } => {
                    let chain = summarize(presented);
                    let failure = failure(clone_error(error));
                    let ctx = Context {
                        side: Side::Server,
                        profile,
                        server_name: "",
                        anchors: &anchors,
                        presented: &chain,
                        asked_for_cert: false,
                        sent_cert: false,
                        probe: None,
                    };
                    ClientReport {
                        peer: *peer,
                        outcome: Outcome::Failed(diagnose::diagnose(&failure, &ctx)),
                    }
                }
            };
            on_report(&report);
        });
        served.map_err(|e| match e {
            DtlsError::Io(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    }

    /// The underlying endpoint's counters (cookies sent, garbage dropped).
    pub fn stats(&self) -> super::server::Stats {
        self.inner.stats()
    }
}

/// `DtlsError` holds an `io::Error` and so is not `Clone`; the reports only
/// need its meaning.
fn clone_error(e: &DtlsError) -> DtlsError {
    match e {
        DtlsError::Io(io) => DtlsError::Io(std::io::Error::new(io.kind(), io.to_string())),
        DtlsError::Refused(a) => DtlsError::Refused(*a),
        DtlsError::Silent { peer, after } => DtlsError::Silent {
            peer: *peer,
            after: *after,
        },
        DtlsError::Stalled { peer, after } => DtlsError::Stalled {
            peer: *peer,
            after: *after,
        },
        DtlsError::NoReply { peer, after } => DtlsError::NoReply {
            peer: *peer,
            after: *after,
        },
        DtlsError::Certificate(c) => DtlsError::Certificate(c.clone()),
        DtlsError::Alert(a) => DtlsError::Alert(*a),
        DtlsError::Handshake(h) => DtlsError::Handshake(h.clone()),
        DtlsError::Config(c) => DtlsError::Config(c.clone()),
    }
}

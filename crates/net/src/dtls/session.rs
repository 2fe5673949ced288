//! The DTLS endpoints behind the same settings and reports as the TLS ones,
//! so `connect --dtls` and `serve --dtls` differ from TCP only in transport.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use rustls::AlertDescription;

use crate::config::{Anchors, ClientSettings, ConfigError, ServerSettings};
use crate::diagnose::{self, ClientEnding, Context, Failure, Side};
use crate::report::{
    summarize, ClientReport, ConnectError, HandshakeFailure, Outcome, Rejected, Served, SessionInfo,
};
use crate::tls::server::ServerError;

use super::client::{self, ClientOptions};
use super::server::{AsyncDtlsServer, DtlsServer, ServerEvent, ServerOn, ServerOptions, Socket};
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
    let options = client_options(settings)?;
    conclude(settings, peer, client::connect(peer, &options, data))
}

/// [`exchange`] on tokio: the same settings, checks and diagnosis.
pub async fn exchange_async(
    addr: &str,
    settings: &ClientSettings,
    data: &[u8],
) -> Result<(SessionInfo, Vec<u8>), ConnectError> {
    let peer = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| ConfigError::Input(format!("cannot resolve '{addr}': {e}")))?
        .next()
        .ok_or_else(|| ConfigError::Input(format!("'{addr}' resolves to no address")))?;
    let options = client_options(settings)?;
    conclude(
        settings,
        peer,
        client::connect_async(peer, &options, data).await,
    )
}

fn client_options(settings: &ClientSettings) -> Result<ClientOptions, ConfigError> {
    let (_, verifier, _) = crate::tls::client::client_config(settings)?;
    Ok(ClientOptions {
        server_name: settings.server_name.clone(),
        verifier: Some(verifier),
        identity: settings
            .identity
            .as_ref()
            .map(|i| (i.certified.cert.clone(), i.certified.key.clone())),
        profile: settings.profile,
        timeout: settings.timeout,
    })
}

/// The session's facts, or the failure diagnosed for the user.
fn conclude(
    settings: &ClientSettings,
    peer: SocketAddr,
    outcome: Result<super::DtlsExchange, DtlsFailure>,
) -> Result<(SessionInfo, Vec<u8>), ConnectError> {
    match outcome {
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
                Anchors::Given(certs) => anchor_names(certs),
            };
            let refused = matches!(f.error, DtlsError::Refused(_));
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
            let mut diagnosis = diagnose::diagnose(&failure, &ctx);
            if refused {
                // The shared wording speaks of TCP connections.
                diagnosis.what = format!(
                    "nothing is listening on UDP {peer} (the host answered port unreachable)"
                );
                diagnosis.fix =
                    "check the port and that the DTLS server is running (devtls serve --dtls)"
                        .into();
            }
            Err(ConnectError::Handshake(Box::new(HandshakeFailure {
                failure,
                diagnosis,
                chain,
                probe: None,
            })))
        }
    }
}

/// How the trust anchors given with `--ca` are named in a diagnosis.
fn anchor_names(certs: &[rustls_pki_types::CertificateDer<'static>]) -> String {
    format!(
        "--ca: {}",
        summarize(certs)
            .iter()
            .map(|c| c.common_name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
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
        DtlsError::NoReply { .. } => Failure::Timeout("wait for the reply"),
        DtlsError::Certificate(e) => Failure::Tls(e),
        DtlsError::Alert(AlertDescription::CloseNotify) => Failure::Closed,
        DtlsError::Alert(a) => Failure::Tls(rustls::Error::AlertReceived(a)),
        DtlsError::Io(e) => Failure::Io(e),
        DtlsError::Handshake(text) | DtlsError::Config(text) => {
            Failure::Tls(rustls::Error::General(text))
        }
    }
}

/// A DTLS server with the TLS server's settings and reports, on a socket of
/// kind `S`; see [`Server`] and [`AsyncServer`].
pub struct ReportingServer<S> {
    inner: ServerOn<S>,
    reports: Reports,
}

/// [`ReportingServer`] on a blocking socket.
pub type Server = ReportingServer<std::net::UdpSocket>;

/// [`ReportingServer`] on a tokio socket.
pub type AsyncServer = ReportingServer<tokio::net::UdpSocket>;

impl<S: Socket> ReportingServer<S> {
    /// The address actually bound (the port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The underlying endpoint's counters (cookies sent, garbage dropped).
    pub fn stats(&self) -> super::server::Stats {
        self.inner.stats()
    }
}

impl Server {
    /// Binds UDP `addr` (port 0 picks a free port).
    pub fn bind(addr: SocketAddr, settings: ServerSettings) -> Result<Self, ServerError> {
        let (options, reports) = server_options(&settings)?;
        let inner = DtlsServer::bind(addr, options).map_err(|e| bind_error(addr, e))?;
        Ok(ReportingServer { inner, reports })
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
        let reports = &self.reports;
        let served = self
            .inner
            .serve(count, max_time, |event| on_report(&reports.report(event)));
        served.map_err(into_io)
    }
}

impl AsyncServer {
    /// Binds UDP `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, settings: ServerSettings) -> Result<Self, ServerError> {
        let (options, reports) = server_options(&settings)?;
        let inner = AsyncDtlsServer::bind(addr, options)
            .await
            .map_err(|e| bind_error(addr, e))?;
        Ok(ReportingServer { inner, reports })
    }

    /// [`Server::serve`], awaiting datagrams instead of blocking.
    pub async fn serve(
        &mut self,
        count: Option<usize>,
        max_time: Option<Duration>,
        mut on_report: impl FnMut(&ClientReport),
    ) -> std::io::Result<usize> {
        let reports = &self.reports;
        let served = self
            .inner
            .serve(count, max_time, |event| on_report(&reports.report(event)))
            .await;
        served.map_err(into_io)
    }
}

fn server_options(settings: &ServerSettings) -> Result<(ServerOptions, Reports), ServerError> {
    let client_verifier = crate::tls::server::client_verifier(settings)?;
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
    let anchors = match &settings.client_ca {
        Some(cas) => anchor_names(cas),
        None => "none".into(),
    };
    let reports = Reports {
        profile: settings.profile,
        anchors,
    };
    Ok((options, reports))
}

fn bind_error(addr: SocketAddr, e: DtlsError) -> ServerError {
    match e {
        DtlsError::Io(io) => ServerError::Bind(addr, io),
        other => ServerError::Config(ConfigError::Mismatch(other.to_string())),
    }
}

fn into_io(e: DtlsError) -> std::io::Error {
    match e {
        DtlsError::Io(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Turns the endpoint's events into the reports the TLS server gives.
struct Reports {
    profile: &'static devtls_pki::profile::Profile,
    anchors: String,
}

impl Reports {
    fn report(&self, event: &ServerEvent) -> ClientReport {
        match event {
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
                let failure = match error {
                    DtlsError::Alert(AlertDescription::UserCanceled) => {
                        Failure::Probe(ClientEnding::Canceled)
                    }
                    other => failure(clone_error(other)),
                };
                let ctx = Context {
                    side: Side::Server,
                    profile: self.profile,
                    server_name: "",
                    anchors: &self.anchors,
                    presented: &chain,
                    asked_for_cert: false,
                    sent_cert: false,
                    probe: None,
                };
                ClientReport {
                    peer: *peer,
                    outcome: Outcome::Failed(Rejected {
                        diagnosis: diagnose::diagnose(&failure, &ctx),
                        client_chain: chain,
                    }),
                }
            }
        }
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

//! The network side: TLS 1.2 restricted to the device profile, mutual TLS
//! with the fleet CA as the one anchor, one HTTP request per connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use devtls_net::config::{Identity, ServerSettings};
use devtls_pki::profile::Profile;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DistinguishedName, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::admit::{Gate, Limits, Ticket};
use crate::http::{self, Response};
use crate::service::{Event, Service};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The device profile the TLS layer is restricted to (TLS 1.2 only, whatever it says).
    pub profile: &'static Profile,
    /// Seconds after expiry an expired fleet certificate still passes the TLS layer.
    pub grace: Option<i64>,
    /// Limit for the handshake (from the connection's start), and for
    /// reading the request's head and, again, its body.
    pub timeout: Duration,
    /// Connections open at once (when full, the oldest not yet
    /// authenticated is evicted; see [`crate::admit`]).
    pub max_connections: usize,
    /// Unauthenticated connections at once per IP address, and
    /// authenticated ones per client certificate.
    pub per_address: usize,
    /// Trusted TCP proxies in front: their connections are exempt from the
    /// per-address bounds ([`crate::admit`]).
    pub proxies: Vec<IpAddr>,
}

/// Seconds a device told 503 is asked to wait (`Retry-After`).
pub const RETRY_AFTER: u64 = 5;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS configuration cannot be built.
    #[error("{0}")]
    Config(String),
    /// The address cannot be bound.
    #[error(
        "cannot listen on {0}: {1}; pick another --port (0: any free one) or stop what holds it"
    )]
    Bind(SocketAddr, std::io::Error),
}

/// The rustls configuration: the service's identity, the profile's suites,
/// TLS 1.2, client certificates required and checked against `ca_der`.
pub fn tls_config(
    identity: &Identity,
    ca_der: &[u8],
    opts: &Options,
) -> Result<Arc<ServerConfig>, ServerError> {
    let certs = Arc::new(OneCert(identity.certified.clone()));
    tls_config_resolving(identity, ca_der, opts, certs)
}

/// [`tls_config`] with the certificate each handshake presents chosen by
/// `certs` ([`crate::own_cert::OwnCert`]: renewed while serving).
pub fn tls_config_resolving(
    identity: &Identity,
    ca_der: &[u8],
    opts: &Options,
    certs: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, ServerError> {
    let verifier = client_verifier(identity, ca_der, opts)?;
    let mut config =
        ServerConfig::builder_with_provider(devtls_net::restrict::provider(opts.profile))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .map_err(|e| ServerError::Config(format!("the profile has no TLS 1.2: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(certs);
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The client certificate check: the device-profile verifier of devtls-net
/// with the fleet CA as the one anchor, inside a [`GraceVerifier`].
pub fn client_verifier(
    identity: &Identity,
    ca_der: &[u8],
    opts: &Options,
) -> Result<Arc<GraceVerifier>, ServerError> {
    let mut settings = ServerSettings::new(identity.clone());
    settings.profile = opts.profile;
    settings.client_ca = Some(vec![CertificateDer::from(ca_der.to_vec())]);
    let inner = devtls_net::tls::server::client_verifier(&settings)
        .map_err(|e| ServerError::Config(e.to_string()))?
        .ok_or_else(|| ServerError::Config("no client verifier".into()))?;
    Ok(Arc::new(GraceVerifier {
        inner,
        grace: opts.grace,
    }))
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The device-profile client verifier, letting an expired (and otherwise
/// valid) fleet certificate through when it expired less than `grace` ago:
/// it is verified again as of one second before its expiry. The service
/// then decides (an expired certificate may only renew).
#[derive(Debug)]
pub struct GraceVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    grace: Option<i64>,
}

fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

impl ClientCertVerifier for GraceVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) if self.grace.is_some() => {
                let grace = self.grace.unwrap_or(0);
                let expiry = not_after(end_entity).unwrap_or(0);
                let now_secs = now.as_secs() as i64;
                if now_secs >= expiry + grace || expiry <= 1 {
                    return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
                }
                let then = UnixTime::since_unix_epoch(Duration::from_secs((expiry - 1) as u64));
                self.inner
                    .verify_client_cert(end_entity, intermediates, then)
            }
            other => other,
        }
    }

    devtls_net::delegate_signature_checks!(inner);
}

/// A connection's end, for the log: the request's event, or why there was none.
#[derive(Debug, Clone)]
pub enum Served {
    /// A request was answered.
    Answered(SocketAddr, Event),
    /// The TLS handshake or the request failed; `true` when the TLS layer
    /// refused the client's certificate (not from the fleet CA, expired
    /// beyond the grace, none sent).
    Failed(SocketAddr, String, bool),
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Bind(addr, e))
}

/// Serves until the process ends, calling `on_served` once per connection.
/// Every connection is admitted by [`crate::admit::Gate`] before any TLS
/// work; a failed handshake spends its address's failure budget there.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    service: Arc<Service>,
    opts: Options,
    on_served: Arc<dyn Fn(&Served) + Send + Sync>,
) {
    let acceptor = TlsAcceptor::from(config);
    let gate = Gate::trusting(
        Limits {
            max_connections: opts.max_connections,
            per_address: opts.per_address,
        },
        &opts.proxies,
    );
    let flusher = service.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(crate::service::FLUSH_EVERY);
        loop {
            every.tick().await;
            let s = flusher.clone();
            let _ = tokio::task::spawn_blocking(move || s.flush_counts()).await;
        }
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ticket = match gate.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refused) => {
                // Every place is held by an authenticated device, or the
                // address keeps failing its handshakes: closed at once,
                // before a byte is read or a task made.
                drop(tcp);
                service.note(refused.outcome());
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        let on_served = on_served.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            let served = match handshake(tcp, peer, &ticket, acceptor, opts.timeout).await {
                Ok(stream) => connection(stream, peer, &ticket, service.clone(), &opts).await,
                Err(failed) => {
                    if failed.spends_budget {
                        ticket.failed();
                    }
                    failed.served
                }
            };
            drop(ticket);
            if matches!(served, Served::Failed(_, _, true)) {
                service.note("refused-tls");
            }
            on_served(&served);
        });
    }
}

/// A handshake that did not complete.
struct NoHandshake {
    served: Served,
    /// The client failed it (garbage, a stall, an abort, a refused
    /// certificate): spends its address's failure budget. An eviction is
    /// the service's decision, not the client's failure.
    spends_budget: bool,
}

impl NoHandshake {
    fn failed(served: Served) -> NoHandshake {
        NoHandshake {
            served,
            spends_budget: true,
        }
    }
}

async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: &Ticket,
    acceptor: TlsAcceptor,
    timeout: Duration,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, NoHandshake> {
    let _ = tcp.set_nodelay(true);
    let work = async {
        // Nothing is read before the client has sent something: until then
        // the connection is among the first evicted.
        tcp.readable().await?;
        ticket.handshaking();
        acceptor.accept(tcp).await
    };
    let done = tokio::select! {
        _ = ticket.evicted() => {
            return Err(NoHandshake {
                served: Served::Failed(
                    peer,
                    "evicted: the service was full and this connection had not finished \
                     its handshake"
                        .into(),
                    false,
                ),
                spends_budget: false,
            })
        }
        done = tokio::time::timeout(timeout, work) => done,
    };
    match done {
        Err(_) => Err(NoHandshake::failed(Served::Failed(
            peer,
            "handshake timed out".into(),
            false,
        ))),
        Ok(Err(e)) => {
            let refused = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| {
                    matches!(
                        r,
                        rustls::Error::InvalidCertificate(_)
                            | rustls::Error::NoCertificatesPresented
                    )
                });
            Err(NoHandshake::failed(Served::Failed(
                peer,
                format!("handshake: {e}"),
                refused,
            )))
        }
        Ok(Ok(s)) => Ok(s),
    }
}

/// One request on an established connection.
async fn connection(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    ticket: &Ticket,
    service: Arc<Service>,
    opts: &Options,
) -> Served {
    let leaf = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        Some(c) => c.as_ref().to_vec(),
        None => return Served::Failed(peer, "no client certificate".into(), true),
    };
    let device = devtls_pki::fingerprint::sha256_hex(&leaf);
    let busy = !ticket.authenticated(device);
    let outcome: Arc<std::sync::Mutex<Option<Served>>> = Arc::default();
    let slot = outcome.clone();
    let handle = move |request: Result<http::Request, http::RequestError>| {
        let (service, leaf, slot) = (service.clone(), leaf.clone(), slot.clone());
        async move {
            let (response, served) = match request {
                _ if busy => (
                    Response::new(
                        503,
                        "text/plain; charset=utf-8",
                        b"busy: this certificate has too many connections open; retry later\n"
                            .to_vec(),
                    )
                    .with("X-Devtls-Status", "busy")
                    .with("Retry-After", &RETRY_AFTER.to_string()),
                    Served::Failed(
                        peer,
                        "busy: too many connections of one certificate".into(),
                        false,
                    ),
                ),
                Err(e) => (
                    Response::new(e.status(), "text/plain", format!("{e}\n").into_bytes()),
                    Served::Failed(peer, format!("request: {e}"), false),
                ),
                Ok(request) => {
                    match tokio::task::spawn_blocking(move || service.respond(&leaf, &request))
                        .await
                    {
                        Ok((response, event)) => (response, Served::Answered(peer, event)),
                        Err(_) => (
                            Response::new(500, "text/plain", b"error\n".to_vec()),
                            Served::Failed(peer, "the request handler panicked".into(), false),
                        ),
                    }
                }
            };
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(served);
            response
        }
    };
    let timeouts = http::Timeouts {
        head: opts.timeout,
        body: opts.timeout,
    };
    // Head, body, the answer and its writing: bounded as a whole too.
    let served =
        tokio::time::timeout(opts.timeout * 3, http::serve_one(stream, timeouts, handle)).await;
    let answered = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (answered, served) {
        (Some(s), _) => s,
        (None, Err(_)) => Served::Failed(peer, "request timed out".into(), false),
        (None, Ok(Err(e))) => Served::Failed(peer, format!("request: {e}"), false),
        (None, Ok(Ok(()))) => Served::Failed(peer, "no request".into(), false),
    }
}

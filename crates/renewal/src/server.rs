//! The network side: TLS 1.2 restricted to the device profile, mutual TLS
//! with the fleet CA as the one anchor, one HTTP request per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use devtls_net::config::{Identity, ServerSettings};
use devtls_pki::profile::Profile;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DistinguishedName, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::http::{self, Response};
use crate::service::{Event, Service};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The device profile the TLS layer is restricted to (TLS 1.2 only, whatever it says).
    pub profile: &'static Profile,
    /// Seconds after expiry an expired fleet certificate still passes the TLS layer.
    pub grace: Option<i64>,
    /// Limit for the handshake, and for reading the request.
    pub timeout: Duration,
    /// Connections served at once (more wait in the accept queue).
    pub max_connections: usize,
}

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
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    service: Arc<Service>,
    opts: Options,
    on_served: Arc<dyn Fn(&Served) + Send + Sync>,
) {
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        let on_served = on_served.clone();
        let timeout = opts.timeout;
        tokio::spawn(async move {
            let served = connection(tcp, peer, acceptor, service.clone(), timeout).await;
            if matches!(served, Served::Failed(_, _, true)) {
                let _ = tokio::task::spawn_blocking(move || service.note("refused-tls")).await;
            }
            on_served(&served);
            drop(permit);
        });
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    service: Arc<Service>,
    timeout: Duration,
) -> Served {
    let _ = tcp.set_nodelay(true);
    let mut stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Err(_) => return Served::Failed(peer, "handshake timed out".into(), false),
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
            return Served::Failed(peer, format!("handshake: {e}"), refused);
        }
        Ok(Ok(s)) => s,
    };
    let leaf = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        Some(c) => c.as_ref().to_vec(),
        None => return Served::Failed(peer, "no client certificate".into(), true),
    };
    let request = match tokio::time::timeout(timeout, http::read_request(&mut stream)).await {
        Err(_) => {
            let r = Response::new(408, "text/plain", b"request timeout\n".to_vec());
            let _ = tokio::time::timeout(timeout, stream.write_all(&r.to_bytes())).await;
            return Served::Failed(peer, "request timed out".into(), false);
        }
        Ok(Err(e)) => {
            let r = Response::new(e.status(), "text/plain", format!("{e}\n").into_bytes());
            let _ = tokio::time::timeout(timeout, async {
                stream.write_all(&r.to_bytes()).await?;
                stream.shutdown().await
            })
            .await;
            return Served::Failed(peer, format!("request: {e}"), false);
        }
        Ok(Ok(r)) => r,
    };
    let answer = tokio::task::spawn_blocking(move || service.respond(&leaf, &request)).await;
    let (response, event) = match answer {
        Ok(x) => x,
        Err(_) => {
            return Served::Failed(peer, "the request handler panicked".into(), false);
        }
    };
    let _ = tokio::time::timeout(timeout, async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    Served::Answered(peer, event)
}

//! The server endpoint: the guide's `hello` server, for many clients at once.
//!
//! Each accepted connection runs in its own tokio task with a handshake
//! timeout, so clients that stall, send garbage or vanish cost one task and
//! one report, never the server.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, ServerSettings};
use crate::diagnose::{self, Context, Failure, Side};
use crate::report::summarize;
use crate::verify::PRESENTED_BY_CLIENT;

pub use crate::report::{ClientReport, Outcome, Rejected, Served};

/// A listening TLS server.
pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    settings: Arc<ServerSettings>,
    anchors: Arc<String>,
}

/// The rustls configuration for `settings`.
pub fn server_config(settings: &ServerSettings) -> Result<Arc<ServerConfig>, ConfigError> {
    let provider = crate::restrict::provider(settings.profile);
    let verifier = client_verifier(settings)?.unwrap_or_else(WebPkiClientVerifier::no_client_auth);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&crate::restrict::tls_versions(settings.profile))
        .map_err(|e| ConfigError::Mismatch(format!("the profile has no usable TLS version: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(OneCert(settings.identity.certified.clone())));
    // Every handshake is a full one, as a device's first connection is.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The client certificate check `settings` ask for: `None` without
/// `client_ca`, else webpki against those anchors (with the CRLs) plus the
/// device's acceptance of a client certificate that is itself an anchor.
/// Shared by the TLS and DTLS servers.
pub fn client_verifier(
    settings: &ServerSettings,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, ConfigError> {
    let provider = crate::restrict::provider(settings.profile);
    match &settings.client_ca {
        None => {
            if !settings.crls.is_empty() {
                return Err(ConfigError::Mismatch(
                    "a CRL only applies to client certificates: pass --ca with it".into(),
                ));
            }
            Ok(None)
        }
        Some(cas) => {
            let anchors = crate::config::Anchors::Given(cas.clone()).root_store()?;
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(anchors), provider);
            if !settings.crls.is_empty() {
                builder = builder
                    .with_crls(settings.crls.clone())
                    .only_check_end_entity_revocation();
            }
            let webpki = builder
                .build()
                .map_err(|e| ConfigError::Input(format!("unusable client CA or CRL: {e}")))?;
            Ok(Some(Arc::new(crate::verify::DeviceClientVerifier::new(
                webpki,
                cas.clone(),
            ))))
        }
    }
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free port: see [`Server::local_addr`]).
    pub async fn bind(addr: SocketAddr, settings: ServerSettings) -> Result<Self, ServerError> {
        let config = server_config(&settings)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Bind(addr, e))?;
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
            listener,
            acceptor: TlsAcceptor::from(config),
            settings: Arc::new(settings),
            anchors: Arc::new(anchors),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients concurrently, calling `on_report` once per client whose
    /// connection ended (served or failed), in the order they end. Returns
    /// after `count` reports, or never without a count. Connections still in
    /// progress when it returns are dropped.
    pub async fn serve(self, count: Option<usize>, mut on_report: impl FnMut(&ClientReport)) {
        if count == Some(0) {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let mut reported = 0usize;
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let tx = tx.clone();
                        let acceptor = self.acceptor.clone();
                        let settings = self.settings.clone();
                        let anchors = self.anchors.clone();
                        tasks.spawn(async move {
                            let slot = std::cell::RefCell::new(Vec::new());
                            let outcome = PRESENTED_BY_CLIENT
                                .scope(slot, handle(tcp, acceptor, &settings, &anchors))
                                .await;
                            let _ = tx.send(ClientReport { peer, outcome });
                        });
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                },
                Some(report) = rx.recv() => {
                    on_report(&report);
                    reported += 1;
                    if count.is_some_and(|n| reported >= n) {
                        return;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
    }
}

/// Binds `addr` and serves like [`Server::serve`] on a private multi-thread
/// runtime, for callers without tokio. `on_listening` gets the bound address
/// before the first client is accepted.
pub fn serve_blocking(
    addr: SocketAddr,
    settings: ServerSettings,
    count: Option<usize>,
    on_listening: impl FnOnce(SocketAddr),
    on_report: impl FnMut(&ClientReport),
) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(async {
        let server = Server::bind(addr, settings).await?;
        let local = server
            .local_addr()
            .map_err(|e| ServerError::Bind(addr, e))?;
        on_listening(local);
        server.serve(count, on_report).await;
        Ok(())
    })
}

async fn handle(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    settings: &ServerSettings,
    anchors: &str,
) -> Outcome {
    let _ = tcp.set_nodelay(true);
    let limit = settings.handshake_timeout;
    let (tcp, seen) = super::ending::watch(tcp);
    let failure = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        Err(_) => Failure::Timeout("handshake"),
        Ok(Err(e)) => Failure::from_io(e).seen_with(seen.ending()),
        Ok(Ok(mut stream)) => {
            let (_, conn) = stream.get_ref();
            let version = super::version_name(conn);
            let cipher_suite = super::suite_name(conn);
            let client_chain = conn.peer_certificates().map(summarize).unwrap_or_default();
            // The guide's server reads once and answers; a client that sends
            // nothing still gets the answer when the wait runs out.
            let mut buf = vec![0u8; 16 * 1024];
            let received = match tokio::time::timeout(limit, stream.read(&mut buf)).await {
                Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                _ => String::new(),
            };
            let _ = tokio::time::timeout(limit, async {
                stream.write_all(&settings.reply).await?;
                stream.shutdown().await
            })
            .await;
            return Outcome::Served(Served {
                version,
                cipher_suite,
                client_chain,
                received,
            });
        }
    };
    let presented = PRESENTED_BY_CLIENT
        .try_with(|slot| summarize(&slot.borrow()))
        .unwrap_or_default();
    let ctx = Context {
        side: Side::Server,
        profile: settings.profile,
        server_name: "",
        anchors,
        presented: &presented,
        asked_for_cert: false,
        sent_cert: false,
        probe: None,
    };
    Outcome::Failed(Rejected {
        diagnosis: diagnose::diagnose(&failure, &ctx),
        client_chain: presented,
    })
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The settings cannot be used.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The I/O runtime could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
    /// The address cannot be bound.
    #[error(
        "cannot listen on {0}: {1}; pick another --port (0: any free one) or stop what holds it"
    )]
    Bind(SocketAddr, std::io::Error),
}

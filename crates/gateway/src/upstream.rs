//! The gateway as a client of the other side: for an inbound route the
//! device, reached as the device expects (net's profile-restricted client:
//! TLS 1.2, the device's suites, its certificate or fleet CA as the one
//! anchor, its name, the gateway's client certificate for mTLS); for an
//! outbound route the public server, verified with the Mozilla roots.
//!
//! The rustls configuration is built once per route (and again when its
//! files change) and shared by every connection, so device-leg sessions are
//! resumed when the device allows it (rustls resumes only with the verifier
//! and resolver that made the session). Its verifier and client-certificate
//! resolver record what each connection saw in a per-connection slot (net's
//! `record` wrappers), so a failure is explained by net's diagnosis with
//! the chain the peer presented. The device's chain, once accepted, is not
//! verified again on every connection ([`crate::verdicts`]).

use std::net::SocketAddr;
use std::sync::Arc;

use devtls_net::config::{Anchors, ClientSettings, Identity};
use devtls_net::diagnose::{self, Context, Diagnosis, Failure, Side};
use devtls_net::record::{self, AskRecorder, RecordingVerifier};
use devtls_net::report::summarize;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::certs::{self, CertError};
use crate::config::{Direction, Upstream, UpstreamTrust};
use crate::readahead::ReadAhead;
use crate::verdicts::CachedVerifier;

/// A route's upstream, ready to connect.
#[derive(Debug)]
pub struct Connector {
    addr: String,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    settings: ClientSettings,
    anchors_words: String,
    /// Whose words a failure gets: the device's as the server (inbound
    /// route), or a device-as-client's view of a public server (outbound).
    side: Side,
}

/// Why an upstream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A file cannot be used.
    #[error(transparent)]
    File(#[from] CertError),
    /// The settings cannot be used together.
    #[error("{0}")]
    Settings(String),
}

/// The files a connector is built from: the anchor file (not the bundled
/// roots) and the gateway's client certificate and key.
pub fn files(up: &Upstream) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let UpstreamTrust::File(path) = &up.trust {
        files.push(path.clone());
    }
    if let Some(id) = &up.client_identity {
        files.push(id.cert.clone());
        files.push(id.key.clone());
    }
    files
}

impl Connector {
    /// Reads the anchor and client certificate files of `up` and builds the
    /// profile-restricted client configuration. `direction` says who is on
    /// the other side: the device (inbound) or a public server (outbound).
    pub fn new(up: &Upstream, direction: &Direction) -> Result<Self, UpstreamError> {
        let (anchors, anchors_words) = match &up.trust {
            UpstreamTrust::Mozilla => (Anchors::Mozilla, "the bundled Mozilla roots".to_string()),
            UpstreamTrust::File(path) => {
                let certs = devtls_net::config::certificates(&certs::read(path)?).map_err(|e| {
                    CertError::Unusable {
                        files: path.display().to_string(),
                        message: e.to_string(),
                    }
                })?;
                (Anchors::Given(certs), path.display().to_string())
            }
        };
        let mut settings = ClientSettings::new(up.server_name.clone(), anchors);
        settings.profile = up.profile;
        if let Some(files) = &up.client_identity {
            let identity: Identity = certs::load(files, up.profile)?;
            settings.identity = Some(identity);
        }
        let server_name = ServerName::try_from(up.server_name.clone()).map_err(|_| {
            UpstreamError::Settings(format!(
                "'{}' is not a host name or IP address",
                up.server_name
            ))
        })?;
        let (config, verifier, resolver) = devtls_net::tls::client::client_config(&settings)
            .map_err(|e| UpstreamError::Settings(format!("{anchors_words}: {e}")))?;
        let mut config: ClientConfig = (*config).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(RecordingVerifier::new(Arc::new(
                CachedVerifier::new(verifier),
            ))));
        config.client_auth_cert_resolver = Arc::new(AskRecorder::new(resolver));
        Ok(Connector {
            addr: up.addr.clone(),
            config: Arc::new(config),
            server_name,
            settings,
            anchors_words,
            side: match direction {
                Direction::Inbound => Side::ClientOfDevice,
                Direction::Outbound => Side::Client,
            },
        })
    }

    /// Where it connects.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects (TCP then TLS, each within `timeout`); a failure comes back
    /// explained by net's diagnosis: on an inbound route with what the
    /// device, as the server, raises; on an outbound one from the
    /// device-as-client's view of the public server.
    pub async fn connect(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(TlsStream<ReadAhead<TcpStream>>, SocketAddr), Box<Diagnosis>> {
        let (result, seen) = record::recording(async {
            let tcp = match tokio::time::timeout(timeout, TcpStream::connect(&self.addr)).await {
                Err(_) => return Err(Failure::Timeout("TCP connect")),
                Ok(Err(e)) => return Err(Failure::Connect(e)),
                Ok(Ok(tcp)) => tcp,
            };
            let peer = tcp.peer_addr().map_err(Failure::Io)?;
            let _ = tcp.set_nodelay(true);
            let tcp = ReadAhead::new(tcp);
            let handshake =
                TlsConnector::from(self.config.clone()).connect(self.server_name.clone(), tcp);
            match tokio::time::timeout(timeout, handshake).await {
                Err(_) => Err(Failure::Timeout("handshake")),
                Ok(Err(e)) => Err(Failure::from_io(e)),
                Ok(Ok(stream)) => Ok((stream, peer)),
            }
        })
        .await;
        result.map_err(|failure| {
            let presented = summarize(&seen.presented());
            let ctx = Context {
                side: self.side,
                profile: self.settings.profile,
                server_name: &self.settings.server_name,
                anchors: &self.anchors_words,
                presented: &presented,
                asked_for_cert: seen.asked(),
                sent_cert: self.settings.identity.is_some(),
                probe: None,
            };
            Box::new(diagnose::diagnose(&failure, &ctx))
        })
    }
}

//! The client endpoint: connect, verify like the device, exchange a message.
//!
//! On failure the result carries a [`Diagnosis`] and whatever the server
//! presented. When a device-restricted handshake is refused, the client
//! retries once without restrictions or verification (a probe) to say what
//! the server wanted instead, e.g. only TLS 1.3 or an Ed25519 certificate.

use std::sync::Arc;
use std::time::Duration;

use devtls_pki::profile;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{Anchors, ClientSettings, ConfigError, Verification};
use crate::diagnose::{self, Context, Diagnosis, Failure, Probe, Reason, Side};
use crate::report::{summarize, CertSummary};
use crate::verify::{ClientCertRecorder, DeviceVerifier};

/// An established TLS session.
pub struct Session {
    stream: TlsStream<TcpStream>,
    /// What was negotiated.
    pub info: SessionInfo,
    timeout: Duration,
}

pub use crate::report::{ConnectError as Error, HandshakeFailure, SessionInfo};

/// A client configuration with the verifier and the client certificate
/// resolver, whose records are read after the handshake.
pub type ClientParts = (
    Arc<ClientConfig>,
    Arc<DeviceVerifier>,
    Arc<ClientCertRecorder>,
);

/// The rustls configuration for `settings`, with the verifier and client
/// certificate resolver kept so their records can be read after the handshake.
pub fn client_config(settings: &ClientSettings) -> Result<ClientParts, ConfigError> {
    let provider = crate::restrict::provider(settings.profile);
    let webpki = match settings.verification {
        Verification::None => None,
        Verification::Required => Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(settings.anchors.root_store()?),
                provider.clone(),
            )
            .build()
            .map_err(|e| ConfigError::Input(format!("unusable trust anchors: {e}")))?,
        ),
    };
    let verifier = Arc::new(DeviceVerifier::new(
        webpki,
        settings.anchors.certificates(),
        settings.profile,
    ));
    let recorder = Arc::new(ClientCertRecorder::new(
        settings.identity.as_ref().map(|i| i.certified.clone()),
    ));
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&crate::restrict::tls_versions(settings.profile))
        .map_err(|e| ConfigError::Mismatch(format!("the profile has no usable TLS version: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_cert_resolver(recorder.clone());
    Ok((Arc::new(config), verifier, recorder))
}

/// Connects to `addr` (`host:port`), completes the handshake and verifies the
/// server as `settings` say.
pub async fn connect(addr: &str, settings: &ClientSettings) -> Result<Session, Error> {
    let server_name = ServerName::try_from(settings.server_name.clone()).map_err(|_| {
        ConfigError::Input(format!(
            "'{}' is not a host name or IP address",
            settings.server_name
        ))
    })?;
    let (config, verifier, recorder) = client_config(settings)?;
    let fail = |failure: Failure, peer_asked: bool| {
        let chain = summarize(&verifier.presented());
        (failure, chain, peer_asked)
    };
    let result = async {
        let tcp = match tokio::time::timeout(settings.timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(fail(Failure::Timeout("TCP connect"), false)),
            Ok(Err(e)) => return Err(fail(Failure::Connect(e), false)),
            Ok(Ok(tcp)) => tcp,
        };
        let peer = tcp.peer_addr().map_err(|e| fail(Failure::Io(e), false))?;
        let _ = tcp.set_nodelay(true);
        let connector = TlsConnector::from(config.clone());
        match tokio::time::timeout(settings.timeout, connector.connect(server_name, tcp)).await {
            Err(_) => Err(fail(Failure::Timeout("handshake"), recorder.asked())),
            Ok(Err(e)) => Err(fail(Failure::from_io(e), recorder.asked())),
            Ok(Ok(stream)) => Ok((peer, stream)),
        }
    }
    .await;
    match result {
        Ok((peer, stream)) => {
            let (_, conn) = stream.get_ref();
            let info = SessionInfo {
                peer,
                version: super::version_name(conn),
                cipher_suite: super::suite_name(conn),
                chain: summarize(&verifier.presented()),
                verified: settings.verification == Verification::Required,
                client_cert_requested: recorder.asked(),
            };
            Ok(Session {
                stream,
                info,
                timeout: settings.timeout,
            })
        }
        Err((failure, chain, asked)) => Err(explain(addr, settings, failure, chain, asked).await),
    }
}

/// Diagnoses a failure (probing the server first when the refusal needs it).
async fn explain(
    addr: &str,
    settings: &ClientSettings,
    failure: Failure,
    chain: Vec<CertSummary>,
    asked: bool,
) -> Error {
    let anchors = anchors_words(settings);
    let mut ctx = Context {
        side: Side::Client,
        profile: settings.profile,
        server_name: &settings.server_name,
        anchors: &anchors,
        presented: &chain,
        asked_for_cert: asked,
        sent_cert: settings.identity.is_some(),
        probe: None,
    };
    let mut diagnosis = diagnose::diagnose(&failure, &ctx);
    let probe = if needs_probe(&diagnosis, &ctx) {
        probe(addr, settings).await
    } else {
        None
    };
    if probe.is_some() {
        ctx.probe = probe.as_ref();
        diagnosis = diagnose::diagnose(&failure, &ctx);
    }
    Error::Handshake(Box::new(HandshakeFailure {
        failure,
        diagnosis,
        chain,
        probe,
    }))
}

/// Connects, sends `data`, reads the reply and closes.
///
/// A refusal that arrives after the client's side of the handshake is done
/// is diagnosed like a handshake failure: a TLS 1.3 server checks the client
/// certificate only then, so its alert arrives while the reply is awaited.
pub async fn exchange(
    addr: &str,
    settings: &ClientSettings,
    data: &[u8],
) -> Result<(SessionInfo, Vec<u8>), Error> {
    let mut session = connect(addr, settings).await?;
    let reply = session.exchange(data).await;
    let info = session.info.clone();
    match reply {
        Ok(reply) => {
            session.close().await;
            Ok((info, reply))
        }
        Err(e) => {
            let failure = Failure::from_io(e);
            Err(explain(
                addr,
                settings,
                failure,
                info.chain,
                info.client_cert_requested,
            )
            .await)
        }
    }
}

impl Session {
    /// Sends `data`, then reads the reply until a newline ends it, the server
    /// closes, or the timeout passes (whatever arrived by then is returned).
    pub async fn exchange(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.stream.write_all(data).await?;
        self.stream.flush().await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) | Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    reply.extend_from_slice(&buf[..n]);
                    if reply.ends_with(b"\n") {
                        break;
                    }
                }
                // A server that closes without close_notify has still answered.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(reply)
    }

    /// Sends close_notify and closes the connection.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}

/// [`exchange`] on a private runtime, for callers without tokio.
pub fn exchange_blocking(
    addr: &str,
    settings: &ClientSettings,
    data: &[u8],
) -> Result<(SessionInfo, Vec<u8>), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConfigError::Input(format!("cannot start the I/O runtime: {e}")))?;
    runtime.block_on(exchange(addr, settings, data))
}

/// A refusal a restricted endpoint cannot explain by itself: nothing in
/// common, no common version, or the server hanging up, and not an mTLS
/// refusal. Only then is the server bothered with a second connection.
fn needs_probe(diagnosis: &Diagnosis, ctx: &Context<'_>) -> bool {
    matches!(
        diagnosis.reason,
        Reason::NothingInCommon | Reason::NoCommonVersion | Reason::PeerClosed
    ) && !ctx.asked_for_cert
        && ctx.profile.name != profile::MODERN.name
}

/// Retries with the `modern` profile and no verification, only to learn
/// what the server offers; nothing is sent.
async fn probe(addr: &str, settings: &ClientSettings) -> Option<Probe> {
    let open = ClientSettings {
        verification: Verification::None,
        profile: &profile::MODERN,
        identity: settings.identity.clone(),
        ..settings.clone()
    };
    // `open` uses the modern profile, for which `needs_probe` is false: no recursion.
    let session = Box::pin(connect(addr, &open)).await.ok()?;
    let probe = Probe {
        version: session.info.version.clone(),
        leaf: session.info.chain.first().cloned(),
    };
    session.close().await;
    Some(probe)
}

fn anchors_words(settings: &ClientSettings) -> String {
    match &settings.anchors {
        Anchors::Mozilla => "the bundled Mozilla roots".into(),
        Anchors::Given(certs) => {
            let names: Vec<String> = summarize(certs)
                .iter()
                .map(|c| c.common_name().to_string())
                .collect();
            format!("--ca: {}", names.join(", "))
        }
    }
}

//! Probing a server the way the device would: a ClientHello restricted to a
//! device profile, the chain the server presents recorded without verifying
//! it (verification is `devtls_pki::verify`'s job, done as the device does),
//! and handshake failures named with the device's error.
//!
//! When the restricted handshake fails, the probe retries with one feature
//! the device lacks added at a time (TLS 1.3, X25519, RSA-PSS/Ed25519
//! signatures, other suites) to say what the server needs.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devtls_pki::device_error::{self, DeviceError};
use devtls_pki::profile::Profile;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme,
};
use serde::Serialize;

use crate::restrict;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or IP address to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The name sent as SNI (the device sends `server_hostname`); `None`: the host.
    pub sni: Option<String>,
    /// Connect and I/O timeout.
    pub timeout: Duration,
}

impl Target {
    /// `host:port` as typed on the command line.
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The device's own certificate and key, for servers that demand one (mTLS).
#[derive(Clone)]
pub struct Identity {
    /// The device's certificate, DER (it presents only this one).
    pub cert: Vec<u8>,
    /// Its private key, DER.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// Why a handshake failed, in the device's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No protocol version in common (e.g. a TLS 1.3-only server).
    NoCommonVersion,
    /// No cipher suite, group or signature algorithm in common.
    NothingInCommon,
    /// The server demanded a client certificate and none was given.
    ClientCertificateRequired,
    /// The server refused the device's own certificate.
    ClientCertificateRefused,
    /// The peer does not speak TLS.
    NotTls,
    /// The peer closed the connection during the handshake.
    Closed,
    /// Anything else (the detail says what).
    Other,
}

/// A failed handshake.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What the device's script sees.
    pub device_error: DeviceError,
    /// What rustls reported.
    pub detail: String,
    /// What the server needs that the device lacks, when a retry found it
    /// (`TLS 1.3`, `X25519`, `RSA-PSS or Ed25519 signatures`, `ChaCha20`).
    pub needs: Option<String>,
}

/// What a probe found.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The certificates the server presented, leaf first, DER (empty if it never sent them).
    #[serde(skip)]
    pub chain: Vec<Vec<u8>>,
    /// The negotiated version, when the handshake completed.
    pub version: Option<String>,
    /// The negotiated cipher suite, when the handshake completed.
    pub suite: Option<String>,
    /// The server asked for a client certificate.
    pub client_cert_requested: bool,
    /// Why the handshake failed, if it did.
    pub failure: Option<HandshakeFailure>,
}

/// The server could not be reached at all (nothing to diagnose).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

// Records what the server presents and accepts it: the device-like verdict is
// computed afterwards from the recorded chain.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        chain.clear();
        chain.push(end_entity.to_vec());
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tolerate_certificate(rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tolerate_certificate(rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        ))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// The handshake signature is checked with the leaf's key, which webpki reads
// with its own certificate rules (e.g. it refuses unknown critical
// extensions). Those are the certificate's problems, reported afterwards by
// pki::verify in the device's words, so they do not end the recording here.
fn tolerate_certificate(
    result: Result<HandshakeSignatureValid, rustls::Error>,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    match result {
        Err(rustls::Error::InvalidCertificate(_)) => Ok(HandshakeSignatureValid::assertion()),
        other => other,
    }
}

// Presents the device's certificate (if any) and notes that the server asked.
#[derive(Debug)]
struct ClientCert {
    key: Option<Arc<rustls::sign::CertifiedKey>>,
    asked: Mutex<bool>,
}

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// One relaxation of the profile tried after a failed restricted handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relax {
    None,
    Tls13,
    X25519,
    Signatures,
    Suites,
    Everything,
}

impl Relax {
    fn needs(self) -> Option<&'static str> {
        match self {
            Relax::Tls13 => Some("TLS 1.3"),
            Relax::X25519 => Some("X25519 key exchange"),
            Relax::Signatures => Some("RSA-PSS or Ed25519 signatures"),
            Relax::Suites => Some("a cipher suite the device lacks (e.g. ChaCha20)"),
            Relax::None | Relax::Everything => None,
        }
    }
}

fn provider_for(profile: &Profile, relax: Relax) -> Arc<CryptoProvider> {
    let device = restrict::provider(profile);
    let full = aws_lc_rs::default_provider();
    let mut p = (*device).clone();
    match relax {
        Relax::None | Relax::Tls13 => {}
        Relax::X25519 => p.kx_groups = full.kx_groups.clone(),
        Relax::Signatures => {
            p.signature_verification_algorithms = full.signature_verification_algorithms
        }
        Relax::Suites => p.cipher_suites = full.cipher_suites.clone(),
        Relax::Everything => p = full.clone(),
    }
    if relax == Relax::Tls13 {
        // TLS 1.3 suites are needed for a TLS 1.3 handshake.
        p.cipher_suites.extend(
            full.cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied(),
        );
    }
    Arc::new(p)
}

fn versions_for(profile: &Profile, relax: Relax) -> Vec<&'static rustls::SupportedProtocolVersion> {
    match relax {
        Relax::Tls13 | Relax::Everything => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        _ => restrict::tls_versions(profile),
    }
}

struct Attempt {
    chain: Vec<Vec<u8>>,
    version: Option<String>,
    suite: Option<String>,
    asked: bool,
    error: Option<AttemptError>,
}

enum AttemptError {
    Tls(rustls::Error),
    Io(std::io::Error),
}

fn attempt(
    target: &Target,
    profile: &Profile,
    relax: Relax,
    identity: Option<&Identity>,
) -> Result<Attempt, Unreachable> {
    let provider = provider_for(profile, relax);
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let key = match identity {
        Some(id) => {
            let key = PrivateKeyDer::try_from(id.key.clone())
                .map_err(|e| Unreachable(format!("the device key does not load: {e}")))?;
            Some(Arc::new(
                rustls::sign::CertifiedKey::from_der(
                    vec![CertificateDer::from(id.cert.clone())],
                    key,
                    &provider,
                )
                .map_err(|e| {
                    Unreachable(format!("the device certificate and key do not load: {e}"))
                })?,
            ))
        }
        None => None,
    };
    let client_cert = Arc::new(ClientCert {
        key,
        asked: Mutex::new(false),
    });
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions_for(profile, relax))
        .map_err(|e| Unreachable(format!("no usable TLS configuration for this profile: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_client_cert_resolver(client_cert.clone());
    let sni = target.sni.clone().unwrap_or_else(|| target.host.clone());
    let name = ServerName::try_from(sni.clone())
        .map_err(|_| Unreachable(format!("'{sni}' is not a host name or IP address")))?;
    let mut conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| Unreachable(format!("could not start TLS: {e}")))?;
    let mut sock = connect(target)?;
    let mut error = None;
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) if conn.is_handshaking() => {
                error = Some(AttemptError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                error = Some(
                    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                        Some(tls) => AttemptError::Tls(tls.clone()),
                        None => AttemptError::Io(e),
                    },
                );
                break;
            }
        }
    }
    // Tell the server politely; the chain is what matters here.
    if error.is_none() {
        conn.send_close_notify();
        let _ = conn.complete_io(&mut sock);
    }
    let chain = recorder
        .chain
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let asked = *client_cert.asked.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Attempt {
        chain,
        version: conn.protocol_version().map(|v| format!("{v:?}")),
        suite: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite())),
        asked,
        error,
    })
}

fn connect(target: &Target) -> Result<TcpStream, Unreachable> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| Unreachable(format!("{}: cannot resolve: {e}", target.host)))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, target.timeout) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(target.timeout));
                let _ = s.set_write_timeout(Some(target.timeout));
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Unreachable(format!(
        "{}: cannot connect: {}",
        target.display(),
        last.map_or("no address".to_string(), |e| e.to_string())
    )))
}

fn classify(
    error: &AttemptError,
    asked: bool,
    sent_cert: bool,
) -> (FailureKind, DeviceError, String) {
    use FailureKind::*;
    match error {
        AttemptError::Io(e) => match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => (
                Closed,
                device_error::CONN_EOF,
                format!("the server closed the connection during the handshake ({e})"),
            ),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => (
                Other,
                device_error::CONN_EOF,
                "the server did not answer the handshake in time".into(),
            ),
            _ => (Other, device_error::CONN_EOF, e.to_string()),
        },
        AttemptError::Tls(e) => {
            let detail = e.to_string();
            match e {
                rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => {
                    (NoCommonVersion, device_error::FATAL_ALERT, detail)
                }
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
                    (ClientCertificateRequired, device_error::FATAL_ALERT, detail)
                }
                rustls::Error::AlertReceived(_) if asked && !sent_cert => {
                    (ClientCertificateRequired, device_error::FATAL_ALERT, detail)
                }
                rustls::Error::AlertReceived(
                    AlertDescription::BadCertificate
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::UnknownCA
                    | AlertDescription::AccessDenied
                    | AlertDescription::DecryptError,
                ) if asked && sent_cert => {
                    (ClientCertificateRefused, device_error::FATAL_ALERT, detail)
                }
                rustls::Error::AlertReceived(_) | rustls::Error::PeerIncompatible(_) => {
                    (NothingInCommon, device_error::FATAL_ALERT, detail)
                }
                rustls::Error::InvalidMessage(_)
                | rustls::Error::InappropriateMessage { .. }
                | rustls::Error::InappropriateHandshakeMessage { .. } => {
                    (NotTls, device_error::INVALID_RECORD, detail)
                }
                _ => (Other, device_error::FATAL_ALERT, detail),
            }
        }
    }
}

/// Connects with a ClientHello restricted to `profile`, records what the
/// server presents, and names any failure the way the device would see it.
/// When the restricted handshake fails, the chain is still fetched (with the
/// first relaxation that lets the server finish) so it can be explained.
pub fn probe(
    target: &Target,
    profile: &Profile,
    identity: Option<&Identity>,
) -> Result<Probe, Unreachable> {
    let first = attempt(target, profile, Relax::None, identity)?;
    let Some(error) = &first.error else {
        return Ok(Probe {
            chain: first.chain,
            version: first.version,
            suite: first.suite,
            client_cert_requested: first.asked,
            failure: None,
        });
    };
    let (kind, device_error, detail) = classify(error, first.asked, identity.is_some());
    let mut probe = Probe {
        chain: first.chain.clone(),
        version: None,
        suite: None,
        client_cert_requested: first.asked,
        failure: Some(HandshakeFailure {
            kind,
            device_error,
            detail,
            needs: None,
        }),
    };
    if matches!(
        kind,
        FailureKind::NotTls
            | FailureKind::ClientCertificateRefused
            | FailureKind::ClientCertificateRequired
    ) {
        return Ok(probe);
    }
    for relax in [
        Relax::Tls13,
        Relax::X25519,
        Relax::Signatures,
        Relax::Suites,
        Relax::Everything,
    ] {
        let Ok(retry) = attempt(target, profile, relax, identity) else {
            continue;
        };
        if probe.chain.is_empty() && !retry.chain.is_empty() {
            probe.chain = retry.chain.clone();
        }
        if retry.error.is_none() {
            if let Some(f) = probe.failure.as_mut() {
                f.needs = relax.needs().map(str::to_string);
                if relax == Relax::Tls13 {
                    f.kind = FailureKind::NoCommonVersion;
                }
            }
            break;
        }
    }
    Ok(probe)
}

/// Like [`probe`], over DTLS 1.2 (UDP), with the DTLS client of [`crate::dtls`]
/// restricted to `profile` where rtc-dtls allows it. A server that completes
/// the handshake but sends no reply still counts as a completed handshake:
/// the verdict is about the handshake and the chain.
pub fn probe_dtls(
    target: &Target,
    profile: &'static Profile,
    identity: Option<&Identity>,
) -> Result<Probe, Unreachable> {
    use crate::dtls::{self, DtlsError};
    let peer = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| Unreachable(format!("{}: cannot resolve: {e}", target.host)))?
        .next()
        .ok_or_else(|| Unreachable(format!("{}: no address", target.host)))?;
    let provider = restrict::provider(profile);
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let identity_key = match identity {
        Some(id) => {
            let key = PrivateKeyDer::try_from(id.key.clone())
                .map_err(|e| Unreachable(format!("the device key does not load: {e}")))?;
            let key = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| Unreachable(format!("the device key does not load: {e}")))?;
            Some((vec![CertificateDer::from(id.cert.clone())], key))
        }
        None => None,
    };
    let options = dtls::ClientOptions {
        server_name: target.sni.clone().unwrap_or_else(|| target.host.clone()),
        verifier: Some(recorder.clone()),
        identity: identity_key,
        profile,
        timeout: target.timeout,
    };
    let recorded = || {
        recorder
            .chain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    };
    let failed = |error: AttemptError, asked: bool, chain: Vec<Vec<u8>>| {
        let (kind, device_error, detail) = classify(&error, asked, identity.is_some());
        Probe {
            chain,
            version: None,
            suite: None,
            client_cert_requested: asked,
            failure: Some(HandshakeFailure {
                kind,
                device_error,
                detail,
                needs: None,
            }),
        }
    };
    match dtls::connect(peer, &options, b"hello\n") {
        Ok(done) => Ok(Probe {
            chain: done.presented.iter().map(|c| c.to_vec()).collect(),
            version: Some(done.version.to_string()),
            suite: Some(done.suite),
            client_cert_requested: done.asked_for_cert,
            failure: None,
        }),
        Err(f) => {
            let chain = if f.presented.is_empty() {
                recorded()
            } else {
                f.presented.iter().map(|c| c.to_vec()).collect()
            };
            let asked = f.asked_for_cert;
            match f.error {
                DtlsError::NoReply { .. } => Ok(Probe {
                    chain,
                    version: Some(dtls::VERSION.to_string()),
                    suite: None,
                    client_cert_requested: asked,
                    failure: None,
                }),
                DtlsError::Alert(alert) => Ok(failed(
                    AttemptError::Tls(rustls::Error::AlertReceived(alert)),
                    asked,
                    chain,
                )),
                DtlsError::Certificate(e) => Ok(failed(AttemptError::Tls(e), asked, chain)),
                DtlsError::Stalled { .. } => Ok(failed(
                    AttemptError::Io(std::io::ErrorKind::UnexpectedEof.into()),
                    asked,
                    chain,
                )),
                DtlsError::Handshake(text) => Ok(failed(
                    AttemptError::Tls(rustls::Error::General(text)),
                    asked,
                    chain,
                )),
                other => Err(Unreachable(format!("{}: {other}", target.display()))),
            }
        }
    }
}

/// The chain a DTLS server presents (what `anchor --dtls` reads).
pub fn fetch_chain_dtls(target: &Target) -> Result<Vec<Vec<u8>>, Unreachable> {
    let got = probe_dtls(target, &devtls_pki::profile::MODERN, None)?;
    if got.chain.is_empty() {
        let detail = got
            .failure
            .map_or("no certificate".to_string(), |f| f.detail);
        return Err(Unreachable(format!(
            "{}: the DTLS handshake failed before the server sent its certificates ({detail})",
            target.display()
        )));
    }
    Ok(got.chain)
}

/// The chain a server presents to an unrestricted client (what `anchor` reads).
pub fn fetch_chain(target: &Target) -> Result<Vec<Vec<u8>>, Unreachable> {
    let got = attempt(
        target,
        &devtls_pki::profile::MODERN,
        Relax::Everything,
        None,
    )?;
    if got.chain.is_empty() {
        let detail = match &got.error {
            Some(AttemptError::Tls(e)) => e.to_string(),
            Some(AttemptError::Io(e)) => e.to_string(),
            None => "no certificate".into(),
        };
        return Err(Unreachable(format!(
            "{}: the TLS handshake failed before the server sent its certificates ({detail})",
            target.display()
        )));
    }
    Ok(got.chain)
}

/// Downloads an issuer certificate from an authorityInfoAccess caIssuers URL
/// (plain `http://`, as CAs publish them). Returns the DER certificate, or
/// why not.
pub fn fetch_issuer(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// issuer URLs are fetched"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().unwrap_or(80)),
        _ => (authority.to_string(), 80),
    };
    let target = Target {
        host: host.clone(),
        port,
        sni: None,
        timeout,
    };
    let mut sock = connect(&target).map_err(|e| e.0)?;
    write!(
        sock,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: devtls\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let mut response = Vec::new();
    sock.take(1 << 20)
        .read_to_end(&mut response)
        .map_err(|e| format!("{url}: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{url}: HTTP status {status}"));
    }
    let body = &response[split + 4..];
    let sniffed = devtls_pki::sniff::sniff(body).map_err(|e| format!("{url}: {e}"))?;
    let first = sniffed.certificates().next().map(|i| i.der.clone());
    first.ok_or_else(|| {
        format!("{url}: no certificate in the response (PKCS#7 bundles are not read)")
    })
}

//! Fetching what a server presents (`devtls anchor`): its certificate chain
//! over TLS or DTLS, and issuer certificates from caIssuers URLs. Each call
//! is bounded as a whole by the target's timeout, however slowly the server
//! answers. Verification is `devtls_pki::verify`'s job; the device's verdict
//! is [`crate::examine`]'s.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::hello::device::{Device, End};
use crate::hello::drive::{self, Deadline, DriveError};
use crate::hello::wire::Transport;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or IP address to connect to.
    pub host: String,
    /// TCP or UDP port.
    pub port: u16,
    /// The name sent as SNI; `None`: the host.
    pub sni: Option<String>,
    /// The whole operation's time limit.
    pub timeout: Duration,
}

impl Target {
    /// `host:port` as typed on the command line.
    pub fn display(&self) -> String {
        drive::display(&self.host, self.port)
    }
}

/// The server could not be reached, did not answer in time, or sent no chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

impl From<DriveError> for Unreachable {
    fn from(e: DriveError) -> Self {
        Unreachable(e.to_string())
    }
}

// Records what the server presents and accepts it.
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
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only the chain is wanted; the handshake is abandoned after it.
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TCP stream whose reads and writes all end by one deadline.
struct Bounded<'a> {
    sock: TcpStream,
    deadline: &'a Deadline,
}

impl Read for Bounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.remaining();
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.sock.set_read_timeout(Some(left))?;
        self.sock.read(buf)
    }
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.deadline.remaining();
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.sock.set_write_timeout(Some(left))?;
        self.sock.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

/// The chain a server presents to an unrestricted client (TLS 1.2 or 1.3).
pub fn fetch_chain(target: &Target) -> Result<Vec<Vec<u8>>, Unreachable> {
    let deadline = Deadline::after(target.timeout);
    let provider = Arc::new(aws_lc_rs::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Unreachable(format!("no usable TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let sni = target.sni.clone().unwrap_or_else(|| target.host.clone());
    let name = ServerName::try_from(sni.clone())
        .map_err(|_| Unreachable(format!("'{sni}' is not a host name or IP address")))?;
    let mut conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| Unreachable(format!("could not start TLS: {e}")))?;
    let sock = drive::connect_tcp(&target.host, target.port, &deadline)?;
    let mut io = Bounded {
        sock,
        deadline: &deadline,
    };
    let mut error = None;
    while conn.is_handshaking() {
        let got = |r: &Recorder| !r.chain.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        if got(&recorder) {
            break;
        }
        match conn.complete_io(&mut io) {
            Ok((0, 0)) => {
                error = Some("the server closed the connection".to_string());
                break;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                return Err(deadline.no_answer(&target.display()).into());
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let chain = recorder
        .chain
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if chain.is_empty() {
        return Err(Unreachable(format!(
            "{}: the TLS handshake failed before the server sent its certificates ({})",
            target.display(),
            error.unwrap_or_else(|| "no certificate".into())
        )));
    }
    Ok(chain)
}

/// The chain a DTLS server presents, read from its first flight (a
/// ClientHello offering the device's suites and more; no cipher needed).
pub fn fetch_chain_dtls(target: &Target) -> Result<Vec<Vec<u8>>, Unreachable> {
    let deadline = Deadline::after(target.timeout);
    let profile = &devtls_pki::profile::OPENMV;
    let offer = crate::examine::wide_offer(profile, Transport::Dtls)
        .ok_or_else(|| Unreachable("no DTLS hello to send".into()))?;
    let sni = target.sni.clone().unwrap_or_else(|| target.host.clone());
    let device = Device {
        profile,
        offer,
        server_name: Some(&sni),
        check: None,
        identity: None,
    };
    let outcome = drive::converse(&target.host, target.port, device, &deadline)?;
    if outcome.found.chain.is_empty() {
        let detail = match outcome.end {
            End::ServerAlert { name, .. } => format!("alert {name}"),
            End::NotTls { detail } => format!("not DTLS: {detail}"),
            End::DeviceRefuses(r) => r.why,
            _ => "no certificate".into(),
        };
        return Err(Unreachable(format!(
            "{}: the DTLS handshake failed before the server sent its certificates ({detail})",
            target.display()
        )));
    }
    Ok(outcome.found.chain)
}

/// Downloads an issuer certificate from an authorityInfoAccess caIssuers URL
/// (plain `http://`, as CAs publish them), within `timeout` as a whole.
/// Returns the DER certificate, or why not.
pub fn fetch_issuer(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = Deadline::after(timeout);
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
    let sock = drive::connect_tcp(&host, port, &deadline).map_err(|e| e.to_string())?;
    let mut io = Bounded {
        sock,
        deadline: &deadline,
    };
    write!(
        io,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: devtls\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let mut response = Vec::new();
    (&mut io)
        .take(1 << 20)
        .read_to_end(&mut response)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                format!("{url}: no answer within {} s", timeout.as_secs().max(1))
            }
            _ => format!("{url}: {e}"),
        })?;
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

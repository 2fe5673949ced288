//! Fetching what a server presents (`devtls anchor`): its certificate chain
//! over TLS or DTLS, and issuer certificates from caIssuers URLs. Each call
//! is bounded as a whole by the target's timeout, however slowly the server
//! answers. Verification is `devtls_pki::verify`'s job; the device's verdict
//! is [`crate::examine`]'s.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::hello::device::{Device, End};
use crate::hello::drive::{self, Deadline, DriveError};
use crate::hello::wire::Transport;
use crate::verify::DeviceVerifier;

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
    let recorder = Arc::new(DeviceVerifier::recorder(
        provider.signature_verification_algorithms,
    ));
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
        if !recorder.presented().is_empty() {
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
    let chain: Vec<Vec<u8>> = recorder
        .presented()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
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

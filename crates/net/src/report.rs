//! What a completed or failed exchange reports: the negotiated parameters
//! and the peer's certificates in readable form.

use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;
use serde::Serialize;

use crate::config::ConfigError;
use crate::diagnose::{Diagnosis, Failure, Probe};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// One certificate of a peer's chain, as a person reads it.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    /// The subject distinguished name, e.g. `CN=openmv`.
    pub subject: String,
    /// The issuer distinguished name.
    pub issuer: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// DNS and IP subjectAltNames (empty: no SAN, the device falls back to the CN).
    pub names: Vec<String>,
    /// The public key, e.g. `EC P-256`, `RSA 2048`, `Ed25519`.
    pub key: String,
    /// SHA-256 fingerprint, colon-separated.
    pub sha256: String,
}

impl CertSummary {
    /// Reads a DER certificate; `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some(d.to_string()),
                        GeneralName::IPAddress(ip) => ip_string(ip),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let validity = cert.validity();
        Some(CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: rfc3339(validity.not_before.to_datetime()),
            not_after: rfc3339(validity.not_after.to_datetime()),
            names,
            key: key_name(&cert),
            sha256: devtls_pki::fingerprint::sha256_colon(der),
        })
    }

    /// The subject's common name, or the whole subject if it has none.
    pub fn common_name(&self) -> &str {
        self.subject
            .split(", ")
            .find_map(|part| part.strip_prefix("CN="))
            .unwrap_or(&self.subject)
    }
}

// Transport-neutral results: TLS and DTLS endpoints both report with these.

/// What a completed handshake negotiated and the server presented.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// The server's address.
    pub peer: SocketAddr,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The cipher suite's IANA name.
    pub cipher_suite: String,
    /// The server's chain as presented, leaf first.
    pub chain: Vec<CertSummary>,
    /// Whether the chain was verified (false with `Verification::None`).
    pub verified: bool,
    /// Whether the server asked for a client certificate.
    pub client_cert_requested: bool,
}

/// A failed handshake, explained, with what the server presented.
#[derive(Debug)]
pub struct HandshakeFailure {
    /// The raw failure.
    pub failure: Failure,
    /// The explanation.
    pub diagnosis: Diagnosis,
    /// The chain the server presented before things failed (may be empty).
    pub chain: Vec<CertSummary>,
    /// What an unrestricted retry negotiated, if one was made.
    pub probe: Option<Probe>,
}

/// Why a client `connect` (TLS or DTLS) returned no session.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The settings cannot be used (exit 2 territory).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The connection or handshake failed (exit 1 territory).
    #[error("{}", .0.diagnosis.what)]
    Handshake(Box<HandshakeFailure>),
}

/// What one client did.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    /// The client's address.
    pub peer: SocketAddr,
    /// The session, or why there was none.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How a client's connection ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Handshake completed, message read, reply sent.
    Served(Served),
    /// The handshake failed.
    Failed(Rejected),
}

impl Outcome {
    /// The client's handshake failed; a probe that ended it on purpose
    /// (e.g. `devtls doctor`) is not a failure.
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Failed(r) if r.diagnosis.reason != crate::diagnose::Reason::Probe)
    }
}

/// A client whose handshake failed.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// Why, in plain words.
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
    /// The certificate chain the client presented, if it got that far.
    pub client_chain: Vec<CertSummary>,
}

/// A completed exchange with a client.
#[derive(Debug, Clone, Serialize)]
pub struct Served {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The cipher suite's IANA name.
    pub cipher_suite: String,
    /// The client's certificate chain (empty without mTLS).
    pub client_chain: Vec<CertSummary>,
    /// What the client sent before the reply (lossy UTF-8).
    pub received: String,
}

/// Summaries of a presented chain, leaf first (unparsable certificates skipped).
pub fn summarize(chain: &[CertificateDer<'_>]) -> Vec<CertSummary> {
    chain
        .iter()
        .filter_map(|c| CertSummary::from_der(c))
        .collect()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn ip_string(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

fn key_name(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_string(),
                    "1.3.132.0.34" => "P-384".to_string(),
                    "1.3.132.0.35" => "P-521".to_string(),
                    "1.3.132.0.10" => "secp256k1".to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| format!("{} bits", point.key_size()));
            format!("EC {curve}")
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".into(),
        _ => format!("other ({})", spki.algorithm.algorithm.to_id_string()),
    }
}

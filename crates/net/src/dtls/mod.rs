//! DTLS 1.2 client and server endpoints (the guide's DTLS example), built on
//! rtc-dtls (pure Rust, sans-IO) and driven here from blocking UDP sockets or
//! tokio ones: each endpoint is a state machine without I/O ([`client`],
//! [`server`]) with a small blocking driver and a small async one beside it.
//!
//! - The server answers every ClientHello without a valid cookie with a
//!   stateless HelloVerifyRequest whose cookie is bound to the client's address
//!   and port ([`cookie`]); it serves many clients at once keyed by address,
//!   drops handshakes that stall, ignores garbage, and can demand a client
//!   certificate (mTLS).
//! - The client retransmits its flights on loss (rtc-dtls's timers, driven by
//!   this module), answers HelloVerifyRequests from the same socket, verifies
//!   the server with the same verifier as the TLS client and can present a
//!   client certificate.
//!
//! Both restrict themselves to a device profile where rtc-dtls allows it
//! ([`crypto`]): the profile's cipher suites, groups and signature hashes.
//! What rtc-dtls cannot emulate of the `openmv` profile: the AES-256-GCM,
//! every AES-CBC suite but AES-256-CBC-SHA, and every RSA key exchange suite
//! ([`crypto::unemulated_suites`]), the P-521 group, and ECDSA signatures with
//! SHA-512 or with SHA-384 on a P-256 key. rtc-dtls also offers the extended
//! master secret, which the device does not.

pub mod client;
pub mod cookie;
pub mod crypto;
mod defrag;
pub mod server;
pub mod session;

use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

pub use client::{connect, connect_async, ClientOptions, DtlsExchange};
pub use server::{AsyncDtlsServer, DtlsServer, ServedClient, ServerEvent, ServerOn, Socket};
pub use session::{exchange, exchange_async, AsyncServer, ReportingServer, Server};

/// The protocol version every DTLS endpoint here speaks.
pub const VERSION: &str = "DTLSv1.2";

/// Why a DTLS exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DtlsError {
    /// The local socket could not be used.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer's host answered with ICMP port unreachable.
    #[error("nothing is listening on UDP {0} (port unreachable)")]
    Refused(SocketAddr),
    /// No datagram at all came back.
    #[error("no DTLS answer from {peer} within {after:?}")]
    Silent {
        /// Who was asked.
        peer: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
    /// The handshake started but did not finish in time.
    #[error("the handshake with {peer} did not finish within {after:?}")]
    Stalled {
        /// The peer.
        peer: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
    /// The handshake finished but no reply came.
    #[error("the handshake with {peer} finished but no reply came within {after:?}")]
    NoReply {
        /// The peer.
        peer: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
    /// The peer's certificate failed our verification.
    #[error("the peer's certificate failed verification: {0}")]
    Certificate(rustls::Error),
    /// The peer ended the handshake with a fatal alert.
    #[error("the peer sent a fatal alert: {0:?}")]
    Alert(rustls::AlertDescription),
    /// The handshake failed on our side for another reason.
    #[error("the handshake failed: {0}")]
    Handshake(String),
    /// The settings cannot be turned into a DTLS endpoint.
    #[error("{0}")]
    Config(String),
}

impl DtlsError {
    /// Reads rtc-dtls's error, which says only "Alert is Fatal" for the
    /// peer's refusal: our verifier's refusal (`verify`, recorded by the
    /// callback) comes first, then the alert read off the wire (`alert`).
    fn from_rtc(
        err: &rtc_shared::error::Error,
        verify: Option<rustls::Error>,
        alert: Option<rustls::AlertDescription>,
    ) -> Self {
        if let Some(v) = verify {
            return DtlsError::Certificate(v);
        }
        if let Some(a) = alert {
            return DtlsError::Alert(a);
        }
        if matches!(err, rtc_shared::error::Error::ErrClientCertificateRequired) {
            return DtlsError::Certificate(rustls::Error::NoCertificatesPresented);
        }
        DtlsError::Handshake(err.to_string())
    }
}

/// A failed exchange: why, and what the peer presented before it failed.
#[derive(Debug)]
pub struct DtlsFailure {
    /// Why it failed.
    pub error: DtlsError,
    /// The peer's certificate chain, leaf first, if it got that far.
    pub presented: Vec<CertificateDer<'static>>,
    /// Whether the server sent a HelloVerifyRequest (client side).
    pub cookie_exchange: bool,
    /// Whether the server asked for a client certificate (client side).
    pub asked_for_cert: bool,
}

impl From<DtlsError> for DtlsFailure {
    fn from(error: DtlsError) -> Self {
        DtlsFailure {
            error,
            presented: Vec::new(),
            cookie_exchange: false,
            asked_for_cert: false,
        }
    }
}

impl std::fmt::Display for DtlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The largest datagram we read: UDP's own limit.
const MAX_DATAGRAM: usize = 65_535;

/// A fatal alert sent in the clear (epoch 0, before the peer switched to
/// encryption), which is how handshake refusals arrive.
fn plaintext_alert(datagram: &[u8]) -> Option<rustls::AlertDescription> {
    plaintext_alert_at(datagram, 2)
}

/// A plaintext warning user_canceled in the datagram: a client that ends
/// the handshake on purpose (`devtls doctor --dtls`, docs/device-behaviour.md).
fn user_canceled(datagram: &[u8]) -> bool {
    plaintext_alert_at(datagram, 1) == Some(rustls::AlertDescription::UserCanceled)
}

/// The first epoch-0 alert of `level` (1 warning, 2 fatal) in a datagram.
fn plaintext_alert_at(datagram: &[u8], level: u8) -> Option<rustls::AlertDescription> {
    let mut rest = datagram;
    while rest.len() >= 13 {
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let body = rest.get(13..13 + len)?;
        if rest[0] == 21 && rest[3..5] == [0, 0] && body.len() == 2 && body[0] == level {
            return Some(rustls::AlertDescription::from(body[1]));
        }
        rest = &rest[13 + len..];
    }
    None
}

fn chain(raw: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
    raw.iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect()
}

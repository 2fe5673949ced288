//! keyUsage and extendedKeyUsage for the role the certificate is used in
//! (`mbedtls_ssl_check_cert_usage`, run by the TLS layer after X.509
//! verification: alone, it fails the handshake with
//! `MBEDTLS_ERR_SSL_BAD_CERTIFICATE` rather than a verify error).

use serde::Serialize;

use crate::device_error::flags;
use crate::inspect::CertInfo;

/// Which side presented the certificate the device checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presenter {
    /// A server (the device is the client): serverAuth.
    Server,
    /// A client (the device is the server, mTLS): clientAuth.
    Client,
}

impl Presenter {
    /// The EKU purpose the device requires.
    pub fn purpose(self) -> &'static str {
        match self {
            Presenter::Server => "serverAuth",
            Presenter::Client => "clientAuth",
        }
    }
}

/// The usage flags (`BADCERT_KEY_USAGE`, `BADCERT_EXT_KEY_USAGE`) the device
/// sets on a leaf presented by `presenter`. With a keyUsage extension the
/// leaf needs digitalSignature (ECDHE suites, a client) or keyEncipherment
/// (RSA key exchange): the suite is the server's choice, so either passes.
/// With an extendedKeyUsage it needs the purpose or anyExtendedKeyUsage.
pub fn usage_flags(leaf: &CertInfo, presenter: Presenter) -> u32 {
    let mut out = 0;
    let ku_ok = leaf.key_usage.as_ref().is_none_or(|k| match presenter {
        Presenter::Server => k.has("digitalSignature") || k.has("keyEncipherment"),
        Presenter::Client => k.has("digitalSignature"),
    });
    if !ku_ok {
        out |= flags::KEY_USAGE;
    }
    let eku_ok = leaf.extended_key_usage.as_ref().is_none_or(|e| {
        e.any
            || match presenter {
                Presenter::Server => e.server_auth,
                Presenter::Client => e.client_auth,
            }
    });
    if !eku_ok {
        out |= flags::EXT_KEY_USAGE;
    }
    out
}

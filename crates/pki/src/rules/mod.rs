//! The device's rules: every fact about what the device accepts, each
//! written once, reading the [`Profile`](crate::profile::Profile)'s data.
//!
//! lint, the device verdict ([`crate::verify`], used by doctor), path
//! building ([`crate::chain`]), `anchor`'s warnings, `doctor --files` and
//! net's device verifier consult these functions and restate none of them.
//! A rule takes the role a certificate plays ([`CertRole`]), because the
//! device applies different checks to its trust anchor, to what a server
//! sends and to its own certificate and key.
//!
//! - [`certs`]: what the device's X.509 parser refuses, keys and hashes the
//!   profile refuses, validity, which certificate may issue another;
//! - [`keys`]: loading a key file as `load_cert_chain` does, and pairing a
//!   key with its certificate;
//! - [`names`]: host-name matching (SAN, wildcard, IP, CN fallback);
//! - [`path`]: `mbedtls_x509_crt_verify_with_profile`, flags and all;
//! - [`usage`]: keyUsage and extendedKeyUsage for the role;
//! - [`sizes`]: the Certificate message against the device's buffers;
//! - [`files`]: the device's own files, loaded as it loads them.
//!
//! Sources: docs/device-behaviour.md (measured) and mbedTLS 3.6's
//! `library/x509_crt.c` as configured by MicroPython.

pub mod certs;
pub mod files;
pub mod keys;
pub mod names;
pub mod path;
pub mod sizes;
pub mod usage;

use serde::Serialize;

use crate::profile::Profile;
use crate::sniff::Encoding;

/// Whether the device parses a file in this encoding (DER always; PEM only
/// where the firmware parses PEM).
pub fn loads_encoding(profile: &Profile, encoding: Encoding) -> bool {
    encoding == Encoding::Der || profile.loads_pem
}

/// The role a certificate plays for the device: which rules apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertRole {
    /// What `load_verify_locations` loads: it must parse, its key must be one
    /// the device verifies with, it must be valid at the device's clock and
    /// able to issue (a CA, a v1 root) or be the self-signed leaf itself.
    /// Its own signature (and so its hash) and its names are never checked.
    Anchor,
    /// The end-entity certificate a peer presents: parse, hash, key, names,
    /// usage, validity.
    Leaf,
    /// A CA certificate a server sends above its leaf: parse, hash, key,
    /// validity, CA bit, keyCertSign, pathLen.
    Intermediate,
    /// The device's own certificate (`load_cert_chain`): parse, key types,
    /// the key that goes with it, the output buffer.
    Own,
}

impl CertRole {
    /// A few words for messages: `the trust anchor`, `the server's certificate`.
    pub fn words(self) -> &'static str {
        match self {
            CertRole::Anchor => "the trust anchor",
            CertRole::Leaf => "the peer's certificate",
            CertRole::Intermediate => "an intermediate the peer sends",
            CertRole::Own => "the device's own certificate",
        }
    }

    /// Whether the device checks the signature on a certificate in this role
    /// (and so its hash): every one but the anchor.
    pub fn signature_checked(self) -> bool {
        !matches!(self, CertRole::Anchor)
    }

    /// Whether the device matches its `server_hostname` against this certificate.
    pub fn names_checked(self) -> bool {
        matches!(self, CertRole::Leaf)
    }
}

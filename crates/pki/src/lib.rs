//! # devtls-pki
//!
//! Keys, certificates, CSRs and CRLs for small TLS devices, and the device
//! profiles that say what those devices accept.
//!
//! The crate is pure: bytes in, bytes and findings out. It opens no sockets;
//! the only files it touches are through [`files`], the one safe writer.
//!
//! - [`profile`]: device profiles as data (`openmv` is the default).
//! - [`device_error`]: the errors a device prints, for diagnosis.
//! - [`keys`], [`issue`]: generating keys, certificates and CSRs.
//! - [`crl`]: certificate revocation lists signed by a CA.
//! - [`sniff`]: reading any PEM/DER file into typed items.
//! - [`convert`]: PEM <-> DER, decrypting keys, ordering chains for split.
//! - [`inspect`]: what each item holds (names, validity, keys, extensions), serialisable.
//! - [`files`]: atomic writes, 0600 keys, no overwrite without force.
//! - [`roots`], [`chain`]: root sets and path building to a trust anchor.
//! - [`rules`]: every rule about what the device accepts, by the role a certificate plays.
//! - [`verify`]: the device's verdict on a chain, in its words, with the fix.
//! - [`names`]: DNS names, hosts and device IDs checked once; values escaped for scripts and CSV.
//! - [`lint`]: findings against a device profile; [`cabf`]: public CA lifetime limits.

pub mod cabf;
pub mod chain;
pub mod convert;
pub mod crl;
pub mod der;
pub mod device_error;
pub mod files;
pub mod fingerprint;
pub mod inspect;
pub mod issue;
pub mod keys;
pub mod lint;
pub mod names;
pub mod profile;
pub mod roots;
pub mod rules;
pub mod signer;
pub mod sniff;
pub mod verify;

use std::path::Path;

/// Everything that can go wrong in this crate. Messages say what was found
/// and what to do; they never contain key material. Callers add the file name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not what it should be (truncated, damaged, wrong kind).
    #[error("{0}")]
    Malformed(String),
    /// The input is well-formed but uses something devtls or the device does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A wrong or missing password for an encrypted key.
    #[error("{0}")]
    Password(String),
    /// A cryptographic operation failed.
    #[error("{0}")]
    Crypto(String),
    /// A private key that does not belong to the certificate it is paired with.
    #[error("{0}")]
    KeyMismatch(String),
    /// Files that would be overwritten.
    #[error("{} already exist{}; pass --force to overwrite", .0.join(", "), if .0.len() == 1 { "s" } else { "" })]
    Exists(Vec<String>),
    /// A file system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

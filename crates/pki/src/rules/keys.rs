//! Key files as the device loads them (`load_cert_chain` calls
//! `mbedtls_pk_parse_key` on the bytes as they are: DER PKCS#8, SEC1 or
//! PKCS#1; no password; PEM only where the build parses it) and which
//! certificate a key goes with.
//!
//! Bytes after an EC key's structure do not stop mbedTLS 3.6.5 loading it;
//! after an RSA key's they do (both measured, docs/device-behaviour.md):
//! the profile's `rejects_key_trailing_bytes` and
//! `rejects_rsa_key_trailing_bytes`.

use serde::Serialize;

use super::certs;
use crate::device_error::verify_text;
use crate::inspect::{self, KeyAlgorithm, KeyInfo};
use crate::profile::Profile;
use crate::sniff::{Item, KeyFormat, Kind, Sniffed};

/// Why the device refuses a key file: `ValueError('invalid key')` in every case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "refusal")]
pub enum KeyRefusal {
    /// The file could not be read at all.
    Unreadable {
        /// The reason.
        reason: String,
    },
    /// Nothing in it is a key the device's parser reads (empty, truncated, damaged).
    Unparseable {
        /// The reason.
        reason: String,
    },
    /// Something other than a private key.
    NotAKey {
        /// What it is.
        holds: &'static str,
    },
    /// PEM text where the device reads DER only.
    Pem,
    /// Encrypted: the device has no password to give.
    Encrypted,
    /// Bytes after the key, on a profile whose stack refuses them.
    TrailingBytes {
        /// How many.
        bytes: usize,
    },
    /// A key type or curve the device's build cannot parse.
    Algorithm {
        /// Why, in words.
        why: String,
    },
}

impl KeyRefusal {
    /// What the script sees.
    pub fn device_says(&self) -> String {
        format!("ValueError: {}", verify_text::INVALID_KEY)
    }

    /// Why, in plain words.
    pub fn why(&self) -> String {
        match self {
            KeyRefusal::Unreadable { reason } => format!("the file cannot be read: {reason}"),
            KeyRefusal::Unparseable { reason } => {
                format!("it does not parse as a private key: {reason}")
            }
            KeyRefusal::NotAKey { holds } => format!("it holds a {holds}, not a private key"),
            KeyRefusal::Pem => "the key is PEM; the device reads DER only".into(),
            KeyRefusal::Encrypted => {
                "the key is encrypted; the device has no password to open it".into()
            }
            KeyRefusal::TrailingBytes { bytes } => {
                format!("{bytes} bytes follow the key structure and this stack refuses them")
            }
            KeyRefusal::Algorithm { why } => why.clone(),
        }
    }

    /// What to do about it.
    pub fn fix(&self, file: &str) -> String {
        match self {
            KeyRefusal::Unreadable { .. } | KeyRefusal::Unparseable { .. } => {
                "replace it with an intact copy of the key made with the certificate (devtls new client|server makes both)".into()
            }
            KeyRefusal::NotAKey { .. } => "give the private key file (e.g. client.key.der)".into(),
            KeyRefusal::Pem | KeyRefusal::Encrypted | KeyRefusal::TrailingBytes { .. } => {
                format!("write it as plain DER: devtls convert {file} --to der")
            }
            KeyRefusal::Algorithm { .. } => "make a new P-256 key (devtls new client|server)".into(),
        }
    }
}

/// A key the device loads.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    /// Its algorithm and size.
    pub key: KeyInfo,
    /// SHA-256 of its public key, to pair it with a certificate.
    pub public_key_sha256: Option<String>,
    /// Bytes after the structure (loaded all the same; not canonical DER).
    pub trailing_bytes: usize,
}

/// Loads the first item of a sniffed key file as the device does.
pub fn load_key(profile: &Profile, sniffed: &Sniffed) -> Result<LoadedKey, KeyRefusal> {
    let Some(item) = sniffed.items.first() else {
        return Err(KeyRefusal::Unparseable {
            reason: "the file is empty".into(),
        });
    };
    load_key_item(profile, item)
}

/// Loads one sniffed item as the device loads a key file.
pub fn load_key_item(profile: &Profile, item: &Item) -> Result<LoadedKey, KeyRefusal> {
    let format = match item.kind {
        Kind::EncryptedPrivateKey | Kind::LegacyEncryptedKey if !profile.loads_encrypted_keys => {
            return Err(KeyRefusal::Encrypted)
        }
        Kind::PrivateKey(f) => f,
        Kind::EncryptedPrivateKey | Kind::LegacyEncryptedKey => KeyFormat::Pkcs8,
        other => {
            return Err(KeyRefusal::NotAKey {
                holds: other.describe(),
            })
        }
    };
    if !super::loads_encoding(profile, item.encoding) {
        return Err(KeyRefusal::Pem);
    }
    let info = inspect::private_key(&item.der, format).map_err(|e| KeyRefusal::Unparseable {
        reason: e.to_string(),
    })?;
    let Some(key) = info.key else {
        return Err(KeyRefusal::Unparseable {
            reason: "no key inside".into(),
        });
    };
    let rsa = matches!(key.algorithm, KeyAlgorithm::Rsa | KeyAlgorithm::RsaPss);
    if item.trailing_bytes > 0
        && (profile.rejects_key_trailing_bytes || rsa && profile.rejects_rsa_key_trailing_bytes)
    {
        return Err(KeyRefusal::TrailingBytes {
            bytes: item.trailing_bytes,
        });
    }
    if let Some(refusal) = certs::key_parse_refusal(profile, &key) {
        return Err(KeyRefusal::Algorithm {
            why: refusal
                .why()
                .replace("it holds", "it is")
                .replace("its key is", "it is"),
        });
    }
    Ok(LoadedKey {
        key,
        public_key_sha256: info.public_key_sha256,
        trailing_bytes: item.trailing_bytes,
    })
}

/// How a key stands with the certificates given beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// It belongs to this certificate.
    Matches(usize),
    /// The certificate meant for it (same file stem) holds another key.
    Mismatch(usize),
    /// No certificate is meant for it and none holds its key.
    Unpaired,
}

/// A certificate offered for pairing: its file stem, its public key hash, and
/// whether it is certainly meant for a key (a leaf; a CA counts only by stem).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The file name up to its first dot (`client` for `client.der`).
    pub stem: &'a str,
    /// SHA-256 of its public key.
    pub public_key_sha256: &'a str,
    /// A CA certificate: paired by stem only (`ca.key` with `ca.der`).
    pub is_ca: bool,
}

/// Pairs a key with its certificate: by the same file stem first
/// (`client.key.der` with `client.der`, `ca.key` with `ca.der`), then by
/// public key among the end-entity certificates.
pub fn pair(key_stem: &str, key_spki: Option<&str>, certs: &[Candidate<'_>]) -> Pairing {
    if let Some(i) = certs.iter().position(|c| c.stem == key_stem) {
        return match key_spki {
            Some(spki) if spki != certs[i].public_key_sha256 => Pairing::Mismatch(i),
            _ => Pairing::Matches(i),
        };
    }
    match key_spki.and_then(|spki| certs.iter().position(|c| c.public_key_sha256 == spki)) {
        Some(i) => Pairing::Matches(i),
        None => Pairing::Unpaired,
    }
}

/// The file name up to its first dot: `server` for `certs/server.key.der`.
pub fn stem(file: &str) -> &str {
    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    name.split('.').next().unwrap_or(name)
}

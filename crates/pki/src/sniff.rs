//! Format sniffing: any PEM or DER file in, typed items out.
//!
//! This is the one parser entry point behind inspect, convert, split, lint,
//! `anchor --chain` and `fleet issue --csr`. It classifies structurally (it
//! does not need to support a key's algorithm to say it is a key) so that an
//! Ed25519 or secp256k1 key is reported as what it is, not as garbage.

use serde::Serialize;
use x509_parser::prelude::FromDer;

use crate::{der, Error};

/// How an item was encoded in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Base64 text between `-----BEGIN ...-----` lines.
    Pem,
    /// Binary DER.
    Der,
}

/// The structure a private key is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyFormat {
    /// PKCS#8 PrivateKeyInfo (`BEGIN PRIVATE KEY`): any algorithm.
    Pkcs8,
    /// SEC1 ECPrivateKey (`BEGIN EC PRIVATE KEY`).
    Sec1,
    /// PKCS#1 RSAPrivateKey (`BEGIN RSA PRIVATE KEY`).
    Pkcs1,
}

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An X.509 certificate.
    Certificate,
    /// An unencrypted private key.
    PrivateKey(KeyFormat),
    /// A PKCS#8 EncryptedPrivateKeyInfo: needs a password.
    EncryptedPrivateKey,
    /// An OpenSSL legacy PEM key with `Proc-Type: 4,ENCRYPTED`: needs re-encoding.
    LegacyEncryptedKey,
    /// A PKCS#10 certificate signing request.
    Csr,
    /// A certificate revocation list.
    Crl,
    /// A bare SubjectPublicKeyInfo.
    PublicKey,
}

impl Kind {
    /// A short human name, e.g. `certificate` or `private key (SEC1)`.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Certificate => "certificate",
            Kind::PrivateKey(KeyFormat::Pkcs8) => "private key (PKCS#8)",
            Kind::PrivateKey(KeyFormat::Sec1) => "private key (SEC1 EC)",
            Kind::PrivateKey(KeyFormat::Pkcs1) => "private key (PKCS#1 RSA)",
            Kind::EncryptedPrivateKey => "encrypted private key (PKCS#8)",
            Kind::LegacyEncryptedKey => "encrypted private key (legacy PEM)",
            Kind::Csr => "certificate signing request",
            Kind::Crl => "certificate revocation list",
            Kind::PublicKey => "public key",
        }
    }

    /// Whether this item is secret (a private key, encrypted or not).
    pub fn is_secret(&self) -> bool {
        matches!(
            self,
            Kind::PrivateKey(_) | Kind::EncryptedPrivateKey | Kind::LegacyEncryptedKey
        )
    }

    /// The PEM label this kind is written under.
    pub fn pem_label(&self) -> &'static str {
        match self {
            Kind::Certificate => "CERTIFICATE",
            Kind::PrivateKey(KeyFormat::Pkcs8) => "PRIVATE KEY",
            Kind::PrivateKey(KeyFormat::Sec1) => "EC PRIVATE KEY",
            Kind::PrivateKey(KeyFormat::Pkcs1) | Kind::LegacyEncryptedKey => "RSA PRIVATE KEY",
            Kind::EncryptedPrivateKey => "ENCRYPTED PRIVATE KEY",
            Kind::Csr => "CERTIFICATE REQUEST",
            Kind::Crl => "X509 CRL",
            Kind::PublicKey => "PUBLIC KEY",
        }
    }
}

/// One structure found in a file.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// What it is.
    pub kind: Kind,
    /// How it was encoded.
    pub encoding: Encoding,
    /// The DER bytes of the structure itself (for a legacy encrypted key: the still-encrypted body).
    #[serde(skip)]
    pub der: Vec<u8>,
    /// Bytes after the structure inside the same DER blob or PEM block (mbedTLS refuses these in keys).
    pub trailing_bytes: usize,
}

/// Everything found in one file.
#[derive(Debug, Clone, Serialize)]
pub struct Sniffed {
    /// The items, in file order.
    pub items: Vec<Item>,
    /// The file was several DER structures back to back (the device loads only the first).
    pub concatenated_der: bool,
    /// PEM blocks skipped because they carry nothing devtls uses (e.g. `EC PARAMETERS`).
    pub skipped_blocks: Vec<String>,
}

impl Sniffed {
    /// The items of one kind.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.kind == kind)
    }

    /// The certificates, in file order.
    pub fn certificates(&self) -> impl Iterator<Item = &Item> {
        self.of_kind(Kind::Certificate)
    }
}

/// Reads any PEM or DER file devtls understands.
///
/// Errors say what was found and what would have been usable; they never
/// include key material.
pub fn sniff(bytes: &[u8]) -> Result<Sniffed, Error> {
    if bytes.is_empty() {
        return Err(Error::Malformed("the file is empty".into()));
    }
    if looks_like_pem(bytes) {
        sniff_pem(bytes)
    } else {
        sniff_der(bytes)
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn sniff_pem(bytes: &[u8]) -> Result<Sniffed, Error> {
    let blocks = pem::parse_many(bytes).map_err(|e| {
        Error::Malformed(format!(
            "PEM text that does not decode ({e}); the file may be truncated or edited"
        ))
    })?;
    if blocks.is_empty() {
        return Err(Error::Malformed(
            "a BEGIN line but no complete PEM block; the file is truncated".into(),
        ));
    }
    let mut items = Vec::new();
    let mut skipped_blocks = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let label = block.tag();
        let legacy_encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
        let expected = match label {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => Some(Kind::Certificate),
            "PRIVATE KEY" => Some(Kind::PrivateKey(KeyFormat::Pkcs8)),
            "EC PRIVATE KEY" | "RSA PRIVATE KEY" if legacy_encrypted => {
                Some(Kind::LegacyEncryptedKey)
            }
            "EC PRIVATE KEY" => Some(Kind::PrivateKey(KeyFormat::Sec1)),
            "RSA PRIVATE KEY" => Some(Kind::PrivateKey(KeyFormat::Pkcs1)),
            "ENCRYPTED PRIVATE KEY" => Some(Kind::EncryptedPrivateKey),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Some(Kind::Csr),
            "X509 CRL" => Some(Kind::Crl),
            "PUBLIC KEY" => Some(Kind::PublicKey),
            _ => None,
        };
        let Some(expected) = expected else {
            skipped_blocks.push(label.to_string());
            continue;
        };
        let contents = block.contents();
        if expected == Kind::LegacyEncryptedKey {
            items.push(Item {
                kind: expected,
                encoding: Encoding::Pem,
                der: contents.to_vec(),
                trailing_bytes: 0,
            });
            continue;
        }
        let element = der::first_element(contents).ok_or_else(|| {
            Error::Malformed(format!(
                "PEM block {} ({label}) does not hold a complete DER structure; the file is truncated or damaged",
                index + 1
            ))
        })?;
        let found = classify(element);
        // A TRUSTED CERTIFICATE carries OpenSSL trust settings after the certificate.
        let trailing = if label == "TRUSTED CERTIFICATE" {
            0
        } else {
            contents.len() - element.len()
        };
        match found {
            Some(kind) if kind == expected || label == "PRIVATE KEY" && kind.is_secret() => items
                .push(Item {
                    kind,
                    encoding: Encoding::Pem,
                    der: element.to_vec(),
                    trailing_bytes: trailing,
                }),
            Some(kind) => {
                return Err(Error::Malformed(format!(
                    "PEM block {} is labelled {label} but holds a {}",
                    index + 1,
                    kind.describe()
                )))
            }
            None => {
                return Err(Error::Malformed(format!(
                    "PEM block {} ({label}) does not parse as a {}; the file is damaged",
                    index + 1,
                    expected.describe()
                )))
            }
        }
    }
    if items.is_empty() {
        return Err(Error::Malformed(format!(
            "PEM with no certificate, key, CSR or CRL in it (only {})",
            skipped_blocks.join(", ")
        )));
    }
    Ok(Sniffed {
        items,
        concatenated_der: false,
        skipped_blocks,
    })
}

fn sniff_der(bytes: &[u8]) -> Result<Sniffed, Error> {
    let (elements, rest) = der::split_concatenated(bytes);
    let Some(first) = elements.first() else {
        return Err(Error::Malformed(
            "neither PEM text nor a complete DER structure (random, truncated or another format)"
                .into(),
        ));
    };
    let first_kind = classify(first).ok_or_else(|| {
        Error::Malformed("DER that is not a certificate, key, CSR, CRL or public key".into())
    })?;
    // Only certificates are meaningfully concatenated; anything else after a
    // key or CSR is trailing bytes (mbedTLS refuses those in keys).
    let mut items = vec![Item {
        kind: first_kind,
        encoding: Encoding::Der,
        der: first.to_vec(),
        trailing_bytes: bytes.len() - first.len(),
    }];
    if first_kind == Kind::Certificate && elements.len() > 1 {
        let all_certs = elements[1..]
            .iter()
            .all(|e| classify(e) == Some(Kind::Certificate));
        if all_certs {
            items[0].trailing_bytes = 0;
            for element in &elements[1..] {
                items.push(Item {
                    kind: Kind::Certificate,
                    encoding: Encoding::Der,
                    der: element.to_vec(),
                    trailing_bytes: 0,
                });
            }
            if let Some(last) = items.last_mut() {
                last.trailing_bytes = rest.len();
            }
        }
    }
    let concatenated_der = items.len() > 1;
    Ok(Sniffed {
        items,
        concatenated_der,
        skipped_blocks: Vec::new(),
    })
}

/// Says what one DER element is, or `None` if it is none of the kinds devtls reads.
pub fn classify(element: &[u8]) -> Option<Kind> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::{CertificateRevocationList, SubjectPublicKeyInfo, X509Certificate};

    if X509Certificate::from_der(element).is_ok() {
        return Some(Kind::Certificate);
    }
    if CertificateRevocationList::from_der(element).is_ok() {
        return Some(Kind::Crl);
    }
    if X509CertificationRequest::from_der(element).is_ok() {
        return Some(Kind::Csr);
    }
    if pkcs8::PrivateKeyInfoRef::try_from(element).is_ok() {
        return Some(Kind::PrivateKey(KeyFormat::Pkcs8));
    }
    if pkcs8::EncryptedPrivateKeyInfoRef::try_from(element).is_ok() {
        return Some(Kind::EncryptedPrivateKey);
    }
    if SubjectPublicKeyInfo::from_der(element).is_ok() {
        return Some(Kind::PublicKey);
    }
    match integer_sequence_shape(element) {
        Some((1, _)) => Some(Kind::PrivateKey(KeyFormat::Sec1)),
        Some((0, 9..)) => Some(Kind::PrivateKey(KeyFormat::Pkcs1)),
        _ => None,
    }
}

/// For a SEQUENCE starting with a small INTEGER version: the version and how
/// many elements the sequence holds. SEC1 is `{1, OCTET STRING, ...}`, PKCS#1
/// is `{0, n, e, d, p, q, dp, dq, qinv}`.
fn integer_sequence_shape(element: &[u8]) -> Option<(u8, usize)> {
    let (_, seq) = x509_parser::der_parser::der::parse_der_sequence(element).ok()?;
    let children = seq.as_sequence().ok()?;
    let version = children.first()?.as_u32().ok()?;
    let version = u8::try_from(version).ok()?;
    if version == 1 && children.get(1)?.as_slice().is_err() {
        return None;
    }
    Some((version, children.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyType, PrivateKey};

    #[test]
    fn empty_random_and_truncated_input_are_errors() {
        assert!(sniff(b"").is_err());
        assert!(sniff(b"hello world, not a certificate").is_err());
        assert!(sniff(b"-----BEGIN CERTIFICATE-----\nMIIB").is_err());
        let key = PrivateKey::generate(KeyType::P256).unwrap().pkcs8_der();
        assert!(sniff(&key[..key.len() / 2]).is_err());
    }

    #[test]
    fn keys_are_found_in_pem_and_der_with_trailing_bytes_counted() {
        let key = PrivateKey::generate(KeyType::P384).unwrap();
        let pem = sniff(key.pkcs8_pem().as_bytes()).unwrap();
        assert_eq!(pem.items[0].kind, Kind::PrivateKey(KeyFormat::Pkcs8));
        assert_eq!(pem.items[0].encoding, Encoding::Pem);
        let mut der = key.pkcs8_der();
        der.extend([0, 0]);
        let sniffed = sniff(&der).unwrap();
        assert_eq!(sniffed.items[0].trailing_bytes, 2);
        assert_eq!(sniffed.items[0].der, key.pkcs8_der());
    }
}

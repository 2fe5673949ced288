//! Inspection: a plain, serialisable model of what each item in a file holds.
//!
//! `devtls inspect` prints it, `lint` judges it against a device profile and
//! `doctor` explains a server's chain with it, so it records facts only, never
//! verdicts: "RSA 1024 bits", not "too weak". Everything here is pure and
//! never panics on hostile input: an item that sniffed fine but does not parse
//! deeper becomes [`Details::Unreadable`] with the reason.
//!
//! The model is this module; reading into it is split by what is read:
//! `cert` (certificates, CSRs and CRLs), `key` (private and public keys),
//! `signature` (whether a key signed a certificate, CSR or CRL: the one
//! signature check of the product) and `der` (the few DER pieces
//! x509-parser does not give).

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use crate::profile::{Curve, Hash};
use crate::sniff::{Encoding, Item, KeyFormat, Kind, Sniffed};

mod cert;
mod der;
mod key;
mod signature;
#[cfg(test)]
mod tests;

pub use cert::{certificate, crl, csr};
use key::encryption_scheme;
pub use key::{key_info_from_spki, private_key};
pub use signature::{signature_checks, signature_verifies, signs};

/// One item of a file, inspected.
#[derive(Debug, Clone, Serialize)]
pub struct Inspected {
    /// Position in the file, from 1.
    pub index: usize,
    /// What it is.
    pub kind: Kind,
    /// A human name for the kind, e.g. `private key (SEC1 EC)`.
    pub kind_name: &'static str,
    /// PEM or DER in the file.
    pub encoding: Encoding,
    /// Size of the DER structure in bytes (what the device would load).
    pub der_size: usize,
    /// Bytes after the structure in the same DER blob or PEM block.
    pub trailing_bytes: usize,
    /// The kind-specific facts.
    pub details: Details,
}

/// The kind-specific part of an [`Inspected`] item.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Details {
    /// An X.509 certificate.
    Certificate(Box<CertInfo>),
    /// A private key, plain or encrypted.
    PrivateKey(PrivateKeyInfo),
    /// A certificate signing request.
    Csr(CsrInfo),
    /// A certificate revocation list.
    Crl(CrlInfo),
    /// A bare public key.
    PublicKey(KeyInfo),
    /// The item was recognised by its framing but does not parse further.
    Unreadable {
        /// Why it could not be read.
        reason: String,
    },
}

/// The public-key algorithm family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAlgorithm {
    /// ECDSA/ECDH on a named curve (id-ecPublicKey).
    Ec,
    /// RSA (rsaEncryption).
    Rsa,
    /// RSA restricted to PSS signatures (id-RSASSA-PSS): mbedTLS in the device rejects it.
    RsaPss,
    /// Ed25519.
    Ed25519,
    /// Ed448.
    Ed448,
    /// X25519 (key agreement only).
    X25519,
    /// X448 (key agreement only).
    X448,
    /// DSA.
    Dsa,
    /// Anything else: see [`KeyInfo::oid`].
    Other,
}

/// A public key's algorithm and size: for certificates, CSRs, bare public
/// keys and (derived) private keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The algorithm family.
    pub algorithm: KeyAlgorithm,
    /// The named curve, when it is one devtls knows (EC keys only).
    pub curve: Option<Curve>,
    /// The curve's OID in dotted form (EC keys only), also for curves not in [`Curve`].
    pub curve_oid: Option<String>,
    /// Key size in bits (RSA modulus length, curve size), when meaningful.
    pub bits: Option<u32>,
    /// The algorithm OID in dotted form.
    pub oid: String,
    /// A short human description, e.g. `ECDSA P-256` or `RSA 2048`.
    pub description: String,
}

/// The hash inside a signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashAlgorithm {
    /// MD5 (broken).
    Md5,
    /// SHA-1 (broken for signatures).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// The profile's name for this hash, if device profiles list it at all
    /// (MD5 and SHA-224 are in no profile: treat `None` as not accepted).
    pub fn profile_hash(self) -> Option<Hash> {
        match self {
            HashAlgorithm::Sha1 => Some(Hash::Sha1),
            HashAlgorithm::Sha256 => Some(Hash::Sha256),
            HashAlgorithm::Sha384 => Some(Hash::Sha384),
            HashAlgorithm::Sha512 => Some(Hash::Sha512),
            HashAlgorithm::Md5 | HashAlgorithm::Sha224 => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Md5 => "MD5",
            HashAlgorithm::Sha1 => "SHA-1",
            HashAlgorithm::Sha224 => "SHA-224",
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha384 => "SHA-384",
            HashAlgorithm::Sha512 => "SHA-512",
        }
    }

    fn from_oid(oid: &str) -> Option<Self> {
        Some(match oid {
            "1.2.840.113549.2.5" => HashAlgorithm::Md5,
            "1.3.14.3.2.26" => HashAlgorithm::Sha1,
            "2.16.840.1.101.3.4.2.4" => HashAlgorithm::Sha224,
            "2.16.840.1.101.3.4.2.1" => HashAlgorithm::Sha256,
            "2.16.840.1.101.3.4.2.2" => HashAlgorithm::Sha384,
            "2.16.840.1.101.3.4.2.3" => HashAlgorithm::Sha512,
            _ => return None,
        })
    }
}

/// The signature family of a signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureFamily {
    /// ECDSA.
    Ecdsa,
    /// RSA PKCS#1 v1.5.
    RsaPkcs1,
    /// RSA-PSS.
    RsaPss,
    /// Ed25519.
    Ed25519,
    /// Ed448.
    Ed448,
    /// DSA.
    Dsa,
    /// Anything else: see [`SignatureInfo::oid`].
    Other,
}

/// How a certificate, CSR or CRL is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureInfo {
    /// The family.
    pub family: SignatureFamily,
    /// The hash, when the algorithm names one (none for Ed25519).
    pub hash: Option<HashAlgorithm>,
    /// Whether it is RSA-PSS (rejected by the device anywhere in a chain).
    pub pss: bool,
    /// The algorithm OID in dotted form.
    pub oid: String,
    /// The conventional name, e.g. `ecdsa-with-SHA256` or `sha256WithRSAEncryption`.
    pub name: String,
}

/// Subject alternative names, split the way hostname checks use them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sans {
    /// dNSName entries.
    pub dns: Vec<String>,
    /// iPAddress entries, printed as addresses.
    pub ip: Vec<String>,
    /// Everything else (e-mail, URI, ...), as `type:value`.
    pub other: Vec<String>,
}

impl Sans {
    /// Whether there are no names at all.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ip.is_empty() && self.other.is_empty()
    }
}

/// Where an instant falls relative to a validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidityStatus {
    /// Before notBefore ("validity starts in the future" on the device).
    NotYetValid,
    /// Inside the window.
    Valid,
    /// After notAfter ("validity has expired" on the device).
    Expired,
}

/// A validity window seen from one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validity {
    /// Start of validity.
    #[serde(serialize_with = "rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(serialize_with = "rfc3339")]
    pub not_after: OffsetDateTime,
    /// The instant the following fields are relative to.
    #[serde(serialize_with = "rfc3339")]
    pub at: OffsetDateTime,
    /// Where `at` falls.
    pub status: ValidityStatus,
    /// Whole days from `at` to notAfter (negative once expired).
    pub days_left: i64,
    /// Whole days since notAfter, when expired.
    pub days_since_expiry: Option<i64>,
    /// Whole days until notBefore, when not yet valid.
    pub days_until_valid: Option<i64>,
    /// Length of the window in whole days (CA/Browser Forum limits are on this).
    pub lifetime_days: i64,
}

impl Validity {
    /// The window `not_before..=not_after` seen from `at`.
    pub fn new(not_before: OffsetDateTime, not_after: OffsetDateTime, at: OffsetDateTime) -> Self {
        let status = if at < not_before {
            ValidityStatus::NotYetValid
        } else if at > not_after {
            ValidityStatus::Expired
        } else {
            ValidityStatus::Valid
        };
        Validity {
            not_before,
            not_after,
            at,
            status,
            days_left: (not_after - at).whole_days(),
            days_since_expiry: (status == ValidityStatus::Expired)
                .then(|| (at - not_after).whole_days()),
            days_until_valid: (status == ValidityStatus::NotYetValid)
                .then(|| (not_before - at).whole_days()),
            lifetime_days: (not_after - not_before).whole_days(),
        }
    }
}

/// The basicConstraints extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasicConstraints {
    /// cA: may sign certificates.
    pub ca: bool,
    /// pathLenConstraint.
    pub path_len: Option<u32>,
    /// Marked critical.
    pub critical: bool,
}

/// The keyUsage extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    /// The usages set, in RFC 5280 spelling (`digitalSignature`, `keyCertSign`, ...).
    pub usages: Vec<String>,
    /// Marked critical.
    pub critical: bool,
}

impl KeyUsage {
    /// Whether a usage (RFC 5280 spelling) is set.
    pub fn has(&self, usage: &str) -> bool {
        self.usages.iter().any(|u| u == usage)
    }
}

/// The extendedKeyUsage extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtendedKeyUsage {
    /// id-kp-serverAuth.
    pub server_auth: bool,
    /// id-kp-clientAuth.
    pub client_auth: bool,
    /// anyExtendedKeyUsage.
    pub any: bool,
    /// Other purposes, by name when known (`codeSigning`, ...) else dotted OID.
    pub other: Vec<String>,
    /// Marked critical.
    pub critical: bool,
}

/// The certificatePolicies extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policies {
    /// Policy OIDs in dotted form.
    pub oids: Vec<String>,
    /// The only policy is anyPolicy (2.5.29.32.0): the device tolerates this one critical.
    pub only_any_policy: bool,
    /// Marked critical (the device rejects it unless only anyPolicy).
    pub critical: bool,
}

/// An extension present only to say whether it is critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Present {
    /// Marked critical.
    pub critical: bool,
}

/// Everything devtls reads from a certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. `CN=openmv`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// The subject's common name(s), first one first.
    pub common_names: Vec<String>,
    /// Serial number as upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// X.509 version as people count it (1, 2 or 3).
    pub version: u32,
    /// subjectAltName entries.
    pub sans: Sans,
    /// Validity window relative to the instant given to [`inspect`].
    pub validity: Validity,
    /// The subject public key.
    pub public_key: KeyInfo,
    /// SHA-256 of the SubjectPublicKeyInfo (hex): matches [`PrivateKeyInfo::public_key_sha256`].
    pub public_key_sha256: String,
    /// How the issuer signed it.
    pub signature: SignatureInfo,
    /// basicConstraints, when present.
    pub basic_constraints: Option<BasicConstraints>,
    /// keyUsage, when present.
    pub key_usage: Option<KeyUsage>,
    /// extendedKeyUsage, when present.
    pub extended_key_usage: Option<ExtendedKeyUsage>,
    /// nameConstraints, when present (critical ones are rejected by the device).
    pub name_constraints: Option<Present>,
    /// certificatePolicies, when present.
    pub policies: Option<Policies>,
    /// Subject and issuer names are equal.
    pub self_issued: bool,
    /// Self-issued and the signature verifies with its own key: a root or a self-signed leaf.
    /// (False when the algorithm cannot be verified, e.g. RSA-PSS with a non-digest salt length.)
    pub self_signed: bool,
    /// SHA-256 fingerprint of the DER, in `openssl x509 -fingerprint -sha256` colon form.
    pub sha256: String,
    /// Size of the DER certificate in bytes.
    pub der_size: usize,
    /// Oddities met while reading extensions (duplicates, undecodable values).
    pub problems: Vec<String>,
}

impl CertInfo {
    /// Whether this certificate may sign others (basicConstraints cA).
    pub fn is_ca(&self) -> bool {
        self.basic_constraints.as_ref().is_some_and(|b| b.ca)
    }

    /// The first common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.common_names.first().map(String::as_str)
    }
}

/// Everything devtls reads from a private key, without revealing it.
#[derive(Debug, Clone, Serialize)]
pub struct PrivateKeyInfo {
    /// The structure it is stored in (`None` for a legacy encrypted PEM key of unknown inner format).
    pub format: Option<KeyFormat>,
    /// Whether it is encrypted (the device cannot load encrypted keys).
    pub encrypted: bool,
    /// How it is encrypted, e.g. `PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)`.
    pub encryption: Option<String>,
    /// The key's algorithm and size; `None` while encrypted.
    pub key: Option<KeyInfo>,
    /// Bytes after the key structure (mbedTLS >= 3.5 refuses such a key).
    pub trailing_bytes: usize,
    /// The matching SubjectPublicKeyInfo DER, when it can be derived (to match a certificate).
    #[serde(skip)]
    pub public_key_der: Option<Vec<u8>>,
    /// SHA-256 of that SubjectPublicKeyInfo (hex), as in [`CertInfo::public_key_sha256`].
    pub public_key_sha256: Option<String>,
}

/// Everything devtls reads from a certificate signing request.
#[derive(Debug, Clone, Serialize)]
pub struct CsrInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// The subject's common name(s).
    pub common_names: Vec<String>,
    /// subjectAltName entries requested.
    pub sans: Sans,
    /// The public key to be certified.
    pub public_key: KeyInfo,
    /// SHA-256 of the SubjectPublicKeyInfo (hex).
    pub public_key_sha256: String,
    /// The signature algorithm.
    pub signature: SignatureInfo,
    /// Whether the self-signature verifies (proof the requester holds the key).
    pub signature_valid: bool,
    /// Size of the DER in bytes.
    pub der_size: usize,
}

/// One revoked certificate in a CRL.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// Serial number, upper-case hex.
    pub serial: String,
    /// When it was revoked.
    #[serde(serialize_with = "rfc3339")]
    pub date: OffsetDateTime,
}

/// Everything devtls reads from a CRL.
#[derive(Debug, Clone, Serialize)]
pub struct CrlInfo {
    /// Issuer distinguished name.
    pub issuer: String,
    /// thisUpdate.
    #[serde(serialize_with = "rfc3339")]
    pub this_update: OffsetDateTime,
    /// nextUpdate, when present.
    #[serde(serialize_with = "rfc3339_opt")]
    pub next_update: Option<OffsetDateTime>,
    /// Whether nextUpdate is before the inspection instant (the CRL is stale).
    pub stale: bool,
    /// The cRLNumber extension, as decimal.
    pub crl_number: Option<String>,
    /// The revoked certificates.
    pub revoked: Vec<Revoked>,
    /// The signature algorithm.
    pub signature: SignatureInfo,
    /// Size of the DER in bytes.
    pub der_size: usize,
}

fn rfc3339<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

fn rfc3339_opt<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}

/// An instant as RFC 3339 UTC (`2026-11-22T03:10:55Z`), the form JSON output uses.
pub fn format_time(t: OffsetDateTime) -> String {
    // Hostile certificates can carry dates at the edge of the range: never panic on them.
    t.checked_to_offset(time::UtcOffset::UTC)
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Inspects every item of a sniffed file, with validity seen from `at`.
pub fn inspect(sniffed: &Sniffed, at: OffsetDateTime) -> Vec<Inspected> {
    sniffed
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| inspect_item(i + 1, item, at))
        .collect()
}

/// Inspects one item; `index` is its position in the file (from 1).
pub fn inspect_item(index: usize, item: &Item, at: OffsetDateTime) -> Inspected {
    let details = match item.kind {
        Kind::Certificate => certificate(&item.der, at).map(|c| Details::Certificate(Box::new(c))),
        Kind::PrivateKey(format) => private_key(&item.der, format).map(|mut k| {
            k.trailing_bytes = item.trailing_bytes;
            Details::PrivateKey(k)
        }),
        Kind::EncryptedPrivateKey => Ok(Details::PrivateKey(PrivateKeyInfo {
            format: Some(KeyFormat::Pkcs8),
            encrypted: true,
            encryption: Some(encryption_scheme(&item.der)),
            key: None,
            trailing_bytes: item.trailing_bytes,
            public_key_der: None,
            public_key_sha256: None,
        })),
        Kind::LegacyEncryptedKey => Ok(Details::PrivateKey(PrivateKeyInfo {
            format: None,
            encrypted: true,
            encryption: Some("legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED)".into()),
            key: None,
            trailing_bytes: 0,
            public_key_der: None,
            public_key_sha256: None,
        })),
        Kind::Csr => csr(&item.der).map(Details::Csr),
        Kind::Crl => crl(&item.der, at).map(Details::Crl),
        Kind::PublicKey => key_info_from_spki(&item.der).map(Details::PublicKey),
    };
    Inspected {
        index,
        kind: item.kind,
        kind_name: item.kind.describe(),
        encoding: item.encoding,
        der_size: item.der.len(),
        trailing_bytes: item.trailing_bytes,
        details: details.unwrap_or_else(|e| Details::Unreadable {
            reason: e.to_string(),
        }),
    }
}

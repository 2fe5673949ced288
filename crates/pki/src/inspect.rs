//! Inspection: a plain, serialisable model of what each item in a file holds.
//!
//! `devtls inspect` prints it, `lint` judges it against a device profile and
//! `doctor` explains a server's chain with it, so it records facts only, never
//! verdicts: "RSA 1024 bits", not "too weak". Everything here is pure and
//! never panics on hostile input: an item that sniffed fine but does not parse
//! deeper becomes [`Details::Unreadable`] with the reason.

use std::net::IpAddr;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{CertificateRevocationList, FromDer, SubjectPublicKeyInfo};
use x509_parser::x509::{AlgorithmIdentifier, X509Name};

use crate::fingerprint;
use crate::profile::{Curve, Hash};
use crate::sniff::{Encoding, Item, KeyFormat, Kind, Sniffed};
use crate::Error;

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

/// Reads a DER certificate, with validity seen from `at`.
pub fn certificate(der: &[u8], at: OffsetDateTime) -> Result<CertInfo, Error> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::Malformed(format!("not a readable certificate ({e})")))?;
    let mut problems = Vec::new();
    let spki = cert.public_key();
    let public_key = key_info(spki);
    let signature = signature_info(&cert.signature_algorithm);

    let basic_constraints = match cert.basic_constraints() {
        Ok(b) => b.map(|b| BasicConstraints {
            ca: b.value.ca,
            path_len: b.value.path_len_constraint,
            critical: b.critical,
        }),
        Err(e) => {
            problems.push(format!("basicConstraints: {e}"));
            None
        }
    };
    let key_usage = match cert.key_usage() {
        Ok(k) => k.map(|k| KeyUsage {
            usages: key_usage_names(k.value.flags),
            critical: k.critical,
        }),
        Err(e) => {
            problems.push(format!("keyUsage: {e}"));
            None
        }
    };
    let extended_key_usage = match cert.extended_key_usage() {
        Ok(k) => k.map(|k| {
            let v = k.value;
            let mut other: Vec<String> = Vec::new();
            for (set, name) in [
                (v.code_signing, "codeSigning"),
                (v.email_protection, "emailProtection"),
                (v.time_stamping, "timeStamping"),
                (v.ocsp_signing, "OCSPSigning"),
            ] {
                if set {
                    other.push(name.into());
                }
            }
            other.extend(v.other.iter().map(|o| o.to_id_string()));
            ExtendedKeyUsage {
                server_auth: v.server_auth,
                client_auth: v.client_auth,
                any: v.any,
                other,
                critical: k.critical,
            }
        }),
        Err(e) => {
            problems.push(format!("extendedKeyUsage: {e}"));
            None
        }
    };
    let sans = match cert.subject_alternative_name() {
        Ok(Some(s)) => sans_of(&s.value.general_names),
        Ok(None) => Sans::default(),
        Err(e) => {
            problems.push(format!("subjectAltName: {e}"));
            Sans::default()
        }
    };
    let mut name_constraints = None;
    let mut policies = None;
    for ext in cert.extensions() {
        match ext.oid.to_id_string().as_str() {
            "2.5.29.30" => {
                name_constraints = Some(Present {
                    critical: ext.critical,
                })
            }
            "2.5.29.32" => {
                let oids: Vec<String> = match ext.parsed_extension() {
                    ParsedExtension::CertificatePolicies(p) => {
                        p.iter().map(|p| p.policy_id.to_id_string()).collect()
                    }
                    _ => {
                        problems.push("certificatePolicies: undecodable value".into());
                        Vec::new()
                    }
                };
                policies = Some(Policies {
                    only_any_policy: !oids.is_empty() && oids.iter().all(|o| o == "2.5.29.32.0"),
                    oids,
                    critical: ext.critical,
                })
            }
            _ => {}
        }
        if let Some(err) = ext.parsed_extension().error() {
            problems.push(format!("extension {}: {err}", ext.oid.to_id_string()));
        }
    }

    let self_issued = cert.subject().as_raw() == cert.issuer().as_raw();
    let self_signed = self_issued && cert_signed_by(&cert, cert.public_key());
    let validity = Validity::new(
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
        at,
    );
    Ok(CertInfo {
        subject: name_string(cert.subject()),
        issuer: name_string(cert.issuer()),
        common_names: common_names(cert.subject()),
        serial: hex::encode_upper(strip_sign_byte(cert.raw_serial())),
        version: cert.version().0.saturating_add(1),
        sans,
        validity,
        public_key,
        public_key_sha256: fingerprint::sha256_hex(spki.raw),
        signature,
        basic_constraints,
        key_usage,
        extended_key_usage,
        name_constraints,
        policies,
        self_issued,
        self_signed,
        sha256: fingerprint::sha256_colon(der),
        der_size: der.len(),
        problems,
    })
}

/// Reads a DER CSR.
pub fn csr(der: &[u8]) -> Result<CsrInfo, Error> {
    let (_, req) = X509CertificationRequest::from_der(der).map_err(|e| {
        Error::Malformed(format!("not a readable certificate signing request ({e})"))
    })?;
    let info = &req.certification_request_info;
    let mut sans = Sans::default();
    if let Some(exts) = req.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(s) = ext {
                sans = sans_of(&s.general_names);
            }
        }
    }
    Ok(CsrInfo {
        subject: name_string(&info.subject),
        common_names: common_names(&info.subject),
        sans,
        public_key: key_info(&info.subject_pki),
        public_key_sha256: fingerprint::sha256_hex(info.subject_pki.raw),
        signature: signature_info(&req.signature_algorithm),
        signature_valid: signature_verifies(
            &info.subject_pki,
            &req.signature_algorithm,
            &req.signature_value.data,
            info.raw,
        ),
        der_size: der.len(),
    })
}

/// Reads a DER CRL; `stale` is judged at `at`.
pub fn crl(der: &[u8], at: OffsetDateTime) -> Result<CrlInfo, Error> {
    let (_, list) = CertificateRevocationList::from_der(der)
        .map_err(|e| Error::Malformed(format!("not a readable revocation list ({e})")))?;
    let next_update = list.next_update().map(|t| t.to_datetime());
    Ok(CrlInfo {
        issuer: name_string(list.issuer()),
        this_update: list.last_update().to_datetime(),
        next_update,
        stale: next_update.is_some_and(|n| n < at),
        crl_number: list.crl_number().map(|n| n.to_string()),
        revoked: list
            .iter_revoked_certificates()
            .map(|r| Revoked {
                serial: hex::encode_upper(strip_sign_byte(r.raw_serial())),
                date: r.revocation_date.to_datetime(),
            })
            .collect(),
        signature: signature_info(&list.signature_algorithm),
        der_size: der.len(),
    })
}

/// Whether `issuer_der` signed `subject_der`: the names chain and the
/// signature verifies with the issuer's key. False for anything unreadable.
pub fn signs(issuer_der: &[u8], subject_der: &[u8]) -> bool {
    let (Ok((_, issuer)), Ok((_, subject))) = (
        X509Certificate::from_der(issuer_der),
        X509Certificate::from_der(subject_der),
    ) else {
        return false;
    };
    subject.issuer().as_raw() == issuer.subject().as_raw()
        && cert_signed_by(&subject, issuer.public_key())
}

/// Whether the key of `issuer_der` made the signature on `subject_der`,
/// names aside (`None` when either does not parse). Covers the algorithms
/// [`signs`] does.
pub fn signature_checks(subject_der: &[u8], issuer_der: &[u8]) -> Option<bool> {
    let (_, subject) = X509Certificate::from_der(subject_der).ok()?;
    let (_, issuer) = X509Certificate::from_der(issuer_der).ok()?;
    Some(cert_signed_by(&subject, issuer.public_key()))
}

fn cert_signed_by(cert: &X509Certificate, key: &SubjectPublicKeyInfo) -> bool {
    signature_verifies(
        key,
        &cert.signature_algorithm,
        &cert.signature_value.data,
        cert.tbs_certificate.as_ref(),
    )
}

/// Whether `sig` over `data` was made by `key` with `alg`: devtls's one
/// signature check (certificates, CSRs, CRLs), with aws-lc-rs. It covers
/// more than x509-parser's own verifier (P-521, SHA-512 ECDSA, secp256k1,
/// RSA-1024 and SHA-1), because "self-signed" and "signed by" must hold for
/// exactly the weak or unusual certificates lint and split have to talk
/// about; what a key may be is the profile's rules, not this check's.
pub fn signature_verifies(
    key: &SubjectPublicKeyInfo,
    alg: &AlgorithmIdentifier,
    sig: &[u8],
    data: &[u8],
) -> bool {
    use aws_lc_rs::signature as s;
    use HashAlgorithm::*;
    let sig_info = signature_info(alg);
    let curve = key_info(key).curve;
    if let (SignatureFamily::Ecdsa, Some(hash), Some(curve)) =
        (sig_info.family, sig_info.hash, curve)
    {
        return ecdsa_verify(curve, hash, &key.subject_public_key.data, sig, data);
    }
    let algorithm: &dyn s::VerificationAlgorithm = match (sig_info.family, sig_info.hash, curve) {
        (SignatureFamily::RsaPkcs1, Some(Sha1), _) => {
            &s::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        (SignatureFamily::RsaPkcs1, Some(Sha256), _) => {
            &s::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
        }
        (SignatureFamily::RsaPkcs1, Some(Sha384), _) => &s::RSA_PKCS1_2048_8192_SHA384,
        (SignatureFamily::RsaPkcs1, Some(Sha512), _) => {
            &s::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY
        }
        (SignatureFamily::RsaPss, Some(Sha256), _) => &s::RSA_PSS_2048_8192_SHA256,
        (SignatureFamily::RsaPss, Some(Sha384), _) => &s::RSA_PSS_2048_8192_SHA384,
        (SignatureFamily::RsaPss, Some(Sha512), _) => &s::RSA_PSS_2048_8192_SHA512,
        (SignatureFamily::Ed25519, _, _) => &s::ED25519,
        _ => return false,
    };
    s::UnparsedPublicKey::new(algorithm, &key.subject_public_key.data)
        .verify(data, sig)
        .is_ok()
}

/// ECDSA with any hash on any curve aws-lc-rs knows: ECDSA signs the hash's
/// leftmost bits up to the curve's size, so the hash is fitted to the
/// curve's own digest length (truncated, or zeros in front) and checked as a
/// digest. mbedTLS accepts every hash with every curve this way.
fn ecdsa_verify(curve: Curve, hash: HashAlgorithm, point: &[u8], sig: &[u8], data: &[u8]) -> bool {
    use aws_lc_rs::{digest, signature as s};
    let (algorithm, native): (
        &'static s::EcdsaVerificationAlgorithm,
        &'static digest::Algorithm,
    ) = match curve {
        Curve::P256 => (&s::ECDSA_P256_SHA256_ASN1, &digest::SHA256),
        Curve::P384 => (&s::ECDSA_P384_SHA384_ASN1, &digest::SHA384),
        Curve::P521 => (&s::ECDSA_P521_SHA512_ASN1, &digest::SHA512),
        Curve::Secp256k1 => (&s::ECDSA_P256K1_SHA256_ASN1, &digest::SHA256),
        Curve::X25519 => return false,
    };
    let hashed = match hash {
        HashAlgorithm::Sha1 => digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data),
        HashAlgorithm::Sha224 => digest::digest(&digest::SHA224, data),
        HashAlgorithm::Sha256 => digest::digest(&digest::SHA256, data),
        HashAlgorithm::Sha384 => digest::digest(&digest::SHA384, data),
        HashAlgorithm::Sha512 => digest::digest(&digest::SHA512, data),
        _ => return false,
    };
    let h = hashed.as_ref();
    let n = native.output_len;
    let fitted: Vec<u8> = if h.len() >= n {
        h[..n].to_vec()
    } else {
        let mut v = vec![0; n - h.len()];
        v.extend_from_slice(h);
        v
    };
    let Ok(d) = digest::Digest::import_less_safe(&fitted, native) else {
        return false;
    };
    s::UnparsedPublicKey::new(algorithm, point)
        .verify_digest(&d, sig)
        .is_ok()
}

// ---------------------------------------------------------------------------
// Private keys

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_ED25519: &str = "1.3.101.112";
/// DER of AlgorithmIdentifier { rsaEncryption, NULL }.
const ALG_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// DER of the OID id-ecPublicKey.
const OID_EC_PUBLIC_KEY_DER: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Reads an unencrypted private key without keeping or printing its secret,
/// deriving its SubjectPublicKeyInfo where the structure allows.
pub fn private_key(der: &[u8], format: KeyFormat) -> Result<PrivateKeyInfo, Error> {
    let bad = |what: &str| Error::Malformed(format!("a damaged {what} private key"));
    let spki = match format {
        KeyFormat::Pkcs8 => pkcs8_spki(der).ok_or_else(|| bad("PKCS#8"))?,
        KeyFormat::Sec1 => {
            let (curve, point) = sec1_parts(der).ok_or_else(|| bad("SEC1"))?;
            match (curve, point) {
                (Some(curve), Some(point)) => Some(ec_spki(curve, point)),
                _ => None,
            }
        }
        KeyFormat::Pkcs1 => Some(pkcs1_spki(der).ok_or_else(|| bad("PKCS#1"))?),
    };
    // Fall back to the crypto library for keys that do not carry their public half.
    let spki = spki.or_else(|| {
        crate::keys::PrivateKey::from_der(der)
            .ok()
            .map(|k| k.public_key_der())
    });
    let key = match &spki {
        Some(spki) => Some(key_info_from_spki(spki)?),
        None => match format {
            KeyFormat::Pkcs8 => pkcs8_algorithm(der),
            _ => None,
        },
    };
    Ok(PrivateKeyInfo {
        format: Some(format),
        encrypted: false,
        encryption: None,
        key,
        trailing_bytes: 0,
        public_key_sha256: spki.as_deref().map(fingerprint::sha256_hex),
        public_key_der: spki,
    })
}

/// The SPKI of a PKCS#8 key: `Ok(None)`-like `Some(None)` when the algorithm
/// is readable but the public half is not derivable from the structure alone.
fn pkcs8_spki(der: &[u8]) -> Option<Option<Vec<u8>>> {
    let (seq, _) = tlv(der)?;
    let (_version, rest) = tlv(seq.content)?;
    let (alg, rest) = tlv(rest)?;
    let (private, mut rest) = tlv(rest)?;
    if seq.tag != 0x30 || alg.tag != 0x30 || private.tag != 0x04 {
        return None;
    }
    let (alg_oid, params) = tlv(alg.content)?;
    let oid = oid_string(alg_oid.content)?;
    // PKCS#8 v2 (RFC 5958) may carry the public key as [1] after optional [0] attributes.
    let mut public = None;
    while let Some((field, next)) = tlv(rest) {
        if field.tag == 0xa1 {
            public = bit_string_bytes(field.content);
        }
        rest = next;
    }
    Some(match oid.as_str() {
        OID_EC_PUBLIC_KEY => {
            let (inner_curve, inner_point) = sec1_parts(private.content)?;
            let curve = tlv(params)
                .filter(|(p, _)| p.tag == 0x06)
                .map(|(p, _)| p.raw)
                .or(inner_curve)?;
            inner_point.or(public).map(|point| ec_spki(curve, point))
        }
        OID_RSA | OID_RSA_PSS => {
            let rsa = pkcs1_public(private.content)?;
            Some(spki_der(alg.raw, &rsa))
        }
        _ => public.map(|p| spki_der(alg.raw, p)),
    })
}

fn pkcs8_algorithm(der: &[u8]) -> Option<KeyInfo> {
    let (seq, _) = tlv(der)?;
    let (_, rest) = tlv(seq.content)?;
    let (alg, _) = tlv(rest)?;
    let (oid, _) = tlv(alg.content)?;
    let oid = oid_string(oid.content)?;
    Some(describe_key(&oid, None, None))
}

/// A SEC1 key's named-curve OID (raw DER TLV) and public point, each when present.
type Sec1Parts<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The named-curve OID (raw DER TLV) and public point of a SEC1 ECPrivateKey, when present.
fn sec1_parts(der: &[u8]) -> Option<Sec1Parts<'_>> {
    let (seq, _) = tlv(der)?;
    let (version, rest) = tlv(seq.content)?;
    let (private, mut rest) = tlv(rest)?;
    if seq.tag != 0x30 || version.tag != 0x02 || private.tag != 0x04 {
        return None;
    }
    let (mut curve, mut point) = (None, None);
    while let Some((field, next)) = tlv(rest) {
        match field.tag {
            0xa0 => {
                curve = tlv(field.content)
                    .filter(|(o, _)| o.tag == 0x06)
                    .map(|(o, _)| o.raw)
            }
            0xa1 => point = tlv(field.content).and_then(|(b, _)| bit_string_bytes_tlv(&b)),
            _ => {}
        }
        rest = next;
    }
    Some((curve, point))
}

fn pkcs1_spki(der: &[u8]) -> Option<Vec<u8>> {
    Some(spki_der(ALG_RSA, &pkcs1_public(der)?))
}

/// RSAPublicKey { n, e } from an RSAPrivateKey { version, n, e, ... }.
fn pkcs1_public(der: &[u8]) -> Option<Vec<u8>> {
    let (seq, _) = tlv(der)?;
    let (version, rest) = tlv(seq.content)?;
    let (n, rest) = tlv(rest)?;
    let (e, _) = tlv(rest)?;
    if seq.tag != 0x30 || version.tag != 0x02 || n.tag != 0x02 || e.tag != 0x02 {
        return None;
    }
    Some(encode(0x30, &[n.raw, e.raw].concat()))
}

fn ec_spki(curve_oid: &[u8], point: &[u8]) -> Vec<u8> {
    let alg = encode(0x30, &[OID_EC_PUBLIC_KEY_DER, curve_oid].concat());
    spki_der(&alg, point)
}

fn spki_der(alg: &[u8], key: &[u8]) -> Vec<u8> {
    let bits = encode(0x03, &[&[0u8][..], key].concat());
    encode(0x30, &[alg, &bits[..]].concat())
}

/// A description of how an EncryptedPrivateKeyInfo is encrypted.
fn encryption_scheme(der: &[u8]) -> String {
    let parse = || -> Option<String> {
        let (seq, _) = tlv(der)?;
        let (alg, _) = tlv(seq.content)?;
        let (oid, params) = tlv(alg.content)?;
        let oid = oid_string(oid.content)?;
        if oid != "1.2.840.113549.1.5.13" {
            return Some(format!("PBES1/PKCS#12 scheme {oid}"));
        }
        let (params, _) = tlv(params)?;
        let (kdf, rest) = tlv(params.content)?;
        let (cipher, _) = tlv(rest)?;
        let (kdf_oid, kdf_params) = tlv(kdf.content)?;
        let kdf_name = match oid_string(kdf_oid.content)?.as_str() {
            "1.2.840.113549.1.5.12" => {
                // PBKDF2-params: salt, iterations, keyLength?, prf (default HMAC-SHA1).
                let prf = tlv(kdf_params)
                    .and_then(|(p, _)| {
                        let mut rest = p.content;
                        let mut prf = None;
                        while let Some((f, next)) = tlv(rest) {
                            if f.tag == 0x30 {
                                prf = tlv(f.content).and_then(|(o, _)| oid_string(o.content));
                            }
                            rest = next;
                        }
                        prf
                    })
                    .map(|o| match o.as_str() {
                        "1.2.840.113549.2.7" => "HMAC-SHA1".to_string(),
                        "1.2.840.113549.2.9" => "HMAC-SHA256".to_string(),
                        "1.2.840.113549.2.10" => "HMAC-SHA384".to_string(),
                        "1.2.840.113549.2.11" => "HMAC-SHA512".to_string(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "HMAC-SHA1".into());
                format!("PBKDF2-{prf}")
            }
            "1.3.6.1.4.1.11591.4.11" => "scrypt".into(),
            other => other.into(),
        };
        let (cipher_oid, _) = tlv(cipher.content)?;
        let cipher_name = match oid_string(cipher_oid.content)?.as_str() {
            "2.16.840.1.101.3.4.1.2" => "AES-128-CBC".to_string(),
            "2.16.840.1.101.3.4.1.22" => "AES-192-CBC".into(),
            "2.16.840.1.101.3.4.1.42" => "AES-256-CBC".into(),
            "2.16.840.1.101.3.4.1.6" => "AES-128-GCM".into(),
            "2.16.840.1.101.3.4.1.46" => "AES-256-GCM".into(),
            "1.2.840.113549.3.7" => "DES-EDE3-CBC".into(),
            "1.3.14.3.2.7" => "DES-CBC".into(),
            other => other.into(),
        };
        Some(format!("PBES2 ({kdf_name}, {cipher_name})"))
    };
    parse().unwrap_or_else(|| "PKCS#8 encryption (scheme not readable)".into())
}

// ---------------------------------------------------------------------------
// Public keys and signatures

/// Reads a DER SubjectPublicKeyInfo.
pub fn key_info_from_spki(der: &[u8]) -> Result<KeyInfo, Error> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| Error::Malformed(format!("not a readable public key ({e})")))?;
    Ok(key_info(&spki))
}

fn key_info(spki: &SubjectPublicKeyInfo) -> KeyInfo {
    let oid = spki.algorithm.algorithm.to_id_string();
    let curve_oid = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let key_bits = &spki.subject_public_key.data;
    describe_key(&oid, curve_oid, Some(key_bits))
}

fn describe_key(oid: &str, curve_oid: Option<String>, key: Option<&[u8]>) -> KeyInfo {
    let rsa_bits = || key.and_then(rsa_modulus_bits);
    let (algorithm, curve, bits, description) = match oid {
        OID_EC_PUBLIC_KEY => {
            let curve = curve_oid.as_deref().and_then(curve_from_oid);
            let (bits, name) = match curve {
                Some(Curve::P256) => (Some(256), "P-256".to_string()),
                Some(Curve::P384) => (Some(384), "P-384".into()),
                Some(Curve::P521) => (Some(521), "P-521".into()),
                Some(Curve::Secp256k1) => (Some(256), "secp256k1".into()),
                Some(Curve::X25519) => (Some(255), "X25519".into()),
                None => (
                    None,
                    format!(
                        "curve {}",
                        curve_oid.as_deref().unwrap_or("(explicit parameters)")
                    ),
                ),
            };
            (KeyAlgorithm::Ec, curve, bits, format!("ECDSA {name}"))
        }
        OID_RSA => {
            let bits = rsa_bits();
            (KeyAlgorithm::Rsa, None, bits, rsa_description("RSA", bits))
        }
        OID_RSA_PSS => {
            let bits = rsa_bits();
            (
                KeyAlgorithm::RsaPss,
                None,
                bits,
                rsa_description("RSA-PSS", bits),
            )
        }
        OID_ED25519 => (KeyAlgorithm::Ed25519, None, Some(256), "Ed25519".into()),
        "1.3.101.113" => (KeyAlgorithm::Ed448, None, Some(456), "Ed448".into()),
        "1.3.101.110" => (KeyAlgorithm::X25519, None, Some(255), "X25519".into()),
        "1.3.101.111" => (KeyAlgorithm::X448, None, Some(448), "X448".into()),
        "1.2.840.10040.4.1" => (KeyAlgorithm::Dsa, None, None, "DSA".into()),
        other => (
            KeyAlgorithm::Other,
            None,
            None,
            format!("unknown key algorithm {other}"),
        ),
    };
    KeyInfo {
        algorithm,
        curve,
        curve_oid: (algorithm == KeyAlgorithm::Ec)
            .then_some(curve_oid)
            .flatten(),
        bits,
        oid: oid.to_string(),
        description,
    }
}

fn rsa_description(name: &str, bits: Option<u32>) -> String {
    match bits {
        Some(bits) => format!("{name} {bits}"),
        None => name.to_string(),
    }
}

fn curve_from_oid(oid: &str) -> Option<Curve> {
    Some(match oid {
        "1.2.840.10045.3.1.7" => Curve::P256,
        "1.3.132.0.34" => Curve::P384,
        "1.3.132.0.35" => Curve::P521,
        "1.3.132.0.10" => Curve::Secp256k1,
        _ => return None,
    })
}

/// Bit length of the modulus in an RSAPublicKey { n, e }.
fn rsa_modulus_bits(key: &[u8]) -> Option<u32> {
    let (seq, _) = tlv(key)?;
    let (n, _) = tlv(seq.content)?;
    if seq.tag != 0x30 || n.tag != 0x02 {
        return None;
    }
    let digits = strip_sign_byte(n.content);
    let first = *digits.first()?;
    Some((digits.len() as u32 - 1) * 8 + (8 - first.leading_zeros()))
}

fn signature_info(alg: &AlgorithmIdentifier) -> SignatureInfo {
    use HashAlgorithm::*;
    use SignatureFamily::*;
    let oid = alg.algorithm.to_id_string();
    let (family, hash, name): (SignatureFamily, Option<HashAlgorithm>, &str) = match oid.as_str() {
        "1.2.840.113549.1.1.4" => (RsaPkcs1, Some(Md5), "md5WithRSAEncryption"),
        "1.2.840.113549.1.1.5" => (RsaPkcs1, Some(Sha1), "sha1WithRSAEncryption"),
        "1.2.840.113549.1.1.14" => (RsaPkcs1, Some(Sha224), "sha224WithRSAEncryption"),
        "1.2.840.113549.1.1.11" => (RsaPkcs1, Some(Sha256), "sha256WithRSAEncryption"),
        "1.2.840.113549.1.1.12" => (RsaPkcs1, Some(Sha384), "sha384WithRSAEncryption"),
        "1.2.840.113549.1.1.13" => (RsaPkcs1, Some(Sha512), "sha512WithRSAEncryption"),
        OID_RSA_PSS => {
            // RSASSA-PSS-params: [0] hashAlgorithm, default SHA-1 (RFC 4055).
            let hash = alg
                .parameters
                .as_ref()
                .map(|p| pss_hash(p.data))
                .unwrap_or(Some(Sha1));
            (RsaPss, hash, "rsassaPss")
        }
        "1.2.840.10045.4.1" => (Ecdsa, Some(Sha1), "ecdsa-with-SHA1"),
        "1.2.840.10045.4.3.1" => (Ecdsa, Some(Sha224), "ecdsa-with-SHA224"),
        "1.2.840.10045.4.3.2" => (Ecdsa, Some(Sha256), "ecdsa-with-SHA256"),
        "1.2.840.10045.4.3.3" => (Ecdsa, Some(Sha384), "ecdsa-with-SHA384"),
        "1.2.840.10045.4.3.4" => (Ecdsa, Some(Sha512), "ecdsa-with-SHA512"),
        OID_ED25519 => (Ed25519, None, "ED25519"),
        "1.3.101.113" => (Ed448, None, "ED448"),
        "1.2.840.10040.4.3" => (Dsa, Some(Sha1), "dsa-with-SHA1"),
        "2.16.840.1.101.3.4.3.2" => (Dsa, Some(Sha256), "dsa-with-SHA256"),
        _ => (Other, None, ""),
    };
    let name = match (family, hash) {
        (RsaPss, Some(h)) => format!("rsassaPss ({})", h.name()),
        (Other, _) => format!("unknown signature algorithm {oid}"),
        _ => name.to_string(),
    };
    SignatureInfo {
        family,
        hash,
        pss: family == RsaPss,
        oid,
        name,
    }
}

/// The hash of RSASSA-PSS-params content (the bytes inside the SEQUENCE).
fn pss_hash(params: &[u8]) -> Option<HashAlgorithm> {
    let mut rest = params;
    while let Some((field, next)) = tlv(rest) {
        if field.tag == 0xa0 {
            let (alg, _) = tlv(field.content)?;
            let (oid, _) = tlv(alg.content)?;
            return HashAlgorithm::from_oid(&oid_string(oid.content)?);
        }
        rest = next;
    }
    Some(HashAlgorithm::Sha1)
}

// ---------------------------------------------------------------------------
// Names

fn name_string(name: &X509Name) -> String {
    name.to_string()
}

fn common_names(name: &X509Name) -> Vec<String> {
    name.iter_common_name()
        .map(|cn| match cn.as_str() {
            Ok(s) => s.to_string(),
            Err(_) => String::from_utf8_lossy(cn.as_slice()).into_owned(),
        })
        .collect()
}

fn sans_of(names: &[GeneralName]) -> Sans {
    let mut sans = Sans::default();
    for name in names {
        match name {
            GeneralName::DNSName(d) => sans.dns.push(d.to_string()),
            GeneralName::IPAddress(bytes) => sans.ip.push(ip_string(bytes)),
            GeneralName::RFC822Name(e) => sans.other.push(format!("email:{e}")),
            GeneralName::URI(u) => sans.other.push(format!("URI:{u}")),
            GeneralName::DirectoryName(n) => sans.other.push(format!("DirName:{n}")),
            GeneralName::RegisteredID(o) => sans.other.push(format!("RID:{}", o.to_id_string())),
            GeneralName::OtherName(o, _) => {
                sans.other.push(format!("othername:{}", o.to_id_string()))
            }
            other => sans.other.push(format!("{other:?}")),
        }
    }
    sans
}

fn ip_string(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => format!("(invalid address {})", hex::encode(bytes)),
    }
}

fn key_usage_names(flags: u16) -> Vec<String> {
    const NAMES: [&str; 9] = [
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| flags >> i & 1 != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// A DER INTEGER's digits without the leading zero that keeps it positive.
fn strip_sign_byte(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    }
}

// ---------------------------------------------------------------------------
// Minimal DER reading and writing: enough for key structures, bounds-checked.

struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

/// The DER element at the start of `bytes` and what follows it.
fn tlv(bytes: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let total = crate::der::element_len(bytes)?;
    let header = match *bytes.get(1)? {
        n if n < 0x80 => 2,
        n => 2 + (n & 0x7f) as usize,
    };
    let raw = bytes.get(..total)?;
    Some((
        Tlv {
            tag: bytes[0],
            content: raw.get(header..)?,
            raw,
        },
        &bytes[total..],
    ))
}

/// The bytes of a BIT STRING's content with no unused bits.
fn bit_string_bytes(content: &[u8]) -> Option<&[u8]> {
    match content {
        [0, rest @ ..] => Some(rest),
        _ => None,
    }
}

fn bit_string_bytes_tlv<'a>(t: &Tlv<'a>) -> Option<&'a [u8]> {
    (t.tag == 0x03).then_some(())?;
    bit_string_bytes(t.content)
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Dotted form of an OBJECT IDENTIFIER's content bytes.
fn oid_string(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in content {
        value = value.checked_mul(128)? | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        }
    }
    if content.is_empty() || content.last()? & 0x80 != 0 {
        return None;
    }
    let first = arcs[0];
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in &arcs[1..] {
        out.push('.');
        out.push_str(&arc.to_string());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{self, CertSpec, Role};
    use crate::keys::{KeyType, PrivateKey};
    use crate::sniff::sniff;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn devtls_server_certificate_reads_back_completely() {
        for key_type in [KeyType::P256, KeyType::P384, KeyType::Rsa2048] {
            let key = PrivateKey::generate(key_type).unwrap();
            let mut spec = CertSpec::new("openmv", Role::Server, 30);
            spec.dns = vec!["openmv".into()];
            spec.ips = vec!["192.168.1.50".parse().unwrap()];
            let cert = issue::self_signed(&spec, &key).unwrap();
            let info = certificate(&cert.der, now()).unwrap();
            assert_eq!(info.subject, "CN=openmv");
            assert_eq!(info.common_name(), Some("openmv"));
            assert_eq!(info.sans.dns, vec!["openmv"]);
            assert_eq!(info.sans.ip, vec!["192.168.1.50"]);
            assert_eq!(info.version, 3);
            assert!(info.self_signed && info.self_issued);
            assert_eq!(info.validity.status, ValidityStatus::Valid);
            assert!((29..=30).contains(&info.validity.days_left), "{info:?}");
            let eku = info.extended_key_usage.as_ref().unwrap();
            assert!(eku.server_auth && !eku.client_auth);
            assert!(info.key_usage.as_ref().unwrap().has("digitalSignature"));
            assert_eq!(info.sha256, fingerprint::sha256_colon(&cert.der));
            assert_eq!(info.der_size, cert.der.len());
            assert_eq!(info.serial.len() % 2, 0);
            let (algorithm, desc) = match key_type {
                KeyType::P256 => (KeyAlgorithm::Ec, "ECDSA P-256"),
                KeyType::P384 => (KeyAlgorithm::Ec, "ECDSA P-384"),
                _ => (KeyAlgorithm::Rsa, "RSA 2048"),
            };
            assert_eq!(info.public_key.algorithm, algorithm);
            assert_eq!(info.public_key.description, desc);
            let expected_hash = match key_type {
                KeyType::P384 => HashAlgorithm::Sha384,
                _ => HashAlgorithm::Sha256,
            };
            assert_eq!(info.signature.hash, Some(expected_hash));
            assert!(!info.signature.pss);
            // The key's derived public key matches the certificate's.
            let k = private_key(&key.pkcs8_der(), KeyFormat::Pkcs8).unwrap();
            assert_eq!(k.public_key_der.as_deref(), Some(&key.public_key_der()[..]));
            assert_eq!(
                k.public_key_sha256.as_deref(),
                Some(&info.public_key_sha256[..])
            );
            assert_eq!(k.key.unwrap(), info.public_key);
        }
    }

    #[test]
    fn expiry_and_not_yet_valid_are_counted_in_days() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let spec = CertSpec::new("x", Role::Client, 10);
        let cert = issue::self_signed(&spec, &key).unwrap();
        let later = now() + time::Duration::days(15);
        let info = certificate(&cert.der, later).unwrap();
        assert_eq!(info.validity.status, ValidityStatus::Expired);
        assert_eq!(info.validity.days_since_expiry, Some(5));
        assert!(info.validity.days_left < 0);
        let earlier = now() - time::Duration::days(3);
        let info = certificate(&cert.der, earlier).unwrap();
        assert_eq!(info.validity.status, ValidityStatus::NotYetValid);
        assert_eq!(info.validity.days_until_valid, Some(2));
        assert!(info
            .extended_key_usage
            .as_ref()
            .is_some_and(|e| e.client_auth));
    }

    #[test]
    fn ca_and_issued_certificates_relate() {
        let ca_key = PrivateKey::generate(KeyType::P256).unwrap();
        let ca = issue::self_signed_ca(&CertSpec::new("Test CA", Role::Ca, 30), &ca_key).unwrap();
        let authority = issue::Authority::load(&ca.der, ca_key).unwrap();
        let leaf_key = PrivateKey::generate(KeyType::P384).unwrap();
        let leaf = authority
            .sign(&CertSpec::new("leaf", Role::Server, 30), &leaf_key)
            .unwrap();
        let ca_info = certificate(&ca.der, now()).unwrap();
        assert!(ca_info.is_ca() && ca_info.self_signed);
        assert!(ca_info.key_usage.unwrap().has("keyCertSign"));
        let leaf_info = certificate(&leaf.der, now()).unwrap();
        assert!(!leaf_info.is_ca() && !leaf_info.self_signed && !leaf_info.self_issued);
        assert_eq!(leaf_info.issuer, "CN=Test CA");
        assert!(signs(&ca.der, &leaf.der));
        assert!(!signs(&leaf.der, &ca.der));
        assert!(!signs(&leaf.der, b"junk"));
    }

    #[test]
    fn key_formats_derive_the_same_public_key() {
        // SEC1 and PKCS#1 built by hand from the PKCS#8 devtls writes.
        for key_type in [KeyType::P256, KeyType::Rsa2048] {
            let key = PrivateKey::generate(key_type).unwrap();
            let pkcs8 = key.pkcs8_der();
            let (seq, _) = tlv(&pkcs8).unwrap();
            let (_, rest) = tlv(seq.content).unwrap();
            let (_, rest) = tlv(rest).unwrap();
            let (inner, _) = tlv(rest).unwrap();
            let format = match key_type {
                KeyType::P256 => KeyFormat::Sec1,
                _ => KeyFormat::Pkcs1,
            };
            let info = private_key(inner.content, format).unwrap();
            if format == KeyFormat::Pkcs1 {
                assert_eq!(info.public_key_der.unwrap(), key.public_key_der());
                assert_eq!(info.key.unwrap().bits, Some(2048));
            } else {
                // rcgen's PKCS#8 embeds a SEC1 key without the curve: fall back to the library.
                assert!(info.key.is_some());
            }
        }
    }

    #[test]
    fn inspect_covers_every_item_of_a_bundle_and_never_panics_on_damage() {
        let mut pem = String::new();
        for cn in ["a", "b"] {
            let key = PrivateKey::generate(KeyType::P256).unwrap();
            pem += &issue::self_signed(&CertSpec::new(cn, Role::Server, 5), &key)
                .unwrap()
                .pem();
        }
        let sniffed = sniff(pem.as_bytes()).unwrap();
        let items = inspect(&sniffed, now());
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].index, 2);
        match &items[1].details {
            Details::Certificate(c) => assert_eq!(c.subject, "CN=b"),
            other => panic!("{other:?}"),
        }
        let json = serde_json::to_value(&items).unwrap();
        assert_eq!(json[0]["details"]["subject"], "CN=a");
        assert!(json[0]["details"]["validity"]["not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        // A key whose structure is garbage inside a valid frame is Unreadable, not a panic.
        let item = Item {
            kind: Kind::PrivateKey(KeyFormat::Sec1),
            encoding: Encoding::Der,
            der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
            trailing_bytes: 0,
        };
        assert!(matches!(
            inspect_item(1, &item, now()).details,
            Details::Unreadable { .. }
        ));
    }

    /// Reads the one item of a fixture made by OpenSSL under tests/data.
    fn fixture(pem: &str) -> Details {
        let sniffed = sniff(pem.as_bytes()).unwrap();
        inspect(&sniffed, now()).remove(0).details
    }

    fn cert_fixture(pem: &str) -> CertInfo {
        match fixture(pem) {
            Details::Certificate(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_the_device_rejects_is_recorded_as_facts() {
        let ed = cert_fixture(include_str!("../tests/data/ed25519.crt"));
        assert_eq!(ed.public_key.algorithm, KeyAlgorithm::Ed25519);
        assert_eq!(ed.signature.family, SignatureFamily::Ed25519);
        assert_eq!(ed.signature.hash, None);
        match fixture(include_str!("../tests/data/ed25519.key")) {
            Details::PrivateKey(k) => {
                assert_eq!(k.key.unwrap().algorithm, KeyAlgorithm::Ed25519);
                assert_eq!(k.public_key_sha256.unwrap(), ed.public_key_sha256);
            }
            other => panic!("{other:?}"),
        }

        let k1 = cert_fixture(include_str!("../tests/data/secp256k1.crt"));
        assert_eq!(k1.public_key.curve, Some(Curve::Secp256k1));
        match fixture(include_str!("../tests/data/secp256k1.key")) {
            Details::PrivateKey(k) => {
                assert_eq!(k.format, Some(KeyFormat::Sec1));
                assert_eq!(k.public_key_sha256.unwrap(), k1.public_key_sha256);
            }
            other => panic!("{other:?}"),
        }

        let pss = cert_fixture(include_str!("../tests/data/rsa-pss.crt"));
        assert_eq!(pss.public_key.algorithm, KeyAlgorithm::RsaPss);
        assert_eq!(pss.public_key.bits, Some(2048));
        assert!(pss.signature.pss);
        assert_eq!(pss.signature.hash, Some(HashAlgorithm::Sha256));

        let weak = cert_fixture(include_str!("../tests/data/rsa1024-sha1.crt"));
        assert_eq!(weak.public_key.bits, Some(1024));
        assert_eq!(weak.signature.hash, Some(HashAlgorithm::Sha1));
        assert_eq!(weak.signature.name, "sha1WithRSAEncryption");

        let c = cert_fixture(include_str!("../tests/data/constrained-p521.crt"));
        assert!(c.self_signed, "P-521 with SHA-512 verifies too");
        assert_eq!(c.public_key.curve, Some(Curve::P521));
        assert_eq!(c.signature.hash, Some(HashAlgorithm::Sha512));
        assert_eq!(c.name_constraints, Some(Present { critical: true }));
        let policies = c.policies.unwrap();
        assert!(policies.critical && !policies.only_any_policy);
        assert_eq!(policies.oids, vec!["2.23.140.1.2.1"]);
        let bc = c.basic_constraints.unwrap();
        assert!(bc.ca && bc.critical);
        assert_eq!(bc.path_len, Some(2));
        let eku = c.extended_key_usage.unwrap();
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(eku.other, vec!["codeSigning"]);

        // Self-signed is recognised for weak or unusual algorithms too. (Not for
        // this RSA-PSS one: OpenSSL used the maximum salt length, which aws-lc-rs
        // does not verify; the device rejects RSA-PSS anyway.)
        assert!(!pss.self_signed && pss.self_issued);
        for cert in [&ed, &k1, &weak] {
            assert!(cert.self_signed, "{}", cert.subject);
        }

        let any = cert_fixture(include_str!("../tests/data/anypolicy.crt"));
        let policies = any.policies.unwrap();
        assert!(policies.critical && policies.only_any_policy);
        assert_eq!(any.public_key.description, "ECDSA P-384");
    }

    #[test]
    fn oid_and_der_helpers() {
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]).unwrap(),
            OID_EC_PUBLIC_KEY
        );
        assert_eq!(oid_string(&[0x2b, 0x65, 0x70]).unwrap(), OID_ED25519);
        assert!(oid_string(&[0x86]).is_none());
        assert!(oid_string(&[]).is_none());
        let long = encode(0x04, &[7; 300]);
        let (t, rest) = tlv(&long).unwrap();
        assert_eq!((t.tag, t.content.len(), rest.len()), (0x04, 300, 0));
        assert_eq!(
            rsa_modulus_bits(&[0x30, 0x04, 0x02, 0x02, 0x00, 0x81]),
            Some(8)
        );
    }
}

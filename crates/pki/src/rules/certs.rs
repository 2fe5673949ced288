//! What the device does with one certificate: what its X.509 parser
//! refuses outright, which keys and signature hashes its verification
//! profile refuses, validity at its clock, and which certificate may issue
//! another.

use serde::Serialize;
use time::OffsetDateTime;

use crate::chain::Cert;
use crate::device_error::{self, DeviceError};
use crate::inspect::{KeyAlgorithm, KeyInfo, SignatureFamily, SignatureInfo};
use crate::profile::{Curve, Profile};

/// Why the device's parser refuses a certificate (`mbedtls_x509_crt_parse_der`
/// fails: the anchor does not load, or the handshake stops on the peer's chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "refusal")]
pub enum ParseRefusal {
    /// Signed with RSA-PSS, which the build lacks.
    RsaPssSignature,
    /// Signed with Ed25519, which the build lacks.
    Ed25519Signature,
    /// Its key's algorithm is unknown to the build (Ed25519, X25519, RSA-PSS keys).
    KeyAlgorithm {
        /// The key, in words.
        key: String,
    },
    /// Its EC key is on a curve the build does not compile.
    Curve {
        /// The curve, in words.
        curve: String,
    },
    /// An extension the parser does not know is marked critical.
    CriticalExtension {
        /// The extension's OID.
        oid: String,
        /// Its name, when devtls knows it.
        name: &'static str,
    },
    /// A critical certificatePolicies extension names a policy other than anyPolicy.
    CriticalPolicies {
        /// The policy OIDs.
        oids: Vec<String>,
    },
}

impl ParseRefusal {
    /// The TLS layer skips a certificate of the peer's chain whose signature
    /// algorithm its build does not know (`ssl_parse_certificate_chain`),
    /// rather than failing the handshake.
    pub fn skipped_in_peer_chain(&self) -> bool {
        matches!(self, ParseRefusal::Ed25519Signature)
    }

    /// The mbedTLS error the parser returns.
    pub fn error(&self) -> DeviceError {
        match self {
            ParseRefusal::RsaPssSignature => device_error::RSA_PSS,
            ParseRefusal::Ed25519Signature => device_error::UNKNOWN_SIG_ALG,
            ParseRefusal::KeyAlgorithm { .. } => device_error::UNKNOWN_PK_ALG,
            ParseRefusal::Curve { .. } => device_error::UNKNOWN_NAMED_CURVE,
            ParseRefusal::CriticalExtension { .. } => device_error::CRITICAL_EXTENSION,
            ParseRefusal::CriticalPolicies { .. } => device_error::CRITICAL_POLICIES,
        }
    }

    /// Why, in plain words (`it is signed with RSA-PSS, ...`).
    pub fn why(&self) -> String {
        match self {
            ParseRefusal::RsaPssSignature => {
                "it is signed with RSA-PSS, which the device's mbedTLS build lacks".into()
            }
            ParseRefusal::Ed25519Signature => {
                "it is signed with Ed25519, which the device's mbedTLS build lacks".into()
            }
            ParseRefusal::KeyAlgorithm { key } => {
                format!("it holds {key}, a key type the device's mbedTLS build lacks")
            }
            ParseRefusal::Curve { curve } => {
                format!("its key is on {curve}, a curve the device's mbedTLS build does not compile")
            }
            ParseRefusal::CriticalExtension { oid, name } => format!(
                "it carries a critical {} extension ({oid}), which the device's mbedTLS does not implement",
                if name.is_empty() { "unknown" } else { name }
            ),
            ParseRefusal::CriticalPolicies { oids } => format!(
                "it carries a critical certificatePolicies extension with {}; the device accepts only anyPolicy there",
                oids.join(", ")
            ),
        }
    }

    /// What to do about it.
    pub fn fix(&self) -> String {
        match self {
            ParseRefusal::RsaPssSignature => {
                "use a chain signed with ECDSA or RSA PKCS#1 v1.5 (not RSA-PSS), e.g. from the CA's ECDSA hierarchy".into()
            }
            ParseRefusal::Ed25519Signature | ParseRefusal::KeyAlgorithm { .. } => {
                "use an ECDSA P-256 key and certificate (the device has no Ed25519 or RSA-PSS keys)".into()
            }
            ParseRefusal::Curve { .. } => "use a key on P-256 or P-384".into(),
            ParseRefusal::CriticalExtension { oid, name } => format!(
                "issue it without the critical {} extension, or mark it non-critical (or put a gateway with a plain chain in front of the server)",
                if name.is_empty() { oid.as_str() } else { name }
            ),
            ParseRefusal::CriticalPolicies { .. } => {
                "issue it with certificatePolicies non-critical (or anyPolicy only)".into()
            }
        }
    }
}

const ANY_POLICY: &str = "2.5.29.32.0";
const OID_CERTIFICATE_POLICIES: &str = "2.5.29.32";

fn extension_name(oid: &str) -> &'static str {
    match oid {
        "2.5.29.30" => "nameConstraints",
        "2.5.29.36" => "policyConstraints",
        "2.5.29.54" => "inhibitAnyPolicy",
        "2.5.29.31" => "cRLDistributionPoints",
        "1.3.6.1.5.5.7.1.1" => "authorityInfoAccess",
        "1.3.6.1.5.5.7.1.24" => "TLS feature (must-staple)",
        "2.5.29.9" => "subjectDirectoryAttributes",
        "2.5.29.18" => "issuerAltName",
        _ => "",
    }
}

/// Why the device's X.509 parser refuses `cert`, in the order mbedTLS parses:
/// the signature algorithm, the key, then the extensions.
pub fn parse_refusal(profile: &Profile, cert: &Cert) -> Option<ParseRefusal> {
    let info = &cert.info;
    if !profile.rsa_pss && info.signature.pss {
        return Some(ParseRefusal::RsaPssSignature);
    }
    if !profile.ed25519 && info.signature.family == SignatureFamily::Ed25519 {
        return Some(ParseRefusal::Ed25519Signature);
    }
    if let Some(refusal) = key_parse_refusal(profile, &info.public_key) {
        return Some(refusal);
    }
    if let Some(known) = profile.known_extensions {
        if let Some(oid) = cert
            .critical_extensions
            .iter()
            .find(|oid| !known.contains(&oid.as_str()))
        {
            return Some(ParseRefusal::CriticalExtension {
                name: extension_name(oid),
                oid: oid.clone(),
            });
        }
    }
    if !profile.critical_policies {
        if let Some(p) = &info.policies {
            let critical = p.critical
                || cert
                    .critical_extensions
                    .iter()
                    .any(|o| o == OID_CERTIFICATE_POLICIES);
            if critical && !p.oids.iter().all(|o| o == ANY_POLICY) {
                return Some(ParseRefusal::CriticalPolicies {
                    oids: p.oids.clone(),
                });
            }
        }
    }
    None
}

/// Why the device cannot parse a key at all (in a certificate or a key file).
pub fn key_parse_refusal(profile: &Profile, key: &KeyInfo) -> Option<ParseRefusal> {
    match key.algorithm {
        KeyAlgorithm::Rsa => None,
        KeyAlgorithm::Ed25519 if profile.ed25519 => None,
        KeyAlgorithm::RsaPss if profile.rsa_pss => None,
        KeyAlgorithm::Ec => {
            let oid = key.curve_oid.as_deref().unwrap_or("");
            match profile.parsed_curves {
                Some(curves) if !curves.contains(&oid) => Some(ParseRefusal::Curve {
                    curve: curve_words(key),
                }),
                _ => None,
            }
        }
        _ => Some(ParseRefusal::KeyAlgorithm {
            key: format!("an {} key", key.description),
        }),
    }
}

fn curve_words(key: &KeyInfo) -> String {
    match key.curve {
        Some(_) => key.description.trim_start_matches("ECDSA ").to_string(),
        None => key
            .curve_oid
            .clone()
            .unwrap_or_else(|| "an unnamed curve".into()),
    }
}

/// Why the verification profile refuses a key that parsed (mbedTLS's
/// `x509_profile_check_key`: `BADCERT_BAD_KEY`, "unacceptable key").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum KeyProblem {
    /// An RSA modulus below the profile's minimum.
    RsaTooSmall {
        /// The modulus size.
        bits: u32,
        /// The profile's minimum.
        min: u32,
    },
    /// An EC key on a curve the profile does not accept.
    Curve {
        /// The curve, in words.
        curve: String,
        /// secp256k1, named because it is the common case.
        secp256k1: bool,
    },
    /// A key type the profile does not verify with.
    Algorithm {
        /// The key, in words.
        key: String,
    },
}

impl KeyProblem {
    /// In words: `an RSA 1024 key (the device needs at least 2048 bits)`.
    pub fn why(&self) -> String {
        match self {
            KeyProblem::RsaTooSmall { bits, min } => {
                format!("an RSA {bits} key (the device needs at least {min} bits)")
            }
            KeyProblem::Curve { curve, .. } => {
                format!("a key on {curve}, a curve the device's verification refuses")
            }
            KeyProblem::Algorithm { key } => {
                format!("an {key} key the device does not verify with")
            }
        }
    }
}

/// The profile's verdict on a key it has parsed.
pub fn key_problem(profile: &Profile, key: &KeyInfo) -> Option<KeyProblem> {
    match key.algorithm {
        KeyAlgorithm::Rsa | KeyAlgorithm::RsaPss => {
            let bits = key.bits.unwrap_or(0);
            (bits < profile.min_rsa_bits).then_some(KeyProblem::RsaTooSmall {
                bits,
                min: profile.min_rsa_bits,
            })
        }
        KeyAlgorithm::Ec => match key.curve {
            Some(c) if profile.accepts_curve(c) => None,
            _ => Some(KeyProblem::Curve {
                curve: curve_words(key),
                secp256k1: key.curve == Some(Curve::Secp256k1),
            }),
        },
        KeyAlgorithm::Ed25519 if profile.ed25519 => None,
        _ => Some(KeyProblem::Algorithm {
            key: key.description.clone(),
        }),
    }
}

/// Whether the profile refuses the hash of this signature
/// (`BADCERT_BAD_MD`, "unacceptable hash").
pub fn hash_refused(profile: &Profile, sig: &SignatureInfo) -> bool {
    match sig.hash.and_then(|h| h.profile_hash()) {
        Some(h) => !profile.accepts_hash(h),
        None => sig.hash.is_some(),
    }
}

/// Validity at the device's clock: (expired, not yet valid). Both are
/// checked on every certificate of the path, the anchor included.
pub fn validity(cert: &Cert, at: OffsetDateTime) -> (bool, bool) {
    (at > cert.not_after(), at < cert.not_before())
}

/// Whether `parent` may issue a certificate (`x509_crt_check_parent` less the
/// name): the CA bit and, with a keyUsage, keyCertSign; a v1/v2 certificate
/// is exempt when it is the trust anchor (`top`).
pub fn can_issue(parent: &Cert, top: bool) -> bool {
    if top && parent.info.version < 3 {
        return true;
    }
    basic_constraints(parent).0
        && parent
            .info
            .key_usage
            .as_ref()
            .is_none_or(|k| k.has("keyCertSign"))
}

/// basicConstraints as mbedTLS reads them: (cA, pathLen). Without the cA
/// boolean, mbedTLS reads a following INTEGER as cA (a workaround for old
/// certificates), so `{ pathLen 2 }` is a CA with no path limit and
/// `{ pathLen 0 }` is not a CA (found by the differential test).
pub fn basic_constraints(cert: &Cert) -> (bool, Option<u32>) {
    match &cert.info.basic_constraints {
        None => (false, None),
        Some(b) if !b.ca => match b.path_len {
            Some(n) => (n != 0, None),
            None => (false, None),
        },
        Some(b) => (true, b.path_len),
    }
}

/// mbedTLS stores pathLen + 1 (0: no limit) and skips a parent whose limit
/// the path so far exceeds: `path_cnt` certificates below it, `self_cnt` of
/// them self-issued intermediates (not counted).
pub fn path_len_allows(parent: &Cert, path_cnt: usize, self_cnt: usize) -> bool {
    match basic_constraints(parent).1 {
        None => true,
        Some(len) => (len as usize + 1) > path_cnt.saturating_sub(self_cnt),
    }
}

/// Whether the device would load `cert` as its trust anchor and verify with
/// it: what the anchor role requires besides parsing. Returns the problems.
pub fn anchor_problems(profile: &Profile, cert: &Cert, at: OffsetDateTime) -> Vec<AnchorProblem> {
    let mut out = Vec::new();
    if let Some(p) = key_problem(profile, &cert.info.public_key) {
        out.push(AnchorProblem::Key(p));
    }
    let (expired, future) = validity(cert, at);
    if expired {
        out.push(AnchorProblem::Expired);
    }
    if future {
        out.push(AnchorProblem::NotYetValid);
    }
    if !can_issue(cert, true) && !cert.self_issued() {
        out.push(AnchorProblem::CannotIssue);
    }
    out
}

/// What is wrong with a certificate as the trust anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum AnchorProblem {
    /// Its key is one the device refuses to verify with.
    Key(KeyProblem),
    /// Past its notAfter at the device's clock.
    Expired,
    /// Before its notBefore at the device's clock.
    NotYetValid,
    /// Neither a CA (with keyCertSign) nor a self-signed leaf: it can anchor nothing.
    CannotIssue,
}

impl AnchorProblem {
    /// The verification flag the device sets for it.
    pub fn flag(&self) -> u32 {
        use device_error::flags;
        match self {
            AnchorProblem::Key(_) => flags::BAD_KEY,
            AnchorProblem::Expired => flags::EXPIRED,
            AnchorProblem::NotYetValid => flags::FUTURE,
            AnchorProblem::CannotIssue => flags::NOT_TRUSTED,
        }
    }
}

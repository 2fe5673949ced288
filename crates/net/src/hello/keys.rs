//! The public-key work of the device's side of a TLS 1.2 handshake, with
//! aws-lc-rs: checking the ServerKeyExchange signature against the leaf's
//! key, and writing a real ClientKeyExchange and CertificateVerify.

use aws_lc_rs::{agreement, digest, rand, rsa, signature};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why the server's key exchange signature is not accepted, or a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The leaf certificate does not parse.
    #[error("the server's certificate does not parse")]
    Leaf,
    /// The leaf's key cannot make this kind of signature.
    #[error("the server signed with {0:#06x}, which its certificate's key cannot make")]
    Mismatch(u16),
    /// The signature does not verify.
    #[error("the server's key exchange signature does not verify with its certificate's key")]
    BadSignature,
    /// The group is not one devtls can make a key share on.
    #[error("group {0} is not one the device can use")]
    Group(u16),
    /// The device's own key does not load or cannot sign.
    #[error("the device's key cannot be used: {0}")]
    OwnKey(String),
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// The leaf's public key: kind and curve, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafKey {
    /// RSA, with its SubjectPublicKeyInfo.
    Rsa(Vec<u8>),
    /// EC on a named curve (OID), with the point.
    Ec {
        /// The curve's OID, dotted.
        curve: String,
        /// The uncompressed point.
        point: Vec<u8>,
    },
    /// Anything else (OID of the algorithm).
    Other(String),
}

impl LeafKey {
    /// Reads the key of a DER certificate.
    pub fn of(leaf: &[u8]) -> Result<LeafKey, KeyError> {
        let (_, cert) = X509Certificate::from_der(leaf).map_err(|_| KeyError::Leaf)?;
        let spki = cert.public_key();
        let alg = spki.algorithm.algorithm.to_id_string();
        Ok(match alg.as_str() {
            OID_RSA => LeafKey::Rsa(spki.raw.to_vec()),
            OID_EC => LeafKey::Ec {
                curve: spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default(),
                point: spki.subject_public_key.data.to_vec(),
            },
            other => LeafKey::Other(other.to_string()),
        })
    }

    /// The curve's usual name (`P-256`, `secp256k1`, `brainpoolP256r1`, ...).
    pub fn curve_name(&self) -> Option<&'static str> {
        match self {
            LeafKey::Ec { curve, .. } => Some(curve_name(curve)),
            _ => None,
        }
    }

    /// The TLS group of an EC key's curve, when it has one.
    pub fn tls_group(&self) -> Option<u16> {
        match self {
            LeafKey::Ec { curve, .. } => match curve.as_str() {
                "1.2.840.10045.3.1.7" => Some(23),
                "1.3.132.0.34" => Some(24),
                "1.3.132.0.35" => Some(25),
                "1.3.132.0.10" => Some(22),
                "1.3.36.3.3.2.8.1.1.7" => Some(26),
                "1.3.36.3.3.2.8.1.1.11" => Some(27),
                "1.3.36.3.3.2.8.1.1.13" => Some(28),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A curve OID's usual name.
pub fn curve_name(oid: &str) -> &'static str {
    match oid {
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        "1.3.36.3.3.2.8.1.1.11" => "brainpoolP384r1",
        "1.3.36.3.3.2.8.1.1.13" => "brainpoolP512r1",
        _ => "an unnamed curve",
    }
}

/// Checks a TLS 1.2 ServerKeyExchange signature: `signed` is client random,
/// server random and the ECDHE parameters.
pub fn verify_server_signature(
    leaf: &[u8],
    scheme: u16,
    signed: &[u8],
    sig: &[u8],
) -> Result<(), KeyError> {
    let key = LeafKey::of(leaf)?;
    let hash = scheme >> 8;
    let alg: &'static dyn signature::VerificationAlgorithm = match (&key, scheme & 0xFF) {
        (LeafKey::Ec { curve, .. }, 3) => match (curve.as_str(), hash) {
            ("1.2.840.10045.3.1.7", 4) => &signature::ECDSA_P256_SHA256_ASN1,
            ("1.2.840.10045.3.1.7", 5) => &signature::ECDSA_P256_SHA384_ASN1,
            ("1.2.840.10045.3.1.7", 6) => &signature::ECDSA_P256_SHA512_ASN1,
            ("1.3.132.0.34", 4) => &signature::ECDSA_P384_SHA256_ASN1,
            ("1.3.132.0.34", 5) => &signature::ECDSA_P384_SHA384_ASN1,
            ("1.3.132.0.34", 6) => &signature::ECDSA_P384_SHA512_ASN1,
            ("1.3.132.0.35", 4) => &signature::ECDSA_P521_SHA256_ASN1,
            ("1.3.132.0.35", 5) => &signature::ECDSA_P521_SHA384_ASN1,
            ("1.3.132.0.35", 6) => &signature::ECDSA_P521_SHA512_ASN1,
            ("1.3.132.0.10", 4) => &signature::ECDSA_P256K1_SHA256_ASN1,
            _ => return Err(KeyError::Mismatch(scheme)),
        },
        (LeafKey::Rsa(_), 1) => match hash {
            4 => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            5 => &signature::RSA_PKCS1_2048_8192_SHA384,
            6 => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            _ => return Err(KeyError::Mismatch(scheme)),
        },
        _ => return Err(KeyError::Mismatch(scheme)),
    };
    let public: Vec<u8> = match &key {
        LeafKey::Ec { point, .. } => point.clone(),
        LeafKey::Rsa(spki) => rsa_public_key(spki).ok_or(KeyError::Leaf)?,
        LeafKey::Other(_) => return Err(KeyError::Mismatch(scheme)),
    };
    signature::UnparsedPublicKey::new(alg, &public)
        .verify(signed, sig)
        .map_err(|_| KeyError::BadSignature)
}

// The RSAPublicKey inside a SubjectPublicKeyInfo.
fn rsa_public_key(spki: &[u8]) -> Option<Vec<u8>> {
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).ok()?;
    Some(info.subject_public_key.data.to_vec())
}

/// A ClientKeyExchange body and the premaster secret it makes.
pub struct KeyExchangeOut {
    /// The ClientKeyExchange body.
    pub body: Vec<u8>,
    /// The premaster secret (the shared point's x coordinate, or the RSA-encrypted 48 bytes).
    pub premaster: Vec<u8>,
}

impl std::fmt::Debug for KeyExchangeOut {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyExchangeOut(..)")
    }
}

fn ecdh_alg(group: u16) -> Result<&'static agreement::Algorithm, KeyError> {
    Ok(match group {
        23 => &agreement::ECDH_P256,
        24 => &agreement::ECDH_P384,
        25 => &agreement::ECDH_P521,
        other => return Err(KeyError::Group(other)),
    })
}

/// The body of an ECDHE ClientKeyExchange: a fresh key share on `group`.
pub fn ecdhe_client_key_exchange(group: u16) -> Result<Vec<u8>, KeyError> {
    ecdhe_key_exchange(group, None).map(|k| k.body)
}

/// A fresh key share on `group` and, given the server's share
/// (`server_public`, an uncompressed point), the premaster secret.
pub fn ecdhe_key_exchange(
    group: u16,
    server_public: Option<&[u8]>,
) -> Result<KeyExchangeOut, KeyError> {
    let alg = ecdh_alg(group)?;
    let rng = rand::SystemRandom::new();
    let private =
        agreement::EphemeralPrivateKey::generate(alg, &rng).map_err(|_| KeyError::Group(group))?;
    let public = private
        .compute_public_key()
        .map_err(|_| KeyError::Group(group))?;
    let mut body = vec![public.as_ref().len() as u8];
    body.extend_from_slice(public.as_ref());
    let premaster = match server_public {
        Some(point) => agreement::agree_ephemeral(
            private,
            agreement::UnparsedPublicKey::new(alg, point),
            KeyError::Group(group),
            |secret| Ok(secret.to_vec()),
        )?,
        None => Vec::new(),
    };
    Ok(KeyExchangeOut { body, premaster })
}

/// A fresh X25519 key share (for a TLS 1.3 key_share, to see whether a
/// server answers TLS 1.3).
pub fn x25519_share() -> Vec<u8> {
    let rng = rand::SystemRandom::new();
    agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng)
        .and_then(|k| k.compute_public_key())
        .map(|p| p.as_ref().to_vec())
        .unwrap_or_else(|_| vec![9; 32])
}

/// The body of an RSA ClientKeyExchange: a premaster secret (version 3,3
/// and 46 random bytes) encrypted to the server's key, PKCS#1 v1.5.
pub fn rsa_client_key_exchange(leaf: &[u8]) -> Result<KeyExchangeOut, KeyError> {
    let LeafKey::Rsa(spki) = LeafKey::of(leaf)? else {
        return Err(KeyError::Mismatch(0x0001));
    };
    let key = rsa::PublicEncryptingKey::from_der(&spki).map_err(|_| KeyError::Leaf)?;
    let key = rsa::Pkcs1PublicEncryptingKey::new(key).map_err(|_| KeyError::Leaf)?;
    let mut premaster = [0u8; 48];
    rand::fill(&mut premaster[2..]).map_err(|_| KeyError::Leaf)?;
    premaster[..2].copy_from_slice(&[3, 3]);
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(&premaster, &mut out)
        .map_err(|_| KeyError::Leaf)?
        .len();
    let mut body = (n as u16).to_be_bytes().to_vec();
    body.extend_from_slice(&out[..n]);
    Ok(KeyExchangeOut {
        body,
        premaster: premaster.to_vec(),
    })
}

/// The body of the device's CertificateVerify over `transcript`, with
/// SHA-384 when the suite's hash is SHA-384 and SHA-256 otherwise (as
/// mbedTLS 3.6's TLS 1.2 client does), ECDSA or RSA PKCS#1 v1.5 by key.
pub fn certificate_verify(
    key_der: &[u8],
    sha384: bool,
    transcript: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let (hash_alg, hash_code) = if sha384 {
        (&digest::SHA384, 5u8)
    } else {
        (&digest::SHA256, 4u8)
    };
    let hashed = digest::digest(hash_alg, transcript);
    let own = |e: &dyn std::fmt::Display| KeyError::OwnKey(e.to_string());
    let (sig, kind) = if let Some(sig) = ecdsa_sign(key_der, hashed.as_ref(), transcript, sha384)? {
        (sig, 3u8)
    } else {
        let pair = rsa::KeyPair::from_pkcs8(key_der)
            .or_else(|_| rsa::KeyPair::from_der(key_der))
            .map_err(|e| own(&e))?;
        let padding: &'static dyn signature::RsaEncoding = if sha384 {
            &signature::RSA_PKCS1_SHA384
        } else {
            &signature::RSA_PKCS1_SHA256
        };
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(padding, &rand::SystemRandom::new(), transcript, &mut sig)
            .map_err(|e| own(&e))?;
        (sig, 1u8)
    };
    let mut body = vec![hash_code, kind];
    body.extend_from_slice(&(sig.len() as u16).to_be_bytes());
    body.extend_from_slice(&sig);
    Ok(body)
}

// ECDSA over a hash whose length need not match the curve: the hash is
// truncated to (or zero-extended on the left to) the curve's size, which is
// how ECDSA reads it (FIPS 186-4, 6.4).
fn ecdsa_sign(
    key_der: &[u8],
    hashed: &[u8],
    transcript: &[u8],
    sha384: bool,
) -> Result<Option<Vec<u8>>, KeyError> {
    use signature::EcdsaKeyPair;
    let rng = rand::SystemRandom::new();
    for (alg, md, len) in [
        (
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &digest::SHA256,
            32usize,
        ),
        (
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &digest::SHA384,
            48,
        ),
    ] {
        if let Ok(pair) = EcdsaKeyPair::from_private_key_der(alg, key_der) {
            let mut e = vec![0u8; len];
            if hashed.len() >= len {
                e.copy_from_slice(&hashed[..len]);
            } else {
                e[len - hashed.len()..].copy_from_slice(hashed);
            }
            let d = digest::Digest::import_less_safe(&e, md)
                .map_err(|_| KeyError::OwnKey("digest".into()))?;
            let sig = pair
                .sign_digest(&d)
                .map_err(|_| KeyError::OwnKey("ECDSA signing failed".into()))?;
            return Ok(Some(sig.as_ref().to_vec()));
        }
    }
    let p521 = if sha384 {
        &signature::ECDSA_P521_SHA384_ASN1_SIGNING
    } else {
        &signature::ECDSA_P521_SHA256_ASN1_SIGNING
    };
    if let Ok(pair) = EcdsaKeyPair::from_private_key_der(p521, key_der) {
        let sig = pair
            .sign(&rng, transcript)
            .map_err(|_| KeyError::OwnKey("ECDSA signing failed".into()))?;
        return Ok(Some(sig.as_ref().to_vec()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_p256_key_signs_sha384_verifiably() {
        let rng = rand::SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_ref(),
        )
        .unwrap();
        use signature::KeyPair;
        let public = pair.public_key().as_ref().to_vec();
        let body = certificate_verify(pkcs8.as_ref(), true, b"transcript").unwrap();
        assert_eq!(&body[..2], &[5, 3]);
        let sig = &body[4..];
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA384_ASN1, &public)
            .verify(b"transcript", sig)
            .unwrap();
        assert!(
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &public)
                .verify(b"transcript", sig)
                .is_err()
        );
    }

    #[test]
    fn key_shares_are_uncompressed_points() {
        assert_eq!(ecdhe_client_key_exchange(23).unwrap()[..2], [65, 4]);
        assert_eq!(ecdhe_client_key_exchange(25).unwrap()[..2], [133, 4]);
        assert_eq!(ecdhe_client_key_exchange(29), Err(KeyError::Group(29)));
    }
}

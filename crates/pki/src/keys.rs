//! Private keys: the types devtls makes, generation, and loading.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, SignatureAlgorithm};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use serde::Serialize;

use crate::profile::{Curve, Profile};
use crate::Error;

/// A key type devtls can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256: the recommended default.
    P256,
    /// ECDSA on NIST P-384 with SHA-384.
    P384,
    /// RSA 2048-bit with PKCS#1 v1.5 SHA-256 signatures.
    Rsa2048,
    /// Ed25519: only for the `modern` profile, no device accepts it.
    Ed25519,
}

impl KeyType {
    /// Every key type, in the order `--help` lists them.
    pub const ALL: [KeyType; 4] = [
        KeyType::P256,
        KeyType::P384,
        KeyType::Rsa2048,
        KeyType::Ed25519,
    ];

    /// The command-line spelling (`p256`, `p384`, `rsa2048`, `ed25519`).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::P256 => "p256",
            KeyType::P384 => "p384",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// A human description, e.g. `ECDSA P-256`.
    pub fn describe(self) -> &'static str {
        match self {
            KeyType::P256 => "ECDSA P-256",
            KeyType::P384 => "ECDSA P-384",
            KeyType::Rsa2048 => "RSA 2048",
            KeyType::Ed25519 => "Ed25519",
        }
    }

    /// The signature algorithm certificates signed by this key use.
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// Why the profile refuses this key type, with the alternative; `None` if accepted.
    pub fn refused_by(self, profile: &Profile) -> Option<String> {
        let refused = match self {
            KeyType::P256 => !profile.accepts_curve(Curve::P256),
            KeyType::P384 => !profile.accepts_curve(Curve::P384),
            KeyType::Rsa2048 => profile.min_rsa_bits > 2048,
            KeyType::Ed25519 => !profile.ed25519,
        };
        refused.then(|| {
            format!(
                "the {} profile does not accept {} keys (its mbedTLS build has no {}); \
                 use --key p256 (recommended), p384 or rsa2048",
                profile.name,
                self.describe(),
                if self == KeyType::Ed25519 {
                    "EdDSA or Curve25519"
                } else {
                    "support for them"
                },
            )
        })
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "p256" | "prime256v1" | "secp256r1" | "ec" | "ecdsa" => Ok(KeyType::P256),
            "p384" | "secp384r1" => Ok(KeyType::P384),
            "rsa2048" | "rsa" => Ok(KeyType::Rsa2048),
            "ed25519" => Ok(KeyType::Ed25519),
            _ => Err(format!("unknown key type '{s}': use p256, p384 or rsa2048")),
        }
    }
}

/// A private key devtls made or loaded, able to sign certificates and CSRs.
pub struct PrivateKey {
    pair: KeyPair,
    key_type: KeyType,
}

impl fmt::Debug for PrivateKey {
    // Never print key material, even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a fresh key of this type from the operating system's randomness.
    pub fn generate(key_type: KeyType) -> Result<Self, Error> {
        let alg = key_type.signature_algorithm();
        let pair = match key_type {
            KeyType::Rsa2048 => KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048),
            _ => KeyPair::generate_for(alg),
        }
        .map_err(|e| {
            Error::Crypto(format!(
                "could not generate a {} key: {e}",
                key_type.describe()
            ))
        })?;
        Ok(PrivateKey { pair, key_type })
    }

    /// Loads an unencrypted private key from DER: PKCS#8, SEC1 or PKCS#1.
    ///
    /// Bytes after the key structure are ignored here (lint reports them).
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let der = crate::der::first_element(der).unwrap_or(der);
        let candidates: [PrivateKeyDer<'_>; 3] = [
            PrivatePkcs8KeyDer::from(der).into(),
            PrivateSec1KeyDer::from(der).into(),
            PrivatePkcs1KeyDer::from(der).into(),
        ];
        for candidate in &candidates {
            for key_type in KeyType::ALL {
                if let Ok(pair) =
                    KeyPair::from_der_and_sign_algo(candidate, key_type.signature_algorithm())
                {
                    return Ok(PrivateKey { pair, key_type });
                }
            }
        }
        Err(Error::Unsupported(
            "not a private key devtls can use (expected an unencrypted P-256, P-384, RSA or Ed25519 key)".into(),
        ))
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The key as PKCS#8 DER with nothing after it: the form every device loads.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        self.pair.serialize_der()
    }

    /// The key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), for the PC side.
    pub fn pkcs8_pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.pair)
    }

    /// The rcgen key pair, for signing inside this crate.
    pub(crate) fn pair(&self) -> &KeyPair {
        &self.pair
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;

    #[test]
    fn generated_keys_round_trip_through_der() {
        for key_type in [
            KeyType::P256,
            KeyType::P384,
            KeyType::Rsa2048,
            KeyType::Ed25519,
        ] {
            let key = PrivateKey::generate(key_type).unwrap();
            let loaded = PrivateKey::from_der(&key.pkcs8_der()).unwrap();
            assert_eq!(loaded.key_type(), key_type);
            assert_eq!(loaded.public_key_der(), key.public_key_der());
        }
    }

    #[test]
    fn ed25519_is_refused_by_the_device_with_the_alternative() {
        let why = KeyType::Ed25519.refused_by(&profile::OPENMV).unwrap();
        assert!(why.contains("p256"), "{why}");
        assert!(KeyType::Ed25519.refused_by(&profile::MODERN).is_none());
        assert!(KeyType::P384.refused_by(&profile::OPENMV).is_none());
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode(&key.pkcs8_der()[..8])));
        assert!(shown.contains("P256"));
    }

    #[test]
    fn key_type_names_parse() {
        assert_eq!("P-256".parse::<KeyType>().unwrap(), KeyType::P256);
        assert_eq!("rsa2048".parse::<KeyType>().unwrap(), KeyType::Rsa2048);
        assert!("dsa".parse::<KeyType>().is_err());
    }
}

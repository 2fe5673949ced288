//! The CA's private key behind one interface: every certificate and CRL an
//! [`Authority`](crate::issue::Authority) makes is signed through [`CaKey`],
//! whether the key is in memory (read from a file) or in a PKCS#11 token
//! (an HSM, a smart card, SoftHSM2), where it never leaves the token.
//!
//! - [`file`]: a key held in memory, the default.
//! - [`pkcs11`]: a key object in a PKCS#11 token, addressed by an RFC 7512 URI.

pub mod file;
pub mod pkcs11;

/// The key a CA signs with.
pub enum CaKey {
    /// A private key held in memory (the fleet's `ca.key`).
    File(crate::keys::PrivateKey),
    /// A non-extractable key in a PKCS#11 token.
    Token(pkcs11::TokenKey),
}

impl CaKey {
    /// The key's type.
    pub fn key_type(&self) -> crate::keys::KeyType {
        match self {
            CaKey::File(key) => key.key_type(),
            CaKey::Token(key) => key.key_type(),
        }
    }

    /// The error of a failed signature, with the reason a token gave when
    /// rcgen could only say "remote key error".
    pub fn explain(&self, e: rcgen::Error) -> String {
        match (self, &e) {
            (CaKey::Token(key), rcgen::Error::RemoteKeyError) => {
                key.take_error().unwrap_or_else(|| e.to_string())
            }
            _ => e.to_string(),
        }
    }

    /// The SubjectPublicKeyInfo DER of the key (what a certificate of it carries).
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(self)
    }
}

impl From<crate::keys::PrivateKey> for CaKey {
    fn from(key: crate::keys::PrivateKey) -> Self {
        CaKey::File(key)
    }
}

impl From<pkcs11::TokenKey> for CaKey {
    fn from(key: pkcs11::TokenKey) -> Self {
        CaKey::Token(key)
    }
}

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::File(key) => key.der_bytes(),
            CaKey::Token(key) => key.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            CaKey::File(key) => key.algorithm(),
            CaKey::Token(key) => key.algorithm(),
        }
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::File(key) => key.sign(msg),
            CaKey::Token(key) => key.sign(msg),
        }
    }
}

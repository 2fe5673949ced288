//! A device profile turned into rtc-dtls settings, and the glue between
//! rustls keys and rtc-dtls's signing interface.

use std::sync::{Arc, Mutex};

use devtls_pki::profile::{CipherSuite, Curve, Hash, Profile};
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::crypto_provider::{
    self as rc, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, PublicKeyEncoding, RTCCrypto, RTCCryptoProvider, RTCRandom, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc_dtls::signature_hash_algorithm::SignatureScheme as DtlsScheme;
use rustls::SignatureScheme;

use super::cookie::COOKIE_LEN;

/// The profile's cipher suites rtc-dtls can negotiate, in the profile's order.
pub fn suites(profile: &Profile) -> Vec<CipherSuiteId> {
    profile
        .cipher_suites
        .iter()
        .map(|s| CipherSuiteId::from(s.code))
        .filter(|id| *id != CipherSuiteId::Unsupported)
        .collect()
}

/// The profile's cipher suites a devtls DTLS endpoint cannot offer: rtc-dtls
/// implements only AES-128-GCM, AES-256-CBC-SHA, CCM and ChaCha20 ECDHE suites,
/// so for `openmv` the DTLS endpoint speaks C02B, C02F, C00A and C014 of the
/// device's eighteen.
pub fn unemulated_suites(profile: &Profile) -> Vec<&'static CipherSuite> {
    let all: &'static [CipherSuite] = profile.cipher_suites;
    all.iter()
        .filter(|s| CipherSuiteId::from(s.code) == CipherSuiteId::Unsupported)
        .collect()
}

/// The profile's key exchange groups rtc-dtls implements (not P-521).
pub fn groups(profile: &Profile) -> Vec<KeyExchangeAlgorithm> {
    profile
        .groups
        .iter()
        .filter_map(|c| match c {
            Curve::P256 => Some(KeyExchangeAlgorithm::P256),
            Curve::P384 => Some(KeyExchangeAlgorithm::P384),
            Curve::X25519 => Some(KeyExchangeAlgorithm::X25519),
            _ => None,
        })
        .collect()
}

/// The profile's groups a devtls DTLS endpoint cannot offer.
pub fn unemulated_groups(profile: &Profile) -> Vec<Curve> {
    profile
        .groups
        .iter()
        .copied()
        .filter(|c| !matches!(c, Curve::P256 | Curve::P384 | Curve::X25519))
        .collect()
}

/// Signature algorithms to offer and accept, SHA-256 first so a P-256 peer
/// signs with the hash rtc-dtls verifies for it. ECDSA with SHA-512 is left
/// out: rtc-dtls cannot verify it.
pub fn signature_schemes(profile: &Profile) -> Vec<DtlsScheme> {
    let mut out = Vec::new();
    if profile.accepts_hash(Hash::Sha256) {
        out.push(DtlsScheme::EcdsaWithP256AndSha256);
    }
    if profile.accepts_hash(Hash::Sha384) {
        out.push(DtlsScheme::EcdsaWithP384AndSha384);
    }
    for (hash, scheme) in [
        (Hash::Sha256, DtlsScheme::Pkcs1WithSha256),
        (Hash::Sha384, DtlsScheme::Pkcs1WithSha384),
        (Hash::Sha512, DtlsScheme::Pkcs1WithSha512),
    ] {
        if profile.accepts_hash(hash) {
            out.push(scheme);
        }
    }
    if profile.ed25519 {
        out.push(DtlsScheme::Ed25519);
    }
    out
}

/// An rtc-dtls crypto provider limited to the profile's groups, whose random
/// source can be told the next cookie (see `server.rs`).
pub(crate) struct ProfileProvider {
    crypto: Restricted,
    random: CookieRandom,
}

impl ProfileProvider {
    /// aws-lc-rs underneath, key exchange limited to `profile`'s groups.
    pub(crate) fn new(profile: &Profile) -> Arc<Self> {
        let inner: Arc<dyn RTCCryptoProvider> = Arc::new(rc::providers::AwsLcRsProvider::new());
        Arc::new(ProfileProvider {
            crypto: Restricted {
                inner: inner.clone(),
                groups: groups(profile),
            },
            random: CookieRandom {
                inner,
                next_cookie: Mutex::new(None),
            },
        })
    }

    /// The next cookie-sized random draw returns `cookie` instead.
    pub(crate) fn set_next_cookie(&self, cookie: Option<[u8; COOKIE_LEN]>) {
        if let Ok(mut slot) = self.random.next_cookie.lock() {
            *slot = cookie;
        }
    }
}

impl RTCCryptoProvider for ProfileProvider {
    fn name(&self) -> &'static str {
        "devtls-profile"
    }
    fn crypto(&self) -> &dyn RTCCrypto {
        &self.crypto
    }
    fn random(&self) -> &dyn RTCRandom {
        &self.random
    }
}

struct CookieRandom {
    inner: Arc<dyn RTCCryptoProvider>,
    next_cookie: Mutex<Option<[u8; COOKIE_LEN]>>,
}

impl RTCRandom for CookieRandom {
    fn fill(&self, output: &mut [u8]) -> Result<(), CryptoError> {
        if output.len() == COOKIE_LEN {
            if let Some(cookie) = self.next_cookie.lock().ok().and_then(|mut c| c.take()) {
                output.copy_from_slice(&cookie);
                return Ok(());
            }
        }
        self.inner.random().fill(output)
    }
}

/// Delegates everything to aws-lc-rs but reports the groups outside the
/// profile as unsupported, which is how rtc-dtls picks the groups it offers.
struct Restricted {
    inner: Arc<dyn RTCCryptoProvider>,
    groups: Vec<KeyExchangeAlgorithm>,
}

impl RTCCrypto for Restricted {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        match algorithm {
            CryptoAlgorithm::KeyExchange(k) if !self.groups.contains(&k) => false,
            other => self.inner.crypto().supports(other),
        }
    }
    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }
    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }
    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }
    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }
    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.inner.crypto().new_aead(algorithm, key)
    }
    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }
    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn rc::ActiveKeyExchange>, CryptoError> {
        if !self.groups.contains(&algorithm) {
            return Err(CryptoError::UnsupportedAlgorithm(
                CryptoAlgorithm::KeyExchange(algorithm),
            ));
        }
        self.inner.crypto().start_key_exchange(algorithm)
    }
    fn generate_signing_key(
        &self,
        scheme: rc::SignatureScheme,
    ) -> Result<Arc<dyn rc::SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }
    fn import_signing_key(
        &self,
        scheme: rc::SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn rc::SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }
    fn verify_signature(
        &self,
        scheme: rc::SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

/// A rustls signing key (any key the TLS side loads: P-256, P-384, RSA) used
/// for rtc-dtls handshake signatures. rtc-dtls's own key import knows only
/// P-256 and RSA with SHA-256, so this is how a P-384 or RSA/SHA-384 identity
/// signs.
pub(crate) struct RustlsSigner {
    key: Arc<dyn rustls::sign::SigningKey>,
    spki: Vec<u8>,
}

impl RustlsSigner {
    pub(crate) fn new(key: Arc<dyn rustls::sign::SigningKey>) -> Self {
        let spki = key.public_key().map(|k| k.to_vec()).unwrap_or_default();
        RustlsSigner { key, spki }
    }
}

/// rtc-dtls names ECDSA schemes by curve and hash together; rustls keys
/// refuse a scheme of another curve, which keeps a P-256 key from being asked
/// for a P-384 signature.
fn rustls_scheme(scheme: rc::SignatureScheme) -> Option<SignatureScheme> {
    Some(match scheme {
        rc::SignatureScheme::EcdsaP256Sha256 => SignatureScheme::ECDSA_NISTP256_SHA256,
        rc::SignatureScheme::EcdsaP384Sha384 => SignatureScheme::ECDSA_NISTP384_SHA384,
        rc::SignatureScheme::RsaPkcs1Sha256 => SignatureScheme::RSA_PKCS1_SHA256,
        rc::SignatureScheme::RsaPkcs1Sha384 => SignatureScheme::RSA_PKCS1_SHA384,
        rc::SignatureScheme::RsaPkcs1Sha512 => SignatureScheme::RSA_PKCS1_SHA512,
        rc::SignatureScheme::Ed25519 => SignatureScheme::ED25519,
        _ => return None,
    })
}

impl rc::SigningKey for RustlsSigner {
    fn supports(&self, scheme: rc::SignatureScheme) -> bool {
        rustls_scheme(scheme).is_some_and(|s| self.key.choose_scheme(&[s]).is_some())
    }

    fn public_key(&self) -> PublicKey<'_> {
        PublicKey {
            encoding: PublicKeyEncoding::SubjectPublicKeyInfoDer,
            bytes: &self.spki,
        }
    }

    fn sign(&self, scheme: rc::SignatureScheme, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let signer = rustls_scheme(scheme)
            .and_then(|s| self.key.choose_scheme(&[s]))
            .ok_or(CryptoError::UnsupportedAlgorithm(
                CryptoAlgorithm::Signature(scheme),
            ))?;
        signer
            .sign(message)
            .map_err(|e| CryptoError::Provider(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::profile;

    #[test]
    fn openmv_dtls_is_the_gcm_and_cbc_ecdhe_subset_without_x25519() {
        let s = suites(&profile::OPENMV);
        assert_eq!(
            s,
            vec![
                CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_256_Cbc_Sha,
                CipherSuiteId::Tls_Ecdhe_Rsa_With_Aes_256_Cbc_Sha,
                CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
                CipherSuiteId::Tls_Ecdhe_Rsa_With_Aes_128_Gcm_Sha256,
            ]
        );
        assert_eq!(
            unemulated_suites(&profile::OPENMV).len() + s.len(),
            profile::OPENMV.cipher_suites.len()
        );
        let g = groups(&profile::OPENMV);
        assert!(
            g.contains(&KeyExchangeAlgorithm::P256) && !g.contains(&KeyExchangeAlgorithm::X25519)
        );
        assert_eq!(unemulated_groups(&profile::OPENMV), vec![Curve::P521]);
        let p = ProfileProvider::new(&profile::OPENMV);
        assert!(!p
            .crypto()
            .supports(CryptoAlgorithm::KeyExchange(KeyExchangeAlgorithm::X25519)));
        assert!(!signature_schemes(&profile::OPENMV).contains(&DtlsScheme::Ed25519));
    }

    #[test]
    fn the_next_cookie_is_handed_out_once() {
        let p = ProfileProvider::new(&profile::OPENMV);
        p.set_next_cookie(Some([7; COOKIE_LEN]));
        let mut a = [0u8; COOKIE_LEN];
        p.random().fill(&mut a).unwrap();
        assert_eq!(a, [7; COOKIE_LEN]);
        p.random().fill(&mut a).unwrap();
        assert_ne!(a, [7; COOKIE_LEN]);
    }
}

//! Restricting rustls to what a device profile speaks.
//!
//! A device-restricted endpoint offers and accepts only the profile's
//! versions, cipher suites, groups and signature algorithms, so a handshake
//! that works with it works with the device (for the subset rustls can
//! emulate: see [`unemulated_suites`]).

use std::sync::Arc;

use devtls_pki::profile::{CipherSuite, Curve, Profile, TlsVersion};
use rustls::crypto::{aws_lc_rs, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{NamedGroup, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::alg_id;

/// A rustls crypto provider holding only what `profile` supports.
///
/// rustls implements AES-GCM and ChaCha20 ECDHE suites only, so for the
/// `openmv` profile this is the device's ECDHE AES-GCM suites; the CBC and
/// RSA key exchange suites the device also offers are listed by
/// [`unemulated_suites`].
pub fn provider(profile: &Profile) -> Arc<CryptoProvider> {
    let base = aws_lc_rs::default_provider();
    let wanted = |code: u16| profile.cipher_suites.iter().any(|s| s.code == code);
    let cipher_suites = aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .copied()
        .filter(|s| wanted(u16::from(s.suite())))
        .collect();
    let kx_groups = aws_lc_rs::ALL_KX_GROUPS
        .iter()
        .copied()
        .filter(|g| group_curve(g.name()).is_some_and(|c| profile.groups.contains(&c)))
        .collect();
    Arc::new(CryptoProvider {
        cipher_suites,
        kx_groups,
        signature_verification_algorithms: signature_algorithms(
            profile,
            base.signature_verification_algorithms,
        ),
        ..base
    })
}

/// The protocol versions rustls should enable for `profile` over TCP.
pub fn tls_versions(profile: &Profile) -> Vec<&'static SupportedProtocolVersion> {
    let mut versions = Vec::new();
    if profile.speaks(TlsVersion::Tls13) {
        versions.push(&rustls::version::TLS13);
    }
    if profile.speaks(TlsVersion::Tls12) {
        versions.push(&rustls::version::TLS12);
    }
    versions
}

/// The profile's cipher suites a rustls endpoint cannot offer (CBC modes and
/// RSA key exchange): a device-restricted devtls peer is a faithful subset of
/// the device, not all of it.
pub fn unemulated_suites(profile: &Profile) -> Vec<&'static CipherSuite> {
    let profile_suites: &'static [CipherSuite] = profile.cipher_suites;
    profile_suites
        .iter()
        .filter(|s| {
            !aws_lc_rs::ALL_CIPHER_SUITES
                .iter()
                .any(|r| u16::from(r.suite()) == s.code)
        })
        .collect()
}

/// The profile's name for a rustls key exchange group, if it is a plain curve.
fn group_curve(group: NamedGroup) -> Option<Curve> {
    match group {
        NamedGroup::secp256r1 => Some(Curve::P256),
        NamedGroup::secp384r1 => Some(Curve::P384),
        NamedGroup::secp521r1 => Some(Curve::P521),
        NamedGroup::X25519 => Some(Curve::X25519),
        _ => None,
    }
}

/// Drops RSA-PSS and Ed25519 from certificate and handshake signature checks
/// when the profile refuses them. The tables must be `'static` for rustls;
/// they are built once per call and leaked (a few hundred bytes per endpoint).
fn signature_algorithms(
    profile: &Profile,
    base: WebPkiSupportedAlgorithms,
) -> WebPkiSupportedAlgorithms {
    let scheme_allowed = |scheme: &SignatureScheme| match scheme {
        SignatureScheme::RSA_PSS_SHA256
        | SignatureScheme::RSA_PSS_SHA384
        | SignatureScheme::RSA_PSS_SHA512 => profile.rsa_pss,
        SignatureScheme::ED25519 | SignatureScheme::ED448 => profile.ed25519,
        _ => true,
    };
    let all: Vec<_> = base
        .all
        .iter()
        .copied()
        .filter(|alg| {
            let sig = alg.signature_alg_id();
            let key = alg.public_key_alg_id();
            let pss = [
                alg_id::RSA_PSS_SHA256,
                alg_id::RSA_PSS_SHA384,
                alg_id::RSA_PSS_SHA512,
            ]
            .contains(&sig);
            let ed = key == alg_id::ED25519;
            (profile.rsa_pss || !pss) && (profile.ed25519 || !ed)
        })
        .collect();
    let mapping: Vec<_> = base
        .mapping
        .iter()
        .filter(|(scheme, _)| scheme_allowed(scheme))
        .copied()
        .collect();
    WebPkiSupportedAlgorithms {
        all: Vec::leak(all),
        mapping: Vec::leak(mapping),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::profile;

    #[test]
    fn openmv_is_tls12_gcm_nist_groups_without_pss() {
        let p = provider(&profile::OPENMV);
        assert!(!p.cipher_suites.is_empty());
        for suite in &p.cipher_suites {
            let code = u16::from(suite.suite());
            assert!(
                profile::OPENMV.cipher_suites.iter().any(|s| s.code == code),
                "{code:04X}"
            );
        }
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert!(groups.contains(&NamedGroup::secp256r1) && !groups.contains(&NamedGroup::X25519));
        assert!(!p
            .signature_verification_algorithms
            .mapping
            .iter()
            .any(|(s, _)| *s == SignatureScheme::RSA_PSS_SHA256));
        assert_eq!(tls_versions(&profile::OPENMV).len(), 1);
        // CBC and RSA key exchange suites cannot be emulated with rustls.
        assert!(unemulated_suites(&profile::OPENMV)
            .iter()
            .any(|s| s.code == 0xC024));
        assert!(!unemulated_suites(&profile::OPENMV)
            .iter()
            .any(|s| s.code == 0xC02B));
    }

    #[test]
    fn modern_keeps_tls13_x25519_and_pss() {
        let p = provider(&profile::MODERN);
        assert!(p.kx_groups.iter().any(|g| g.name() == NamedGroup::X25519));
        assert_eq!(tls_versions(&profile::MODERN).len(), 2);
        assert!(p
            .signature_verification_algorithms
            .mapping
            .iter()
            .any(|(s, _)| *s == SignatureScheme::RSA_PSS_SHA256));
    }
}

//! Whether one certificate (or a CSR or CRL) was signed by a key: the one
//! signature check of the product, with aws-lc.

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};
use x509_parser::x509::AlgorithmIdentifier;

use crate::profile::Curve;

use super::cert::signature_info;
use super::key::key_info;
use super::{HashAlgorithm, SignatureFamily};

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

pub(super) fn cert_signed_by(cert: &X509Certificate, key: &SubjectPublicKeyInfo) -> bool {
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
pub(super) fn ecdsa_verify(
    curve: Curve,
    hash: HashAlgorithm,
    point: &[u8],
    sig: &[u8],
    data: &[u8],
) -> bool {
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

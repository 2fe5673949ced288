//! Private and public keys read into the model, without keeping or
//! printing a secret: algorithm, size or curve, and the public key derived
//! where the structure allows.

use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};

use crate::fingerprint;
use crate::profile::Curve;
use crate::sniff::KeyFormat;
use crate::Error;

use super::der::{
    bit_string_bytes, bit_string_bytes_tlv, encode, oid_string, strip_sign_byte, tlv,
};
use super::{KeyAlgorithm, KeyInfo, PrivateKeyInfo};

// ---------------------------------------------------------------------------
// Private keys

pub(super) const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
pub(super) const OID_RSA: &str = "1.2.840.113549.1.1.1";
pub(super) const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
pub(super) const OID_ED25519: &str = "1.3.101.112";
/// DER of AlgorithmIdentifier { rsaEncryption, NULL }.
pub(super) const ALG_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// DER of the OID id-ecPublicKey.
pub(super) const OID_EC_PUBLIC_KEY_DER: &[u8] =
    &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

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
pub(super) fn pkcs8_spki(der: &[u8]) -> Option<Option<Vec<u8>>> {
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

pub(super) fn pkcs8_algorithm(der: &[u8]) -> Option<KeyInfo> {
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
pub(super) fn sec1_parts(der: &[u8]) -> Option<Sec1Parts<'_>> {
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

pub(super) fn pkcs1_spki(der: &[u8]) -> Option<Vec<u8>> {
    Some(spki_der(ALG_RSA, &pkcs1_public(der)?))
}

/// RSAPublicKey { n, e } from an RSAPrivateKey { version, n, e, ... }.
pub(super) fn pkcs1_public(der: &[u8]) -> Option<Vec<u8>> {
    let (seq, _) = tlv(der)?;
    let (version, rest) = tlv(seq.content)?;
    let (n, rest) = tlv(rest)?;
    let (e, _) = tlv(rest)?;
    if seq.tag != 0x30 || version.tag != 0x02 || n.tag != 0x02 || e.tag != 0x02 {
        return None;
    }
    Some(encode(0x30, &[n.raw, e.raw].concat()))
}

pub(super) fn ec_spki(curve_oid: &[u8], point: &[u8]) -> Vec<u8> {
    let alg = encode(0x30, &[OID_EC_PUBLIC_KEY_DER, curve_oid].concat());
    spki_der(&alg, point)
}

pub(super) fn spki_der(alg: &[u8], key: &[u8]) -> Vec<u8> {
    let bits = encode(0x03, &[&[0u8][..], key].concat());
    encode(0x30, &[alg, &bits[..]].concat())
}

/// A description of how an EncryptedPrivateKeyInfo is encrypted.
pub(super) fn encryption_scheme(der: &[u8]) -> String {
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
// Public keys

/// Reads a DER SubjectPublicKeyInfo.
pub fn key_info_from_spki(der: &[u8]) -> Result<KeyInfo, Error> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| Error::Malformed(format!("not a readable public key ({e})")))?;
    Ok(key_info(&spki))
}

pub(super) fn key_info(spki: &SubjectPublicKeyInfo) -> KeyInfo {
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

pub(super) fn describe_key(oid: &str, curve_oid: Option<String>, key: Option<&[u8]>) -> KeyInfo {
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

pub(super) fn rsa_description(name: &str, bits: Option<u32>) -> String {
    match bits {
        Some(bits) => format!("{name} {bits}"),
        None => name.to_string(),
    }
}

pub(super) fn curve_from_oid(oid: &str) -> Option<Curve> {
    Some(match oid {
        "1.2.840.10045.3.1.7" => Curve::P256,
        "1.3.132.0.34" => Curve::P384,
        "1.3.132.0.35" => Curve::P521,
        "1.3.132.0.10" => Curve::Secp256k1,
        _ => return None,
    })
}

/// Bit length of the modulus in an RSAPublicKey { n, e }.
pub(super) fn rsa_modulus_bits(key: &[u8]) -> Option<u32> {
    let (seq, _) = tlv(key)?;
    let (n, _) = tlv(seq.content)?;
    if seq.tag != 0x30 || n.tag != 0x02 {
        return None;
    }
    let digits = strip_sign_byte(n.content);
    let first = *digits.first()?;
    Some((digits.len() as u32 - 1) * 8 + (8 - first.leading_zeros()))
}

//! Checking a device's PKCS#10 request before its key is signed: the
//! signature, the key against the device profile (pki's rule, the one lint
//! and `fleet issue` use), and that it asks for no name the device's
//! certificate does not already carry.

use std::net::IpAddr;

use devtls_pki::keys::KeyType;
use devtls_pki::profile::Profile;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Why a CSR is refused (the text says what to change).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not a PKCS#10 request, or its signature is wrong.
    #[error("the body is not a PKCS#10 request with a valid signature ({0}); send the DER, or its base64")]
    Malformed(String),
    /// A key type the device profile refuses.
    #[error("the CSR's key: {0}")]
    Key(String),
    /// A name the device's certificate does not carry.
    #[error("the CSR asks for '{0}', a name this device's certificate does not carry; ask for no names (the service copies the device's)")]
    Name(String),
}

/// A CSR that passed: the key's SHA-256 (hex) and type.
#[derive(Debug, Clone)]
pub struct Checked {
    /// SHA-256 of the SubjectPublicKeyInfo, lower-case hex.
    pub spki_sha256: String,
    /// The key type.
    pub key_type: KeyType,
}

/// Reads a request body as a CSR: DER, base64 of it (EST), or PEM.
pub fn body_der(body: &[u8]) -> Vec<u8> {
    if body.first() == Some(&0x30) {
        return body.to_vec();
    }
    let text = String::from_utf8_lossy(body);
    let inner: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    crate::encode::unbase64(inner.as_bytes()).unwrap_or_default()
}

/// Checks `der` for a device whose certificate carries `dns` and `ips`.
pub fn check(
    der: &[u8],
    profile: &Profile,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<Checked, CsrError> {
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(format!(
            "{} bytes after the request",
            rest.len()
        )));
    }
    let spki = &csr.certification_request_info.subject_pki;
    let key_type = match spki.parsed() {
        Ok(PublicKey::EC(ec)) if ec.key_size() == 256 => KeyType::P256,
        Ok(PublicKey::EC(ec)) if ec.key_size() == 384 => KeyType::P384,
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() == 2048 => KeyType::Rsa2048,
        _ => {
            return Err(CsrError::Key(
                "not a P-256, P-384 or RSA 2048 key; make a P-256 key".into(),
            ))
        }
    };
    if let Some(why) = key_type.refused_by(profile) {
        return Err(CsrError::Key(why));
    }
    // After the key's type, so a weak key is named as such rather than as
    // a signature the verifier will not check.
    let info = &csr.certification_request_info;
    if !devtls_pki::inspect::signature_verifies(
        &info.subject_pki,
        &csr.signature_algorithm,
        &csr.signature_value.data,
        info.raw,
    ) {
        return Err(CsrError::Malformed(
            "the CSR's signature does not verify with its own key".into(),
        ));
    }
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) if dns.iter().any(|x| x.eq_ignore_ascii_case(d)) => {}
                    GeneralName::IPAddress(raw)
                        if ip_of(raw).is_some_and(|ip| ips.contains(&ip)) => {}
                    // The device's text, unescaped here: every log line
                    // escapes it (devtls fleet serve's log, `log_field`).
                    other => return Err(CsrError::Name(other.to_string())),
                }
            }
        }
    }
    Ok(Checked {
        spki_sha256: devtls_pki::fingerprint::sha256_hex(spki.raw),
        key_type,
    })
}

fn ip_of(raw: &[u8]) -> Option<IpAddr> {
    match raw.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(raw).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(raw).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::issue::{self, CertSpec, Role};
    use devtls_pki::keys::PrivateKey;

    #[test]
    fn a_csr_whose_signature_does_not_verify_is_refused() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let der = issue::csr(&CertSpec::new("cam-1", Role::Client, 30), &key)
            .unwrap()
            .der;
        let profile = &devtls_pki::profile::OPENMV;
        assert!(check(&der, profile, &[], &[]).is_ok());
        // The signature is the DER's last bytes: change one.
        let mut bad = der.clone();
        let last = bad.len() - 2;
        bad[last] ^= 0x01;
        match check(&bad, profile, &[], &[]) {
            Err(CsrError::Malformed(why)) => assert!(why.contains("signature"), "{why}"),
            other => panic!("accepted a broken signature: {:?}", other.map(|_| ())),
        }
    }
}

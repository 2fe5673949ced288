//! Certificates, CSRs and CRLs read into the model: their fields, names,
//! extensions and signature algorithm.

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{CertificateRevocationList, FromDer};
use x509_parser::x509::{AlgorithmIdentifier, X509Name};

use crate::fingerprint;
use crate::Error;

use super::der::{oid_string, strip_sign_byte, tlv};
use super::key::{key_info, OID_ED25519, OID_RSA_PSS};
use super::signature::{cert_signed_by, signature_verifies};
use super::{
    BasicConstraints, CertInfo, CrlInfo, CsrInfo, ExtendedKeyUsage, HashAlgorithm, KeyUsage,
    Policies, Present, Revoked, Sans, SignatureFamily, SignatureInfo, Validity,
};

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

pub(super) fn signature_info(alg: &AlgorithmIdentifier) -> SignatureInfo {
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
pub(super) fn pss_hash(params: &[u8]) -> Option<HashAlgorithm> {
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

pub(super) fn name_string(name: &X509Name) -> String {
    name.to_string()
}

pub(super) fn common_names(name: &X509Name) -> Vec<String> {
    name.iter_common_name()
        .map(|cn| match cn.as_str() {
            Ok(s) => s.to_string(),
            Err(_) => String::from_utf8_lossy(cn.as_slice()).into_owned(),
        })
        .collect()
}

pub(super) fn sans_of(names: &[GeneralName]) -> Sans {
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

pub(super) fn ip_string(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => format!("(invalid address {})", hex::encode(bytes)),
    }
}

pub(super) fn key_usage_names(flags: u16) -> Vec<String> {
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

//! Certificate revocation lists: a CA's signed list of the serials it has revoked.
//!
//! mbedTLS, OpenSSL and rustls-webpki all read RFC 5280 v2 CRLs in DER, so a
//! device gateway can cut off one stolen device identity without touching the rest.

use std::str::FromStr;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use crate::issue::Authority;
use crate::Error;

/// Why a certificate was revoked (the RFC 5280 reason codes a fleet uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No reason given.
    Unspecified,
    /// The device's key was stolen or exposed.
    KeyCompromise,
    /// The device was re-keyed; the old certificate is no longer needed.
    Superseded,
    /// The device was retired.
    CessationOfOperation,
    /// The device changed owner or purpose.
    AffiliationChanged,
    /// The device is no longer allowed to connect.
    PrivilegeWithdrawn,
}

impl Reason {
    /// Every reason, in the order `--help` lists them.
    pub const ALL: [Reason; 6] = [
        Reason::Unspecified,
        Reason::KeyCompromise,
        Reason::Superseded,
        Reason::CessationOfOperation,
        Reason::AffiliationChanged,
        Reason::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 spelling (`keyCompromise`), also the command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "keyCompromise",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessationOfOperation",
            Reason::AffiliationChanged => "affiliationChanged",
            Reason::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }

    fn rcgen(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

impl FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace(['-', '_', ' '], "");
        Reason::ALL
            .into_iter()
            .find(|r| r.name().to_ascii_lowercase() == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown revocation reason '{s}': use one of {}",
                    Reason::ALL.map(Reason::name).join(", ")
                )
            })
    }
}

/// One revoked certificate.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The certificate's serial number as big-endian bytes (as in the certificate).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// Why.
    pub reason: Reason,
}

/// Signs a DER CRL listing `revoked`, valid from `this_update` until `next_update`.
///
/// `number` is the CRL number, which must grow with every CRL the CA issues
/// so relying parties can tell the newer list.
pub fn sign(
    ca: &Authority,
    revoked: &[Revoked],
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Vec<u8>, Error> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&r.serial),
                revocation_time: r.at,
                reason_code: Some(r.reason.rcgen()),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(ca.issuer())
        .map_err(|e| Error::Crypto(format!("could not sign the CRL: {}", ca.key().explain(e))))?;
    Ok(crl.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{self_signed_ca, CertSpec, Role};
    use crate::keys::{KeyType, PrivateKey};
    use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

    #[test]
    fn crl_lists_the_serials_and_verifies_with_the_ca_key() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let ca_cert = self_signed_ca(&CertSpec::new("Fleet CA", Role::Ca, 365), &key).unwrap();
        let ca = Authority::load(&ca_cert.der, key).unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let der = sign(
            &ca,
            &[Revoked {
                serial: vec![0x41, 0x02, 0x03],
                at: now,
                reason: Reason::KeyCompromise,
            }],
            7,
            now,
            now + time::Duration::days(7),
        )
        .unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        let serials: Vec<_> = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        assert_eq!(serials, vec![vec![0x41, 0x02, 0x03]]);
        let (_, ca_parsed) = X509Certificate::from_der(&ca_cert.der).unwrap();
        assert!(crate::inspect::signature_verifies(
            ca_parsed.public_key(),
            &crl.signature_algorithm,
            &crl.signature_value.data,
            crl.tbs_cert_list.as_ref(),
        ));
    }

    #[test]
    fn reasons_parse_in_any_spelling() {
        assert_eq!(
            "key-compromise".parse::<Reason>().unwrap(),
            Reason::KeyCompromise
        );
        assert!("stolen".parse::<Reason>().is_err());
    }
}

//! Making certificates and CSRs: self-signed, CA-signed, and signing requests.
//!
//! Every certificate gets a random 16-byte serial and explicit validity dates
//! (rcgen's defaults are a key-derived serial and 1975–4096), and the extended
//! key usage of its role, because mbedTLS enforces EKU.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateSigningRequestDer;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::keys::{KeyType, PrivateKey};
use crate::signer::CaKey;
use crate::Error;

/// What a certificate is for: decides its key usage and extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A TLS server (EKU serverAuth).
    Server,
    /// A TLS client, e.g. a device in mTLS (EKU clientAuth).
    Client,
    /// Both server and client (EKU serverAuth and clientAuth).
    Both,
    /// A certificate authority that signs other certificates.
    Ca,
}

impl Role {
    /// The file stem the device guide uses for this role (`server`, `client`).
    pub fn stem(self) -> &'static str {
        match self {
            Role::Server | Role::Both => "server",
            Role::Client => "client",
            Role::Ca => "ca",
        }
    }
}

/// Everything that goes into a new certificate besides the keys.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// The subject common name.
    pub common_name: String,
    /// DNS names for the subjectAltName.
    pub dns: Vec<String>,
    /// IP addresses for the subjectAltName.
    pub ips: Vec<IpAddr>,
    /// What the certificate is for.
    pub role: Role,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl CertSpec {
    /// A spec valid from one minute ago (clock skew) for `days` days.
    pub fn new(common_name: impl Into<String>, role: Role, days: u32) -> Self {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        CertSpec {
            common_name: common_name.into(),
            dns: Vec::new(),
            ips: Vec::new(),
            role,
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(days as i64),
        }
    }

    fn params(&self, key_type: KeyType) -> Result<CertificateParams, Error> {
        let mut params = CertificateParams::default();
        params.serial_number = Some(random_serial()?);
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, self.common_name.as_str());
        params.distinguished_name = name;
        for dns in &self.dns {
            let checked = crate::names::dns_name(dns)
                .map_err(|why| Error::Malformed(format!("DNS name '{dns}' {why}")))?;
            let value = checked.as_str().try_into().map_err(|_| {
                Error::Unsupported(format!("'{dns}' is not a DNS name that fits a certificate"))
            })?;
            params.subject_alt_names.push(SanType::DnsName(value));
        }
        params
            .subject_alt_names
            .extend(self.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        // RSA keys also serve the device's RSA key exchange suites, which encrypt to the key.
        let mut usages = vec![KeyUsagePurpose::DigitalSignature];
        if key_type == KeyType::Rsa2048 {
            usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        match self.role {
            Role::Server => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth],
            Role::Client => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
            Role::Both => {
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            }
            Role::Ca => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
            }
        }
        params.key_usages = usages;
        Ok(params)
    }
}

/// A certificate devtls made.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The DER encoding (what the device loads).
    pub der: Vec<u8>,
    /// The serial number: the content bytes of its DER INTEGER.
    pub serial: Vec<u8>,
}

impl Certificate {
    /// Signs `params` with `sign`, keeping the serial the params carry.
    fn make(
        params: CertificateParams,
        sign: impl FnOnce(CertificateParams) -> Result<rcgen::Certificate, rcgen::Error>,
    ) -> Result<Self, Error> {
        let serial = params
            .serial_number
            .as_ref()
            .map(SerialNumber::to_bytes)
            .unwrap_or_default();
        let cert = sign(params).map_err(crypto)?;
        Ok(Certificate {
            der: cert.der().to_vec(),
            serial,
        })
    }

    /// The PEM encoding (what the PC uses).
    pub fn pem(&self) -> String {
        crate::convert::pem_encode("CERTIFICATE", self.der.clone())
    }
}

/// A certificate authority able to sign: its certificate and key. The key
/// is a [`CaKey`]: in memory, or in a PKCS#11 token; every certificate and
/// CRL is signed through it.
pub struct Authority {
    issuer: Issuer<'static, CaKey>,
    /// The CA certificate's DER.
    pub cert_der: Vec<u8>,
}

impl Authority {
    /// Loads a CA from its DER certificate and its key. A key that does not
    /// belong to the certificate is refused ([`Error::KeyMismatch`]): what it
    /// signed would verify against nothing.
    pub fn load(cert_der: &[u8], key: PrivateKey) -> Result<Self, Error> {
        Authority::with_key(cert_der, CaKey::File(key))
    }

    /// Like [`Authority::load`], for a key anywhere a [`CaKey`] can be
    /// (such as a PKCS#11 token).
    pub fn with_key(cert_der: &[u8], key: CaKey) -> Result<Self, Error> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| Error::Malformed(format!("the CA certificate does not parse: {e}")))?;
        if cert.public_key().raw != key.public_key_der().as_slice() {
            return Err(Error::KeyMismatch(
                "the CA key does not belong to the CA certificate (their public keys differ)"
                    .into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.to_vec().into(), key)
            .map_err(|e| Error::Malformed(format!("the CA certificate does not parse: {e}")))?;
        Ok(Authority {
            issuer,
            cert_der: cert_der.to_vec(),
        })
    }

    /// The key this CA signs with.
    pub fn key(&self) -> &CaKey {
        self.issuer.key()
    }

    /// The rcgen issuer, for signing CRLs inside this crate.
    pub(crate) fn issuer(&self) -> &Issuer<'static, CaKey> {
        &self.issuer
    }

    /// Signs a certificate for `subject_key` (an SPKI-carrying public key) from the spec.
    pub fn sign(&self, spec: &CertSpec, subject_key: &PrivateKey) -> Result<Certificate, Error> {
        let mut params = spec.params(subject_key.key_type())?;
        params.use_authority_key_identifier_extension = true;
        Certificate::make(params, |p| p.signed_by(subject_key, &self.issuer))
            .map_err(|e| self.explain(e))
    }

    /// A signing failure with the token's reason, when the key is in one.
    fn explain(&self, e: Error) -> Error {
        match (&e, self.key()) {
            (Error::Crypto(_), CaKey::Token(key)) => key.take_error().map_or(e, Error::Crypto),
            _ => e,
        }
    }

    /// Signs a CSR: the public key and the requested SANs come from the CSR,
    /// everything else (validity, role, serial) from the spec. The CSR's own
    /// signature is checked first.
    pub fn sign_csr(&self, csr_der: &[u8], spec: &CertSpec) -> Result<Certificate, Error> {
        let mut csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| {
                    Error::Malformed(format!(
                        "the CSR does not parse or its signature is wrong: {e}"
                    ))
                })?;
        let requested_sans = std::mem::take(&mut csr.params.subject_alt_names);
        let requested_name = csr.params.distinguished_name.clone();
        // The CSR does not carry a key type devtls knows; the role's usages only differ for RSA.
        let mut params = spec.params(KeyType::P256)?;
        if params.subject_alt_names.is_empty() {
            params.subject_alt_names = requested_sans;
        }
        if spec.common_name.is_empty() {
            params.distinguished_name = requested_name;
        }
        params.use_authority_key_identifier_extension = true;
        Certificate::make(params, |params| {
            csr.params = params;
            csr.signed_by(&self.issuer)
        })
        .map_err(|e| self.explain(e))
    }
}

/// Makes a self-signed end-entity certificate.
///
/// It carries no CA flag, so it is accepted as its own trust anchor by the
/// device (mbedTLS trusts a self-signed leaf that is in its CA list), OpenSSL
/// and GnuTLS, and rustls-webpki does not reject it as a CA used as a leaf.
pub fn self_signed(spec: &CertSpec, key: &PrivateKey) -> Result<Certificate, Error> {
    let params = spec.params(key.key_type())?;
    Certificate::make(params, |p| p.self_signed(key))
}

/// Makes a self-signed CA certificate (basicConstraints CA, pathlen 0).
pub fn self_signed_ca(spec: &CertSpec, key: &PrivateKey) -> Result<Certificate, Error> {
    let spec = CertSpec {
        role: Role::Ca,
        ..spec.clone()
    };
    self_signed(&spec, key)
}

/// Makes a self-signed root CA with no path length limit, able to sign
/// intermediates (a pathlen 0 root is refused by mbedTLS above an intermediate).
pub fn self_signed_root(spec: &CertSpec, key: &PrivateKey) -> Result<Certificate, Error> {
    let spec = CertSpec {
        role: Role::Ca,
        ..spec.clone()
    };
    let mut params = spec.params(key.key_type())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Certificate::make(params, |p| p.self_signed(key))
}

/// Makes a self-signed CA certificate (basicConstraints CA, pathlen 0) for
/// a key wherever it is (e.g. in a token): the key signs its own certificate.
pub fn self_signed_ca_with(spec: &CertSpec, key: &CaKey) -> Result<Certificate, Error> {
    let spec = CertSpec {
        role: Role::Ca,
        ..spec.clone()
    };
    let params = spec.params(key.key_type())?;
    Certificate::make(params, |p| p.self_signed(key))
}

/// A certificate signing request devtls made.
#[derive(Debug, Clone)]
pub struct Csr {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// The PEM encoding (`BEGIN CERTIFICATE REQUEST`), what CAs' web forms take.
    pub pem: String,
}

/// Makes a CSR for the spec's names, signed by `key`. Validity and role are not part of a CSR.
pub fn csr(spec: &CertSpec, key: &PrivateKey) -> Result<Csr, Error> {
    let mut params = spec.params(key.key_type())?;
    params.serial_number = None;
    let request = params.serialize_request(key).map_err(crypto)?;
    Ok(Csr {
        der: request.der().to_vec(),
        pem: request.pem().map_err(crypto)?,
    })
}

/// A positive 16-byte serial number (RFC 5280 allows up to 20 bytes): the
/// issuing time in milliseconds, then 80 random bits.
///
/// The random part is what makes serials unguessable (the CA/Browser Forum
/// asks for at least 64 bits from a CSPRNG). The time prefix makes serials
/// issued later sort later, so an index of them (the fleet inventory's)
/// grows at its end instead of at random places: random serials made each
/// insert touch a different page, which cost `fleet issue` ~5% at 100,000
/// devices.
///
/// The random bytes come from AWS-LC's generator, the one that makes the
/// keys, so no second generator is started.
pub fn random_serial() -> Result<SerialNumber, Error> {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let millis = u64::try_from(millis).unwrap_or(0).to_be_bytes();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis[2..]);
    aws_lc_rs::rand::fill(&mut bytes[6..])
        .map_err(|_| Error::Crypto("the system's random source failed".into()))?;
    // Clear the top bit so the INTEGER is positive, and set the next one so it
    // never shrinks to fewer bytes (some parsers mishandle short serials);
    // the time needs 41 of the 48 bits until the year 2039 and 46 until 4199.
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn crypto(e: rcgen::Error) -> Error {
    Error::Crypto(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn self_signed_server_has_san_eku_serial_and_dates() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new("openmv", Role::Server, 365);
        spec.dns.push("openmv".into());
        spec.ips.push("192.168.1.50".parse().unwrap());
        let a = self_signed(&spec, &key).unwrap();
        let b = self_signed(&spec, &key).unwrap();
        let (_, cert) = X509Certificate::from_der(&a.der).unwrap();
        let (_, other) = X509Certificate::from_der(&b.der).unwrap();
        assert_ne!(
            cert.raw_serial(),
            other.raw_serial(),
            "serials must be random"
        );
        assert_eq!(
            a.serial,
            cert.raw_serial(),
            "the serial reported is the one encoded"
        );
        assert_eq!(a.serial.len(), 16);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86400;
        assert_eq!(days, 365);
        assert!(cert
            .basic_constraints()
            .unwrap()
            .is_none_or(|bc| !bc.value.ca));
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 2);
    }

    #[test]
    fn serials_are_positive_16_bytes_with_80_random_bits_and_later_ones_sort_later() {
        let serial = || random_serial().unwrap().to_bytes();
        let first = serial();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (second, third) = (serial(), serial());
        for serial in [&first, &second, &third] {
            assert_eq!(serial.len(), 16);
            assert_eq!(serial[0] & 0xc0, 0x40, "positive, never shorter");
        }
        assert!(first < second, "{first:02x?} !< {second:02x?}");
        assert_ne!(second[6..], third[6..], "the last 10 bytes are random");
    }

    #[test]
    fn authority_signs_certs_and_csrs() {
        let ca_key = PrivateKey::generate(KeyType::P256).unwrap();
        let ca_cert = self_signed_ca(&CertSpec::new("Fleet CA", Role::Ca, 3650), &ca_key).unwrap();
        let ca = Authority::load(&ca_cert.der, ca_key).unwrap();
        let device_key = PrivateKey::generate(KeyType::P384).unwrap();
        let spec = CertSpec::new("cam-1", Role::Client, 90);
        let cert = ca.sign(&spec, &device_key).unwrap();
        let (_, parsed) = X509Certificate::from_der(&cert.der).unwrap();
        assert_eq!(parsed.issuer().to_string(), "CN=Fleet CA");
        assert_eq!(cert.serial, parsed.raw_serial());
        let request = csr(
            &CertSpec {
                dns: vec!["cam.example.com".into()],
                ..spec.clone()
            },
            &device_key,
        )
        .unwrap();
        let from_csr = ca
            .sign_csr(&request.der, &CertSpec::new("", Role::Client, 30))
            .unwrap();
        let (_, parsed) = X509Certificate::from_der(&from_csr.der).unwrap();
        assert_eq!(parsed.subject().to_string(), "CN=cam-1");
        assert_eq!(parsed.public_key().raw, &device_key.public_key_der()[..]);
        assert_eq!(from_csr.serial, parsed.raw_serial());
    }

    #[test]
    fn a_ca_key_that_is_not_the_certificates_is_refused() {
        let ca_key = PrivateKey::generate(KeyType::P256).unwrap();
        let ca_cert = self_signed_ca(&CertSpec::new("Fleet CA", Role::Ca, 3650), &ca_key).unwrap();
        let other = PrivateKey::generate(KeyType::P256).unwrap();
        let err = Authority::load(&ca_cert.der, other).err().unwrap();
        assert!(matches!(err, Error::KeyMismatch(_)), "{err}");
    }

    #[test]
    fn bad_dns_names_are_refused_with_the_reason() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new("x", Role::Server, 30);
        spec.dns = vec!["a b".into()];
        let err = self_signed(&spec, &key).err().unwrap().to_string();
        assert!(
            err.contains("'a b'") && err.contains("contains ' '"),
            "{err}"
        );
        spec.dns = vec!["bücher.example".into()];
        let cert = self_signed(&spec, &key).unwrap();
        let (_, parsed) = X509Certificate::from_der(&cert.der).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            "[DNSName(\"xn--bcher-kva.example\")]"
        );
    }
}

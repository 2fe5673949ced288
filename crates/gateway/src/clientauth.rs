//! Devices proving themselves on an outbound route: their certificate must
//! chain to the route's `client_ca` (net's client verifier: webpki plus the
//! device's acceptance of a certificate that is itself the anchor) and, when
//! the route has a `client_crl` (e.g. from `devtls fleet crl`), must not be
//! on it. A refusal for revocation is explained with the serial and the
//! reason the CRL gives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use devtls_net::config::{Identity, ServerSettings};
use devtls_pki::profile;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use serde::Serialize;
use webpki::RevocationReason;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certs::{self, CertError};

/// The client-certificate check of one route, as built from its files.
#[derive(Debug)]
pub struct ClientAuth {
    /// The verifier rustls calls.
    pub verifier: Arc<dyn ClientCertVerifier>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    crl_file: Option<PathBuf>,
}

/// A device certificate found on the CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revoked {
    /// Its serial number, hex as `devtls fleet list` and `openssl x509 -serial` print it.
    pub serial: String,
    /// The CRL's reason (RFC 5280 name, e.g. `keyCompromise`).
    pub reason: String,
    /// The CRL file that lists it.
    pub crl: String,
}

fn unusable(path: &Path, message: String) -> CertError {
    CertError::Unusable {
        files: path.display().to_string(),
        message,
    }
}

impl ClientAuth {
    /// Reads `client_ca` and `crl` (PEM or DER). `shown` is the certificate
    /// the route shows (net's server settings carry it; it is not checked here).
    pub fn load(
        client_ca: &Path,
        crl: Option<&Path>,
        shown: Arc<CertifiedKey>,
    ) -> Result<Self, CertError> {
        let cas = devtls_net::config::certificates(&certs::read(client_ca)?)
            .map_err(|e| unusable(client_ca, e.to_string()))?;
        let crls = match crl {
            None => Vec::new(),
            Some(path) => {
                let crls = devtls_net::config::crls(&certs::read(path)?)
                    .map_err(|e| unusable(path, e.to_string()))?;
                for c in &crls {
                    webpki::BorrowedCertRevocationList::from_der(c).map_err(|e| {
                        unusable(
                            path,
                            format!(
                                "not a usable CRL ({e:?}); write it again with `devtls fleet crl`"
                            ),
                        )
                    })?;
                }
                crls
            }
        };
        let mut settings = ServerSettings::new(Identity { certified: shown });
        settings.client_ca = Some(cas);
        settings.crls = crls.clone();
        settings.profile = profile::DEFAULT;
        let verifier = devtls_net::tls::server::client_verifier(&settings)
            .map_err(|e| unusable(crl.unwrap_or(client_ca), e.to_string()))?
            .ok_or_else(|| unusable(client_ca, "holds no certificate".into()))?;
        Ok(ClientAuth {
            verifier,
            crls,
            crl_file: crl.map(Path::to_path_buf),
        })
    }

    /// Whether `leaf` is on the CRL, with its serial and the reason.
    pub fn revoked(&self, leaf: &CertificateDer<'_>) -> Option<Revoked> {
        let (_, cert) = X509Certificate::from_der(leaf).ok()?;
        let serial = cert.raw_serial();
        self.crls.iter().find_map(|der| {
            let crl = webpki::CertRevocationList::from(
                webpki::BorrowedCertRevocationList::from_der(der).ok()?,
            );
            let entry = crl.find_serial(serial).ok()??;
            Some(Revoked {
                serial: serial
                    .iter()
                    .skip_while(|&&b| b == 0)
                    .map(|b| format!("{b:02X}"))
                    .collect::<String>(),
                reason: reason_name(entry.reason_code),
                crl: self
                    .crl_file
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string()),
            })
        })
    }
}

/// RFC 5280's name for a reason code (absent: `unspecified`).
fn reason_name(reason: Option<RevocationReason>) -> String {
    use RevocationReason::*;
    match reason {
        None | Some(Unspecified) => "unspecified",
        Some(KeyCompromise) => "keyCompromise",
        Some(CaCompromise) => "cACompromise",
        Some(AffiliationChanged) => "affiliationChanged",
        Some(Superseded) => "superseded",
        Some(CessationOfOperation) => "cessationOfOperation",
        Some(CertificateHold) => "certificateHold",
        Some(RemoveFromCrl) => "removeFromCRL",
        Some(PrivilegeWithdrawn) => "privilegeWithdrawn",
        Some(AaCompromise) => "aACompromise",
    }
    .to_string()
}

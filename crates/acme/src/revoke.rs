//! `revoke`: asks the CA to revoke a certificate, with the account that
//! ordered it.

use std::path::{Path, PathBuf};

use instant_acme::{RevocationReason, RevocationRequest};
use rustls_pki_types::CertificateDer;

use crate::account::{self, NewAccountOptions};
use crate::lineage;
use crate::Error;

/// A reason's spelling (RFC 5280 names) to its code.
pub fn reason(name: &str) -> Result<RevocationReason, Error> {
    Ok(match name {
        "unspecified" => RevocationReason::Unspecified,
        "keyCompromise" => RevocationReason::KeyCompromise,
        "affiliationChanged" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessationOfOperation" => RevocationReason::CessationOfOperation,
        other => {
            return Err(Error::Input(format!(
                "--reason {other}: use unspecified, keyCompromise, affiliationChanged, superseded or cessationOfOperation"
            )))
        }
    })
}

/// The certificate to revoke: a certificate file (PEM or DER; the first
/// certificate of a fullchain) or a `live/NAME` folder.
pub fn read_cert(path: &Path) -> Result<Vec<u8>, Error> {
    let file = if path.is_dir() {
        path.join("cert.der")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
    let sniffed = devtls_pki::sniff::sniff(&bytes)
        .map_err(|e| Error::Input(format!("{}: {e}", file.display())))?;
    let first = sniffed.certificates().next().map(|i| i.der.clone());
    first.ok_or_else(|| {
        Error::Input(format!(
            "{}: holds no certificate; give cert.pem, cert.der or live/NAME",
            file.display()
        ))
    })
}

/// The lineage settings of the version holding `der`, if it is one of DIR's.
fn lineage_of(dir: &Path, der: &[u8]) -> Result<Option<lineage::Config>, Error> {
    for path in lineage::configs(dir)? {
        let config = lineage::read_config(&path)?;
        let archive = dir.join("archive").join(&config.name);
        let Ok(versions) = std::fs::read_dir(&archive) else {
            continue;
        };
        for v in versions.filter_map(|e| e.ok()) {
            if std::fs::read(v.path().join("cert.der")).is_ok_and(|c| c == der) {
                return Ok(Some(config));
            }
        }
    }
    Ok(None)
}

/// Revokes `cert`; the CA and account come from the lineage that holds it,
/// else from `server` (with `server_ca`), else from DIR's only account.
pub async fn revoke(
    dir: &Path,
    cert: &Path,
    why: Option<RevocationReason>,
    server: Option<&str>,
    server_ca: Option<PathBuf>,
) -> Result<String, Error> {
    let der = read_cert(cert)?;
    let (url, ca) = match (lineage_of(dir, &der)?, server) {
        (_, Some(s)) => (crate::server::directory_url(s)?, server_ca),
        (Some(config), None) => (config.server, server_ca.or(config.server_ca)),
        (None, None) => {
            let accounts = account::list(dir)?;
            match accounts.as_slice() {
                [(_, only)] => (only.server.clone(), server_ca),
                [] => {
                    return Err(Error::Input(format!(
                        "{}: no ACME account here; give the --dir that ordered it",
                        dir.display()
                    )))
                }
                _ => {
                    return Err(Error::Input(
                        "several accounts in --dir: say which CA with --server".into(),
                    ))
                }
            }
        }
    };
    if !account::path(dir, &url).exists() {
        return Err(Error::Input(format!(
            "{}: no account for {url}; give the --dir that ordered it",
            dir.display()
        )));
    }
    let session = account::open(dir, &url, ca.as_deref(), &NewAccountOptions::default()).await?;
    let certificate = CertificateDer::from(der.clone());
    nonce_retry!(session.account.revoke(&RevocationRequest {
        certificate: &certificate,
        reason: why.clone()
    }))?;
    Ok(url)
}

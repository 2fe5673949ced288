//! The certificates the gateway shows, read from files and reloaded when
//! the files change (a renewal by `devtls acme renew` or certbot needs no
//! restart). A new file that cannot be used is refused with a message and
//! the certificate in use is kept.

use std::path::Path;
use std::sync::Arc;

use devtls_net::config::Identity;
use devtls_net::report::CertSummary;
use devtls_pki::profile::Profile;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::CertFiles;
use crate::watch::Watched;

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file cannot be read.
    #[error("{path}: cannot be read ({error}); check the path and its permissions")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file does not hold something usable, or cert and key do not match.
    #[error("{files}: {message}")]
    Unusable {
        /// The file(s) concerned.
        files: String,
        /// What is wrong and the fix.
        message: String,
    },
}

/// Reads a file for the gateway; the error names it.
pub fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|error| CertError::Read {
        path: path.display().to_string(),
        error,
    })
}

/// Reads and checks a certificate chain and its key for `profile`.
pub fn load(files: &CertFiles, profile: &Profile) -> Result<Identity, CertError> {
    let cert = read(&files.cert)?;
    let key = read(&files.key)?;
    Identity::from_bytes(&cert, &key, profile).map_err(|e| CertError::Unusable {
        files: format!("{} + {}", files.cert.display(), files.key.display()),
        message: e.to_string(),
    })
}

/// What a check for changed files found.
#[derive(Debug)]
pub enum Reload {
    /// The new certificate is in use for new connections.
    Reloaded {
        /// Its leaf.
        leaf: Option<CertSummary>,
    },
    /// The new files cannot be used; the old certificate stays.
    Refused(CertError),
}

/// A route's certificate, swapped atomically when its files change.
#[derive(Debug)]
pub struct ReloadableCert {
    files: CertFiles,
    watched: Watched<CertifiedKey, CertError>,
}

impl ReloadableCert {
    /// Reads the files now; an unusable file is an error (nothing to keep yet).
    pub fn load(files: &CertFiles, profile: &'static Profile) -> Result<Self, CertError> {
        let f = files.clone();
        let watched = Watched::new(vec![files.cert.clone(), files.key.clone()], move || {
            load(&f, profile).map(|identity| identity.certified)
        })?;
        Ok(ReloadableCert {
            files: files.clone(),
            watched,
        })
    }

    /// The certificate in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.watched.current()
    }

    /// Re-reads the files if they changed since last looked at. A change is
    /// reported once: a refused file is not retried until it changes again.
    pub fn poll(&self) -> Option<Reload> {
        Some(match self.watched.poll()? {
            Ok(certified) => Reload::Reloaded {
                leaf: certified
                    .cert
                    .first()
                    .and_then(|c| CertSummary::from_der(c)),
            },
            Err(e) => Reload::Refused(e),
        })
    }

    /// The files this certificate is read from.
    pub fn files(&self) -> &CertFiles {
        &self.files
    }
}

/// The rustls resolver of one route: whatever certificate is current.
#[derive(Debug)]
pub struct RouteCert(pub Arc<ReloadableCert>);

impl ResolvesServerCert for RouteCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

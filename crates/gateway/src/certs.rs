//! The certificates the gateway shows, read from files and reloaded when
//! the files change (a renewal by `devtls acme renew` or certbot needs no
//! restart). A new file that cannot be used is refused with a message and
//! the certificate in use is kept.

use std::path::Path;
use std::sync::Arc;

use devtls_net::config::Identity;
use devtls_net::report::CertSummary;
use devtls_pki::files::{read_regular, ReadError, MAX_INPUT};
use devtls_pki::profile::Profile;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::CertFiles;
use crate::watch::Watched;

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file cannot be read: missing, unreadable, over the size limit,
    /// or not a regular file (a FIFO, a device, a folder).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file does not hold something usable, or cert and key do not match.
    #[error("{files}: {message}")]
    Unusable {
        /// The file(s) concerned.
        files: String,
        /// What is wrong and the fix.
        message: String,
    },
}

/// Reads a file for the gateway, at start and on every reload; the error
/// names it. Bounded and never blocking: at most [`MAX_INPUT`] bytes of a
/// regular file; a FIFO, device or folder put in place of a certificate is
/// refused at once, so the watcher goes on to the next change.
pub fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    Ok(read_regular(path, MAX_INPUT)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Polls `w` on another thread: `None` when the poll did not return
    /// within 5 s (a reload blocked on the file).
    fn poll_bounded(
        w: &Arc<Watched<Vec<u8>, CertError>>,
    ) -> Option<Option<Result<Arc<Vec<u8>>, CertError>>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = w.clone();
        std::thread::spawn(move || {
            let _ = tx.send(w.poll());
        });
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// A FIFO, a 1 GiB file and a folder put where a certificate was are
    /// refused at once, the value in use is kept, and the next good file is
    /// picked up.
    #[cfg(target_os = "linux")]
    #[test]
    fn every_reload_is_bounded_and_the_watcher_survives_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, b"first").unwrap();
        let p = path.clone();
        let w = Arc::new(Watched::new(vec![path.clone()], move || read(&p).map(Arc::new)).unwrap());
        let replace = |make: &dyn Fn(&Path)| {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir(&path);
            make(&path);
        };
        let fifo = |p: &Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        };
        let huge = |p: &Path| std::fs::File::create(p).unwrap().set_len(1 << 30).unwrap();
        let folder = |p: &Path| std::fs::create_dir(p).unwrap();
        for (bad, what) in [
            (&fifo as &dyn Fn(&Path), "is a FIFO"),
            (&huge, "MiB limit"),
            (&folder, "is a folder"),
        ] {
            replace(bad);
            let polled = poll_bounded(&w).expect("the reload returned instead of blocking");
            let e = polled
                .expect("a change is seen")
                .expect_err("a bad file is refused");
            assert!(e.to_string().contains(what), "{e}");
            assert_eq!(*w.current(), b"first", "the value in use stays");
            replace(&|p: &Path| std::fs::write(p, b"next").unwrap());
            let polled = poll_bounded(&w).expect("the watcher still works");
            assert_eq!(*polled.unwrap().unwrap(), b"next");
            replace(&|p: &Path| std::fs::write(p, b"first").unwrap());
            assert!(poll_bounded(&w).unwrap().unwrap().is_ok());
        }
    }
}

//! The service keeps its own certificate alive: the one in `fleet/service/`
//! (issued by the fleet CA, [`crate::identity`]) is issued again, with the
//! names it carries, once two thirds of its lifetime have passed, written
//! with one commit point, and handed to every handshake that starts after
//! it ([`OwnCert`] is the TLS layer's certificate resolver). Connections
//! already open keep going: a certificate is only read at a handshake.
//! docs/renewal.md, "The service's own certificate".
//!
//! Replacing the pair on disk: both new files are written and synced as
//! `server.der.new` and `server.key.der.new`; the rename of
//! `server.der.new` onto `server.der` is the commit; then the key's rename.
//! [`recover`] finishes or undoes a replacement a crash interrupted, before
//! the pair is loaded (the rule `renew.py` applies on the device).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use devtls_net::config::Identity;
use devtls_pki::files::{self, Output};
use devtls_pki::issue::Authority;
use devtls_pki::profile::Profile;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{self, IdentityError, CERT, DIR, KEY};

/// The longest the watcher sleeps before looking at the certificate again.
const LONGEST_WAIT: i64 = 3600;
/// How long after a failed renewal it tries again.
const RETRY: i64 = 60;

/// The certificate every new handshake presents; replaced in place.
#[derive(Debug)]
pub struct OwnCert(RwLock<Arc<CertifiedKey>>);

impl OwnCert {
    /// Starts with `identity`.
    pub fn new(identity: &Identity) -> Arc<OwnCert> {
        Arc::new(OwnCert(RwLock::new(identity.certified.clone())))
    }

    /// The certificate handshakes present now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// From the next handshake on, present `identity`.
    pub fn replace(&self, identity: &Identity) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = identity.certified.clone();
    }
}

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// When a certificate is due for renewal (Unix seconds): two thirds into
/// its lifetime, as for the devices' default. An unreadable one is due now.
pub fn due_at(cert_der: &[u8]) -> i64 {
    match validity(cert_der) {
        Some((from, until)) => from + (until - from) * 2 / 3,
        None => 0,
    }
}

fn new_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

fn rename(from: &Path, to: &Path) -> Result<(), IdentityError> {
    std::fs::rename(from, to).map_err(|e| devtls_pki::Error::io(from, e).into())
}

fn remove(path: &Path) -> Result<(), IdentityError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(devtls_pki::Error::io(path, e).into())
        }
        _ => Ok(()),
    }
}

/// Makes renames in `dir` durable (a no-op where folders cannot be opened).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Finishes or undoes a replacement of the pair in `dir` (`fleet/service/`)
/// that a crash interrupted: the key's `.new` file alone means the commit
/// (the certificate's rename) happened, so it is renamed into place; both
/// `.new` files, or the certificate's alone, mean it did not, so they are
/// removed and the old pair stays.
pub fn recover(dir: &Path) -> Result<(), IdentityError> {
    let (cert, key) = (dir.join(CERT), dir.join(KEY));
    let (cert_new, key_new) = (new_name(&cert), new_name(&key));
    if key_new.exists() && !cert_new.exists() {
        rename(&key_new, &key)?;
    } else {
        remove(&key_new)?;
        remove(&cert_new)?;
    }
    sync_dir(dir);
    Ok(())
}

/// What [`renew`] made.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The identity to serve with from now on.
    pub identity: Identity,
    /// The new certificate's serial (hex).
    pub serial: String,
    /// Its end of validity, Unix seconds.
    pub not_after: i64,
}

/// Issues the service's certificate in `fleet_dir/service/` again with the
/// names it carries, replaces the pair on disk (one commit point, see the
/// module's documentation) and returns the new identity.
pub fn renew(
    fleet_dir: &Path,
    ca: &Authority,
    profile: &Profile,
) -> Result<Renewed, IdentityError> {
    let dir = fleet_dir.join(DIR);
    let (cert_path, key_path) = (dir.join(CERT), dir.join(KEY));
    let unusable = |why: String| IdentityError::Unusable {
        path: cert_path.display().to_string(),
        why,
    };
    let old = std::fs::read(&cert_path).map_err(|e| unusable(e.to_string()))?;
    let hosts = identity::hosts(&identity::cert_names(&old))?;
    if hosts.is_empty() {
        return Err(unusable("carries no name to issue it again for".into()));
    }
    let (cert, key) = identity::issue(ca, &hosts)?;
    let identity =
        Identity::from_bytes(&cert, &key, profile).map_err(|e| unusable(e.to_string()))?;
    let (serial, not_after) = X509Certificate::from_der(&cert)
        .map(|(_, c)| {
            let until = c.validity().not_after.timestamp();
            (hex::encode(c.raw_serial()), until)
        })
        .map_err(|e| unusable(format!("the new certificate does not parse: {e}")))?;
    let (cert_new, key_new) = (new_name(&cert_path), new_name(&key_path));
    files::write_all(
        &[
            Output::public(&cert_new, cert),
            Output::secret(&key_new, key),
        ],
        true,
    )?;
    sync_dir(&dir);
    rename(&cert_new, &cert_path)?;
    rename(&key_new, &key_path)?;
    sync_dir(&dir);
    Ok(Renewed {
        identity,
        serial,
        not_after,
    })
}

/// What the watcher reports.
#[derive(Debug)]
pub enum Event {
    /// The certificate was renewed and is presented from now on.
    Renewed {
        /// The new certificate's serial (hex).
        serial: String,
        /// Its end of validity, Unix seconds.
        not_after: i64,
    },
    /// A renewal failed; it is tried again in a minute.
    Failed(String),
}

/// Seconds to sleep before looking again, given when the certificate is
/// due and the time now: at least one, at most [`LONGEST_WAIT`].
fn wait(due: i64, now: i64) -> u64 {
    (due - now).clamp(1, LONGEST_WAIT) as u64
}

/// Renews the service's certificate in `fleet_dir/service/` whenever it is
/// due, for as long as the process runs, and puts each new one into `own`.
pub async fn keep_alive(
    own: Arc<OwnCert>,
    fleet_dir: PathBuf,
    ca: Arc<Authority>,
    profile: &'static Profile,
    report: Arc<dyn Fn(Event) + Send + Sync>,
) {
    let mut retry_at: Option<i64> = None;
    loop {
        let current = own.current();
        let due = current
            .end_entity_cert()
            .map_or(0, |c| due_at(c.as_ref()))
            .max(retry_at.unwrap_or(0));
        let now = devtls_fleet::now().unix_timestamp();
        if now < due {
            tokio::time::sleep(Duration::from_secs(wait(due, now))).await;
            continue;
        }
        let (dir, ca) = (fleet_dir.clone(), ca.clone());
        let renewed = tokio::task::spawn_blocking(move || renew(&dir, &ca, profile)).await;
        match renewed {
            Ok(Ok(r)) => {
                own.replace(&r.identity);
                retry_at = None;
                report(Event::Renewed {
                    serial: r.serial,
                    not_after: r.not_after,
                });
            }
            Ok(Err(e)) => {
                retry_at = Some(now + RETRY);
                report(Event::Failed(e.to_string()));
            }
            Err(e) => {
                retry_at = Some(now + RETRY);
                report(Event::Failed(format!("the renewal task failed: {e}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::issue::{CertSpec, Role};
    use devtls_pki::keys::{KeyType, PrivateKey};

    fn ca() -> Authority {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let spec = CertSpec::new("own-cert test CA", Role::Ca, 30);
        let cert = devtls_pki::issue::self_signed_ca(&spec, &key).unwrap();
        Authority::load(&cert.der, key).unwrap()
    }

    fn profile() -> &'static Profile {
        devtls_pki::profile::by_name("openmv").unwrap()
    }

    /// A fleet folder whose `service/` holds a pair made by `load_or_make`.
    fn served(ca: &Authority) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let names = identity::hosts(&["renew.example.lan".into(), "10.0.0.5".into()]).unwrap();
        identity::load_or_make(tmp.path(), ca, &names, profile()).unwrap();
        let dir = tmp.path().join(DIR);
        (tmp, dir)
    }

    fn read(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(dir.join(CERT)).unwrap(),
            std::fs::read(dir.join(KEY)).unwrap(),
        )
    }

    #[test]
    fn renewing_replaces_the_pair_with_the_same_names_and_a_full_lifetime() {
        let ca = ca();
        let (tmp, dir) = served(&ca);
        let (old_cert, old_key) = read(&dir);
        let r = renew(tmp.path(), &ca, profile()).unwrap();
        let (cert, key) = read(&dir);
        assert_ne!(cert, old_cert);
        assert_ne!(key, old_key);
        assert_eq!(identity::cert_names(&cert), identity::cert_names(&old_cert));
        // The files on disk are the identity handed out, and they load as a pair.
        assert_eq!(
            r.identity.certified.end_entity_cert().unwrap().as_ref(),
            &cert[..]
        );
        Identity::from_bytes(&cert, &key, profile()).unwrap();
        let (from, until) = validity(&cert).unwrap();
        assert!(until - from >= i64::from(identity::DAYS) * 86400);
        assert!(!dir.join("server.der.new").exists() && !dir.join("server.key.der.new").exists());
        #[cfg(unix)]
        assert!(devtls_pki::files::is_owner_only(&dir.join(KEY)).unwrap());
    }

    /// Each point a crash can stop a replacement at: the `.new` files the
    /// replacement had written, and whether its commit (the certificate's
    /// rename) had happened. Loading afterwards gives a matching pair: the
    /// old one before the commit, the new one after.
    #[test]
    fn a_replacement_cut_at_any_step_recovers_to_one_whole_pair() {
        let ca = ca();
        let names = identity::hosts(&["renew.example.lan".into()]).unwrap();
        let (new_cert, new_key) = identity::issue(&ca, &names).unwrap();
        // (cert.new written, key.new written, committed, key renamed)
        let steps = [
            (true, false, false, false),
            (true, true, false, false),
            (false, true, true, false),
            (false, false, true, true),
        ];
        for (cert_new, key_new, committed, key_done) in steps {
            let (tmp, dir) = served(&ca);
            let (old_cert, old_key) = read(&dir);
            if cert_new {
                std::fs::write(dir.join("server.der.new"), &new_cert).unwrap();
            }
            if key_new {
                std::fs::write(dir.join("server.key.der.new"), &new_key).unwrap();
            }
            if committed {
                std::fs::write(dir.join(CERT), &new_cert).unwrap();
            }
            if key_done {
                std::fs::write(dir.join(KEY), &new_key).unwrap();
            }
            let made = identity::load_or_make(tmp.path(), &ca, &names, profile()).unwrap();
            let (cert, key) = read(&dir);
            let step = (cert_new, key_new, committed, key_done);
            if committed {
                assert_eq!((cert, key), (new_cert.clone(), new_key.clone()), "{step:?}");
            } else {
                assert_eq!((cert, key), (old_cert, old_key), "{step:?}");
            }
            assert!(!made.created, "{step:?}");
            assert!(!dir.join("server.der.new").exists(), "{step:?}");
            assert!(!dir.join("server.key.der.new").exists(), "{step:?}");
        }
    }

    #[test]
    fn due_two_thirds_into_the_lifetime_and_the_watcher_waits_at_most_an_hour() {
        let ca = ca();
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new("x", Role::Server, 1);
        spec.not_before = time::OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        spec.not_after = time::OffsetDateTime::from_unix_timestamp(1_000_000 + 3 * 86400).unwrap();
        spec.dns.push("x.lan".into());
        let cert = ca.sign(&spec, &key).unwrap();
        assert_eq!(due_at(&cert.der), 1_000_000 + 2 * 86400);
        assert_eq!(due_at(b"not a certificate"), 0);
        assert_eq!(wait(100, 0), 100);
        assert_eq!(wait(100, 100), 1);
        assert_eq!(wait(1_000_000, 0), 3600);
    }

    #[test]
    fn a_certificate_without_names_is_refused_not_reissued_blank() {
        let ca = ca();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let cert = ca
            .sign(&CertSpec::new("no names", Role::Server, 30), &key)
            .unwrap();
        std::fs::write(dir.join(CERT), &cert.der).unwrap();
        std::fs::write(dir.join(KEY), key.pkcs8_der()).unwrap();
        let e = renew(tmp.path(), &ca, profile()).unwrap_err();
        assert!(e.to_string().contains("no name"), "{e}");
        assert_eq!(std::fs::read(dir.join(CERT)).unwrap(), cert.der);
    }
}

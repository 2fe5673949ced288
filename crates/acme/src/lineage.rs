//! A lineage: one certificate name's files in certbot's layout, plus what
//! the device loads, and the settings to renew it.
//!
//! ```text
//! DIR/archive/NAME/N/   privkey.pem cert.pem chain.pem fullchain.pem   (certbot's names)
//!                       cert.der privkey.der ca.der                     (the device's)
//! DIR/live/NAME      -> ../archive/NAME/N   (a symbolic link)
//! DIR/renewal/NAME.json                     (how it was ordered, for `renew`)
//! ```
//!
//! A new version is written completely into a fresh `archive/NAME/N/`
//! (each file atomically, keys 0600) and only then does `live/NAME` move to
//! it, by renaming a new link over the old one: a reader of `live/NAME/`
//! sees the old set or the new set, never a mix or a half-written file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use devtls_pki::files::{self, Output};
use serde::{Deserialize, Serialize};

use crate::challenge::Method;
use crate::Error;

/// The files of one version.
#[derive(Debug, Clone)]
pub struct Files {
    /// The private key, PEM PKCS#8 (`privkey.pem`).
    pub privkey_pem: String,
    /// The leaf, PEM (`cert.pem`).
    pub cert_pem: String,
    /// The intermediates, PEM (`chain.pem`).
    pub chain_pem: String,
    /// Leaf then intermediates, PEM (`fullchain.pem`).
    pub fullchain_pem: String,
    /// The leaf, DER (`cert.der`): what the device presents.
    pub cert_der: Vec<u8>,
    /// The key, DER PKCS#8 (`privkey.der`, 0600): what the device loads.
    pub privkey_der: Vec<u8>,
    /// The device's trust anchor for this chain (`ca.der`).
    pub ca_der: Vec<u8>,
}

impl Files {
    /// Builds the set from a chain (DER, leaf first), the key and the anchor.
    pub fn new(chain: &[Vec<u8>], key: &devtls_pki::keys::PrivateKey, ca_der: Vec<u8>) -> Files {
        let pem = |der: &[u8]| {
            ::pem::encode(&::pem::Pem::new("CERTIFICATE", der.to_vec())).replace("\r\n", "\n")
        };
        let cert_pem = pem(&chain[0]);
        let chain_pem: String = chain[1..].iter().map(|c| pem(c)).collect();
        Files {
            privkey_pem: key.pkcs8_pem(),
            fullchain_pem: format!("{cert_pem}{chain_pem}"),
            cert_pem,
            chain_pem,
            cert_der: chain[0].clone(),
            privkey_der: key.pkcs8_der(),
            ca_der,
        }
    }

    /// (file name, bytes, secret) for every file.
    pub fn entries(&self) -> Vec<(&'static str, &[u8], bool)> {
        vec![
            ("privkey.pem", self.privkey_pem.as_bytes(), true),
            ("cert.pem", self.cert_pem.as_bytes(), false),
            ("chain.pem", self.chain_pem.as_bytes(), false),
            ("fullchain.pem", self.fullchain_pem.as_bytes(), false),
            ("cert.der", &self.cert_der, false),
            ("privkey.der", &self.privkey_der, true),
            ("ca.der", &self.ca_der, false),
        ]
    }
}

/// How a lineage was ordered: what `renew` needs to order it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// The lineage name (the first identifier).
    pub name: String,
    /// The ACME directory URL.
    pub server: String,
    /// `--server-ca`, absolute.
    pub server_ca: Option<PathBuf>,
    /// DNS names.
    pub domains: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
    /// `p256`, `p384` or `rsa2048`.
    pub key: String,
    /// The CA's certificate profile.
    pub profile: Option<String>,
    /// How challenges are answered.
    pub challenge: Challenge,
    /// `--anchor`, absolute.
    pub anchor: Option<PathBuf>,
    /// The device profile the files are checked against.
    pub device_profile: String,
}

/// [`Method`] as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Challenge {
    /// http-01, own listener.
    Http01 {
        /// Listen address.
        bind: IpAddr,
        /// Listen port.
        port: u16,
    },
    /// http-01 into a web root.
    Webroot {
        /// The web root.
        dir: PathBuf,
    },
    /// dns-01 through a hook.
    DnsHook {
        /// The command.
        command: String,
    },
    /// dns-01 by hand.
    DnsManual,
    /// tls-alpn-01, own listener.
    TlsAlpn01 {
        /// Listen address.
        bind: IpAddr,
        /// Listen port.
        port: u16,
    },
}

impl From<&Method> for Challenge {
    fn from(m: &Method) -> Self {
        match m {
            Method::Http01 { bind, port } => Challenge::Http01 {
                bind: *bind,
                port: *port,
            },
            Method::Webroot(dir) => Challenge::Webroot { dir: dir.clone() },
            Method::DnsHook(command) => Challenge::DnsHook {
                command: command.clone(),
            },
            Method::DnsManual => Challenge::DnsManual,
            Method::TlsAlpn01 { bind, port } => Challenge::TlsAlpn01 {
                bind: *bind,
                port: *port,
            },
        }
    }
}

impl From<&Challenge> for Method {
    fn from(c: &Challenge) -> Self {
        match c {
            Challenge::Http01 { bind, port } => Method::Http01 {
                bind: *bind,
                port: *port,
            },
            Challenge::Webroot { dir } => Method::Webroot(dir.clone()),
            Challenge::DnsHook { command } => Method::DnsHook(command.clone()),
            Challenge::DnsManual => Method::DnsManual,
            Challenge::TlsAlpn01 { bind, port } => Method::TlsAlpn01 {
                bind: *bind,
                port: *port,
            },
        }
    }
}

/// The lineage name for an identifier: letters, digits, dots and dashes
/// (a wildcard's `*` becomes `_wildcard`, an IPv6 address's `:` an `_`).
pub fn name_for(identifier: &str) -> Result<String, Error> {
    let name = identifier.replacen("*.", "_wildcard.", 1).replace(':', "_");
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(Error::Input(format!(
            "'{identifier}' is not a DNS name or IP address devtls can order for"
        )))
    }
}

/// `DIR/live/NAME`.
pub fn live(dir: &Path, name: &str) -> PathBuf {
    dir.join("live").join(name)
}

/// `DIR/renewal/NAME.json`.
pub fn config_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("renewal").join(format!("{name}.json"))
}

/// Reads a lineage's settings.
pub fn read_config(path: &Path) -> Result<Config, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Input(format!(
            "{}: not a devtls renewal file ({e}); fix or remove it",
            path.display()
        ))
    })
}

/// Writes a lineage's settings (atomically).
pub fn write_config(dir: &Path, config: &Config) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(config).map_err(|e| Error::Protocol(e.to_string()))?;
    files::write_atomic(
        &config_path(dir, &config.name),
        &bytes,
        files::Secrecy::Public,
    )?;
    Ok(())
}

/// Every lineage's settings file under `dir`, sorted.
pub fn configs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let root = dir.join("renewal");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    out.sort();
    Ok(out)
}

/// The leaf the device currently has (`live/NAME/cert.der`): `None` when
/// there is no `live/NAME` yet. A `live/NAME` link whose target is gone
/// (a dangling link) or holds no readable `cert.der` is an error naming
/// it, not "nothing issued yet".
pub fn current_cert(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let link = live(dir, name);
    match std::fs::symlink_metadata(&link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&link, e)),
        Ok(_) => {}
    }
    let cert = link.join("cert.der");
    std::fs::read(&cert).map(Some).map_err(|e| {
        let target = std::fs::read_link(&link)
            .map(|t| format!(" (it points to {})", t.display()))
            .unwrap_or_default();
        Error::io(
            &cert,
            std::io::Error::new(
                e.kind(),
                format!(
                    "{e}: live/{name} is broken{target}; `devtls acme issue --force` orders \
                     a new certificate and remakes it"
                ),
            ),
        )
    })
}

/// Refuses a symbolic link devtls did not make where it writes: `archive/`
/// and `archive/NAME` must be real folders (or absent), and `live/NAME`
/// absent or devtls's own relative link `../archive/NAME/N`. Following a
/// planted link would write keys, or point the device's files, elsewhere.
fn check_not_planted(dir: &Path, name: &str) -> Result<(), Error> {
    let planted = |path: &Path, what: &str| {
        Error::Input(format!(
            "{}: {what}; devtls did not make it and does not follow it: move it away \
             (devtls never overwrites files it did not make)",
            path.display()
        ))
    };
    for folder in [
        dir.join("archive"),
        dir.join("archive").join(name),
        dir.join("live"),
    ] {
        if std::fs::symlink_metadata(&folder).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(planted(&folder, "is a symbolic link"));
        }
    }
    let live_path = live(dir, name);
    if let Ok(meta) = std::fs::symlink_metadata(&live_path) {
        if !meta.file_type().is_symlink() {
            return Err(planted(
                &live_path,
                "exists and is not devtls's link to archive/",
            ));
        }
        let target = std::fs::read_link(&live_path).map_err(|e| Error::io(&live_path, e))?;
        let mut parts = target
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let ours = parts.next().as_deref() == Some("..")
            && parts.next().as_deref() == Some("archive")
            && parts.next().as_deref() == Some(name)
            && parts.next().is_some_and(|n| n.parse::<u32>().is_ok())
            && parts.next().is_none();
        if !ours {
            return Err(planted(
                &live_path,
                &format!("points to {}, not to ../archive/{name}/N", target.display()),
            ));
        }
    }
    Ok(())
}

/// Writes a new version and moves `live/NAME` to it; returns the live path.
pub fn publish(dir: &Path, name: &str, files: &Files) -> Result<PathBuf, Error> {
    let live_path = live(dir, name);
    check_not_planted(dir, name)?;
    let archive = dir.join("archive").join(name);
    mkdir_private(&archive)?;
    let next = std::fs::read_dir(&archive)
        .map_err(|e| Error::io(&archive, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let version = archive.join(next.to_string());
    std::fs::create_dir(&version).map_err(|e| Error::io(&version, e))?;
    let outputs: Vec<Output> = files
        .entries()
        .into_iter()
        .map(|(file, bytes, secret)| {
            let path = version.join(file);
            if secret {
                Output::secret(path, bytes.to_vec())
            } else {
                Output::public(path, bytes.to_vec())
            }
        })
        .collect();
    files::write_all(&outputs, false)?;
    sync_dir(&version);
    let live_dir = dir.join("live");
    std::fs::create_dir_all(&live_dir).map_err(|e| Error::io(&live_dir, e))?;
    let staged = live_dir.join(format!(".{name}.new"));
    let _ = std::fs::remove_file(&staged);
    let target = Path::new("..")
        .join("archive")
        .join(name)
        .join(next.to_string());
    // Windows: symbolic links need a privilege most users lack, and no
    // portable swap is written yet; say so rather than fail on a missing file.
    if cfg!(not(unix)) {
        return Err(Error::Unsupported(format!(
        "{}: the live/ link is a symbolic link, which devtls makes only on Linux and macOS so far; \
         the certificate and keys are whole in {}",
        live_path.display(),
        dir.join("live").join(&target).display()
        )));
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &staged).map_err(|e| Error::io(&staged, e))?;
    std::fs::rename(&staged, &live_path).map_err(|e| Error::io(&live_path, e))?;
    sync_dir(&live_dir);
    Ok(live_path)
}

fn mkdir_private(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

fn sync_dir(path: &Path) {
    if let Ok(d) = std::fs::File::open(path) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::keys::{KeyType, PrivateKey};

    fn files(tag: u8) -> Files {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        Files::new(&[vec![tag; 4], vec![tag + 1; 4]], &key, vec![tag + 1; 4])
    }

    #[test]
    fn names_are_safe_file_names() {
        assert_eq!(name_for("Cam.Example.com").unwrap(), "cam.example.com");
        assert_eq!(name_for("*.example.com").unwrap(), "_wildcard.example.com");
        assert_eq!(name_for("2001:db8::1").unwrap(), "2001_db8__1");
        assert!(name_for("../etc").is_err());
        assert!(name_for("a/b").is_err());
    }

    #[test]
    fn publishing_swaps_whole_versions_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let live = publish(dir.path(), "a.test", &files(1)).unwrap();
        assert_eq!(std::fs::read(live.join("cert.der")).unwrap(), vec![1; 4]);
        publish(dir.path(), "a.test", &files(5)).unwrap();
        assert_eq!(std::fs::read(live.join("cert.der")).unwrap(), vec![5; 4]);
        assert_eq!(std::fs::read(live.join("ca.der")).unwrap(), vec![6; 4]);
        assert_eq!(
            std::fs::read_link(&live).unwrap(),
            Path::new("../archive/a.test/2")
        );
        // The old version stays whole in archive/.
        assert_eq!(
            std::fs::read(dir.path().join("archive/a.test/1/cert.der")).unwrap(),
            vec![1; 4]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["privkey.pem", "privkey.der"] {
                assert_eq!(
                    std::fs::metadata(live.join(f))
                        .unwrap()
                        .permissions()
                        .mode()
                        & 0o777,
                    0o600,
                    "{f}"
                );
            }
        }
        let fullchain = std::fs::read_to_string(live.join("fullchain.pem")).unwrap();
        assert_eq!(fullchain.matches("BEGIN CERTIFICATE").count(), 2);
        // Nothing but the link in live/.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("live"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.test"]);
    }

    #[test]
    fn a_live_folder_devtls_did_not_make_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("live/a.test")).unwrap();
        let err = publish(dir.path(), "a.test", &files(1)).unwrap_err();
        assert!(err.to_string().contains("move it away"), "{err}");
        assert!(err.is_input());
    }

    /// Links planted where publish writes are refused, and nothing is
    /// written through them.
    #[cfg(unix)]
    #[test]
    fn symbolic_links_devtls_did_not_make_are_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let acme = dir.path().join("acme");
        std::fs::create_dir_all(acme.join("archive")).unwrap();
        symlink(&elsewhere, acme.join("archive/a.test")).unwrap();
        let err = publish(&acme, "a.test", &files(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("archive/a.test: is a symbolic link"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "no key written there"
        );

        std::fs::remove_file(acme.join("archive/a.test")).unwrap();
        std::fs::create_dir_all(acme.join("live")).unwrap();
        symlink(&elsewhere, acme.join("live/a.test")).unwrap();
        let err = publish(&acme, "a.test", &files(1)).unwrap_err();
        assert!(
            err.to_string().contains("not to ../archive/a.test/N"),
            "{err}"
        );
        assert!(err.is_input());
    }

    /// No `live/NAME` is "nothing issued yet"; a dangling one is an error
    /// naming it (renew reports the lineage as failed, not as fine).
    #[cfg(unix)]
    #[test]
    fn a_dangling_live_link_is_an_error_not_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(current_cert(dir.path(), "a.test").unwrap().is_none());
        publish(dir.path(), "a.test", &files(1)).unwrap();
        assert_eq!(
            current_cert(dir.path(), "a.test").unwrap().unwrap(),
            vec![1; 4]
        );
        std::fs::remove_dir_all(dir.path().join("archive/a.test/1")).unwrap();
        let err = current_cert(dir.path(), "a.test").unwrap_err();
        assert!(err.to_string().contains("live/a.test is broken"), "{err}");
        assert!(!err.is_input(), "one lineage's failure, not the run's");
    }
}

//! The service's own certificate: issued by the fleet CA on first start (so
//! a device's one anchor, `ca.der`, verifies it) and kept in
//! `fleet/service/` (the key 0600), or given with `--cert`/`--key`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use devtls_net::config::Identity;
use devtls_pki::files::{self, Output};
use devtls_pki::issue::{Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::names::{self, Host};
use devtls_pki::profile::Profile;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The folder of the service's certificate, inside the fleet folder.
pub const DIR: &str = "service";
/// Its certificate.
pub const CERT: &str = "server.der";
/// Its key (0600).
pub const KEY: &str = "server.key.der";
/// Days the service's certificate is valid.
pub const DAYS: u32 = 397;

/// Why the service's identity cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A `--name` that is neither a DNS name nor an IP address.
    #[error("--name '{0}': {1}")]
    Name(String, String),
    /// The stored certificate does not carry a requested name.
    #[error("{path} was made for {has}, not '{missing}': move {dir} away to make a new one on start, or pass the names it has")]
    Names {
        /// The stored certificate.
        path: String,
        /// What it carries.
        has: String,
        /// The missing name.
        missing: String,
        /// The folder to move away.
        dir: String,
    },
    /// A file or key problem.
    #[error("{0}")]
    Pki(#[from] devtls_pki::Error),
    /// The certificate and key cannot serve.
    #[error("{path}: {why}")]
    Unusable {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

/// What `load_or_make` did.
#[derive(Debug, Clone)]
pub struct Made {
    /// The identity to serve with.
    pub identity: Identity,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// Whether it was made now.
    pub created: bool,
    /// The names it carries.
    pub names: Vec<String>,
}

/// Checks the names (DNS names or IP addresses, with pki's rules).
pub fn hosts(names: &[String]) -> Result<Vec<Host>, IdentityError> {
    names
        .iter()
        .map(|n| names::host(n).map_err(|e| IdentityError::Name(n.clone(), e.to_string())))
        .collect()
}

/// The DNS names and IP addresses of a certificate's subjectAltName.
pub(crate) fn cert_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::IPAddress(raw) if raw.len() == 4 => {
                Some(IpAddr::from(<[u8; 4]>::try_from(*raw).ok()?).to_string())
            }
            GeneralName::IPAddress(raw) if raw.len() == 16 => {
                Some(IpAddr::from(<[u8; 16]>::try_from(*raw).ok()?).to_string())
            }
            _ => None,
        })
        .collect()
}

fn host_text(h: &Host) -> String {
    match h {
        Host::Name(d) => d.to_ascii_lowercase(),
        Host::Ip(ip) => ip.to_string(),
    }
}

/// A new P-256 key and a certificate for it, issued by `ca` for `names`
/// (the first one is the common name), valid [`DAYS`] days: (certificate,
/// PKCS#8 key), DER.
pub(crate) fn issue(ca: &Authority, names: &[Host]) -> Result<(Vec<u8>, Vec<u8>), IdentityError> {
    let key = PrivateKey::generate(KeyType::P256)?;
    let cn = names
        .first()
        .map(host_text)
        .unwrap_or_else(|| "devtls renewal".into());
    let mut spec = CertSpec::new(cn, Role::Server, DAYS);
    for h in names {
        match h {
            Host::Name(d) => spec.dns.push(d.clone()),
            Host::Ip(ip) => spec.ips.push(*ip),
        }
    }
    let cert = ca.sign(&spec, &key)?;
    Ok((cert.der, key.pkcs8_der()))
}

/// Loads `fleet/service/server.der` and its key, or issues them with the
/// fleet CA for `names` when they do not exist yet. A replacement of the
/// pair that a crash interrupted is finished or undone first
/// ([`crate::own_cert::recover`]).
pub fn load_or_make(
    fleet_dir: &Path,
    ca: &Authority,
    names: &[Host],
    profile: &Profile,
) -> Result<Made, IdentityError> {
    let dir = fleet_dir.join(DIR);
    let cert_path = dir.join(CERT);
    let key_path = dir.join(KEY);
    let wanted: Vec<String> = names.iter().map(host_text).collect();
    crate::own_cert::recover(&dir)?;
    let created = !cert_path.exists() && !key_path.exists();
    if created {
        let (cert, key) = issue(ca, names)?;
        files::write_all(
            &[
                Output::public(&cert_path, cert),
                Output::secret(&key_path, key),
            ],
            false,
        )?;
    }
    let unusable = |path: &Path, why: String| IdentityError::Unusable {
        path: path.display().to_string(),
        why,
    };
    let cert = std::fs::read(&cert_path).map_err(|e| unusable(&cert_path, e.to_string()))?;
    let key = std::fs::read(&key_path).map_err(|e| unusable(&key_path, e.to_string()))?;
    let has = cert_names(&cert);
    if let Some(missing) = wanted.iter().find(|w| !has.contains(w)) {
        return Err(IdentityError::Names {
            path: cert_path.display().to_string(),
            has: has.join(", "),
            missing: missing.clone(),
            dir: dir.display().to_string(),
        });
    }
    let identity = Identity::from_bytes(&cert, &key, profile)
        .map_err(|e| unusable(&cert_path, e.to_string()))?;
    Ok(Made {
        identity,
        cert_path,
        created,
        names: has,
    })
}

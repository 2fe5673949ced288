//! The account store: one ACME account per CA under `DIR/accounts/LABEL/`,
//! created on first use, written 0600 and reused by every later command.

use std::path::{Path, PathBuf};

use devtls_pki::files::{self, Secrecy};
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};

use crate::server::{self, AccountSigner, Directory, Transport};
use crate::Error;

/// What is stored about an account (the file also holds its key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The directory URL of the CA.
    pub server: String,
    /// The account URL at the CA (its id).
    pub id: String,
    /// Contact e-mail, if one was given.
    pub email: Option<String>,
    /// When it was created (RFC 3339).
    pub created: String,
    /// instant-acme's credentials (id, PKCS#8 key, directory): secret.
    credentials: serde_json::Value,
}

/// How to create an account the first time.
#[derive(Debug, Clone, Default)]
pub struct NewAccountOptions {
    /// `--email`.
    pub email: Option<String>,
    /// `--eab-kid` and `--eab-hmac` (base64url) for CAs that require External Account Binding.
    pub eab: Option<(String, String)>,
}

/// An account ready to use, with the transport and directory it talks through.
pub struct Session {
    /// instant-acme's account.
    pub account: Account,
    /// The HTTPS client (and its log of alternates and bad nonces).
    pub transport: Transport,
    /// What devtls read from the directory.
    pub directory: Directory,
    /// The stored record.
    pub stored: Stored,
    /// The account file.
    pub file: PathBuf,
    /// Whether it was created by this command.
    pub created: bool,
}

impl Session {
    /// A signer for requests instant-acme does not make.
    pub fn signer(&self) -> Result<AccountSigner, Error> {
        let key = self
            .stored
            .credentials
            .get("key_pkcs8")
            .and_then(|k| k.as_str())
            .ok_or_else(|| Error::Input(format!("{}: no account key", self.file.display())))?;
        let der = base64::Engine::decode(&base64::prelude::BASE64_URL_SAFE_NO_PAD, key).map_err(
            |_| {
                Error::Input(format!(
                    "{}: the account key is not base64url",
                    self.file.display()
                ))
            },
        )?;
        AccountSigner::new(&self.stored.id, &der)
    }
}

/// The account file for a CA under `dir`.
pub fn path(dir: &Path, directory_url: &str) -> PathBuf {
    dir.join("accounts")
        .join(server::label(directory_url))
        .join("account.json")
}

/// Every stored account under `dir`.
pub fn list(dir: &Path) -> Result<Vec<(PathBuf, Stored)>, Error> {
    let root = dir.join("accounts");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("account.json"))
        .collect();
    paths.sort();
    for p in paths.into_iter().filter(|p| p.exists()) {
        let stored = read(&p)?;
        out.push((p, stored));
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Stored, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Input(format!(
            "{}: not a devtls account file ({e}); move it away to create a new account",
            path.display()
        ))
    })
}

/// Opens the account for `directory_url` stored in `dir`, creating (and
/// storing) it when there is none.
pub async fn open(
    dir: &Path,
    directory_url: &str,
    server_ca: Option<&Path>,
    new: &NewAccountOptions,
) -> Result<Session, Error> {
    let transport = Transport::new(server_ca)?;
    let directory = transport.directory(directory_url).await?;
    let file = path(dir, directory_url);
    if file.exists() {
        let stored = read(&file)?;
        let credentials: AccountCredentials = serde_json::from_value(stored.credentials.clone())
            .map_err(|e| {
                Error::Input(format!("{}: unreadable credentials ({e})", file.display()))
            })?;
        let account = Account::builder_with_http(Box::new(transport.clone()))
            .from_credentials(credentials)
            .await
            .map_err(Error::from_acme)?;
        return Ok(Session {
            account,
            transport,
            directory,
            stored,
            file,
            created: false,
        });
    }
    let contact: Vec<String> = new.email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact_refs: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = match &new.eab {
        Some((kid, hmac)) => {
            let key = base64::Engine::decode(
                &base64::prelude::BASE64_URL_SAFE_NO_PAD,
                hmac.trim_end_matches('='),
            )
            .map_err(|_| {
                Error::Input(
                    "--eab-hmac: not base64url; copy it exactly from the CA's console".into(),
                )
            })?;
            Some(ExternalAccountKey::new(kid.clone(), &key))
        }
        None => None,
    };
    let new_account = NewAccount {
        contact: &contact_refs,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = nonce_retry!(Account::builder_with_http(Box::new(
        transport.clone()
    ))
    .create(&new_account, directory_url.to_string(), eab.as_ref(),))?;
    let stored = Stored {
        server: directory_url.to_string(),
        id: account.id().to_string(),
        email: new.email.clone(),
        created: now_rfc3339(),
        credentials: serde_json::to_value(&credentials)
            .map_err(|e| Error::Protocol(e.to_string()))?,
    };
    save(&file, &stored)?;
    Ok(Session {
        account,
        transport,
        directory,
        stored,
        file,
        created: true,
    })
}

fn save(file: &Path, stored: &Stored) -> Result<(), Error> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(parent, e))?;
        }
    }
    // Written whole under a temporary name and renamed into place; the
    // caller holds the folder's lock (crate::lock), so no other run is
    // between its look for an account and this write.
    let bytes = serde_json::to_vec_pretty(stored).map_err(|e| Error::Protocol(e.to_string()))?;
    files::write_atomic(file, &bytes, Secrecy::Secret)?;
    Ok(())
}

/// Now as RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

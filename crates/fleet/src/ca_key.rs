//! Where the fleet CA's private key lives: `ca.key` (a file, the default) or
//! a PKCS#11 token named by the URI in `ca.key.uri` (see docs/fleet-hsm.md).
//!
//! A token key is opened only when something is signed (issue, rotate, crl),
//! so `status`, `list`, `revoke` and `export` need no PIN. The URI file
//! holds the URI and the library path, never the PIN.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use devtls_pki::files::{self, Output};
use devtls_pki::issue::{self as pki_issue, Authority, CertSpec, Role};
use devtls_pki::signer::pkcs11::{self, Found, Pin, TokenKey, Uri};
use devtls_pki::signer::CaKey;

use crate::{names, Error, InitOptions};

/// The environment variable a PIN is taken from when no other source is set.
pub const PIN_ENV: &str = "DEVTLS_PKCS11_PIN";

/// Gives the PIN for a token (its description is the argument), or says why not.
pub type PinSource = Box<dyn Fn(&str) -> Result<Pin, String> + Send + Sync>;

/// How to reach a token: its library and where its PIN comes from.
pub struct TokenAccess {
    /// The PKCS#11 library (else `DEVTLS_PKCS11_MODULE`, the recorded one, SoftHSM2).
    pub module: Option<PathBuf>,
    /// The PIN source.
    pub pin: PinSource,
}

impl Default for TokenAccess {
    /// The PIN from `DEVTLS_PKCS11_PIN` only.
    fn default() -> Self {
        TokenAccess {
            module: None,
            pin: Box::new(|token| {
                std::env::var(PIN_ENV).map(Pin::new).map_err(|_| {
                    format!("{token}: no PIN given; set {PIN_ENV} or pass --pin-file FILE")
                })
            }),
        }
    }
}

/// A CA key in a token, opened on first use.
pub(crate) struct TokenCa {
    pub(crate) uri: Uri,
    opened: Mutex<Option<Arc<Authority>>>,
}

impl TokenCa {
    pub(crate) fn new(uri: Uri) -> Self {
        TokenCa {
            uri,
            opened: Mutex::new(None),
        }
    }

    /// Keeps an authority already opened (by `init`).
    pub(crate) fn set(&self, ca: Arc<Authority>) {
        *self.opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(ca);
    }

    /// The authority signing through the token, logging in the first time.
    pub(crate) fn authority(
        &self,
        ca_der: &[u8],
        access: &TokenAccess,
    ) -> Result<Arc<Authority>, Error> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ca) = &*opened {
            return Ok(ca.clone());
        }
        let module = pkcs11::module_path(access.module.as_deref(), &self.uri)?;
        let pin = (access.pin)(&self.uri.describe()).map_err(Error::Invalid)?;
        let key = TokenKey::open(&module, &self.uri, &pin)?;
        let ca = Arc::new(Authority::with_key(ca_der, CaKey::Token(key)).map_err(|_| {
            Error::KeyMismatch(format!(
                "the key {} does not belong to {} (their public keys differ), so nothing is \
                 signed; point {} back at the key this CA was made with",
                self.uri.without_module(),
                names::CA_DER,
                names::CA_KEY_URI
            ))
        })?);
        *opened = Some(ca.clone());
        Ok(ca)
    }
}

/// Reads `ca.key.uri`.
pub(crate) fn read_uri(path: &Path) -> Result<Uri, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.trim()
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// What `init_in_token` made: the CA certificate and its authority.
pub(crate) struct Made {
    pub(crate) cert_der: Vec<u8>,
    pub(crate) authority: Arc<Authority>,
    pub(crate) found: Found,
    pub(crate) uri: Uri,
}

/// Creates (or takes) the key in the token, self-signs the CA certificate
/// with it and writes `ca.der`, `ca.crt` and `ca.key.uri`.
pub(crate) fn init_in_token(
    dir: &Path,
    opts: &InitOptions,
    uri: &Uri,
    access: &TokenAccess,
) -> Result<Made, Error> {
    let module = pkcs11::module_path(access.module.as_deref(), uri)?;
    let module = std::fs::canonicalize(&module).unwrap_or(module);
    let pin = (access.pin)(&uri.describe()).map_err(Error::Invalid)?;
    let (key, found) = TokenKey::create_or_open(&module, uri, &pin, opts.key)?;
    let key = CaKey::Token(key);
    let spec = CertSpec::new(opts.name.clone(), Role::Ca, opts.days);
    let cert = pki_issue::self_signed_ca_with(&spec, &key)?;
    let recorded = Uri {
        module_path: Some(module),
        ..uri.clone()
    };
    files::write_all(
        &[
            Output::public(dir.join(names::CA_DER), cert.der.clone()),
            Output::public(dir.join(names::CA_PEM), cert.pem()),
            Output::public(dir.join(names::CA_KEY_URI), format!("{recorded}\n")),
        ],
        false,
    )?;
    let authority = Arc::new(Authority::with_key(&cert.der, key)?);
    Ok(Made {
        cert_der: cert.der,
        authority,
        found,
        uri: recorded,
    })
}

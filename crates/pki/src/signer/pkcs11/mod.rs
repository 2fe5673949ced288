//! A CA key in a PKCS#11 token: created there non-extractable and sensitive,
//! used there, never read out.
//!
//! The token signs SHA-256/384 digests computed here (`CKM_ECDSA`, which every
//! token with EC keys has), and its raw `r || s` signature is encoded as the
//! DER `ECDSA-Sig-Value` X.509 wants.
//!
//! Sessions: PKCS#11 sessions must not be used by two threads at once, and a
//! login holds for every session of the process. So the key logs in once,
//! on its first session, and keeps a pool of sessions: a signing thread takes
//! one (opening a new one when all are in use) and puts it back, so there is
//! one session per worker thread, each reused for every signature.

mod curve;
mod lookup;
pub mod uri;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use curve::{ecdsa_der, Curve};
use lookup::{find_key, find_token, login, public_point};
pub use uri::{Uri, UriError};

use crate::keys::KeyType;

/// The environment variable naming the PKCS#11 library.
pub const MODULE_ENV: &str = "DEVTLS_PKCS11_MODULE";

/// Where Debian, Fedora, Homebrew and source builds put SoftHSM2's library.
pub const SOFTHSM_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
];

/// What went wrong with a token. Each message is one line naming the token,
/// object or library and saying what to do; none contains the PIN.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URI is malformed or asks for something refused.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// No PKCS#11 library at the path (or none found at all).
    #[error("{0}")]
    ModuleMissing(String),
    /// The library is there but does not load or initialise.
    #[error("{path}: not a usable PKCS#11 library: {why}")]
    Module {
        /// The library's path.
        path: String,
        /// What failed.
        why: String,
    },
    /// No token matches the URI.
    #[error("no token matches {uri} (tokens present: {present}); initialise one (e.g. `softhsm2-util --init-token --free --label NAME`) or fix token= in the URI")]
    TokenNotFound {
        /// The URI (no PIN).
        uri: String,
        /// The labels of the tokens present, or "none".
        present: String,
    },
    /// The token has no such key.
    #[error("{0}")]
    ObjectNotFound(String),
    /// The token refused the PIN.
    #[error("token '{0}' refused the PIN (CKR_PIN_INCORRECT); check --pin-file or DEVTLS_PKCS11_PIN. Tokens lock after a few wrong PINs")]
    WrongPin(String),
    /// The token is locked after too many wrong PINs.
    #[error("token '{0}' is locked after too many wrong PINs; unlock it with its SO PIN (e.g. `softhsm2-util` or the vendor's tool)")]
    PinLocked(String),
    /// An existing key that could be (or could have been) read out of the token.
    #[error("{0}")]
    Extractable(String),
    /// A key that is not a P-256 or P-384 EC key.
    #[error("{0}")]
    Unsupported(String),
    /// Any other PKCS#11 failure.
    #[error("token '{token}': {what} failed: {why}")]
    Token {
        /// The token label.
        token: String,
        /// The operation.
        what: &'static str,
        /// The PKCS#11 error.
        why: String,
    },
}

/// A token PIN. Its Debug output is redacted; it is zeroed when dropped.
pub struct Pin(AuthPin);

impl Pin {
    /// Wraps a PIN (a trailing newline, as in a PIN file, is removed).
    pub fn new(mut pin: String) -> Pin {
        let len = pin.trim_end_matches(['\r', '\n']).len();
        pin.truncate(len);
        Pin(AuthPin::from(pin))
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(...)")
    }
}

/// The PKCS#11 library to load: `explicit` (a flag), else `DEVTLS_PKCS11_MODULE`,
/// else the URI's module-path, else SoftHSM2 where it is installed.
pub fn module_path(explicit: Option<&Path>, uri: &Uri) -> Result<PathBuf, Error> {
    let env = std::env::var_os(MODULE_ENV).filter(|v| !v.is_empty());
    let chosen = explicit
        .map(Path::to_path_buf)
        .or(env.map(PathBuf::from))
        .or(uri.module_path.clone());
    match chosen {
        Some(path) if path.exists() => Ok(path),
        Some(path) => Err(Error::ModuleMissing(format!(
            "{}: no PKCS#11 library there; install the token's library (SoftHSM2: `apt install softhsm2`) or give its path with --pkcs11-module or {MODULE_ENV}",
            path.display()
        ))),
        None => SOFTHSM_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                Error::ModuleMissing(format!(
                    "no PKCS#11 library: softhsm2 is not installed ({} missing); install it (`apt install softhsm2`) or give your token's library with --pkcs11-module PATH or {MODULE_ENV}",
                    SOFTHSM_PATHS[0]
                ))
            }),
    }
}

/// One initialised context per library: C_Initialize may run once per process.
fn context(module: &Path) -> Result<Pkcs11, Error> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = contexts.get(module) {
        return Ok(ctx.clone());
    }
    let failed = |why: String| Error::Module {
        path: module.display().to_string(),
        why,
    };
    let ctx = Pkcs11::new(module).map_err(|e| failed(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(failed(e.to_string())),
    }
    contexts.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A private key in a token, ready to sign from any thread.
pub struct TokenKey {
    ctx: Pkcs11,
    slot: Slot,
    token: String,
    handle: ObjectHandle,
    curve: Curve,
    /// The uncompressed public point.
    point: Vec<u8>,
    /// Idle logged-in sessions; the first one holds the login.
    sessions: Mutex<Vec<Session>>,
    /// Sessions opened so far (for the report and the bench).
    opened: std::sync::atomic::AtomicUsize,
    /// Why the last signature failed: rcgen's error type has no room for it.
    last_error: Mutex<Option<String>>,
}

/// What [`TokenKey::create_or_open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A new key pair was generated in the token.
    Created,
    /// A key with that label was already there and is used.
    Existing,
}

impl TokenKey {
    /// Opens the existing key the URI names. A key that is extractable or
    /// not sensitive is refused ([`Error::Extractable`]).
    pub fn open(module: &Path, uri: &Uri, pin: &Pin) -> Result<TokenKey, Error> {
        let (ctx, slot, token) = find_token(module, uri)?;
        let session = login(&ctx, slot, &token, pin)?;
        match find_key(&session, uri, &token)? {
            Some(handle) => TokenKey::from_handle(ctx, slot, token, session, handle, uri),
            None => Err(Error::ObjectNotFound(format!(
                "token '{token}' has no private key {}; create it with `devtls fleet init --ca-key '{}'` or check object= (list the token's objects with `pkcs11-tool --module {} --list-objects --login`)",
                uri.describe(),
                uri.without_module(),
                module.display()
            ))),
        }
    }

    /// Opens the key the URI names, or generates it in the token as a
    /// `key` (P-256 or P-384) pair: private key CKA_TOKEN, CKA_PRIVATE,
    /// CKA_SENSITIVE, not CKA_EXTRACTABLE, signing only.
    pub fn create_or_open(
        module: &Path,
        uri: &Uri,
        pin: &Pin,
        key: KeyType,
    ) -> Result<(TokenKey, Found), Error> {
        let curve = Curve::of(key)?;
        let (ctx, slot, token) = find_token(module, uri)?;
        let session = login(&ctx, slot, &token, pin)?;
        if let Some(handle) = find_key(&session, uri, &token)? {
            let key = TokenKey::from_handle(ctx, slot, token, session, handle, uri)?;
            return Ok((key, Found::Existing));
        }
        let Some(label) = uri.object.clone() else {
            return Err(Error::ObjectNotFound(format!(
                "token '{token}' has no key {}; to create one, name it with object=LABEL",
                uri.describe()
            )));
        };
        let id = match &uri.id {
            Some(id) => id.clone(),
            None => {
                let mut id = vec![0u8; 16];
                aws_lc_rs::rand::fill(&mut id).map_err(|_| Error::Token {
                    token: token.clone(),
                    what: "making a key id",
                    why: "the system's random source failed".into(),
                })?;
                id
            }
        };
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(curve.params().to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        let (_, handle) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| token_error(&token, "generating the key pair", e))?;
        let key = TokenKey::from_handle(ctx, slot, token, session, handle, uri)?;
        Ok((key, Found::Created))
    }

    fn from_handle(
        ctx: Pkcs11,
        slot: Slot,
        token: String,
        session: Session,
        handle: ObjectHandle,
        uri: &Uri,
    ) -> Result<TokenKey, Error> {
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::Extractable,
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Label,
                    AttributeType::Id,
                ],
            )
            .map_err(|e| token_error(&token, "reading the key's attributes", e))?;
        let (mut key_type, mut params, mut extractable, mut sensitive, mut never) =
            (None, None, None, None, None);
        let (mut label, mut id) = (Vec::new(), Vec::new());
        for attr in attrs {
            match attr {
                Attribute::KeyType(k) => key_type = Some(k),
                Attribute::EcParams(p) => params = Some(p),
                Attribute::Extractable(b) => extractable = Some(b),
                Attribute::Sensitive(b) => sensitive = Some(b),
                Attribute::NeverExtractable(b) => never = Some(b),
                Attribute::Label(l) => label = l,
                Attribute::Id(i) => id = i,
                _ => {}
            }
        }
        let what = uri.describe();
        if key_type != Some(CkKeyType::EC) {
            return Err(Error::Unsupported(format!(
                "{what} is not an EC key; a fleet CA key in a token is P-256 or P-384"
            )));
        }
        let curve = params
            .as_deref()
            .and_then(Curve::from_params)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "{what} is an EC key on a curve other than P-256 or P-384, which the devices do not verify"
                ))
            })?;
        // Refused, not warned about: a key that can be read out of the token
        // may already have been, and the point of the token is that it cannot.
        if extractable != Some(false) || sensitive != Some(true) || never == Some(false) {
            return Err(Error::Extractable(format!(
                "{what} can be (or once could be) read out of the token (CKA_EXTRACTABLE {}, CKA_SENSITIVE {}, CKA_NEVER_EXTRACTABLE {}); a CA key must never have left it. Create a new key under another object= label (devtls makes it non-extractable)",
                flag(extractable),
                flag(sensitive),
                flag(never)
            )));
        }
        let point = public_point(&session, &label, &id, curve, &token, &what)?;
        Ok(TokenKey {
            ctx,
            slot,
            token,
            handle,
            curve,
            point,
            sessions: Mutex::new(vec![session]),
            opened: 1.into(),
            last_error: Mutex::new(None),
        })
    }

    /// The key's type (P-256 or P-384).
    pub fn key_type(&self) -> KeyType {
        self.curve.key_type()
    }

    /// The token's label.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// How many sessions signing has opened (one per concurrent signer).
    pub fn sessions_opened(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why the last signature through rcgen failed, once.
    pub fn take_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether the private key object is CKA_EXTRACTABLE, read back from the token.
    pub fn is_extractable(&self) -> Result<bool, Error> {
        self.with_session(|s| {
            let attrs = s
                .get_attributes(self.handle, &[AttributeType::Extractable])
                .map_err(|e| token_error(&self.token, "reading CKA_EXTRACTABLE", e))?;
            Ok(attrs
                .iter()
                .any(|a| matches!(a, Attribute::Extractable(true))))
        })
    }

    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, Error>) -> Result<T, Error> {
        let idle = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let session = match idle {
            Some(s) => s,
            None => {
                // Already logged in: a login covers every session of the process.
                let s = self
                    .ctx
                    .open_ro_session(self.slot)
                    .map_err(|e| token_error(&self.token, "opening a session", e))?;
                self.opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s
            }
        };
        let result = f(&session);
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
        result
    }

    /// Signs the digest of `msg` in the token; returns the DER ECDSA signature.
    pub fn sign_message(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let digest = self.curve.digest(msg);
        let raw = self.with_session(|s| {
            s.sign(&Mechanism::Ecdsa, self.handle, &digest)
                .map_err(|e| token_error(&self.token, "signing", e))
        })?;
        let n = self.curve.size();
        if raw.len() != 2 * n {
            return Err(Error::Token {
                token: self.token.clone(),
                what: "signing",
                why: format!(
                    "the token returned {} signature bytes, not {}",
                    raw.len(),
                    2 * n
                ),
            });
        }
        Ok(ecdsa_der(&raw[..n], &raw[n..]))
    }
}

fn flag(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "unknown",
    }
}

impl rcgen::PublicKeyData for TokenKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.curve.algorithm()
    }
}

impl rcgen::SigningKey for TokenKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // rcgen's error has no room for a message: it is kept for
        // `take_error`, so the reason the token refused is not lost.
        self.sign_message(msg).map_err(|e| {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            rcgen::Error::RemoteKeyError
        })
    }
}

fn token_error(token: &str, what: &'static str, e: CkError) -> Error {
    Error::Token {
        token: token.to_string(),
        what,
        why: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_module_that_is_not_there_is_one_line_naming_it_and_softhsm() {
        let uri: Uri = "pkcs11:token=t;object=k".parse().unwrap();
        let err = module_path(Some(Path::new("/nonexistent/libp11.so")), &uri).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::ModuleMissing(_)));
        assert!(
            text.contains("/nonexistent/libp11.so") && text.contains("softhsm2"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }
}

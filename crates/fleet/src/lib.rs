//! # devtls-fleet
//!
//! A fleet CA for small devices: one unique, short-lived key and certificate
//! per device, an SQLite inventory beside them, revocation with a signed CRL,
//! expiry reports and rotation.
//!
//! A fleet is a folder:
//! ```text
//! fleet/
//!   ca.der ca.crt ca.key      the fleet CA (the key 0600, never copied anywhere)
//!   ca.key.uri                instead of ca.key: the PKCS#11 URI of a key in a token
//!   inventory.db              one row per certificate (SQLite, WAL)
//!   devices/ID/               what one device loads: its DER cert and key, ca.der, boot.py
//!                             (+ renew.py with a renewal URL, ID.romfs with --romfs)
//!   .work/                    staging for issuance in progress (see [`recover`])
//! ```
//!
//! - [`Fleet`]: create or open a fleet (opening runs crash recovery first).
//! - [`issue`]: crash-safe, batched, multi-threaded issuance and rotation.
//! - [`inventory`]: the rows and the queries over them.
//! - [`devices`]: device IDs and where they come from (arguments, a count, a CSV).
//! - [`device_files`]: the device's renew.py, boot.py's renewal lines, its ROMFS image.
//! - [`recover`]: how a fleet killed mid-issuance is brought back into agreement.
//! - [`renewal`]: what the renewal service (`fleet serve`) records: pending renewals, confirmations, counters.

pub mod ca_key;
pub mod device_files;
pub mod devices;
mod folders;
pub mod inventory;
pub mod issue;
mod lock;
pub mod migrate;
pub mod recover;
pub mod renewal;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use devtls_pki::files::{self, Output};
use devtls_pki::issue::{self as pki_issue, Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use store::Store;
use time::{Duration, OffsetDateTime};

/// Everything that can go wrong with a fleet. Messages name the file or the
/// device involved and say what to do; they never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key, certificate or file-writing error from the PKI crate.
    #[error(transparent)]
    Pki(#[from] devtls_pki::Error),
    /// The inventory database failed.
    #[error("inventory: {0}")]
    Db(#[from] rusqlite::Error),
    /// The PostgreSQL inventory failed.
    #[error("inventory (PostgreSQL): {}", store::postgres::describe(.0))]
    Postgres(#[from] postgres::Error),
    /// A file system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Input that cannot be used (a bad device ID, a bad CSV line, an unknown device).
    #[error("{0}")]
    Invalid(String),
    /// The fleet folder is damaged (a missing or emptied inventory beside an
    /// existing CA): nothing is changed until it is restored. The text says how.
    #[error("{0}")]
    Damaged(String),
    /// `ca.key` does not belong to `ca.der`: nothing is signed with it.
    #[error("{0}")]
    KeyMismatch(String),
    /// A CRL that would list fewer revoked certificates than the one already
    /// published: it would un-revoke devices.
    #[error("{0}")]
    CrlShrinks(String),
    /// The CA key's PKCS#11 token: module missing, token or object not
    /// found, wrong PIN, an extractable key (see [`ca_key`]).
    #[error(transparent)]
    Token(#[from] devtls_pki::signer::pkcs11::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A fleet folder, opened: its inventory and its CA certificate.
pub struct Fleet {
    dir: PathBuf,
    db: Box<dyn Store>,
    ca_der: Vec<u8>,
    ca: CaState,
    /// Prefix of the owner tokens of this machine's issuing processes
    /// (empty with SQLite, where every process shares the folder).
    issuer: String,
    access: ca_key::TokenAccess,
}

/// Where a fleet's inventory lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Db {
    /// `inventory.db` in the fleet folder.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`postgres://USER@HOST[:PORT]/DB`), shared by
    /// the issuers whose fleet folders hold the same CA.
    Postgres(String),
}

impl Db {
    /// The inventory named by `--db` (or `DEVTLS_FLEET_DB`): none is the
    /// folder's SQLite file.
    pub fn parse(url: Option<&str>) -> Result<Db, Error> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(Db::Sqlite),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Db::Postgres(u.to_string()))
            }
            Some("sqlite") => Ok(Db::Sqlite),
            Some(u) => Err(Error::Invalid(format!(
                "--db {}: not a PostgreSQL URL; write postgres://USER@HOST[:PORT]/DB, \
                 or leave --db out to use the fleet folder's inventory.db",
                store::postgres::redact(u)
            ))),
        }
    }

    fn open(&self, dir: &Path) -> Result<Box<dyn Store>, Error> {
        Ok(match self {
            Db::Sqlite => Box::new(store::sqlite::Sqlite::open(&dir.join(names::INVENTORY))?),
            Db::Postgres(url) => Box::new(store::postgres::Postgres::connect(url)?),
        })
    }
}

fn issuer_of(dir: &Path, db: &Db) -> String {
    match db {
        Db::Sqlite => String::new(),
        Db::Postgres(_) => issuer_prefix(dir),
    }
}

/// This machine's owner prefix for a fleet folder: the same for every
/// process using the folder, different on another machine (or folder), so a
/// recovery only settles what its own folder's processes left behind.
fn issuer_prefix(dir: &Path) -> String {
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let key = store::key64(&format!("{machine}\0{host}\0{}", dir.display()));
    format!("{:08x}-", key as u64 >> 32)
}

/// The CA key as found when the fleet was opened.
enum CaState {
    /// `ca.key` belongs to `ca.der`.
    Ready(Arc<Authority>),
    /// `ca.key` is another key: the text says what to do.
    Mismatch(String),
    /// `ca.key` is missing or unreadable: the text says which and why.
    Unusable(String),
    /// The key is in a PKCS#11 token, opened when first needed.
    Token(ca_key::TokenCa),
}

/// The error for a fleet folder whose inventory is gone or emptied.
fn damaged(dir: &Path, inventory: &Path, what: &str) -> Error {
    Error::Damaged(format!(
        "{} {what}, but {} holds a fleet CA: this is a damaged fleet, not a new one, \
         and nothing was changed. Restore {} (with its -wal file) from a backup; \
         to start a new fleet, move {} away and run `devtls fleet init`",
        inventory.display(),
        dir.display(),
        names::INVENTORY,
        dir.display()
    ))
}

/// Whether `devices/` holds any device folder.
fn has_device_folders(dir: &Path) -> Result<bool, Error> {
    let devices = dir.join(names::DEVICES);
    match std::fs::read_dir(&devices) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&devices, e)),
    }
}

/// What `Fleet::init` makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The CA's common name.
    pub name: String,
    /// The CA's key type.
    pub key: KeyType,
    /// How long the CA certificate is valid, in days.
    pub days: u32,
}

/// The file names inside a fleet folder.
pub mod names {
    /// The CA certificate, DER (what devices load).
    pub const CA_DER: &str = "ca.der";
    /// The CA certificate, PEM (what OpenSSL and servers load).
    pub const CA_PEM: &str = "ca.crt";
    /// The CA private key, PKCS#8 PEM, 0600.
    pub const CA_KEY: &str = "ca.key";
    /// Instead of `ca.key`: the PKCS#11 URI of the CA key in a token (no PIN).
    pub const CA_KEY_URI: &str = "ca.key.uri";
    /// The SQLite inventory.
    pub const INVENTORY: &str = "inventory.db";
    /// The folder holding one folder per device.
    pub const DEVICES: &str = "devices";
    /// Staging for issuance in progress.
    pub const WORK: &str = ".work";
    /// The MicroPython lines that load a device's files.
    pub const BOOT_PY: &str = "boot.py";
}

impl Fleet {
    /// Creates a fleet in `dir`: a CA (certificate and 0600 key) and an empty
    /// inventory. Refuses to touch a folder that already holds a fleet.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<Fleet, Error> {
        Fleet::init_in(dir, opts, &Db::Sqlite)
    }

    /// [`Fleet::init`] with the inventory in `db`; a database that already
    /// holds a fleet's inventory is refused.
    pub fn init_in(dir: &Path, opts: &InitOptions, db_at: &Db) -> Result<Fleet, Error> {
        Fleet::refuse_existing(dir)?;
        // Connect first: an unreachable database makes no CA.
        let remote = Fleet::empty_database(db_at, names::CA_KEY)?;
        let key = PrivateKey::generate(opts.key)?;
        let spec = CertSpec::new(opts.name.clone(), Role::Ca, opts.days);
        let cert = pki_issue::self_signed_ca(&spec, &key)?;
        files::write_all(
            &[
                Output::public(dir.join(names::CA_DER), cert.der.clone()),
                Output::public(dir.join(names::CA_PEM), cert.pem()),
                Output::secret(dir.join(names::CA_KEY), key.pkcs8_pem()),
            ],
            false,
        )?;
        std::fs::create_dir_all(dir.join(names::DEVICES))
            .map_err(|e| Error::io(&dir.join(names::DEVICES), e))?;
        let db: Box<dyn Store> = match remote {
            Some(db) => Box::new(db),
            None => db_at.open(dir)?,
        };
        db.claim_ca(&devtls_pki::fingerprint::sha256_hex(&cert.der))?;
        Ok(Fleet {
            dir: dir.to_path_buf(),
            db,
            issuer: issuer_of(dir, db_at),
            ca: CaState::Ready(Arc::new(Authority::load(&cert.der, key)?)),
            ca_der: cert.der,
            access: ca_key::TokenAccess::default(),
        })
    }

    /// Only creates: a CA (or any part of one) already in `dir` is never replaced.
    fn refuse_existing(dir: &Path) -> Result<(), Error> {
        let existing = [
            names::INVENTORY,
            names::CA_KEY,
            names::CA_KEY_URI,
            names::CA_DER,
            names::CA_PEM,
        ]
        .iter()
        .any(|n| dir.join(n).exists());
        if existing {
            return Err(Error::Invalid(format!(
                "{}: already holds a fleet; use it, or pick another --dir",
                dir.display()
            )));
        }
        Ok(())
    }

    /// A shared database for a new fleet: connected (so an unreachable one
    /// makes no CA) and empty. One that already holds a fleet is refused
    /// with how a second machine joins it: a copy of the first issuer's CA
    /// files (`key_file`: `ca.key` or `ca.key.uri`), no `fleet init`.
    fn empty_database(
        db_at: &Db,
        key_file: &str,
    ) -> Result<Option<store::postgres::Postgres>, Error> {
        let Db::Postgres(url) = db_at else {
            return Ok(None);
        };
        let db = store::postgres::Postgres::connect(url)?;
        if db.has_rows()? || db.has_ca()? {
            return Err(Error::Invalid(format!(
                "{}: already holds a fleet's inventory; to add an issuer, copy {}, {} \
                 and {key_file} from the first issuer's fleet folder and run the commands \
                 with the same --db (no `fleet init`)",
                store::postgres::redact(url),
                names::CA_DER,
                names::CA_PEM,
            )));
        }
        Ok(Some(db))
    }

    /// Creates a fleet whose CA key is in a PKCS#11 token: the key the URI
    /// names is used, or generated there (non-extractable, sensitive), and
    /// signs the CA certificate. The fleet records the URI and the library
    /// in `ca.key.uri`; no file ever holds the key or the PIN.
    ///
    /// With [`Db::Postgres`] the inventory is that (empty) database, as in
    /// [`Fleet::init_in`]; other issuers join with a copy of `ca.der`,
    /// `ca.crt` and `ca.key.uri` and a PIN of their own (docs/fleet-hsm.md).
    pub fn init_in_token(
        dir: &Path,
        opts: &InitOptions,
        uri: &devtls_pki::signer::pkcs11::Uri,
        access: ca_key::TokenAccess,
        db_at: &Db,
    ) -> Result<(Fleet, devtls_pki::signer::pkcs11::Found), Error> {
        Fleet::refuse_existing(dir)?;
        // Connect first: an unreachable or taken database makes no CA (and
        // no key in the token).
        let remote = Fleet::empty_database(db_at, names::CA_KEY_URI)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let made = ca_key::init_in_token(dir, opts, uri, &access)?;
        std::fs::create_dir_all(dir.join(names::DEVICES))
            .map_err(|e| Error::io(&dir.join(names::DEVICES), e))?;
        let db: Box<dyn Store> = match remote {
            Some(db) => Box::new(db),
            None => db_at.open(dir)?,
        };
        db.claim_ca(&devtls_pki::fingerprint::sha256_hex(&made.cert_der))?;
        let token = ca_key::TokenCa::new(made.uri);
        token.set(made.authority);
        let fleet = Fleet {
            dir: dir.to_path_buf(),
            db,
            ca_der: made.cert_der,
            ca: CaState::Token(token),
            access,
            issuer: issuer_of(dir, db_at),
        };
        Ok((fleet, made.found))
    }

    /// How to reach the CA key's token (its library and PIN) when it is in one.
    pub fn set_token_access(&mut self, access: ca_key::TokenAccess) {
        self.access = access;
    }

    /// The PKCS#11 URI of the CA key, when it is in a token.
    pub fn ca_key_uri(&self) -> Option<&devtls_pki::signer::pkcs11::Uri> {
        match &self.ca {
            CaState::Token(t) => Some(&t.uri),
            _ => None,
        }
    }

    /// Opens the fleet in `dir` and brings it into agreement after any crash
    /// (see [`recover`]) before anything else reads it.
    pub fn open(dir: &Path) -> Result<Fleet, Error> {
        Fleet::open_in(dir, &Db::Sqlite)
    }

    /// [`Fleet::open`] with the inventory in `db_at`.
    pub fn open_in(dir: &Path, db_at: &Db) -> Result<Fleet, Error> {
        if let Db::Postgres(_) = db_at {
            return Fleet::open_shared(dir, db_at);
        }
        let inventory = dir.join(names::INVENTORY);
        let ca_path = dir.join(names::CA_DER);
        let has_ca = ca_path.exists()
            || dir.join(names::CA_KEY).exists()
            || dir.join(names::CA_KEY_URI).exists();
        if !inventory.exists() && !has_ca {
            return Err(Error::Invalid(format!(
                "{}: no fleet here (no {}); create one with `devtls fleet init --dir {}`",
                dir.display(),
                names::INVENTORY,
                dir.display()
            )));
        }
        let size = std::fs::metadata(&inventory).map(|m| m.len());
        if size.as_ref().map_or(true, |n| *n == 0) {
            let what = if size.is_ok() {
                "is empty"
            } else {
                "is missing"
            };
            return Err(damaged(dir, &inventory, what));
        }
        let ca_der = std::fs::read(&ca_path).map_err(|e| Error::io(&ca_path, e))?;
        let db = db_at.open(dir)?;
        let mut fleet = Fleet {
            dir: dir.to_path_buf(),
            db,
            ca_der,
            ca: CaState::Unusable(String::new()),
            issuer: String::new(),
            access: ca_key::TokenAccess::default(),
        };
        if !fleet.db.has_rows()? && has_device_folders(dir)? {
            return Err(damaged(
                dir,
                &inventory,
                "has no certificates while devices/ holds device folders",
            ));
        }
        fleet.ca = Fleet::load_ca(dir, &fleet.ca_der);
        recover::run(&mut fleet)?;
        Ok(fleet)
    }

    /// A fleet folder whose inventory is a shared database: the folder holds
    /// the CA and this machine's device folders, the database every row.
    fn open_shared(dir: &Path, db_at: &Db) -> Result<Fleet, Error> {
        let ca_path = dir.join(names::CA_DER);
        if !ca_path.exists() {
            return Err(Error::Invalid(format!(
                "{}: no fleet CA here (no {}); create the fleet with `devtls fleet init --db ...`, \
                 or copy {}, {} and {} (or {}, for a CA key in a token) from the first \
                 issuer's fleet folder",
                dir.display(),
                names::CA_DER,
                names::CA_DER,
                names::CA_PEM,
                names::CA_KEY,
                names::CA_KEY_URI
            )));
        }
        let ca_der = std::fs::read(&ca_path).map_err(|e| Error::io(&ca_path, e))?;
        std::fs::create_dir_all(dir.join(names::DEVICES))
            .map_err(|e| Error::io(&dir.join(names::DEVICES), e))?;
        let db = db_at.open(dir)?;
        let sha256 = devtls_pki::fingerprint::sha256_hex(&ca_der);
        let stored = db.claim_ca(&sha256)?;
        if stored != sha256 {
            return Err(Error::Invalid(format!(
                "the inventory database belongs to another fleet CA (SHA-256 {stored}) than {} \
                 (SHA-256 {sha256}): serials are unique per CA, so one database holds one \
                 fleet. Use this CA's database, or copy the right {} here",
                ca_path.display(),
                names::CA_DER
            )));
        }
        let mut fleet = Fleet {
            dir: dir.to_path_buf(),
            db,
            ca: Fleet::load_ca(dir, &ca_der),
            ca_der,
            issuer: issuer_of(dir, db_at),
            access: ca_key::TokenAccess::default(),
        };
        recover::run(&mut fleet)?;
        Ok(fleet)
    }

    /// The prefix of this machine's owner tokens (see [`recover`]).
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The fleet folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of one device.
    pub fn device_dir(&self, id: &str) -> PathBuf {
        self.dir.join(names::DEVICES).join(id)
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The inventory (every query goes through [`Store`]).
    pub fn db(&self) -> &dyn Store {
        self.db.as_ref()
    }

    /// The CA to sign with, loaded and checked against `ca.der` once when
    /// the fleet was opened (a missing, unreadable or foreign `ca.key` only
    /// stops what signs). The key stays in memory only; it is never written
    /// anywhere but `ca.key`.
    pub fn authority(&self) -> Result<Arc<Authority>, Error> {
        match &self.ca {
            CaState::Ready(ca) => Ok(ca.clone()),
            CaState::Mismatch(why) => Err(Error::KeyMismatch(why.clone())),
            CaState::Unusable(why) => Err(Error::Invalid(why.clone())),
            CaState::Token(token) => token.authority(&self.ca_der, &self.access),
        }
    }

    /// Reads `ca.key` and checks that it belongs to `ca.der`.
    fn load_ca(dir: &Path, ca_der: &[u8]) -> CaState {
        let path = dir.join(names::CA_KEY);
        let uri_path = dir.join(names::CA_KEY_URI);
        if uri_path.exists() {
            if path.exists() {
                return CaState::Unusable(format!(
                    "{} and {} both name a CA key; keep the one this CA was made with \
                     (its public key is in {}) and move the other away",
                    path.display(),
                    uri_path.display(),
                    names::CA_DER
                ));
            }
            return match ca_key::read_uri(&uri_path) {
                Ok(uri) => CaState::Token(ca_key::TokenCa::new(uri)),
                Err(why) => CaState::Unusable(why),
            };
        }
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) => return CaState::Unusable(Error::io(&path, e).to_string()),
        };
        let key = devtls_pki::sniff::sniff(&pem)
            .map_err(|e| e.to_string())
            .and_then(|sniffed| {
                let item = sniffed
                    .items
                    .iter()
                    .find(|i| i.kind.is_secret())
                    .ok_or_else(|| "holds no private key".to_string())?;
                PrivateKey::from_der(&item.der).map_err(|e| e.to_string())
            });
        let key = match key {
            Ok(key) => key,
            Err(why) => return CaState::Unusable(format!("{}: {why}", path.display())),
        };
        match Authority::load(ca_der, key) {
            Ok(ca) => CaState::Ready(Arc::new(ca)),
            Err(devtls_pki::Error::KeyMismatch(_)) => CaState::Mismatch(format!(
                "{} does not belong to {} (their public keys differ), so nothing is signed: \
                 what it signed would verify against nothing. Put back the {} made with \
                 this {} (from your backup); if the CA itself was replaced, restore the \
                 matching {} instead",
                path.display(),
                dir.join(names::CA_DER).display(),
                names::CA_KEY,
                names::CA_DER,
                names::CA_DER,
            )),
            Err(e) => CaState::Unusable(format!("{}: {e}", dir.join(names::CA_DER).display())),
        }
    }

    /// Revokes a device (all its unrevoked certificates) or one certificate by serial.
    pub fn revoke(
        &mut self,
        target: &str,
        reason: devtls_pki::crl::Reason,
    ) -> Result<inventory::Revocation, Error> {
        let serial = target.replace(':', "").to_ascii_lowercase();
        self.db.revoke(target, &serial, reason)
    }

    /// Signs a DER CRL of every revoked certificate, valid for `days` days,
    /// with the next CRL number. `previous` is the CRL it replaces (the file
    /// about to be overwritten), if any: a CRL of this CA that listed a serial
    /// the new one would not is refused ([`Error::CrlShrinks`]), since
    /// publishing it would un-revoke a device.
    pub fn crl(&self, days: u32, previous: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let ca = self.authority()?;
        // The number and the list in one transaction: a higher number never lists fewer.
        let (number, revoked) = self.db.next_crl()?;
        if let Some(old) = previous.and_then(|der| crl_serials(der, &self.ca_der)) {
            let now: std::collections::HashSet<&[u8]> =
                revoked.iter().map(|r| r.serial.as_slice()).collect();
            let dropped = old.iter().filter(|s| !now.contains(s.as_slice())).count();
            if dropped > 0 {
                return Err(Error::CrlShrinks(format!(
                    "the CRL already published by this CA lists {} revoked certificate{}, \
                     {dropped} of which the inventory no longer has as revoked (it now \
                     has {}): the new CRL would un-revoke them, so it was not written. \
                     The inventory was probably replaced by an older copy; restore the \
                     newest {} from a backup",
                    old.len(),
                    if old.len() == 1 { "" } else { "s" },
                    revoked.len(),
                    match self.db.backend() {
                        "sqlite" => names::INVENTORY,
                        _ => "inventory database",
                    }
                )));
            }
        }
        let now = now();
        Ok(devtls_pki::crl::sign(
            &ca,
            &revoked,
            number,
            now,
            now + Duration::days(days as i64),
        )?)
    }
}

/// The serials a CRL lists, when it is a CRL signed by the CA of `ca_der`
/// (anything else, such as another CA's CRL or an unreadable file, is not a
/// previous CRL of this fleet: `None`).
fn crl_serials(der: &[u8], ca_der: &[u8]) -> Option<Vec<Vec<u8>>> {
    use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};
    let (_, ca) = X509Certificate::from_der(ca_der).ok()?;
    let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
    if !devtls_pki::inspect::signature_verifies(
        ca.public_key(),
        &crl.signature_algorithm,
        &crl.signature_value.data,
        crl.tbs_cert_list.as_ref(),
    ) {
        return None;
    }
    Some(
        crl.iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect(),
    )
}

/// The current time in whole seconds (certificates and the inventory agree to the second).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Parses a span such as `30d`, `2w`, `12h` or `90` (days).
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "d"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a span; write e.g. 30d, 2w or 12h"))?;
    match unit {
        "d" | "day" | "days" => Ok(Duration::days(n)),
        "w" | "week" | "weeks" => Ok(Duration::weeks(n)),
        "h" | "hour" | "hours" => Ok(Duration::hours(n)),
        _ => Err(format!(
            "'{s}': unknown unit '{unit}'; write e.g. 30d, 2w or 12h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse() {
        assert_eq!(parse_span("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_span("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_span("90").unwrap(), Duration::days(90));
        assert!(parse_span("soon").is_err());
        assert!(parse_span("3y").is_err());
    }
}

//! What the renewal service (`devtls fleet serve`) keeps in the inventory.
//!
//! A renewal is two-phase: the new certificate is recorded `pending` beside
//! the device's `active` one, and becomes `active` (the old one
//! `superseded`, or `revoked` with `--revoke-old`) only when the device first
//! connects with it. Until then the old certificate keeps working.
//!
//! ## Crash safety
//!
//! Renewal rows are `pending` with no owner, so [`crate::recover`] (which
//! settles rows owned by dead `fleet issue` processes) leaves them alone.
//! One renewal is, in order:
//! 1. a key and a certificate made in memory;
//! 2. for a key the service made: the key written to a new file
//!    `renewal/SERIAL.key.der` (0600, synced);
//! 3. one transaction: the `certs` row (`pending`) and its `renewals` row
//!    (the certificate's DER, the key file's name);
//! 4. the answer sent to the device.
//!
//! Killed before 3: a key file with no row, removed by [`sweep`] on the next
//! start; the device still has its old credentials. Killed after 3: the row
//! is pending, and the device asking again gets the same certificate and
//! key back (the key file is read again). Confirmation is one transaction
//! (the new row `active`, the old one retired); the key file is deleted
//! after it commits, and a file left by a kill there is removed by [`sweep`].
//! A pending row the device never confirms harms nothing: the old
//! certificate stays `active` until its own expiry.
//!
//! The tables live behind [`RenewalStore`], which a backend offers through
//! [`crate::store::Store::renewal`]. The statements, their re-checks and
//! the row mapping are written once ([`sql`]); [`sqlite`] and [`postgres`]
//! only run them (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the inventory's
//! advisory write lock, so several services on one database take turns).
//!
//! The pending key is a file in the fleet folder of the service that made
//! it. Services on different machines sharing one PostgreSQL database do
//! not see each other's key files: a device asking again at another
//! service gets a fresh renewal (see `devtls_renewal::service`).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use devtls_pki::files;
use serde::Serialize;

use crate::{Error, Fleet};

pub mod postgres;
pub mod sql;
pub mod sqlite;

/// The folder of pending keys the service made, inside the fleet folder.
pub const KEYS_DIR: &str = "renewal";

/// The renewal service's part of an inventory. Every method is one
/// statement or one transaction; the key files are this module's.
pub trait RenewalStore {
    /// Creates the renewal tables if they are missing (idempotent).
    fn ensure_schema(&self) -> Result<(), Error>;
    /// The certificate with this serial (lower-case hex), if any.
    fn find(&self, serial: &str) -> Result<Option<CertRow>, Error>;
    /// The pending renewal whose new certificate is row `cert_id`.
    fn pending_by_cert(&self, cert_id: i64) -> Result<Option<Pending>, Error>;
    /// The pending renewal replacing row `old_id`.
    fn pending_for(&self, old_id: i64) -> Result<Option<Pending>, Error>;
    /// Records a new certificate as pending, in one transaction that
    /// re-checks the old row is active and the device has nothing pending.
    fn record(&self, new: &NewRenewal<'_>) -> Result<Recorded, Error>;
    /// Confirms a pending renewal in one transaction; also returns its key file.
    fn confirm(
        &self,
        cert_id: i64,
        old_becomes: &str,
    ) -> Result<(Confirmed, Option<String>), Error>;
    /// Revokes (reason superseded) a pending renewal that will never be
    /// confirmed; returns its key file.
    fn abandon(&self, cert_id: i64) -> Result<Option<String>, Error>;
    /// The key files of the renewals pending now.
    fn pending_key_files(&self) -> Result<HashSet<String>, Error>;
    /// Makes this connection's commits survive a power cut.
    fn durable_commits(&self) -> Result<(), Error>;
    /// Adds `n` to the count of an outcome.
    fn count(&self, outcome: &str, n: u64) -> Result<(), Error>;
    /// The outcome counters and how many renewals are pending now.
    fn counts(&self) -> Result<Counts, Error>;
    /// The pending renewals and the counters, for `fleet migrate`.
    fn export(&self) -> Result<sql::Carried, Error>;
    /// Writes what [`RenewalStore::export`] read, in one transaction.
    fn import(&self, carried: &sql::Carried) -> Result<(), Error>;
}

/// The fleet's renewal tables, or why there are none.
pub fn store(fleet: &Fleet) -> Result<&dyn RenewalStore, Error> {
    fleet.db().renewal().ok_or_else(|| {
        Error::Invalid(format!(
            "the renewal service keeps its state in the inventory, and the {} backend \
             has no renewal tables",
            fleet.db().backend()
        ))
    })
}

/// Creates the renewal tables if they are missing (idempotent).
pub fn ensure_schema(fleet: &Fleet) -> Result<(), Error> {
    store(fleet)?.ensure_schema()
}

/// Makes the renewal service's commits survive a power cut: a certificate
/// handed to a device must never be forgotten by the inventory (it could
/// not be revoked, and the device would be refused `unknown` with it). On
/// SQLite, whose inventory otherwise commits with `synchronous=NORMAL`
/// (fast, and enough for `fleet issue`, which recovers from the synced
/// device folders), every commit of this connection is synced; PostgreSQL's
/// commits are durable already (docs/renewal.md, "Crash safety").
pub fn durable_commits(fleet: &Fleet) -> Result<(), Error> {
    store(fleet)?.durable_commits()
}

/// A certificate row as the service needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// The row id.
    pub id: i64,
    /// The device ID.
    pub device: String,
    /// Serial, lower-case hex.
    pub serial: String,
    /// The stored status (`pending`, `active`, `superseded`, `revoked`; an
    /// expired certificate is `active` here: the dates say it).
    pub status: String,
    /// `client`, `server` or `both`.
    pub role: String,
    /// The key type name (`p256`, ...).
    pub key_type: String,
    /// DNS names, `;`-separated.
    pub dns: String,
    /// IP addresses, `;`-separated.
    pub ips: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// A pending row of a `fleet issue` process (`None` for renewals).
    pub owner: Option<String>,
}

/// The certificate with this serial (lower-case hex), if the fleet has it.
pub fn find(fleet: &Fleet, serial: &str) -> Result<Option<CertRow>, Error> {
    store(fleet)?.find(serial)
}

/// A renewal waiting for the device's confirmation.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The new certificate's row.
    pub cert: CertRow,
    /// The row it replaces.
    pub old_id: i64,
    /// The new certificate, DER.
    pub cert_der: Vec<u8>,
    /// The key file (under `renewal/`) for a key the service made; `None`
    /// when the device sent a CSR.
    pub key_file: Option<String>,
    /// SHA-256 of the CSR's public key, for a CSR renewal.
    pub spki_sha256: Option<String>,
}

/// The pending renewal whose new certificate is row `cert_id`.
pub fn pending_by_cert(fleet: &Fleet, cert_id: i64) -> Result<Option<Pending>, Error> {
    store(fleet)?.pending_by_cert(cert_id)
}

/// The pending renewal replacing row `old_id`.
pub fn pending_for(fleet: &Fleet, old_id: i64) -> Result<Option<Pending>, Error> {
    store(fleet)?.pending_for(old_id)
}

/// The private key of a pending renewal (PKCS#8 DER), read from its file.
pub fn pending_key(fleet: &Fleet, pending: &Pending) -> Result<Option<Vec<u8>>, Error> {
    let Some(name) = &pending.key_file else {
        return Ok(None);
    };
    let path = key_path(fleet.dir(), name);
    fs::read(&path).map(Some).map_err(|e| Error::io(&path, e))
}

/// Whether this service can hand `pending` out again: a CSR renewal always
/// can; a key the service made only where its file is (another service on
/// the same PostgreSQL database keeps its keys in its own fleet folder).
pub fn key_here(fleet: &Fleet, pending: &Pending) -> bool {
    pending
        .key_file
        .as_ref()
        .is_none_or(|name| key_path(fleet.dir(), name).exists())
}

fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(KEYS_DIR).join(name)
}

/// A new certificate to record as pending.
#[derive(Debug, Clone)]
pub struct NewRenewal<'a> {
    /// The row being replaced.
    pub old: &'a CertRow,
    /// The new certificate, DER.
    pub cert_der: &'a [u8],
    /// Its serial, lower-case hex.
    pub serial: &'a str,
    /// Its key type name.
    pub key_type: &'a str,
    /// Validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The file [`write_key`] wrote the key the service made to (`None`
    /// for a CSR).
    pub key_file: Option<String>,
    /// SHA-256 of a CSR's public key.
    pub spki_sha256: Option<&'a str>,
    /// What the old row becomes on confirmation (`superseded` or `revoked`).
    pub old_becomes: &'a str,
}

/// Why a renewal was not recorded.
#[derive(Debug)]
pub enum Recorded {
    /// Recorded: the new row's id.
    Done(i64),
    /// The old certificate is no longer active (revoked or replaced meanwhile).
    OldNotActive,
    /// Another request of the same device recorded a renewal first.
    Raced,
}

/// Writes the key of a renewal about to be recorded to its new 0600 file
/// (synced) and returns the file's name. Called before [`record`], outside
/// any lock the caller holds around the inventory.
///
/// The file is created under its final name, not staged and renamed: no
/// row names it until [`record`] commits, which happens after the sync, so
/// a file cut short by a crash is one no row names and [`sweep`] removes it
/// (docs/renewal.md, "Crash safety"). The serial is the CA's random one: a
/// file already there under it is refused, never overwritten.
pub fn write_key(dir: &Path, serial: &str, key_der: &[u8]) -> Result<String, Error> {
    use std::io::Write;
    let name = format!("{serial}.key.der");
    let path = key_path(dir, &name);
    let created = match files::create_new_private(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let folder = dir.join(KEYS_DIR);
            fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            files::create_new_private(&path)
        }
        other => other,
    };
    let mut file = created.map_err(|e| Error::io(&path, e))?;
    if let Err(e) = file.write_all(key_der).and_then(|()| file.sync_all()) {
        let _ = fs::remove_file(&path);
        return Err(Error::io(&path, e));
    }
    Ok(name)
}

/// Records a new certificate as pending, in one transaction. Its key file
/// (from [`write_key`]) must already be written; when nothing is recorded
/// the file is removed.
pub fn record(fleet: &Fleet, new: &NewRenewal<'_>) -> Result<Recorded, Error> {
    let recorded = store(fleet)?.record(new);
    if !matches!(recorded, Ok(Recorded::Done(_))) {
        if let Some(name) = &new.key_file {
            let _ = fs::remove_file(key_path(fleet.dir(), name));
        }
    }
    recorded
}

/// What a confirmation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// The new certificate is active; the old one became `becomes`.
    Done {
        /// The old certificate's serial.
        old_serial: String,
        /// What it became.
        becomes: String,
    },
    /// The old certificate was revoked meanwhile: the new one is revoked too
    /// (same reason) and the device refused.
    OldRevoked,
    /// Nothing pending under this row any more (another request confirmed it).
    Gone,
}

/// Confirms a pending renewal: the device connected with its new
/// certificate. The key file is deleted once the transaction committed.
pub fn confirm(fleet: &Fleet, cert_id: i64, old_becomes: &str) -> Result<Confirmed, Error> {
    let (confirmed, key_file) = store(fleet)?.confirm(cert_id, old_becomes)?;
    if let Some(name) = key_file {
        let _ = fs::remove_file(key_path(fleet.dir(), &name));
    }
    Ok(confirmed)
}

/// Retires a pending renewal that will never be confirmed (it expired, or
/// the device asked for another kind of renewal): its certificate was sent,
/// so it is revoked (reason superseded) rather than forgotten.
pub fn abandon(fleet: &Fleet, cert_id: i64) -> Result<(), Error> {
    if let Some(name) = store(fleet)?.abandon(cert_id)? {
        let _ = fs::remove_file(key_path(fleet.dir(), &name));
    }
    Ok(())
}

/// Removes key files no pending renewal names (left by a kill between
/// writing the key and recording it, or between confirming and deleting).
/// Returns how many were removed.
pub fn sweep(fleet: &Fleet) -> Result<u64, Error> {
    let dir = fleet.dir().join(KEYS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let keep = store(fleet)?.pending_key_files()?;
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            fs::remove_file(entry.path()).map_err(|e| Error::io(&entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The outcomes counted by the transaction that records ([`record`]:
/// `issued`) or confirms ([`confirm`]: `renewed`) the renewal, so they are
/// exactly what the inventory holds, whatever happens to the process after.
/// A service counts the others itself ([`count`]).
pub const COUNTED_BY_THE_INVENTORY: [&str; 2] = ["issued", "renewed"];

/// Adds `n` to the count of a request outcome (`current`, `resent`,
/// `refused-revoked`, ...): one write.
pub fn count(fleet: &Fleet, outcome: &str, n: u64) -> Result<(), Error> {
    store(fleet)?.count(outcome, n)
}

/// The renewal service's counters, for `fleet status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Requests by outcome, as counted.
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// Renewals waiting for the device's confirmation now.
    pub pending: u64,
}

/// The counters and the number of renewals pending now (none when the
/// backend has no renewal tables).
pub fn counts(fleet: &Fleet) -> Result<Counts, Error> {
    match fleet.db().renewal() {
        Some(store) => {
            store.ensure_schema()?;
            store.counts()
        }
        None => Ok(Counts::default()),
    }
}

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
//! 2. for a key the service made: the key written to
//!    `renewal/SERIAL.key.der` (0600, atomic, synced);
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
//! The SQL is portable between SQLite and PostgreSQL: `TEXT` and `BIGINT`
//! columns, explicit ids, `RETURNING`, no `AUTOINCREMENT`.

use std::fs;
use std::path::{Path, PathBuf};

use devtls_pki::files::{self, Secrecy};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::{Error, Fleet};

/// The folder of pending keys the service made, inside the fleet folder.
pub const KEYS_DIR: &str = "renewal";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS renewals (
    cert_id      BIGINT PRIMARY KEY,
    device       TEXT NOT NULL,
    old_id       BIGINT NOT NULL,
    cert_der     TEXT NOT NULL,
    key_file     TEXT,
    spki_sha256  TEXT,
    created_at   BIGINT NOT NULL,
    confirmed_at BIGINT
);
CREATE INDEX IF NOT EXISTS renewals_old ON renewals (old_id);
CREATE TABLE IF NOT EXISTS renewal_counts (outcome TEXT PRIMARY KEY, n BIGINT NOT NULL);
";

/// Creates the renewal tables if they are missing (idempotent).
pub fn ensure_schema(fleet: &Fleet) -> Result<(), Error> {
    fleet.db.execute_batch(SCHEMA)?;
    Ok(())
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

const CERT_COLUMNS: &str =
    "id, device, serial, status, role, key_type, dns, ips, not_before, not_after, owner";

fn cert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertRow> {
    Ok(CertRow {
        id: r.get(0)?,
        device: r.get(1)?,
        serial: r.get(2)?,
        status: r.get(3)?,
        role: r.get(4)?,
        key_type: r.get(5)?,
        dns: r.get(6)?,
        ips: r.get(7)?,
        not_before: r.get(8)?,
        not_after: r.get(9)?,
        owner: r.get(10)?,
    })
}

/// The certificate with this serial (lower-case hex), if the fleet has it.
pub fn find(fleet: &Fleet, serial: &str) -> Result<Option<CertRow>, Error> {
    Ok(fleet
        .db
        .prepare_cached(&format!(
            "SELECT {CERT_COLUMNS} FROM certs WHERE serial = ?"
        ))?
        .query_row([serial], cert_row)
        .optional()?)
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

fn pending_query(filter: &str) -> String {
    let cols: Vec<String> = CERT_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
    format!(
        "SELECT {}, r.old_id, r.cert_der, r.key_file, r.spki_sha256
         FROM renewals r JOIN certs c ON c.id = r.cert_id
         WHERE c.status = 'pending' AND {filter}",
        cols.join(", ")
    )
}

fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pending> {
    let der: String = r.get(12)?;
    Ok(Pending {
        cert: cert_row(r)?,
        old_id: r.get(11)?,
        cert_der: hex::decode(der).unwrap_or_default(),
        key_file: r.get(13)?,
        spki_sha256: r.get(14)?,
    })
}

/// The pending renewal whose new certificate is row `cert_id`.
pub fn pending_by_cert(fleet: &Fleet, cert_id: i64) -> Result<Option<Pending>, Error> {
    Ok(fleet
        .db
        .prepare_cached(&pending_query("r.cert_id = ?"))?
        .query_row([cert_id], pending_row)
        .optional()?)
}

/// The pending renewal replacing row `old_id`.
pub fn pending_for(fleet: &Fleet, old_id: i64) -> Result<Option<Pending>, Error> {
    Ok(fleet
        .db
        .prepare_cached(&pending_query("r.old_id = ?"))?
        .query_row([old_id], pending_row)
        .optional()?)
}

/// The private key of a pending renewal (PKCS#8 DER), read from its file.
pub fn pending_key(fleet: &Fleet, pending: &Pending) -> Result<Option<Vec<u8>>, Error> {
    let Some(name) = &pending.key_file else {
        return Ok(None);
    };
    let path = key_path(fleet.dir(), name);
    fs::read(&path).map(Some).map_err(|e| Error::io(&path, e))
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

/// Writes the key of a renewal about to be recorded to its 0600 file
/// (atomically, synced) and returns the file's name. Called before
/// [`record`], outside any lock the caller holds around the inventory: the
/// file is what makes it slow.
pub fn write_key(dir: &Path, serial: &str, key_der: &[u8]) -> Result<String, Error> {
    let name = format!("{serial}.key.der");
    files::write_atomic(&key_path(dir, &name), key_der, Secrecy::Secret)?;
    Ok(name)
}

/// Records a new certificate as pending, in one transaction. Its key file
/// (from [`write_key`]) must already be written; when nothing is recorded
/// the file is removed.
pub fn record(fleet: &mut Fleet, new: &NewRenewal<'_>) -> Result<Recorded, Error> {
    let key_file = new.key_file.clone();
    let dir = fleet.dir().to_path_buf();
    let forget_key = || {
        if let Some(name) = &key_file {
            let _ = fs::remove_file(key_path(&dir, name));
        }
    };
    let now = crate::now().unix_timestamp();
    let tx = fleet
        .db
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let active: Option<String> = tx
        .prepare_cached("SELECT status FROM certs WHERE id = ?")?
        .query_row([new.old.id], |r| r.get(0))
        .optional()?;
    if active.as_deref() != Some("active") {
        drop(tx);
        forget_key();
        return Ok(Recorded::OldNotActive);
    }
    let taken = tx
        .prepare_cached("SELECT 1 FROM certs WHERE device = ? AND status = 'pending'")?
        .query_row([&new.old.device], |_| Ok(()))
        .optional()?
        .is_some();
    if taken {
        drop(tx);
        forget_key();
        return Ok(Recorded::Raced);
    }
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO certs (device, serial, sha256, key_type, role, dns, ips, not_before,
                                not_after, status, owner, replaces, old_status, issued_at, from_csr)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL, ?, ?, ?, ?)
             RETURNING id",
        )?
        .query_row(
            params![
                new.old.device,
                new.serial,
                devtls_pki::fingerprint::sha256_hex(new.cert_der),
                new.key_type,
                new.old.role,
                new.old.dns,
                new.old.ips,
                new.not_before,
                new.not_after,
                new.old.id,
                new.old_becomes,
                now,
                new.key_file.is_none(),
            ],
            |r| r.get(0),
        )?;
    tx.prepare_cached(
        "INSERT INTO renewals (cert_id, device, old_id, cert_der, key_file, spki_sha256, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        id,
        new.old.device,
        new.old.id,
        hex::encode(new.cert_der),
        key_file,
        new.spki_sha256,
        now
    ])?;
    tx.commit()?;
    Ok(Recorded::Done(id))
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

/// Confirms a pending renewal: the device connected with its new certificate.
pub fn confirm(fleet: &mut Fleet, cert_id: i64, old_becomes: &str) -> Result<Confirmed, Error> {
    let now = crate::now().unix_timestamp();
    let tx = fleet
        .db
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: Option<(i64, Option<String>)> = tx
        .prepare_cached(
            "SELECT r.old_id, r.key_file FROM renewals r JOIN certs c ON c.id = r.cert_id
             WHERE r.cert_id = ? AND c.status = 'pending'",
        )?
        .query_row([cert_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((old_id, key_file)) = found else {
        return Ok(Confirmed::Gone);
    };
    let (old_serial, old_status, old_reason): (String, String, Option<String>) = tx
        .prepare_cached("SELECT serial, status, reason FROM certs WHERE id = ?")?
        .query_row([old_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let result = if old_status == "revoked" && old_reason.as_deref() != Some("superseded") {
        tx.prepare_cached(
            "UPDATE certs SET status = 'revoked', revoked_at = ?, reason = ? WHERE id = ?",
        )?
        .execute(params![now, old_reason, cert_id])?;
        Confirmed::OldRevoked
    } else {
        crate::inventory::retire(&tx, old_id, old_becomes)?;
        tx.prepare_cached(
            "UPDATE certs SET status = 'active' WHERE id = ? AND status = 'pending'",
        )?
        .execute([cert_id])?;
        Confirmed::Done {
            old_serial,
            becomes: old_becomes.to_string(),
        }
    };
    tx.prepare_cached("UPDATE renewals SET confirmed_at = ?, key_file = NULL WHERE cert_id = ?")?
        .execute(params![now, cert_id])?;
    tx.commit()?;
    if let Some(name) = key_file {
        let _ = fs::remove_file(key_path(fleet.dir(), &name));
    }
    Ok(result)
}

/// Retires a pending renewal that will never be confirmed (it expired, or
/// the device asked for another kind of renewal): its certificate was sent,
/// so it is revoked (reason superseded) rather than forgotten.
pub fn abandon(fleet: &mut Fleet, cert_id: i64) -> Result<(), Error> {
    let now = crate::now().unix_timestamp();
    let tx = fleet
        .db
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let key_file: Option<Option<String>> = tx
        .prepare_cached("SELECT key_file FROM renewals WHERE cert_id = ?")?
        .query_row([cert_id], |r| r.get(0))
        .optional()?;
    tx.prepare_cached(
        "UPDATE certs SET status = 'revoked', revoked_at = ?, reason = 'superseded'
         WHERE id = ? AND status = 'pending'",
    )?
    .execute(params![now, cert_id])?;
    tx.prepare_cached("UPDATE renewals SET key_file = NULL WHERE cert_id = ?")?
        .execute([cert_id])?;
    tx.commit()?;
    if let Some(Some(name)) = key_file {
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
    let keep: std::collections::HashSet<String> = crate::inventory::tuples::<(String,)>(
        &fleet.db,
        "SELECT r.key_file FROM renewals r JOIN certs c ON c.id = r.cert_id
         WHERE c.status = 'pending' AND r.key_file IS NOT NULL",
        [],
    )?
    .into_iter()
    .map(|(n,)| n)
    .collect();
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

/// Adds one to the count of a request outcome (`renewed`, `issued`,
/// `refused-revoked`, ...).
pub fn count(fleet: &Fleet, outcome: &str) -> Result<(), Error> {
    fleet
        .db
        .prepare_cached(
            "INSERT INTO renewal_counts (outcome, n) VALUES (?, 1)
             ON CONFLICT (outcome) DO UPDATE SET n = renewal_counts.n + 1",
        )?
        .execute([outcome])?;
    Ok(())
}

/// The renewal service's counters, for `fleet status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Requests by outcome, as counted.
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// Renewals waiting for the device's confirmation now.
    pub pending: u64,
}

/// The counters and the number of renewals pending now.
pub fn counts(fleet: &Fleet) -> Result<Counts, Error> {
    ensure_schema(fleet)?;
    let outcomes = crate::inventory::tuples::<(String, i64)>(
        &fleet.db,
        "SELECT outcome, n FROM renewal_counts ORDER BY outcome",
        [],
    )?
    .into_iter()
    .map(|(k, n)| (k, n as u64))
    .collect();
    let pending: i64 = fleet.db.query_row(
        "SELECT COUNT(*) FROM renewals r JOIN certs c ON c.id = r.cert_id WHERE c.status = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(Counts {
        outcomes,
        pending: pending as u64,
    })
}

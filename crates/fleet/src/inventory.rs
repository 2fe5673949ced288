//! The inventory: one SQLite row per certificate the fleet CA signed.
//!
//! Invariants the schema enforces, so that no code path (or second process)
//! can break them:
//! - a serial is never used twice (`UNIQUE`);
//! - a device has at most one certificate being issued (`pending`) and at
//!   most one `active` certificate (partial unique indexes).
//!
//! A certificate's stored status is `pending` (being issued, see
//! [`crate::recover`]), `active`, `superseded` (rotated, still valid until it
//! expires) or `revoked`; `expired` is derived from the dates when reading.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration as StdDuration;

use devtls_pki::crl::{Reason, Revoked};
use rusqlite::{params, Connection, OptionalExtension, Row as SqlRow};
use serde::Serialize;
use time::OffsetDateTime;

use crate::Error;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certs (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL,
    serial      TEXT NOT NULL UNIQUE,
    sha256      TEXT,
    key_type    TEXT NOT NULL,
    role        TEXT NOT NULL,
    dns         TEXT NOT NULL DEFAULT '',
    ips         TEXT NOT NULL DEFAULT '',
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'active', 'superseded', 'revoked')),
    owner       TEXT,
    replaces    INTEGER,
    old_status  TEXT,
    issued_at   INTEGER NOT NULL,
    from_csr    INTEGER NOT NULL DEFAULT 0,
    revoked_at  INTEGER,
    reason      TEXT
);
CREATE INDEX IF NOT EXISTS certs_device ON certs (device);
CREATE INDEX IF NOT EXISTS certs_not_after ON certs (not_after);
CREATE INDEX IF NOT EXISTS certs_owner ON certs (owner) WHERE status = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS one_pending ON certs (device) WHERE status = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS one_active ON certs (device) WHERE status = 'active';
";

/// Opens (creating if needed) the inventory at `path`: WAL so readers never
/// block the issuer, and a busy timeout so two processes wait for each other
/// instead of failing.
pub fn open(path: &Path) -> Result<Connection, Error> {
    let db = Connection::open(path)?;
    db.busy_timeout(StdDuration::from_secs(60))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode survives a killed process; a power cut may lose the
    // last commits, which recovery treats like a crash (files are reconciled).
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

/// One certificate in the inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The device ID (its folder name).
    pub device: String,
    /// The serial number, lower-case hex of its bytes.
    pub serial: String,
    /// SHA-256 of the certificate's DER, lower-case hex (`None` while pending).
    pub sha256: Option<String>,
    /// The device key's type (`p256`, `p384`, `rsa2048`).
    pub key_type: String,
    /// `client`, `server` or `both`.
    pub role: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// `pending`, `active`, `expired`, `superseded` or `revoked`.
    pub status: String,
    /// The device made its own key (`fleet issue --csr`).
    pub from_csr: bool,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was revoked.
    pub reason: Option<String>,
}

const COLUMNS: &str =
    "device, serial, sha256, key_type, role, not_before, not_after, status, from_csr, revoked_at, reason";

fn ts(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn row(r: &SqlRow<'_>, now: i64) -> rusqlite::Result<Row> {
    let not_after: i64 = r.get(6)?;
    let mut status: String = r.get(7)?;
    if status == "active" && not_after <= now {
        status = "expired".into();
    }
    Ok(Row {
        device: r.get(0)?,
        serial: r.get(1)?,
        sha256: r.get(2)?,
        key_type: r.get(3)?,
        role: r.get(4)?,
        not_before: ts(r.get(5)?),
        not_after: ts(not_after),
        status,
        from_csr: r.get(8)?,
        revoked_at: r.get::<_, Option<i64>>(9)?.map(ts),
        reason: r.get(10)?,
    })
}

/// Runs a query and collects each row as a tuple.
pub(crate) fn tuples<T>(
    db: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<T>, Error>
where
    T: for<'a> TryFrom<&'a SqlRow<'a>, Error = rusqlite::Error>,
{
    let mut stmt = db.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| T::try_from(r))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Gives a rotated certificate its new status (`superseded`, or `revoked`
/// with reason superseded) once its replacement is active.
pub(crate) fn retire(db: &Connection, id: i64, becomes: &str) -> Result<(), Error> {
    db.prepare_cached(
        "UPDATE certs SET status = ?2,
                revoked_at = CASE WHEN ?2 = 'revoked' THEN ?3 END,
                reason = CASE WHEN ?2 = 'revoked' THEN 'superseded' END
         WHERE id = ?1 AND status = 'active'",
    )?
    .execute(params![id, becomes, crate::now().unix_timestamp()])?;
    Ok(())
}

/// Which rows to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this status (`active`, `expired`, `revoked`, `superseded`, `pending`).
    pub status: Option<String>,
    /// Only active certificates that expire before this moment (and have not yet).
    pub expiring_before: Option<OffsetDateTime>,
}

/// Calls `each` for every row matching `filter`, ordered by expiry then device,
/// without holding them all in memory.
pub fn for_each(
    db: &Connection,
    filter: &Filter,
    mut each: impl FnMut(Row) -> Result<(), Error>,
) -> Result<(), Error> {
    let now = crate::now().unix_timestamp();
    let mut sql = format!("SELECT {COLUMNS} FROM certs WHERE 1=1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    match filter.status.as_deref() {
        None => {}
        Some("active") => {
            sql += " AND status = 'active' AND not_after > ?";
            args.push(now.into());
        }
        Some("expired") => {
            sql += " AND status = 'active' AND not_after <= ?";
            args.push(now.into());
        }
        Some(other) => {
            sql += " AND status = ?";
            args.push(other.to_string().into());
        }
    }
    if let Some(before) = filter.expiring_before {
        sql += " AND status = 'active' AND not_after > ? AND not_after <= ?";
        args.push(now.into());
        args.push(before.unix_timestamp().into());
    }
    sql += " ORDER BY not_after, device, id";
    let mut stmt = db.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    while let Some(r) = rows.next()? {
        each(row(r, now)?)?;
    }
    Ok(())
}

/// The rows of one device, oldest first.
pub fn device_rows(db: &Connection, device: &str) -> Result<Vec<Row>, Error> {
    let now = crate::now().unix_timestamp();
    let mut stmt = db.prepare(&format!(
        "SELECT {COLUMNS} FROM certs WHERE device = ? ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([device], |r| row(r, now))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Whether the inventory holds any certificate at all.
pub fn has_rows(db: &Connection) -> Result<bool, Error> {
    Ok(db
        .prepare_cached("SELECT 1 FROM certs LIMIT 1")?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Whether the inventory holds any row for `device` (in any status).
pub fn has_device(db: &Connection, device: &str) -> Result<bool, Error> {
    Ok(db
        .prepare_cached("SELECT 1 FROM certs WHERE device = ? LIMIT 1")?
        .query_row([device], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Which of `devices` have any row in the inventory, in one query (a batch
/// of IDs checked one statement at a time cost more than the lookups).
pub fn known_devices<'a>(
    db: &Connection,
    devices: impl IntoIterator<Item = &'a str>,
) -> Result<HashSet<String>, Error> {
    let ids: Vec<&str> = devices.into_iter().collect();
    let ids = serde_json::to_string(&ids).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut known = db.prepare_cached(
        "SELECT DISTINCT device FROM certs WHERE device IN (SELECT value FROM json_each(?))",
    )?;
    let rows = known.query_map([ids], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest row of a device none of whose certificates is active or
/// being issued (all revoked, say): what a re-issue replaces.
pub fn retired_device(db: &Connection, device: &str) -> Result<Option<i64>, Error> {
    Ok(db
        .prepare_cached(
            "SELECT MAX(id) FROM certs WHERE device = ?
             HAVING SUM(status IN ('active', 'pending')) = 0",
        )?
        .query_row([device], |r| r.get(0))
        .optional()?)
}

/// What `revoke` did.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    /// The certificates revoked now.
    pub revoked: Vec<Row>,
    /// The certificates that were already revoked.
    pub already: Vec<Row>,
}

/// Revokes a device's unrevoked certificates (by device ID) or one
/// certificate (by serial, hex with or without colons).
pub fn revoke(db: &mut Connection, target: &str, reason: Reason) -> Result<Revocation, Error> {
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let serial = target.replace(':', "").to_ascii_lowercase();
    let mut rows = device_rows(&tx, target)?;
    if rows.is_empty() {
        let now = crate::now().unix_timestamp();
        rows = tx
            .prepare(&format!("SELECT {COLUMNS} FROM certs WHERE serial = ?"))?
            .query_map([&serial], |r| row(r, now))?
            .collect::<Result<_, _>>()?;
    }
    if rows.is_empty() {
        return Err(Error::Invalid(format!(
            "'{target}' is neither a device ID nor a certificate serial in this fleet; \
             see `devtls fleet list`"
        )));
    }
    let now = crate::now();
    let mut result = Revocation {
        revoked: Vec::new(),
        already: Vec::new(),
    };
    for mut r in rows {
        match r.status.as_str() {
            "revoked" => result.already.push(r),
            "pending" => {}
            _ => {
                tx.execute(
                    "UPDATE certs SET status = 'revoked', revoked_at = ?, reason = ? WHERE serial = ?",
                    params![now.unix_timestamp(), reason.name(), r.serial],
                )?;
                r.status = "revoked".into();
                r.revoked_at = Some(now);
                r.reason = Some(reason.name().into());
                result.revoked.push(r);
            }
        }
    }
    tx.commit()?;
    Ok(result)
}

/// Every revoked certificate, for the CRL.
pub fn revoked(db: &Connection) -> Result<Vec<Revoked>, Error> {
    let mut stmt = db.prepare(
        "SELECT serial, revoked_at, reason FROM certs WHERE status = 'revoked' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (serial, at, reason) = r?;
        out.push(Revoked {
            serial: hex::decode(&serial)
                .map_err(|_| Error::Invalid(format!("inventory: bad serial '{serial}'")))?,
            at: ts(at.unwrap_or(0)),
            reason: reason
                .and_then(|r| r.parse().ok())
                .unwrap_or(Reason::Unspecified),
        });
    }
    Ok(out)
}

/// Takes the next CRL number (1, 2, 3...), remembered in the inventory.
pub fn next_crl_number(db: &Connection) -> Result<u64, Error> {
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('crl_number', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [],
    )?;
    let n: String = db.query_row("SELECT value FROM meta WHERE key = 'crl_number'", [], |r| {
        r.get(0)
    })?;
    n.parse()
        .map_err(|_| Error::Invalid("inventory: bad CRL number".into()))
}

/// Counts of certificates by status (with `expired` derived from the dates).
pub fn counts(db: &Connection) -> Result<Vec<(String, u64)>, Error> {
    let now = crate::now().unix_timestamp();
    let mut stmt = db.prepare(
        "SELECT CASE WHEN status = 'active' AND not_after <= ?1 THEN 'expired' ELSE status END AS s,
                COUNT(*) FROM certs GROUP BY s ORDER BY s",
    )?;
    let rows = stmt
        .query_map([now], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// How many active certificates expire in each week from now (`weeks`
/// buckets), and how many later than that.
pub fn expiry_histogram(db: &Connection, weeks: u32) -> Result<(Vec<u64>, u64), Error> {
    let now = crate::now().unix_timestamp();
    let week = 7 * 86400;
    let mut buckets = vec![0u64; weeks as usize];
    let mut later = 0;
    let mut stmt = db.prepare(
        "SELECT (not_after - ?1) / ?2 AS w, COUNT(*) FROM certs
         WHERE status = 'active' AND not_after > ?1 GROUP BY w",
    )?;
    let rows = stmt.query_map([now, week], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    for r in rows {
        let (w, n) = r?;
        match buckets.get_mut(w as usize) {
            Some(b) => *b += n,
            None => later += n,
        }
    }
    Ok((buckets, later))
}

/// The next `n` active certificates to expire.
pub fn next_expiries(db: &Connection, n: usize) -> Result<Vec<Row>, Error> {
    let mut out = Vec::new();
    let now = crate::now().unix_timestamp();
    let mut stmt = db.prepare(&format!(
        "SELECT {COLUMNS} FROM certs WHERE status = 'active' AND not_after > ? ORDER BY not_after LIMIT ?"
    ))?;
    for r in stmt.query_map(params![now, n as i64], |r| row(r, now))? {
        out.push(r?);
    }
    Ok(out)
}

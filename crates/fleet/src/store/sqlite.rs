//! The SQLite backend: `inventory.db` in the fleet folder, WAL, and
//! `BEGIN IMMEDIATE` transactions so two processes on one machine take
//! turns instead of failing.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration as StdDuration;

use devtls_pki::crl::{Reason, Revoked};
use rusqlite::{params, Connection, OptionalExtension, Row as SqlRow};

use super::{Landed, NewCert, PendingRow, RawRow, Reserved, Retire, RotateRow, Store, RAW_COLUMNS};
use crate::inventory::{self, Filter, Revocation, Row, COLUMNS};
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
CREATE INDEX IF NOT EXISTS certs_list ON certs (not_after, device, id);
CREATE INDEX IF NOT EXISTS certs_status ON certs (status, not_after);
CREATE INDEX IF NOT EXISTS certs_owner ON certs (owner) WHERE status = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS one_pending ON certs (device) WHERE status = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS one_active ON certs (device) WHERE status = 'active';
";

/// The schema version this binary writes (`PRAGMA user_version`; files
/// from before versioning read 0 and are brought up by `SCHEMA`, which only
/// adds what is missing).
pub const SCHEMA_VERSION: i64 = 1;

/// An open SQLite inventory.
pub struct Sqlite {
    db: Connection,
}

impl Sqlite {
    /// Opens (creating if needed) the inventory at `path`: WAL so readers
    /// never block the issuer, and a busy timeout so two processes wait for
    /// each other instead of failing.
    pub fn open(path: &Path) -> Result<Sqlite, Error> {
        let db = Connection::open(path)?;
        db.busy_timeout(StdDuration::from_secs(60))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode survives a killed process; a power cut may lose the
        // last commits, which recovery treats like a crash (files are reconciled).
        // The renewal service, whose certificates leave over the network, syncs
        // every commit of its own connection (renewal::durable_commits).
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // The schema version lives in the file's header (user_version): a
        // file written by a newer devtls is refused before anything changes.
        let found: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(Error::Invalid(format!(
                "{}: its schema is version {found}, newer than this devtls knows \
                 (version {SCHEMA_VERSION}); nothing was changed. Use the devtls release \
                 that wrote it (or newer)",
                path.display()
            )));
        }
        db.execute_batch(SCHEMA)?;
        if found < SCHEMA_VERSION {
            db.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Sqlite { db })
    }

    /// A write transaction taken at once (`BEGIN IMMEDIATE`): a second
    /// process waits for it instead of failing at its first write.
    pub(crate) fn immediate(&self) -> Result<Immediate<'_>, Error> {
        self.db.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Immediate {
            db: &self.db,
            done: false,
        })
    }

    /// The connection, for the renewal tables ([`crate::renewal`]).
    pub(crate) fn conn(&self) -> &Connection {
        &self.db
    }

    fn tuples<T>(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<T>, Error>
    where
        T: for<'a> TryFrom<&'a SqlRow<'a>, Error = rusqlite::Error>,
    {
        let mut stmt = self.db.prepare_cached(sql)?;
        let rows = stmt.query_map(args, |r| T::try_from(r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn exists(&self, sql: &str, args: impl rusqlite::Params) -> Result<bool, Error> {
        Ok(self
            .db
            .prepare_cached(sql)?
            .query_row(args, |_| Ok(()))
            .optional()?
            .is_some())
    }
}

/// A `BEGIN IMMEDIATE` transaction, rolled back unless committed.
pub(crate) struct Immediate<'a> {
    db: &'a Connection,
    done: bool,
}

impl<'a> Immediate<'a> {
    /// The connection the transaction runs on.
    pub(crate) fn conn(&self) -> &'a Connection {
        self.db
    }

    pub(crate) fn commit(mut self) -> Result<(), Error> {
        self.db.execute_batch("COMMIT")?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Immediate<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }
}

fn row(r: &SqlRow<'_>, now: i64, paged: bool) -> rusqlite::Result<Row> {
    Ok(inventory::make_row(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        now,
        paged,
    ))
}

fn retire(db: &Connection, id: i64, becomes: &str) -> Result<(), Error> {
    db.prepare_cached(
        "UPDATE certs SET status = ?2,
                revoked_at = CASE WHEN ?2 = 'revoked' THEN ?3 END,
                reason = CASE WHEN ?2 = 'revoked' THEN 'superseded' END
         WHERE id = ?1 AND status = 'active'",
    )?
    .execute(params![id, becomes, crate::now().unix_timestamp()])?;
    Ok(())
}

fn rows_where(db: &Connection, sql_where: &str, arg: &str) -> Result<Vec<Row>, Error> {
    let now = crate::now().unix_timestamp();
    let mut stmt = db.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM certs WHERE {sql_where} ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([arg], |r| row(r, now, false))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

impl Store for Sqlite {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn has_rows(&self) -> Result<bool, Error> {
        self.exists("SELECT 1 FROM certs LIMIT 1", [])
    }

    fn has_device(&self, device: &str) -> Result<bool, Error> {
        self.exists("SELECT 1 FROM certs WHERE device = ? LIMIT 1", [device])
    }

    fn known_devices(&self, devices: &[&str]) -> Result<HashSet<String>, Error> {
        // One query for the batch: a statement per ID cost more than the lookups.
        let ids = serde_json::to_string(devices).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut known = self.db.prepare_cached(
            "SELECT DISTINCT device FROM certs WHERE device IN (SELECT value FROM json_each(?))",
        )?;
        let rows = known.query_map([ids], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn retired_device(&self, device: &str) -> Result<Option<i64>, Error> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT MAX(id) FROM certs WHERE device = ?
                 HAVING SUM(status IN ('active', 'pending')) = 0",
            )?
            .query_row([device], |r| r.get(0))
            .optional()?)
    }

    fn device_rows(&self, device: &str) -> Result<Vec<Row>, Error> {
        rows_where(&self.db, "device = ?", device)
    }

    fn for_each(
        &self,
        filter: &Filter,
        each: &mut dyn FnMut(Row) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let now = crate::now().unix_timestamp();
        let (sql, args) = inventory::list_sql(filter, now, |_| "?".to_string());
        let args: Vec<rusqlite::types::Value> = args
            .into_iter()
            .map(|a| match a {
                inventory::Arg::Int(n) => n.into(),
                inventory::Arg::Text(s) => s.into(),
            })
            .collect();
        let mut stmt = self.db.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            each(row(r, now, filter.limit.is_some())?)?;
        }
        Ok(())
    }

    fn counts(&self) -> Result<Vec<(String, u64)>, Error> {
        let now = crate::now().unix_timestamp();
        let mut stmt = self.db.prepare(
            "SELECT CASE WHEN status = 'active' AND not_after <= ?1 THEN 'expired' ELSE status END AS s,
                    COUNT(*) FROM certs GROUP BY s ORDER BY s",
        )?;
        let rows = stmt
            .query_map([now], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn expiry_histogram(&self, weeks: u32) -> Result<(Vec<u64>, u64), Error> {
        let now = crate::now().unix_timestamp();
        let mut stmt = self.db.prepare(
            "SELECT (not_after - ?1) / ?2 AS w, COUNT(*) FROM certs
             WHERE status = 'active' AND not_after > ?1 GROUP BY w",
        )?;
        let rows = stmt
            .query_map([now, inventory::WEEK], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(inventory::histogram(weeks, rows))
    }

    fn next_expiries(&self, n: usize) -> Result<Vec<Row>, Error> {
        let now = crate::now().unix_timestamp();
        let mut stmt = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM certs WHERE status = 'active' AND not_after > ?
             ORDER BY not_after LIMIT ?"
        ))?;
        let rows = stmt
            .query_map(params![now, n as i64], |r| row(r, now, false))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn revoke(&self, target: &str, serial: &str, reason: Reason) -> Result<Revocation, Error> {
        let tx = self.immediate()?;
        let mut rows = rows_where(tx.db, "device = ?", target)?;
        if rows.is_empty() {
            rows = rows_where(tx.db, "serial = ?", serial)?;
        }
        let renewals: HashSet<String> = tx
            .db
            .prepare_cached(&crate::renewal::sql::PENDING_SERIALS.replace('$', "?"))?
            .query_map([target, serial], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let now = crate::now();
        let result = inventory::revocation(target, rows, &renewals, reason, now, |serial| {
            tx.db.execute(
                "UPDATE certs SET status = 'revoked', revoked_at = ?, reason = ? WHERE serial = ?",
                params![now.unix_timestamp(), reason.name(), serial],
            )?;
            Ok(())
        })?;
        tx.commit()?;
        Ok(result)
    }

    fn revoked(&self) -> Result<Vec<Revoked>, Error> {
        let rows: Vec<(String, Option<i64>, Option<String>)> = self.tuples(
            "SELECT serial, revoked_at, reason FROM certs WHERE status = 'revoked' ORDER BY id",
            [],
        )?;
        rows.into_iter().map(inventory::revoked_entry).collect()
    }

    fn next_crl(&self) -> Result<(u64, Vec<Revoked>), Error> {
        let tx = self.immediate()?;
        tx.db.execute(
            "INSERT INTO meta (key, value) VALUES ('crl_number', '1')
             ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            [],
        )?;
        let n: String =
            tx.db
                .query_row("SELECT value FROM meta WHERE key = 'crl_number'", [], |r| {
                    r.get(0)
                })?;
        let revoked = self.revoked()?;
        tx.commit()?;
        let n = n
            .parse()
            .map_err(|_| Error::Invalid("inventory: bad CRL number".into()))?;
        Ok((n, revoked))
    }

    fn claim_ca(&self, sha256: &str) -> Result<String, Error> {
        let tx = self.immediate()?;
        tx.db.execute(
            "INSERT INTO meta (key, value) VALUES ('ca_sha256', ?) ON CONFLICT (key) DO NOTHING",
            [sha256],
        )?;
        let stored: String =
            tx.db
                .query_row("SELECT value FROM meta WHERE key = 'ca_sha256'", [], |r| {
                    r.get(0)
                })?;
        tx.commit()?;
        Ok(stored)
    }

    fn hold_owner(&self, _owner: &str) -> Result<(), Error> {
        Ok(())
    }

    fn owner_alive(&self, _owner: &str) -> Result<Option<bool>, Error> {
        Ok(None)
    }

    fn reserve(&self, owner: &str, certs: &[NewCert]) -> Result<Vec<Reserved>, Error> {
        let tx = self.immediate()?;
        let mut out = Vec::with_capacity(certs.len());
        {
            // Taken: anything for a new device; a pending row for a rotation;
            // a pending or active row for a re-issue.
            let mut taken = tx.db.prepare_cached(
                "SELECT 1 FROM certs WHERE device = ?1
                   AND (status = 'pending' OR ?2 IS NULL OR (?3 AND status = 'active')) LIMIT 1",
            )?;
            let mut still_active = tx
                .db
                .prepare_cached("SELECT 1 FROM certs WHERE id = ? AND status = 'active'")?;
            let mut serial_used = tx
                .db
                .prepare_cached("SELECT 1 FROM certs WHERE serial = ?")?;
            let mut insert = tx.db.prepare_cached(
                "INSERT INTO certs (device, serial, sha256, key_type, role, dns, ips, not_before,
                                    not_after, status, owner, replaces, old_status, issued_at, from_csr)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)
                 ON CONFLICT DO NOTHING",
            )?;
            let now = crate::now().unix_timestamp();
            for c in certs {
                // Checked again inside the transaction: another process may have
                // issued this device since the batch was planned.
                if taken
                    .query_row(params![c.device, c.replaces, c.reissue], |_| Ok(()))
                    .optional()?
                    .is_some()
                {
                    out.push(Reserved::Skipped);
                    continue;
                }
                if let Some(row) = c.replaces.filter(|_| !c.reissue) {
                    if still_active
                        .query_row([row], |_| Ok(()))
                        .optional()?
                        .is_none()
                    {
                        out.push(Reserved::Skipped);
                        continue;
                    }
                }
                let inserted = insert.execute(params![
                    c.device,
                    c.serial,
                    c.sha256,
                    c.key_type,
                    c.role,
                    c.dns,
                    c.ips,
                    c.not_before,
                    c.not_after,
                    owner,
                    c.replaces,
                    c.old_status,
                    now,
                    c.from_csr,
                ]);
                // A UNIQUE constraint refused it (nothing inserted, the rest
                // of the batch kept): the serial's, or another process got
                // the device first.
                out.push(match inserted {
                    Ok(1) => Reserved::Owned,
                    Ok(_) if serial_used.exists([&c.serial])? => Reserved::SerialTaken,
                    Ok(_) => Reserved::Skipped,
                    Err(e) => Reserved::Failed(e.to_string()),
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn settle(&self, owner: &str, retire_rows: &[Retire], forget: &[String]) -> Result<(), Error> {
        let tx = self.immediate()?;
        {
            let mut del = tx
                .db
                .prepare_cached("DELETE FROM certs WHERE serial = ? AND status = 'pending'")?;
            for serial in forget {
                del.execute([serial])?;
            }
            // The old certificate stops being active first: a device has at
            // most one active row.
            for (row, becomes) in retire_rows {
                retire(tx.db, *row, becomes)?;
            }
            tx.db
                .prepare_cached(
                    "UPDATE certs SET status = 'active', owner = NULL
                     WHERE owner = ? AND status = 'pending'",
                )?
                .execute([owner])?;
        }
        tx.commit()
    }

    fn max_id(&self) -> Result<i64, Error> {
        Ok(self
            .db
            .query_row("SELECT COALESCE(MAX(id), 0) FROM certs", [], |r| r.get(0))?)
    }

    fn rotate_rows(
        &self,
        before: i64,
        cursor: i64,
        max_id: i64,
        limit: usize,
    ) -> Result<Vec<RotateRow>, Error> {
        self.tuples(
            "SELECT id, device, role, key_type, dns, ips, from_csr FROM certs
             WHERE status = 'active' AND not_after <= ? AND id > ? AND id <= ?
             ORDER BY id LIMIT ?",
            params![before, cursor, max_id, limit as i64],
        )
    }

    fn raw_rows(&self, each: &mut dyn FnMut(RawRow) -> Result<(), Error>) -> Result<(), Error> {
        let mut stmt = self
            .db
            .prepare(&format!("SELECT {RAW_COLUMNS} FROM certs ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            each(RawRow {
                id: r.get(0)?,
                device: r.get(1)?,
                serial: r.get(2)?,
                sha256: r.get(3)?,
                key_type: r.get(4)?,
                role: r.get(5)?,
                dns: r.get(6)?,
                ips: r.get(7)?,
                not_before: r.get(8)?,
                not_after: r.get(9)?,
                status: r.get(10)?,
                owner: r.get(11)?,
                replaces: r.get(12)?,
                old_status: r.get(13)?,
                issued_at: r.get(14)?,
                from_csr: r.get(15)?,
                revoked_at: r.get(16)?,
                reason: r.get(17)?,
            })?;
        }
        Ok(())
    }

    fn meta(&self) -> Result<Vec<(String, String)>, Error> {
        self.tuples("SELECT key, value FROM meta ORDER BY key", [])
    }

    fn pending_owners(&self) -> Result<BTreeSet<String>, Error> {
        let owners: Vec<(Option<String>,)> = self.tuples(
            "SELECT DISTINCT owner FROM certs WHERE status = 'pending'",
            [],
        )?;
        Ok(owners.into_iter().filter_map(|(o,)| o).collect())
    }

    fn pending_rows(&self, owner: &str) -> Result<Vec<PendingRow>, Error> {
        self.tuples(
            "SELECT id, device, serial, role, replaces, old_status FROM certs
             WHERE status = 'pending' AND owner = ?",
            [owner],
        )
    }

    fn recover(&self, landed: &[Landed], missing: &[i64]) -> Result<(), Error> {
        let tx = self.immediate()?;
        for (id, sha256, replaces, old_status) in landed {
            if let (Some(old), Some(becomes)) = (replaces, old_status) {
                retire(tx.db, *old, becomes)?;
            }
            tx.db.execute(
                "UPDATE certs SET status = 'active', owner = NULL, sha256 = ? WHERE id = ?",
                params![sha256, id],
            )?;
        }
        for id in missing {
            tx.db.execute("DELETE FROM certs WHERE id = ?", [id])?;
        }
        tx.commit()
    }

    fn renewal(&self) -> Option<&dyn crate::renewal::RenewalStore> {
        Some(self)
    }
}

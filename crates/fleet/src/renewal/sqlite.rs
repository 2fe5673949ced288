//! The renewal tables in the SQLite inventory. The SQL is written to run
//! unchanged on PostgreSQL (`TEXT`/`BIGINT`, explicit ids, `RETURNING`,
//! `ON CONFLICT`); only the transaction start (`BEGIN IMMEDIATE`) is SQLite's.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::{CertRow, Confirmed, Counts, NewRenewal, Pending, Recorded, RenewalStore};
use crate::store::sqlite::Sqlite;
use crate::Error;

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

/// `BEGIN IMMEDIATE`, rolled back unless committed.
struct Tx<'a> {
    db: &'a Connection,
    done: bool,
}

impl<'a> Tx<'a> {
    fn begin(db: &'a Connection) -> Result<Tx<'a>, Error> {
        db.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Tx { db, done: false })
    }

    fn commit(mut self) -> Result<(), Error> {
        self.db.execute_batch("COMMIT")?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }
}

fn exists(db: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<bool, Error> {
    Ok(db
        .prepare_cached(sql)?
        .query_row(args, |_| Ok(()))
        .optional()?
        .is_some())
}

/// Gives a replaced row its new status, as rotation does.
fn retire(db: &Connection, id: i64, becomes: &str, now: i64) -> Result<(), Error> {
    db.prepare_cached(
        "UPDATE certs SET status = ?2,
                revoked_at = CASE WHEN ?2 = 'revoked' THEN ?3 END,
                reason = CASE WHEN ?2 = 'revoked' THEN 'superseded' END
         WHERE id = ?1 AND status = 'active'",
    )?
    .execute(params![id, becomes, now])?;
    Ok(())
}

impl RenewalStore for Sqlite {
    fn ensure_schema(&self) -> Result<(), Error> {
        self.conn().execute_batch(SCHEMA)?;
        Ok(())
    }

    fn find(&self, serial: &str) -> Result<Option<CertRow>, Error> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certs WHERE serial = ?"
            ))?
            .query_row([serial], cert_row)
            .optional()?)
    }

    fn pending_by_cert(&self, cert_id: i64) -> Result<Option<Pending>, Error> {
        Ok(self
            .conn()
            .prepare_cached(&pending_query("r.cert_id = ?"))?
            .query_row([cert_id], pending_row)
            .optional()?)
    }

    fn pending_for(&self, old_id: i64) -> Result<Option<Pending>, Error> {
        Ok(self
            .conn()
            .prepare_cached(&pending_query("r.old_id = ?"))?
            .query_row([old_id], pending_row)
            .optional()?)
    }

    fn record(&self, new: &NewRenewal<'_>) -> Result<Recorded, Error> {
        let now = crate::now().unix_timestamp();
        let tx = Tx::begin(self.conn())?;
        let active = exists(
            tx.db,
            "SELECT 1 FROM certs WHERE id = ? AND status = 'active'",
            [new.old.id],
        )?;
        if !active {
            return Ok(Recorded::OldNotActive);
        }
        let taken = exists(
            tx.db,
            "SELECT 1 FROM certs WHERE device = ? AND status = 'pending'",
            [&new.old.device],
        )?;
        if taken {
            return Ok(Recorded::Raced);
        }
        let id: i64 = tx
            .db
            .prepare_cached(
                "INSERT INTO certs (device, serial, sha256, key_type, role, dns, ips, not_before,
                                    not_after, status, owner, replaces, old_status, issued_at,
                                    from_csr)
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
        tx.db
            .prepare_cached(
                "INSERT INTO renewals (cert_id, device, old_id, cert_der, key_file, spki_sha256,
                                       created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                id,
                new.old.device,
                new.old.id,
                hex::encode(new.cert_der),
                new.key_file,
                new.spki_sha256,
                now
            ])?;
        tx.commit()?;
        Ok(Recorded::Done(id))
    }

    fn confirm(
        &self,
        cert_id: i64,
        old_becomes: &str,
    ) -> Result<(Confirmed, Option<String>), Error> {
        let now = crate::now().unix_timestamp();
        let tx = Tx::begin(self.conn())?;
        let found: Option<(i64, Option<String>)> = tx
            .db
            .prepare_cached(
                "SELECT r.old_id, r.key_file FROM renewals r JOIN certs c ON c.id = r.cert_id
                 WHERE r.cert_id = ? AND c.status = 'pending'",
            )?
            .query_row([cert_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((old_id, key_file)) = found else {
            return Ok((Confirmed::Gone, None));
        };
        let (old_serial, old_status, old_reason): (String, String, Option<String>) = tx
            .db
            .prepare_cached("SELECT serial, status, reason FROM certs WHERE id = ?")?
            .query_row([old_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let result = if old_status == "revoked" && old_reason.as_deref() != Some("superseded") {
            // The device was revoked while its renewal was pending: so is the renewal.
            tx.db
                .prepare_cached(
                    "UPDATE certs SET status = 'revoked', revoked_at = ?, reason = ? WHERE id = ?",
                )?
                .execute(params![now, old_reason, cert_id])?;
            Confirmed::OldRevoked
        } else {
            // The old row stops being active first: a device has at most one active row.
            retire(tx.db, old_id, old_becomes, now)?;
            tx.db
                .prepare_cached(
                    "UPDATE certs SET status = 'active' WHERE id = ? AND status = 'pending'",
                )?
                .execute([cert_id])?;
            Confirmed::Done {
                old_serial,
                becomes: old_becomes.to_string(),
            }
        };
        tx.db
            .prepare_cached(
                "UPDATE renewals SET confirmed_at = ?, key_file = NULL WHERE cert_id = ?",
            )?
            .execute(params![now, cert_id])?;
        tx.commit()?;
        Ok((result, key_file))
    }

    fn abandon(&self, cert_id: i64) -> Result<Option<String>, Error> {
        let now = crate::now().unix_timestamp();
        let tx = Tx::begin(self.conn())?;
        let key_file: Option<Option<String>> = tx
            .db
            .prepare_cached("SELECT key_file FROM renewals WHERE cert_id = ?")?
            .query_row([cert_id], |r| r.get(0))
            .optional()?;
        tx.db
            .prepare_cached(
                "UPDATE certs SET status = 'revoked', revoked_at = ?, reason = 'superseded'
                 WHERE id = ? AND status = 'pending'",
            )?
            .execute(params![now, cert_id])?;
        tx.db
            .prepare_cached("UPDATE renewals SET key_file = NULL WHERE cert_id = ?")?
            .execute([cert_id])?;
        tx.commit()?;
        Ok(key_file.flatten())
    }

    fn pending_key_files(&self) -> Result<HashSet<String>, Error> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT r.key_file FROM renewals r JOIN certs c ON c.id = r.cert_id
             WHERE c.status = 'pending' AND r.key_file IS NOT NULL",
        )?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(names.collect::<Result<_, _>>()?)
    }

    fn count(&self, outcome: &str) -> Result<(), Error> {
        self.conn()
            .prepare_cached(
                "INSERT INTO renewal_counts (outcome, n) VALUES (?, 1)
                 ON CONFLICT (outcome) DO UPDATE SET n = renewal_counts.n + 1",
            )?
            .execute([outcome])?;
        Ok(())
    }

    fn counts(&self) -> Result<Counts, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT outcome, n FROM renewal_counts ORDER BY outcome")?;
        let outcomes = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;
        let pending: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM renewals r JOIN certs c ON c.id = r.cert_id
             WHERE c.status = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(Counts {
            outcomes,
            pending: pending as u64,
        })
    }
}

//! The PostgreSQL backend: one database shared by several issuers (on one
//! machine or many), each with its own copy of the fleet folder.
//!
//! What keeps the inventory right with several writers at once:
//! - the same `UNIQUE` constraints as SQLite: a serial is used once per CA
//!   (a random clash is reported as [`Reserved::SerialTaken`] and signed
//!   again), one pending and one active certificate per device;
//! - steps that read and then write (reserve, settle, revoke, recovery) run
//!   in one transaction holding the same transaction-scoped advisory lock,
//!   so they take turns exactly as SQLite's `BEGIN IMMEDIATE` makes them;
//!   signing and writing device folders (the slow part) run outside it;
//! - the CRL number is a row updated in the transaction that also reads the
//!   revoked certificates, so numbers strictly increase across issuers and
//!   a higher number never lists fewer certificates.
//!
//! The schema is versioned in `schema_version` and migrated on connect
//! (under a session advisory lock, so two issuers starting at once migrate
//! once); a database newer than this binary is refused. See
//! docs/fleet-postgres.md.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard};

use devtls_pki::crl::{Reason, Revoked};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row as PgRow, Transaction};

use super::{
    key64, Landed, NewCert, PendingRow, RawRow, Reserved, Retire, RotateRow, Store, RAW_COLUMNS,
};
use crate::inventory::{self, Filter, Revocation, Row, COLUMNS};
use crate::Error;

/// The schema, one migration per version (version = index + 1). Only ever
/// appended to: a released migration is never edited.
/// 1. the inventory (`meta`, `certs`);
/// 2. the renewal service's tables (`renewals`, `renewal_counts`), shared
///    with SQLite ([`crate::renewal`]).
const MIGRATIONS: &[&str] = &[INVENTORY, crate::renewal::sql::SCHEMA];

/// Migration 1.
const INVENTORY: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE certs (
    id          BIGSERIAL PRIMARY KEY,
    device      TEXT NOT NULL,
    serial      TEXT NOT NULL UNIQUE,
    sha256      TEXT,
    key_type    TEXT NOT NULL,
    role        TEXT NOT NULL,
    dns         TEXT NOT NULL DEFAULT '',
    ips         TEXT NOT NULL DEFAULT '',
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'active', 'superseded', 'revoked')),
    owner       TEXT,
    replaces    BIGINT,
    old_status  TEXT,
    issued_at   BIGINT NOT NULL,
    from_csr    BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at  BIGINT,
    reason      TEXT
);
CREATE INDEX certs_device ON certs (device);
CREATE INDEX certs_list ON certs (not_after, device, id);
CREATE INDEX certs_status ON certs (status, not_after);
CREATE INDEX certs_owner ON certs (owner) WHERE status = 'pending';
CREATE UNIQUE INDEX one_pending ON certs (device) WHERE status = 'pending';
CREATE UNIQUE INDEX one_active ON certs (device) WHERE status = 'active';
INSERT INTO meta (key, value) VALUES ('crl_number', '0');
";

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock key every writing step of every issuer takes
/// ("devtls" in ASCII, so it does not collide with other users' keys by chance).
const WRITE_LOCK: i64 = 0x6465_7674_6c73;
/// The advisory lock key held while migrating.
const MIGRATE_LOCK: i64 = WRITE_LOCK + 1;

/// Where [`Postgres::import`]'s source hands each row.
pub type RowSink<'a> = dyn FnMut(RawRow) -> Result<(), Error> + 'a;

/// An open PostgreSQL inventory.
pub struct Postgres {
    client: Mutex<Client>,
}

fn pg(e: postgres::Error) -> Error {
    Error::Postgres(e)
}

/// The server's own words for an error (the `postgres` crate's `Display`
/// says only "db error" and keeps them in its source): its severity,
/// message and SQLSTATE, or the error and its causes.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// The URL without its password (for messages).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Postgres {
    /// Connects to `url` (`postgres://USER@HOST[:PORT]/DB[?sslmode=disable]`)
    /// and brings the schema up to [`SCHEMA_VERSION`].
    pub fn connect(url: &str) -> Result<Postgres, Error> {
        let mut client = Client::connect(url, NoTls).map_err(|e| {
            Error::Invalid(format!(
                "inventory database {}: could not connect: {}. Check that the server \
                 runs and the URL (postgres://USER@HOST:PORT/DB) is right; TLS is not \
                 built in (use sslmode=disable on a trusted network, a unix socket or a tunnel)",
                redact(url),
                describe(&e)
            ))
        })?;
        migrate(&mut client, url)?;
        Ok(Postgres {
            client: Mutex::new(client),
        })
    }

    /// Whether a fleet CA is recorded (the database belongs to a fleet).
    pub fn has_ca(&self) -> Result<bool, Error> {
        Ok(!self
            .query("SELECT 1 FROM meta WHERE key = 'ca_sha256'", &[])?
            .is_empty())
    }

    /// Copies `rows` in with one `COPY` (in the caller's order), then `meta`,
    /// and moves the id sequence past the largest id: one transaction, so
    /// a failed copy leaves the database empty.
    pub fn import(
        &self,
        rows: &mut dyn FnMut(&mut RowSink<'_>) -> Result<(), Error>,
        meta: &[(String, String)],
    ) -> Result<(), Error> {
        use std::io::Write;
        self.write(|tx| {
            let mut w = tx
                .copy_in(&format!("COPY certs ({RAW_COLUMNS}) FROM STDIN"))
                .map_err(pg)?;
            let io = |e: std::io::Error| Error::Invalid(format!("copying rows: {e}"));
            rows(&mut |r| {
                let line = copy_line(&r);
                w.write_all(line.as_bytes()).map_err(io)
            })?;
            w.finish().map_err(pg)?;
            for (key, value) in meta {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[key, value],
                )
                .map_err(pg)?;
            }
            tx.execute(
                "SELECT setval(pg_get_serial_sequence('certs', 'id'),
                               GREATEST((SELECT COALESCE(MAX(id), 0) FROM certs), 1))",
                &[],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    pub(crate) fn client(&self) -> MutexGuard<'_, Client> {
        // A panic while holding it cannot leave a transaction open (dropped
        // transactions roll back), so a poisoned lock is still usable.
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a transaction holding the write lock.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .map_err(pg)?;
        let out = f(&mut tx)?;
        tx.commit().map_err(pg)?;
        Ok(out)
    }

    fn query(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<PgRow>, Error> {
        self.client().query(sql, args).map_err(pg)
    }
}

/// One row in `COPY`'s text format: tab-separated, `\\N` for NULL,
/// backslash, tab and line breaks escaped.
fn copy_line(r: &RawRow) -> String {
    fn text(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    }
    fn opt_text(s: &Option<String>) -> String {
        s.as_deref().map_or_else(|| "\\N".to_string(), text)
    }
    fn opt_int(n: Option<i64>) -> String {
        n.map_or_else(|| "\\N".to_string(), |n| n.to_string())
    }
    let cells = [
        r.id.to_string(),
        text(&r.device),
        text(&r.serial),
        opt_text(&r.sha256),
        text(&r.key_type),
        text(&r.role),
        text(&r.dns),
        text(&r.ips),
        r.not_before.to_string(),
        r.not_after.to_string(),
        text(&r.status),
        opt_text(&r.owner),
        opt_int(r.replaces),
        opt_text(&r.old_status),
        r.issued_at.to_string(),
        if r.from_csr { "t" } else { "f" }.to_string(),
        opt_int(r.revoked_at),
        opt_text(&r.reason),
    ];
    let mut line = cells.join("\t");
    line.push('\n');
    line
}

/// Creates or upgrades the schema; refuses a database newer than this binary.
fn migrate(client: &mut Client, url: &str) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
        .map_err(pg)?;
    let result = (|| {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(pg)?;
        let found: Option<i32> = client
            .query_opt("SELECT MAX(version) FROM schema_version", &[])
            .map_err(pg)?
            .and_then(|r| r.get(0));
        let found = found.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(Error::Invalid(format!(
                "inventory database {}: its schema is version {found}, newer than this \
                 devtls knows (version {SCHEMA_VERSION}); nothing was changed. Use the \
                 devtls release that migrated it (or newer)",
                redact(url)
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = i as i32 + 1;
            let mut tx = client.transaction().map_err(pg)?;
            tx.batch_execute(sql).map_err(pg)?;
            tx.execute("DELETE FROM schema_version", &[]).map_err(pg)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)?;
        }
        Ok(())
    })();
    let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]);
    result?;
    unlock.map_err(pg)?;
    Ok(())
}

fn row(r: &PgRow, now: i64, paged: bool) -> Row {
    inventory::make_row(
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
        r.get(7),
        r.get(8),
        r.get(9),
        r.get(10),
        r.get(11),
        now,
        paged,
    )
}

fn rows_where(
    tx: &mut impl postgres::GenericClient,
    sql_where: &str,
    arg: &str,
) -> Result<Vec<Row>, Error> {
    let now = crate::now().unix_timestamp();
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM certs WHERE {sql_where} ORDER BY id"),
            &[&arg],
        )
        .map_err(pg)?;
    Ok(rows.iter().map(|r| row(r, now, false)).collect())
}

fn retire(tx: &mut Transaction<'_>, id: i64, becomes: &str) -> Result<(), Error> {
    let now = crate::now().unix_timestamp();
    tx.execute(
        "UPDATE certs SET status = $2,
                revoked_at = CASE WHEN $2 = 'revoked' THEN $3::BIGINT END,
                reason = CASE WHEN $2 = 'revoked' THEN 'superseded' END
         WHERE id = $1 AND status = 'active'",
        &[&id, &becomes, &now],
    )
    .map_err(pg)?;
    Ok(())
}

impl Store for Postgres {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn has_rows(&self) -> Result<bool, Error> {
        Ok(!self.query("SELECT 1 FROM certs LIMIT 1", &[])?.is_empty())
    }

    fn has_device(&self, device: &str) -> Result<bool, Error> {
        Ok(!self
            .query("SELECT 1 FROM certs WHERE device = $1 LIMIT 1", &[&device])?
            .is_empty())
    }

    fn known_devices(&self, devices: &[&str]) -> Result<HashSet<String>, Error> {
        let ids: Vec<String> = devices.iter().map(|s| s.to_string()).collect();
        Ok(self
            .query(
                "SELECT DISTINCT device FROM certs WHERE device = ANY($1)",
                &[&ids],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn retired_device(&self, device: &str) -> Result<Option<i64>, Error> {
        Ok(self
            .query(
                "SELECT MAX(id) FROM certs WHERE device = $1
                 HAVING SUM(CASE WHEN status IN ('active', 'pending') THEN 1 ELSE 0 END) = 0",
                &[&device],
            )?
            .first()
            .and_then(|r| r.get(0)))
    }

    fn device_rows(&self, device: &str) -> Result<Vec<Row>, Error> {
        rows_where(&mut *self.client(), "device = $1", device)
    }

    fn for_each(
        &self,
        filter: &Filter,
        each: &mut dyn FnMut(Row) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let now = crate::now().unix_timestamp();
        let (sql, args) = inventory::list_sql(filter, now, |n| format!("${n}"));
        let args: Vec<Box<dyn ToSql + Sync>> = args
            .into_iter()
            .map(|a| -> Box<dyn ToSql + Sync> {
                match a {
                    inventory::Arg::Int(n) => Box::new(n),
                    inventory::Arg::Text(s) => Box::new(s),
                }
            })
            .collect();
        let mut client = self.client();
        // Rows arrive as the server sends them: a million are never held at once.
        let mut rows = client
            .query_raw(&sql, args.iter().map(|a| a.as_ref()))
            .map_err(pg)?;
        while let Some(r) = rows.next().map_err(pg)? {
            each(row(&r, now, filter.limit.is_some()))?;
        }
        Ok(())
    }

    fn counts(&self) -> Result<Vec<(String, u64)>, Error> {
        let now = crate::now().unix_timestamp();
        Ok(self
            .query(
                "SELECT CASE WHEN status = 'active' AND not_after <= $1 THEN 'expired' ELSE status END AS s,
                        COUNT(*) FROM certs GROUP BY s ORDER BY s",
                &[&now],
            )?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    fn expiry_histogram(&self, weeks: u32) -> Result<(Vec<u64>, u64), Error> {
        let now = crate::now().unix_timestamp();
        let rows = self.query(
            "SELECT (not_after - $1) / $2 AS w, COUNT(*) FROM certs
             WHERE status = 'active' AND not_after > $1 GROUP BY w",
            &[&now, &inventory::WEEK],
        )?;
        Ok(inventory::histogram(
            weeks,
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) as u64))
                .collect(),
        ))
    }

    fn next_expiries(&self, n: usize) -> Result<Vec<Row>, Error> {
        let now = crate::now().unix_timestamp();
        let rows = self.query(
            &format!(
                "SELECT {COLUMNS} FROM certs WHERE status = 'active' AND not_after > $1
                 ORDER BY not_after LIMIT $2"
            ),
            &[&now, &(n as i64)],
        )?;
        Ok(rows.iter().map(|r| row(r, now, false)).collect())
    }

    fn revoke(&self, target: &str, serial: &str, reason: Reason) -> Result<Revocation, Error> {
        self.write(|tx| {
            let mut rows = rows_where(tx, "device = $1", target)?;
            if rows.is_empty() {
                rows = rows_where(tx, "serial = $1", serial)?;
            }
            let renewals: HashSet<String> = tx
                .query(crate::renewal::sql::PENDING_SERIALS, &[&target, &serial])
                .map_err(pg)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let now = crate::now();
            let at = now.unix_timestamp();
            inventory::revocation(target, rows, &renewals, reason, now, |serial| {
                tx.execute(
                    "UPDATE certs SET status = 'revoked', revoked_at = $1, reason = $2 WHERE serial = $3",
                    &[&at, &reason.name(), &serial],
                )
                .map_err(pg)?;
                Ok(())
            })
        })
    }

    fn revoked(&self) -> Result<Vec<Revoked>, Error> {
        self.query(
            "SELECT serial, revoked_at, reason FROM certs WHERE status = 'revoked' ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| inventory::revoked_entry((r.get(0), r.get(1), r.get(2))))
        .collect()
    }

    fn next_crl(&self) -> Result<(u64, Vec<Revoked>), Error> {
        self.write(|tx| {
            let n: String = tx
                .query_one(
                    "UPDATE meta SET value = (CAST(value AS BIGINT) + 1)::TEXT
                     WHERE key = 'crl_number' RETURNING value",
                    &[],
                )
                .map_err(pg)?
                .get(0);
            let revoked = tx
                .query(
                    "SELECT serial, revoked_at, reason FROM certs WHERE status = 'revoked' ORDER BY id",
                    &[],
                )
                .map_err(pg)?
                .iter()
                .map(|r| inventory::revoked_entry((r.get(0), r.get(1), r.get(2))))
                .collect::<Result<Vec<_>, _>>()?;
            let n = n
                .parse()
                .map_err(|_| Error::Invalid("inventory: bad CRL number".into()))?;
            Ok((n, revoked))
        })
    }

    fn claim_ca(&self, sha256: &str) -> Result<String, Error> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('ca_sha256', $1) ON CONFLICT (key) DO NOTHING",
                &[&sha256],
            )
            .map_err(pg)?;
            Ok(tx
                .query_one("SELECT value FROM meta WHERE key = 'ca_sha256'", &[])
                .map_err(pg)?
                .get(0))
        })
    }

    fn hold_owner(&self, owner: &str) -> Result<(), Error> {
        // Held by this connection until it closes: the server drops it when
        // the process dies, SIGKILL included.
        self.client()
            .execute("SELECT pg_advisory_lock($1)", &[&key64(owner)])
            .map_err(pg)?;
        Ok(())
    }

    fn owner_alive(&self, owner: &str) -> Result<Option<bool>, Error> {
        let mut client = self.client();
        let key = key64(owner);
        let free: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(pg)?
            .get(0);
        if free {
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&key])
                .map_err(pg)?;
        }
        Ok(Some(!free))
    }

    fn reserve(&self, owner: &str, certs: &[NewCert]) -> Result<Vec<Reserved>, Error> {
        self.write(|tx| {
            let taken = tx
                .prepare(
                    "SELECT 1 FROM certs WHERE device = $1
                       AND (status = 'pending' OR $2::BIGINT IS NULL OR ($3 AND status = 'active'))
                     LIMIT 1",
                )
                .map_err(pg)?;
            let still_active = tx
                .prepare("SELECT 1 FROM certs WHERE id = $1 AND status = 'active'")
                .map_err(pg)?;
            // ON CONFLICT DO NOTHING: a unique violation would abort the
            // whole transaction; this way only this row is not inserted.
            let insert = tx
                .prepare(
                    "INSERT INTO certs (device, serial, sha256, key_type, role, dns, ips, not_before,
                                        not_after, status, owner, replaces, old_status, issued_at, from_csr)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13, $14)
                     ON CONFLICT DO NOTHING",
                )
                .map_err(pg)?;
            let serial_used = tx
                .prepare("SELECT 1 FROM certs WHERE serial = $1")
                .map_err(pg)?;
            let now = crate::now().unix_timestamp();
            let mut out = Vec::with_capacity(certs.len());
            for c in certs {
                if !tx
                    .query(&taken, &[&c.device, &c.replaces, &c.reissue])
                    .map_err(pg)?
                    .is_empty()
                {
                    out.push(Reserved::Skipped);
                    continue;
                }
                if let Some(row) = c.replaces.filter(|_| !c.reissue) {
                    if tx.query(&still_active, &[&row]).map_err(pg)?.is_empty() {
                        out.push(Reserved::Skipped);
                        continue;
                    }
                }
                let n = tx
                    .execute(
                        &insert,
                        &[
                            &c.device,
                            &c.serial,
                            &c.sha256,
                            &c.key_type,
                            &c.role,
                            &c.dns,
                            &c.ips,
                            &c.not_before,
                            &c.not_after,
                            &owner,
                            &c.replaces,
                            &c.old_status,
                            &now,
                            &c.from_csr,
                        ],
                    )
                    .map_err(pg)?;
                out.push(if n == 1 {
                    Reserved::Owned
                } else if !tx.query(&serial_used, &[&c.serial]).map_err(pg)?.is_empty() {
                    Reserved::SerialTaken
                } else {
                    Reserved::Skipped
                });
            }
            Ok(out)
        })
    }

    fn settle(&self, owner: &str, retire_rows: &[Retire], forget: &[String]) -> Result<(), Error> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM certs WHERE serial = ANY($1) AND status = 'pending'",
                &[&forget],
            )
            .map_err(pg)?;
            for (row, becomes) in retire_rows {
                retire(tx, *row, becomes)?;
            }
            tx.execute(
                "UPDATE certs SET status = 'active', owner = NULL
                 WHERE owner = $1 AND status = 'pending'",
                &[&owner],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn max_id(&self) -> Result<i64, Error> {
        Ok(self
            .query("SELECT COALESCE(MAX(id), 0) FROM certs", &[])?
            .first()
            .map_or(0, |r| r.get(0)))
    }

    fn rotate_rows(
        &self,
        before: i64,
        cursor: i64,
        max_id: i64,
        limit: usize,
    ) -> Result<Vec<RotateRow>, Error> {
        Ok(self
            .query(
                "SELECT id, device, role, key_type, dns, ips, from_csr FROM certs
                 WHERE status = 'active' AND not_after <= $1 AND id > $2 AND id <= $3
                 ORDER BY id LIMIT $4",
                &[&before, &cursor, &max_id, &(limit as i64)],
            )?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .collect())
    }

    fn raw_rows(&self, each: &mut dyn FnMut(RawRow) -> Result<(), Error>) -> Result<(), Error> {
        let mut client = self.client();
        let sql = format!("SELECT {RAW_COLUMNS} FROM certs ORDER BY id");
        let mut rows = client
            .query_raw(&sql, std::iter::empty::<i64>())
            .map_err(pg)?;
        while let Some(r) = rows.next().map_err(pg)? {
            each(RawRow {
                id: r.get(0),
                device: r.get(1),
                serial: r.get(2),
                sha256: r.get(3),
                key_type: r.get(4),
                role: r.get(5),
                dns: r.get(6),
                ips: r.get(7),
                not_before: r.get(8),
                not_after: r.get(9),
                status: r.get(10),
                owner: r.get(11),
                replaces: r.get(12),
                old_status: r.get(13),
                issued_at: r.get(14),
                from_csr: r.get(15),
                revoked_at: r.get(16),
                reason: r.get(17),
            })?;
        }
        Ok(())
    }

    fn meta(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(self
            .query("SELECT key, value FROM meta ORDER BY key", &[])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn pending_owners(&self) -> Result<BTreeSet<String>, Error> {
        Ok(self
            .query(
                "SELECT DISTINCT owner FROM certs WHERE status = 'pending' AND owner IS NOT NULL",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn pending_rows(&self, owner: &str) -> Result<Vec<PendingRow>, Error> {
        Ok(self
            .query(
                "SELECT id, device, serial, role, replaces, old_status FROM certs
                 WHERE status = 'pending' AND owner = $1",
                &[&owner],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect())
    }

    fn recover(&self, landed: &[Landed], missing: &[i64]) -> Result<(), Error> {
        self.write(|tx| {
            for (id, sha256, replaces, old_status) in landed {
                if let (Some(old), Some(becomes)) = (replaces, old_status) {
                    retire(tx, *old, becomes)?;
                }
                tx.execute(
                    "UPDATE certs SET status = 'active', owner = NULL, sha256 = $1 WHERE id = $2",
                    &[&sha256, &id],
                )
                .map_err(pg)?;
            }
            tx.execute("DELETE FROM certs WHERE id = ANY($1)", &[&missing])
                .map_err(pg)?;
            Ok(())
        })
    }

    fn renewal(&self) -> Option<&dyn crate::renewal::RenewalStore> {
        Some(self)
    }
}

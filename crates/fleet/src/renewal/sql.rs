//! The renewal tables' SQL, row mapping and transactions, written once for
//! both backends.
//!
//! A backend offers three things ([`Tables`]): a connection for reads, a
//! write transaction that takes turns with every other writer of the
//! inventory (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the inventory's
//! transaction-scoped advisory lock, the one `fleet issue`, `revoke` and
//! `crl` take), and running one statement ([`Conn`]). Everything else — the
//! statements, the re-checks inside each transaction, turning rows into
//! [`CertRow`]s — is here, so the two backends cannot drift apart.
//!
//! The SQL is the subset both databases read alike: `TEXT`/`BIGINT`,
//! `CAST(... AS BIGINT)` (never `::`), `INSERT ... RETURNING`,
//! `ON CONFLICT`, parameters `$1`, `$2`... (SQLite gets them as `?1`, `?2`).

use std::collections::{BTreeMap, HashSet};

use super::{CertRow, Confirmed, Counts, NewRenewal, Pending, Recorded, RenewalStore};
use crate::Error;

/// The renewal tables. PostgreSQL runs it as schema migration 2 (so it is
/// frozen: a change is a new migration there); SQLite runs it on every
/// start (`IF NOT EXISTS`).
pub(crate) const SCHEMA: &str = "
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

/// The serials of a device's (or one serial's) pending renewals: what
/// `fleet revoke` revokes besides the active certificate. A pending row
/// with an owner is a `fleet issue` in progress, which recovery settles.
pub(crate) const PENDING_SERIALS: &str = "SELECT serial FROM certs
     WHERE (device = $1 OR serial = $2) AND status = 'pending' AND owner IS NULL";

const CERT_COLUMNS: &str =
    "id, device, serial, status, role, key_type, dns, ips, not_before, not_after, owner";

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bool(bool),
}

/// One result row, by column index.
pub(crate) trait Get {
    fn int(&self, i: usize) -> Result<i64, Error>;
    fn text(&self, i: usize) -> Result<String, Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Error>;
}

/// Implements [`Get`] for a driver's row type through its getter by index
/// (`get` for rusqlite, `try_get` for postgres).
macro_rules! impl_get {
    ($row:ty, $get:ident) => {
        impl $crate::renewal::sql::Get for $row {
            fn int(&self, i: usize) -> Result<i64, $crate::Error> {
                Ok(self.$get(i)?)
            }
            fn text(&self, i: usize) -> Result<String, $crate::Error> {
                Ok(self.$get(i)?)
            }
            fn opt_text(&self, i: usize) -> Result<Option<String>, $crate::Error> {
                Ok(self.$get(i)?)
            }
            fn opt_int(&self, i: usize) -> Result<Option<i64>, $crate::Error> {
                Ok(self.$get(i)?)
            }
        }
    };
}
pub(crate) use impl_get;

/// What [`Conn::query`] calls for each row.
pub(crate) type Each<'e> = &'e mut dyn FnMut(&dyn Get) -> Result<(), Error>;

/// Runs statements (parameters `$1`, `$2`...).
pub(crate) trait Conn {
    /// Calls `each` for every row `sql` returns.
    fn query(&mut self, sql: &str, args: &[Arg<'_>], each: Each<'_>) -> Result<(), Error>;
    /// Runs `sql`; returns how many rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error>;
}

/// What a backend provides for the renewal tables.
pub(crate) trait Tables {
    /// Creates the tables if the backend does not migrate them itself.
    fn create(&self) -> Result<(), Error>;
    /// Runs `f` outside any transaction (one statement at a time).
    fn read<T>(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<T, Error>) -> Result<T, Error>;
    /// Runs `f` in one transaction that takes turns with every other writer
    /// of the inventory; committed when `f` returns `Ok`, else rolled back.
    fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<T, Error>) -> Result<T, Error>;
    /// Makes every later commit on this connection survive a power cut
    /// (PostgreSQL's commits do already).
    fn sync_every_commit(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The first row of `sql`, mapped.
fn first<T>(
    c: &mut dyn Conn,
    sql: &str,
    args: &[Arg<'_>],
    map: fn(&dyn Get) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    let mut out = None;
    c.query(sql, args, &mut |r| {
        if out.is_none() {
            out = Some(map(r)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Every row of `sql`, mapped.
fn all<T>(
    c: &mut dyn Conn,
    sql: &str,
    args: &[Arg<'_>],
    map: fn(&dyn Get) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let mut out = Vec::new();
    c.query(sql, args, &mut |r| {
        out.push(map(r)?);
        Ok(())
    })?;
    Ok(out)
}

fn cert_row(r: &dyn Get) -> Result<CertRow, Error> {
    Ok(CertRow {
        id: r.int(0)?,
        device: r.text(1)?,
        serial: r.text(2)?,
        status: r.text(3)?,
        role: r.text(4)?,
        key_type: r.text(5)?,
        dns: r.text(6)?,
        ips: r.text(7)?,
        not_before: r.int(8)?,
        not_after: r.int(9)?,
        owner: r.opt_text(10)?,
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

fn pending_row(r: &dyn Get) -> Result<Pending, Error> {
    Ok(Pending {
        cert: cert_row(r)?,
        old_id: r.int(11)?,
        cert_der: hex::decode(r.text(12)?).unwrap_or_default(),
        key_file: r.opt_text(13)?,
        spki_sha256: r.opt_text(14)?,
    })
}

fn exists(c: &mut dyn Conn, sql: &str, args: &[Arg<'_>]) -> Result<bool, Error> {
    Ok(first(c, sql, args, |_| Ok(()))?.is_some())
}

/// Adds `n` to the count of an outcome.
fn bump(c: &mut dyn Conn, outcome: &str, n: u64) -> Result<(), Error> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    c.execute(
        "INSERT INTO renewal_counts (outcome, n) VALUES ($1, $2)
         ON CONFLICT (outcome) DO UPDATE SET n = renewal_counts.n + $2",
        &[Arg::Text(outcome), Arg::Int(n)],
    )?;
    Ok(())
}

/// Gives a replaced row its new status, as rotation does.
fn retire(c: &mut dyn Conn, id: i64, becomes: &str, now: i64) -> Result<(), Error> {
    c.execute(
        "UPDATE certs SET status = $2,
                revoked_at = CASE WHEN $2 = 'revoked' THEN CAST($3 AS BIGINT) END,
                reason = CASE WHEN $2 = 'revoked' THEN 'superseded' END
         WHERE id = $1 AND status = 'active'",
        &[Arg::Int(id), Arg::Text(becomes), Arg::Int(now)],
    )?;
    Ok(())
}

fn record(c: &mut dyn Conn, new: &NewRenewal<'_>, now: i64) -> Result<Recorded, Error> {
    use Arg::{Int, OptText, Text};
    let old = new.old;
    if !exists(
        c,
        "SELECT 1 FROM certs WHERE id = $1 AND status = 'active'",
        &[Int(old.id)],
    )? {
        return Ok(Recorded::OldNotActive);
    }
    if exists(
        c,
        "SELECT 1 FROM certs WHERE device = $1 AND status = 'pending'",
        &[Text(&old.device)],
    )? {
        return Ok(Recorded::Raced);
    }
    let sha256 = devtls_pki::fingerprint::sha256_hex(new.cert_der);
    let id = first(
        c,
        "INSERT INTO certs (device, serial, sha256, key_type, role, dns, ips, not_before,
                            not_after, status, owner, replaces, old_status, issued_at, from_csr)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', NULL, $10, $11, $12, $13)
         RETURNING id",
        &[
            Text(&old.device),
            Text(new.serial),
            Text(&sha256),
            Text(new.key_type),
            Text(&old.role),
            Text(&old.dns),
            Text(&old.ips),
            Int(new.not_before),
            Int(new.not_after),
            Int(old.id),
            Text(new.old_becomes),
            Int(now),
            Arg::Bool(new.key_file.is_none()),
        ],
        |r| r.int(0),
    )?
    .ok_or_else(|| Error::Invalid("inventory: an inserted row has no id".into()))?;
    c.execute(
        "INSERT INTO renewals (cert_id, device, old_id, cert_der, key_file, spki_sha256,
                               created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            Int(id),
            Text(&old.device),
            Int(old.id),
            Text(&hex::encode(new.cert_der)),
            OptText(new.key_file.as_deref()),
            OptText(new.spki_sha256),
            Int(now),
        ],
    )?;
    bump(c, "issued", 1)?;
    Ok(Recorded::Done(id))
}

fn confirm(
    c: &mut dyn Conn,
    cert_id: i64,
    old_becomes: &str,
    now: i64,
) -> Result<(Confirmed, Option<String>), Error> {
    use Arg::{Int, OptText};
    let found = first(
        c,
        "SELECT r.old_id, r.key_file FROM renewals r JOIN certs c ON c.id = r.cert_id
         WHERE r.cert_id = $1 AND c.status = 'pending'",
        &[Int(cert_id)],
        |r| Ok((r.int(0)?, r.opt_text(1)?)),
    )?;
    let Some((old_id, key_file)) = found else {
        return Ok((Confirmed::Gone, None));
    };
    let (old_serial, old_status, old_reason) = first(
        c,
        "SELECT serial, status, reason FROM certs WHERE id = $1",
        &[Int(old_id)],
        |r| Ok((r.text(0)?, r.text(1)?, r.opt_text(2)?)),
    )?
    .ok_or_else(|| Error::Invalid(format!("inventory: renewal row {cert_id} lost its old row")))?;
    let result = if old_status == "revoked" && old_reason.as_deref() != Some("superseded") {
        // The device was revoked while its renewal was pending: so is the renewal.
        c.execute(
            "UPDATE certs SET status = 'revoked', revoked_at = $1, reason = $2 WHERE id = $3",
            &[Int(now), OptText(old_reason.as_deref()), Int(cert_id)],
        )?;
        Confirmed::OldRevoked
    } else {
        // The old row stops being active first: a device has at most one active row.
        retire(c, old_id, old_becomes, now)?;
        c.execute(
            "UPDATE certs SET status = 'active' WHERE id = $1 AND status = 'pending'",
            &[Int(cert_id)],
        )?;
        bump(c, "renewed", 1)?;
        Confirmed::Done {
            old_serial,
            becomes: old_becomes.to_string(),
        }
    };
    c.execute(
        "UPDATE renewals SET confirmed_at = $1, key_file = NULL WHERE cert_id = $2",
        &[Int(now), Int(cert_id)],
    )?;
    Ok((result, key_file))
}

fn abandon(c: &mut dyn Conn, cert_id: i64, now: i64) -> Result<Option<String>, Error> {
    use Arg::Int;
    let key_file = first(
        c,
        "SELECT key_file FROM renewals WHERE cert_id = $1",
        &[Int(cert_id)],
        |r| r.opt_text(0),
    )?;
    c.execute(
        "UPDATE certs SET status = 'revoked', revoked_at = $1, reason = 'superseded'
         WHERE id = $2 AND status = 'pending'",
        &[Int(now), Int(cert_id)],
    )?;
    c.execute(
        "UPDATE renewals SET key_file = NULL WHERE cert_id = $1",
        &[Int(cert_id)],
    )?;
    Ok(key_file.flatten())
}

fn counts(c: &mut dyn Conn) -> Result<Counts, Error> {
    let outcomes: BTreeMap<String, u64> = all(
        c,
        "SELECT outcome, n FROM renewal_counts ORDER BY outcome",
        &[],
        |r| Ok((r.text(0)?, r.int(1)? as u64)),
    )?
    .into_iter()
    .collect();
    let pending = first(
        c,
        "SELECT COUNT(*) FROM renewals r JOIN certs c ON c.id = r.cert_id
         WHERE c.status = 'pending'",
        &[],
        |r| r.int(0),
    )?
    .unwrap_or(0);
    Ok(Counts {
        outcomes,
        pending: pending as u64,
    })
}

/// The renewal rows still pending (with their columns as stored) and the
/// counters: what `fleet migrate` carries over. A confirmed renewal's row is
/// history no query reads, so it stays behind.
fn export(c: &mut dyn Conn) -> Result<Carried, Error> {
    let pending = all(
        c,
        "SELECT r.cert_id, r.device, r.old_id, r.cert_der, r.key_file, r.spki_sha256,
                r.created_at, r.confirmed_at
         FROM renewals r JOIN certs c ON c.id = r.cert_id WHERE c.status = 'pending'
         ORDER BY r.cert_id",
        &[],
        |r| {
            Ok(RenewalRow {
                cert_id: r.int(0)?,
                device: r.text(1)?,
                old_id: r.int(2)?,
                cert_der: r.text(3)?,
                key_file: r.opt_text(4)?,
                spki_sha256: r.opt_text(5)?,
                created_at: r.int(6)?,
                confirmed_at: r.opt_int(7)?,
            })
        },
    )?;
    let counts = counts(c)?.outcomes.into_iter().collect();
    Ok(Carried { pending, counts })
}

fn import(c: &mut dyn Conn, carried: &Carried) -> Result<(), Error> {
    use Arg::{Int, OptText, Text};
    for r in &carried.pending {
        c.execute(
            "INSERT INTO renewals (cert_id, device, old_id, cert_der, key_file, spki_sha256,
                                   created_at, confirmed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
            &[
                Int(r.cert_id),
                Text(&r.device),
                Int(r.old_id),
                Text(&r.cert_der),
                OptText(r.key_file.as_deref()),
                OptText(r.spki_sha256.as_deref()),
                Int(r.created_at),
            ],
        )?;
    }
    for (outcome, n) in &carried.counts {
        c.execute(
            "INSERT INTO renewal_counts (outcome, n) VALUES ($1, $2)
             ON CONFLICT (outcome) DO UPDATE SET n = $2",
            &[Text(outcome), Int(*n as i64)],
        )?;
    }
    Ok(())
}

/// One `renewals` row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalRow {
    cert_id: i64,
    device: String,
    old_id: i64,
    cert_der: String,
    key_file: Option<String>,
    spki_sha256: Option<String>,
    created_at: i64,
    confirmed_at: Option<i64>,
}

/// What [`RenewalStore::export`] reads and [`RenewalStore::import`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    /// The pending renewals.
    pub pending: Vec<RenewalRow>,
    /// The outcome counters.
    pub counts: Vec<(String, u64)>,
}

impl<T: Tables> RenewalStore for T {
    fn export(&self) -> Result<Carried, Error> {
        self.create()?;
        self.read(&mut export)
    }

    fn import(&self, carried: &Carried) -> Result<(), Error> {
        self.write(&mut |c| import(c, carried))
    }

    fn ensure_schema(&self) -> Result<(), Error> {
        self.create()
    }

    fn durable_commits(&self) -> Result<(), Error> {
        self.sync_every_commit()
    }

    fn find(&self, serial: &str) -> Result<Option<CertRow>, Error> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certs WHERE serial = $1");
        self.read(&mut |c| first(c, &sql, &[Arg::Text(serial)], cert_row))
    }

    fn pending_by_cert(&self, cert_id: i64) -> Result<Option<Pending>, Error> {
        let sql = pending_query("r.cert_id = $1");
        self.read(&mut |c| first(c, &sql, &[Arg::Int(cert_id)], pending_row))
    }

    fn pending_for(&self, old_id: i64) -> Result<Option<Pending>, Error> {
        let sql = pending_query("r.old_id = $1");
        self.read(&mut |c| first(c, &sql, &[Arg::Int(old_id)], pending_row))
    }

    fn record(&self, new: &NewRenewal<'_>) -> Result<Recorded, Error> {
        let now = crate::now().unix_timestamp();
        self.write(&mut |c| record(c, new, now))
    }

    fn confirm(
        &self,
        cert_id: i64,
        old_becomes: &str,
    ) -> Result<(Confirmed, Option<String>), Error> {
        let now = crate::now().unix_timestamp();
        self.write(&mut |c| confirm(c, cert_id, old_becomes, now))
    }

    fn abandon(&self, cert_id: i64) -> Result<Option<String>, Error> {
        let now = crate::now().unix_timestamp();
        self.write(&mut |c| abandon(c, cert_id, now))
    }

    fn pending_key_files(&self) -> Result<HashSet<String>, Error> {
        let names = self.read(&mut |c| {
            all(
                c,
                "SELECT r.key_file FROM renewals r JOIN certs c ON c.id = r.cert_id
                 WHERE c.status = 'pending' AND r.key_file IS NOT NULL",
                &[],
                |r| r.text(0),
            )
        })?;
        Ok(names.into_iter().collect())
    }

    fn count(&self, outcome: &str, n: u64) -> Result<(), Error> {
        self.read(&mut |c| bump(c, outcome, n))
    }

    fn counts(&self) -> Result<Counts, Error> {
        self.read(&mut counts)
    }
}

//! `fleet migrate`: copies a fleet's SQLite inventory into an empty
//! PostgreSQL database and proves the copy.
//!
//! Every row is copied as stored (ids, statuses, revocations, owners) with
//! one `COPY` in one transaction, then the `meta` entries (the CRL number,
//! the CA's fingerprint). The copy is then read back and compared: the same
//! number of rows and the same SHA-256 over every column of every row in id
//! order, and the same `meta` values. The renewal service's pending
//! renewals and counters follow, and are compared too. The SQLite file is
//! only read (its renewal tables are created if it has none).

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::postgres::{redact, Postgres};
use crate::store::{RawRow, Store};
use crate::{Error, Fleet};

/// What a migration copied and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    /// The database copied into (password hidden).
    pub to: String,
    /// Rows copied (and counted again in the copy).
    pub rows: u64,
    /// SHA-256 over every column of every row, the same in both.
    pub digest: String,
    /// The `meta` entries copied (CRL number, CA fingerprint).
    pub meta: Vec<(String, String)>,
    /// Pending renewals copied (with the renewal service's counters).
    pub renewals: u64,
}

/// Counts and digests rows in the order they arrive.
#[derive(Default)]
struct Tally {
    rows: u64,
    hash: Sha256,
}

impl Tally {
    fn add(&mut self, r: &RawRow) -> Result<(), Error> {
        self.rows += 1;
        let line = serde_json::to_vec(r).map_err(|e| Error::Invalid(e.to_string()))?;
        self.hash.update(&line);
        self.hash.update(b"\n");
        Ok(())
    }

    fn digest(self) -> String {
        hex::encode(self.hash.finalize())
    }
}

/// Copies `fleet`'s SQLite inventory into the empty database at `url`;
/// `progress` hears the rows copied so far and `total` the rows to copy.
pub fn migrate(
    fleet: &Fleet,
    url: &str,
    total: &mut dyn FnMut(u64),
    progress: &dyn Fn(u64),
) -> Result<Migration, Error> {
    let source = fleet.db();
    if source.backend() != "sqlite" {
        return Err(Error::Invalid(
            "fleet migrate copies a fleet folder's inventory.db: leave out --db (and DEVTLS_FLEET_DB)"
                .into(),
        ));
    }
    if !source.pending_owners()?.is_empty() {
        return Err(Error::Invalid(
            "an issuance is running on this fleet (pending certificates): wait for it to \
             finish, then migrate"
                .into(),
        ));
    }
    // Older inventories do not record their CA yet: the copy must.
    source.claim_ca(&devtls_pki::fingerprint::sha256_hex(fleet.ca_der()))?;
    let target = Postgres::connect(url)?;
    if target.has_rows()? || target.has_ca()? {
        return Err(Error::Invalid(format!(
            "{}: not empty (it holds a fleet's inventory); migrate into a new, empty database",
            redact(url)
        )));
    }
    total(source.counts()?.iter().map(|(_, n)| n).sum());
    let meta = source.meta()?;
    let mut copied = Tally::default();
    target.import(
        &mut |sink| {
            source.raw_rows(&mut |r| {
                copied.add(&r)?;
                if copied.rows % 4096 == 0 {
                    progress(copied.rows);
                }
                sink(r)
            })
        },
        &meta,
    )?;
    progress(copied.rows);
    let mut check = Tally::default();
    target.raw_rows(&mut |r| check.add(&r))?;
    let (rows, digest) = (copied.rows, copied.digest());
    let (check_rows, check_digest) = (check.rows, check.digest());
    let target_meta = target.meta()?;
    let meta_ok = meta.iter().all(|kv| target_meta.contains(kv));
    if check_rows != rows || check_digest != digest || !meta_ok {
        return Err(Error::Invalid(format!(
            "{}: the copy does not match: {rows} rows with SHA-256 {digest} in inventory.db, \
             {check_rows} rows with SHA-256 {check_digest} in the database{}. Keep using \
             inventory.db; drop and re-create the database before trying again",
            redact(url),
            if meta_ok {
                ""
            } else {
                ", and the CRL number or CA differ"
            }
        )));
    }
    // The pending renewals (their certificates' rows are copied above) and
    // the service's counters, read back and compared too.
    let renewals = match (source.renewal(), target.renewal()) {
        (Some(from), Some(to)) => {
            let carried = from.export()?;
            to.import(&carried)?;
            if to.export()? != carried {
                return Err(Error::Invalid(format!(
                    "{}: the pending renewals copied do not match inventory.db's. Keep \
                     using inventory.db; drop and re-create the database before trying again",
                    redact(url)
                )));
            }
            carried.pending.len() as u64
        }
        _ => 0,
    };
    Ok(Migration {
        to: redact(url),
        rows,
        digest,
        meta,
        renewals,
    })
}

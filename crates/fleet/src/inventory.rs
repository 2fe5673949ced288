//! The inventory: one row per certificate the fleet CA signed, in the
//! database a [`crate::store::Store`] holds (SQLite by default).
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
//!
//! This module holds what every backend shares: the row type, the filter,
//! and the SQL and logic that do not depend on the database.

use devtls_pki::crl::{Reason, Revoked};
use serde::Serialize;
use time::OffsetDateTime;

use crate::Error;

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
    /// Where the next page starts (`fleet list --after`): set when listing with a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A position in the listing order (expiry, device, row id): `fleet list
/// --after` continues after it. Spelled `NOT_AFTER.ID.DEVICE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The row's end of validity (Unix seconds).
    pub not_after: i64,
    /// The row's id.
    pub id: i64,
    /// The row's device.
    pub device: String,
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("'{s}' is not a list cursor; pass the `cursor` of the last row listed");
        let mut parts = s.splitn(3, '.');
        let not_after = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let device = parts.next().ok_or_else(bad)?.to_string();
        Ok(Cursor {
            not_after,
            id,
            device,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.not_after, self.id, self.device)
    }
}

/// The columns a [`Row`] is read from, in [`make_row`]'s order.
pub(crate) const COLUMNS: &str =
    "device, serial, sha256, key_type, role, not_before, not_after, status, from_csr, revoked_at, reason, id";

/// Seconds in a week (the expiry histogram's bucket).
pub(crate) const WEEK: i64 = 7 * 86400;

pub(crate) fn ts(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A [`Row`] from its [`COLUMNS`], `expired` derived from the dates at `now`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_row(
    device: String,
    serial: String,
    sha256: Option<String>,
    key_type: String,
    role: String,
    not_before: i64,
    not_after: i64,
    mut status: String,
    from_csr: bool,
    revoked_at: Option<i64>,
    reason: Option<String>,
    id: i64,
    now: i64,
    paged: bool,
) -> Row {
    if status == "active" && not_after <= now {
        status = "expired".into();
    }
    let device_for_cursor = if paged { device.clone() } else { String::new() };
    Row {
        device,
        serial,
        sha256,
        key_type,
        role,
        not_before: ts(not_before),
        not_after: ts(not_after),
        status,
        from_csr,
        revoked_at: revoked_at.map(ts),
        reason,
        cursor: paged.then(|| {
            Cursor {
                not_after,
                id,
                device: device_for_cursor,
            }
            .to_string()
        }),
    }
}

/// Which rows to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this status (`active`, `expired`, `revoked`, `superseded`, `pending`).
    pub status: Option<String>,
    /// Only active certificates that expire before this moment (and have not yet).
    pub expiring_before: Option<OffsetDateTime>,
    /// At most this many rows (a page); each row then carries its cursor.
    pub limit: Option<u64>,
    /// Only rows after this one in the listing order (the next page).
    pub after: Option<Cursor>,
}

/// A bound value of a query built at run time.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// The listing query for `filter` and its arguments; `placeholder(n)` spells
/// the n-th (1-based) parameter in the backend's dialect.
pub(crate) fn list_sql(
    filter: &Filter,
    now: i64,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<Arg>) {
    let mut sql = format!("SELECT {COLUMNS} FROM certs WHERE 1=1");
    let mut args = Vec::new();
    let mut bind = |sql: &mut String, text: &str, arg: Arg| {
        args.push(arg);
        *sql += &text.replace('?', &placeholder(args.len()));
    };
    match filter.status.as_deref() {
        None => {}
        Some("active") => bind(
            &mut sql,
            " AND status = 'active' AND not_after > ?",
            Arg::Int(now),
        ),
        Some("expired") => bind(
            &mut sql,
            " AND status = 'active' AND not_after <= ?",
            Arg::Int(now),
        ),
        Some(other) => bind(&mut sql, " AND status = ?", Arg::Text(other.to_string())),
    }
    if let Some(before) = filter.expiring_before {
        bind(
            &mut sql,
            " AND status = 'active' AND not_after > ?",
            Arg::Int(now),
        );
        bind(
            &mut sql,
            " AND not_after <= ?",
            Arg::Int(before.unix_timestamp()),
        );
    }
    if let Some(c) = &filter.after {
        let (a, b, c) = (c.not_after, c.device.clone(), c.id);
        args.push(Arg::Int(a));
        args.push(Arg::Text(b));
        args.push(Arg::Int(c));
        let n = args.len();
        sql += &format!(
            " AND (not_after, device, id) > ({}, {}, {})",
            placeholder(n - 2),
            placeholder(n - 1),
            placeholder(n)
        );
    }
    sql += " ORDER BY not_after, device, id";
    if let Some(limit) = filter.limit {
        args.push(Arg::Int(limit.min(i64::MAX as u64) as i64));
        sql += &format!(" LIMIT {}", placeholder(args.len()));
    }
    (sql, args)
}

/// Sorts per-week counts into `weeks` buckets and "later".
pub(crate) fn histogram(weeks: u32, rows: Vec<(i64, u64)>) -> (Vec<u64>, u64) {
    let mut buckets = vec![0u64; weeks as usize];
    let mut later = 0;
    for (w, n) in rows {
        match buckets.get_mut(w as usize) {
            Some(b) => *b += n,
            None => later += n,
        }
    }
    (buckets, later)
}

/// A CRL entry from an inventory row.
pub(crate) fn revoked_entry(
    (serial, at, reason): (String, Option<i64>, Option<String>),
) -> Result<Revoked, Error> {
    Ok(Revoked {
        serial: hex::decode(&serial)
            .map_err(|_| Error::Invalid(format!("inventory: bad serial '{serial}'")))?,
        at: ts(at.unwrap_or(0)),
        reason: reason
            .and_then(|r| r.parse().ok())
            .unwrap_or(Reason::Unspecified),
    })
}

/// What `revoke` did.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    /// The certificates revoked now.
    pub revoked: Vec<Row>,
    /// The certificates that were already revoked.
    pub already: Vec<Row>,
}

/// Decides, for the rows `target` names, which are revoked now
/// (`mark(serial)` writes it) and which already were. A pending row is
/// revoked only when it is a renewal (its serial in `renewals`): its
/// certificate may be on the device already. A pending `fleet issue` row is
/// left to that issuer (or to recovery).
pub(crate) fn revocation(
    target: &str,
    rows: Vec<Row>,
    renewals: &std::collections::HashSet<String>,
    reason: Reason,
    now: OffsetDateTime,
    mut mark: impl FnMut(&str) -> Result<(), Error>,
) -> Result<Revocation, Error> {
    if rows.is_empty() {
        return Err(Error::Invalid(format!(
            "'{target}' is neither a device ID nor a certificate serial in this fleet; \
             see `devtls fleet list`"
        )));
    }
    let mut result = Revocation {
        revoked: Vec::new(),
        already: Vec::new(),
    };
    for mut r in rows {
        match r.status.as_str() {
            "revoked" => result.already.push(r),
            "pending" if !renewals.contains(&r.serial) => {}
            _ => {
                mark(&r.serial)?;
                r.status = "revoked".into();
                r.revoked_at = Some(now);
                r.reason = Some(reason.name().into());
                result.revoked.push(r);
            }
        }
    }
    Ok(result)
}

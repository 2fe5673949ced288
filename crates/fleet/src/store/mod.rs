//! The one interface every inventory query goes through, and its backends.
//!
//! [`Store`] is what the rest of the crate (and the CLI) calls; it never
//! sees SQL. Each backend keeps the same schema and the same invariants,
//! enforced by the database itself (see [`crate::inventory`]):
//! - [`sqlite`]: one file beside the CA (`inventory.db`), the default.
//!
//! The operations are the protocol's steps, not generic SQL: a backend makes
//! each step atomic in its own way (SQLite: `BEGIN IMMEDIATE`).

use std::collections::{BTreeSet, HashSet};

use devtls_pki::crl::{Reason, Revoked};

use crate::inventory::{Filter, Revocation, Row};
use crate::Error;

pub mod postgres;
pub mod sqlite;

/// A certificate to record as `pending` (step 2 of [`crate::issue`]).
#[derive(Debug, Clone)]
pub struct NewCert {
    /// The device ID.
    pub device: String,
    /// The serial, lower-case hex.
    pub serial: String,
    /// SHA-256 of the certificate, lower-case hex.
    pub sha256: String,
    /// `p256`, `p384`, `rsa2048`...
    pub key_type: String,
    /// `client`, `server` or `both`.
    pub role: String,
    /// DNS names, `;`-separated.
    pub dns: String,
    /// IP addresses, `;`-separated.
    pub ips: String,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// Rotation or re-issue: the row this certificate replaces.
    pub replaces: Option<i64>,
    /// What the replaced row becomes once this one is active.
    pub old_status: Option<&'static str>,
    /// Re-issue: the device must have no pending or active certificate.
    pub reissue: bool,
    /// The device made its own key.
    pub from_csr: bool,
}

/// What happened to one [`NewCert`] in [`Store::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Recorded as pending, owned by the caller.
    Owned,
    /// Another certificate for the device is pending, active, or the
    /// certificate to replace is no longer active: nothing recorded.
    Skipped,
    /// The serial is already in the inventory (a random clash): nothing
    /// recorded; the caller signs again with a new serial.
    SerialTaken,
    /// Not recorded, with why.
    Failed(String),
}

/// A rotated row settled by [`Store::settle`]: the old row and what it becomes.
pub type Retire = (i64, &'static str);

/// An active row to rotate: id, device, role, key type, dns, ips, from a CSR.
pub type RotateRow = (i64, String, String, String, String, String, bool);

/// A pending row: id, device, serial, role, the row it replaces and what that becomes.
pub type PendingRow = (i64, String, String, String, Option<i64>, Option<String>);

/// A pending row found in its folder: id, its certificate's SHA-256, the
/// row it replaces and what that becomes.
pub type Landed = (i64, String, Option<i64>, Option<String>);

/// Every column of a certificate row, as stored (for `fleet migrate`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RawRow {
    pub id: i64,
    pub device: String,
    pub serial: String,
    pub sha256: Option<String>,
    pub key_type: String,
    pub role: String,
    pub dns: String,
    pub ips: String,
    pub not_before: i64,
    pub not_after: i64,
    pub status: String,
    pub owner: Option<String>,
    pub replaces: Option<i64>,
    pub old_status: Option<String>,
    pub issued_at: i64,
    pub from_csr: bool,
    pub revoked_at: Option<i64>,
    pub reason: Option<String>,
}

/// The columns of a [`RawRow`], in its order.
pub(crate) const RAW_COLUMNS: &str = "id, device, serial, sha256, key_type, role, dns, ips, \
    not_before, not_after, status, owner, replaces, old_status, issued_at, from_csr, revoked_at, reason";

/// The inventory of one fleet, whatever holds it.
pub trait Store: Send {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Whether the inventory holds any certificate at all.
    fn has_rows(&self) -> Result<bool, Error>;
    /// Whether the inventory holds any row for `device` (in any status).
    fn has_device(&self, device: &str) -> Result<bool, Error>;
    /// Which of `devices` have any row, in one query.
    fn known_devices(&self, devices: &[&str]) -> Result<HashSet<String>, Error>;
    /// The newest row of a device none of whose certificates is active or
    /// pending (all revoked, say): what a re-issue replaces.
    fn retired_device(&self, device: &str) -> Result<Option<i64>, Error>;
    /// The rows of one device, oldest first.
    fn device_rows(&self, device: &str) -> Result<Vec<Row>, Error>;
    /// Calls `each` for every row matching `filter`, ordered by expiry then
    /// device, without holding them all in memory.
    fn for_each(
        &self,
        filter: &Filter,
        each: &mut dyn FnMut(Row) -> Result<(), Error>,
    ) -> Result<(), Error>;
    /// Counts of certificates by status (with `expired` derived from the dates).
    fn counts(&self) -> Result<Vec<(String, u64)>, Error>;
    /// How many active certificates expire in each week from now (`weeks`
    /// buckets), and how many later than that.
    fn expiry_histogram(&self, weeks: u32) -> Result<(Vec<u64>, u64), Error>;
    /// The next `n` active certificates to expire.
    fn next_expiries(&self, n: usize) -> Result<Vec<Row>, Error>;

    /// Revokes a device's unrevoked certificates (by device ID) or one
    /// certificate (by serial, lower-case hex), atomically.
    fn revoke(&self, target: &str, serial: &str, reason: Reason) -> Result<Revocation, Error>;
    /// Every revoked certificate, for the CRL.
    fn revoked(&self) -> Result<Vec<Revoked>, Error>;
    /// Takes the next CRL number (1, 2, 3...) and the revoked certificates
    /// in one transaction: numbers never repeat, even across processes, and
    /// a higher number never lists fewer certificates.
    fn next_crl(&self) -> Result<(u64, Vec<Revoked>), Error>;
    /// Records `sha256` (of the CA certificate) as this inventory's CA if
    /// none is recorded yet; returns the one recorded.
    fn claim_ca(&self, sha256: &str) -> Result<String, Error>;
    /// Marks `owner` as alive in the database for as long as this store is
    /// open (PostgreSQL: a session advisory lock; SQLite: nothing, the
    /// owner's lock file says it).
    fn hold_owner(&self, owner: &str) -> Result<(), Error>;
    /// Whether `owner` is known to be alive (`Some(true)`), known dead
    /// (`Some(false)`), or only its lock file can tell (`None`).
    fn owner_alive(&self, owner: &str) -> Result<Option<bool>, Error>;

    /// Step 2 of issuance: records `certs` as pending, owned by `owner`, in
    /// one transaction, re-checking each device inside it. One outcome per cert.
    fn reserve(&self, owner: &str, certs: &[NewCert]) -> Result<Vec<Reserved>, Error>;
    /// Step 5: retires the rows in `retire`, forgets the pending rows whose
    /// serials are in `forget`, and marks every other row `owner` still has
    /// pending `active`, in one transaction.
    fn settle(&self, owner: &str, retire: &[Retire], forget: &[String]) -> Result<(), Error>;
    /// The largest row id (0 when empty).
    fn max_id(&self) -> Result<i64, Error>;
    /// Active rows expiring at or before `before`, with `cursor < id <= max_id`,
    /// in id order, at most `limit`.
    fn rotate_rows(
        &self,
        before: i64,
        cursor: i64,
        max_id: i64,
        limit: usize,
    ) -> Result<Vec<RotateRow>, Error>;

    /// Every row as stored, in id order (for copying and checking a copy).
    fn raw_rows(&self, each: &mut dyn FnMut(RawRow) -> Result<(), Error>) -> Result<(), Error>;
    /// Every `meta` entry (CRL number, CA fingerprint), sorted by key.
    fn meta(&self) -> Result<Vec<(String, String)>, Error>;

    /// The owners of pending rows.
    fn pending_owners(&self) -> Result<BTreeSet<String>, Error>;
    /// The pending rows of one owner.
    fn pending_rows(&self, owner: &str) -> Result<Vec<PendingRow>, Error>;
    /// Recovery's settlement, in one transaction: `landed` rows become
    /// active (retiring what they replace), `missing` rows are deleted.
    fn recover(&self, landed: &[Landed], missing: &[i64]) -> Result<(), Error>;

    /// The renewal service's tables ([`crate::renewal`]), when this backend
    /// has them (`None`: `fleet serve` says it needs another backend).
    fn renewal(&self) -> Option<&dyn crate::renewal::RenewalStore> {
        None
    }
}

/// A stable 64-bit key for a string (FNV-1a), the same in every process.
pub(crate) fn key64(s: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

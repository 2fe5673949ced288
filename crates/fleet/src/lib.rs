//! # devtls-fleet
//!
//! A fleet CA for small devices: one unique, short-lived key and certificate
//! per device, an SQLite inventory beside them, revocation with a signed CRL,
//! expiry reports and rotation.
//!
//! A fleet is a folder:
//! ```text
//! fleet/
//!   ca.der ca.crt ca.key      the fleet CA (the key 0600, never copied anywhere)
//!   inventory.db              one row per certificate (SQLite, WAL)
//!   devices/ID/               what one device loads: its DER cert and key, ca.der, boot.py
//!   .work/                    staging for issuance in progress (see [`recover`])
//! ```
//!
//! - [`Fleet`]: create or open a fleet (opening runs crash recovery first).
//! - [`issue`]: crash-safe, batched, multi-threaded issuance and rotation.
//! - [`inventory`]: the rows and the queries over them.
//! - [`devices`]: device IDs and where they come from (arguments, a count, a CSV).
//! - [`recover`]: how a fleet killed mid-issuance is brought back into agreement.

pub mod devices;
mod folders;
pub mod inventory;
pub mod issue;
mod lock;
pub mod recover;

use std::path::{Path, PathBuf};

use devtls_pki::files::{self, Output};
use devtls_pki::issue::{self as pki_issue, Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use rusqlite::Connection;
use time::{Duration, OffsetDateTime};

/// Everything that can go wrong with a fleet. Messages name the file or the
/// device involved and say what to do; they never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key, certificate or file-writing error from the PKI crate.
    #[error(transparent)]
    Pki(#[from] devtls_pki::Error),
    /// The inventory database failed.
    #[error("inventory: {0}")]
    Db(#[from] rusqlite::Error),
    /// A file system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Input that cannot be used (a bad device ID, a bad CSV line, an unknown device).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A fleet folder, opened: its inventory and its CA certificate.
pub struct Fleet {
    dir: PathBuf,
    db: Connection,
    ca_der: Vec<u8>,
}

/// What `Fleet::init` makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The CA's common name.
    pub name: String,
    /// The CA's key type.
    pub key: KeyType,
    /// How long the CA certificate is valid, in days.
    pub days: u32,
}

/// The file names inside a fleet folder.
pub mod names {
    /// The CA certificate, DER (what devices load).
    pub const CA_DER: &str = "ca.der";
    /// The CA certificate, PEM (what OpenSSL and servers load).
    pub const CA_PEM: &str = "ca.crt";
    /// The CA private key, PKCS#8 PEM, 0600.
    pub const CA_KEY: &str = "ca.key";
    /// The SQLite inventory.
    pub const INVENTORY: &str = "inventory.db";
    /// The folder holding one folder per device.
    pub const DEVICES: &str = "devices";
    /// Staging for issuance in progress.
    pub const WORK: &str = ".work";
    /// The MicroPython lines that load a device's files.
    pub const BOOT_PY: &str = "boot.py";
}

impl Fleet {
    /// Creates a fleet in `dir`: a CA (certificate and 0600 key) and an empty
    /// inventory. Refuses to touch a folder that already holds a fleet.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<Fleet, Error> {
        let inventory = dir.join(names::INVENTORY);
        if inventory.exists() || dir.join(names::CA_KEY).exists() {
            return Err(Error::Invalid(format!(
                "{}: already holds a fleet; use it, or pick another --dir",
                dir.display()
            )));
        }
        let key = PrivateKey::generate(opts.key)?;
        let spec = CertSpec::new(opts.name.clone(), Role::Ca, opts.days);
        let cert = pki_issue::self_signed_ca(&spec, &key)?;
        files::write_all(
            &[
                Output::public(dir.join(names::CA_DER), cert.der.clone()),
                Output::public(dir.join(names::CA_PEM), cert.pem()),
                Output::secret(dir.join(names::CA_KEY), key.pkcs8_pem()),
            ],
            false,
        )?;
        std::fs::create_dir_all(dir.join(names::DEVICES))
            .map_err(|e| Error::io(&dir.join(names::DEVICES), e))?;
        let db = inventory::open(&inventory)?;
        Ok(Fleet {
            dir: dir.to_path_buf(),
            db,
            ca_der: cert.der,
        })
    }

    /// Opens the fleet in `dir` and brings it into agreement after any crash
    /// (see [`recover`]) before anything else reads it.
    pub fn open(dir: &Path) -> Result<Fleet, Error> {
        let inventory = dir.join(names::INVENTORY);
        if !inventory.is_file() {
            return Err(Error::Invalid(format!(
                "{}: no fleet here (no {}); create one with `devtls fleet init --dir {}`",
                dir.display(),
                names::INVENTORY,
                dir.display()
            )));
        }
        let ca_path = dir.join(names::CA_DER);
        let ca_der = std::fs::read(&ca_path).map_err(|e| Error::io(&ca_path, e))?;
        let db = inventory::open(&inventory)?;
        let mut fleet = Fleet {
            dir: dir.to_path_buf(),
            db,
            ca_der,
        };
        recover::run(&mut fleet)?;
        Ok(fleet)
    }

    /// The fleet folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of one device.
    pub fn device_dir(&self, id: &str) -> PathBuf {
        self.dir.join(names::DEVICES).join(id)
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The inventory connection (for queries in [`inventory`]).
    pub fn db(&self) -> &Connection {
        &self.db
    }

    /// Loads the CA key to sign with. The key stays in memory only; it is
    /// never written anywhere but `ca.key`.
    pub fn authority(&self) -> Result<Authority, Error> {
        let path = self.dir.join(names::CA_KEY);
        let pem = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let sniffed = devtls_pki::sniff::sniff(&pem)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let item = sniffed
            .items
            .iter()
            .find(|i| i.kind.is_secret())
            .ok_or_else(|| Error::Invalid(format!("{}: holds no private key", path.display())))?;
        let key = PrivateKey::from_der(&item.der)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        Ok(Authority::load(&self.ca_der, key)?)
    }

    /// Revokes a device (all its unrevoked certificates) or one certificate by serial.
    pub fn revoke(
        &mut self,
        target: &str,
        reason: devtls_pki::crl::Reason,
    ) -> Result<inventory::Revocation, Error> {
        inventory::revoke(&mut self.db, target, reason)
    }

    /// Signs a DER CRL of every revoked certificate, valid for `days` days,
    /// with the next CRL number.
    pub fn crl(&self, days: u32) -> Result<Vec<u8>, Error> {
        let ca = self.authority()?;
        let revoked = inventory::revoked(&self.db)?;
        let number = inventory::next_crl_number(&self.db)?;
        let now = now();
        Ok(devtls_pki::crl::sign(
            &ca,
            &revoked,
            number,
            now,
            now + Duration::days(days as i64),
        )?)
    }
}

/// The current time in whole seconds (certificates and the inventory agree to the second).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Parses a span such as `30d`, `2w`, `12h` or `90` (days).
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "d"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a span; write e.g. 30d, 2w or 12h"))?;
    match unit {
        "d" | "day" | "days" => Ok(Duration::days(n)),
        "w" | "week" | "weeks" => Ok(Duration::weeks(n)),
        "h" | "hour" | "hours" => Ok(Duration::hours(n)),
        _ => Err(format!(
            "'{s}': unknown unit '{unit}'; write e.g. 30d, 2w or 12h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse() {
        assert_eq!(parse_span("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_span("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_span("90").unwrap(), Duration::days(90));
        assert!(parse_span("soon").is_err());
        assert!(parse_span("3y").is_err());
    }
}

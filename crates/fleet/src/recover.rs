//! Bringing a fleet back into agreement after a process died mid-issuance.
//!
//! Every issuing process holds an `flock` on `.work/TOKEN.lock` and owns
//! the `pending` rows marked with its TOKEN. The kernel drops the lock when
//! the process dies, so a lock that can be taken means a dead owner. On
//! PostgreSQL the owner also holds a session lock in the database, which the
//! server drops when it notices the closed connection, a moment after the
//! kernel dropped the file's: a dead lock file waits (at most
//! [`SESSION_GRACE`]) for the database to agree. For each
//! pending row of a dead owner the files decide:
//! - `devices/ID/` holds a certificate with the row's serial: the rename
//!   happened, so the row becomes `active` (and a rotated device's old row
//!   takes its new status);
//! - otherwise the certificate never arrived: a rotated device's old folder
//!   is moved back from staging if it had been moved out, and the row is deleted.
//!
//! Then the dead owner's staging folder and lock are removed. Every step is
//! idempotent, so a recovery that is itself killed is finished by the next one.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::issue::{cert_facts, device_file_names, role_from_name};
use crate::lock::{self, Lock};
use crate::store::{Landed, PendingRow};
use crate::{names, Error, Fleet};

/// What a recovery did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    /// Pending certificates found in place and marked active.
    pub completed: u64,
    /// Pending certificates that never reached their folder, removed from the inventory.
    pub rolled_back: u64,
    /// Staging folders of dead processes removed.
    pub cleaned: u64,
}

/// The owners of pending rows that this folder's processes were (with a
/// shared database, other machines' rows are theirs to settle: their device
/// folders are there).
fn pending_owners(fleet: &Fleet) -> Result<BTreeSet<String>, Error> {
    let mut owners = fleet.db().pending_owners()?;
    owners.retain(|o| o.starts_with(fleet.issuer()));
    Ok(owners)
}

/// Settles what dead processes left behind. Cheap when there is nothing to do.
pub fn run(fleet: &mut Fleet) -> Result<Recovery, Error> {
    let mut report = Recovery::default();
    let work = fleet.dir().join(names::WORK);
    let mut owners = pending_owners(fleet)?;
    let leftovers = match fs::read_dir(&work) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "recover.lock")
            .collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    if owners.is_empty() && leftovers.is_empty() {
        return Ok(report);
    }
    fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    // One recovery at a time; issuers never take this lock.
    let _serial = Lock::wait(&work.join("recover.lock"))?;
    owners = pending_owners(fleet)?;
    for name in &leftovers {
        if name.starts_with('.') && name.ends_with(".new") {
            // A lock file still being created: stale only if nobody holds it.
            Lock::remove_if_stale(&work.join(name))?;
        } else {
            owners.insert(name.trim_end_matches(".lock").to_string());
        }
    }
    for owner in owners {
        let lock_path = work.join(format!("{owner}.lock"));
        // The lock file is in place (locked) before its owner writes anything,
        // so no lock file means nobody is alive behind these rows.
        let held = if lock_path.exists() {
            match Lock::try_existing(&lock_path)? {
                Some(l) => Some(l),
                None => continue, // alive
            }
        } else {
            None
        };
        if !database_says_dead(fleet, &owner, held.is_some())? {
            continue; // the database says it still runs
        }
        settle_owner(fleet, &owner, &mut report)?;
        let dir = work.join(&owner);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            report.cleaned += 1;
        }
        if held.is_some() {
            let _ = fs::remove_file(&lock_path);
        }
    }
    Ok(report)
}

/// How long a dead owner's session may outlive it in the database.
const SESSION_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the database agrees that `owner` is gone (or cannot tell). The
/// kernel frees a killed process's lock file at once; PostgreSQL frees its
/// session lock when the server notices the closed connection, a moment
/// later on a busy server. So when the lock file already says dead
/// (`dead_here`), the database is asked again for up to [`SESSION_GRACE`]
/// before the owner is taken for alive.
fn database_says_dead(fleet: &Fleet, owner: &str, dead_here: bool) -> Result<bool, Error> {
    let deadline = std::time::Instant::now() + SESSION_GRACE;
    loop {
        if fleet.db().owner_alive(owner)? != Some(true) {
            return Ok(true);
        }
        if !dead_here || std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn settle_owner(fleet: &mut Fleet, owner: &str, report: &mut Recovery) -> Result<(), Error> {
    let rows: Vec<PendingRow> = fleet.db().pending_rows(owner)?;
    if rows.is_empty() {
        return Ok(());
    }
    let staging_old = fleet.dir().join(names::WORK).join(owner).join("old");
    let mut landed: Vec<Landed> = Vec::new();
    let mut missing = Vec::new();
    let devices: Vec<String> = rows.iter().map(|row| row.1.clone()).collect();
    for (id, device, serial, role, replaces, old_status) in rows {
        let dest = fleet.device_dir(&device);
        let (cert_name, _) = device_file_names(role_from_name(&role));
        let found = fs::read(dest.join(&cert_name)).ok();
        let facts = found.as_deref().and_then(cert_facts);
        match (&found, facts) {
            (Some(der), Some(f)) if f.serial == serial => landed.push((
                id,
                devtls_pki::fingerprint::sha256_hex(der),
                replaces,
                old_status,
            )),
            _ => {
                let old = staging_old.join(&device);
                if old.exists() {
                    restore(&old, &dest)?;
                }
                missing.push(id);
            }
        }
    }
    // What is marked active must be on disk first.
    lock::sync_devices(
        &fleet.dir().join(names::DEVICES),
        devices.iter().map(String::as_str),
    )?;
    fleet.db().recover(&landed, &missing)?;
    report.completed += landed.len() as u64;
    report.rolled_back += missing.len() as u64;
    Ok(())
}

/// Puts a rotated device's old folder back where it was.
fn restore(old: &Path, dest: &Path) -> Result<(), Error> {
    if dest.exists() {
        // Only a folder that did not become the new certificate can be here:
        // one left half-made by a power cut. The old one is the truth.
        fs::remove_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    }
    fs::rename(old, dest).map_err(|e| Error::io(dest, e))
}

#[cfg(test)]
mod tests {
    //! Every state a SIGKILL can leave, made by hand, settled by one `open`.
    use super::*;
    use crate::devices::Source;
    use crate::issue::{self, IssueOptions};
    use crate::InitOptions;
    use devtls_pki::issue::{CertSpec, Role};
    use devtls_pki::keys::{KeyType, PrivateKey};
    use std::sync::Arc;

    fn status_of(fleet: &Fleet, device: &str) -> Vec<String> {
        fleet
            .db()
            .device_rows(device)
            .unwrap()
            .into_iter()
            .map(|r| r.status)
            .collect()
    }

    /// A certificate for `id` signed by the fleet CA, as (DER, serial hex).
    fn cert(fleet: &Fleet, id: &str) -> (Vec<u8>, String) {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let der = fleet
            .authority()
            .unwrap()
            .sign(&CertSpec::new(id, Role::Client, 30), &key)
            .unwrap()
            .der;
        let serial = cert_facts(&der).unwrap().serial;
        (der, serial)
    }

    fn pending(fleet: &Fleet, device: &str, serial: &str, owner: &str, replaces: Option<i64>) {
        let cert = crate::store::NewCert {
            device: device.into(),
            serial: serial.into(),
            sha256: String::new(),
            key_type: "p256".into(),
            role: "client".into(),
            dns: String::new(),
            ips: String::new(),
            not_before: 0,
            not_after: 4_000_000_000,
            replaces,
            old_status: Some("revoked"),
            reissue: false,
            from_csr: false,
        };
        let done = fleet.db().reserve(owner, &[cert]).unwrap();
        assert_eq!(done, [crate::store::Reserved::Owned]);
    }

    fn active_id(fleet: &Fleet, device: &str) -> i64 {
        fleet
            .db()
            .rotate_rows(i64::MAX, 0, i64::MAX, 1_000_000)
            .unwrap()
            .into_iter()
            .find(|r| r.1 == device)
            .unwrap()
            .0
    }

    #[test]
    fn each_crash_state_is_settled_by_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fleet");
        let opts = InitOptions {
            name: "t".into(),
            key: KeyType::P256,
            days: 365,
        };
        let mut fleet = Fleet::init(&root, &opts).unwrap();
        let boot: issue::BootPy = Arc::new(|_| String::new());
        let io = IssueOptions::new(30, Role::Client, KeyType::P256, boot);
        let ids = ["a", "b"].map(String::from).to_vec();
        issue::issue(&mut fleet, Source::list(ids), &io, &|_| {}).unwrap();

        let dead = root.join(names::WORK).join("dead");
        for sub in ["new", "old"] {
            fs::create_dir_all(dead.join(sub)).unwrap();
        }
        let devices = root.join(names::DEVICES);
        // c: renamed into place, not yet marked active.
        let (c_der, c_serial) = cert(&fleet, "c");
        fs::create_dir(devices.join("c")).unwrap();
        fs::write(devices.join("c/client.der"), &c_der).unwrap();
        pending(&fleet, "c", &c_serial, "dead", None);
        // d: still in staging.
        let (d_der, d_serial) = cert(&fleet, "d");
        fs::create_dir(dead.join("new/d")).unwrap();
        fs::write(dead.join("new/d/client.der"), &d_der).unwrap();
        pending(&fleet, "d", &d_serial, "dead", None);
        // a: rotation killed between moving the old folder out and the new one in.
        let a_old = fs::read(devices.join("a/client.der")).unwrap();
        let (_, a_serial) = cert(&fleet, "a");
        pending(&fleet, "a", &a_serial, "dead", Some(active_id(&fleet, "a")));
        fs::rename(devices.join("a"), dead.join("old/a")).unwrap();
        // b: rotation killed after the new folder landed.
        let (b_der, b_serial) = cert(&fleet, "b");
        pending(&fleet, "b", &b_serial, "dead", Some(active_id(&fleet, "b")));
        fs::rename(devices.join("b"), dead.join("old/b")).unwrap();
        fs::create_dir(devices.join("b")).unwrap();
        fs::write(devices.join("b/client.der"), &b_der).unwrap();
        // e: owned by a live process (its lock is held): left alone.
        let work = root.join(names::WORK);
        let _live = Lock::create_locked(&work.join(".live.new"), &work.join("live.lock")).unwrap();
        pending(&fleet, "e", "0e", "live", None);
        drop(fleet);

        let fleet = Fleet::open(&root).unwrap();
        assert_eq!(status_of(&fleet, "c"), ["active"]);
        assert!(status_of(&fleet, "d").is_empty() && !devices.join("d").exists());
        assert_eq!(status_of(&fleet, "a"), ["active"]);
        assert_eq!(fs::read(devices.join("a/client.der")).unwrap(), a_old);
        assert_eq!(status_of(&fleet, "b"), ["revoked", "active"]);
        assert_eq!(fs::read(devices.join("b/client.der")).unwrap(), b_der);
        assert!(!dead.exists(), "the dead owner's staging is removed");
        assert_eq!(status_of(&fleet, "e"), ["pending"]);
        assert!(work.join("live.lock").exists());
    }
}

//! File locks and file-system syncs: the two operating-system calls the crash
//! safety rests on.
//!
//! Locks are the standard library's `File::lock` (`flock` on Linux and
//! macOS, `LockFileEx` on Windows): the system releases them when their
//! holder dies, even by SIGKILL, so "can I take this lock?" is a reliable
//! "is its owner dead?".

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::Error;

/// An exclusive lock held for as long as the value lives.
pub struct Lock {
    _file: File,
}

fn open(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Takes the exclusive lock on `file`, waiting if `wait`. `Ok(false)`: someone else holds it.
fn flock(file: &File, wait: bool) -> std::io::Result<bool> {
    if wait {
        return file.lock().map(|()| true);
    }
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}
impl Lock {
    /// Waits for the exclusive lock on `path` (created if missing).
    pub fn wait(path: &Path) -> Result<Lock, Error> {
        let file = open(path)?;
        flock(&file, true).map_err(|e| Error::io(path, e))?;
        Ok(Lock { _file: file })
    }

    /// Takes the lock on an existing `path` if nobody holds it; `None` if
    /// someone does or the file is gone.
    pub fn try_existing(path: &Path) -> Result<Option<Lock>, Error> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        match flock(&file, false).map_err(|e| Error::io(path, e))? {
            true => Ok(Some(Lock { _file: file })),
            false => Ok(None),
        }
    }

    /// Removes the lock file `path` if nobody holds it (a dead process's
    /// leftover); true when it was removed.
    pub fn remove_if_stale(path: &Path) -> Result<bool, Error> {
        match Lock::try_existing(path)? {
            Some(_held) => Ok(std::fs::remove_file(path).is_ok()),
            None => Ok(false),
        }
    }

    /// Creates a lock file that appears at `path` already locked: it is made
    /// and locked under `staging`, then renamed, so no other process can ever
    /// see it unlocked while its owner lives.
    ///
    /// A recovery that meets `staging` between its creation and its lock
    /// takes it for a dead process's leftover and removes it (recover.rs):
    /// then the lock is not ours, or the rename finds nothing, and the
    /// staging file is made again, a bounded number of times.
    pub fn create_locked(staging: &Path, path: &Path) -> Result<Lock, Error> {
        const ATTEMPTS: u32 = 50;
        for attempt in 1..=ATTEMPTS {
            let file = open(staging)?;
            if !flock(&file, false).map_err(|e| Error::io(staging, e))? {
                // The recovery holds it for a moment, then removes it.
                std::thread::sleep(std::time::Duration::from_millis(10 * u64::from(attempt)));
                continue;
            }
            match std::fs::rename(staging, path) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::Invalid(format!(
            "{}: could not take the issuing lock in {ATTEMPTS} attempts (a recovery kept removing it); run the command again",
            staging.display()
        )))
    }
}

/// Makes the device folders `ids` just renamed into `devices` durable,
/// with their files and the renames themselves.
///
/// Linux: one `syncfs` for the whole file system instead of an fsync per
/// file (a batch is thousands of files). Elsewhere: an fsync of every file
/// of each folder, of each folder and of `devices` (`sync_all` is
/// `F_FULLFSYNC` on macOS); Windows cannot open a folder to flush it, and
/// NTFS journals the renames, so there only the files are flushed.
pub fn sync_devices<'a>(
    devices: &Path,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), Error> {
    #[cfg(target_os = "linux")]
    {
        let _ = ids;
        syncfs(devices)
    }
    #[cfg(not(target_os = "linux"))]
    {
        for id in ids {
            let dir = devices.join(id);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                // A device whose folder did not land has nothing to flush.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for entry in entries {
                let path = entry.map_err(|e| Error::io(&dir, e))?.path();
                // Windows flushes a file only through a handle that may
                // write (FlushFileBuffers: a read-only one is refused with
                // "Access denied"); opening for writing changes nothing.
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(cfg!(windows))
                    .open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(&path, e))?;
            }
            sync_dir(&dir)?;
        }
        sync_dir(devices)
    }
}

#[cfg(target_os = "linux")]
fn syncfs(dir: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let file = File::open(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: syncfs on a file descriptor we own; no memory is passed.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Flushes a folder's entries (the renames into it).
#[cfg(all(unix, not(target_os = "linux")))]
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.lock");
        let held = Lock::wait(&path).unwrap();
        assert!(
            Lock::try_existing(&path).unwrap().is_none(),
            "held: refused"
        );
        drop(held);
        assert!(
            Lock::try_existing(&path).unwrap().is_some(),
            "released: taken"
        );
        assert!(Lock::try_existing(&dir.path().join("gone"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn synced_device_folders_are_still_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cam-1")).unwrap();
        std::fs::write(dir.path().join("cam-1/client.der"), b"x").unwrap();
        sync_devices(dir.path(), ["cam-1", "never-landed"]).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("cam-1/client.der")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn a_lock_being_created_survives_a_recovery_that_sweeps_it() {
        // recover.rs removes a staging file nobody holds; one caught between
        // its creation and its lock is made again, never lost.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sweeper = {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut removed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for e in std::fs::read_dir(&root).unwrap().filter_map(Result::ok) {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if name.starts_with('.') && Lock::remove_if_stale(&e.path()).unwrap() {
                            removed += 1;
                        }
                    }
                }
                removed
            })
        };
        for i in 0..2000 {
            let lock = Lock::create_locked(
                &root.join(format!(".{i}.new")),
                &root.join(format!("{i}.lock")),
            )
            .unwrap_or_else(|e| panic!("attempt {i}: {e}"));
            assert!(Lock::try_existing(&root.join(format!("{i}.lock")))
                .unwrap()
                .is_none());
            drop(lock);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let removed = sweeper.join().unwrap();
        eprintln!("the sweeper removed {removed} staging files");
    }
}

//! File locks and file-system syncs: the two operating-system calls the crash
//! safety rests on.
//!
//! An `flock` is released by the kernel when its holder dies, even by
//! SIGKILL, so "can I take this lock?" is a reliable "is its owner dead?".

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
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

/// Takes the exclusive lock on `file`, waiting if `wait`. `Ok(None)`: someone else holds it.
fn flock(file: &File, wait: bool) -> std::io::Result<bool> {
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(err),
        }
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

    /// Creates a lock file that appears at `path` already locked: it is made
    /// and locked under `staging`, then renamed, so no other process can ever
    /// see it unlocked while its owner lives.
    pub fn create_locked(staging: &Path, path: &Path) -> Result<Lock, Error> {
        let file = open(staging)?;
        // A recovery may have grabbed a fresh staging file as stale: never run unlocked.
        if !flock(&file, false).map_err(|e| Error::io(staging, e))? {
            return Err(Error::Invalid(format!(
                "{}: could not take the issuing lock; run the command again",
                staging.display()
            )));
        }
        std::fs::rename(staging, path).map_err(|e| Error::io(path, e))?;
        Ok(Lock { _file: file })
    }
}

/// Flushes everything written to the file system holding `dir` to stable
/// storage: one call per batch instead of one fsync per file.
pub fn sync_fs(dir: &Path) -> Result<(), Error> {
    let file = File::open(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: syncfs on a file descriptor we own; no memory is passed.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

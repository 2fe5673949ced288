//! One `renew` at a time per ACME folder.
//!
//! Two `devtls acme renew` runs on the same folder (cron and a manual run,
//! or a timer that fires while the last run is still going) would both see
//! a certificate as due, both order a new one and both swap `live/`. The
//! second run therefore waits for the first: an exclusive lock on
//! `DIR/renew.lock`, the standard library's `File::lock` (`flock` on Linux
//! and macOS, `LockFileEx` on Windows) as the fleet's writers use. The system
//! releases it when its holder exits, even by SIGKILL, so a crashed run never
//! blocks the next one; the file itself stays (it holds nothing).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::Error;

/// The lock file's name inside the ACME folder.
pub const FILE: &str = "renew.lock";

/// The exclusive right to renew under one ACME folder, held while it lives.
#[derive(Debug)]
pub struct RenewLock {
    _file: File,
}

/// Taking the lock: got it, or someone else holds it (wait with [`Busy::wait`]).
pub enum Attempt {
    /// The lock is ours.
    Held(RenewLock),
    /// Another run holds it.
    Busy(Busy),
}

/// A lock another run holds.
pub struct Busy {
    file: File,
    path: PathBuf,
}

impl Busy {
    /// The lock file, for the message that says what is being waited for.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until the other run ends.
    pub fn wait(self) -> Result<RenewLock, Error> {
        self.file.lock().map_err(|e| Error::io(&self.path, e))?;
        Ok(RenewLock { _file: self.file })
    }
}

impl RenewLock {
    /// Tries to take the lock of the ACME folder `dir` (which must exist).
    pub fn try_take(dir: &Path) -> Result<Attempt, Error> {
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "{}: no such ACME folder; issue a certificate first with `devtls acme issue --dir {}`",
                dir.display(),
                dir.display()
            )));
        }
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Attempt::Held(RenewLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(Attempt::Busy(Busy { file, path })),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_busy_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let Attempt::Held(first) = RenewLock::try_take(dir.path()).unwrap() else {
            panic!("a free lock is taken");
        };
        let Attempt::Busy(busy) = RenewLock::try_take(dir.path()).unwrap() else {
            panic!("a held lock is busy");
        };
        assert_eq!(busy.path(), dir.path().join(FILE));
        drop(first);
        busy.wait().expect("released: the waiter gets it");
        assert!(matches!(
            RenewLock::try_take(&dir.path().join("missing")),
            Err(Error::Input(_))
        ));
    }
}

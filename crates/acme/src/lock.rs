//! One writer at a time per ACME folder: `renew` and `issue`.
//!
//! Two `devtls acme renew` runs on the same folder (cron and a manual run,
//! or a timer that fires while the last run is still going) would both see
//! a certificate as due, both order a new one and both swap `live/`; two
//! `issue` runs would both create an account and both write
//! `account.json`. The second run therefore waits for the first: an
//! exclusive lock on
//! `DIR/renew.lock`, the standard library's `File::lock` (`flock` on Linux
//! and macOS, `LockFileEx` on Windows) as the fleet's writers use. The system
//! releases it when its holder exits, even by SIGKILL, so a crashed run never
//! blocks the next one; the file itself stays (it holds nothing). A
//! symbolic link in its place is refused, not followed (`O_NOFOLLOW`):
//! devtls never made it, and following it would create or lock a file
//! elsewhere (docs/hardening.md).

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
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).read(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        let file = options.open(&path).map_err(|e| {
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                Error::Input(format!(
                    "{}: is a symbolic link, which devtls never makes; remove it (devtls \
                     creates the lock file itself)",
                    path.display()
                ))
            } else {
                Error::io(&path, e)
            }
        })?;
        match file.try_lock() {
            Ok(()) => Ok(Attempt::Held(RenewLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(Attempt::Busy(Busy { file, path })),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Takes the lock of `dir`, waiting for another run that holds it after
/// calling `waiting` with the lock file's path (to say so).
pub fn take(dir: &Path, waiting: impl FnOnce(&Path)) -> Result<RenewLock, Error> {
    match RenewLock::try_take(dir)? {
        Attempt::Held(lock) => Ok(lock),
        Attempt::Busy(busy) => {
            waiting(busy.path());
            busy.wait()
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

    /// A `renew.lock` that is a symbolic link (to a file that does not
    /// exist yet, or to one that does) is refused and nothing is created
    /// or locked through it.
    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_in_place_of_the_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(FILE)).unwrap();
        let e = RenewLock::try_take(dir.path()).err().expect("refused");
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert!(!elsewhere.exists(), "nothing created through the link");
    }
}

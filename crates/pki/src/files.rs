//! Writing files safely: atomically, private keys 0600 (on Windows: an
//! owner-only DACL), no silent overwrite.
//!
//! The one place devtls writes credentials to disk. A write goes to a
//! temporary file in the same folder and is renamed over the target, so a
//! crash or a full disk never leaves a half-written key or certificate.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::Error;

mod bounded;
#[cfg(windows)]
mod windows;

pub use bounded::{open_nonblocking, read_regular, ReadError, MAX_INPUT};

/// Whether a file holds a secret (written 0600) or public material (0644).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// A private key: owner read/write only.
    Secret,
    /// A certificate, CSR, CRL or other public file.
    Public,
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct Output {
    /// Where it goes.
    pub path: PathBuf,
    /// What goes in it.
    pub bytes: Vec<u8>,
    /// Its permissions.
    pub secrecy: Secrecy,
}

impl Output {
    /// A public file.
    pub fn public(path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Self {
        Output {
            path: path.into(),
            bytes: bytes.into(),
            secrecy: Secrecy::Public,
        }
    }

    /// A private key file.
    pub fn secret(path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Self {
        Output {
            path: path.into(),
            bytes: bytes.into(),
            secrecy: Secrecy::Secret,
        }
    }
}

/// Writes a set of files as one step: if any target exists and `force` is
/// false, nothing is written and the error names every file in the way.
///
/// Every file is first written and synced under a temporary name; only when
/// all of them are on disk are they renamed into place, so a failure (full
/// disk, permissions) leaves none of the set behind. The data writes of all
/// files are started before the first sync waits, so they overlap; each
/// sync still waits for its own flush. A thread per file overlapped the
/// flushes too but cost more than it saved (bench/new.sh).
pub fn write_all(outputs: &[Output], force: bool) -> Result<(), Error> {
    write_all_with_progress(outputs, force, &|_| {})
}

/// How many staged files are open at once: a set of thousands of files (a
/// split bundle) never needs thousands of descriptors.
const OPEN_AT_ONCE: usize = 64;

/// [`write_all`], calling `progress` with the number of files staged so far.
/// Files are staged [`OPEN_AT_ONCE`] at a time and closed once synced, so
/// any number of them fits under a small open-file limit.
pub fn write_all_with_progress(
    outputs: &[Output],
    force: bool,
    progress: &dyn Fn(usize),
) -> Result<(), Error> {
    if !force {
        let existing: Vec<String> = outputs
            .iter()
            .filter(|o| o.path.exists())
            .map(|o| o.path.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(Error::Exists(existing));
        }
    }
    // Dropping the staged files on an error deletes them.
    let mut synced = Vec::with_capacity(outputs.len());
    for chunk in outputs.chunks(OPEN_AT_ONCE) {
        let staged = chunk.iter().map(stage).collect::<Result<Vec<_>, _>>()?;
        for (tmp, output) in staged.into_iter().zip(chunk) {
            tmp.as_file()
                .sync_all()
                .map_err(|e| Error::io(&output.path, e))?;
            synced.push(tmp.into_temp_path());
        }
        progress(synced.len());
    }
    for (tmp, output) in synced.into_iter().zip(outputs) {
        tmp.persist(&output.path)
            .map_err(|e| Error::io(&output.path, e.error))?;
    }
    Ok(())
}

/// Writes one file atomically (temporary file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8], secrecy: Secrecy) -> Result<(), Error> {
    let output = Output {
        path: path.to_path_buf(),
        bytes: bytes.to_vec(),
        secrecy,
    };
    write_all(&[output], true)
}

/// Writes an output under a temporary name in its target folder, with its
/// final permissions, and starts its way to disk; the caller syncs and
/// renames it into place.
fn stage(output: &Output) -> Result<NamedTempFile, Error> {
    let path = output.path.as_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".devtls-");
    // tempfile creates files 0600 on Unix already; public files are relaxed
    // after writing. On Windows a secret is created owner-only.
    #[cfg(windows)]
    let created = match output.secrecy {
        Secrecy::Secret => builder.make_in(dir, |p| windows::create_new(p)),
        Secrecy::Public => builder.tempfile_in(dir),
    };
    #[cfg(not(windows))]
    let created = builder.tempfile_in(dir);
    let mut tmp = created.map_err(|e| Error::io(dir, e))?;
    tmp.write_all(&output.bytes)
        .map_err(|e| Error::io(path, e))?;
    start_writeback(tmp.as_file());
    #[cfg(unix)]
    if output.secrecy == Secrecy::Public {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    if output.secrecy == Secrecy::Secret {
        warn_if_not_owner_only(path);
    }
    Ok(tmp)
}

/// Creates a new file (it must not exist) that only its owner can read:
/// mode 0600 on Unix, an owner-only DACL on Windows. For writers that
/// place files themselves (the fleet's device folders).
#[cfg(windows)]
pub fn create_new_private(path: &Path) -> std::io::Result<fs::File> {
    windows::create_new(path)
}

/// Creates a new file (it must not exist) that only its owner can read:
/// mode 0600 on Unix, an owner-only DACL on Windows. For writers that
/// place files themselves (the fleet's device folders).
#[cfg(not(windows))]
pub fn create_new_private(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    #[cfg(not(unix))]
    warn_if_not_owner_only(path);
    options.open(path)
}

/// Whether only the owner can read `path`: exactly the owner-only DACL
/// devtls writes on Windows, no group or other mode bits on Unix.
#[cfg(windows)]
pub fn is_owner_only(path: &Path) -> std::io::Result<bool> {
    windows::is_owner_only(path)
}

/// Whether only the owner can read `path`: exactly the owner-only DACL
/// devtls writes on Windows, no group or other mode bits on Unix.
#[cfg(unix)]
pub fn is_owner_only(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(fs::metadata(path)?.permissions().mode() & 0o077 == 0)
}

/// Where devtls has no way to make a file owner-only (neither Unix mode
/// bits nor Windows ACLs), says once per run that a private key file gets
/// its folder's permissions. On Unix and Windows this says nothing.
pub fn warn_if_not_owner_only(path: &Path) {
    #[cfg(not(any(unix, windows)))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            eprintln!(
                "warning: {}: on this system devtls cannot make a private key file readable by \
                 you alone; it has its folder's permissions. Keep keys in a folder only you can \
                 read (under your user profile, not a shared folder).",
                path.display()
            )
        });
    }
    #[cfg(any(unix, windows))]
    let _ = path;
}

/// Asks the kernel to start writing a file's data to disk without waiting,
/// so that the `fsync`s that follow wait for I/O already under way. Only a
/// head start: durability still comes from the `fsync`.
#[cfg(target_os = "linux")]
fn start_writeback(file: &fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own; a failure only
    // loses the head start, the later fsync reports real I/O errors.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &fs::File) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who may read `path`, for assertion messages: its mode or its DACL.
    fn access(path: &Path) -> String {
        #[cfg(unix)]
        let access = {
            use std::os::unix::fs::PermissionsExt;
            format!("{:o}", fs::metadata(path).unwrap().permissions().mode())
        };
        #[cfg(windows)]
        let access = windows::dacl(path).unwrap();
        #[cfg(not(any(unix, windows)))]
        let access = String::new();
        access
    }

    #[test]
    fn keys_are_0600_and_never_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("server.key");
        let crt = dir.path().join("server.crt");
        write_all(
            &[
                Output::secret(&key, b"k1".to_vec()),
                Output::public(&crt, b"c1".to_vec()),
            ],
            false,
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(&crt).unwrap().permissions().mode() & 0o777,
                0o644
            );
        }
        // Windows: the key has the owner-only DACL, the certificate (a
        // positive control) its folder's inherited one.
        assert!(is_owner_only(&key).unwrap(), "key: {}", access(&key));
        assert!(
            !is_owner_only(&crt).unwrap(),
            "certificate: {}",
            access(&crt)
        );
        let err = write_all(&[Output::secret(&key, b"k2".to_vec())], false).unwrap_err();
        assert!(err.to_string().contains("server.key"), "{err}");
        assert_eq!(fs::read(&key).unwrap(), b"k1");
        write_all(&[Output::secret(&key, b"k2".to_vec())], true).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"k2");
        assert!(
            is_owner_only(&key).unwrap(),
            "replaced key: {}",
            access(&key)
        );
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 2, "no temporary files left behind");
    }

    #[test]
    fn private_files_are_created_owner_only_and_never_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("device.key.der");
        create_new_private(&key).unwrap().write_all(b"k").unwrap();
        assert!(is_owner_only(&key).unwrap(), "{}", access(&key));
        assert_eq!(fs::read(&key).unwrap(), b"k");
        let err = create_new_private(&key).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&key).unwrap(), b"k");
    }

    #[test]
    fn a_set_with_one_unwritable_member_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where a folder is needed: that member cannot be staged.
        let blocker = dir.path().join("not-a-folder");
        fs::write(&blocker, b"x").unwrap();
        let err = write_all(
            &[
                Output::secret(dir.path().join("a.key"), b"k".to_vec()),
                Output::public(dir.path().join("a.crt"), b"c".to_vec()),
                Output::public(blocker.join("b.der"), b"d".to_vec()),
            ],
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not-a-folder"), "{err}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["not-a-folder"], "nothing of the set was written");
    }
}

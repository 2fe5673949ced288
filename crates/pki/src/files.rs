//! Writing files safely: atomically, private keys 0600, no silent overwrite.
//!
//! The one place devtls writes credentials to disk. A write goes to a
//! temporary file in the same folder and is renamed over the target, so a
//! crash or a full disk never leaves a half-written key or certificate.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;

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
pub fn write_all(outputs: &[Output], force: bool) -> Result<(), Error> {
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
    for output in outputs {
        write_atomic(&output.path, &output.bytes, output.secrecy)?;
    }
    Ok(())
}

/// Writes one file atomically (temporary file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8], secrecy: Secrecy) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".devtls-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    // tempfile creates files 0600 already; public files are relaxed after writing.
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    #[cfg(unix)]
    if secrecy == Secrecy::Public {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = secrecy;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = write_all(&[Output::secret(&key, b"k2".to_vec())], false).unwrap_err();
        assert!(err.to_string().contains("server.key"), "{err}");
        assert_eq!(fs::read(&key).unwrap(), b"k1");
        write_all(&[Output::secret(&key, b"k2".to_vec())], true).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"k2");
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 2, "no temporary files left behind");
    }
}

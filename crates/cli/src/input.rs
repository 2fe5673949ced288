//! Reading the user's files, with errors that name the file and the fix.

use std::path::Path;

use anyhow::{bail, Context};
use devtls_pki::sniff::{self, Sniffed};

/// Reads a whole file; a missing file, a folder or an empty file is a clear error.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.is_dir() {
        bail!(
            "{}: is a folder; give the path of a certificate or key file inside it",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| match path.exists() {
        true => format!("{}: cannot be read (check its permissions)", path.display()),
        false => format!("{}: no such file; check the path", path.display()),
    })?;
    if bytes.is_empty() {
        bail!(
            "{}: the file is empty; it was probably not copied or saved completely",
            path.display()
        );
    }
    Ok(bytes)
}

/// Reads and sniffs a file: the error names the file and what was wrong.
pub fn sniff(path: &Path) -> anyhow::Result<Sniffed> {
    let bytes = read(path)?;
    sniff::sniff(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

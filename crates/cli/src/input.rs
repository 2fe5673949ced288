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
    sniff_bytes(path, &bytes)
}

/// Sniffs bytes already read from `path`: the error names the file, what was
/// found and what devtls reads.
pub fn sniff_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<Sniffed> {
    sniff::sniff(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; devtls reads PEM or DER certificates, keys, CSRs and CRLs",
            path.display()
        )
    })
}

/// Parses `--at`: RFC 3339 (`2027-01-01T00:00:00Z`) or a date (`2027-01-01`, midnight UTC).
pub fn instant(text: &str) -> anyhow::Result<time::OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &date_format)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            anyhow::anyhow!(
                "--at '{text}': give a date (2027-01-01) or an RFC 3339 time (2027-01-01T12:00:00Z)"
            )
        })
}

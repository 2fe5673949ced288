//! Reading the user's files, with errors that name the file and the fix.
//!
//! Every command reads its input files through [`read`] or [`open`]: at most
//! [`MAX_INPUT`] bytes, never blocking on a FIFO without a writer, and with a
//! one-line error naming the file for a folder, a device that never ends,
//! an empty file or one that cannot be read (docs/hardening.md).

use std::fs::File;
use std::io::{self, Read};
#[cfg(unix)]
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use devtls_pki::sniff::{self, Sniffed};

/// The largest input file devtls reads (pki's limit, shared with the
/// gateway's reloads).
pub const MAX_INPUT: u64 = devtls_pki::files::MAX_INPUT;

/// How long a pipe or FIFO may stay silent before devtls gives up on it.
pub const PIPE_WAIT: Duration = Duration::from_secs(5);

/// The error a read over [`MAX_INPUT`] ends with (inside an `io::Error`).
#[derive(Debug)]
struct TooLarge(String);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooLarge {}

fn too_large(path: &Path) -> TooLarge {
    TooLarge(format!(
        "{}: larger than the {} MiB limit for input files (certificates and keys are \
         kilobytes); give the certificate, key, CSR or bundle itself",
        path.display(),
        MAX_INPUT >> 20
    ))
}

/// An input file opened for reading: never more than [`MAX_INPUT`] bytes (a
/// longer one is an error naming the file and the limit), and a pipe that
/// stays silent for [`PIPE_WAIT`] is an error, not a hang.
pub struct Input {
    file: File,
    path: PathBuf,
    read: u64,
    pipe: bool,
}

/// Opens `path` for reading without blocking on a FIFO that has no writer;
/// a folder, a missing file or a regular file over the limit is a clear error.
pub fn open(path: &Path) -> anyhow::Result<Input> {
    // Unix: a FIFO opens at once and is read with a bounded wait.
    let (file, meta) = devtls_pki::files::open_nonblocking(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            anyhow::anyhow!("{}: no such file; check the path", path.display())
        }
        _ => anyhow::anyhow!(
            "{}: cannot be opened ({e}); check the path and its permissions",
            path.display()
        ),
    })?;
    if meta.is_dir() {
        bail!(
            "{}: is a folder; give the path of a certificate or key file inside it",
            path.display()
        );
    }
    if meta.is_file() && meta.len() > MAX_INPUT {
        return Err(too_large(path).into());
    }
    #[cfg(unix)]
    let pipe = meta.file_type().is_fifo() || meta.file_type().is_socket();
    #[cfg(not(unix))]
    let pipe = false;
    Ok(Input {
        file,
        path: path.to_path_buf(),
        read: 0,
        pipe,
    })
}

impl Input {
    /// Waits until the pipe has data or is closed, for at most [`PIPE_WAIT`] in all.
    fn wait_readable(&self, since: Instant) -> io::Result<()> {
        let left = PIPE_WAIT.saturating_sub(since.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing arrived within {} s", PIPE_WAIT.as_secs()),
            ));
        }
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let mut fd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let n =
                unsafe { libc::poll(&mut fd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        // Elsewhere no input is a pipe (see `open`), so this is never reached.
        #[cfg(not(unix))]
        std::thread::sleep(left.min(Duration::from_millis(10)));
        Ok(())
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > MAX_INPUT {
            return Err(io::Error::other(too_large(&self.path)));
        }
        // One byte more than the limit is allowed through, to tell "exactly
        // at the limit" from "over it".
        let room = (MAX_INPUT + 1 - self.read).min(buf.len() as u64) as usize;
        let started = Instant::now();
        loop {
            match self.file.read(&mut buf[..room]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.pipe => {
                    self.wait_readable(started)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
                Ok(n) => {
                    self.read += n as u64;
                    if self.read > MAX_INPUT {
                        return Err(io::Error::other(too_large(&self.path)));
                    }
                    return Ok(n);
                }
            }
        }
    }
}

/// Reads a whole file (at most [`MAX_INPUT`] bytes); a missing file, a
/// folder, an over-large, silent or empty file is a clear error.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read_maybe_empty(path)?;
    if bytes.is_empty() {
        bail!(
            "{}: the file is empty; it was probably not copied or saved completely",
            path.display()
        );
    }
    Ok(bytes)
}

/// [`read`] for callers that judge an empty file themselves (`doctor
/// --files` reports it in the device's words).
pub fn read_maybe_empty(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut input = open(path)?;
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|e| {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<TooLarge>())
        {
            Some(too_large) => anyhow::anyhow!("{too_large}"),
            None => anyhow::anyhow!("{}: cannot be read ({e})", path.display()),
        }
    })?;
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

//! Reading a file that someone else may have replaced: at most a bounded
//! number of bytes, and never blocking. The CLI's input reader opens its
//! files the same way ([`open_nonblocking`]); a service that reloads files
//! (the gateway) reads them with [`read_regular`], which also refuses
//! anything but a regular file, so a FIFO or a device put in place of a
//! certificate is refused at once instead of stalling the reload
//! (docs/hardening.md, "Gateway").

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest input file devtls reads: certificates and keys are
/// kilobytes and a bundle of every public root about 250 KB, so 64 MiB is
/// generous and still bounds memory.
pub const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed.
    #[error("{}: cannot be read ({error}); check the path and its permissions", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A folder, FIFO, socket or device where a file was expected.
    #[error(
        "{}: is a {kind}, not a regular file; put the certificate or key file itself there",
        path.display()
    )]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// More bytes than the limit.
    #[error(
        "{}: larger than the {} MiB limit for input files (certificates and keys are \
         kilobytes); give the certificate, key, CSR or bundle itself",
        path.display(),
        limit >> 20
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
}

/// Opens `path` for reading without blocking on a FIFO that has no writer
/// (`O_NONBLOCK` on Unix; Windows has no FIFOs in the file system), and
/// returns it with its metadata (of the opened file, not of the path).
pub fn open_nonblocking(path: &Path) -> io::Result<(File, Metadata)> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

fn kind(meta: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "device";
        }
    }
    if meta.is_dir() {
        "folder"
    } else {
        "special file"
    }
}

/// Reads a whole regular file of at most `limit` bytes. Anything else is
/// refused before a byte is read: a folder, FIFO, socket or device (checked
/// on the path, then on the opened file, so a swap in between changes
/// nothing), or a file whose size is over the limit; a file that grows past
/// the limit while being read is refused too. Nothing here blocks.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io_err = |error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let check = |meta: &Metadata| {
        if !meta.is_file() {
            return Err(ReadError::NotRegular {
                path: path.to_path_buf(),
                kind: kind(meta),
            });
        }
        if meta.len() > limit {
            return Err(ReadError::TooLarge {
                path: path.to_path_buf(),
                limit,
            });
        }
        Ok(())
    };
    // The path first: a device or FIFO is not even opened.
    check(&std::fs::metadata(path).map_err(io_err)?)?;
    let (file, meta) = open_nonblocking(path).map_err(io_err)?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_up_to_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"1234").unwrap();
        assert_eq!(read_regular(&small, 4).unwrap(), b"1234");
        assert!(matches!(
            read_regular(&small, 3),
            Err(ReadError::TooLarge { limit: 3, .. })
        ));
        // A sparse file far over the limit is refused from its size.
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        assert!(matches!(
            read_regular(&big, MAX_INPUT),
            Err(ReadError::TooLarge { .. })
        ));
        assert!(matches!(
            read_regular(dir.path(), MAX_INPUT),
            Err(ReadError::NotRegular { kind: "folder", .. })
        ));
        assert!(matches!(
            read_regular(&dir.path().join("missing"), MAX_INPUT),
            Err(ReadError::Io { .. })
        ));
    }

    /// A FIFO without a writer is refused at once (a plain open would block
    /// until a writer comes, forever).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("cert.pem");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_regular(&fifo, MAX_INPUT).unwrap_err();
        assert!(
            matches!(e, ReadError::NotRegular { kind: "FIFO", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("cert.pem: is a FIFO"), "{e}");
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), MAX_INPUT),
            Err(ReadError::NotRegular { kind: "device", .. })
        ));
    }
}

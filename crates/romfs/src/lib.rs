//! MicroPython's ROMFS image format: the read-only file system a board
//! mounts at `/rom` (`vfs_rom.c`), written byte for byte as
//! `mpremote romfs build` writes it, and read back.
//!
//! The format, from `../shared/device-facts.md`:
//! - numbers are varuints: big-endian, 7 bits a byte, the high bit set on
//!   every byte but the last (a leading `0x80` pads without changing the value);
//! - a record is `varuint kind`, `varuint length`, payload;
//! - the image is one record of kind `0x14a6b1` (bytes `d2 cd 31`) holding
//!   the others, and its total size is even (the length is padded with a
//!   leading `0x80` when it is not);
//! - kinds: 1 padding, 2 file data, 3 data elsewhere in the image
//!   (`size`, `offset`), 4 directory (`namelen`, name, children), 5 file
//!   (`namelen`, name, one data record); unknown kinds are skipped; names
//!   are ASCII.
//!
//! ```
//! let image = devtls_romfs::Tree::new()
//!     .with_file("a.txt", b"hi".to_vec())
//!     .unwrap()
//!     .image();
//! assert_eq!(image, b"\xd2\xcd\x31\x0c\x05\x0a\x05a.txt\x02\x02hi");
//! let entries = devtls_romfs::list(&image).unwrap();
//! assert_eq!(entries[0].path, "a.txt");
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The kind of the record that holds the whole image: bytes `d2 cd 31`.
const IMAGE: u64 = 0x14a6b1;
const DATA: u64 = 2;
const DATA_ELSEWHERE: u64 = 3;
const DIRECTORY: u64 = 4;
const FILE: u64 = 5;

/// What can go wrong building or reading an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A name the format cannot hold (not ASCII, or empty).
    #[error("{path}: ROMFS names are ASCII; rename it (e.g. to '{suggestion}')")]
    Name {
        /// The file or folder.
        path: PathBuf,
        /// The name with every other character replaced by `_`.
        suggestion: String,
    },
    /// Neither a file nor a folder (a socket, a device, a broken link).
    #[error("{0}: neither a file nor a folder; a ROMFS image holds only those")]
    Special(PathBuf),
    /// Bytes that are not a ROMFS image.
    #[error("not a ROMFS image: {0}")]
    Malformed(String),
    /// The folder's files add up to more than an image may hold ([`MAX_CONTENT`]).
    #[error("{path}: the folder's files pass {limit} bytes, more than a ROMFS image for a board holds; leave large files out of the folder")]
    TooLarge {
        /// The file that passed the limit.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
}

/// Most bytes of file contents [`Tree::from_dir`] reads (64 MiB, the limit
/// every devtls input has; a board's ROMFS partition is far smaller), so a
/// stray large file is refused instead of read into memory.
pub const MAX_CONTENT: u64 = 64 * 1024 * 1024;

/// A folder tree to put in an image, in the order the image lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: Vec<(String, Node)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Folder(Tree),
}

impl Tree {
    /// An empty tree (its image is the empty image `d2 cd 31 00`).
    pub fn new() -> Self {
        Tree::default()
    }

    /// Adds a file at the end of this folder.
    pub fn with_file(mut self, name: &str, data: Vec<u8>) -> Result<Self, Error> {
        check_name(Path::new(name), name)?;
        self.entries.push((name.to_string(), Node::File(data)));
        Ok(self)
    }

    /// Adds a folder at the end of this folder.
    pub fn with_folder(mut self, name: &str, folder: Tree) -> Result<Self, Error> {
        check_name(Path::new(name), name)?;
        self.entries.push((name.to_string(), Node::Folder(folder)));
        Ok(self)
    }

    /// Reads a folder from disk as `mpremote romfs build` does: every entry,
    /// sorted by name, folders recursively, links followed.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let mut budget = MAX_CONTENT;
        Tree::from_dir_within(dir, &mut budget)
    }

    /// [`Tree::from_dir`] reading at most `budget` bytes of file contents.
    fn from_dir_within(dir: &Path, budget: &mut u64) -> Result<Self, Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| name_error(&path))?.to_string();
            check_name(&path, &name)?;
            names.push(name);
        }
        names.sort();
        let mut tree = Tree::new();
        for name in names {
            let path = dir.join(&name);
            let meta = fs::metadata(&path).map_err(io(&path))?;
            let node = if meta.is_dir() {
                Node::Folder(Tree::from_dir_within(&path, budget)?)
            } else if meta.is_file() {
                Node::File(read_within(&path, budget)?)
            } else {
                return Err(Error::Special(path));
            };
            tree.entries.push((name, node));
        }
        Ok(tree)
    }

    /// Every file's path (from the image's root) and contents, in image order.
    pub fn files(&self) -> Vec<(String, &[u8])> {
        let mut out = Vec::new();
        self.collect_files("", &mut out);
        out
    }

    fn collect_files<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a [u8])>) {
        for (name, node) in &self.entries {
            match node {
                Node::File(data) => out.push((format!("{prefix}{name}"), data)),
                Node::Folder(tree) => tree.collect_files(&format!("{prefix}{name}/"), out),
            }
        }
    }

    /// The files and folders in this tree, parents before their children.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        self.collect("", &mut out);
        out
    }

    fn collect(&self, prefix: &str, out: &mut Vec<Entry>) {
        for (name, node) in &self.entries {
            let path = format!("{prefix}{name}");
            match node {
                Node::File(data) => out.push(Entry {
                    path,
                    size: Some(data.len() as u64),
                }),
                Node::Folder(tree) => {
                    out.push(Entry {
                        path: path.clone(),
                        size: None,
                    });
                    tree.collect(&format!("{path}/"), out);
                }
            }
        }
    }

    /// The image: this tree as the one record the board mounts.
    pub fn image(&self) -> Vec<u8> {
        let body = self.records();
        let mut length = varuint(body.len() as u64);
        let header = varuint(IMAGE);
        if (header.len() + length.len() + body.len()) % 2 == 1 {
            length.insert(0, 0x80);
        }
        [header, length, body].concat()
    }

    fn records(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, node) in &self.entries {
            let mut payload = varuint(name.len() as u64);
            payload.extend_from_slice(name.as_bytes());
            let kind = match node {
                Node::File(data) => {
                    payload.extend(record(DATA, data));
                    FILE
                }
                Node::Folder(tree) => {
                    payload.extend(tree.records());
                    DIRECTORY
                }
            };
            out.extend(record(kind, &payload));
        }
        out
    }
}

/// One file or folder of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its path from the image's root, `/`-separated (on the board: `/rom/` + path).
    pub path: String,
    /// A file's size in bytes; `None` for a folder.
    pub size: Option<u64>,
}

/// Lists what an image holds, parents before their children, in image order.
pub fn list(image: &[u8]) -> Result<Vec<Entry>, Error> {
    let mut reader = Reader { bytes: image };
    if reader.varuint().ok() != Some(IMAGE) {
        return Err(Error::Malformed(
            "it does not start with d2 cd 31 (a ROMFS image's first bytes)".into(),
        ));
    }
    let len = usize::try_from(reader.varuint()?)
        .map_err(|_| Error::Malformed("a record too long".into()))?;
    let body = reader.take(len)?;
    if !reader.bytes.is_empty() {
        return Err(Error::Malformed(format!(
            "{} bytes follow the image",
            reader.bytes.len()
        )));
    }
    let mut out = Vec::new();
    read_folder(body, "", &mut out)?;
    Ok(out)
}

fn read_folder(bytes: &[u8], prefix: &str, out: &mut Vec<Entry>) -> Result<(), Error> {
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        let (kind, payload) = reader.record()?;
        if kind != FILE && kind != DIRECTORY {
            continue; // padding (kind 1), data records and kinds this reader does not know
        }
        let mut inner = Reader { bytes: payload };
        let name_len = inner.varuint()? as usize;
        let name = inner.take(name_len)?;
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|n| n.is_ascii() && !n.is_empty())
            .ok_or_else(|| Error::Malformed("a name that is not ASCII".into()))?;
        let path = format!("{prefix}{name}");
        if kind == DIRECTORY {
            out.push(Entry {
                path: path.clone(),
                size: None,
            });
            read_folder(inner.bytes, &format!("{path}/"), out)?;
        } else {
            let size = file_size(inner.bytes)
                .ok_or_else(|| Error::Malformed(format!("the file {path} has no data record")))?;
            out.push(Entry {
                path,
                size: Some(size),
            });
        }
    }
    Ok(())
}

/// The size of a file's data: its first data record, verbatim or elsewhere.
fn file_size(bytes: &[u8]) -> Option<u64> {
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        let (kind, payload) = reader.record().ok()?;
        match kind {
            DATA => return Some(payload.len() as u64),
            DATA_ELSEWHERE => return Reader { bytes: payload }.varuint().ok(),
            _ => {} // padding and kinds this reader does not know
        }
    }
    None
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varuint(&mut self) -> Result<u64, Error> {
        let mut value: u64 = 0;
        loop {
            let [byte, rest @ ..] = self.bytes else {
                return Err(Error::Malformed("it ends inside a number".into()));
            };
            self.bytes = rest;
            if value >> 57 != 0 {
                return Err(Error::Malformed("a number too large".into()));
            }
            value = (value << 7) | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.bytes.len() {
            return Err(Error::Malformed(format!(
                "a record says {n} bytes where {} are left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn record(&mut self) -> Result<(u64, &'a [u8]), Error> {
        let kind = self.varuint()?;
        let len = usize::try_from(self.varuint()?)
            .map_err(|_| Error::Malformed("a record too long".into()))?;
        Ok((kind, self.take(len)?))
    }
}

fn varuint(mut value: u64) -> Vec<u8> {
    let mut out = vec![(value & 0x7f) as u8];
    value >>= 7;
    while value != 0 {
        out.insert(0, 0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out
}

fn record(kind: u64, payload: &[u8]) -> Vec<u8> {
    [
        varuint(kind),
        varuint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}

fn check_name(path: &Path, name: &str) -> Result<(), Error> {
    if name.is_empty() || !name.is_ascii() || name.contains('/') {
        return Err(name_error(path));
    }
    Ok(())
}

fn name_error(path: &Path) -> Error {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suggestion: String = name
        .chars()
        .map(|c| match c {
            c if c.is_ascii() && c != '/' => c,
            _ => '_',
        })
        .collect();
    Error::Name {
        path: path.to_path_buf(),
        suggestion,
    }
}

/// Reads the regular file `path`, taking its size from `budget`; refuses it
/// when it would pass the budget (also when it grows while being read).
fn read_within(path: &Path, budget: &mut u64) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let too_large = || Error::TooLarge {
        path: path.to_path_buf(),
        limit: MAX_CONTENT,
    };
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() > *budget {
        return Err(too_large());
    }
    let mut data = Vec::new();
    file.take(*budget + 1).read_to_end(&mut data).map_err(io)?;
    let len = data.len() as u64;
    if len > *budget {
        return Err(too_large());
    }
    *budget -= len;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_whose_files_pass_the_limit_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ca.der"), b"small").unwrap();
        // Sparse: the size is there, the disk blocks are not.
        let big = fs::File::create(dir.path().join("video.bin")).unwrap();
        big.set_len(MAX_CONTENT).unwrap();
        match Tree::from_dir(dir.path()) {
            Err(Error::TooLarge { path, limit }) => {
                assert!(path.ends_with("video.bin"), "{}", path.display());
                assert_eq!(limit, MAX_CONTENT);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        fs::remove_file(dir.path().join("video.bin")).unwrap();
        let tree = Tree::from_dir(dir.path()).unwrap();
        assert_eq!(tree.files(), vec![("ca.der".to_string(), &b"small"[..])]);
    }

    #[test]
    fn the_byte_exact_examples_of_the_format() {
        assert_eq!(Tree::new().image(), b"\xd2\xcd\x31\x00");
        let one = Tree::new().with_file("a.txt", b"hi".to_vec()).unwrap();
        assert_eq!(one.image(), b"\xd2\xcd\x31\x0c\x05\x0a\x05a.txt\x02\x02hi");
    }

    #[test]
    fn an_odd_total_is_padded_in_the_length_and_still_reads() {
        // A 9-byte body: 3 + 1 + 9 is odd, so the length becomes 80 09.
        let tree = Tree::new().with_file("ab", b"xy".to_vec()).unwrap();
        let image = tree.image();
        assert_eq!(image.len(), 14);
        assert_eq!(&image[..5], b"\xd2\xcd\x31\x80\x09");
        assert_eq!(list(&image).unwrap(), tree.entries());
    }

    #[test]
    fn numbers_use_as_many_seven_bit_bytes_as_they_need() {
        assert_eq!(varuint(0), [0]);
        assert_eq!(varuint(127), [0x7f]);
        assert_eq!(varuint(128), [0x81, 0x00]);
        assert_eq!(varuint(IMAGE), [0xd2, 0xcd, 0x31]);
        let big = vec![7u8; 20_000];
        let tree = Tree::new().with_file("big", big).unwrap();
        assert_eq!(list(&tree.image()).unwrap()[0].size, Some(20_000));
    }

    #[test]
    fn folders_nest_and_list_parents_first() {
        let certs = Tree::new()
            .with_file("ca.der", vec![1; 300])
            .unwrap()
            .with_folder("old", Tree::new())
            .unwrap();
        let tree = Tree::new()
            .with_file("boot.py", b"print(1)\n".to_vec())
            .unwrap()
            .with_folder("certs", certs)
            .unwrap();
        let listed = list(&tree.image()).unwrap();
        let paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["boot.py", "certs", "certs/ca.der", "certs/old"]);
        assert_eq!(listed, tree.entries());
        let files: Vec<(String, usize)> = tree
            .files()
            .into_iter()
            .map(|(path, data)| (path, data.len()))
            .collect();
        assert_eq!(files, [("boot.py".into(), 9), ("certs/ca.der".into(), 300)]);
    }

    #[test]
    fn names_must_be_ascii() {
        let err = Tree::new()
            .with_file("zertifikat-ü.der", vec![])
            .unwrap_err();
        assert!(err.to_string().contains("zertifikat-_.der"), "{err}");
    }

    #[test]
    fn damaged_images_are_errors_never_panics() {
        let good = Tree::new()
            .with_folder("d", Tree::new().with_file("f", vec![9; 40]).unwrap())
            .unwrap()
            .image();
        for cut in 0..good.len() {
            assert!(list(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % bytes.len();
                bytes[at] = (state >> 32) as u8;
            }
            let _ = list(&bytes);
        }
        let zip = list(b"PK\x03\x04").unwrap_err();
        assert!(zip.to_string().contains("d2 cd 31"), "{zip}");
        assert!(list(&[good.clone(), vec![0]].concat()).is_err());
    }
}

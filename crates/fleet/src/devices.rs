//! Device IDs and where they come from: arguments, `--count N --prefix P`, or a CSV.
//!
//! A device ID names a folder and goes into certificates, scripts and CSV
//! exports, so it is restricted by [`devtls_pki::names::device_id`]: letters,
//! digits, `.`, `_` and `-`, not starting with a dot or a hyphen, at most 64
//! characters. DNS names and IPs in a CSV are checked by the same module.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Lines, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use devtls_pki::names;

use crate::Error;

/// The longest device ID accepted.
pub const MAX_ID_LEN: usize = names::MAX_DEVICE_ID;

/// Checks that `id` is safe as a folder name; the error says what to change.
pub fn validate_id(id: &str) -> Result<(), Error> {
    names::device_id(id).map_err(|why| {
        Error::Invalid(format!(
            "device ID '{}': {why}; use letters, digits, '.', '_' and '-' (e.g. cam-0001)",
            id.escape_default()
        ))
    })
}

/// One device to issue for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReq {
    /// Its ID (folder name and certificate CN).
    pub id: String,
    /// DNS names for its certificate.
    pub dns: Vec<String>,
    /// IP addresses for its certificate.
    pub ips: Vec<IpAddr>,
}

impl DeviceReq {
    /// A device with no names beyond its ID.
    pub fn plain(id: impl Into<String>) -> Self {
        DeviceReq {
            id: id.into(),
            dns: Vec::new(),
            ips: Vec::new(),
        }
    }
}

/// Where the devices of one `fleet issue` come from. Iterating yields them
/// one at a time, so a million-line CSV is never held in memory.
pub enum Source {
    /// Device IDs given on the command line.
    List(std::vec::IntoIter<String>),
    /// `prefix1` .. `prefixN`.
    Count {
        /// The ID prefix.
        prefix: String,
        /// The next number.
        next: u64,
        /// The last number.
        last: u64,
    },
    /// A CSV file: `id[,dns[,ip]]`, several names in one field separated by `;`.
    Csv {
        /// The file, for error messages.
        path: PathBuf,
        /// Its lines.
        lines: Lines<BufReader<Box<dyn Read>>>,
        /// The current line number.
        line: usize,
        /// The line each device ID was first seen on: a repeated ID is an error.
        seen: HashMap<String, usize>,
    },
}

impl Source {
    /// IDs from the command line.
    pub fn list(ids: Vec<String>) -> Source {
        Source::List(ids.into_iter())
    }

    /// `prefix1` .. `prefixN`. Numbers are not zero-padded, so re-running
    /// with a larger N names the first devices the same way.
    pub fn count(prefix: &str, n: u64) -> Source {
        Source::Count {
            prefix: prefix.to_string(),
            next: 1,
            last: n,
        }
    }

    /// A CSV file read from `reader` (the CLI hands in its size-limited
    /// reader); `path` names it in errors.
    pub fn csv(path: &Path, reader: impl Read + 'static) -> Source {
        let reader: Box<dyn Read> = Box::new(reader);
        Source::Csv {
            path: path.to_path_buf(),
            lines: BufReader::new(reader).lines(),
            line: 0,
            seen: HashMap::new(),
        }
    }

    /// How many devices, when known without reading (for the progress bar).
    pub fn len_hint(&self) -> Option<u64> {
        match self {
            Source::List(it) => Some(it.len() as u64),
            Source::Count { next, last, .. } => Some((last + 1).saturating_sub(*next)),
            Source::Csv { .. } => None,
        }
    }
}

fn csv_line(path: &Path, n: usize, line: &str) -> Result<Option<DeviceReq>, Error> {
    let bad = |why: String| Error::Invalid(format!("{}: line {n}: {why}", path.display()));
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if line.contains('"') {
        return Err(bad(
            "quoted fields are not supported; write plain `id,dns,ip` values".into(),
        ));
    }
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if n == 1 && fields[0].eq_ignore_ascii_case("id") {
        return Ok(None);
    }
    if fields.len() > 3 {
        return Err(bad(format!(
            "{} columns; expected id, dns, ip",
            fields.len()
        )));
    }
    validate_id(fields[0]).map_err(|e| bad(e.to_string()))?;
    for (i, what) in [(1, "dns"), (2, "ip")] {
        if let Some(c) = fields
            .get(i)
            .and_then(|f| f.chars().find(|c| "=+@\t\r".contains(*c)))
        {
            return Err(bad(format!(
                "the {what} column contains '{}', which no {what} value holds",
                c.escape_default()
            )));
        }
    }
    let split = |i: usize| {
        fields
            .get(i)
            .into_iter()
            .flat_map(|f| f.split(';'))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let ips = split(2)
        .map(|s| {
            names::ip(s)
                .map_err(|why| bad(format!("'{}' in the ip column {why}", s.escape_default())))
        })
        .collect::<Result<_, _>>()?;
    let dns = split(1)
        .map(|s| {
            names::dns_name(s)
                .map_err(|why| bad(format!("'{}' in the dns column {why}", s.escape_default())))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(DeviceReq {
        id: fields[0].to_string(),
        dns,
        ips,
    }))
}

impl Iterator for Source {
    type Item = Result<DeviceReq, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Source::List(ids) => {
                let id = ids.next()?;
                Some(validate_id(&id).map(|_| DeviceReq::plain(id)))
            }
            Source::Count { prefix, next, last } => {
                if *next > *last {
                    return None;
                }
                let id = format!("{prefix}{next}");
                *next += 1;
                Some(validate_id(&id).map(|_| DeviceReq::plain(id)))
            }
            Source::Csv {
                path,
                lines,
                line,
                seen,
            } => loop {
                let text = match lines.next()? {
                    Ok(t) => t,
                    Err(e) => return Some(Err(Error::io(path, e))),
                };
                *line += 1;
                match csv_line(path, *line, &text) {
                    Ok(Some(req)) => {
                        if let Some(first) = seen.get(&req.id) {
                            return Some(Err(Error::Invalid(format!(
                                "{}: line {line}: device ID '{}' is already on line {first}; \
                                 list each device once (merge its names into one line)",
                                path.display(),
                                req.id
                            ))));
                        }
                        seen.insert(req.id.clone(), *line);
                        return Some(Ok(req));
                    }
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_safe_folder_names() {
        for good in ["cam-1", "CAM_0001", "a.b", "x"] {
            validate_id(good).unwrap();
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "cam 1",
            "é",
            "-x",
            "=cmd|' /C calc'!A0",
            &"x".repeat(65),
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn csv_rows_with_names_and_errors_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devices.csv");
        std::fs::write(
            &path,
            "id,dns,ip\ncam-1,cam-1.lan,10.0.0.1\n\ncam-2\ncam-3,a.lan;b.lan,\nbad/id\n",
        )
        .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let got: Vec<_> = Source::csv(&path, file).collect();
        assert_eq!(got.len(), 4);
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.dns, vec!["cam-1.lan"]);
        assert_eq!(first.ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(got[2].as_ref().unwrap().dns.len(), 2);
        let err = got[3].as_ref().unwrap_err().to_string();
        assert!(err.contains("line 6") && err.contains("bad/id"), "{err}");
    }

    #[test]
    fn count_names_are_stable() {
        let ids: Vec<String> = Source::count("cam-", 3).map(|r| r.unwrap().id).collect();
        assert_eq!(ids, ["cam-1", "cam-2", "cam-3"]);
    }

    fn rows(text: &str) -> Vec<Result<DeviceReq, Error>> {
        let path = Path::new("devices.csv");
        Source::csv(path, std::io::Cursor::new(text.as_bytes().to_vec())).collect()
    }

    #[test]
    fn a_device_listed_twice_is_reported_not_merged() {
        let got = rows("cam-1,a.lan\ncam-2\ncam-1,b.lan\n");
        assert!(got[0].is_ok() && got[1].is_ok());
        let err = got[2].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("'cam-1'") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn spreadsheet_formulas_and_bad_names_are_refused() {
        for (csv, why) in [
            ("=cmd|' /C calc'!A0\n", "contains '='"),
            ("cam-1,=cmd|' /C calc'!A0\n", "dns column contains '='"),
            ("cam-1,a b.lan\n", "contains ' '"),
            ("cam-1,,10.0.0.300\n", "not an IPv4 or IPv6"),
            ("cam-1,@SUM(1)\n", "contains '@'"),
        ] {
            let got = rows(csv);
            let err = got[0].as_ref().unwrap_err().to_string();
            assert!(
                err.contains("line 1") && err.contains(why),
                "{csv:?}: {err}"
            );
        }
        let ok = rows("cam-1,Bücher.example;*.cam.lan,::1\n");
        let req = ok[0].as_ref().unwrap();
        assert_eq!(req.dns, ["xn--bcher-kva.example", "*.cam.lan"]);
    }
}

//! The files that make a device renew its own certificate: `renew.py`, the
//! lines `boot.py` runs it with, and the ROMFS image a device's first
//! credentials can ship in (docs/renewal.md, "The device side").
//!
//! `renew.py` is a template (`device_files/renew.py`); every value put into
//! it goes through [`py_str`], so no host or file name can end its literal.

use std::fmt;
use std::net::IpAddr;

use devtls_pki::issue::Role;
use devtls_pki::names::{self, py_str, Host};

use crate::issue::device_file_names;
use crate::{names as files, Error, Fleet};

/// The template; `@NAME@` marks where a value goes.
const RENEW_TEMPLATE: &str = include_str!("device_files/renew.py");

/// The most a generated `renew.py` may weigh: it has to fit a small board's
/// file system and RAM beside the application (issue 15).
pub const RENEW_PY_MAX: usize = 4096;

/// The name of the renewal script in a device folder and in its image.
pub const RENEW_PY: &str = "renew.py";

/// Where a ROMFS image is mounted on the board.
pub const ROM_PREFIX: &str = "/rom/";

/// The renewal service a device connects to: `https://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewUrl {
    /// The service's host name or IP address: what the device connects to
    /// and checks the service's certificate against (`server_hostname`).
    pub host: Host,
    /// Its port.
    pub port: u16,
}

/// The port `fleet serve` listens on by default.
pub const DEFAULT_PORT: u16 = 8443;

impl RenewUrl {
    /// Parses `https://HOST[:PORT]` (an IPv6 address in brackets; no path,
    /// user or query: the device asks for one fixed path).
    pub fn parse(text: &str) -> Result<RenewUrl, Error> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "renewal URL '{}': {why}; write it as https://HOST:PORT, e.g. https://renew.example.com:{DEFAULT_PORT}",
                text.escape_default()
            ))
        };
        let rest = text
            .strip_prefix("https://")
            .ok_or_else(|| bad("the device renews over HTTPS only"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("only a host and a port, no path, query or user"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing ']'"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("':' after ']'"))?),
            };
            let ip: IpAddr = addr.parse().map_err(|_| bad("not an IPv6 address"))?;
            (Host::Ip(ip), port)
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let host = names::host(host).map_err(|why| bad(&format!("the host {why}")))?;
            (host, port)
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("the port is a number from 1 to 65535")),
            },
        };
        Ok(RenewUrl { host, port })
    }

    /// The HTTP `Host:` header value.
    pub fn host_header(&self) -> String {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            host => format!("{host}:{}", self.port),
        }
    }
}

impl fmt::Display for RenewUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}", self.host_header())
    }
}

/// The file in the fleet folder that remembers the renewal URL, so later
/// `issue` and `rotate` runs write `renew.py` without being told again.
pub const RENEW_URL_FILE: &str = "renew-url";

/// The fleet's renewal URL, if one was set.
pub fn stored_url(fleet: &Fleet) -> Result<Option<RenewUrl>, Error> {
    let path = fleet.dir().join(RENEW_URL_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => RenewUrl::parse(text.trim())
            .map(Some)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Remembers `url` as the fleet's renewal URL (replacing the one before).
pub fn store_url(fleet: &Fleet, url: &RenewUrl) -> Result<(), Error> {
    let path = fleet.dir().join(RENEW_URL_FILE);
    devtls_pki::files::write_all(
        &[devtls_pki::files::Output::public(path, format!("{url}\n"))],
        true,
    )?;
    Ok(())
}

/// Whether a device of `role` can renew: it proves itself to the service
/// with its certificate as a TLS client, so a server-only certificate cannot.
pub fn role_can_renew(role: Role) -> bool {
    matches!(role, Role::Client | Role::Both)
}

/// The `renew.py` of a device of `role` renewing at `url`. With `rom`, its
/// first credentials and `ca.der` are read from `/rom/` until a renewed pair
/// is on the writable file system.
pub fn renew_py(url: &RenewUrl, role: Role, rom: bool) -> String {
    let (cert, key) = device_file_names(role);
    let values = [
        ("@HOST@", py_str(&url.host.to_string())),
        ("@PORT@", url.port.to_string()),
        ("@HHDR@", py_str(&url.host_header())),
        ("@CERT@", py_str(&cert)),
        ("@KEY@", py_str(&key)),
        ("@CA@", py_str(files::CA_DER)),
        ("@ROM@", py_str(if rom { ROM_PREFIX } else { "" })),
    ];
    let mut out = RENEW_TEMPLATE.to_string();
    for (mark, value) in values {
        out = out.replace(mark, &value);
    }
    out
}

/// The lines `boot.py` starts with on a renewing device: run the renewal
/// (which first finishes or undoes an interrupted one), then name the pair
/// to load as `cert` and `key`. With `rom`, `/rom` is made importable first
/// (MicroPython 1.25+ lists it on `sys.path` already; older builds do not).
pub fn boot_prelude(rom: bool) -> String {
    let mut s = String::new();
    if rom {
        s += &format!(
            "import sys\nif {r} not in sys.path:\n    sys.path.append({r})\n",
            r = py_str(ROM_PREFIX.trim_end_matches('/'))
        );
    }
    s += "import renew\n\
          renew.run()  # finish or undo an interrupted renewal, set the clock, renew if due\n\
          cert, key = renew.pair()  # the renewed pair on the writable file system, if any\n";
    s
}

/// The ROMFS image of a device's first credentials: its certificate, key
/// (when it has one), `ca.der`, `boot.py` and `renew.py`, sorted by name as
/// `mpremote romfs build` would list them.
pub fn romfs_image(files: &[(&str, &[u8])]) -> Result<Vec<u8>, Error> {
    let mut sorted: Vec<&(&str, &[u8])> = files.iter().collect();
    sorted.sort_by_key(|(name, _)| *name);
    let mut tree = devtls_romfs::Tree::new();
    for (name, data) in sorted {
        tree = tree
            .with_file(name, data.to_vec())
            .map_err(|e| Error::Invalid(format!("ROMFS image: {e}")))?;
    }
    Ok(tree.image())
}

/// The image's file name in a device's folder: `ID.romfs`.
pub fn romfs_name(id: &str) -> String {
    format!("{id}.romfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_port_and_ipv6() {
        let u = RenewUrl::parse("https://renew.example.com:9443").unwrap();
        assert_eq!(u.port, 9443);
        assert_eq!(u.host_header(), "renew.example.com:9443");
        let u = RenewUrl::parse("https://[::1]").unwrap();
        assert_eq!((u.port, u.host_header().as_str()), (8443, "[::1]:8443"));
        assert_eq!(u.host.to_string(), "::1");
        let u = RenewUrl::parse("https://127.0.0.1:1/").unwrap();
        assert_eq!(u.to_string(), "https://127.0.0.1:1");
        for bad in [
            "http://a.example:1",
            "https://a.example:0",
            "https://a.example:x",
            "https://a.example/path",
            "https://u@a.example",
            "https://a\"b:1",
            "https://*.example.com:1",
            "https://[::1:1",
            "https://",
        ] {
            assert!(RenewUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_value_is_a_py_str_literal_and_the_script_fits() {
        let url = RenewUrl::parse("https://[2001:db8::1]:65535").unwrap();
        for rom in [false, true] {
            let py = renew_py(&url, Role::Client, rom);
            assert!(!py.contains('@'), "a mark was left: {py}");
            assert!(py.len() <= RENEW_PY_MAX, "{} bytes", py.len());
            assert!(py.contains("HOST = \"2001:db8::1\"\n"));
            assert!(py.contains("HHDR = \"[2001:db8::1]:65535\"\n"));
            assert!(py.contains("PORT = 65535\n"));
            let rom_line = if rom {
                "ROM = \"/rom/\"\n"
            } else {
                "ROM = \"\"\n"
            };
            assert!(py.contains(rom_line));
        }
        let both = renew_py(&url, Role::Both, false);
        assert!(both.contains("C = \"server.der\"\nK = \"server.key.der\"\n"));
    }

    #[test]
    fn the_image_lists_the_files_sorted() {
        let image = romfs_image(&[("renew.py", b"r"), ("ca.der", b"c")]).unwrap();
        let listed: Vec<String> = devtls_romfs::list(&image)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(listed, ["ca.der", "renew.py"]);
    }
}

//! Names devtls puts into certificates and generated files, checked once.
//!
//! Every DNS name, IP address, host and device ID a user gives (`new --dns`,
//! `csr --domain`, `fleet issue` arguments and CSV cells, `--server-host`)
//! passes through here before it reaches a certificate or a script, and
//! every value written into generated MicroPython or a spreadsheet-bound CSV
//! is escaped here. See docs/hardening.md for the rules and why.
//!
//! - [`dns_name`]: a host name (letters, digits, hyphens in dot-separated
//!   labels) or a left-most wildcard; IDNs become A-labels (`xn--...`).
//! - [`host`]: a host name or an IP literal (what a device connects to).
//! - [`device_id`]: a fleet device ID, also a folder name.
//! - [`py_str`]: a value as a Python string literal that cannot break out.
//! - [`csv_cell`]: a CSV cell a spreadsheet shows as text, never evaluates.
//! - [`log_field`]: text from a peer or a file as one inert piece of a log
//!   line: no line break, no terminal escape, nothing that forges a record.

use std::fmt;
use std::net::IpAddr;

/// The longest device ID accepted.
pub const MAX_DEVICE_ID: usize = 64;
/// The longest DNS name (RFC 1035, in its dotted text form).
pub const MAX_DNS_NAME: usize = 253;
/// The longest DNS label.
pub const MAX_LABEL: usize = 63;

/// Why a name was refused. The `Display` text says what was wrong; callers
/// add which option or file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Nothing was given.
    Empty,
    /// Longer than the stated limit.
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A character the kind of name cannot hold.
    BadChar {
        /// The character.
        c: char,
    },
    /// A dot-separated label that is empty, too long or starts/ends with a hyphen.
    BadLabel {
        /// The label.
        label: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `*` anywhere but as the whole left-most label of a name with two more labels.
    BadWildcard,
    /// An internationalised name that has no valid A-label form.
    BadIdn,
    /// Not an IPv4 or IPv6 address.
    NotIp,
    /// A device ID starting with a character a shell or a spreadsheet treats specially.
    BadStart {
        /// The character.
        c: char,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "is empty"),
            NameError::TooLong { max } => write!(f, "is longer than {max} characters"),
            NameError::BadChar { c } => write!(f, "contains '{}'", c.escape_default()),
            NameError::BadLabel { label, why } => write!(f, "label '{label}' {why}"),
            NameError::BadWildcard => write!(
                f,
                "a wildcard must be the whole left-most label of a name with at least two more (*.example.com)"
            ),
            NameError::BadIdn => write!(f, "is an internationalised name with no valid ASCII (xn--) form"),
            NameError::NotIp => write!(f, "is not an IPv4 or IPv6 address"),
            NameError::BadStart { c } => write!(f, "starts with '{}'", c.escape_default()),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks one label of a host name (ASCII already).
fn label(l: &str) -> Result<(), NameError> {
    let bad = |why| {
        Err(NameError::BadLabel {
            label: l.to_string(),
            why,
        })
    };
    if l.is_empty() {
        return bad("is empty (two dots in a row, or a leading or trailing dot)");
    }
    if l.len() > MAX_LABEL {
        return bad("is longer than 63 characters");
    }
    if let Some(c) = l
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(NameError::BadChar { c });
    }
    if l.starts_with('-') || l.ends_with('-') {
        return bad("starts or ends with a hyphen");
    }
    Ok(())
}

/// A DNS name as it goes into a certificate's subjectAltName: lower case,
/// ASCII (an internationalised name becomes its A-labels), each label 1-63
/// letters, digits or hyphens, at most 253 characters, with an optional
/// left-most `*` label. A trailing dot (the root) is dropped.
pub fn dns_name(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '/'))
    {
        return Err(NameError::BadChar { c });
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let (wildcard, rest) = match trimmed.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    if rest.contains('*') {
        return Err(NameError::BadWildcard);
    }
    let ascii = if rest.is_ascii() {
        rest.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(rest).map_err(|_| NameError::BadIdn)?
    };
    let labels: Vec<&str> = ascii.split('.').collect();
    for l in &labels {
        label(l)?;
    }
    if wildcard && labels.len() < 2 {
        return Err(NameError::BadWildcard);
    }
    let out = if wildcard {
        format!("*.{ascii}")
    } else {
        ascii
    };
    if out.len() > MAX_DNS_NAME {
        return Err(NameError::TooLong { max: MAX_DNS_NAME });
    }
    Ok(out)
}

/// An IP address (`[...]` around an IPv6 literal is accepted).
pub fn ip(text: &str) -> Result<IpAddr, NameError> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    inner.parse().map_err(|_| NameError::NotIp)
}

/// What a device connects to: an IP literal or a host name (no wildcard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name, in its ASCII form.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// Checks a host a device connects to (`--server-host`, `--host`).
pub fn host(text: &str) -> Result<Host, NameError> {
    if let Ok(ip) = ip(text) {
        return Ok(Host::Ip(ip));
    }
    if text.contains('*') {
        return Err(NameError::BadChar { c: '*' });
    }
    dns_name(text).map(Host::Name)
}

/// A fleet device ID: it names a folder and goes into certificates, scripts
/// and CSV files, so it is 1-64 of letters, digits, `.`, `_` and `-`,
/// starting with a letter, digit or `_` (not a dot, which hides a folder, nor
/// a `-`, which a shell reads as an option and a spreadsheet as a formula).
pub fn device_id(id: &str) -> Result<(), NameError> {
    let first = id.chars().next().ok_or(NameError::Empty)?;
    if id.len() > MAX_DEVICE_ID {
        return Err(NameError::TooLong { max: MAX_DEVICE_ID });
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadChar { c });
    }
    if matches!(first, '.' | '-') {
        return Err(NameError::BadStart { c: first });
    }
    Ok(())
}

/// `text` as a double-quoted Python string literal that means exactly
/// `text` to CPython and MicroPython alike: printable ASCII except `"` and
/// `\` is copied, everything else is escaped (`\\`, `\"`, `\xNN`, `\uNNNN`,
/// `\UNNNNNNNN`), so no value can end the literal, start a new line or hide
/// a character. The one function every generated script uses.
pub fn py_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Reads a literal made by [`py_str`] back as Python does: `None` when it is
/// not one whole double-quoted, single-line literal (a quote or line break
/// inside ends it early). The inverse the tests and the fuzz target check
/// `py_str` against.
pub fn py_unquote(lit: &str) -> Option<String> {
    let inner = lit.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' | '\r' => return None,
            '\\' => {
                let e = chars.next()?;
                let mut hex = |n: usize| {
                    let h: String = chars.by_ref().take(n).collect();
                    char::from_u32(u32::from_str_radix(&h, 16).ok()?)
                };
                out.push(match e {
                    '"' | '\\' => e,
                    'x' => hex(2)?,
                    'u' => hex(4)?,
                    'U' => hex(8)?,
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// One CSV cell for a file a spreadsheet may open: quoted when it holds a
/// comma, quote or line break, and prefixed with `'` when a spreadsheet would
/// evaluate it (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return),
/// so `=cmd|' /C calc'!A0` is shown, never run.
pub fn csv_cell(text: &str) -> String {
    let mut cell = String::with_capacity(text.len() + 3);
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.push('\'');
    }
    cell.push_str(text);
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

/// `text` (anything a peer sent or a file held: a header, a name in a
/// certificate, a device's error text) made safe to copy into a text log
/// line: every control character (line breaks, ESC and the rest of C0, DEL,
/// C1), the Unicode line and paragraph separators and the bidirectional
/// overrides become a visible `\xNN` / `\u{NNNN}` escape, and `\` becomes
/// `\\` so an escape in the input cannot pass for one of ours. Text that
/// needs none of this is borrowed unchanged. Every text log of a network
/// service goes through this one function (docs/hardening.md).
pub fn log_field(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| {
        c == '\\'
            || c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if needs(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_wildcards() {
        assert_eq!(dns_name("Cam-1.Example.COM").unwrap(), "cam-1.example.com");
        assert_eq!(dns_name("openmv").unwrap(), "openmv");
        assert_eq!(dns_name("*.example.com").unwrap(), "*.example.com");
        assert_eq!(dns_name("example.com.").unwrap(), "example.com");
        assert_eq!(dns_name("bücher.example").unwrap(), "xn--bcher-kva.example");
        for (bad, why) in [
            ("a b", "contains ' '"),
            ("", "is empty"),
            ("=cmd|' /C calc'!A0", "contains"),
            ("a..b", "is empty"),
            ("-a.com", "hyphen"),
            ("a_b.com", "contains '_'"),
            ("*.com", "wildcard"),
            ("a.*.com", "wildcard"),
            ("f*o.com", "wildcard"),
            ("x\"+y", "contains '\\\"'"),
            ("a\nb", "contains '\\n'"),
        ] {
            let err = dns_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(dns_name(&format!("{}.com", "a".repeat(64))).is_err());
        let long = ["abcdefghij"; 25].join(".");
        assert_eq!(
            dns_name(&long).unwrap_err(),
            NameError::TooLong { max: 253 }
        );
    }

    #[test]
    fn hosts_are_names_or_ip_literals() {
        assert_eq!(
            host("10.0.0.1").unwrap(),
            Host::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(host("[::1]").unwrap(), Host::Ip("::1".parse().unwrap()));
        assert_eq!(host("server.local").unwrap().to_string(), "server.local");
        assert!(host("*.example.com").is_err());
        assert!(host("x\"+str(__import__(\"os\").system(\"echo PWNED\"))[:0]+\"").is_err());
        assert!(ip("300.1.1.1").is_err());
    }

    #[test]
    fn device_ids() {
        for good in ["cam-1", "CAM_0001", "a.b", "x", "_x"] {
            device_id(good).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "=cmd",
            "a/b",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(device_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn python_literals_escape_everything_that_could_break_out() {
        assert_eq!(py_str("server.local"), "\"server.local\"");
        assert_eq!(py_str("a\"b"), "\"a\\\"b\"");
        assert_eq!(py_str("a\\"), "\"a\\\\\"");
        assert_eq!(
            py_str("a\nb\u{7f}é€😀"),
            "\"a\\x0ab\\x7f\\xe9\\u20ac\\U0001f600\""
        );
        for s in [
            "\"", "\\", "\n", "\r", "\u{2028}", "'''", "\"\"\"", "a\\\"b",
        ] {
            let lit = py_str(s);
            assert!(lit.is_ascii() && !lit.contains(['\n', '\r']), "{lit}");
            assert_eq!(py_unquote(&lit).as_deref(), Some(s), "{lit}");
        }
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_evaluate_are_defused() {
        assert_eq!(csv_cell("cam-1"), "cam-1");
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        for lead in ["=", "+", "-", "@", "\t", "\r"] {
            assert!(csv_cell(&format!("{lead}1+1"))
                .trim_start_matches('"')
                .starts_with('\''));
        }
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn log_field_leaves_plain_text_and_escapes_what_forges_a_line() {
        assert!(matches!(
            log_field("CN=device-7, O=Fleet"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            log_field("a\nb\r\x1b[31mc\\d\u{7f}\u{85}\u{2028}\u{202e}é"),
            "a\\x0ab\\x0d\\x1b[31mc\\\\d\\x7f\\x85\\u{2028}\\u{202e}é"
        );
        for hostile in [
            "x\n2026-12-06 fake record",
            "\u{1b}]0;title\u{7}",
            "\u{2029}",
        ] {
            let out = log_field(hostile);
            assert!(
                !out.chars()
                    .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
                "{out:?}"
            );
        }
    }
}

//! Lint: files in, findings out, judged against a device profile.
//!
//! Every rule reads the [`Profile`]; none restates a device fact. A rule
//! looks at the sniffed items of the files given together (so a key can be
//! matched with its certificate and a PEM file with its DER twin) and returns
//! findings with a stable id, a plain message and the fix. Pure: no clock
//! (the time is an input), no files.

use serde::Serialize;
use time::OffsetDateTime;

use crate::issue::Role;
use crate::profile::Profile;
use crate::sniff::{Encoding, Item, Kind, Sniffed};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing fails because of it on the device.
    Note,
    /// Works on the device but is likely to bite (other peers, later dates, silent behaviour).
    Warning,
    /// The device will refuse this (or do something other than intended).
    Error,
}

impl Severity {
    /// The lower-case word used in output (`error`, `warning`, `note`).
    pub fn word(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing lint found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// A stable identifier (e.g. `pem-not-der`), for scripts and suppression.
    pub id: &'static str,
    /// The file it is about (as the caller named it).
    pub file: String,
    /// What is wrong, in plain words.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// One file to lint: its name (for the findings) and what sniffing found in it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The file's name as the user gave it.
    pub file: &'a str,
    /// Its contents, sniffed.
    pub sniffed: &'a Sniffed,
}

/// What the files are checked against.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The device profile.
    pub profile: &'a Profile,
    /// The name the peer will check (`server_hostname` on the device), if known.
    pub host: Option<&'a str>,
    /// The time validity is checked at (the device's clock).
    pub at: OffsetDateTime,
    /// The role the certificates are for; `None`: guessed per file.
    pub role: Option<Role>,
}

/// Runs every rule over the files given together.
pub fn lint(inputs: &[Input<'_>], options: &Options<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for input in inputs {
        file_rules(input, inputs, options, &mut findings);
    }
    findings
}

/// Whether any finding is an error (the exit status of `devtls lint`).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

fn finding(
    severity: Severity,
    id: &'static str,
    file: &str,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        severity,
        id,
        file: file.to_string(),
        message,
        fix,
    }
}

/// The file name up to its first dot: `server` for `certs/server.key.der`.
pub fn stem(file: &str) -> &str {
    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    name.split('.').next().unwrap_or(name)
}

/// Rules that need only the file's framing (sniff), not the X.509 contents.
fn file_rules(input: &Input<'_>, all: &[Input<'_>], o: &Options<'_>, out: &mut Vec<Finding>) {
    let p = o.profile;
    let file = input.file;
    let items = &input.sniffed.items;

    if !p.loads_pem && items.iter().any(|i| i.encoding == Encoding::Pem) {
        // A PEM file next to its DER twin is the PC-side copy: nothing to say.
        let twinned = items.iter().all(|i| has_der_twin(i, input, all));
        if !twinned {
            let secret = items.iter().any(|i| i.kind.is_secret());
            out.push(finding(
                Severity::Error,
                "pem-not-der",
                file,
                format!(
                    "PEM text, but the {} profile loads DER only (the device fails with \
                     ValueError('{}'))",
                    p.name,
                    if secret {
                        "invalid key"
                    } else {
                        "invalid cert"
                    }
                ),
                format!(
                    "convert it: devtls convert {file} --to der{}",
                    if items.iter().filter(|i| i.kind == Kind::Certificate).count() > 1 {
                        " (several certificates: devtls split first)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }

    if input.sniffed.concatenated_der && p.single_anchor() {
        out.push(finding(
            Severity::Warning,
            "concatenated-der",
            file,
            format!(
                "{} DER certificates back to back; the device loads only the first and \
                 silently ignores the rest",
                items.len()
            ),
            format!(
                "give the device one certificate per file: devtls split {file}, then load \
                 the one it needs"
            ),
        ));
    }

    for item in items {
        match item.kind {
            Kind::EncryptedPrivateKey | Kind::LegacyEncryptedKey if !p.loads_encrypted_keys => {
                out.push(finding(
                    Severity::Error,
                    "encrypted-key",
                    file,
                    format!(
                        "an {}; the device has no way to take a password and fails with \
                         ValueError('invalid key')",
                        item.kind.describe()
                    ),
                    format!(
                        "decrypt it for the device: devtls convert {file} --to der -o {}.key.der \
                         (keep the file 0600)",
                        stem(file)
                    ),
                ));
            }
            Kind::PrivateKey(_) if item.trailing_bytes > 0 && p.rejects_key_trailing_bytes => {
                out.push(finding(
                    Severity::Error,
                    "key-trailing-bytes",
                    file,
                    format!(
                        "{} byte{} after the key structure; the device's mbedTLS refuses the \
                         key (ValueError('invalid key'))",
                        item.trailing_bytes,
                        if item.trailing_bytes == 1 { "" } else { "s" }
                    ),
                    format!(
                        "rewrite it without the extra bytes: devtls convert {file} --to der -o {}.key.der",
                        stem(file)
                    ),
                ));
            }
            _ => {}
        }
    }
}

/// Whether the same structure is also given in DER form in another file.
fn has_der_twin(item: &Item, this: &Input<'_>, all: &[Input<'_>]) -> bool {
    all.iter()
        .filter(|other| !std::ptr::eq(other.sniffed, this.sniffed))
        .flat_map(|other| other.sniffed.items.iter())
        .any(|other| other.encoding == Encoding::Der && other.der == item.der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyType, PrivateKey};
    use crate::profile;
    use crate::sniff::sniff;

    fn options(profile: &Profile) -> Options<'_> {
        Options {
            profile,
            host: None,
            at: OffsetDateTime::now_utc(),
            role: None,
        }
    }

    fn ids(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.id).collect()
    }

    #[test]
    fn pem_key_alone_is_an_error_for_openmv_but_not_with_its_der_twin_or_for_pem_firmware() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let pem = sniff(key.pkcs8_pem().as_bytes()).unwrap();
        let der = sniff(&key.pkcs8_der()).unwrap();
        let pem_in = Input {
            file: "server.key",
            sniffed: &pem,
        };
        let der_in = Input {
            file: "server.key.der",
            sniffed: &der,
        };
        let alone = lint(&[pem_in], &options(&profile::OPENMV));
        assert_eq!(ids(&alone), ["pem-not-der"]);
        assert!(has_errors(&alone));
        assert!(lint(&[pem_in, der_in], &options(&profile::OPENMV)).is_empty());
        assert!(lint(&[pem_in], &options(&profile::MICROPYTHON_PEM)).is_empty());
    }

    #[test]
    fn key_trailing_bytes_follow_the_profile() {
        let mut der = PrivateKey::generate(KeyType::P256).unwrap().pkcs8_der();
        der.extend([0, 0, 0]);
        let sniffed = sniff(&der).unwrap();
        let input = Input {
            file: "k.der",
            sniffed: &sniffed,
        };
        assert_eq!(
            ids(&lint(&[input], &options(&profile::OPENMV))),
            ["key-trailing-bytes"]
        );
        assert!(lint(&[input], &options(&profile::MODERN)).is_empty());
    }

    #[test]
    fn stems_drop_folders_and_every_extension() {
        assert_eq!(stem("certs/server.key.der"), "server");
        assert_eq!(stem("client.der"), "client");
    }
}

//! Lint: files in, findings out, judged against a device profile.
//!
//! Every decision is one of the device's rules ([`crate::rules`]), applied
//! in the role each certificate plays ([`LintRole`], from `--role` or
//! guessed per file and reported by [`roles`]); this module adds only the
//! wording: a stable id, a plain message and the fix. Pure: no clock (the
//! time is an input), no files.
//!
//! Here: the findings, the inputs and the entry points; beside it the rules
//! by what they look at: `role` (which role a file is checked in),
//! `file` (framing), `cert` (certificates), `key` (keys and key/certificate
//! pairs), `chain` (sizes against the device's buffers).
//!
//! The ids (severity for the `openmv` profile):
//! - framing: `pem-not-der` (error), `concatenated-der` (warning),
//!   `encrypted-key`, `unreadable` (errors), `key-trailing-bytes` (warning:
//!   the device loads such a key; it is not canonical DER);
//! - keys, in certificates, key files and CSRs: `key-ed25519`, `key-rsa-pss`,
//!   `key-rsa-small`, `key-secp256k1`, `key-curve`, `key-algorithm` (errors;
//!   warnings on a key file the device loads but a peer refuses);
//! - signatures: `sig-rsa-pss`, `sig-ed25519`, `sig-hash` (errors; never on
//!   an anchor, whose own signature the device does not check);
//! - extensions: `critical-name-constraints`, `critical-extension`,
//!   `critical-policies` (errors);
//! - validity at [`Options::at`]: `expired`, `not-yet-valid` (errors);
//! - names and roles: `host-mismatch`, `eku-role`, `anchor-not-ca` (errors),
//!   `cn-only` (note, on a server's end-entity certificate only);
//! - sizes: `chain-over-output-buffer` (error), `chain-over-input-buffer`,
//!   `too-many-intermediates` (warnings);
//! - `key-cert-mismatch` (error), `lifetime-over-cabf` (warning),
//!   `csr-signature` (error).

use serde::Serialize;
use time::OffsetDateTime;

use crate::cabf;
use crate::chain::Cert;
use crate::device_error::{self, flags, verify_text};
use crate::inspect::{self, CertInfo, Details, Inspected, KeyAlgorithm, KeyInfo};
use crate::profile::Profile;
use crate::rules::certs::{self, KeyProblem, ParseRefusal};
use crate::rules::keys::{self, Candidate, KeyRefusal, Pairing};
use crate::rules::usage::{self, Presenter};
use crate::rules::{names, sizes, CertRole};
use crate::sniff::{Encoding, Item, Kind, Sniffed};

mod cert;
mod chain;
mod file;
mod key;
mod role;

use cert::*;
use chain::*;
use file::*;
use key::*;
use role::*;

pub use crate::rules::keys::stem;

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
    pub role: Option<LintRole>,
}

/// The role a file's certificates play, as `devtls lint --role` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LintRole {
    /// The device's trust anchor (`load_verify_locations`).
    Anchor,
    /// A server's certificate, verified by the device.
    Server,
    /// The device's own certificate (`load_cert_chain`), presented as a client.
    Client,
    /// A server's chain: its leaf, then intermediates (maybe the root).
    Chain,
}

impl From<crate::issue::Role> for LintRole {
    /// The role a certificate was issued for, as lint checks it.
    fn from(role: crate::issue::Role) -> Self {
        use crate::issue::Role;
        match role {
            Role::Server | Role::Both => LintRole::Server,
            Role::Client => LintRole::Client,
            Role::Ca => LintRole::Anchor,
        }
    }
}

impl LintRole {
    /// How the role is described in output.
    pub fn words(self) -> &'static str {
        match self {
            LintRole::Anchor => "the trust anchor",
            LintRole::Server => "a server's certificate",
            LintRole::Client => "the device's own (client) certificate",
            LintRole::Chain => "a server's chain",
        }
    }
}

/// The role lint checked a file's certificates in, and whether it was guessed.
#[derive(Debug, Clone, Serialize)]
pub struct AssumedRole {
    /// The file.
    pub file: String,
    /// The role.
    pub role: LintRole,
    /// Guessed (no `--role`): `because` says from what.
    pub guessed: bool,
    /// Why this role, in words.
    pub because: &'static str,
}

/// The role each file holding certificates is checked in.
pub fn roles(inputs: &[Input<'_>], options: &Options<'_>) -> Vec<AssumedRole> {
    inspected(inputs, options, |files| roles_of(files, options))
}

/// Runs every rule over the files given together.
pub fn lint(inputs: &[Input<'_>], options: &Options<'_>) -> Vec<Finding> {
    inspected(inputs, options, |files| {
        let mut findings = Vec::new();
        for file in files {
            let (role, _) = role_of(file, files, options);
            file_rules(file.input, inputs, options, &mut findings);
            item_rules(file, files, role, options, &mut findings);
        }
        match_keys(files, &mut findings);
        findings
    })
}

/// Inspects every file (validity seen from [`Options::at`]) and hands them to `f`.
fn inspected<R>(
    inputs: &[Input<'_>],
    options: &Options<'_>,
    f: impl FnOnce(&[Inspection<'_>]) -> R,
) -> R {
    let inspected: Vec<Vec<Inspected>> = inputs
        .iter()
        .map(|i| inspect::inspect(i.sniffed, options.at))
        .collect();
    let files: Vec<Inspection<'_>> = inputs
        .iter()
        .zip(&inspected)
        .map(|(input, items)| Inspection { input, items })
        .collect();
    f(&files)
}

/// A file with its items inspected (validity seen from [`Options::at`]).
struct Inspection<'a> {
    input: &'a Input<'a>,
    items: &'a [Inspected],
}

impl Inspection<'_> {
    fn certificates(&self) -> impl Iterator<Item = &CertInfo> {
        self.items.iter().filter_map(|i| match &i.details {
            Details::Certificate(c) => Some(c.as_ref()),
            _ => None,
        })
    }
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
        // The device loads it (measured on mbedTLS 3.6.5): a warning, not an error.
        let found = lint(&[input], &options(&profile::OPENMV));
        assert_eq!(ids(&found), ["key-trailing-bytes"]);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(!has_errors(&found));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Damaged certificates and keys either fail sniffing or lint without panicking.
        #[test]
        fn mutated_material_never_panics(
            flips in proptest::collection::vec((0usize..2048, 1u8..=255), 1..8),
            cut in 0usize..2048,
            pick in 0usize..2,
        ) {
            let key = PrivateKey::generate(KeyType::P256).unwrap();
            let mut spec = crate::issue::CertSpec::new("openmv", crate::issue::Role::Server, 30);
            spec.dns.push("openmv".into());
            let cert = crate::issue::self_signed(&spec, &key).unwrap();
            let mut bytes = if pick == 0 { cert.der } else { key.pkcs8_der() };
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            bytes.truncate(cut.max(1));
            if let Ok(sniffed) = sniff(&bytes) {
                let input = Input { file: "x.der", sniffed: &sniffed };
                let options = Options { host: Some("openmv"), ..options(&profile::OPENMV) };
                let _ = lint(&[input, input], &options);
            }
        }
    }

    #[test]
    fn stems_drop_folders_and_every_extension() {
        assert_eq!(stem("certs/server.key.der"), "server");
        assert_eq!(stem("client.der"), "client");
    }
}

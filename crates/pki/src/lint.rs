//! Lint: files in, findings out, judged against a device profile.
//!
//! Every decision is one of the device's rules ([`crate::rules`]), applied
//! in the role each certificate plays ([`LintRole`], from `--role` or
//! guessed per file and reported by [`roles`]); this module adds only the
//! wording: a stable id, a plain message and the fix. Pure: no clock (the
//! time is an input), no files.
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

fn roles_of(files: &[Inspection<'_>], options: &Options<'_>) -> Vec<AssumedRole> {
    files
        .iter()
        .filter(|f| f.certificates().next().is_some())
        .map(|f| {
            let (role, because) = role_of(f, files, options);
            AssumedRole {
                file: f.input.file.to_string(),
                role,
                guessed: options.role.is_none(),
                because,
            }
        })
        .collect()
}

/// `--role`, else a guess: a file named `ca`, or a self-signed CA
/// certificate, is an anchor; `server`/`client` in the name, or an EKU
/// allowing one role, say which end entity; several certificates are a chain.
fn role_of(
    file: &Inspection<'_>,
    all: &[Inspection<'_>],
    o: &Options<'_>,
) -> (LintRole, &'static str) {
    if let Some(role) = o.role {
        return (role, "given with --role");
    }
    let certs: Vec<&CertInfo> = file.certificates().collect();
    let stem = stem(file.input.file).to_ascii_lowercase();
    if stem == "ca" || stem.ends_with("-ca") || stem.ends_with("_ca") {
        return (LintRole::Anchor, "the file is named as the device's CA");
    }
    let named = match (stem.contains("server"), stem.contains("client")) {
        (true, false) => Some(LintRole::Server),
        (false, true) => Some(LintRole::Client),
        _ => None,
    };
    if certs.len() > 1 {
        return (LintRole::Chain, "the file holds several certificates");
    }
    let Some(c) = certs.first() else {
        return (LintRole::Server, "no certificate");
    };
    if o.host.is_some() && named.is_none() && !signs_another(c, all) {
        return (
            LintRole::Server,
            "--host names the server it is checked for",
        );
    }
    if c.self_issued && c.is_ca() && (named.is_none() || signs_another(c, all)) {
        return (LintRole::Anchor, "a self-signed CA certificate");
    }
    if let Some(role) = named {
        return (role, "from the file name");
    }
    if c.is_ca() {
        return if signs_another(c, all) || !c.self_issued {
            (LintRole::Chain, "a CA certificate below a root")
        } else {
            (LintRole::Anchor, "a self-signed CA certificate")
        };
    }
    match role_from_eku(c) {
        Some(LintRole::Client) => (LintRole::Client, "its extendedKeyUsage is clientAuth only"),
        _ => (LintRole::Server, "an end-entity certificate"),
    }
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

/// Rules that need only the file's framing (sniff), not the X.509 contents.
fn file_rules(input: &Input<'_>, all: &[Input<'_>], o: &Options<'_>, out: &mut Vec<Finding>) {
    let p = o.profile;
    let file = input.file;
    let items = &input.sniffed.items;

    // Only certificates and keys go to the device; CSRs and CRLs stay on the PC.
    let device_loads = |i: &&Item| i.kind == Kind::Certificate || i.kind.is_secret();
    if items
        .iter()
        .filter(device_loads)
        .any(|i| !crate::rules::loads_encoding(p, i.encoding))
    {
        // A PEM file next to its DER twin is the PC-side copy: nothing to say.
        let twinned = items
            .iter()
            .filter(device_loads)
            .all(|i| has_der_twin(i, input, all));
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
                        verify_text::INVALID_KEY
                    } else {
                        verify_text::INVALID_CERT
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
            Kind::EncryptedPrivateKey | Kind::LegacyEncryptedKey
                if matches!(keys::load_key_item(p, item), Err(KeyRefusal::Encrypted)) =>
            {
                out.push(finding(
                    Severity::Error,
                    "encrypted-key",
                    file,
                    format!(
                        "an {}; the device has no way to take a password and fails with \
                         ValueError('{}')",
                        item.kind.describe(),
                        verify_text::INVALID_KEY
                    ),
                    format!(
                        "decrypt it for the device: devtls convert {file} --to der -o {}.key.der \
                         (keep the file 0600)",
                        stem(file)
                    ),
                ));
            }
            Kind::PrivateKey(_) if item.trailing_bytes > 0 => {
                let refused = matches!(
                    keys::load_key_item(p, item),
                    Err(KeyRefusal::TrailingBytes { .. })
                );
                out.push(finding(
                    if refused { Severity::Error } else { Severity::Warning },
                    "key-trailing-bytes",
                    file,
                    format!(
                        "{} byte{} after the key structure; {}",
                        item.trailing_bytes,
                        if item.trailing_bytes == 1 { "" } else { "s" },
                        if refused {
                            format!("the {} profile's stack refuses the key (ValueError('{}'))", p.name, verify_text::INVALID_KEY)
                        } else {
                            format!("the {} device loads it, but it is not canonical DER and stricter tools refuse it", p.name)
                        }
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

/// Rules on what the items hold: keys, signatures, names, dates, extensions, sizes.
fn item_rules(
    file: &Inspection<'_>,
    all: &[Inspection<'_>],
    role: LintRole,
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    let name = file.input.file;
    let mut position = 0;
    for item in file.items {
        match &item.details {
            Details::Certificate(cert) => {
                let der = &file.input.sniffed.items[item.index - 1].der;
                if let Ok(parsed) = Cert::parse(der) {
                    let cert_role = cert_role(role, position, cert, all);
                    cert_rules(cert, &parsed, cert_role, role, name, o, out);
                }
                position += 1;
            }
            Details::PrivateKey(key) => {
                if let Some(info) = &key.key {
                    key_file_rule(info, name, o.profile, out);
                }
            }
            Details::Csr(csr) => {
                key_rule(&csr.public_key, "CSR's key", name, o.profile, out);
                if !csr.signature_valid {
                    out.push(finding(
                        Severity::Error,
                        "csr-signature",
                        name,
                        "the CSR's self-signature does not verify; a CA will refuse it".into(),
                        "make a fresh CSR: devtls csr --domain NAME".into(),
                    ));
                }
            }
            Details::PublicKey(info) => key_rule(info, "public key", name, o.profile, out),
            Details::Crl(_) => {}
            Details::Unreadable { reason } => out.push(finding(
                Severity::Error,
                "unreadable",
                name,
                format!(
                    "item {} ({}): {reason}; the device says ValueError('{}')",
                    item.index,
                    item.kind_name,
                    if item.kind.is_secret() {
                        verify_text::INVALID_KEY
                    } else {
                        verify_text::INVALID_CERT
                    }
                ),
                "replace the file with an intact copy".into(),
            )),
        }
    }
    if role != LintRole::Anchor {
        chain_size_rules(file, all, role, o.profile, out);
    }
}

/// The role of the certificate at `position` of a file checked in `role`.
fn cert_role(role: LintRole, position: usize, c: &CertInfo, all: &[Inspection<'_>]) -> CertRole {
    match role {
        LintRole::Anchor => CertRole::Anchor,
        LintRole::Client if position == 0 => CertRole::Own,
        LintRole::Server | LintRole::Chain if position == 0 && is_end_entity(c, all) => {
            CertRole::Leaf
        }
        // A root the server sends along: the device's anchor takes over
        // before it, so it is never verified as sent.
        _ if c.self_issued && c.is_ca() => CertRole::Anchor,
        _ => CertRole::Intermediate,
    }
}

fn cert_rules(
    c: &CertInfo,
    parsed: &Cert,
    role: CertRole,
    file_role: LintRole,
    file: &str,
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    let p = o.profile;
    let who = cert_label(c);
    if let Some(refusal) = certs::parse_refusal(p, parsed) {
        parse_refusal_finding(&refusal, &who, role, file, p, out);
    } else if let Some(problem) = certs::key_problem(p, &c.public_key) {
        key_problem_finding(
            &problem,
            &c.public_key,
            &format!("key of {who}"),
            file,
            p,
            Severity::Error,
            out,
        );
    }
    if role.signature_checked() {
        hash_rule(c, &who, file, p, out);
    }
    validity_rule(c, &who, file, p, out);
    if role == CertRole::Anchor {
        if !certs::can_issue(parsed, true) && !parsed.self_issued() {
            out.push(finding(
                Severity::Error,
                "anchor-not-ca",
                file,
                format!(
                    "{who} is checked as the trust anchor but is a CA-issued end-entity certificate: \
                     the device trusts a pinned leaf only when it is self-signed (the device says '{}')",
                    flags::text(flags::NOT_TRUSTED)
                ),
                "anchor the CA that issued it instead: devtls anchor HOST".into(),
            ));
        }
        return;
    }
    if !matches!(role, CertRole::Leaf | CertRole::Own) {
        return;
    }
    if !c.self_issued {
        if let Some(limit) = cabf::exceeded(c.validity.not_before, c.validity.not_after) {
            out.push(finding(
                Severity::Warning,
                "lifetime-over-cabf",
                file,
                format!(
                    "{who} is valid for {} days; for certificates starting {} the CA/Browser \
                     Forum maximum is {} days (ballot {}): browsers refuse it if the CA is public",
                    c.validity.lifetime_days,
                    c.validity.not_before.date(),
                    limit.max_days,
                    limit.ballot
                ),
                format!(
                    "issue it for at most {} days and rotate before expiry",
                    limit.max_days
                ),
            ));
        }
    }
    if role == CertRole::Leaf {
        host_rule(parsed, &who, file, o, out);
    }
    let presenter = if file_role == LintRole::Client {
        Presenter::Client
    } else {
        Presenter::Server
    };
    eku_rule(c, &who, file, presenter, o, out);
}

/// The role an EKU allows, when it allows exactly one TLS role.
fn role_from_eku(c: &CertInfo) -> Option<LintRole> {
    let eku = c.extended_key_usage.as_ref()?;
    match (eku.server_auth, eku.client_auth) {
        (true, false) => Some(LintRole::Server),
        (false, true) => Some(LintRole::Client),
        _ => None,
    }
}

/// `certificate CN=openmv` (or the subject when it has no CN).
fn cert_label(c: &CertInfo) -> String {
    match c.common_name() {
        Some(cn) => format!("certificate CN={cn}"),
        None => format!("certificate {}", c.subject),
    }
}

const NEW_KEY_FIX: &str =
    "make a new P-256 key (devtls new server|client, or devtls csr for a public CA)";

fn parse_refusal_finding(
    r: &ParseRefusal,
    who: &str,
    role: CertRole,
    file: &str,
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    let id = match r {
        ParseRefusal::RsaPssSignature => "sig-rsa-pss",
        ParseRefusal::Ed25519Signature => "sig-ed25519",
        ParseRefusal::KeyAlgorithm { key } if key.contains("Ed25519") => "key-ed25519",
        ParseRefusal::KeyAlgorithm { key } if key.contains("RSA-PSS") => "key-rsa-pss",
        ParseRefusal::KeyAlgorithm { .. } => "key-algorithm",
        ParseRefusal::Curve { .. } => "key-curve",
        ParseRefusal::CriticalExtension { name, .. } if *name == "nameConstraints" => {
            "critical-name-constraints"
        }
        ParseRefusal::CriticalExtension { .. } => "critical-extension",
        ParseRefusal::CriticalPolicies { .. } => "critical-policies",
    };
    let err = r.error();
    let outcome = if role == CertRole::Anchor {
        format!(
            "load_verify_locations fails with {} (ValueError('{}'))",
            err.hex(),
            verify_text::INVALID_CERT
        )
    } else {
        format!(
            "the {} profile's mbedTLS cannot parse it ({})",
            p.name,
            err.hex()
        )
    };
    out.push(finding(
        Severity::Error,
        id,
        file,
        format!("{who}: {}; {outcome}", r.why()),
        r.fix(),
    ));
}

fn key_problem_finding(
    problem: &KeyProblem,
    k: &KeyInfo,
    what: &str,
    file: &str,
    p: &Profile,
    severity: Severity,
    out: &mut Vec<Finding>,
) {
    let (id, message) = match problem {
        KeyProblem::RsaTooSmall { min, .. } => (
            "key-rsa-small",
            format!(
                "the {what} is {}; the {} profile needs RSA of at least {min} bits \
                 (the device says '{}')",
                k.description,
                p.name,
                flags::text(flags::BAD_KEY)
            ),
        ),
        KeyProblem::Curve { curve, secp256k1 } => (
            if *secp256k1 {
                "key-secp256k1"
            } else {
                "key-curve"
            },
            format!(
                "the {what} is on {curve}; the {} profile accepts {} only (the device says '{}')",
                p.name,
                p.key_curves
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                flags::text(flags::BAD_KEY)
            ),
        ),
        KeyProblem::Algorithm { .. } => (
            match k.algorithm {
                KeyAlgorithm::Ed25519 => "key-ed25519",
                KeyAlgorithm::RsaPss => "key-rsa-pss",
                _ => "key-algorithm",
            },
            format!(
                "the {what} is {}: not accepted by the {} profile (the device says '{}' or \
                 fails the chain with {})",
                k.description,
                p.name,
                verify_text::INVALID_KEY,
                device_error::UNKNOWN_PK_ALG.hex()
            ),
        ),
    };
    out.push(finding(severity, id, file, message, NEW_KEY_FIX.into()));
}

/// A key the device's parser refuses, as a finding.
fn key_parse_finding(
    r: &ParseRefusal,
    k: &KeyInfo,
    what: &str,
    file: &str,
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    let id = match r {
        ParseRefusal::Curve { .. } => "key-curve",
        _ => match k.algorithm {
            KeyAlgorithm::Ed25519 => "key-ed25519",
            KeyAlgorithm::RsaPss => "key-rsa-pss",
            _ => "key-algorithm",
        },
    };
    out.push(finding(
        Severity::Error,
        id,
        file,
        format!(
            "the {what} is {}: {} (the device says '{}' or fails the chain with {})",
            k.description,
            r.why(),
            verify_text::INVALID_KEY,
            r.error().hex()
        ),
        format!("{} (the {} profile)", NEW_KEY_FIX, p.name),
    ));
}

/// A key in a CSR or a bare public key: what the device will meet in the
/// certificate made from it.
fn key_rule(k: &KeyInfo, what: &str, file: &str, p: &Profile, out: &mut Vec<Finding>) {
    if let Some(r) = certs::key_parse_refusal(p, k) {
        key_parse_finding(&r, k, what, file, p, out);
    } else if let Some(problem) = certs::key_problem(p, k) {
        key_problem_finding(&problem, k, what, file, p, Severity::Error, out);
    }
}

/// A private key file: an error when the device cannot load it; a warning
/// when it loads but a peer with the device's profile refuses its certificate.
fn key_file_rule(k: &KeyInfo, file: &str, p: &Profile, out: &mut Vec<Finding>) {
    if let Some(r) = certs::key_parse_refusal(p, k) {
        key_parse_finding(&r, k, "private key", file, p, out);
    } else if let Some(problem) = certs::key_problem(p, k) {
        key_problem_finding(&problem, k, "private key", file, p, Severity::Warning, out);
    }
}

fn hash_rule(c: &CertInfo, who: &str, file: &str, p: &Profile, out: &mut Vec<Finding>) {
    if !certs::hash_refused(p, &c.signature) {
        return;
    }
    let reissue = if c.self_issued {
        "make it again with devtls new (ECDSA with SHA-256)"
    } else {
        "have the CA reissue it with ECDSA or RSA PKCS#1 v1.5 and SHA-256"
    };
    let hashes = p
        .signature_hashes
        .iter()
        .map(|h| format!("{h:?}").to_uppercase().replace("SHA", "SHA-"))
        .collect::<Vec<_>>()
        .join(", ");
    out.push(finding(
        Severity::Error,
        "sig-hash",
        file,
        format!(
            "{who} is signed with {}; the {} profile accepts {hashes} only \
             (the device says '{}')",
            c.signature.name,
            p.name,
            flags::text(flags::BAD_MD)
        ),
        reissue.into(),
    ));
}

/// Whether a peer may present `c` as its own certificate: not a CA, or a
/// self-signed one that signs nothing else given (`openssl req -x509` marks
/// its self-signed server certificates CA:TRUE).
fn is_end_entity(c: &CertInfo, all: &[Inspection<'_>]) -> bool {
    !c.is_ca() || c.self_issued && !signs_another(c, all)
}

/// Whether another certificate given names `c` as its issuer.
fn signs_another(c: &CertInfo, all: &[Inspection<'_>]) -> bool {
    all.iter()
        .flat_map(|f| f.certificates())
        .any(|other| !other.self_issued && other.issuer == c.subject)
}

fn validity_rule(c: &CertInfo, who: &str, file: &str, p: &Profile, out: &mut Vec<Finding>) {
    use crate::inspect::ValidityStatus;
    let v = &c.validity;
    let clock = if p.clock_starts_unset {
        "; the device's clock starts unset after power-up, so until the script sets it \
         (ntptime.settime()) every certificate looks like this"
    } else {
        ""
    };
    match v.status {
        ValidityStatus::Valid => {}
        ValidityStatus::Expired => out.push(finding(
            Severity::Error,
            "expired",
            file,
            format!(
                "{who} expired {} ({} days before {}): the device says '{}'",
                v.not_after.date(),
                v.days_since_expiry.unwrap_or(0),
                v.at.date(),
                flags::text(flags::EXPIRED)
            ),
            "renew it and copy the new DER file to the device".into(),
        )),
        ValidityStatus::NotYetValid => out.push(finding(
            Severity::Error,
            "not-yet-valid",
            file,
            format!(
                "{who} is valid only from {} ({} days after {}): the device says '{}'{clock}",
                v.not_before.date(),
                v.days_until_valid.unwrap_or(0),
                v.at.date(),
                flags::text(flags::FUTURE)
            ),
            if p.clock_starts_unset {
                "set the device's clock before connecting (ntptime.settime()), or check --at".into()
            } else {
                "wait until it is valid, or reissue it with an earlier notBefore".into()
            },
        )),
    }
}

/// The server's end-entity certificate against `--host`, by the device's name rule.
fn host_rule(c: &Cert, who: &str, file: &str, o: &Options<'_>, out: &mut Vec<Finding>) {
    let p = o.profile;
    let (names, from_san) = names::names_checked(c);
    if !from_san {
        if let Some(host) = o.host.filter(|h| !names::name_matches(p, c, h)) {
            out.push(finding(
                Severity::Error,
                "host-mismatch",
                file,
                format!(
                    "{who} has no subjectAltName and {}; a client checking '{host}' refuses it \
                     (the device says '{}')",
                    if p.cn_fallback {
                        "its CN does not match"
                    } else {
                        "the profile ignores the CN"
                    },
                    flags::text(flags::CN_MISMATCH)
                ),
                format!("make it with the name in the SAN: devtls new server --dns {host}"),
            ));
        } else {
            out.push(finding(
                Severity::Note,
                "cn-only",
                file,
                format!(
                    "{who} names its host only in the CN (no subjectAltName): {}modern \
                     clients (browsers, Python, Go, rustls) refuse it",
                    if p.cn_fallback {
                        format!("the {} profile falls back to the CN, but ", p.name)
                    } else {
                        String::new()
                    }
                ),
                "reissue it with the host in the SAN: devtls new server --dns NAME --ip ADDR"
                    .into(),
            ));
        }
        return;
    }
    let Some(host) = o.host else { return };
    if !names::name_matches(p, c, host) {
        out.push(finding(
            Severity::Error,
            "host-mismatch",
            file,
            format!(
                "'{host}' is not in the subjectAltName of {who} ({}); the device says '{}'",
                if names.is_empty() {
                    "no DNS or IP names".to_string()
                } else {
                    names.join(", ")
                },
                flags::text(flags::CN_MISMATCH)
            ),
            format!(
                "connect with one of those names as server_hostname, or reissue with --{} {host}",
                if host.parse::<std::net::IpAddr>().is_ok() {
                    "ip"
                } else {
                    "dns"
                }
            ),
        ));
    }
}

fn eku_rule(
    c: &CertInfo,
    who: &str,
    file: &str,
    presenter: Presenter,
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    if !o.profile.enforces_eku {
        return;
    }
    if usage::usage_flags(c, presenter) & device_error::flags::EXT_KEY_USAGE == 0 {
        return;
    }
    let Some(eku) = &c.extended_key_usage else {
        return;
    };
    let has: Vec<&str> = [
        ("serverAuth", eku.server_auth),
        ("clientAuth", eku.client_auth),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .chain(eku.other.iter().map(String::as_str))
    .collect();
    let role_word = match presenter {
        Presenter::Client => "client",
        Presenter::Server => "server",
    };
    out.push(finding(
        Severity::Error,
        "eku-role",
        file,
        format!(
            "{who} is used as a {role_word} certificate{} but its extendedKeyUsage is {}, \
             without {}; the device's peer refuses it ('{}')",
            if o.role.is_none() {
                " (role guessed; --role to change)"
            } else {
                ""
            },
            if has.is_empty() {
                "empty".to_string()
            } else {
                has.join(", ")
            },
            presenter.purpose(),
            flags::text(flags::EXT_KEY_USAGE)
        ),
        format!("make a {role_word} certificate: devtls new {role_word}"),
    ));
}

/// Sizes of the Certificate handshake message: what the device sends of its
/// own chain must fit its output buffer, what it receives its input buffer.
fn chain_size_rules(
    file: &Inspection<'_>,
    all: &[Inspection<'_>],
    role: LintRole,
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    let certs: Vec<&CertInfo> = file.certificates().collect();
    let Some(leaf) = certs.first() else { return };
    if !is_end_entity(leaf, all) {
        return;
    }
    let name = file.input.file;
    let presented = sizes::presented_by_device(p, certs.len());
    let own = sizes::certificate_message_len(certs[..presented].iter().map(|c| c.der_size));
    if !sizes::fits_output(p, own) {
        out.push(finding(
            Severity::Error,
            "chain-over-output-buffer",
            name,
            format!(
                "presented by the device, this chain ({presented} certificate{}) makes a \
                 {own}-byte Certificate message, over the {}-byte output buffer of the {} \
                 profile ({} {})",
                if presented == 1 { "" } else { "s" },
                p.output_buffer,
                p.name,
                device_error::BUFFER_TOO_SMALL.hex(),
                device_error::BUFFER_TOO_SMALL.name
            ),
            "use fewer names or a smaller key (P-256), or a shorter chain".into(),
        ));
    }
    if role == LintRole::Client {
        return;
    }
    let received = sizes::certificate_message_len(certs.iter().map(|c| c.der_size));
    if !sizes::fits_input(p, received) {
        out.push(finding(
            Severity::Warning,
            "chain-over-input-buffer",
            name,
            format!(
                "sent to the device, this chain makes a {received}-byte Certificate message, \
                 over the {}-byte input buffer of the {} profile",
                p.input_buffer, p.name
            ),
            "serve a shorter chain (leaf and intermediates only, no root)".into(),
        ));
    }
    let intermediates = certs.iter().skip(1).filter(|c| !c.self_issued).count();
    if sizes::too_many_intermediates(p, intermediates) {
        out.push(finding(
            Severity::Warning,
            "too-many-intermediates",
            name,
            format!(
                "{intermediates} intermediates; the {} profile follows at most {}",
                p.name, p.max_intermediates
            ),
            "serve a shorter chain".into(),
        ));
    }
}

/// Each private key must belong to the certificate given with it: the one
/// of the same stem (`server.key.der` with `server.der`, `ca.key` with
/// `ca.der`), else an end-entity certificate holding its public key.
fn match_keys(files: &[Inspection<'_>], out: &mut Vec<Finding>) {
    let certs: Vec<(&str, &CertInfo)> = files
        .iter()
        .filter_map(|f| f.certificates().next().map(|c| (f.input.file, c)))
        .collect();
    if certs.is_empty() {
        return;
    }
    let candidates: Vec<Candidate<'_>> = certs
        .iter()
        .map(|(f, c)| Candidate {
            stem: stem(f),
            public_key_sha256: &c.public_key_sha256,
            is_ca: c.is_ca(),
        })
        .collect();
    for file in files {
        for item in file.items {
            let Details::PrivateKey(key) = &item.details else {
                continue;
            };
            let Some(spki) = &key.public_key_sha256 else {
                continue;
            };
            let mismatched: Vec<&str> =
                match keys::pair(stem(file.input.file), Some(spki), &candidates) {
                    Pairing::Matches(_) => continue,
                    Pairing::Mismatch(i) => vec![certs[i].0],
                    // A CA given beside a device key is there as the anchor,
                    // not as its certificate: only leaves are compared.
                    Pairing::Unpaired => candidates
                        .iter()
                        .zip(&certs)
                        .filter(|(c, _)| !c.is_ca)
                        .map(|(_, (f, _))| *f)
                        .collect(),
                };
            if mismatched.is_empty() {
                continue;
            }
            // The rule and its words are written once (rules::files).
            let rule = crate::rules::files::key_mismatch(file.input.file, &mismatched.join(", "));
            out.push(finding(
                Severity::Error,
                "key-cert-mismatch",
                file.input.file,
                format!(
                    "{} (a handshake fails with {})",
                    rule.why,
                    device_error::KEY_MISMATCH.printed()
                ),
                rule.fix,
            ));
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

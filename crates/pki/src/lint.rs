//! Lint: files in, findings out, judged against a device profile.
//!
//! Every rule reads the [`Profile`]; none restates a device fact. A rule
//! looks at the sniffed items of the files given together (so a key can be
//! matched with its certificate and a PEM file with its DER twin) and returns
//! findings with a stable id, a plain message and the fix. Pure: no clock
//! (the time is an input), no files.
//!
//! The ids (severity for the `openmv` profile):
//! - framing: `pem-not-der` (error), `concatenated-der` (warning),
//!   `key-trailing-bytes`, `encrypted-key`, `unreadable` (errors);
//! - keys, in certificates, key files and CSRs: `key-ed25519`, `key-rsa-pss`,
//!   `key-rsa-small`, `key-secp256k1`, `key-curve`, `key-algorithm` (errors);
//! - signatures: `sig-rsa-pss`, `sig-ed25519`, `sig-hash` (errors; `sig-hash`
//!   is a note on a self-signed root that only anchors another certificate
//!   given, whose own signature mbedTLS does not check);
//! - extensions: `critical-name-constraints`, `critical-policies` (errors);
//! - validity at [`Options::at`]: `expired`, `not-yet-valid` (errors);
//! - names and roles: `host-mismatch`, `eku-role` (errors), `cn-only` (note);
//! - sizes: `chain-over-output-buffer` (error), `chain-over-input-buffer`,
//!   `too-many-intermediates` (warnings);
//! - `key-cert-mismatch` (error), `lifetime-over-cabf` (warning),
//!   `csr-signature` (error).

use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::cabf;
use crate::device_error::{self, verify_text};
use crate::inspect::{self, CertInfo, Details, Inspected, KeyAlgorithm, KeyInfo, SignatureFamily};
use crate::issue::Role;
use crate::profile::{Curve, Profile};
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
    let inspected: Vec<Vec<Inspected>> = inputs
        .iter()
        .map(|i| inspect::inspect(i.sniffed, options.at))
        .collect();
    let files: Vec<Inspection<'_>> = inputs
        .iter()
        .zip(&inspected)
        .map(|(input, items)| Inspection { input, items })
        .collect();
    let mut findings = Vec::new();
    for file in &files {
        file_rules(file.input, inputs, options, &mut findings);
        item_rules(file, &files, options, &mut findings);
    }
    match_keys(&files, &mut findings);
    findings
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

    // Only certificates and keys go to the device; CSRs and CRLs stay on the PC.
    let device_loads = |i: &&Item| i.kind == Kind::Certificate || i.kind.is_secret();
    if !p.loads_pem
        && items
            .iter()
            .filter(device_loads)
            .any(|i| i.encoding == Encoding::Pem)
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
            Kind::EncryptedPrivateKey | Kind::LegacyEncryptedKey if !p.loads_encrypted_keys => {
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
            Kind::PrivateKey(_) if item.trailing_bytes > 0 && p.rejects_key_trailing_bytes => {
                out.push(finding(
                    Severity::Error,
                    "key-trailing-bytes",
                    file,
                    format!(
                        "{} byte{} after the key structure; the device's mbedTLS refuses the \
                         key (ValueError('{}'))",
                        item.trailing_bytes,
                        if item.trailing_bytes == 1 { "" } else { "s" },
                        verify_text::INVALID_KEY
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
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    let name = file.input.file;
    for item in file.items {
        match &item.details {
            Details::Certificate(cert) => {
                cert_rules(cert, name, all, o, out);
            }
            Details::PrivateKey(key) => {
                if let Some(info) = &key.key {
                    key_rule(info, "private key", name, o.profile, out);
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
                format!("item {} ({}): {reason}", item.index, item.kind_name),
                "replace the file with an intact copy".into(),
            )),
        }
    }
    chain_size_rules(file, all, o.profile, out);
}

fn cert_rules(
    c: &CertInfo,
    file: &str,
    all: &[Inspection<'_>],
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    let p = o.profile;
    let who = cert_label(c);
    key_rule(&c.public_key, &format!("key of {who}"), file, p, out);
    signature_rule(c, &who, file, all, p, out);
    validity_rule(c, &who, file, p, out);

    if let Some(nc) = c.name_constraints {
        if nc.critical && !p.critical_name_constraints {
            out.push(finding(
                Severity::Error,
                "critical-name-constraints",
                file,
                format!(
                    "{who} has a critical nameConstraints extension; the {} profile's mbedTLS \
                     rejects the chain ({})",
                    p.name,
                    device_error::NAME_CONSTRAINTS.hex()
                ),
                "issue the CA without nameConstraints, or mark it non-critical".into(),
            ));
        }
    }
    if let Some(pol) = &c.policies {
        if pol.critical && !pol.only_any_policy && !p.critical_policies {
            out.push(finding(
                Severity::Error,
                "critical-policies",
                file,
                format!(
                    "{who} has a critical certificatePolicies extension ({}); the {} profile's \
                     mbedTLS accepts only anyPolicy there and rejects the chain ({})",
                    pol.oids.join(", "),
                    p.name,
                    device_error::CRITICAL_POLICIES.hex()
                ),
                "issue it with certificatePolicies non-critical (or anyPolicy only)".into(),
            ));
        }
    }
    if !is_end_entity(c, all) {
        return;
    }
    // Certificates a peer may present as its own from here.
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
    let role = o.role.or_else(|| role_from_stem(file));
    // The device checks a name only on the server's certificate.
    if role.or_else(|| role_from_eku(c)) != Some(Role::Client) {
        host_rule(c, &who, file, o, out);
    }
    eku_rule(c, &who, file, role, o, out);
}

/// The role an EKU allows, when it allows exactly one TLS role.
fn role_from_eku(c: &CertInfo) -> Option<Role> {
    let eku = c.extended_key_usage.as_ref()?;
    match (eku.server_auth, eku.client_auth) {
        (true, false) => Some(Role::Server),
        (false, true) => Some(Role::Client),
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

fn key_rule(k: &KeyInfo, what: &str, file: &str, p: &Profile, out: &mut Vec<Finding>) {
    let fix = "make a new P-256 key (devtls new server|client, or devtls csr for a public CA)";
    let (id, why) = match k.algorithm {
        KeyAlgorithm::Ed25519 if !p.ed25519 => ("key-ed25519", "Ed25519 keys are not accepted"),
        KeyAlgorithm::RsaPss if !p.rsa_pss => (
            "key-rsa-pss",
            "RSA-PSS keys (id-RSASSA-PSS) are not accepted",
        ),
        KeyAlgorithm::Rsa if k.bits.is_some_and(|b| b < p.min_rsa_bits) => {
            out.push(finding(
                Severity::Error,
                "key-rsa-small",
                file,
                format!(
                    "the {what} is {}; the {} profile needs RSA of at least {} bits \
                     (the device says '{}')",
                    k.description,
                    p.name,
                    p.min_rsa_bits,
                    verify_text::BAD_KEY
                ),
                fix.into(),
            ));
            return;
        }
        KeyAlgorithm::Ec if !k.curve.is_some_and(|c| p.accepts_curve(c)) => {
            let curve = k
                .curve
                .map(|c| format!("{c:?}"))
                .or_else(|| k.curve_oid.clone())
                .unwrap_or_else(|| "an unnamed curve".into());
            let id = if k.curve == Some(Curve::Secp256k1) {
                "key-secp256k1"
            } else {
                "key-curve"
            };
            out.push(finding(
                Severity::Error,
                id,
                file,
                format!(
                    "the {what} is on {curve}; the {} profile accepts {} only",
                    p.name,
                    p.key_curves
                        .iter()
                        .map(|c| format!("{c:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                fix.into(),
            ));
            return;
        }
        KeyAlgorithm::Ec | KeyAlgorithm::Rsa | KeyAlgorithm::RsaPss | KeyAlgorithm::Ed25519 => {
            return
        }
        KeyAlgorithm::Ed448
        | KeyAlgorithm::X25519
        | KeyAlgorithm::X448
        | KeyAlgorithm::Dsa
        | KeyAlgorithm::Other => ("key-algorithm", "this key algorithm is not accepted"),
    };
    out.push(finding(
        Severity::Error,
        id,
        file,
        format!(
            "the {what} is {}: {why} by the {} profile (the device says '{}' or \
             fails the chain with {})",
            k.description,
            p.name,
            verify_text::INVALID_KEY,
            device_error::UNKNOWN_PK_ALG.hex()
        ),
        fix.into(),
    ));
}

fn signature_rule(
    c: &CertInfo,
    who: &str,
    file: &str,
    all: &[Inspection<'_>],
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    let sig = &c.signature;
    let reissue = if c.self_issued {
        "make it again with devtls new (ECDSA with SHA-256)"
    } else {
        "have the CA reissue it with ECDSA or RSA PKCS#1 v1.5 and SHA-256"
    };
    if sig.pss && !p.rsa_pss {
        out.push(finding(
            Severity::Error,
            "sig-rsa-pss",
            file,
            format!(
                "{who} is signed with RSA-PSS ({}); the {} profile's mbedTLS cannot parse \
                 it ({})",
                sig.name,
                p.name,
                device_error::RSA_PSS.hex()
            ),
            reissue.into(),
        ));
        return;
    }
    if sig.family == SignatureFamily::Ed25519 && !p.ed25519 {
        out.push(finding(
            Severity::Error,
            "sig-ed25519",
            file,
            format!(
                "{who} is signed with Ed25519; the {} profile has no EdDSA",
                p.name
            ),
            reissue.into(),
        ));
        return;
    }
    let accepted = sig
        .hash
        .and_then(|h| h.profile_hash())
        .is_some_and(|h| p.accepts_hash(h));
    if sig.hash.is_some() && !accepted {
        // mbedTLS does not check the self-signature of an anchor that only
        // sits above another certificate: old SHA-1 roots still work there.
        let anchor_only = c.self_issued && c.is_ca() && signs_another(c, all);
        let hashes = p
            .signature_hashes
            .iter()
            .map(|h| format!("{h:?}").to_uppercase().replace("SHA", "SHA-"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(if anchor_only {
            finding(
                Severity::Note,
                "sig-hash",
                file,
                format!(
                    "{who} is self-signed with {}; as a trust anchor above another \
                     certificate the device does not check that signature, but a server must \
                     not present it",
                    sig.name
                ),
                "nothing for the device; replace the root when its CA offers a SHA-256 one".into(),
            )
        } else {
            finding(
                Severity::Error,
                "sig-hash",
                file,
                format!(
                    "{who} is signed with {}; the {} profile accepts {hashes} only \
                     (the device says '{}')",
                    sig.name,
                    p.name,
                    verify_text::BAD_MD
                ),
                reissue.into(),
            )
        });
    }
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
                verify_text::EXPIRED
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
                verify_text::FUTURE
            ),
            if p.clock_starts_unset {
                "set the device's clock before connecting (ntptime.settime()), or check --at".into()
            } else {
                "wait until it is valid, or reissue it with an earlier notBefore".into()
            },
        )),
    }
}

fn host_rule(c: &CertInfo, who: &str, file: &str, o: &Options<'_>, out: &mut Vec<Finding>) {
    let p = o.profile;
    if c.sans.is_empty() {
        let cn = c.common_name().unwrap_or("");
        let cn_matches = o.host.is_some_and(|h| dns_matches(cn, h));
        if o.host.is_some() && !(cn_matches && p.cn_fallback) {
            out.push(finding(
                Severity::Error,
                "host-mismatch",
                file,
                format!(
                    "{who} has no subjectAltName and {}; a client checking '{}' refuses it \
                     (the device says '{}')",
                    if p.cn_fallback {
                        "its CN does not match"
                    } else {
                        "the profile ignores the CN"
                    },
                    o.host.unwrap_or_default(),
                    verify_text::CN_MISMATCH
                ),
                format!(
                    "make it with the name in the SAN: devtls new server --dns {}",
                    o.host.unwrap_or_default()
                ),
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
    let matched = match host.parse::<IpAddr>() {
        Ok(ip) => {
            p.ip_san
                && c.sans
                    .ip
                    .iter()
                    .any(|s| s.parse::<IpAddr>().is_ok_and(|s| s == ip))
        }
        Err(_) => c.sans.dns.iter().any(|san| dns_matches(san, host)),
    };
    if !matched {
        let names: Vec<&str> = c
            .sans
            .dns
            .iter()
            .chain(&c.sans.ip)
            .map(String::as_str)
            .collect();
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
                verify_text::CN_MISMATCH
            ),
            format!(
                "connect with one of those names as server_hostname, or reissue with --{} {host}",
                if host.parse::<IpAddr>().is_ok() {
                    "ip"
                } else {
                    "dns"
                }
            ),
        ));
    }
}

/// DNS name matching as mbedTLS does it: case-insensitive, a trailing dot
/// ignored, `*` only as the whole left-most label and matching exactly one label.
pub fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => pattern == host,
    }
}

fn eku_rule(
    c: &CertInfo,
    who: &str,
    file: &str,
    role: Option<Role>,
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    if !o.profile.enforces_eku {
        return;
    }
    // No EKU extension means any purpose.
    let Some(eku) = &c.extended_key_usage else {
        return;
    };
    if eku.any {
        return;
    }
    let (wanted, ok) = match role {
        Some(Role::Server) => ("serverAuth", eku.server_auth),
        Some(Role::Client) => ("clientAuth", eku.client_auth),
        Some(Role::Both) => (
            "serverAuth and clientAuth",
            eku.server_auth && eku.client_auth,
        ),
        // Guessed from the EKU itself: only wrong when it allows no TLS role at all.
        Some(Role::Ca) | None => (
            "serverAuth or clientAuth",
            eku.server_auth || eku.client_auth,
        ),
    };
    if !ok {
        let has: Vec<&str> = [
            ("serverAuth", eku.server_auth),
            ("clientAuth", eku.client_auth),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .chain(eku.other.iter().map(String::as_str))
        .collect();
        let role_word = match role {
            Some(Role::Client) => "client",
            Some(Role::Server) | Some(Role::Both) => "server",
            _ => "TLS",
        };
        out.push(finding(
            Severity::Error,
            "eku-role",
            file,
            format!(
                "{who} is used as a {role_word} certificate{} but its extendedKeyUsage is {}, \
                 without {wanted}; the device's peer refuses it ('{}')",
                if o.role.is_none() && role.is_some() {
                    " (guessed from the file name)"
                } else {
                    ""
                },
                if has.is_empty() {
                    "empty".to_string()
                } else {
                    has.join(", ")
                },
                verify_text::BAD_USAGE
            ),
            format!(
                "make a {role_word} certificate: devtls new {}",
                if role_word == "client" {
                    "client"
                } else {
                    "server"
                }
            ),
        ));
    }
}

/// `server` or `client` in the file's stem decides the role when --role is not given.
fn role_from_stem(file: &str) -> Option<Role> {
    let stem = stem(file).to_ascii_lowercase();
    match (stem.contains("server"), stem.contains("client")) {
        (true, false) => Some(Role::Server),
        (false, true) => Some(Role::Client),
        _ => None,
    }
}

/// Sizes of the Certificate handshake message: what the device sends of its
/// own chain must fit its output buffer, what it receives its input buffer.
fn chain_size_rules(
    file: &Inspection<'_>,
    all: &[Inspection<'_>],
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    let certs: Vec<&CertInfo> = file.certificates().collect();
    let Some(leaf) = certs.first() else { return };
    if !is_end_entity(leaf, all) {
        return;
    }
    let name = file.input.file;
    let presented = certs.len().min(p.presented_chain_len as usize);
    let own = certificate_message_len(&certs[..presented]);
    if own > p.output_buffer {
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
    let received = certificate_message_len(&certs);
    if received > p.input_buffer {
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
    if intermediates > p.max_intermediates as usize {
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

/// Handshake header (4) + certificate_list length (3) + each certificate with its 3-byte length.
fn certificate_message_len(certs: &[&CertInfo]) -> usize {
    4 + 3 + certs.iter().map(|c| 3 + c.der_size).sum::<usize>()
}

/// Each private key must belong to the end-entity certificate given with it.
fn match_keys(files: &[Inspection<'_>], out: &mut Vec<Finding>) {
    let leaves: Vec<(&str, &CertInfo)> = files
        .iter()
        .filter_map(|f| f.certificates().next().map(|c| (f.input.file, c)))
        .filter(|(_, c)| is_end_entity(c, files))
        .collect();
    if leaves.is_empty() {
        return;
    }
    for file in files {
        for item in file.items {
            let Details::PrivateKey(key) = &item.details else {
                continue;
            };
            let Some(spki) = &key.public_key_sha256 else {
                continue;
            };
            // Its own certificate by name (server.key.der and server.der) if
            // given; else any certificate that is certainly a leaf (a CA given
            // beside a device key is there as the anchor, not as its certificate).
            let key_stem = stem(file.input.file);
            let same_stem: Vec<_> = leaves.iter().filter(|(f, _)| stem(f) == key_stem).collect();
            let candidates: Vec<_> = if same_stem.is_empty() {
                leaves.iter().filter(|(_, c)| !c.is_ca()).collect()
            } else {
                same_stem
            };
            if candidates.is_empty() || candidates.iter().any(|(_, c)| &c.public_key_sha256 == spki)
            {
                continue;
            }
            let names: Vec<&str> = candidates.iter().map(|(f, _)| *f).collect();
            out.push(finding(
                Severity::Error,
                "key-cert-mismatch",
                file.input.file,
                format!(
                    "this key does not belong to the certificate{} given ({}); \
                     load_cert_chain fails or the handshake does",
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", ")
                ),
                "give the device the key that was made with the certificate (same stem: \
                 server.der with server.key.der)"
                    .into(),
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
        assert_eq!(
            ids(&lint(&[input], &options(&profile::OPENMV))),
            ["key-trailing-bytes"]
        );
        assert!(lint(&[input], &options(&profile::MODERN)).is_empty());
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
            let mut spec = crate::issue::CertSpec::new("openmv", Role::Server, 30);
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
    fn wildcards_match_one_left_most_label_only() {
        assert!(dns_matches("*.example.com", "cam.example.com"));
        assert!(dns_matches("*.Example.COM", "CAM.example.com."));
        assert!(!dns_matches("*.example.com", "a.cam.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("cam.*.com", "cam.example.com"));
        assert!(dns_matches("openmv", "openmv"));
        assert!(!dns_matches("", ""));
    }

    #[test]
    fn stems_drop_folders_and_every_extension() {
        assert_eq!(stem("certs/server.key.der"), "server");
        assert_eq!(stem("client.der"), "client");
    }
}

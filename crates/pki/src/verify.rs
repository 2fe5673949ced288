//! Verification as the device does it: one anchor, the device's clock, its
//! X.509 profile, its host name rules, and its words when it fails.
//!
//! This follows mbedTLS's `x509_crt_verify_chain` rather than a PC verifier,
//! because the two differ where devices trip: mbedTLS builds the path only
//! from the certificates the server sent (each parent after its child, as
//! sent) up to its one anchor; it accepts a v1 leaf and a certificate without
//! SAN by its CN; it trusts a pinned leaf only when that leaf is self-signed
//! (measured: `tests/peers/pinning_experiment.py`, docs/device-behaviour.md);
//! and it refuses, while parsing, algorithms its build lacks. rustls-webpki
//! rejects v1 leaves and has no CN fallback, so it cannot stand in here.

use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::chain::Cert;
use crate::device_error::{self, verify_text, DeviceError};
use crate::inspect::{KeyAlgorithm, SignatureFamily};
use crate::lint::dns_matches;
use crate::profile::Profile;

/// Which side's certificate is being verified (decides the EKU required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerRole {
    /// The device is the client: the server's certificate needs serverAuth.
    Server,
    /// The device is the server (mTLS): the client's certificate needs clientAuth.
    Client,
}

/// What to verify.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The device profile.
    pub profile: &'a Profile,
    /// The chain the peer presented, leaf first, DER.
    pub presented: &'a [Vec<u8>],
    /// The device's one trust anchor, DER.
    pub anchor: &'a [u8],
    /// `server_hostname` as the script passes it (`None`: not passed).
    pub hostname: Option<&'a str>,
    /// The device's clock.
    pub time: OffsetDateTime,
    /// The real time now (to tell an unset device clock from an expired certificate).
    pub now: OffsetDateTime,
    /// Whose certificate this is.
    pub peer: PeerRole,
    /// How to reach the server again, for the fix commands (`host:port`).
    pub target: Option<&'a str>,
}

/// What went wrong, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The device's `server_hostname` was not passed while verifying.
    NoHostname,
    /// The anchor file itself does not load on the device.
    AnchorUnloadable,
    /// The peer's Certificate message does not fit the device's input buffer.
    MessageTooLarge,
    /// A certificate uses something the device's X.509 parser refuses.
    Unparseable,
    /// A certificate is past its notAfter at the device's clock.
    Expired,
    /// A certificate is before its notBefore at the device's clock.
    NotYetValid,
    /// The host name matches neither SAN nor (without SAN) the CN.
    NameMismatch,
    /// No path from the presented chain to the anchor.
    NotTrusted,
    /// A signature hash the profile refuses (SHA-1).
    BadHash,
    /// A key type or size the profile refuses.
    BadKey,
    /// keyUsage or extendedKeyUsage does not allow the role.
    Usage,
    /// More intermediates than the device follows.
    TooManyIntermediates,
}

/// One reason the device fails, in its words, with the fix.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// What went wrong.
    pub kind: Kind,
    /// What the script sees (`ValueError: ...` or `OSError: (-code, 'NAME')`).
    pub device_says: String,
    /// The mbedTLS error behind it, when known.
    pub error: Option<DeviceError>,
    /// Which certificate, in words (`certificate 0 (CN=...)`, `the anchor (...)`).
    pub subject: Option<String>,
    /// Why, in plain words.
    pub why: String,
    /// What to do.
    pub fix: String,
}

/// The device's verdict on a chain.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The device would accept the chain.
    pub works: bool,
    /// Why not, the device's first complaint first.
    pub failures: Vec<Failure>,
    /// The presented certificates on the path, leaf first, before the anchor.
    pub path: Vec<usize>,
    /// The anchor is the leaf itself (self-signed, pinned).
    pub pinned_leaf: bool,
}

/// Why `profile` refuses `cert` while parsing it (mbedTLS parses the whole
/// chain before verifying, so these fail the handshake with an `OSError`).
pub fn parse_refusal(profile: &Profile, cert: &Cert) -> Option<(DeviceError, String)> {
    let info = &cert.info;
    if !profile.rsa_pss && (info.signature.pss || info.public_key.algorithm == KeyAlgorithm::RsaPss)
    {
        return Some((
            device_error::RSA_PSS,
            "it is signed with RSA-PSS (or holds an RSA-PSS key), which the device's mbedTLS build lacks".into(),
        ));
    }
    if !profile.ed25519
        && (info.public_key.algorithm == KeyAlgorithm::Ed25519
            || info.signature.family == SignatureFamily::Ed25519)
    {
        return Some((
            device_error::UNKNOWN_PK_ALG,
            "it holds or is signed by an Ed25519 key, which the device's mbedTLS build lacks"
                .into(),
        ));
    }
    if !profile.critical_name_constraints && info.name_constraints.is_some_and(|n| n.critical) {
        return Some((
            device_error::NAME_CONSTRAINTS,
            "it carries a critical nameConstraints extension, which the device's mbedTLS does not implement".into(),
        ));
    }
    if !profile.critical_policies
        && info
            .policies
            .as_ref()
            .is_some_and(|p| p.critical && !p.only_any_policy)
    {
        return Some((
            device_error::CRITICAL_POLICIES,
            "it carries a critical certificatePolicies extension other than anyPolicy".into(),
        ));
    }
    None
}

/// The fix for a [`parse_refusal`], by the error it raises.
pub fn parse_refusal_fix(err: &DeviceError) -> &'static str {
    match err.code {
        c if c == device_error::RSA_PSS.code => {
            "give the server a chain signed with ECDSA or RSA PKCS#1 v1.5 (not RSA-PSS), e.g. from the CA's ECDSA hierarchy"
        }
        c if c == device_error::UNKNOWN_PK_ALG.code => {
            "give the server an ECDSA P-256 key and certificate (the device has no Ed25519)"
        }
        c if c == device_error::NAME_CONSTRAINTS.code => {
            "use a chain without a critical nameConstraints extension, or put a gateway with such a chain in front of the server"
        }
        c if c == device_error::CRITICAL_POLICIES.code => {
            "reissue the certificate without a critical certificatePolicies extension (or with anyPolicy only)"
        }
        _ => "reissue the certificate with what the device supports (ECDSA P-256, SHA-256)",
    }
}

/// Why `profile` refuses `cert`'s key (mbedTLS's `BADCERT_BAD_KEY`), if it does.
pub fn key_refusal(profile: &Profile, cert: &Cert) -> Option<String> {
    let key = &cert.info.public_key;
    match key.algorithm {
        KeyAlgorithm::Rsa | KeyAlgorithm::RsaPss => {
            let bits = key.bits.unwrap_or(0);
            (bits < profile.min_rsa_bits).then(|| {
                format!(
                    "an RSA {bits} key (the device needs at least {} bits)",
                    profile.min_rsa_bits
                )
            })
        }
        KeyAlgorithm::Ec => match key.curve {
            Some(c) if profile.accepts_curve(c) => None,
            _ => Some(format!(
                "a {} key, a curve the device lacks",
                key.description
            )),
        },
        KeyAlgorithm::Ed25519 if profile.ed25519 => None,
        _ => Some(format!(
            "a {} key the device does not know",
            key.description
        )),
    }
}

/// Why the signature hash on `cert` is refused by the profile, if it is.
pub fn hash_refusal(profile: &Profile, cert: &Cert) -> Option<String> {
    let hash = cert.info.signature.hash?;
    match hash.profile_hash() {
        Some(h) if profile.accepts_hash(h) => None,
        _ => Some(format!(
            "it is signed with {}, a hash the device refuses",
            cert.info.signature.name
        )),
    }
}

/// Everything the profile refuses in one certificate, as short phrases
/// (for `anchor`'s warnings; `verify` gives the device's own words).
pub fn profile_findings(profile: &Profile, cert: &Cert) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((_, why)) = parse_refusal(profile, cert) {
        out.push(why);
    } else if let Some(why) = key_refusal(profile, cert) {
        out.push(format!("it holds {why}"));
    }
    if let Some(why) = hash_refusal(profile, cert) {
        out.push(why);
    }
    out
}

/// The host name check mbedTLS does: SAN dNSName (left-most `*` label), SAN
/// iPAddress, and the CN only when there is no SAN at all.
pub fn name_matches(profile: &Profile, cert: &Cert, hostname: &str) -> bool {
    let sans = &cert.info.sans;
    if !sans.is_empty() {
        if sans.dns.iter().any(|d| dns_matches(d, hostname)) {
            return true;
        }
        return profile.ip_san
            && hostname.parse::<IpAddr>().is_ok_and(|ip| {
                sans.ip
                    .iter()
                    .any(|s| s.parse::<IpAddr>().is_ok_and(|s| s == ip))
            });
    }
    profile.cn_fallback
        && cert
            .info
            .common_names
            .iter()
            .any(|cn| dns_matches(cn, hostname))
}

fn describe(index: Option<usize>, cert: &Cert) -> String {
    match index {
        Some(i) => format!("certificate {i} ({})", cert.subject()),
        None => format!("the anchor ({})", cert.subject()),
    }
}

fn date(t: OffsetDateTime) -> String {
    t.date().to_string()
}

struct Flags {
    failures: Vec<Failure>,
}

impl Flags {
    fn verify_failed(
        &mut self,
        kind: Kind,
        text: &str,
        subject: Option<String>,
        why: String,
        fix: String,
    ) {
        // mbedTLS keeps one flag per kind: the device prints each complaint once.
        if let Some(f) = self.failures.iter_mut().find(|f| f.kind == kind) {
            if f.subject != subject {
                f.why = format!("{}; also {}", f.why, why);
            }
            return;
        }
        self.failures.push(Failure {
            kind,
            device_says: format!("ValueError: {text}"),
            error: Some(device_error::CERT_VERIFY_FAILED),
            subject,
            why,
            fix,
        });
    }
}

/// Verifies `input.presented` the way the device does and says what it would print.
pub fn verify(input: &Input<'_>) -> Verdict {
    let profile = input.profile;
    let fail = |failure: Failure| Verdict {
        works: false,
        failures: vec![failure],
        path: Vec::new(),
        pinned_leaf: false,
    };
    let Some(hostname) = input.hostname.filter(|h| !h.is_empty()) else {
        if profile.verify_needs_hostname {
            return fail(Failure {
                kind: Kind::NoHostname,
                device_says: "the handshake is refused before any byte is sent (CERT_REQUIRED without server_hostname)".into(),
                error: None,
                subject: None,
                why: "the device verifies the server's name and needs it to do so".into(),
                fix: "pass server_hostname=\"NAME\" to wrap_socket (it also sends SNI)".into(),
            });
        }
        return verify_named(input, None);
    };
    verify_named(input, Some(hostname))
}

fn verify_named(input: &Input<'_>, hostname: Option<&str>) -> Verdict {
    let profile = input.profile;
    let target = input.target.unwrap_or("HOST");
    let mut verdict = Verdict {
        works: false,
        failures: Vec::new(),
        path: Vec::new(),
        pinned_leaf: false,
    };
    let anchor = match Cert::parse(input.anchor) {
        Ok(a) => a,
        Err(e) => {
            verdict.failures.push(Failure {
                kind: Kind::AnchorUnloadable,
                device_says: format!("ValueError: {}", verify_text::INVALID_CERT),
                error: Some(device_error::INVALID_CERT_PEM),
                subject: None,
                why: format!("the anchor is not one DER certificate: {e}"),
                fix: format!("write it again as DER: devtls anchor {target} -o ca.der"),
            });
            return verdict;
        }
    };
    if let Some((err, why)) = parse_refusal(profile, &anchor) {
        verdict.failures.push(Failure {
            kind: Kind::AnchorUnloadable,
            device_says: format!("ValueError: {}", verify_text::INVALID_CERT),
            error: Some(err),
            subject: Some(describe(None, &anchor)),
            why: format!("load_verify_locations refuses the anchor: {why}"),
            fix: "choose an anchor the device can load (ECDSA or RSA PKCS#1, SHA-256/384/512)"
                .into(),
        });
        return verdict;
    }
    let message_len = 7 + input.presented.iter().map(|c| 3 + c.len()).sum::<usize>();
    if message_len > profile.input_buffer {
        verdict.failures.push(Failure {
            kind: Kind::MessageTooLarge,
            device_says: "an OSError while receiving the server's Certificate message".into(),
            error: None,
            subject: None,
            why: format!(
                "the server's Certificate message is {message_len} bytes; the device's input buffer holds {}",
                profile.input_buffer
            ),
            fix: "make the server send a shorter chain (leaf + one intermediate, ECDSA keys) or put a gateway in front of it".into(),
        });
        return verdict;
    }
    let mut chain = Vec::new();
    for (i, der) in input.presented.iter().enumerate() {
        let cert = match Cert::parse(der) {
            Ok(c) => c,
            Err(e) => {
                verdict.failures.push(Failure {
                    kind: Kind::Unparseable,
                    device_says: format!(
                        "OSError: ({}, '{}')",
                        device_error::INVALID_CERT_PEM.code,
                        device_error::INVALID_CERT_PEM.name
                    ),
                    error: Some(device_error::INVALID_CERT_PEM),
                    subject: Some(format!("certificate {i}")),
                    why: format!("the server sent a certificate that does not parse: {e}"),
                    fix: "fix the server's certificate file".into(),
                });
                return verdict;
            }
        };
        if let Some((err, why)) = parse_refusal(profile, &cert) {
            verdict.failures.push(Failure {
                kind: Kind::Unparseable,
                device_says: err.as_oserror(),
                error: Some(err),
                subject: Some(describe(Some(i), &cert)),
                why: format!(
                    "the device cannot parse {}: {why}",
                    describe(Some(i), &cert)
                ),
                fix: parse_refusal_fix(&err).into(),
            });
            return verdict;
        }
        chain.push(cert);
    }
    let Some(leaf) = chain.first() else {
        verdict.failures.push(Failure {
            kind: Kind::NotTrusted,
            device_says: format!("ValueError: {}", verify_text::NOT_TRUSTED),
            error: Some(device_error::CERT_VERIFY_FAILED),
            subject: None,
            why: "the server sent no certificate".into(),
            fix: "configure a certificate on the server".into(),
        });
        return verdict;
    };
    let mut flags = Flags {
        failures: Vec::new(),
    };

    // The leaf's own key and name, then its usage (mbedTLS checks these beside the chain).
    if let Some(why) = key_refusal(profile, leaf) {
        flags.verify_failed(
            Kind::BadKey,
            verify_text::BAD_KEY,
            Some(describe(Some(0), leaf)),
            format!("the server's certificate holds {why}"),
            format!(
                "give the server an ECDSA P-256 key, or RSA of at least {} bits",
                profile.min_rsa_bits
            ),
        );
    }
    if let Some(host) = hostname {
        if !name_matches(profile, leaf, host) {
            let has_san = !leaf.info.sans.is_empty();
            let names: Vec<String> = if has_san {
                leaf.info
                    .sans
                    .dns
                    .iter()
                    .chain(leaf.info.sans.ip.iter())
                    .cloned()
                    .collect()
            } else {
                leaf.info.common_names.clone()
            };
            let names = if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            };
            flags.verify_failed(
                Kind::NameMismatch,
                verify_text::CN_MISMATCH,
                Some(describe(Some(0), leaf)),
                format!(
                    "server_hostname \"{host}\" is not in the certificate, which names {names}{}",
                    if has_san { " (its SAN; the CN is not used when a SAN exists)" } else { " (its CN; it has no SAN)" }
                ),
                format!(
                    "pass server_hostname=\"{}\" (a name the certificate holds), or reissue the server's certificate with \"{host}\" in its SAN",
                    names.split(", ").next().unwrap_or(host)
                ),
            );
        }
    }
    if profile.enforces_eku {
        let (want, words) = match input.peer {
            PeerRole::Server => (0, "serverAuth"),
            PeerRole::Client => (1, "clientAuth"),
        };
        let eku_ok = leaf
            .info
            .extended_key_usage
            .as_ref()
            .is_none_or(|e| e.any || [e.server_auth, e.client_auth][want]);
        let ku_ok = leaf
            .info
            .key_usage
            .as_ref()
            .is_none_or(|k| k.has("digitalSignature") || k.has("keyEncipherment"));
        if !eku_ok || !ku_ok {
            flags.verify_failed(
                Kind::Usage,
                verify_text::BAD_USAGE,
                Some(describe(Some(0), leaf)),
                if eku_ok {
                    "the certificate's keyUsage allows neither digitalSignature nor keyEncipherment"
                        .into()
                } else {
                    format!("the certificate's extendedKeyUsage does not include {words}")
                },
                format!("reissue the certificate with extendedKeyUsage {words}"),
            );
        }
    }

    // The chain, as mbedTLS's x509_crt_verify_chain walks it.
    let pinned_ok = input.anchor == chain[0].der.as_slice() && leaf.self_issued();
    let mut child: (Option<usize>, &Cert) = (Some(0), leaf);
    let mut child_trusted = false;
    let mut path_cnt = 0usize;
    let mut self_cnt = 0usize;
    verdict.path.push(0);
    loop {
        let (idx, cert) = child;
        if input.time > cert.not_after() {
            let clock = cert.valid_at(input.now);
            flags.verify_failed(
                Kind::Expired,
                verify_text::EXPIRED,
                Some(describe(idx, cert)),
                format!(
                    "{} is valid until {}, and the device's clock reads {}",
                    describe(idx, cert),
                    date(cert.not_after()),
                    date(input.time)
                ),
                if clock {
                    "the device's clock is wrong: set it with ntptime.settime() before connecting".into()
                } else if idx.is_none() {
                    format!("the anchor itself has expired: fetch a current one with devtls anchor {target}")
                } else if idx == Some(0) {
                    format!("the server's certificate expired on {}: renew it on the server", date(cert.not_after()))
                } else {
                    "the server sends an expired intermediate: install the CA's current intermediate on the server".into()
                },
            );
        }
        if input.time < cert.not_before() {
            let clock = input.time < input.now;
            flags.verify_failed(
                Kind::NotYetValid,
                verify_text::FUTURE,
                Some(describe(idx, cert)),
                format!(
                    "{} is valid from {}, and the device's clock reads {}",
                    describe(idx, cert),
                    date(cert.not_before()),
                    date(input.time)
                ),
                if clock && cert.not_before() <= input.now {
                    "the device's clock is not set (it starts at the epoch after power-up): call ntptime.settime() before connecting".into()
                } else {
                    format!("the certificate is not valid until {}: wait, or fix the server's certificate dates", date(cert.not_before()))
                },
            );
        }
        if child_trusted {
            break;
        }
        if let Some(why) = hash_refusal(profile, cert) {
            flags.verify_failed(
                Kind::BadHash,
                verify_text::BAD_MD,
                Some(describe(idx, cert)),
                format!("{} {why}", describe(idx, cert)),
                "the server needs a chain signed with SHA-256 or better".into(),
            );
        }
        if verdict.path.len() == 1 && pinned_ok {
            verdict.pinned_leaf = true;
            break;
        }
        // Parent: the anchor first, then the certificates sent after this one.
        let top_ok = |p: &Cert| -> bool {
            cert.named_by(p)
                && (p.info.is_ca() || p.info.version < 3)
                && (p.info.version < 3
                    || p.info
                        .key_usage
                        .as_ref()
                        .is_none_or(|k| k.has("keyCertSign")))
                && pathlen_ok(p, path_cnt, self_cnt)
                && cert.signed_by(p) != Some(false)
        };
        let mut parent: Option<(Option<usize>, &Cert, bool)> = None;
        if top_ok(&anchor) {
            parent = Some((None, &anchor, true));
        } else {
            let start = idx.map_or(chain.len(), |i| i + 1);
            let mut fallback = None;
            for (j, p) in chain.iter().enumerate().skip(start) {
                if !(cert.named_by(p)
                    && p.info.is_ca()
                    && p.info
                        .key_usage
                        .as_ref()
                        .is_none_or(|k| k.has("keyCertSign"))
                    && pathlen_ok(p, path_cnt, self_cnt))
                {
                    continue;
                }
                let good = cert.signed_by(p) != Some(false);
                if !p.valid_at(input.time) {
                    fallback.get_or_insert((Some(j), p, good));
                    continue;
                }
                parent = Some((Some(j), p, good));
                break;
            }
            if parent.is_none() {
                parent = fallback;
            }
        }
        let Some((pidx, p, good)) = parent else {
            let (why, fix) = not_trusted_explanation(input, &chain, &anchor, idx, cert);
            flags.verify_failed(
                Kind::NotTrusted,
                verify_text::NOT_TRUSTED,
                Some(describe(idx, cert)),
                why,
                fix,
            );
            break;
        };
        if pidx.is_some() && p.self_issued() {
            self_cnt += 1;
        }
        if pidx.is_some() && verdict.path.len() > profile.max_intermediates as usize {
            flags.verify_failed(
                Kind::TooManyIntermediates,
                verify_text::NOT_TRUSTED,
                None,
                format!(
                    "the path holds more than {} intermediates",
                    profile.max_intermediates
                ),
                "shorten the server's chain".into(),
            );
            break;
        }
        if !good {
            flags.verify_failed(
                Kind::NotTrusted,
                verify_text::NOT_TRUSTED,
                Some(describe(idx, cert)),
                format!(
                    "the signature on {} does not check with its issuer's key",
                    describe(idx, cert)
                ),
                "the server's chain is broken: install the matching intermediate".into(),
            );
        }
        if let Some(why) = key_refusal(profile, p) {
            flags.verify_failed(
                Kind::BadKey,
                verify_text::BAD_KEY,
                Some(describe(pidx, p)),
                format!("{} holds {why}", describe(pidx, p)),
                format!(
                    "use a CA hierarchy with ECDSA P-256 keys, or RSA of at least {} bits",
                    profile.min_rsa_bits
                ),
            );
        }
        if let Some(j) = pidx {
            verdict.path.push(j);
        }
        path_cnt += 1;
        child = (pidx, p);
        child_trusted = pidx.is_none();
    }
    let mut failures = order(flags.failures);
    // The usage check runs in the TLS layer after X.509 verification: when it
    // is the only problem, mbedTLS returns BAD_CERTIFICATE, not VERIFY_FAILED
    // (measured with the mbedTLS peer; the same code in 2.28 and 3.6).
    if failures.iter().all(|f| f.kind == Kind::Usage) {
        for f in &mut failures {
            f.device_says = device_error::BAD_CERTIFICATE.as_oserror();
            f.error = Some(device_error::BAD_CERTIFICATE);
        }
    }
    verdict.failures = failures;
    verdict.works = verdict.failures.is_empty();
    verdict
}

// mbedTLS stores pathlen + 1 and skips a parent whose limit the path exceeds.
fn pathlen_ok(parent: &Cert, path_cnt: usize, self_cnt: usize) -> bool {
    parent
        .info
        .basic_constraints
        .as_ref()
        .and_then(|b| b.path_len)
        .is_none_or(|len| (len as usize + 1) >= 1 + path_cnt - self_cnt.min(path_cnt))
}

// The order mbedtls_x509_crt_verify_info prints its lines in.
fn order(mut failures: Vec<Failure>) -> Vec<Failure> {
    let rank = |k: Kind| match k {
        Kind::Expired => 0,
        Kind::NameMismatch => 1,
        Kind::NotTrusted | Kind::TooManyIntermediates => 2,
        Kind::NotYetValid => 3,
        Kind::Usage => 4,
        Kind::BadHash => 5,
        Kind::BadKey => 6,
        _ => 7,
    };
    failures.sort_by_key(|f| rank(f.kind));
    failures
}

fn not_trusted_explanation(
    input: &Input<'_>,
    chain: &[Cert],
    anchor: &Cert,
    idx: Option<usize>,
    cert: &Cert,
) -> (String, String) {
    let target = input.target.unwrap_or("HOST");
    if anchor.der == chain[0].der {
        return (
            "the anchor is the server's own certificate, but it is issued by a CA: the device's mbedTLS \
             trusts a pinned leaf only when it is self-signed"
                .into(),
            format!("anchor the CA instead: devtls anchor {target} (the root, or --trust intermediate)"),
        );
    }
    let sent_issuer = chain.iter().any(|c| cert.named_by(c));
    if !sent_issuer && idx == Some(0) && chain.len() == 1 {
        return (
            format!(
                "the server sends only its certificate, not its intermediate ({}), and the anchor ({}) is not that intermediate",
                cert.issuer(), anchor.subject()
            ),
            format!(
                "anchor the intermediate: devtls anchor {target} --trust intermediate; or configure the server to send its full chain (fullchain.pem)"
            ),
        );
    }
    (
        format!(
            "the server chains to \"{}\" but the anchor is \"{}\"",
            cert.issuer(),
            anchor.subject()
        ),
        format!("fetch the anchor the server chains to: devtls anchor {target} -o ca.der"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{self, Authority, CertSpec, Role};
    use crate::keys::{KeyType, PrivateKey};
    use crate::profile::OPENMV;
    use time::Duration;

    fn input<'a>(presented: &'a [Vec<u8>], anchor: &'a [u8], host: Option<&'a str>) -> Input<'a> {
        Input {
            profile: &OPENMV,
            presented,
            anchor,
            hostname: host,
            time: OffsetDateTime::now_utc(),
            now: OffsetDateTime::now_utc(),
            peer: PeerRole::Server,
            target: Some("example.test:443"),
        }
    }

    fn hierarchy() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let rk = PrivateKey::generate(KeyType::P256).unwrap();
        let root = issue::self_signed_root(&CertSpec::new("V Root", Role::Ca, 3650), &rk).unwrap();
        let ik = PrivateKey::generate(KeyType::P256).unwrap();
        let inter = Authority::load(&root.der, rk)
            .unwrap()
            .sign(&CertSpec::new("V Int", Role::Ca, 365), &ik)
            .unwrap();
        let lk = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new("leaf", Role::Server, 90);
        spec.dns = vec!["*.example.test".into()];
        let leaf = Authority::load(&inter.der, ik)
            .unwrap()
            .sign(&spec, &lk)
            .unwrap();
        (root.der, inter.der, leaf.der)
    }

    #[test]
    fn full_chain_works_and_leaf_only_fails_with_the_intermediate_fix() {
        let (root, inter, leaf) = hierarchy();
        let full = [leaf.clone(), inter.clone()];
        let v = verify(&input(&full, &root, Some("api.example.test")));
        assert!(v.works, "{:?}", v.failures);
        assert_eq!(v.path, vec![0, 1]);
        let only = [leaf.clone()];
        let v = verify(&input(&only, &root, Some("api.example.test")));
        assert_eq!(v.failures[0].kind, Kind::NotTrusted);
        assert!(
            v.failures[0].fix.contains("--trust intermediate"),
            "{}",
            v.failures[0].fix
        );
        assert!(verify(&input(&only, &inter, Some("api.example.test"))).works);
    }

    #[test]
    fn clock_name_and_pinning_follow_the_device() {
        let (root, inter, leaf) = hierarchy();
        let full = [leaf.clone(), inter];
        let mut early = input(&full, &root, Some("api.example.test"));
        early.time = OffsetDateTime::UNIX_EPOCH + Duration::days(365 * 30);
        let v = verify(&early);
        assert_eq!(v.failures[0].kind, Kind::NotYetValid);
        assert!(v.failures[0].fix.contains("ntptime.settime()"));
        let v = verify(&input(&full, &root, Some("a.b.example.test")));
        assert_eq!(v.failures[0].device_says, "ValueError: CN does not match");
        let v = verify(&input(&full, &root, None));
        assert_eq!(v.failures[0].kind, Kind::NoHostname);
        let v = verify(&input(&full, &leaf, Some("api.example.test")));
        assert!(!v.works && v.failures[0].why.contains("self-signed"));
        // A self-signed leaf pinned as the anchor works; CN-only is matched by CN.
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let ss = issue::self_signed(&CertSpec::new("cam.local", Role::Server, 30), &key).unwrap();
        let only = [ss.der.clone()];
        let v = verify(&input(&only, &ss.der, Some("cam.local")));
        assert!(v.works && v.pinned_leaf, "{:?}", v.failures);
    }
}

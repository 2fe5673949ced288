//! The device's verdict on a chain, in its words: what the script sees,
//! why, and the fix.
//!
//! The decisions are the device's rules ([`crate::rules`]: the parser's
//! refusals, the Certificate message size, and [`rules::path`], mbedTLS's
//! `x509_crt_verify_chain` flag for flag); this module only turns their
//! findings into the device's words and a fix for each. rustls-webpki
//! rejects v1 leaves and has no CN fallback, so it cannot stand in here.

use serde::Serialize;
use time::OffsetDateTime;

use crate::chain::Cert;
use crate::device_error::{self, flags, verify_text, DeviceError, Outcomes};
use crate::profile::Profile;
use crate::rules::path::{self, Position};
use crate::rules::usage::{self, Presenter};
use crate::rules::{certs, names, sizes};

pub use crate::rules::names::name_matches;

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
    /// A key file the device does not load (`ValueError('invalid key')`).
    KeyUnloadable,
    /// A certificate file the device does not load (`ValueError('invalid cert')`).
    CertUnloadable,
    /// A key given with a certificate it does not belong to.
    KeyMismatch,
}

impl Kind {
    /// The verification flag behind this kind, for the verify kinds.
    pub fn flag(self) -> Option<u32> {
        Some(match self {
            Kind::Expired => flags::EXPIRED,
            Kind::NotYetValid => flags::FUTURE,
            Kind::NameMismatch => flags::CN_MISMATCH,
            Kind::NotTrusted => flags::NOT_TRUSTED,
            Kind::BadHash => flags::BAD_MD,
            Kind::BadKey => flags::BAD_KEY,
            Kind::TooManyIntermediates => flags::FATAL,
            _ => return None,
        })
    }
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
    /// Every exception the script may see, when more than one is possible
    /// (the peer's timing decides); `device_says` then names them all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Outcomes>,
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

impl Failure {
    /// A failure about one of the device's own files, named `file`.
    pub fn about_file(
        kind: Kind,
        device_says: String,
        error: Option<DeviceError>,
        file: &str,
        why: String,
        fix: String,
    ) -> Failure {
        Failure {
            kind,
            device_says,
            error,
            outcomes: None,
            subject: Some(file.to_string()),
            why,
            fix,
        }
    }

    /// The same failure where the script may see any of `outcomes`:
    /// `device_says` names them all and `error` is the first mbedTLS one.
    pub fn with_outcomes(mut self, outcomes: Outcomes) -> Failure {
        self.device_says = outcomes.printed();
        self.error = outcomes.raised.iter().find_map(|r| match r {
            device_error::Raised::Mbedtls(e) => Some(*e),
            device_error::Raised::Errno(_) => None,
        });
        self.outcomes = Some(outcomes);
        self
    }
}

impl Verdict {
    /// The `mbedtls_x509_crt_verify` flags behind the failures (0 when none
    /// is a verification failure).
    pub fn flags(&self) -> u32 {
        self.failures
            .iter()
            .filter_map(|f| f.kind.flag())
            .fold(0, |acc, f| acc | f)
    }
}

fn describe(pos: Position, cert: &Cert) -> String {
    match pos {
        Position::Presented(i) => format!("certificate {i} ({})", cert.subject()),
        Position::Anchor => format!("the anchor ({})", cert.subject()),
    }
}

fn date(t: OffsetDateTime) -> String {
    t.date().to_string()
}

/// Verifies `input.presented` the way the device does and says what it would print.
pub fn verify(input: &Input<'_>) -> Verdict {
    let profile = input.profile;
    let Some(hostname) = input.hostname.filter(|h| !h.is_empty()) else {
        if profile.verify_needs_hostname {
            return Verdict {
                works: false,
                failures: vec![Failure {
                    kind: Kind::NoHostname,
                    device_says: "the handshake is refused before any byte is sent (CERT_REQUIRED without server_hostname)".into(),
                    error: None,
                    outcomes: None,
                    subject: None,
                    why: "the device verifies the server's name and needs it to do so".into(),
                    fix: "pass server_hostname=\"NAME\" to wrap_socket (it also sends SNI)".into(),
                }],
                path: Vec::new(),
                pinned_leaf: false,
            };
        }
        return verify_named(input, None);
    };
    verify_named(input, Some(hostname))
}

/// The device's verdict on the chain alone: everything [`verify`] checks
/// but the host name (for `anchor`, which does not know the name the device uses).
pub fn verify_without_name(input: &Input<'_>) -> Verdict {
    verify_named(input, None)
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
    let anchor = match path::load_anchor(profile, input.anchor) {
        Ok(a) => a,
        Err(path::AnchorRefusal::NotDer(e)) => {
            verdict.failures.push(Failure {
                kind: Kind::AnchorUnloadable,
                device_says: format!("ValueError: {}", verify_text::INVALID_CERT),
                error: Some(device_error::INVALID_CERT_PEM),
                outcomes: None,
                subject: None,
                why: format!("the anchor is not one DER certificate: {e}"),
                fix: format!("write it again as DER: devtls anchor {target} -o ca.der"),
            });
            return verdict;
        }
        Err(path::AnchorRefusal::Refused(anchor, refusal)) => {
            verdict.failures.push(Failure {
                kind: Kind::AnchorUnloadable,
                device_says: format!("ValueError: {}", verify_text::INVALID_CERT),
                error: Some(refusal.error()),
                outcomes: None,
                subject: Some(describe(Position::Anchor, &anchor)),
                why: format!(
                    "load_verify_locations refuses the anchor: {}",
                    refusal.why()
                ),
                fix: refusal.fix(),
            });
            return verdict;
        }
    };
    let message_len = sizes::certificate_message_len(input.presented.iter().map(Vec::len));
    if !sizes::fits_input(profile, message_len) {
        verdict.failures.push(Failure {
            kind: Kind::MessageTooLarge,
            device_says: "an OSError while receiving the server's Certificate message".into(),
            error: None,
            outcomes: None,
            subject: None,
            why: format!(
                "the server's Certificate message is {message_len} bytes, over the device's {}-byte input buffer",
                profile.input_buffer
            ),
            fix: "make the server send a shorter chain (leaf + one intermediate, ECDSA keys) or put a gateway in front of it".into(),
        });
        return verdict;
    }
    let received = path::receive_chain(profile, input.presented);
    match received.refusal {
        Some(path::ChainRefusal::NotDer(i, e)) => {
            verdict.failures.push(Failure {
                kind: Kind::Unparseable,
                device_says: device_error::INVALID_CERT_PEM.as_oserror(),
                error: Some(device_error::INVALID_CERT_PEM),
                outcomes: None,
                subject: Some(format!("certificate {i}")),
                why: format!("the server sent a certificate that does not parse: {e}"),
                fix: "fix the server's certificate file".into(),
            });
            return verdict;
        }
        Some(path::ChainRefusal::Refused(i, cert, refusal)) => {
            let err = refusal.error();
            let who = describe(Position::Presented(i), &cert);
            verdict.failures.push(Failure {
                kind: Kind::Unparseable,
                device_says: err.as_oserror(),
                error: Some(err),
                outcomes: None,
                subject: Some(who.clone()),
                why: format!("the device cannot parse {who}: {}", refusal.why()),
                fix: refusal.fix(),
            });
            return verdict;
        }
        None => {}
    }
    let chain = received.chain;
    if chain.is_empty() {
        verdict.failures.push(Failure {
            kind: Kind::NotTrusted,
            device_says: flags::value_error(flags::NOT_TRUSTED),
            error: Some(device_error::CERT_VERIFY_FAILED),
            outcomes: None,
            subject: None,
            why: "the server sent no certificate".into(),
            fix: "configure a certificate on the server".into(),
        });
        return verdict;
    }
    let outcome = path::verify_chain(profile, &anchor, &chain, hostname, input.time);
    verdict.path = outcome.presented_path();
    verdict.pinned_leaf = outcome.pinned_leaf;
    let cert_at = |pos: Position| match pos {
        Position::Presented(i) => &chain[i],
        Position::Anchor => &anchor,
    };
    let mut failures: Vec<Failure> = Vec::new();
    let mut add = |kind: Kind, subject: Option<String>, why: String, fix: String| {
        // mbedTLS keeps one flag per kind: the device prints each complaint once.
        if let Some(f) = failures.iter_mut().find(|f| f.kind == kind) {
            if f.subject != subject {
                f.why = format!("{}; also {}", f.why, why);
            }
            return;
        }
        let flag = kind.flag().unwrap_or(0);
        failures.push(Failure {
            kind,
            device_says: flags::value_error(flag),
            error: Some(device_error::CERT_VERIFY_FAILED),
            outcomes: None,
            subject,
            why,
            fix,
        });
    };
    if outcome.fatal {
        verdict.failures.push(Failure {
            kind: Kind::TooManyIntermediates,
            device_says: device_error::X509_FATAL_ERROR.as_oserror(),
            error: Some(device_error::X509_FATAL_ERROR),
            outcomes: None,
            subject: None,
            why: format!(
                "the path holds more than {} intermediates",
                profile.max_intermediates
            ),
            fix: "shorten the server's chain".into(),
        });
        return verdict;
    }
    for step in &outcome.steps {
        let pos = step.position;
        let cert = cert_at(pos);
        let who = describe(pos, cert);
        if step.flags & flags::EXPIRED != 0 {
            let clock = cert.valid_at(input.now);
            add(
                Kind::Expired,
                Some(who.clone()),
                format!(
                    "{who} is valid until {}, and the device's clock reads {}",
                    date(cert.not_after()),
                    date(input.time)
                ),
                if clock {
                    "the device's clock is wrong: set it with ntptime.settime() before connecting"
                        .into()
                } else if pos == Position::Anchor {
                    format!("the anchor itself has expired: fetch a current one with devtls anchor {target}")
                } else if pos == Position::Presented(0) {
                    format!(
                        "the server's certificate expired on {}: renew it on the server",
                        date(cert.not_after())
                    )
                } else {
                    "the server sends an expired intermediate: install the CA's current intermediate on the server".into()
                },
            );
        }
        if step.flags & flags::CN_MISMATCH != 0 {
            let host = hostname.unwrap_or_default();
            let (names, from_san) = names::names_checked(cert);
            let names = if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            };
            add(
                Kind::NameMismatch,
                Some(who.clone()),
                format!(
                    "server_hostname \"{host}\" is not in the certificate, which names {names}{}",
                    if from_san { " (its SAN; the CN is not used when a SAN exists)" } else { " (its CN; it has no SAN)" }
                ),
                format!(
                    "pass server_hostname=\"{}\" (a name the certificate holds), or reissue the server's certificate with \"{host}\" in its SAN",
                    names.split(", ").next().unwrap_or(host)
                ),
            );
        }
        if step.flags & flags::NOT_TRUSTED != 0 {
            let parent_sig_bad = outcome
                .steps
                .iter()
                .position(|s| s.position == pos)
                .is_some_and(|i| i + 1 < outcome.steps.len());
            let (why, fix) = if parent_sig_bad {
                (
                    format!("the signature on {who} does not check with its issuer's key"),
                    "the server's chain is broken: install the matching intermediate".into(),
                )
            } else {
                not_trusted_explanation(input, &chain, &anchor, pos, cert)
            };
            add(Kind::NotTrusted, Some(who.clone()), why, fix);
        }
        if step.flags & flags::FUTURE != 0 {
            let clock = input.time < input.now;
            add(
                Kind::NotYetValid,
                Some(who.clone()),
                format!(
                    "{who} is valid from {}, and the device's clock reads {}",
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
        if step.flags & flags::BAD_MD != 0 {
            add(
                Kind::BadHash,
                Some(who.clone()),
                format!(
                    "{who} is signed with {}, a hash the device refuses",
                    cert.info.signature.name
                ),
                "the server needs a chain signed with SHA-256 or better".into(),
            );
        }
        if step.flags & flags::BAD_KEY != 0 {
            // On the leaf: its own key or its issuer's; elsewhere: the issuer's.
            let idx = outcome
                .steps
                .iter()
                .position(|s| s.position == pos)
                .unwrap_or(0);
            let mut culprits: Vec<(Position, &Cert)> = Vec::new();
            if idx == 0 && certs::key_problem(profile, &cert.info.public_key).is_some() {
                culprits.push((pos, cert));
            }
            if let Some(next) = outcome.steps.get(idx + 1) {
                let parent = cert_at(next.position);
                if certs::key_problem(profile, &parent.info.public_key).is_some() {
                    culprits.push((next.position, parent));
                }
            }
            for (p, c) in culprits {
                let why = certs::key_problem(profile, &c.info.public_key)
                    .map(|k| k.why())
                    .unwrap_or_default();
                add(
                    Kind::BadKey,
                    Some(describe(p, c)),
                    format!("{} holds {why}", describe(p, c)),
                    format!(
                        "use ECDSA P-256 keys on the server and its CA, or RSA of at least {} bits",
                        profile.min_rsa_bits
                    ),
                );
            }
        }
    }
    let leaf = &chain[0];
    let presenter = match input.peer {
        PeerRole::Server => Presenter::Server,
        PeerRole::Client => Presenter::Client,
    };
    let usage_flags = if profile.enforces_eku {
        usage::usage_flags(&leaf.info, presenter)
    } else {
        0
    };
    if usage_flags != 0 {
        failures.push(Failure {
            kind: Kind::Usage,
            device_says: flags::value_error(usage_flags),
            error: Some(device_error::CERT_VERIFY_FAILED),
            outcomes: None,
            subject: Some(describe(Position::Presented(0), leaf)),
            why: if usage_flags & flags::EXT_KEY_USAGE != 0 {
                format!(
                    "the certificate's extendedKeyUsage does not include {}",
                    presenter.purpose()
                )
            } else {
                "the certificate's keyUsage allows neither digitalSignature nor keyEncipherment"
                    .into()
            },
            fix: format!(
                "reissue the certificate with extendedKeyUsage {}",
                presenter.purpose()
            ),
        });
    }
    let mut failures = order(failures);
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
    pos: Position,
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
    if !sent_issuer && pos == Position::Presented(0) && chain.len() == 1 {
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
    if cert.named_by(anchor) {
        return (
            format!(
                "the anchor ({}) has the issuer's name but cannot issue {}: it is not a CA with keyCertSign, its pathLen is exceeded, or its key did not make the signature",
                anchor.subject(),
                describe(pos, cert)
            ),
            format!("fetch the anchor the server chains to: devtls anchor {target} -o ca.der"),
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
        assert_eq!(
            v.failures[0].device_says,
            "ValueError:\nThe certificate Common Name (CN) does not match with the expected CN"
        );
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

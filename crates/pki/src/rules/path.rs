//! `mbedtls_x509_crt_verify_with_profile` with the default profile, as the
//! device calls it: flags per certificate, exactly as mbedTLS 3.6's
//! `x509_crt_verify_chain` sets them (library/x509_crt.c).
//!
//! The walk: each certificate's validity is checked; the anchor ends the
//! walk; otherwise its signature hash is checked, a self-issued leaf that is
//! byte for byte the anchor is trusted as it is (pinning), and its parent
//! is searched first among the anchors (name, CA bit or v1, keyCertSign,
//! pathLen, a signature that checks; one valid now preferred) and then among
//! the certificates sent after it (the same, but a bad signature is only
//! flagged). The parent's key must satisfy the profile. The leaf's own key
//! and host name are checked beside the walk.

use serde::Serialize;
use time::OffsetDateTime;

use super::{certs, names};
use crate::chain::Cert;
use crate::device_error::{self, flags, DeviceError};
use crate::profile::Profile;

/// mbedTLS's `MBEDTLS_X509_MAX_INTERMEDIATE_CA`.
const MAX_INTERMEDIATE_CA: usize = 8;

/// Where a certificate on the walked path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "at", content = "index")]
pub enum Position {
    /// Sent by the peer, at this index of its chain.
    Presented(usize),
    /// The device's trust anchor.
    Anchor,
}

/// One certificate of the walked path with the flags set on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Which certificate.
    pub position: Position,
    /// The `MBEDTLS_X509_BADCERT_*` flags set on it.
    pub flags: u32,
}

/// The outcome of verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The path walked, leaf first; ends at the anchor when it was reached.
    pub steps: Vec<Step>,
    /// The leaf is the anchor itself (a pinned self-issued leaf).
    pub pinned_leaf: bool,
    /// The walk stopped on more intermediates than mbedTLS follows
    /// (`MBEDTLS_ERR_X509_FATAL_ERROR`, every flag set).
    pub fatal: bool,
}

impl Outcome {
    /// The flags `mbedtls_x509_crt_verify_with_profile` returns.
    pub fn flags(&self) -> u32 {
        if self.fatal {
            return flags::FATAL;
        }
        self.steps.iter().fold(0, |acc, s| acc | s.flags)
    }

    /// The anchor was reached and nothing was flagged.
    pub fn works(&self) -> bool {
        self.flags() == 0
    }

    /// The presented certificates on the path, leaf first.
    pub fn presented_path(&self) -> Vec<usize> {
        self.steps
            .iter()
            .filter_map(|s| match s.position {
                Position::Presented(i) => Some(i),
                Position::Anchor => None,
            })
            .collect()
    }
}

/// Verifies the parsed chain (leaf first, as sent) against the one anchor.
/// `hostname`: the `server_hostname` checked against the leaf, if any.
pub fn verify_chain(
    profile: &Profile,
    anchor: &Cert,
    chain: &[Cert],
    hostname: Option<&str>,
    time: OffsetDateTime,
) -> Outcome {
    let mut outcome = Outcome {
        steps: Vec::new(),
        pinned_leaf: false,
        fatal: false,
    };
    let Some(leaf) = chain.first() else {
        outcome.steps.push(Step {
            position: Position::Presented(0),
            flags: flags::NOT_TRUSTED,
        });
        return outcome;
    };
    // The end entity's own checks, merged into its flags at the end.
    let mut ee_flags = 0;
    if let Some(host) = hostname {
        if !names::name_matches(profile, leaf, host) {
            ee_flags |= flags::CN_MISMATCH;
        }
    }
    if certs::key_problem(profile, &leaf.info.public_key).is_some() {
        ee_flags |= flags::BAD_KEY;
    }

    let mut child_pos = Position::Presented(0);
    let mut child = leaf;
    let mut child_trusted = false;
    let mut self_cnt = 0usize;
    loop {
        let mut f = 0;
        let (expired, future) = certs::validity(child, time);
        if expired {
            f |= flags::EXPIRED;
        }
        if future {
            f |= flags::FUTURE;
        }
        if child_trusted {
            outcome.steps.push(Step {
                position: child_pos,
                flags: f,
            });
            break;
        }
        if certs::hash_refused(profile, &child.info.signature) {
            f |= flags::BAD_MD;
        }
        let len = outcome.steps.len() + 1;
        if len == 1 && child.self_issued() && child.der == anchor.der {
            outcome.pinned_leaf = true;
            outcome.steps.push(Step {
                position: child_pos,
                flags: f,
            });
            break;
        }
        let path_cnt = len - 1;
        let parent = find_parent(child, child_pos, anchor, chain, path_cnt, self_cnt, time);
        let Some((parent_pos, parent, signature_good)) = parent else {
            outcome.steps.push(Step {
                position: child_pos,
                flags: f | flags::NOT_TRUSTED,
            });
            break;
        };
        if len != 1 && child.self_issued() {
            self_cnt += 1;
        }
        let parent_trusted = parent_pos == Position::Anchor;
        if !parent_trusted && len > MAX_INTERMEDIATE_CA {
            outcome.steps.push(Step {
                position: child_pos,
                flags: f,
            });
            outcome.fatal = true;
            return outcome;
        }
        if !signature_good {
            f |= flags::NOT_TRUSTED;
        }
        if certs::key_problem(profile, &parent.info.public_key).is_some() {
            f |= flags::BAD_KEY;
        }
        outcome.steps.push(Step {
            position: child_pos,
            flags: f,
        });
        child = parent;
        child_pos = parent_pos;
        child_trusted = parent_trusted;
    }
    outcome.steps[0].flags |= ee_flags;
    outcome
}

/// `x509_crt_find_parent`: the anchor first (its signature must check), then
/// the certificates sent after `child`; within each, the first one valid at
/// `time`, else the first that fits at all.
fn find_parent<'a>(
    child: &Cert,
    child_pos: Position,
    anchor: &'a Cert,
    chain: &'a [Cert],
    path_cnt: usize,
    self_cnt: usize,
    time: OffsetDateTime,
) -> Option<(Position, &'a Cert, bool)> {
    let fits = |parent: &Cert, top: bool| -> Option<bool> {
        if !child.named_by(parent) || !certs::can_issue(parent, top) {
            return None;
        }
        if !certs::path_len_allows(parent, path_cnt, self_cnt) {
            return None;
        }
        let good = child.signed_by(parent) == Some(true);
        if top && !good {
            return None;
        }
        Some(good)
    };
    let valid = |c: &Cert| {
        let (expired, future) = certs::validity(c, time);
        !expired && !future
    };
    if let Some(good) = fits(anchor, true) {
        return Some((Position::Anchor, anchor, good));
    }
    let start = match child_pos {
        Position::Presented(i) => i + 1,
        Position::Anchor => chain.len(),
    };
    let mut fallback = None;
    for (j, parent) in chain.iter().enumerate().skip(start) {
        let Some(good) = fits(parent, false) else {
            continue;
        };
        if !valid(parent) {
            fallback.get_or_insert((Position::Presented(j), parent, good));
            continue;
        }
        return Some((Position::Presented(j), parent, good));
    }
    fallback
}

/// Why `load_verify_locations` refuses the anchor.
#[derive(Debug, Clone)]
pub enum AnchorRefusal {
    /// Not one DER certificate (the parser's error, in words).
    NotDer(String),
    /// It parses as X.509 but the device's parser refuses it.
    Refused(Box<Cert>, certs::ParseRefusal),
}

impl AnchorRefusal {
    /// The mbedTLS error `load_verify_locations` raises.
    pub fn error(&self) -> DeviceError {
        match self {
            AnchorRefusal::NotDer(_) => device_error::INVALID_CERT_PEM,
            AnchorRefusal::Refused(_, r) => r.error(),
        }
    }
}

/// The first certificate of the peer's chain that stops the handshake
/// (`ssl_parse_certificate_chain` fails on it).
#[derive(Debug, Clone)]
pub enum ChainRefusal {
    /// Certificate `index` is not DER X.509 (the parser's error, in words).
    NotDer(usize, String),
    /// Certificate `index` parses but the device's parser refuses it.
    Refused(usize, Box<Cert>, certs::ParseRefusal),
}

impl ChainRefusal {
    /// Which certificate, as sent.
    pub fn index(&self) -> usize {
        match self {
            ChainRefusal::NotDer(i, _) | ChainRefusal::Refused(i, _, _) => *i,
        }
    }

    /// The mbedTLS error the handshake stops with.
    pub fn error(&self) -> DeviceError {
        match self {
            ChainRefusal::NotDer(..) => device_error::INVALID_CERT_PEM,
            ChainRefusal::Refused(_, _, r) => r.error(),
        }
    }
}

/// The peer's chain as the TLS layer keeps it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The certificates that parsed, in the order sent ([`Position::Presented`]
    /// indexes this list).
    pub chain: Vec<Cert>,
    /// Indices (as sent) of the certificates skipped for an unknown signature algorithm.
    pub skipped: Vec<usize>,
    /// The certificate that stopped the handshake, if one did (nothing after
    /// it was read).
    pub refusal: Option<ChainRefusal>,
}

/// One certificate as the device's X.509 parser takes it (the anchor as
/// `load_verify_locations` parses it, the device's own as `load_cert_chain` does).
pub fn load_anchor(profile: &Profile, der: &[u8]) -> Result<Cert, AnchorRefusal> {
    let anchor = Cert::parse(der).map_err(|e| AnchorRefusal::NotDer(e.to_string()))?;
    match certs::parse_refusal(profile, &anchor) {
        Some(r) => Err(AnchorRefusal::Refused(Box::new(anchor), r)),
        None => Ok(anchor),
    }
}

/// The peer's chain as the TLS layer parses it: certificates with an
/// unknown signature algorithm skipped, the first other refusal fatal.
pub fn receive_chain(profile: &Profile, chain: &[Vec<u8>]) -> Received {
    let mut received = Received {
        chain: Vec::new(),
        skipped: Vec::new(),
        refusal: None,
    };
    for (i, der) in chain.iter().enumerate() {
        let cert = match Cert::parse(der) {
            Ok(c) => c,
            Err(e) => {
                received.refusal = Some(ChainRefusal::NotDer(i, e.to_string()));
                break;
            }
        };
        match certs::parse_refusal(profile, &cert) {
            Some(r) if r.skipped_in_peer_chain() => received.skipped.push(i),
            Some(r) => {
                received.refusal = Some(ChainRefusal::Refused(i, Box::new(cert), r));
                break;
            }
            None => received.chain.push(cert),
        }
    }
    received
}

/// What the device does with DER as it receives it: the anchor parsed as
/// `load_verify_locations` parses it ([`load_anchor`]), the peer's chain as
/// the TLS layer parses it ([`receive_chain`]), then [`verify_chain`] on
/// what parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DerOutcome {
    /// The anchor did not load: mbedTLS's code.
    pub anchor_error: Option<i32>,
    /// The first chain certificate that stops the handshake: index and code.
    pub parse_error: Option<(usize, i32)>,
    /// Chain certificates skipped.
    pub skipped: Vec<usize>,
    /// The verification, when it ran.
    pub outcome: Option<Outcome>,
}

impl DerOutcome {
    /// The verify flags, when verification ran.
    pub fn flags(&self) -> Option<u32> {
        self.outcome.as_ref().map(Outcome::flags)
    }
}

/// Parses and verifies as the device does: see [`DerOutcome`].
pub fn verify_der(
    profile: &Profile,
    anchor: &[u8],
    chain: &[Vec<u8>],
    hostname: Option<&str>,
    time: OffsetDateTime,
) -> DerOutcome {
    let mut out = DerOutcome {
        anchor_error: None,
        parse_error: None,
        skipped: Vec::new(),
        outcome: None,
    };
    let anchor = match load_anchor(profile, anchor) {
        Ok(a) => a,
        Err(r) => {
            out.anchor_error = Some(r.error().code);
            return out;
        }
    };
    let received = receive_chain(profile, chain);
    out.skipped = received.skipped;
    if let Some(r) = &received.refusal {
        out.parse_error = Some((r.index(), r.error().code));
        return out;
    }
    if received.chain.is_empty() {
        return out;
    }
    out.outcome = Some(verify_chain(
        profile,
        &anchor,
        &received.chain,
        hostname,
        time,
    ));
    out
}

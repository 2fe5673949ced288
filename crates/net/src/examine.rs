//! The device's verdict on a server (`devtls doctor`): one conversation in
//! the device's own words ([`crate::hello`]), the chain checked by
//! `devtls_pki::verify`, and, when the server refuses the device's hello, a
//! wider hello to name what the server needs. All within one deadline.

use std::time::Duration;

use devtls_pki::profile::Profile;
use devtls_pki::verify::{self, Verdict};
use serde::Serialize;
use time::OffsetDateTime;

use crate::diagnose::{self, Needs};
use crate::hello::client_hello::Offer;
use crate::hello::device::{ChainCheck, Device, End, Identity, Outcome, Stage};
use crate::hello::drive::{self, Deadline, DriveError};
use crate::hello::keys::LeafKey;
use crate::hello::wire::Transport;

/// The server, and the device that connects to it.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    /// The server's host name or address.
    pub host: &'a str,
    /// Its port.
    pub port: u16,
    /// DTLS over UDP instead of TLS over TCP.
    pub dtls: bool,
    /// The device.
    pub profile: &'static Profile,
    /// `server_hostname` (SNI and the name checked).
    pub hostname: Option<&'a str>,
    /// The device's clock.
    pub time: OffsetDateTime,
    /// The whole operation's time limit.
    pub timeout: Duration,
}

/// What to examine.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The server and the device.
    pub server: Server<'a>,
    /// The device's one anchor (DER), if it loads.
    pub anchor: Option<&'a [u8]>,
    /// The device's certificate and key (mTLS).
    pub identity: Option<&'a Identity>,
}

/// What the handshake negotiated, as far as the device got.
#[derive(Debug, Clone, Serialize)]
pub struct Handshake {
    /// `TLSv1.2` or `DTLSv1.2`, once the server chose it.
    pub version: Option<String>,
    /// The suite the server chose (IANA name).
    pub suite: Option<String>,
    /// The key exchange group the server chose.
    pub group: Option<String>,
    /// The signature algorithm of the server's key exchange.
    pub signature_algorithm: Option<String>,
    /// The server asked for a client certificate.
    pub client_cert_requested: bool,
    /// DTLS: the server sent a HelloVerifyRequest cookie first.
    pub cookie_exchange: bool,
    /// DTLS mTLS: the device's flight ended with its real Finished, so the
    /// server's reaction to it (its ChangeCipherSpec, an alert, silence) is
    /// the verdict.
    pub device_finished: bool,
    /// How the conversation ended.
    pub end: End,
}

/// The device's verdict on a server.
#[derive(Debug, Clone, Serialize)]
pub struct Examination {
    /// `HOST:PORT`.
    pub target: String,
    /// What the handshake got to.
    pub handshake: Handshake,
    /// The chain the server presented, leaf first (from a wider hello when
    /// the server refused the device's).
    #[serde(skip)]
    pub chain: Vec<Vec<u8>>,
    /// The device would connect.
    pub works: bool,
    /// Why not, in the device's words, with the fix.
    pub failures: Vec<verify::Failure>,
    /// The chain's verdict (path, pinned leaf), when it was checked.
    #[serde(skip)]
    pub verdict: Option<Verdict>,
    /// What a wider hello found the server needs.
    pub needs: Option<Needs>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// Why there is no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExamineError {
    /// The profile does not describe the device's hello for this transport.
    #[error(
        "the {0} profile does not describe a device hello devtls can send; use --profile openmv"
    )]
    NoHello(&'static str),
    /// The server could not be reached or did not answer in time.
    #[error(transparent)]
    Drive(#[from] DriveError),
}

/// Examines a server as the device would connect to it.
pub fn examine(req: &Request<'_>) -> Result<Examination, ExamineError> {
    let deadline = Deadline::after(req.server.timeout);
    let transport = if req.server.dtls {
        Transport::Dtls
    } else {
        Transport::Tls
    };
    let offer = Offer::device(req.server.profile, transport)
        .ok_or(ExamineError::NoHello(req.server.profile.name))?;
    let target = drive::display(req.server.host, req.server.port);
    let device = Device {
        profile: req.server.profile,
        offer: offer.clone(),
        server_name: req.server.hostname,
        check: req.anchor.map(|anchor| ChainCheck {
            anchor,
            hostname: req.server.hostname,
            time: req.server.time,
            target: Some(&target),
        }),
        identity: req.identity,
    };
    let mut outcome = drive::converse(req.server.host, req.server.port, device, &deadline)?;
    let mut notes = Vec::new();
    let client_flight = transport == Transport::Dtls && outcome.found.certificate_request.is_some();
    if client_flight && !outcome.found.finished_sent {
        // A suite devtls cannot seal: the device's flight stopped before its Finished, and
        // silence was read as acceptance; a full handshake decides.
        if matches!(outcome.end, End::Proceeds) && dtls_finishes(req, &deadline) == Some(false) {
            outcome.end = End::ServerSilent;
        }
    } else if client_flight && matches!(outcome.end, End::ServerSilent) {
        // The verdict came from the server's silence after the device's
        // Finished; a full handshake by devtls's own client only confirms it.
        if dtls_finishes(req, &deadline) == Some(true) {
            notes.push(
                "devtls's own DTLS client then completed a handshake with the same files: the \
                 silence may have been lost datagrams; run doctor again"
                    .into(),
            );
        }
    }
    let mut chain = outcome.found.chain.clone();
    let mut needs = None;
    let refused_hello = matches!(
        outcome.end,
        End::ServerAlert {
            after: Stage::Hello,
            ..
        } | End::Closed {
            after: Stage::Hello
        }
    ) && outcome.found.server_hello.is_none();
    if refused_hello {
        let (found, wider_chain) = what_the_server_needs(req, &offer, &deadline);
        needs = found;
        if chain.is_empty() && !wider_chain.is_empty() {
            chain = wider_chain;
            notes.push(
                "the server refused the device's hello; the chain below is what it presents to a \
                 client offering more"
                    .into(),
            );
        }
    }
    let mut failures = Vec::new();
    if let Some(d) = diagnose::handshake(&outcome, needs.as_ref(), req.server.profile, &target) {
        failures.push(diagnose::as_failure(&d));
    }
    let mut verdict = outcome.chain_verdict.clone();
    if verdict.is_none() && !chain.is_empty() {
        if let Some(anchor) = req.anchor {
            // The device never got to check this chain; say what it would make of it.
            let v = verify::verify(&verify::Input {
                profile: req.server.profile,
                presented: &chain,
                anchor,
                hostname: req.server.hostname,
                time: req.server.time,
                now: OffsetDateTime::now_utc(),
                peer: verify::PeerRole::Server,
                target: Some(&target),
            });
            if !v.works && !failures.is_empty() {
                notes.push(
                    "the chain the server presented would fail on the device too (below)".into(),
                );
            }
            verdict = Some(v);
        }
    }
    if let Some(v) = &verdict {
        failures.extend(v.failures.iter().cloned());
    }
    let works = failures.is_empty()
        && matches!(outcome.end, End::Proceeds)
        && verdict.as_ref().is_some_and(|v| v.works);
    Ok(Examination {
        target,
        handshake: handshake_summary(&outcome, transport),
        chain,
        works,
        failures,
        verdict,
        needs,
        notes,
    })
}

fn handshake_summary(outcome: &Outcome, transport: Transport) -> Handshake {
    let f = &outcome.found;
    Handshake {
        version: f.server_hello.as_ref().map(|sh| {
            match (sh.version, transport) {
                (0x0303, _) => "TLSv1.2",
                (0xFEFD, _) => "DTLSv1.2",
                (0x0304, _) => "TLSv1.3",
                _ => "other",
            }
            .to_string()
        }),
        suite: f
            .server_hello
            .as_ref()
            .map(|sh| diagnose::suite_name(sh.suite)),
        group: f
            .key_exchange
            .as_ref()
            .map(|k| diagnose::group_name(k.group)),
        signature_algorithm: f
            .key_exchange
            .as_ref()
            .map(|k| diagnose::scheme_name(k.signature_algorithm)),
        client_cert_requested: f.certificate_request.is_some(),
        cookie_exchange: f.cookie_exchange,
        device_finished: f.finished_sent,
        end: outcome.end.clone(),
    }
}

// Over DTLS some servers (gnutls-serv) say nothing when they refuse the
// device's certificate flight: they just never finish. After the device's
// real Finished their silence is the verdict; devtls's own DTLS client (the
// device's ECDHE suites rtc-dtls implements) then completes the handshake
// only to confirm it, or to decide for a suite devtls cannot seal (none the
// device offers today). `None`: it could not try.
fn dtls_finishes(req: &Request<'_>, deadline: &Deadline) -> Option<bool> {
    use crate::dtls::{self, DtlsError};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let peer = *drive::resolve(req.server.host, req.server.port)
        .ok()?
        .first()?;
    let provider = crate::restrict::provider(req.server.profile);
    let identity = match req.identity {
        Some(id) => {
            let key = PrivateKeyDer::try_from(id.key.clone()).ok()?;
            let key = provider.key_provider.load_private_key(key).ok()?;
            Some((vec![CertificateDer::from(id.cert.clone())], key))
        }
        None => None,
    };
    let left = deadline
        .remaining()
        .saturating_sub(Duration::from_millis(200));
    if left.is_zero() {
        return None;
    }
    let options = dtls::ClientOptions {
        server_name: req.server.hostname.unwrap_or(req.server.host).to_string(),
        verifier: None, // the chain is judged by pki; only finishing matters here
        identity,
        profile: req.server.profile,
        timeout: left,
    };
    match dtls::connect(peer, &options, b"hello\n") {
        Ok(_) => Some(true),
        Err(f) => match f.error {
            DtlsError::NoReply { .. } => Some(true),
            DtlsError::Stalled { .. } | DtlsError::Silent { .. } | DtlsError::Alert(_) => {
                Some(false)
            }
            _ => None,
        },
    }
}

/// Suites, groups and signature algorithms a PC offers that the device does not.
const MORE_SUITES: &[u16] = &[
    0xCCA9, 0xCCA8, 0xC0AD, 0xC0AC, 0xC0AF, 0xC0AE, 0x009F, 0x009E, 0xCCAA, 0xC09D, 0xC09C, 0x0039,
    0x0033,
];
const MORE_GROUPS: &[u16] = &[29, 30, 22, 26, 27, 28, 256, 257];
const MORE_SCHEMES: &[u16] = &[
    0x0804, 0x0805, 0x0806, 0x0807, 0x0808, 0x0809, 0x080A, 0x080B, 0x081A, 0x081B, 0x081C, 0x0203,
    0x0201,
];

/// The device's offer and more (suites, groups and signature algorithms a
/// PC offers), TLS 1.2 / DTLS 1.2 only: what `anchor --dtls` sends to read a
/// server's chain from its first flight.
pub fn wide_offer(profile: &Profile, transport: Transport) -> Option<Offer> {
    Offer::device(profile, transport).map(|o| wider(&o, false))
}

fn wider(offer: &Offer, tls13: bool) -> Offer {
    let mut o = offer.clone();
    o.suites.extend_from_slice(MORE_SUITES);
    o.groups.extend_from_slice(MORE_GROUPS);
    o.signature_algorithms.extend_from_slice(MORE_SCHEMES);
    if tls13 && o.transport == Transport::Tls {
        let mut suites = vec![0x1301, 0x1302, 0x1303];
        suites.extend_from_slice(&o.suites);
        o.suites = suites;
        o.groups.retain(|g| *g != 29);
        o.groups.insert(0, 29);
        // supported_versions, psk_key_exchange_modes, key_share (X25519).
        o.extra_extensions.push((43, vec![4, 3, 4, 3, 3]));
        o.extra_extensions.push((45, vec![1, 1]));
        let share = crate::hello::keys::x25519_share();
        let mut ks = Vec::new();
        ks.extend_from_slice(&((share.len() + 4) as u16).to_be_bytes());
        ks.extend_from_slice(&29u16.to_be_bytes());
        ks.extend_from_slice(&(share.len() as u16).to_be_bytes());
        ks.extend_from_slice(&share);
        o.extra_extensions.push((51, ks));
    }
    o
}

// Wider hellos, within the same deadline: what does the server choose when
// offered more than the device offers?
fn what_the_server_needs(
    req: &Request<'_>,
    offer: &Offer,
    deadline: &Deadline,
) -> (Option<Needs>, Vec<Vec<u8>>) {
    let mut chain = Vec::new();
    for tls13 in [false, true] {
        if deadline.passed() || (tls13 && offer.transport == Transport::Dtls) {
            break;
        }
        let device = Device {
            profile: req.server.profile,
            offer: wider(offer, tls13),
            server_name: req.server.hostname,
            check: None,
            identity: None,
        };
        let Ok(outcome) = drive::converse(req.server.host, req.server.port, device, deadline)
        else {
            break;
        };
        if chain.is_empty() {
            chain = outcome.found.chain.clone();
        }
        if let Some(n) = needs_from(&outcome, offer) {
            return (Some(n), chain);
        }
    }
    (None, chain)
}

fn needs_from(outcome: &Outcome, offer: &Offer) -> Option<Needs> {
    let f = &outcome.found;
    let sh = f.server_hello.as_ref()?;
    if sh.version == 0x0304 {
        return Some(Needs::Tls13);
    }
    if !offer.suites.contains(&sh.suite) {
        return Some(Needs::Suite(diagnose::suite_name(sh.suite)));
    }
    if let Some(k) = &f.key_exchange {
        if !offer.groups.contains(&k.group) {
            return Some(Needs::Group(diagnose::group_name(k.group)));
        }
        if !offer.signature_algorithms.contains(&k.signature_algorithm) {
            return Some(Needs::SignatureAlgorithm(diagnose::scheme_name(
                k.signature_algorithm,
            )));
        }
    }
    let leaf = LeafKey::of(f.chain.first()?).ok()?;
    match leaf.tls_group() {
        Some(g) if offer.groups.contains(&g) => None,
        _ => leaf
            .curve_name()
            .map(|c| Needs::CertificateCurve(c.to_string())),
    }
}

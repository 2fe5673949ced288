//! Why a handshake failed, in plain words, with the fix and the words the
//! device prints for the same failure (`devtls_pki::device_error`).
//!
//! A failure is seen from one side ([`Side`]): `connect` diagnoses the
//! server it talked to as the device-as-client would, `serve` diagnoses each
//! client as the device-as-server would.

use std::io;
use std::time::SystemTime;

use devtls_pki::device_error::{self, flags, DeviceError, Outcomes, Raised};
use devtls_pki::profile::{Profile, TlsVersion};
use rustls::{AlertDescription, CertificateError, PeerIncompatible};
use serde::Serialize;

use crate::report::CertSummary;

/// How a connection attempt ended badly, before interpretation.
#[derive(Debug)]
pub enum Failure {
    /// The TCP connection could not be made.
    Connect(io::Error),
    /// Nothing happened within the time limit, at this stage.
    Timeout(&'static str),
    /// TLS said no (our side's check or the peer's alert).
    Tls(rustls::Error),
    /// The peer closed or reset the connection mid-handshake.
    Closed,
    /// Another I/O error.
    Io(io::Error),
    /// The client ended the handshake on purpose, as a probe does (seen
    /// by the server: [`Failure::seen_with`]).
    Probe(ClientEnding),
}

/// How a client that meant to stop before the end of the handshake said
/// so, in the records it sent (`devtls doctor`'s endings: docs/device-behaviour.md,
/// "How doctor talks to a server").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEnding {
    /// A warning `user_canceled` alert (then `close_notify`) before its key
    /// exchange: it read the server's hello and certificate and stopped.
    Canceled,
    /// After its certificate, key exchange and ChangeCipherSpec, a Finished
    /// of 40 zero bytes, made to be refused: the server's answer tells the
    /// prober whether it accepted everything before.
    StandInFinished,
}

impl Failure {
    /// Classifies an I/O error from tokio-rustls, which wraps rustls errors in `io::Error`.
    pub fn from_io(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            let inner = e.into_inner().expect("checked above");
            return Failure::Tls(*inner.downcast::<rustls::Error>().expect("checked above"));
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure::Closed,
            io::ErrorKind::TimedOut => Failure::Timeout("handshake"),
            _ => Failure::Io(e),
        }
    }

    /// The failure as the server explains it, given how the client ended
    /// (what it sent last): a close after `user_canceled`, or the refusal of
    /// a stand-in Finished, is a probe, not a failure. Any other failure
    /// (e.g. a client certificate refused before that Finished) stays.
    pub fn seen_with(self, ending: Option<ClientEnding>) -> Self {
        let probe = match (ending, &self) {
            (Some(e @ ClientEnding::Canceled), Failure::Closed)
            | (
                Some(e @ ClientEnding::StandInFinished),
                Failure::Closed | Failure::Tls(rustls::Error::DecryptError),
            ) => Some(e),
            _ => None,
        };
        probe.map_or(self, Failure::Probe)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Timeout(stage) => write!(f, "timeout during {stage}"),
            Failure::Tls(e) => write!(f, "{e}"),
            Failure::Closed => f.write_str("peer closed the connection"),
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Probe(ending) => {
                write!(f, "the client ended the handshake on purpose ({ending:?})")
            }
        }
    }
}

/// Which side devtls played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// devtls was the client (`connect`): the device-as-client's view.
    Client,
    /// devtls was the server (`serve`): the device-as-server's view.
    Server,
    /// devtls was the client of the device itself, which is the server
    /// (the gateway's inbound route): what failed is told as for
    /// [`Side::Client`], but the device's words are those the device, as
    /// the server, raises when this client fails it.
    ClientOfDevice,
    /// devtls was the server of the device itself, which is the client (a
    /// device connecting to the gateway): what failed is told as for
    /// [`Side::Server`], but the device's words are those the device, as
    /// the client, raises.
    ServerOfDevice,
}

/// What the failed attempt learnt besides the error.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Which side devtls played.
    pub side: Side,
    /// The profile devtls behaved like.
    pub profile: &'a Profile,
    /// The name checked against the server certificate (client side).
    pub server_name: &'a str,
    /// What the anchors were, for the fix (e.g. `--ca server.der` or `the Mozilla roots`).
    pub anchors: &'a str,
    /// The chain the peer presented, leaf first (possibly empty).
    pub presented: &'a [CertSummary],
    /// The server asked for a client certificate (client side).
    pub asked_for_cert: bool,
    /// devtls had a client certificate to send (client side).
    pub sent_cert: bool,
    /// What an unrestricted, unverified retry negotiated, if one was made.
    pub probe: Option<&'a Probe>,
}

/// What the server offers when asked without device restrictions, to explain
/// a refusal (e.g. "it only speaks TLS 1.3", "its key is Ed25519").
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The protocol version it chose, e.g. `TLSv1.3`.
    pub version: String,
    /// The certificate it presented.
    pub leaf: Option<CertSummary>,
}

/// A short name for the kind of failure, stable for scripts and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The certificate is not for the name that was checked.
    WrongHostName,
    /// A certificate's notAfter has passed.
    Expired,
    /// A certificate's notBefore is still to come.
    NotYetValid,
    /// The chain does not lead to the anchors.
    UnknownCa,
    /// The certificate is revoked by a given CRL.
    Revoked,
    /// A signature algorithm or key the profile refuses.
    UnacceptableAlgorithm,
    /// The peer's key type is one the profile cannot use (e.g. Ed25519).
    RefusedKeyType,
    /// The server demanded a client certificate and none was sent.
    ClientCertMissing,
    /// The client certificate was not accepted.
    ClientCertRejected,
    /// The peer's key does not belong to its certificate (its handshake
    /// signature does not verify with the certificate's key).
    KeyMismatch,
    /// No protocol version in common.
    NoCommonVersion,
    /// No cipher suite, group or signature algorithm in common.
    NothingInCommon,
    /// The peer does not speak TLS.
    NotTls,
    /// The peer closed the connection during the handshake.
    PeerClosed,
    /// Not a failure: a client (e.g. `devtls doctor`) ended the handshake
    /// on purpose once it had learnt what it came for.
    Probe,
    /// Nothing happened in time.
    Timeout,
    /// No TCP connection.
    ConnectFailed,
    /// devtls's verifier cannot check the certificate (e.g. X.509 v1), though the device may.
    Unverifiable,
    /// The peer refused us for a reason it did not spell out.
    Refused,
    /// Anything else.
    Other,
}

/// The device's words for a failure.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceWords {
    /// The mbedTLS error code, e.g. -9984.
    pub code: i32,
    /// The code in mbedTLS's spelling, e.g. `-0x2700`.
    pub hex: String,
    /// The mbedTLS macro name.
    pub name: &'static str,
    /// The line a MicroPython script prints (every possible line, joined
    /// with ` or `, when [`outcomes`](Self::outcomes) holds several).
    pub printed: String,
    /// Every exception the script may see, when the peer's timing decides
    /// between several (the fields above then name the first mbedTLS one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Outcomes>,
}

impl DeviceWords {
    fn oserror(e: &DeviceError) -> Self {
        DeviceWords {
            code: e.code,
            hex: e.hex(),
            name: e.name,
            printed: e.as_oserror(),
            outcomes: None,
        }
    }

    /// Words for a failure where the script may see any of `outcomes`.
    fn any_of(outcomes: Outcomes) -> Self {
        let first = outcomes
            .raised
            .iter()
            .find_map(|r| match r {
                Raised::Mbedtls(e) => Some(*e),
                Raised::Errno(_) => None,
            })
            .unwrap_or(device_error::FATAL_ALERT);
        DeviceWords {
            printed: outcomes.printed(),
            outcomes: Some(outcomes),
            ..DeviceWords::oserror(&first)
        }
    }

    /// A verification that failed with `flags`: the script's `ValueError`
    /// holds one line per flag, as `mbedtls_x509_crt_verify_info` writes them.
    fn verify_failed(flags: u32) -> Self {
        let e = device_error::CERT_VERIFY_FAILED;
        DeviceWords {
            code: e.code,
            hex: e.hex(),
            name: e.name,
            printed: flags::value_error(flags),
            outcomes: None,
        }
    }
}

/// A failure explained.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// The kind of failure.
    pub reason: Reason,
    /// What failed, in plain words.
    pub what: String,
    /// What to do about it.
    pub fix: String,
    /// What the device prints for the same failure, when it fails the same way.
    pub device: Option<DeviceWords>,
    /// The underlying error, for the curious.
    pub detail: String,
}

/// Explains `failure` in `ctx`.
pub fn diagnose(failure: &Failure, ctx: &Context<'_>) -> Diagnosis {
    let detail = failure.to_string();
    let (reason, what, fix, device) = match ctx.side {
        Side::Client => client_side(failure, ctx),
        Side::Server => server_side(failure, ctx),
        Side::ClientOfDevice => {
            let (reason, what, fix, _as_client) = client_side(failure, ctx);
            (reason, what, fix, device_as_server(reason))
        }
        Side::ServerOfDevice => {
            let (reason, what, fix, _as_server) = server_side(failure, ctx);
            (reason, what, fix, device_as_client(reason))
        }
    };
    Diagnosis {
        reason,
        what,
        fix,
        device,
        detail,
    }
}

type Parts = (Reason, String, String, Option<DeviceWords>);

/// What the device, as the client, raises in `wrap_socket` when devtls,
/// its server, fails it for `reason` (measured: docs/device-behaviour.md).
fn device_as_client(reason: Reason) -> Option<DeviceWords> {
    Some(match reason {
        // devtls refused the device's certificate, or it sent none: its
        // alert and close meet the device still writing its flight.
        Reason::ClientCertMissing
        | Reason::ClientCertRejected
        | Reason::Expired
        | Reason::NotYetValid
        | Reason::UnknownCa
        | Reason::Revoked
        | Reason::UnacceptableAlgorithm
        | Reason::RefusedKeyType
        | Reason::Unverifiable => DeviceWords::any_of(device_error::CLIENT_CERT_REFUSED),
        Reason::KeyMismatch => DeviceWords::any_of(device_error::KEY_MISMATCH),
        // The device refused devtls's certificate: its own verify failure.
        Reason::Refused | Reason::WrongHostName => {
            DeviceWords::oserror(&device_error::CERT_VERIFY_FAILED)
        }
        Reason::NoCommonVersion | Reason::NothingInCommon => {
            DeviceWords::oserror(&device_error::FATAL_ALERT)
        }
        Reason::NotTls
        | Reason::PeerClosed
        | Reason::Timeout
        | Reason::ConnectFailed
        | Reason::Probe
        | Reason::Other => return None,
    })
}

/// What the device, as the server, raises in `wrap_socket(...,
/// server_side=True)` when its client (devtls) fails the handshake for
/// `reason`; `None` when the device sees nothing of it (no connection, or
/// it is not TLS) or devtls cannot tell.
fn device_as_server(reason: Reason) -> Option<DeviceWords> {
    let error = match reason {
        // devtls refused the device's certificate or found nothing it
        // accepts: it sends a fatal alert, which the device reads.
        Reason::WrongHostName
        | Reason::Expired
        | Reason::NotYetValid
        | Reason::UnknownCa
        | Reason::Revoked
        | Reason::UnacceptableAlgorithm
        | Reason::RefusedKeyType
        | Reason::Unverifiable
        | Reason::KeyMismatch => &device_error::FATAL_ALERT,
        // The device demanded a client certificate and devtls had none.
        Reason::ClientCertMissing => &device_error::NO_CLIENT_CERTIFICATE,
        // The device refused devtls's client certificate: its own verify
        // failure (a ValueError with the verify text).
        Reason::ClientCertRejected => &device_error::CERT_VERIFY_FAILED,
        // The device found nothing in common with devtls's hello.
        Reason::NoCommonVersion | Reason::NothingInCommon => &device_error::HANDSHAKE_FAILURE,
        Reason::NotTls
        | Reason::PeerClosed
        | Reason::Timeout
        | Reason::ConnectFailed
        | Reason::Refused
        | Reason::Probe
        | Reason::Other => return None,
    };
    Some(DeviceWords::oserror(error))
}

fn client_side(failure: &Failure, ctx: &Context<'_>) -> Parts {
    let leaf = ctx.presented.first();
    let name = ctx.server_name;
    let fatal = Some(DeviceWords::oserror(&device_error::FATAL_ALERT));
    match failure {
        Failure::Tls(rustls::Error::InvalidCertificate(cert_error)) => {
            certificate_error(cert_error, ctx, "server")
        }
        Failure::Tls(rustls::Error::AlertReceived(alert)) => match alert {
            AlertDescription::ProtocolVersion => no_common_version(ctx),
            AlertDescription::CertificateRequired => client_cert_missing(ctx),
            _ if ctx.asked_for_cert && !ctx.sent_cert => client_cert_missing(ctx),
            AlertDescription::HandshakeFailure
            | AlertDescription::InsufficientSecurity
            | AlertDescription::IllegalParameter => {
                if ctx.asked_for_cert && ctx.sent_cert {
                    client_cert_rejected(ctx, alert)
                } else {
                    nothing_in_common(ctx)
                }
            }
            _ if ctx.asked_for_cert && ctx.sent_cert => client_cert_rejected(ctx, alert),
            _ => (
                Reason::Refused,
                format!("the server refused the handshake with the alert '{alert:?}'"),
                "look at the server's log for why it refused".into(),
                fatal,
            ),
        },
        Failure::Tls(rustls::Error::PeerIncompatible(p)) => match p {
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled => no_common_version(ctx),
            _ => nothing_in_common(ctx),
        },
        Failure::Tls(rustls::Error::PeerMisbehaved(_))
        | Failure::Tls(rustls::Error::InvalidMessage(_))
        | Failure::Tls(rustls::Error::InappropriateMessage { .. })
        | Failure::Tls(rustls::Error::InappropriateHandshakeMessage { .. })
            if leaf.is_none() =>
        {
            not_tls()
        }
        Failure::Closed if ctx.asked_for_cert && !ctx.sent_cert => client_cert_missing(ctx),
        Failure::Closed => (
            Reason::PeerClosed,
            "the server closed the connection during the handshake".into(),
            format!(
                "the server gave up on the device's offer or is not a TLS server on this port; \
                 check its log, the port, and that it accepts {}",
                offer(ctx.profile)
            ),
            Some(DeviceWords::oserror(&device_error::CONN_EOF)),
        ),
        Failure::Timeout(stage) => (
            Reason::Timeout,
            format!("no answer from the server during the {stage} in time"),
            format!(
                "check that {name} is the right host and port and that a TLS server answers there \
                 (a firewall may drop packets); raise --timeout if the link is slow"
            ),
            None,
        ),
        Failure::Connect(e) => (
            Reason::ConnectFailed,
            format!("could not open a TCP connection ({e})"),
            "check the host and port and that the server is running and reachable".into(),
            None,
        ),
        other => (
            Reason::Other,
            format!("the handshake failed: {other}"),
            "run again with --json and look at `detail`; compare with `openssl s_client`".into(),
            None,
        ),
    }
}

fn server_side(failure: &Failure, ctx: &Context<'_>) -> Parts {
    match failure {
        Failure::Tls(rustls::Error::NoCertificatesPresented) => (
            Reason::ClientCertMissing,
            "the client sent no certificate, but this server demands one (--ca)".into(),
            "give the client its certificate and key (devtls connect --cert client.der --key \
             client.key.der; on the device ctx.load_cert_chain(\"client.der\", \"client.key.der\"))"
                .into(),
            Some(DeviceWords::oserror(&device_error::NO_CLIENT_CERTIFICATE)),
        ),
        Failure::Tls(rustls::Error::InvalidCertificate(cert_error)) => {
            certificate_error(cert_error, ctx, "client")
        }
        Failure::Tls(rustls::Error::PeerIncompatible(_)) => (
            Reason::NothingInCommon,
            format!(
                "the client offered no protocol version, cipher suite, group or signature \
                 algorithm this server accepts ({} profile: {})",
                ctx.profile.name,
                offer(ctx.profile)
            ),
            "serve with a profile the client matches (--profile modern for PC clients), or \
             configure the client to offer one of those"
                .into(),
            Some(DeviceWords::oserror(&device_error::HANDSHAKE_FAILURE)),
        ),
        Failure::Tls(rustls::Error::AlertReceived(alert)) => (
            Reason::Refused,
            format!("the client refused this server (alert '{alert:?}'), usually its certificate"),
            "give the client this server's certificate (or its CA) as trust anchor and connect \
             with a name the certificate lists"
                .into(),
            Some(DeviceWords::oserror(&device_error::FATAL_ALERT)),
        ),
        Failure::Tls(rustls::Error::InvalidMessage(_))
        | Failure::Tls(rustls::Error::PeerMisbehaved(_))
        | Failure::Tls(rustls::Error::InappropriateMessage { .. })
        | Failure::Tls(rustls::Error::InappropriateHandshakeMessage { .. }) => not_tls(),
        Failure::Probe(ClientEnding::Canceled) => (
            Reason::Probe,
            "not a failure: the client read this server's hello and certificate, then \
             ended the handshake on purpose (user_canceled, close_notify), as `devtls doctor` does"
                .into(),
            "nothing to fix; `devtls connect` or the device makes a whole exchange".into(),
            None,
        ),
        Failure::Probe(ClientEnding::StandInFinished) => (
            Reason::Probe,
            if ctx.presented.is_empty() {
                "not a failure: after its key exchange the client sent a Finished made \
                 to be refused, as `devtls doctor` does to learn whether this server accepts the \
                 device"
                    .to_string()
            } else {
                "not a failure: this server accepted the client's certificate, then the \
                 client sent a Finished made to be refused, as `devtls doctor --cert` does to \
                 learn whether this server accepts the device"
                    .to_string()
            },
            "nothing to fix; `devtls connect` or the device makes a whole exchange".into(),
            None,
        ),
        Failure::Closed => (
            Reason::PeerClosed,
            "the client closed the connection during the handshake".into(),
            "the client gave up: it probably refused this server's certificate or found \
             nothing in common; check the client's error"
                .into(),
            Some(DeviceWords::oserror(&device_error::CONN_EOF)),
        ),
        Failure::Timeout(stage) => (
            Reason::Timeout,
            format!("the client stalled: no complete {stage} in time, dropped"),
            "a slow or stuck client; nothing to fix on the server".into(),
            None,
        ),
        other => (
            Reason::Other,
            format!("the handshake failed: {other}"),
            "compare with `openssl s_server` to see whether the client works elsewhere".into(),
            None,
        ),
    }
}

fn certificate_error(error: &CertificateError, ctx: &Context<'_>, whose: &str) -> Parts {
    let leaf = ctx.presented.first();
    let now = time::OffsetDateTime::from(SystemTime::now());
    match error {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = leaf.map(|l| {
                if l.names.is_empty() {
                    format!("no SAN, CN {}", l.common_name())
                } else {
                    l.names.join(", ")
                }
            });
            let fix = match leaf.and_then(|l| l.names.first().cloned()) {
                Some(first) => format!(
                    "connect with a name the certificate lists (--hostname {first}; on the device \
                     server_hostname=\"{first}\"), or make the certificate for '{}' \
                     (devtls new server --dns NAME / --ip ADDR)",
                    ctx.server_name
                ),
                None => format!(
                    "make the certificate for '{}' (devtls new server --dns NAME / --ip ADDR)",
                    ctx.server_name
                ),
            };
            (
                Reason::WrongHostName,
                format!(
                    "the {whose}'s certificate is not for '{}'{}",
                    ctx.server_name,
                    names.map(|n| format!(" (it is for: {n})")).unwrap_or_default()
                ),
                fix,
                Some(DeviceWords::verify_failed(flags::CN_MISMATCH)),
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let when = ctx
                .presented
                .iter()
                .find(|c| parse_time(&c.not_after).is_some_and(|t| t < now))
                .or(leaf)
                .map(|c| format!(" ({}: expired {})", c.subject, c.not_after))
                .unwrap_or_default();
            (
                Reason::Expired,
                format!("the {whose}'s certificate has expired{when}"),
                format!(
                    "renew the {whose}'s certificate (devtls new {whose}, or your CA) and install it"
                ),
                Some(DeviceWords::verify_failed(flags::EXPIRED)),
            )
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let when = ctx
                .presented
                .iter()
                .find(|c| parse_time(&c.not_before).is_some_and(|t| t > now))
                .or(leaf)
                .map(|c| format!(" ({}: valid from {})", c.subject, c.not_before))
                .unwrap_or_default();
            (
                Reason::NotYetValid,
                format!("the {whose}'s certificate is not valid yet{when}"),
                "check the clocks: a certificate dated in the future was made on a machine whose \
                 clock is ahead; on the device set the clock first (ntptime.settime())"
                    .into(),
                Some(DeviceWords::verify_failed(flags::FUTURE)),
            )
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
            if matches!(ctx.side, Side::Server | Side::ServerOfDevice) {
                Reason::ClientCertRejected
            } else {
                Reason::UnacceptableAlgorithm
            },
            format!(
                "the {whose}'s certificate is not made for a TLS {whose} (extended key usage)"
            ),
            format!("make it with the {whose} role (devtls new {whose})"),
            // The usage check runs in the TLS layer after X.509 verification:
            // alone, it fails the handshake with BAD_CERTIFICATE (pki::verify).
            Some(DeviceWords::oserror(&device_error::BAD_CERTIFICATE)),
        ),
        e if crate::verify::is_certificate_verify_failure(e) => {
            // The device as server checks the CertificateVerify with the
            // certificate's key and raises the public-key error (measured
            // with a MicroPython server: ECP_VERIFY_FAILED for an EC key).
            let rsa = leaf.is_some_and(|l| l.key.starts_with("RSA"));
            (
                Reason::KeyMismatch,
                format!(
                    "the {whose}'s key does not belong to its certificate{}: its CertificateVerify \
                     does not verify with the certificate's public key (the certificate itself \
                     was accepted)",
                    leaf.map(|l| format!(" ({})", l.subject)).unwrap_or_default()
                ),
                format!(
                    "give the {whose} the key its certificate was made with (on the device \
                     load_cert_chain(\"{whose}.der\", \"{whose}.key.der\") with the pair from \
                     the same `devtls new {whose}`); `devtls lint {whose}.der {whose}.key.der` \
                     checks the pair"
                ),
                Some(DeviceWords::oserror(if rsa {
                    &device_error::RSA_VERIFY_FAILED
                } else {
                    &device_error::ECP_VERIFY_FAILED
                })),
            )
        }
        _ if leaf.is_some_and(|l| l.key == "Ed25519") && !ctx.profile.ed25519 => {
            refused_key(ctx, "Ed25519")
        }
        CertificateError::UnknownIssuer
        | CertificateError::BadSignature
        | CertificateError::UnhandledCriticalExtension => {
            let issuer = leaf
                .map(|l| format!(" (issued by {})", l.issuer))
                .unwrap_or_default();
            let (reason, what, fix) = match ctx.side {
                Side::Client | Side::ClientOfDevice => (
                    Reason::UnknownCa,
                    format!(
                        "the server's certificate does not chain to the trust anchor ({}){issuer}",
                        ctx.anchors
                    ),
                    "give the certificate that issued it as --ca (on the device \
                     load_verify_locations): for a self-signed server its own server.der, for a \
                     public server `devtls anchor HOST`"
                        .to_string(),
                ),
                Side::Server | Side::ServerOfDevice => (
                    Reason::ClientCertRejected,
                    format!(
                        "the client's certificate is not signed by the CA this server trusts ({}){issuer}",
                        ctx.anchors
                    ),
                    "give the client a certificate from that CA, or pass the client's own \
                     certificate (or its CA) as --ca"
                        .to_string(),
                ),
            };
            (
                reason,
                what,
                fix,
                Some(DeviceWords::verify_failed(flags::NOT_TRUSTED)),
            )
        }
        CertificateError::Revoked => (
            Reason::Revoked,
            format!("the {whose}'s certificate is revoked by the given CRL"),
            format!("issue the {whose} a new certificate (devtls fleet rotate) or remove it from the CRL"),
            // MicroPython's ssl has no CRL support: the device itself never says this.
            None,
        ),
        CertificateError::Other(other) => {
            let v1 = matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::UnsupportedCertVersion)
            );
            if v1 {
                (
                    Reason::Unverifiable,
                    format!(
                        "the {whose}'s certificate is X.509 v1: the device accepts it, but \
                         devtls's verifier (rustls-webpki) cannot check it"
                    ),
                    "re-issue it as v3, with extensions (devtls new, or openssl x509 -req ... \
                     -extfile ext.cnf); --insecure shows the rest of the exchange meanwhile"
                        .into(),
                    None,
                )
            } else {
                (
                    Reason::Unverifiable,
                    format!("devtls's verifier refused the {whose}'s certificate ({other})"),
                    "look at the certificate (openssl x509 -text -noout -in FILE); re-issue it \
                     with devtls new if it is malformed"
                        .into(),
                    Some(DeviceWords::oserror(&device_error::CERT_VERIFY_FAILED)),
                )
            }
        }
        _ => (
            Reason::UnacceptableAlgorithm,
            format!(
                "the {whose}'s certificate uses a signature algorithm or key the {} profile \
                 refuses ({error:?})",
                ctx.profile.name
            ),
            format!(
                "reissue it with a key and signature the {} profile accepts (devtls new \
                 {whose} --key p256; `devtls profiles {}` lists them)",
                ctx.profile.name, ctx.profile.name
            ),
            Some(DeviceWords::verify_failed(flags::BAD_KEY)),
        ),
    }
}

fn refused_key(ctx: &Context<'_>, key: &str) -> Parts {
    (
        Reason::RefusedKeyType,
        format!(
            "the server's certificate has an {key} key, which the {} profile (the device) \
             cannot use",
            ctx.profile.name
        ),
        "give the server a P-256 certificate (devtls new server --key p256), or test with \
         --profile modern if no device will connect"
            .into(),
        Some(DeviceWords::oserror(&device_error::FATAL_ALERT)),
    )
}

fn no_common_version(ctx: &Context<'_>) -> Parts {
    let ours = versions(ctx.profile);
    let theirs = ctx
        .probe
        .map(|p| format!(" (it answers {} when allowed)", p.version))
        .unwrap_or_default();
    (
        Reason::NoCommonVersion,
        format!(
            "the server speaks no protocol version the {} profile offers ({ours}){theirs}",
            ctx.profile.name
        ),
        format!(
            "enable {ours} on the server (e.g. nginx ssl_protocols TLSv1.2 TLSv1.3; openssl \
             s_server without -tls1_3); the device cannot speak anything else"
        ),
        Some(DeviceWords::oserror(&device_error::FATAL_ALERT)),
    )
}

fn nothing_in_common(ctx: &Context<'_>) -> Parts {
    if let Some(key) = ctx
        .probe
        .and_then(|p| p.leaf.as_ref())
        .map(|l| l.key.as_str())
        .filter(|k| *k == "Ed25519" && !ctx.profile.ed25519)
    {
        return refused_key(ctx, key);
    }
    let offer = offer(ctx.profile);
    (
        Reason::NothingInCommon,
        format!(
            "the server found no cipher suite, group or signature algorithm in common with the \
             {} profile, which offers {offer}",
            ctx.profile.name
        ),
        format!(
            "let the server accept one of those (suites, groups) and give it a certificate whose \
             key the {} profile accepts (devtls new server --key p256)",
            ctx.profile.name
        ),
        Some(DeviceWords::oserror(&device_error::FATAL_ALERT)),
    )
}

/// What a device-restricted devtls endpoint offers, from the profile.
fn offer(profile: &Profile) -> String {
    let suites: Vec<String> = crate::restrict::provider(profile)
        .cipher_suites
        .iter()
        .map(|s| {
            s.suite()
                .as_str()
                .map_or_else(|| format!("{:?}", s.suite()), str::to_string)
        })
        .collect();
    let groups: Vec<String> = profile.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut refused = Vec::new();
    if !profile.rsa_pss {
        refused.push("RSA-PSS");
    }
    if !profile.ed25519 {
        refused.push("Ed25519");
    }
    let refused = if refused.is_empty() {
        String::new()
    } else {
        format!("; no {}", refused.join(", no "))
    };
    format!(
        "{} with {} over groups {}{refused}",
        versions(profile),
        suites.join(", "),
        groups.join(", ")
    )
}

fn client_cert_missing(_ctx: &Context<'_>) -> Parts {
    (
        Reason::ClientCertMissing,
        "the server demands a client certificate (mutual TLS) and none was sent".into(),
        "pass --cert client.der --key client.key.der (on the device \
         ctx.load_cert_chain(\"client.der\", \"client.key.der\")), with a certificate the \
         server's CA signed"
            .into(),
        Some(DeviceWords::any_of(device_error::CLIENT_CERT_REFUSED)),
    )
}

fn client_cert_rejected(_ctx: &Context<'_>, alert: &AlertDescription) -> Parts {
    (
        Reason::ClientCertRejected,
        format!(
            "the server refused the client certificate (alert '{alert:?}'): it is not signed by \
             a CA the server trusts, expired, or revoked"
        ),
        "use a client certificate the server's --ca signed (or give the server this client's \
         certificate as its CA)"
            .into(),
        Some(DeviceWords::any_of(device_error::CLIENT_CERT_REFUSED)),
    )
}

fn not_tls() -> Parts {
    (
        Reason::NotTls,
        "the peer does not speak TLS (plain text, HTTP or another protocol on this port)".into(),
        "use the TLS port (e.g. 443/8443/8883, not 80/1883), or put TLS in front of the service"
            .into(),
        Some(DeviceWords::oserror(&device_error::INVALID_RECORD)),
    )
}

fn versions(profile: &Profile) -> String {
    let names: Vec<&str> = profile
        .versions
        .iter()
        .filter_map(|v| match v {
            TlsVersion::Tls12 => Some("TLS 1.2"),
            TlsVersion::Tls13 => Some("TLS 1.3"),
            TlsVersion::Dtls12 => None,
        })
        .collect();
    names.join(" and ")
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

// The device's own hello (doctor): how its conversation with a server ended,
// named in the device's words. One path with the rustls-based failures above:
// the same reasons, the same device words.

/// What a wider hello found the server needs that the device lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Needs {
    /// TLS 1.3.
    Tls13,
    /// A cipher suite the device lacks (its name).
    Suite(String),
    /// A key exchange group the device lacks (e.g. X25519).
    Group(String),
    /// A handshake signature algorithm the device lacks (e.g. RSA-PSS).
    SignatureAlgorithm(String),
    /// The server's certificate key is on a curve the device does not offer.
    CertificateCurve(String),
}

/// Explains how the device's conversation ended, `None` when it proceeds
/// or the chain (reported by `devtls_pki::verify`) is what failed.
pub fn handshake(
    outcome: &crate::hello::device::Outcome,
    needs: Option<&Needs>,
    profile: &Profile,
    target: &str,
) -> Option<Diagnosis> {
    use crate::hello::device::{End, RefusalKind, Stage};
    let fatal = || Some(DeviceWords::oserror(&device_error::FATAL_ALERT));
    let groups: Vec<String> = profile
        .groups
        .iter()
        .map(|g| group_name(g.tls_group()))
        .collect();
    let ours = versions(profile);
    let (reason, what, fix, device, detail) = match &outcome.end {
        End::Proceeds | End::ChainRefused => return None,
        End::NotTls { detail } => {
            let (r, w, f, d) = not_tls();
            (r, format!("{target}: {w}"), f, d, detail.clone())
        }
        End::DeviceRefuses(r) => {
            let fix = match r.kind {
                RefusalKind::Signature => "the server's key exchange signature does not match its certificate: give the server the key that belongs to its certificate",
                RefusalKind::OwnKey => "give the device a key it can sign with (ECDSA P-256 or RSA 2048, devtls new client)",
                _ => "the server answered with something the device did not offer: check the server's TLS configuration (openssl s_client -tls1_2 shows what it sends)",
            };
            (
                Reason::Other,
                r.why.clone(),
                fix.to_string(),
                Some(DeviceWords::oserror(&r.error)),
                r.why.clone(),
            )
        }
        End::ServerAlert {
            name,
            after: Stage::ClientFlight,
            ..
        } => {
            let sent = outcome.found.sent_certificate.unwrap_or(false);
            if sent {
                (
                    Reason::ClientCertRejected,
                    format!("the server refused the device's own certificate (alert {name})"),
                    "issue the device's certificate from the CA the server trusts, with \
                     extendedKeyUsage clientAuth, and check it is in date"
                        .into(),
                    Some(DeviceWords::any_of(device_error::CLIENT_CERT_REFUSED)),
                    format!("alert {name}"),
                )
            } else {
                (
                    Reason::ClientCertMissing,
                    "the server demands a client certificate and the device sends none".into(),
                    "load the device's certificate with ctx.load_cert_chain(\"client.der\", \
                     \"client.key.der\") (doctor: --cert --key)"
                        .into(),
                    Some(DeviceWords::any_of(device_error::CLIENT_CERT_REFUSED)),
                    format!("alert {name}"),
                )
            }
        }
        End::ServerSilent => {
            let sent = outcome.found.sent_certificate.unwrap_or(false);
            (
                if sent {
                    Reason::ClientCertRejected
                } else {
                    Reason::ClientCertMissing
                },
                format!(
                    "the server asked for a client certificate, then went silent after the device's {} \
                     and never finished the handshake (devtls's own DTLS client could not finish it \
                     either): the device waits until it times out",
                    if sent { "certificate" } else { "empty certificate message" }
                ),
                if sent {
                    "issue the device's certificate from the CA the server trusts (the server \
                     refuses it without an alert)"
                        .into()
                } else {
                    "load the device's certificate with ctx.load_cert_chain(\"client.der\", \
                     \"client.key.der\") (doctor: --cert --key)"
                        .into()
                },
                Some(DeviceWords::oserror(&device_error::TIMEOUT)),
                "silent after the certificate flight".into(),
            )
        }
        End::Closed {
            after: Stage::ClientFlight,
        } => (
            Reason::ClientCertRejected,
            "the server closed the connection after the device sent its certificate".into(),
            "check the server's log: it refused the device's certificate or key exchange".into(),
            Some(DeviceWords::oserror(&device_error::CONN_EOF)),
            "closed".into(),
        ),
        End::ServerAlert {
            alert,
            name,
            after: Stage::Hello,
        } => {
            let detail = format!("alert {name}");
            match needs {
                Some(n) => {
                    let (r, w, f) = needs_words(n, profile, &ours, &groups);
                    (r, w, f, fatal(), detail)
                }
                None if *alert == 70 => (
                    Reason::NoCommonVersion,
                    format!("the server speaks no protocol version the device speaks ({ours})"),
                    format!("enable {ours} on the server (nginx: ssl_protocols TLSv1.2 TLSv1.3;)"),
                    fatal(),
                    detail,
                ),
                None => (
                    Reason::NothingInCommon,
                    format!(
                        "the server refused the device's hello (alert {name}); a client offering \
                         more did not find out what it wants"
                    ),
                    format!(
                        "let the server accept {ours} with one of the device's suites ({}) over {}",
                        profile
                            .cipher_suites
                            .iter()
                            .map(|s| s.name)
                            .take(2)
                            .collect::<Vec<_>>()
                            .join(", "),
                        groups.join(", ")
                    ),
                    fatal(),
                    detail,
                ),
            }
        }
        End::Closed {
            after: Stage::Hello,
        } => match needs {
            Some(n) => {
                let (r, w, f) = needs_words(n, profile, &ours, &groups);
                (
                    r,
                    w,
                    f,
                    Some(DeviceWords::oserror(&device_error::CONN_EOF)),
                    "closed".into(),
                )
            }
            None => (
                Reason::PeerClosed,
                "the server closed the connection on the device's hello".into(),
                "pass server_hostname (many servers need SNI) and check the server accepts TLS \
                 1.2 with the device's suites"
                    .into(),
                Some(DeviceWords::oserror(&device_error::CONN_EOF)),
                "closed".into(),
            ),
        },
    };
    Some(Diagnosis {
        reason,
        what,
        fix,
        device,
        detail,
    })
}

fn needs_words(
    n: &Needs,
    profile: &Profile,
    ours: &str,
    groups: &[String],
) -> (Reason, String, String) {
    match n {
        Needs::Tls13 => (
            Reason::NoCommonVersion,
            format!("the server speaks only TLS 1.3; the device speaks {ours}"),
            "enable TLS 1.2 on the server (nginx: ssl_protocols TLSv1.2 TLSv1.3;) or put a \
             gateway in front of it"
                .into(),
        ),
        Needs::Suite(name) => (
            Reason::NothingInCommon,
            format!(
                "the server accepts no cipher suite the device offers (offered more, it chose {name})"
            ),
            format!(
                "enable one of the device's suites on the server, e.g. {}",
                profile.cipher_suites.iter().map(|s| s.name).take(2).collect::<Vec<_>>().join(" or ")
            ),
        ),
        Needs::Group(name) => (
            Reason::NothingInCommon,
            format!(
                "the server offers only {name} key exchange; the device has {}",
                groups.join(", ")
            ),
            "enable secp256r1 (P-256) on the server (nginx: ssl_ecdh_curve X25519:prime256v1;)".into(),
        ),
        Needs::SignatureAlgorithm(name) => (
            Reason::NothingInCommon,
            format!(
                "the server can only sign its handshake with {name}; the device verifies ECDSA and \
                 RSA PKCS#1 v1.5 only"
            ),
            "give the server an ECDSA P-256 key and certificate (or a plain RSA one)".into(),
        ),
        Needs::CertificateCurve(curve) => (
            Reason::RefusedKeyType,
            format!(
                "the server's certificate key is on {curve}, a curve the device does not offer \
                 ({}), so the server has no certificate it may use with the device",
                groups.join(", ")
            ),
            "give the server a P-256 key and certificate (devtls new server --key p256)".into(),
        ),
    }
}

/// A diagnosis as a doctor failure (the device's words, why, fix).
pub fn as_failure(d: &Diagnosis) -> devtls_pki::verify::Failure {
    let error = d
        .device
        .as_ref()
        .and_then(|w| device_error::by_code(w.code))
        .copied();
    devtls_pki::verify::Failure {
        kind: devtls_pki::verify::Kind::NotTrusted,
        device_says: d
            .device
            .as_ref()
            .map_or_else(|| d.what.clone(), |w| w.printed.clone()),
        error,
        outcomes: d.device.as_ref().and_then(|w| w.outcomes),
        subject: None,
        why: d.what.clone(),
        fix: d.fix.clone(),
    }
}

/// A cipher suite's IANA name (or its code point).
pub fn suite_name(code: u16) -> String {
    let known = devtls_pki::profile::ALL
        .iter()
        .flat_map(|p| p.cipher_suites.iter())
        .find(|s| s.code == code)
        .map(|s| s.name);
    let more = match code {
        0xCCA8 => Some("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
        0xCCA9 => Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        0xCCAA => Some("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
        0xC0AC => Some("TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
        0xC0AD => Some("TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
        0xC0AE => Some("TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"),
        0xC0AF => Some("TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8"),
        0x009E => Some("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
        0x009F => Some("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
        0xC09C => Some("TLS_RSA_WITH_AES_128_CCM"),
        0xC09D => Some("TLS_RSA_WITH_AES_256_CCM"),
        0x0033 => Some("TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
        0x0039 => Some("TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
        0x1301 => Some("TLS_AES_128_GCM_SHA256"),
        0x1302 => Some("TLS_AES_256_GCM_SHA384"),
        0x1303 => Some("TLS_CHACHA20_POLY1305_SHA256"),
        _ => None,
    };
    known
        .or(more)
        .map_or_else(|| format!("suite {code:#06x}"), str::to_string)
}

/// A named group's usual name.
pub fn group_name(code: u16) -> String {
    match code {
        22 => "secp256k1",
        23 => "P-256",
        24 => "P-384",
        25 => "P-521",
        26 => "brainpoolP256r1",
        27 => "brainpoolP384r1",
        28 => "brainpoolP512r1",
        29 => "X25519",
        30 => "X448",
        256..=260 => "finite-field DH",
        _ => return format!("group {code}"),
    }
    .to_string()
}

/// A signature scheme's usual name.
pub fn scheme_name(code: u16) -> String {
    let hash = match code >> 8 {
        2 => "SHA-1",
        4 => "SHA-256",
        5 => "SHA-384",
        6 => "SHA-512",
        _ => "",
    };
    match (code & 0xFF, code) {
        (_, 0x0804 | 0x0809) => "RSA-PSS SHA-256".into(),
        (_, 0x0805 | 0x080A) => "RSA-PSS SHA-384".into(),
        (_, 0x0806 | 0x080B) => "RSA-PSS SHA-512".into(),
        (_, 0x0807) => "Ed25519".into(),
        (_, 0x0808) => "Ed448".into(),
        (_, 0x081A..=0x081C) => "ECDSA brainpool (TLS 1.3)".into(),
        (3, _) if !hash.is_empty() => format!("ECDSA {hash}"),
        (1, _) if !hash.is_empty() => format!("RSA PKCS#1 v1.5 {hash}"),
        _ => format!("signature scheme {code:#06x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::profile::OPENMV;

    fn ctx(side: Side) -> Context<'static> {
        Context {
            side,
            profile: &OPENMV,
            server_name: "openmv",
            anchors: "--ca: openmv",
            presented: &[],
            asked_for_cert: false,
            sent_cert: false,
            probe: None,
        }
    }

    #[test]
    fn io_errors_from_tokio_rustls_are_classified() {
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(matches!(
            Failure::from_io(wrapped),
            Failure::Tls(rustls::Error::DecryptError)
        ));
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert!(matches!(Failure::from_io(eof), Failure::Closed));
    }

    #[test]
    fn the_device_as_server_names_a_missing_client_certificate() {
        let d = diagnose(
            &Failure::Tls(rustls::Error::NoCertificatesPresented),
            &ctx(Side::Server),
        );
        assert_eq!(d.reason, Reason::ClientCertMissing);
        assert_eq!(
            d.device.unwrap().code,
            device_error::NO_CLIENT_CERTIFICATE.code
        );
    }

    #[test]
    fn nothing_in_common_lists_the_profiles_offer() {
        let alert = Failure::Tls(rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure,
        ));
        let d = diagnose(&alert, &ctx(Side::Client));
        assert_eq!(d.reason, Reason::NothingInCommon);
        // Read from the profile, not restated: every emulated suite is named.
        for suite in crate::restrict::provider(&OPENMV).cipher_suites.iter() {
            let name = suite.suite().as_str().unwrap();
            assert!(d.what.contains(name), "{name} missing from {}", d.what);
        }
        assert_eq!(d.device.unwrap().code, device_error::FATAL_ALERT.code);
    }
}

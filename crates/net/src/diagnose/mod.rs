//! Why a handshake failed, in plain words, with the fix and the words the
//! device prints for the same failure (`devtls_pki::device_error`).
//!
//! A failure is seen from one side ([`Side`]): `connect` diagnoses the
//! server it talked to as the device-as-client would, `serve` diagnoses each
//! client as the device-as-server would.
//!
//! Here: the model ([`Failure`], [`Reason`], [`Diagnosis`]) and
//! [`diagnose`]; beside it, one file a concern: `client` and `server` (the
//! two sides), `certificate` (a refused certificate), `mismatch` (what the
//! sides do not share), `words` (what the device raises for a reason),
//! `device_hello` (the device's own hello, for doctor, in the same reasons
//! and words) and `names` (code points by name).

use std::io;
use std::time::SystemTime;

use devtls_pki::device_error::{self, flags, DeviceError, Outcomes, Raised};
use devtls_pki::profile::{Profile, TlsVersion};
use rustls::{AlertDescription, CertificateError, PeerIncompatible};
use serde::Serialize;

use crate::report::CertSummary;

mod certificate;
mod client;
mod device_hello;
mod mismatch;
mod names;
mod server;
mod words;

use certificate::certificate_error;
use client::client_side;
use mismatch::{
    client_cert_missing, client_cert_rejected, no_common_version, not_tls, nothing_in_common,
    offer, refused_key, versions,
};
use server::server_side;
use words::{device_as_client, device_as_server, Parts};

pub use device_hello::{handshake, Needs};
pub use names::{group_name, scheme_name, suite_name};

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

#[cfg(test)]
mod tests;

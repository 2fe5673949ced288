//! One log line per connection (client, SNI, route, outcome with the
//! device's words when the device side failed, bytes, duration), and one per
//! gateway event (listening, certificate reloaded or refused); as text or
//! as one JSON object per line.
//!
//! A record is always exactly one line: every text record leaves through
//! [`Logger::line`], which passes it whole through
//! `devtls_pki::names::log_field` (a character-by-character escaping, so
//! this equals escaping each field: a peer's SNI, an upstream's issuer DN, a
//! device's multi-line `ValueError` text, a file name). JSON records are
//! escaped by the serializer. docs/hardening.md, "Gateway".

use std::net::SocketAddr;
use std::time::Duration;

use devtls_net::diagnose::Diagnosis;
use serde::Serialize;

/// How a connection ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Both sides connected; bytes went through until one side closed.
    Relayed,
    /// Relayed, then closed because nothing moved for the idle timeout.
    Idle,
    /// Relayed, then one side broke the connection.
    Broken {
        /// What broke.
        detail: String,
    },
    /// The client's side never became TLS: garbage, a stall, a refused handshake.
    ClientFailed {
        /// What happened.
        detail: String,
        /// When the client is the device (an outbound route): net's
        /// diagnosis, with what the device raised.
        #[serde(skip_serializing_if = "Option::is_none")]
        diagnosis: Option<Box<Diagnosis>>,
    },
    /// The device's certificate is on the route's CRL.
    ClientRevoked {
        /// Which certificate, why, and the CRL that says so.
        revoked: crate::clientauth::Revoked,
    },
    /// No route for the name the client asked for.
    NoRoute {
        /// Why.
        detail: String,
    },
    /// The route already carries its maximum number of connections.
    Limit {
        /// The maximum.
        max_connections: usize,
    },
    /// The device (or public server) side could not be reached or refused:
    /// net's diagnosis, with the device's own words when it has them.
    UpstreamFailed {
        /// The diagnosis.
        diagnosis: Box<Diagnosis>,
    },
}

/// One connection, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct ConnLog {
    /// The client's address.
    pub client: SocketAddr,
    /// The SNI name it sent.
    pub sni: Option<String>,
    /// The route taken.
    pub route: Option<String>,
    /// Where the route forwards.
    pub upstream: Option<String>,
    /// The public side's TLS version, once negotiated.
    pub version: Option<String>,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Bytes from the client to the upstream.
    pub bytes_up: u64,
    /// Bytes from the upstream to the client.
    pub bytes_down: u64,
    /// From accept to close, in milliseconds.
    pub duration_ms: u64,
}

/// Where and how lines are written.
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Connection lines for relayed connections too (failures are always logged).
    pub quiet: bool,
}

impl Logger {
    /// Writes one connection's line.
    pub fn conn(&self, log: &ConnLog) {
        if self.quiet && matches!(log.outcome, Outcome::Relayed) {
            return;
        }
        write_line(&self.conn_line(log));
    }

    /// The record [`Logger::conn`] writes, without its newline.
    pub fn conn_line(&self, log: &ConnLog) -> String {
        if self.json {
            serde_json::to_string(log).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        } else {
            Self::line(&text(log))
        }
    }

    /// Writes a gateway event: `text` for people, `fields` for `--json`.
    pub fn event(&self, event: &str, text: &str, fields: serde_json::Value) {
        write_line(&self.event_line(event, text, fields));
    }

    /// The record [`Logger::event`] writes, without its newline.
    pub fn event_line(&self, event: &str, text: &str, fields: serde_json::Value) -> String {
        if self.json {
            let mut v = serde_json::json!({ "event": event });
            if let (Some(obj), serde_json::Value::Object(extra)) = (v.as_object_mut(), fields) {
                obj.extend(extra);
            }
            v.to_string()
        } else {
            Self::line(text)
        }
    }

    /// A text record as one inert line: line breaks, terminal escapes and
    /// bidirectional controls from any field become visible escapes.
    fn line(text: &str) -> String {
        devtls_pki::names::log_field(text).into_owned()
    }
}

/// Queued, never waited for: a reader that stops reading cannot stop the
/// gateway (devtls_net::log_out).
fn write_line(line: &str) {
    devtls_net::log_out::stdout().line(line.to_string());
}

/// The text form: `CLIENT sni=NAME route=ROUTE -> UPSTREAM VERDICT up=N down=N MS`.
pub fn text(log: &ConnLog) -> String {
    let sni = log.sni.as_deref().unwrap_or("-");
    let route = log.route.as_deref().unwrap_or("-");
    let upstream = log.upstream.as_deref().unwrap_or("-");
    let verdict = match &log.outcome {
        Outcome::Relayed => "relayed".to_string(),
        Outcome::Idle => "closed: idle timeout".to_string(),
        Outcome::Broken { detail } => format!("broken: {detail}"),
        Outcome::ClientFailed { detail, diagnosis } => {
            let device = diagnosis
                .as_ref()
                .and_then(|d| d.device.as_ref())
                .map_or(String::new(), |w| {
                    format!("; the device raises {}", w.printed)
                });
            format!("client failed: {detail}{device}")
        }
        Outcome::ClientRevoked { revoked: r } => format!(
            "client refused: certificate serial {} is revoked ({}) in {}",
            r.serial, r.reason, r.crl
        ),
        Outcome::NoRoute { detail } => format!("no route: {detail}"),
        Outcome::Limit { max_connections } => {
            format!("refused: route at its limit of {max_connections} connections")
        }
        Outcome::UpstreamFailed { diagnosis: d } => {
            let device = d.device.as_ref().map_or(String::new(), |w| {
                format!("; device words: {} ({} {})", w.printed, w.hex, w.name)
            });
            format!("upstream failed: {}{device}; fix: {}", d.what, d.fix)
        }
    };
    format!(
        "{} sni={sni} route={route} -> {upstream} {verdict} up={} down={} {}ms",
        log.client, log.bytes_up, log.bytes_down, log.duration_ms
    )
}

/// Milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_net::diagnose::{DeviceWords, Reason};

    fn hostile_log() -> ConnLog {
        ConnLog {
            client: "127.0.0.1:40000".parse().unwrap(),
            sni: Some("a.example\n127.0.0.1:1 sni=- route=- -> - relayed".into()),
            route: Some("cam".into()),
            upstream: Some("127.0.0.1:8443".into()),
            version: None,
            outcome: Outcome::UpstreamFailed {
                diagnosis: Box::new(Diagnosis {
                    reason: Reason::UnknownCa,
                    what: "the server's certificate does not chain (issued by CN=x\r\n\
                           127.0.0.1:2 forged\x1b[2J\u{202e})"
                        .into(),
                    fix: "give the right anchor".into(),
                    device: Some(DeviceWords {
                        code: -9984,
                        hex: "-0x2700".into(),
                        name: "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED",
                        printed: devtls_pki::device_error::flags::value_error(
                            devtls_pki::device_error::flags::NOT_TRUSTED,
                        ),
                        outcomes: None,
                    }),
                    detail: "x".into(),
                }),
            },
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 1,
        }
    }

    /// Attacker text in an SNI, an issuer DN and a device's multi-line
    /// `ValueError` stays inside one line, without terminal escapes.
    #[test]
    fn a_record_is_one_line_whatever_its_fields_hold() {
        for json in [false, true] {
            let logger = Logger { json, quiet: false };
            let conn = logger.conn_line(&hostile_log());
            let event = logger.event_line(
                "reload_refused",
                "cam: refused cert\n.pem\x1b]0;x\x07",
                serde_json::json!({"files": "cert\n.pem\x1b"}),
            );
            for line in [&conn, &event] {
                assert!(
                    !line.chars().any(|c| c.is_control()),
                    "a control character in {line:?}"
                );
            }
            if !json {
                assert!(!conn.contains('\u{202e}'), "{conn:?}");
                assert!(conn.contains("a.example\\x0a127.0.0.1:1"), "{conn}");
                assert!(conn.contains("ValueError:\\x0a"), "{conn}");
                assert!(conn.contains("CN=x\\x0d\\x0a127.0.0.1:2"), "{conn}");
            }
        }
    }
}

//! The device's own hello (doctor): how its conversation with a server
//! ended, named in the device's words. One path with the rustls-based
//! failures: the same reasons, the same device words.

use super::*;

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

//! Failures seen from the client side: the server devtls talked to, judged
//! as the device-as-client would judge it.

use super::*;

pub(super) fn client_side(failure: &Failure, ctx: &Context<'_>) -> Parts {
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

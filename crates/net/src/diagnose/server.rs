//! Failures seen from the server side: each client, judged as the
//! device-as-server would judge it.

use super::*;

pub(super) fn server_side(failure: &Failure, ctx: &Context<'_>) -> Parts {
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

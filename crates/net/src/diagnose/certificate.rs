//! A refused certificate (either side's), in plain words.

use super::*;

pub(super) fn certificate_error(error: &CertificateError, ctx: &Context<'_>, whose: &str) -> Parts {
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

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

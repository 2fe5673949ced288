//! What the two sides do not share: versions, suites, groups, keys, a
//! client certificate asked for and not sent.

use super::*;

pub(super) fn refused_key(ctx: &Context<'_>, key: &str) -> Parts {
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

pub(super) fn no_common_version(ctx: &Context<'_>) -> Parts {
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

pub(super) fn nothing_in_common(ctx: &Context<'_>) -> Parts {
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
pub(super) fn offer(profile: &Profile) -> String {
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

pub(super) fn client_cert_missing(_ctx: &Context<'_>) -> Parts {
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

pub(super) fn client_cert_rejected(_ctx: &Context<'_>, alert: &AlertDescription) -> Parts {
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

pub(super) fn not_tls() -> Parts {
    (
        Reason::NotTls,
        "the peer does not speak TLS (plain text, HTTP or another protocol on this port)".into(),
        "use the TLS port (e.g. 443/8443/8883, not 80/1883), or put TLS in front of the service"
            .into(),
        Some(DeviceWords::oserror(&device_error::INVALID_RECORD)),
    )
}

pub(super) fn versions(profile: &Profile) -> String {
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

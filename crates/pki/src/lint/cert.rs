//! Rules on certificates: keys, signatures, names, dates, extensions and
//! the role each certificate plays.

use super::*;

/// Rules on what the items hold: keys, signatures, names, dates, extensions, sizes.
pub(super) fn item_rules(
    file: &Inspection<'_>,
    all: &[Inspection<'_>],
    role: LintRole,
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    let name = file.input.file;
    let mut position = 0;
    for item in file.items {
        match &item.details {
            Details::Certificate(cert) => {
                let der = &file.input.sniffed.items[item.index - 1].der;
                if let Ok(parsed) = Cert::parse(der) {
                    let cert_role = cert_role(role, position, cert, all);
                    cert_rules(cert, &parsed, cert_role, role, name, o, out);
                }
                position += 1;
            }
            Details::PrivateKey(key) => {
                if let Some(info) = &key.key {
                    key_file_rule(info, name, o.profile, out);
                }
            }
            Details::Csr(csr) => {
                key_rule(&csr.public_key, "CSR's key", name, o.profile, out);
                if !csr.signature_valid {
                    out.push(finding(
                        Severity::Error,
                        "csr-signature",
                        name,
                        "the CSR's self-signature does not verify; a CA will refuse it".into(),
                        "make a fresh CSR: devtls csr --domain NAME".into(),
                    ));
                }
            }
            Details::PublicKey(info) => key_rule(info, "public key", name, o.profile, out),
            Details::Crl(_) => {}
            Details::Unreadable { reason } => out.push(finding(
                Severity::Error,
                "unreadable",
                name,
                format!(
                    "item {} ({}): {reason}; the device says ValueError('{}')",
                    item.index,
                    item.kind_name,
                    if item.kind.is_secret() {
                        verify_text::INVALID_KEY
                    } else {
                        verify_text::INVALID_CERT
                    }
                ),
                "replace the file with an intact copy".into(),
            )),
        }
    }
    if role != LintRole::Anchor {
        chain_size_rules(file, all, role, o.profile, out);
    }
}

/// The role of the certificate at `position` of a file checked in `role`.
pub(super) fn cert_role(
    role: LintRole,
    position: usize,
    c: &CertInfo,
    all: &[Inspection<'_>],
) -> CertRole {
    match role {
        LintRole::Anchor => CertRole::Anchor,
        LintRole::Client if position == 0 => CertRole::Own,
        LintRole::Server | LintRole::Chain if position == 0 && is_end_entity(c, all) => {
            CertRole::Leaf
        }
        // A root the server sends along: the device's anchor takes over
        // before it, so it is never verified as sent.
        _ if c.self_issued && c.is_ca() => CertRole::Anchor,
        _ => CertRole::Intermediate,
    }
}

pub(super) fn cert_rules(
    c: &CertInfo,
    parsed: &Cert,
    role: CertRole,
    file_role: LintRole,
    file: &str,
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    let p = o.profile;
    let who = cert_label(c);
    if let Some(refusal) = certs::parse_refusal(p, parsed) {
        parse_refusal_finding(&refusal, &who, role, file, p, out);
    } else if let Some(problem) = certs::key_problem(p, &c.public_key) {
        key_problem_finding(
            &problem,
            &c.public_key,
            &format!("key of {who}"),
            file,
            p,
            Severity::Error,
            out,
        );
    }
    if role.signature_checked() {
        hash_rule(c, &who, file, p, out);
    }
    validity_rule(c, &who, file, p, out);
    if role == CertRole::Anchor {
        if !certs::can_issue(parsed, true) && !parsed.self_issued() {
            out.push(finding(
                Severity::Error,
                "anchor-not-ca",
                file,
                format!(
                    "{who} is checked as the trust anchor but is a CA-issued end-entity certificate: \
                     the device trusts a pinned leaf only when it is self-signed (the device says '{}')",
                    flags::text(flags::NOT_TRUSTED)
                ),
                "anchor the CA that issued it instead: devtls anchor HOST".into(),
            ));
        }
        return;
    }
    if !matches!(role, CertRole::Leaf | CertRole::Own) {
        return;
    }
    if !c.self_issued {
        if let Some(limit) = cabf::exceeded(c.validity.not_before, c.validity.not_after) {
            out.push(finding(
                Severity::Warning,
                "lifetime-over-cabf",
                file,
                format!(
                    "{who} is valid for {} days; for certificates starting {} the CA/Browser \
                     Forum maximum is {} days (ballot {}): browsers refuse it if the CA is public",
                    c.validity.lifetime_days,
                    c.validity.not_before.date(),
                    limit.max_days,
                    limit.ballot
                ),
                format!(
                    "issue it for at most {} days and rotate before expiry",
                    limit.max_days
                ),
            ));
        }
    }
    if role == CertRole::Leaf {
        host_rule(parsed, &who, file, o, out);
    }
    let presenter = if file_role == LintRole::Client {
        Presenter::Client
    } else {
        Presenter::Server
    };
    eku_rule(c, &who, file, presenter, o, out);
}

/// `certificate CN=openmv` (or the subject when it has no CN).
pub(super) fn cert_label(c: &CertInfo) -> String {
    match c.common_name() {
        Some(cn) => format!("certificate CN={cn}"),
        None => format!("certificate {}", c.subject),
    }
}

pub(super) fn parse_refusal_finding(
    r: &ParseRefusal,
    who: &str,
    role: CertRole,
    file: &str,
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    let id = match r {
        ParseRefusal::RsaPssSignature => "sig-rsa-pss",
        ParseRefusal::Ed25519Signature => "sig-ed25519",
        ParseRefusal::KeyAlgorithm { key } if key.contains("Ed25519") => "key-ed25519",
        ParseRefusal::KeyAlgorithm { key } if key.contains("RSA-PSS") => "key-rsa-pss",
        ParseRefusal::KeyAlgorithm { .. } => "key-algorithm",
        ParseRefusal::Curve { .. } => "key-curve",
        ParseRefusal::CriticalExtension { name, .. } if *name == "nameConstraints" => {
            "critical-name-constraints"
        }
        ParseRefusal::CriticalExtension { .. } => "critical-extension",
        ParseRefusal::CriticalPolicies { .. } => "critical-policies",
    };
    let err = r.error();
    let outcome = if role == CertRole::Anchor {
        format!(
            "load_verify_locations fails with {} (ValueError('{}'))",
            err.hex(),
            verify_text::INVALID_CERT
        )
    } else {
        format!(
            "the {} profile's mbedTLS cannot parse it ({})",
            p.name,
            err.hex()
        )
    };
    out.push(finding(
        Severity::Error,
        id,
        file,
        format!("{who}: {}; {outcome}", r.why()),
        r.fix(),
    ));
}

pub(super) fn hash_rule(c: &CertInfo, who: &str, file: &str, p: &Profile, out: &mut Vec<Finding>) {
    if !certs::hash_refused(p, &c.signature) {
        return;
    }
    let reissue = if c.self_issued {
        "make it again with devtls new (ECDSA with SHA-256)"
    } else {
        "have the CA reissue it with ECDSA or RSA PKCS#1 v1.5 and SHA-256"
    };
    let hashes = p
        .signature_hashes
        .iter()
        .map(|h| format!("{h:?}").to_uppercase().replace("SHA", "SHA-"))
        .collect::<Vec<_>>()
        .join(", ");
    out.push(finding(
        Severity::Error,
        "sig-hash",
        file,
        format!(
            "{who} is signed with {}; the {} profile accepts {hashes} only \
             (the device says '{}')",
            c.signature.name,
            p.name,
            flags::text(flags::BAD_MD)
        ),
        reissue.into(),
    ));
}

pub(super) fn validity_rule(
    c: &CertInfo,
    who: &str,
    file: &str,
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    use crate::inspect::ValidityStatus;
    let v = &c.validity;
    let clock = if p.clock_starts_unset {
        "; the device's clock starts unset after power-up, so until the script sets it \
         (ntptime.settime()) every certificate looks like this"
    } else {
        ""
    };
    match v.status {
        ValidityStatus::Valid => {}
        ValidityStatus::Expired => out.push(finding(
            Severity::Error,
            "expired",
            file,
            format!(
                "{who} expired {} ({} days before {}): the device says '{}'",
                v.not_after.date(),
                v.days_since_expiry.unwrap_or(0),
                v.at.date(),
                flags::text(flags::EXPIRED)
            ),
            "renew it and copy the new DER file to the device".into(),
        )),
        ValidityStatus::NotYetValid => out.push(finding(
            Severity::Error,
            "not-yet-valid",
            file,
            format!(
                "{who} is valid only from {} ({} days after {}): the device says '{}'{clock}",
                v.not_before.date(),
                v.days_until_valid.unwrap_or(0),
                v.at.date(),
                flags::text(flags::FUTURE)
            ),
            if p.clock_starts_unset {
                "set the device's clock before connecting (ntptime.settime()), or check --at".into()
            } else {
                "wait until it is valid, or reissue it with an earlier notBefore".into()
            },
        )),
    }
}

/// The server's end-entity certificate against `--host`, by the device's name rule.
pub(super) fn host_rule(c: &Cert, who: &str, file: &str, o: &Options<'_>, out: &mut Vec<Finding>) {
    let p = o.profile;
    let (names, from_san) = names::names_checked(c);
    if !from_san {
        if let Some(host) = o.host.filter(|h| !names::name_matches(p, c, h)) {
            out.push(finding(
                Severity::Error,
                "host-mismatch",
                file,
                format!(
                    "{who} has no subjectAltName and {}; a client checking '{host}' refuses it \
                     (the device says '{}')",
                    if p.cn_fallback {
                        "its CN does not match"
                    } else {
                        "the profile ignores the CN"
                    },
                    flags::text(flags::CN_MISMATCH)
                ),
                format!("make it with the name in the SAN: devtls new server --dns {host}"),
            ));
        } else {
            out.push(finding(
                Severity::Note,
                "cn-only",
                file,
                format!(
                    "{who} names its host only in the CN (no subjectAltName): {}modern \
                     clients (browsers, Python, Go, rustls) refuse it",
                    if p.cn_fallback {
                        format!("the {} profile falls back to the CN, but ", p.name)
                    } else {
                        String::new()
                    }
                ),
                "reissue it with the host in the SAN: devtls new server --dns NAME --ip ADDR"
                    .into(),
            ));
        }
        return;
    }
    let Some(host) = o.host else { return };
    if !names::name_matches(p, c, host) {
        out.push(finding(
            Severity::Error,
            "host-mismatch",
            file,
            format!(
                "'{host}' is not in the subjectAltName of {who} ({}); the device says '{}'",
                if names.is_empty() {
                    "no DNS or IP names".to_string()
                } else {
                    names.join(", ")
                },
                flags::text(flags::CN_MISMATCH)
            ),
            format!(
                "connect with one of those names as server_hostname, or reissue with --{} {host}",
                if host.parse::<std::net::IpAddr>().is_ok() {
                    "ip"
                } else {
                    "dns"
                }
            ),
        ));
    }
}

pub(super) fn eku_rule(
    c: &CertInfo,
    who: &str,
    file: &str,
    presenter: Presenter,
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    if !o.profile.enforces_eku {
        return;
    }
    if usage::usage_flags(c, presenter) & device_error::flags::EXT_KEY_USAGE == 0 {
        return;
    }
    let Some(eku) = &c.extended_key_usage else {
        return;
    };
    let has: Vec<&str> = [
        ("serverAuth", eku.server_auth),
        ("clientAuth", eku.client_auth),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .chain(eku.other.iter().map(String::as_str))
    .collect();
    let role_word = match presenter {
        Presenter::Client => "client",
        Presenter::Server => "server",
    };
    out.push(finding(
        Severity::Error,
        "eku-role",
        file,
        format!(
            "{who} is used as a {role_word} certificate{} but its extendedKeyUsage is {}, \
             without {}; the device's peer refuses it ('{}')",
            if o.role.is_none() {
                " (role guessed; --role to change)"
            } else {
                ""
            },
            if has.is_empty() {
                "empty".to_string()
            } else {
                has.join(", ")
            },
            presenter.purpose(),
            flags::text(flags::EXT_KEY_USAGE)
        ),
        format!("make a {role_word} certificate: devtls new {role_word}"),
    ));
}

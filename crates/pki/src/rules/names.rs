//! Host-name matching as mbedTLS 3.6 does it (`x509_crt_verify_name`):
//! with a subjectAltName extension, its dNSName entries (a left-most `*.`
//! wildcard covers one label), its iPAddress entries when the host is an IP
//! literal, and its URI entries byte for byte; without one, the subject's
//! CNs (the profile's `cn_fallback`).

use std::net::IpAddr;

use crate::chain::Cert;
use crate::profile::Profile;

/// One DNS pattern against the host, as `x509_crt_check_cn`: equal ignoring
/// ASCII case, or `*.rest` where the host's first label is non-empty and the
/// rest equals `.rest`. A trailing dot is not ignored.
pub fn dns_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.as_bytes(), host.as_bytes());
    if p.is_empty() {
        return false;
    }
    if p.eq_ignore_ascii_case(h) {
        return true;
    }
    if p.len() < 3 || p[0] != b'*' || p[1] != b'.' {
        return false;
    }
    match h.iter().position(|&b| b == b'.') {
        Some(dot) if dot > 0 => h[dot..].eq_ignore_ascii_case(&p[1..]),
        _ => false,
    }
}

/// Whether the device accepts `cert` for `host` (its `server_hostname`).
pub fn name_matches(profile: &Profile, cert: &Cert, host: &str) -> bool {
    let sans = &cert.info.sans;
    if cert.has_san || !sans.is_empty() {
        if sans.dns.iter().any(|d| dns_matches(d, host)) {
            return true;
        }
        if profile.ip_san {
            if let Ok(ip) = host.parse::<IpAddr>() {
                if sans
                    .ip
                    .iter()
                    .any(|s| s.parse::<IpAddr>().is_ok_and(|s| s == ip))
                {
                    return true;
                }
            }
        }
        return cert.san_uris.iter().any(|u| u == host);
    }
    profile.cn_fallback
        && cert
            .info
            .common_names
            .iter()
            .any(|cn| dns_matches(cn, host))
}

/// The names the device would compare, for messages: the SAN entries, or
/// (without SAN) the CNs; and whether they came from the SAN.
pub fn names_checked(cert: &Cert) -> (Vec<String>, bool) {
    let sans = &cert.info.sans;
    if cert.has_san || !sans.is_empty() {
        let names = sans
            .dns
            .iter()
            .chain(&sans.ip)
            .chain(&cert.san_uris)
            .cloned()
            .collect();
        (names, true)
    } else {
        (cert.info.common_names.clone(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_left_most_label_only() {
        assert!(dns_matches("*.example.com", "cam.example.com"));
        assert!(dns_matches("*.Example.COM", "CAM.example.com"));
        assert!(!dns_matches("*.example.com", "a.cam.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("*.example.com", ".example.com"));
        assert!(!dns_matches("cam.*.com", "cam.example.com"));
        assert!(dns_matches("openmv", "openmv"));
        assert!(!dns_matches("", ""));
        // mbedTLS compares bytes: a trailing dot is a different name.
        assert!(!dns_matches("openmv.local", "openmv.local."));
    }
}

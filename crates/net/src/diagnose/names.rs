//! Code points by their IANA names, for messages.

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

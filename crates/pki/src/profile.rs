//! Device profiles: what a device's TLS stack accepts, as data.
//!
//! Every check in devtls that depends on the device (lint, the
//! device-restricted TLS endpoints, doctor, the fleet's defaults) reads one of
//! these tables. Nothing else in the code base may restate a device fact: add
//! a field here instead.
//!
//! The `openmv` table is `shared/device-facts.md` (MicroPython v1.25–v1.28 on
//! mbedTLS 3.6) turned into data.

use serde::Serialize;

/// A TLS or DTLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
    /// DTLS 1.2 (RFC 6347).
    Dtls12,
}

/// A named elliptic curve, for keys and for key exchange groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Curve {
    /// NIST P-256 (secp256r1, prime256v1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
    /// X25519 key exchange (RFC 7748).
    X25519,
    /// secp256k1, the Bitcoin curve: appears in the wild, rejected by mbedTLS's X.509 profile.
    Secp256k1,
}

impl Curve {
    /// The TLS NamedGroup code point (supported_groups, ServerKeyExchange).
    pub fn tls_group(self) -> u16 {
        match self {
            Curve::P256 => 23,
            Curve::P384 => 24,
            Curve::P521 => 25,
            Curve::X25519 => 29,
            Curve::Secp256k1 => 22,
        }
    }

    /// The curve for a TLS NamedGroup code point, if it is one of these.
    pub fn from_tls_group(code: u16) -> Option<Curve> {
        [
            Curve::P256,
            Curve::P384,
            Curve::P521,
            Curve::X25519,
            Curve::Secp256k1,
        ]
        .into_iter()
        .find(|c| c.tls_group() == code)
    }
}

/// A hash used in a signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Hash {
    /// SHA-1: broken for signatures.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// A cipher suite as the device offers it: IANA code point and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CipherSuite {
    /// The two-byte IANA code point.
    pub code: u16,
    /// The IANA name.
    pub name: &'static str,
}

/// Everything devtls knows about one kind of device's TLS stack.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Short name used on the command line (`--profile openmv`).
    pub name: &'static str,
    /// One line saying which devices and firmware this describes.
    pub summary: &'static str,
    /// The device can parse PEM files; if false it needs DER.
    pub loads_pem: bool,
    /// The device can load an encrypted private key.
    pub loads_encrypted_keys: bool,
    /// A DER key with bytes after the structure is refused ("invalid key").
    /// False for mbedTLS 3.6.5 in MicroPython's configuration: measured, PKCS#8
    /// and SEC1 DER keys with trailing bytes load and work in a handshake
    /// (docs/device-behaviour.md, "Key files").
    pub rejects_key_trailing_bytes: bool,
    /// An RSA DER key (PKCS#8 or PKCS#1) with bytes after the structure is
    /// refused even where EC keys with them load: measured with mbedTLS 3.6.5
    /// (`MBEDTLS_ERR_PK_KEY_INVALID_FORMAT`), found by the key-file proof.
    pub rejects_rsa_key_trailing_bytes: bool,
    /// How many trust anchors one context may hold (`None`: unlimited).
    pub anchors_per_context: Option<u32>,
    /// Certificates the device presents from its own chain (the leaf only is 1).
    pub presented_chain_len: u32,
    /// Size of the device's TLS output buffer: its own chain must fit in it.
    pub output_buffer: usize,
    /// Size of the device's TLS input buffer: the peer's Certificate message must fit.
    pub input_buffer: usize,
    /// Most intermediates the device accepts between leaf and anchor.
    pub max_intermediates: u32,
    /// Protocol versions the device speaks.
    pub versions: &'static [TlsVersion],
    /// Cipher suites the device offers, in its client offer order.
    pub cipher_suites: &'static [CipherSuite],
    /// Key exchange groups the device offers.
    pub groups: &'static [Curve],
    /// Curves accepted for ECDSA keys in certificates and for the device's own key.
    pub key_curves: &'static [Curve],
    /// Smallest RSA modulus accepted, in bits.
    pub min_rsa_bits: u32,
    /// Hashes accepted in certificate and handshake signatures.
    pub signature_hashes: &'static [Hash],
    /// RSA-PSS accepted in certificates or the handshake.
    pub rsa_pss: bool,
    /// Ed25519 keys and signatures accepted.
    pub ed25519: bool,
    /// The certificate extensions the device's X.509 parser knows, by OID
    /// (`None`: a stack that knows them all). A certificate with any other
    /// extension marked critical does not parse (mbedTLS -0x2562); critical
    /// nameConstraints is the common case.
    pub known_extensions: Option<&'static [&'static str]>,
    /// Curves the device's build can parse a key on, by OID (`None`: all).
    /// A certificate or key on another curve does not parse (-0x3A00); one
    /// on a parsed curve outside [`Profile::key_curves`] parses but is
    /// refused by verification ("unacceptable key").
    pub parsed_curves: Option<&'static [&'static str]>,
    /// A critical certificatePolicies extension other than anyPolicy is accepted.
    pub critical_policies: bool,
    /// With no SAN, the certificate's CN is matched against the host name.
    pub cn_fallback: bool,
    /// The host name is matched against iPAddress SANs.
    pub ip_san: bool,
    /// The extended key usage is enforced for the role (serverAuth/clientAuth).
    pub enforces_eku: bool,
    /// The clock starts at the epoch after power-up until the script sets it.
    pub clock_starts_unset: bool,
    /// The year an unset clock reads (MicroPython's epoch), for `--device-time unset`.
    pub unset_clock_year: i32,
    /// Verification refuses to start without a server name (`server_hostname`).
    pub verify_needs_hostname: bool,
    /// The script-level default verify mode is CERT_NONE (the `ssl` wrapper).
    pub script_default_verifies_nothing: bool,
    /// How the device opens a handshake as a client, beyond the versions,
    /// suites and groups above (`None`: devtls does not know its hello).
    pub hello: Option<HelloShape>,
}

/// A ClientHello extension the device sends, by its TLS code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HelloExtension {
    /// server_name (0), sent when the script passes `server_hostname`.
    ServerName,
    /// supported_groups (10): the profile's `groups`, in order.
    SupportedGroups,
    /// signature_algorithms (13): [`HelloShape::signature_algorithms`], in order.
    SignatureAlgorithms,
    /// ec_point_formats (11): [`HelloShape::point_formats`].
    EcPointFormats,
}

impl HelloExtension {
    /// The extension's IANA code point.
    pub fn code(self) -> u16 {
        match self {
            HelloExtension::ServerName => 0,
            HelloExtension::SupportedGroups => 10,
            HelloExtension::EcPointFormats => 11,
            HelloExtension::SignatureAlgorithms => 13,
        }
    }
}

/// The parts of the device's ClientHello that the other fields do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HelloShape {
    /// The signature_algorithms extension, TLS code points in the device's order.
    pub signature_algorithms: &'static [u16],
    /// Extensions in the order the device writes them.
    pub extensions: &'static [HelloExtension],
    /// The ec_point_formats list (0 = uncompressed).
    pub point_formats: &'static [u8],
    /// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (0x00FF) follows the suites.
    pub renegotiation_scsv: bool,
    /// The first 4 bytes of the client random are the clock (gmt_unix_time).
    pub random_starts_with_time: bool,
    /// Session ID length offered on a fresh handshake (no resumption).
    pub session_id_len: u8,
}

/// mbedTLS 3.6's TLS 1.2-only hello with MicroPython's configuration
/// (`ssl_tls12_preset_default_sig_algs`; no RSA-PSS, no extended master
/// secret, encrypt-then-MAC, tickets, ALPN or max fragment length).
const MBEDTLS36_HELLO: HelloShape = HelloShape {
    signature_algorithms: &[0x0603, 0x0601, 0x0503, 0x0501, 0x0403, 0x0401],
    extensions: &[
        HelloExtension::ServerName,
        HelloExtension::SupportedGroups,
        HelloExtension::SignatureAlgorithms,
        HelloExtension::EcPointFormats,
    ],
    point_formats: &[0],
    renegotiation_scsv: true,
    random_starts_with_time: true,
    session_id_len: 0,
};

impl Profile {
    /// Whether the device speaks this protocol version.
    pub fn speaks(&self, version: TlsVersion) -> bool {
        self.versions.contains(&version)
    }

    /// Whether the device accepts an ECDSA key on this curve.
    pub fn accepts_curve(&self, curve: Curve) -> bool {
        self.key_curves.contains(&curve)
    }

    /// Whether the device accepts signatures with this hash.
    pub fn accepts_hash(&self, hash: Hash) -> bool {
        self.signature_hashes.contains(&hash)
    }

    /// Whether the device can hold several trust anchors at once.
    pub fn single_anchor(&self) -> bool {
        self.anchors_per_context == Some(1)
    }
}

/// The cipher suites mbedTLS 3.6 in MicroPython offers, in its client order
/// (the renegotiation SCSV 0x00FF is sent too but is not a suite).
const MBEDTLS_SUITES: &[CipherSuite] = &[
    suite(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    suite(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    suite(0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    suite(0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    suite(0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    suite(0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    suite(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    suite(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    suite(0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    suite(0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    suite(0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    suite(0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    suite(0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    suite(0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    suite(0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    suite(0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    suite(0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    suite(0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA"),
];

/// The TLS 1.2 and 1.3 suites of a current PC stack, for the `modern` profile.
const MODERN_SUITES: &[CipherSuite] = &[
    suite(0x1301, "TLS13_AES_128_GCM_SHA256"),
    suite(0x1302, "TLS13_AES_256_GCM_SHA384"),
    suite(0x1303, "TLS13_CHACHA20_POLY1305_SHA256"),
    suite(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    suite(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    suite(0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    suite(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    suite(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    suite(0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
];

const fn suite(code: u16, name: &'static str) -> CipherSuite {
    CipherSuite { code, name }
}

const NIST_CURVES: &[Curve] = &[Curve::P256, Curve::P384, Curve::P521];

/// The extensions mbedTLS 3.6's `mbedtls_oid_get_x509_ext_type` knows:
/// basicConstraints, keyUsage, extendedKeyUsage, subjectAltName, certificate
/// policies, subject and authority key identifiers, Netscape cert type.
const MBEDTLS_EXTENSIONS: &[&str] = &[
    "2.5.29.19",
    "2.5.29.15",
    "2.5.29.37",
    "2.5.29.17",
    "2.5.29.32",
    "2.5.29.14",
    "2.5.29.35",
    "2.16.840.1.113730.1.1",
];

/// The curves MicroPython's configuration compiles (`MBEDTLS_ECP_DP_*_ENABLED`):
/// secp192r1, secp224r1, secp256r1, secp384r1, secp521r1, secp192k1,
/// secp224k1, secp256k1. No Brainpool, no Curve25519.
const MICROPYTHON_CURVES: &[&str] = &[
    "1.2.840.10045.3.1.1",
    "1.3.132.0.33",
    "1.2.840.10045.3.1.7",
    "1.3.132.0.34",
    "1.3.132.0.35",
    "1.3.132.0.31",
    "1.3.132.0.32",
    "1.3.132.0.10",
];
const SHA2: &[Hash] = &[Hash::Sha256, Hash::Sha384, Hash::Sha512];

/// OpenMV Cam and MicroPython v1.25 to v1.28 on mbedTLS 3.6: the default profile.
/// (v1.28's TLS-PSK changes the hello only when a script sets a PSK, which
/// restricts the suites to PSK ones; certificates are then not used.)
pub const OPENMV: Profile = Profile {
    name: "openmv",
    summary: "OpenMV Cam / MicroPython v1.25-v1.28 firmware (mbedTLS 3.6, no PEM parser): DER only, one anchor, TLS 1.2",
    loads_pem: false,
    loads_encrypted_keys: false,
    rejects_key_trailing_bytes: false,
    rejects_rsa_key_trailing_bytes: true,
    anchors_per_context: Some(1),
    presented_chain_len: 1,
    output_buffer: 4096,
    input_buffer: 16384,
    max_intermediates: 8,
    versions: &[TlsVersion::Tls12, TlsVersion::Dtls12],
    cipher_suites: MBEDTLS_SUITES,
    groups: NIST_CURVES,
    key_curves: NIST_CURVES,
    min_rsa_bits: 2048,
    signature_hashes: SHA2,
    rsa_pss: false,
    ed25519: false,
    known_extensions: Some(MBEDTLS_EXTENSIONS),
    parsed_curves: Some(MICROPYTHON_CURVES),
    critical_policies: false,
    cn_fallback: true,
    ip_san: true,
    enforces_eku: true,
    clock_starts_unset: true,
    unset_clock_year: 2000,
    verify_needs_hostname: true,
    script_default_verifies_nothing: true,
    hello: Some(MBEDTLS36_HELLO),
};

/// MicroPython v1.29 and later on bare-metal ports (`MBEDTLS_PEM_PARSE_C`
/// enabled): PEM parsing and several anchors; the same hello as `openmv`.
pub const MICROPYTHON_PEM: Profile = Profile {
    name: "micropython-pem",
    summary: "MicroPython v1.29+ firmware (bare-metal ports, mbedTLS 3.6 with PEM_PARSE_C): PEM accepted, several anchors, TLS 1.2",
    loads_pem: true,
    anchors_per_context: None,
    ..OPENMV
};

/// A current PC peer (OpenSSL 3, rustls, browsers), for contrast.
pub const MODERN: Profile = Profile {
    name: "modern",
    summary: "A current PC stack (OpenSSL 3, rustls, browsers), for contrast",
    loads_pem: true,
    loads_encrypted_keys: true,
    rejects_key_trailing_bytes: false,
    rejects_rsa_key_trailing_bytes: false,
    anchors_per_context: None,
    presented_chain_len: 10,
    output_buffer: 1 << 20,
    input_buffer: 1 << 20,
    max_intermediates: 8,
    versions: &[TlsVersion::Tls12, TlsVersion::Tls13, TlsVersion::Dtls12],
    cipher_suites: MODERN_SUITES,
    groups: &[Curve::X25519, Curve::P256, Curve::P384, Curve::P521],
    key_curves: NIST_CURVES,
    min_rsa_bits: 2048,
    signature_hashes: SHA2,
    rsa_pss: true,
    ed25519: true,
    known_extensions: None,
    parsed_curves: None,
    critical_policies: true,
    cn_fallback: false,
    ip_san: true,
    enforces_eku: true,
    clock_starts_unset: false,
    unset_clock_year: 1970,
    verify_needs_hostname: false,
    script_default_verifies_nothing: false,
    hello: None,
};

/// Every profile devtls knows, the default first.
pub const ALL: &[&Profile] = &[&OPENMV, &MICROPYTHON_PEM, &MODERN];

/// The profile used when none is named.
pub const DEFAULT: &Profile = &OPENMV;

/// Looks a profile up by its command-line name.
pub fn by_name(name: &str) -> Option<&'static Profile> {
    ALL.iter()
        .copied()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The names of all profiles, for error messages and `--help`.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_default_is_openmv() {
        assert_eq!(by_name("OpenMV").unwrap().name, "openmv");
        assert!(by_name("nokia").is_none());
        assert_eq!(DEFAULT.name, "openmv");
    }

    #[test]
    fn openmv_is_the_device_facts() {
        let p = by_name("openmv").unwrap();
        assert!(!p.loads_pem && p.single_anchor() && p.presented_chain_len == 1);
        assert!(p.speaks(TlsVersion::Tls12) && !p.speaks(TlsVersion::Tls13));
        assert!(!p.groups.contains(&Curve::X25519));
        assert!(!p.accepts_hash(Hash::Sha1) && !p.rsa_pss && !p.ed25519);
        assert_eq!(p.cipher_suites.len(), 18);
        assert_eq!(p.cipher_suites[0].code, 0xC02C);
    }

    #[test]
    fn micropython_pem_differs_only_in_pem_and_anchors() {
        let p = by_name("micropython-pem").unwrap();
        assert!(p.loads_pem && !p.single_anchor());
        assert!(!p.speaks(TlsVersion::Tls13));
    }
}

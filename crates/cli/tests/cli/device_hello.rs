//! The ClientHello the device sends, recorded from the device peer (mbedTLS
//! 3.6.5 with the device's configuration) on a raw loopback socket, TLS and
//! DTLS. The fields measured here are written down in
//! docs/device-behaviour.md ("The device's ClientHello"); devtls's own
//! device hello is compared against `device::record_client_hello`.

use crate::support;

use devtls_pki::profile::OPENMV;
use support::device::{parse_client_hello, record_client_hello, ClientHello};

const SERVER_NAME: u16 = 0;
const SUPPORTED_GROUPS: u16 = 10;
const EC_POINT_FORMATS: u16 = 11;
const SIGNATURE_ALGORITHMS: u16 = 13;

fn show(label: &str, h: &ClientHello) {
    let hex = |v: &[u16]| {
        v.iter()
            .map(|x| format!("{x:04x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("{label}:");
    println!(
        "  record version {:04x}, hello version {:04x}, session id {} bytes, cookie {} bytes",
        h.record_version,
        h.version,
        h.session_id_len,
        h.cookie.len()
    );
    println!("  suites      {}", hex(&h.suites));
    println!("  compression {:?}", h.compression);
    println!("  extensions  {}", hex(&h.extensions));
    println!("  groups      {}", hex(&h.groups));
    println!("  sig algs    {}", hex(&h.sig_algs));
    println!("  point fmts  {:?}", h.point_formats);
    println!("  server_name {:?}", h.server_name);
}

/// The profile's suites as IANA code points, in the device's order.
fn profile_suites() -> Vec<u16> {
    OPENMV.cipher_suites.iter().map(|s| s.code).collect()
}

fn check(h: &ClientHello, dtls: bool) {
    let mut expected = profile_suites();
    expected.push(0x00ff); // TLS_EMPTY_RENEGOTIATION_INFO_SCSV
    assert_eq!(h.suites, expected, "suites in the device's order");
    assert_eq!(h.version, if dtls { 0xfefd } else { 0x0303 });
    assert_eq!(h.record_version, h.version);
    assert_eq!(h.session_id_len, 0);
    assert_eq!(h.compression, [0]);
    assert_eq!(
        h.extensions,
        [
            SERVER_NAME,
            SUPPORTED_GROUPS,
            SIGNATURE_ALGORITHMS,
            EC_POINT_FORMATS
        ]
    );
    // secp256r1, secp384r1, secp521r1: no X25519, and secp256k1 is compiled
    // in but not in 3.6's default group list.
    assert_eq!(h.groups, [0x0017, 0x0018, 0x0019]);
    assert_eq!(h.point_formats, [0]);
    // ECDSA and RSA PKCS#1 v1.5 with SHA-512/384/256; no RSA-PSS, no SHA-1,
    // no SHA-224.
    assert_eq!(h.sig_algs, [0x0603, 0x0601, 0x0503, 0x0501, 0x0403, 0x0401]);
    assert_eq!(h.server_name.as_deref(), Some("openmv"));
}

#[test]
fn device_tls_client_hello_is_recorded_and_lists_the_devices_offer() {
    let bytes = record_client_hello(false, "openmv");
    let hello = parse_client_hello(&bytes, false);
    show("TLS ClientHello", &hello);
    check(&hello, false);
}

#[test]
fn device_dtls_client_hello_is_recorded_and_lists_the_devices_offer() {
    let bytes = record_client_hello(true, "openmv");
    let hello = parse_client_hello(&bytes, true);
    show("DTLS ClientHello", &hello);
    assert!(hello.cookie.is_empty(), "the first hello has no cookie");
    check(&hello, true);
}

#[test]
fn device_sends_an_ip_literal_hostname_as_sni() {
    let hello = parse_client_hello(&record_client_hello(false, "127.0.0.1"), false);
    println!("server_name for 127.0.0.1: {:?}", hello.server_name);
    assert_eq!(hello.server_name.as_deref(), Some("127.0.0.1"));
}

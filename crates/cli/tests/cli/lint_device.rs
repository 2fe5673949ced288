//! Lint's errors are the device's refusals: for each kind of bad server
//! certificate, `devtls lint` reports an error and the device peer (mbedTLS
//! 3.6 with the device's configuration, one DER anchor, `server_hostname`)
//! refuses the same certificate when `openssl s_server` presents it; a clean
//! set lints clean and is accepted.

use crate::support;

use std::path::Path;

use support::device;
use support::lint::lint;
use support::peers::{openssl_server, Conn};
use support::{ok_in, openssl_ok, words};

/// X509_CERT_VERIFY_FAILED, what the device's verify step reports.
const CERT_VERIFY_FAILED: i64 = -0x2700;

/// `openssl req -x509` server certificate STEM.crt/.key/.der naming `openmv`.
fn openssl_server_cert(d: &Path, stem: &str, extra: &[&str]) {
    let (crt, key, der) = (
        format!("{stem}.crt"),
        format!("{stem}.key"),
        format!("{stem}.der"),
    );
    let mut args = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=openmv",
        "-addext",
        "subjectAltName=DNS:openmv",
        "-keyout",
        &key,
        "-out",
        &crt,
    ];
    args.extend_from_slice(extra);
    openssl_ok(d, &args);
    openssl_ok(d, &["x509", "-in", &crt, "-outform", "DER", "-out", &der]);
}

/// What the device peer says when `openssl s_server` presents STEM.crt and
/// the peer trusts STEM.der and checks `hostname`.
fn device_verdict(d: &Path, stem: &str, hostname: &str) -> Conn {
    let (crt, key, der) = (
        format!("{stem}.crt"),
        format!("{stem}.key"),
        format!("{stem}.der"),
    );
    // SECLEVEL=0 so OpenSSL agrees to serve weak material: the peer must judge it.
    let server = openssl_server(
        d,
        &[
            "-cert",
            &crt,
            "-key",
            &key,
            "-tls1_2",
            "-rev",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ],
    );
    let run = device::client(
        d,
        server.port,
        &[
            "--ca",
            &der,
            "--hostname",
            hostname,
            "--send",
            "olleh\n",
            "--timeout",
            "10",
        ],
    );
    let conn = run.single().clone();
    assert!(conn.code.is_some() || conn.ok, "{}", run.transcript);
    conn
}

#[test]
fn a_clean_set_is_accepted_by_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns openmv"));
    let r = lint(d, &words("server.der server.key.der --host openmv"));
    r.expect(0, &[]);
    let conn = device_verdict(d, "server", "openmv");
    assert!(conn.ok, "{conn:?}");
    assert_eq!(conn.received.as_deref(), Some("hello\n"), "{conn:?}");
}

#[test]
fn host_mismatch_is_the_devices_verify_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns openmv"));
    let r = lint(d, &["server.der", "--host", "camera.local"]);
    r.expect(1, &["host-mismatch"]);
    let conn = device_verdict(d, "server", "camera.local");
    assert!(
        !conn.ok && conn.code == Some(CERT_VERIFY_FAILED),
        "{conn:?}"
    );
    r.quotes_device("host-mismatch", &conn.verify);
}

#[test]
fn client_certificate_served_as_server_is_refused_by_eku() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new client --dns openmv"));
    let r = lint(d, &words("client.der --role server --host openmv"));
    r.expect(1, &["eku-role"]);
    let conn = device_verdict(d, "client", "openmv");
    assert!(!conn.ok && conn.code.is_some(), "{conn:?}");
}

#[test]
fn weak_hash_and_small_rsa_are_refused_by_the_devices_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_server_cert(
        d,
        "sha1",
        &[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-sha1",
        ],
    );
    openssl_server_cert(d, "rsa1024", &["-newkey", "rsa:1024", "-sha256"]);
    for (stem, id) in [("sha1", "sig-hash"), ("rsa1024", "key-rsa-small")] {
        let der = format!("{stem}.der");
        let r = lint(d, &[&der, "--host", "openmv"]);
        r.expect(1, &[id]);
        let conn = device_verdict(d, stem, "openmv");
        assert!(
            !conn.ok && conn.code == Some(CERT_VERIFY_FAILED),
            "{stem}: {conn:?}"
        );
        r.quotes_device(id, &conn.verify);
    }
}

#[test]
fn critical_extensions_are_refused_with_the_devices_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let cases = [
        (
            "nc",
            "nameConstraints=critical,permitted;DNS:openmv",
            "critical-name-constraints",
            devtls_pki::device_error::CRITICAL_EXTENSION.code,
        ),
        (
            "pol",
            "certificatePolicies=critical,1.2.3.4",
            "critical-policies",
            devtls_pki::device_error::CRITICAL_POLICIES.code,
        ),
    ];
    for (stem, ext, id, code) in cases {
        let mut extra = p256.to_vec();
        extra.extend_from_slice(&["-addext", ext]);
        openssl_server_cert(d, stem, &extra);
        let der = format!("{stem}.der");
        let r = lint(d, &[&der]);
        r.expect(1, &[id]);
        // The peer cannot even load it as its anchor, with the code lint names.
        let conn = device_verdict(d, stem, "openmv");
        assert!(
            !conn.ok && conn.code == Some(code.into()),
            "{stem}: {conn:?}"
        );
        let message = r.finding(id)["message"].as_str().unwrap().to_string();
        assert!(message.contains(&format!("-0x{:04X}", -code)), "{message}");
    }
}

#[test]
fn secp256k1_and_rsa_pss_are_refused_by_the_devices_build() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_server_cert(
        d,
        "k1",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
    );
    openssl_server_cert(
        d,
        "pss",
        &["-newkey", "rsa:2048", "-sigopt", "rsa_padding_mode:pss"],
    );
    lint(d, &words("k1.der --host openmv")).expect(1, &["key-secp256k1"]);
    lint(d, &words("pss.der --host openmv")).expect(1, &["sig-rsa-pss"]);
    // secp256k1 is compiled into the device's build but is not one of the
    // groups it offers: the server finds no common curve for its key.
    let conn = device_verdict(d, "k1", "openmv");
    assert!(!conn.ok && conn.code.is_some(), "{conn:?}");
    // No RSA-PSS in the device's build: the anchor itself does not load.
    let conn = device_verdict(d, "pss", "openmv");
    assert_eq!(conn.code, Some(-0x2300), "{conn:?}");
}

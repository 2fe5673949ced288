//! The device peer (mbedTLS 3.6.5 with the device's configuration,
//! tests/peers/mbedtls36) behaves as the device: it connects where the device
//! connects and fails with the device's code where the device fails, as a
//! client of devtls and OpenSSL, as a server to OpenSSL, over TLS and DTLS.

mod support;

use std::io::Write;
use std::path::Path;

use support::device;
use support::net::Serve;
use support::peers::{openssl_client, openssl_server, WAIT};
use support::{ok_in, words};

const VERIFY_FAILED: i64 = -0x2700;
const FATAL_ALERT: i64 = -0x7780;

/// `devtls new server` for openmv/127.0.0.1 plus a second, unrelated one.
fn guide_files(d: &Path) {
    ok_in(d, &words("new server --dns openmv --ip 127.0.0.1"));
    ok_in(d, &words("new server --dns other --name other"));
}

#[test]
fn device_client_verifies_openssl_server_and_refuses_a_wrong_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let server = openssl_server(d, &["-cert", "server.crt", "-key", "server.key", "-rev"]);

    let run = device::client(
        d,
        server.port,
        &[
            "--ca",
            "server.der",
            "--hostname",
            "openmv",
            "--send",
            "olleh\n",
        ],
    );
    let conn = run.single();
    assert!(conn.ok, "{}", run.transcript);
    assert!(run.exited(0), "{}", run.transcript);
    assert_eq!(conn.version.as_deref(), Some("TLSv1.2"));
    assert_eq!(conn.received.as_deref(), Some("hello\n"));
    assert_eq!(conn.peer_subject.as_deref(), Some("CN=openmv"));

    // Negative control: the anchor of another server.
    let run = device::client(
        d,
        server.port,
        &["--ca", "other.der", "--hostname", "openmv"],
    );
    let conn = run.single();
    assert!(!conn.ok, "{}", run.transcript);
    assert!(run.exited(1), "{}", run.transcript);
    assert_eq!(conn.code, Some(VERIFY_FAILED), "{}", run.transcript);
    assert_eq!(
        conn.error.as_deref(),
        Some("MBEDTLS_ERR_X509_CERT_VERIFY_FAILED")
    );
    assert_eq!(
        conn.verify,
        ["The certificate is not correctly signed by the trusted CA"],
        "{}",
        run.transcript
    );
}

#[test]
fn device_client_connects_to_devtls_serve_and_fails_on_the_wrong_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let serve = Serve::guide(d, &[]);
    let run = device::client(
        d,
        serve.port,
        &["--ca", "server.der", "--hostname", "openmv"],
    );
    let conn = run.single();
    assert!(conn.ok, "{}", run.transcript);
    assert_eq!(conn.received.as_deref(), Some("hello\n"));

    let run = device::client(d, serve.port, &["--ca", "server.der", "--hostname", "nope"]);
    let conn = run.single();
    assert_eq!(conn.code, Some(VERIFY_FAILED), "{}", run.transcript);
    assert_eq!(
        conn.verify,
        ["The certificate Common Name (CN) does not match with the expected CN"]
    );
}

#[test]
fn device_client_fails_on_a_tls13_only_server_with_the_devices_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let server = openssl_server(d, &["-cert", "server.crt", "-key", "server.key", "-tls1_3"]);
    let run = device::client(
        d,
        server.port,
        &["--ca", "server.der", "--hostname", "openmv"],
    );
    let conn = run.single();
    assert!(!conn.ok, "{}", run.transcript);
    assert_eq!(conn.code, Some(FATAL_ALERT), "{}", run.transcript);
    assert_eq!(
        conn.error.as_deref(),
        Some("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
    );

    // Control: the same server with TLS 1.2 allowed.
    let server = openssl_server(d, &["-cert", "server.crt", "-key", "server.key", "-rev"]);
    let run = device::client(
        d,
        server.port,
        &["--ca", "server.der", "--hostname", "openmv"],
    );
    assert!(run.single().ok, "{}", run.transcript);
}

#[test]
fn device_server_answers_openssl_client_over_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let server = device::server(d, &["--cert", "server.der", "--key", "server.key.der"]);
    let port = server.port;
    let client = openssl_client(
        d,
        port,
        &[
            "-CAfile",
            "server.crt",
            "-verify_hostname",
            "openmv",
            "-verify_return_error",
            "-quiet",
        ],
        "ping\n",
    );
    let run = device::server_results(server, WAIT);
    let conn = run.single();
    assert!(conn.ok, "{}\n{}", run.transcript, client.text);
    assert_eq!(conn.received.as_deref(), Some("ping\n"));
    assert!(client.text.contains("hello"), "{}", client.text);
}

/// Seconds since 1970, `days` from now.
fn unix_in_days(days: i64) -> i64 {
    (time::OffsetDateTime::now_utc() + time::Duration::days(days)).unix_timestamp()
}

#[test]
fn device_client_checks_validity_at_the_device_clock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let server = openssl_server(d, &["-cert", "server.crt", "-key", "server.key", "-rev"]);
    let ca = ["--ca", "server.der", "--hostname", "openmv"];

    // An unset RTC reads 2000-01-01: the certificate is not valid yet.
    let run = device::client(d, server.port, &[&ca[..], &["--time", "unset"]].concat());
    let conn = run.single();
    assert_eq!(conn.code, Some(VERIFY_FAILED), "{}", run.transcript);
    assert_eq!(
        conn.verify,
        ["The certificate validity starts in the future"]
    );

    // A clock far ahead: expired.
    let later = unix_in_days(20 * 365).to_string();
    let run = device::client(d, server.port, &[&ca[..], &["--time", &later]].concat());
    let conn = run.single();
    assert_eq!(conn.code, Some(VERIFY_FAILED), "{}", run.transcript);
    assert_eq!(conn.verify, ["The certificate validity has expired"]);

    // Control: the clock set to now.
    let now = unix_in_days(0).to_string();
    let run = device::client(d, server.port, &[&ca[..], &["--time", &now]].concat());
    assert!(run.single().ok, "{}", run.transcript);
}

#[test]
fn device_client_fails_on_an_x25519_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let args = [
        "-cert",
        "server.crt",
        "-key",
        "server.key",
        "-rev",
        "-groups",
    ];
    let server = openssl_server(d, &[&args[..], &["X25519"]].concat());
    let run = device::client(
        d,
        server.port,
        &["--ca", "server.der", "--hostname", "openmv"],
    );
    let conn = run.single();
    assert!(!conn.ok, "{}", run.transcript);
    assert_eq!(conn.code, Some(FATAL_ALERT), "{}", run.transcript);

    // Control: P-256 only.
    let server = openssl_server(d, &[&args[..], &["P-256"]].concat());
    let run = device::client(
        d,
        server.port,
        &["--ca", "server.der", "--hostname", "openmv"],
    );
    assert!(run.single().ok, "{}", run.transcript);
}

#[test]
fn device_dtls_client_talks_to_openssl_and_devtls_serve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    // s_server cannot -rev over DTLS: it sends what its stdin holds once
    // a client is in.
    let mut server = openssl_server(
        d,
        &["-dtls1_2", "-cert", "server.crt", "-key", "server.key"],
    );
    let stdin = server.peer.child.stdin.as_mut().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    stdin.flush().unwrap();
    let ca = ["--dtls", "--ca", "server.der", "--hostname", "openmv"];
    let run = device::client(d, server.port, &[&ca[..], &["--send", "olleh\n"]].concat());
    let conn = run.single();
    assert!(conn.ok, "{}", run.transcript);
    assert_eq!(conn.version.as_deref(), Some("DTLSv1.2"));
    assert_eq!(conn.received.as_deref(), Some("hello\n"));
    drop(server);

    let serve = Serve::guide(d, &["--dtls"]);
    let run = device::client(d, serve.port, &ca);
    let conn = run.single();
    assert!(conn.ok, "{}", run.transcript);
    assert_eq!(conn.version.as_deref(), Some("DTLSv1.2"));
    assert_eq!(conn.received.as_deref(), Some("hello\n"));

    // Negative control: the wrong anchor over DTLS.
    let run = device::client(
        d,
        serve.port,
        &["--dtls", "--ca", "other.der", "--hostname", "openmv"],
    );
    assert_eq!(run.single().code, Some(VERIFY_FAILED), "{}", run.transcript);
}

#[test]
fn device_dtls_server_uses_cookies_with_openssl_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let server = device::server(
        d,
        &["--dtls", "--cert", "server.der", "--key", "server.key.der"],
    );
    let client = openssl_client(
        d,
        server.port,
        &[
            "-dtls1_2",
            "-CAfile",
            "server.crt",
            "-verify_hostname",
            "openmv",
            "-verify_return_error",
            "-quiet",
        ],
        "ping\n",
    );
    let run = device::server_results(server, WAIT);
    let conn = run.single();
    assert!(conn.ok, "{}\n{}", run.transcript, client.text);
    assert_eq!(conn.version.as_deref(), Some("DTLSv1.2"));
    assert_eq!(conn.received.as_deref(), Some("ping\n"));
}

#[test]
fn device_server_demands_the_client_certificate_for_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    ok_in(d, &words("new client --cn sensor-01"));
    let files = ["--cert", "server.der", "--key", "server.key.der"];
    let openssl_args = ["-CAfile", "server.crt", "-verify_return_error", "-quiet"];

    // No client certificate: the device refuses.
    let server = device::server(d, &[&files[..], &["--ca", "client.der"]].concat());
    let client = openssl_client(d, server.port, &openssl_args, "ping\n");
    let run = device::server_results(server, WAIT);
    let conn = run.single();
    assert!(!conn.ok, "{}\n{}", run.transcript, client.text);
    assert_eq!(conn.code, Some(-0x7480), "{}", run.transcript);
    assert_eq!(
        conn.error.as_deref(),
        Some("MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE")
    );

    // Control: with it, the device accepts and names it.
    let server = device::server(d, &[&files[..], &["--ca", "client.der"]].concat());
    let with_cert = [
        &openssl_args[..],
        &["-cert", "client.crt", "-key", "client.key"],
    ]
    .concat();
    let client = openssl_client(d, server.port, &with_cert, "ping\n");
    let run = device::server_results(server, WAIT);
    let conn = run.single();
    assert!(conn.ok, "{}\n{}", run.transcript, client.text);
    assert_eq!(conn.peer_subject.as_deref(), Some("CN=sensor-01"));
}

//! The device peer (mbedTLS 3.6.5 with the device's configuration,
//! tests/peers/mbedtls36) behaves as the device: it connects where the device
//! connects and fails with the device's code where the device fails, as a
//! client of devtls and OpenSSL, as a server to OpenSSL, over TLS and DTLS.

mod support;

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

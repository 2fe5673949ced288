//! Issue 2: the files `devtls new server` writes complete real handshakes.
//!
//! OpenSSL and GnuTLS verify them as PC clients, and the device peer (mbedTLS
//! 3.6 with the device's configuration: one DER anchor, TLS 1.2, the
//! device's suites) verifies them as a client and presents them as a server.
//! Every positive case has a negative control with the wrong anchor (another
//! devtls certificate), so the tests cannot pass because verification was
//! off.

use crate::support;

use std::path::Path;

use support::device;
use support::peers::{gnutls_client, openssl_client, openssl_server, ClientRun, WAIT};
use support::{ok_in, text, words};
use tempfile::TempDir;

const KEYS: [&str; 3] = ["p256", "p384", "rsa2048"];

/// mbedTLS's X509_CERT_VERIFY_FAILED (-0x2700), what the device reports too.
const CERT_VERIFY_FAILED: i64 = -0x2700;
/// mbedTLS's X509_INVALID_FORMAT (-0x2180): a PEM file where DER is needed.
const X509_INVALID_FORMAT: i64 = -0x2180;

/// A folder with `devtls new server --dns openmv --ip IP --key KEY`'s files.
fn server_files(key: &str, ip: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = ok_in(
        dir.path(),
        &["new", "server", "--dns", "openmv", "--ip", ip, "--key", key],
    );
    assert!(dir.path().join("server.der").is_file(), "{}", text(&out));
    dir
}

/// The wrong anchor: another devtls certificate with the same names, copied
/// into `dir` as wrong.crt / wrong.der (and its key as wrong.key).
fn add_wrong_anchor(dir: &Path) {
    let other = server_files("p256", "127.0.0.1");
    for (from, to) in [
        ("server.crt", "wrong.crt"),
        ("server.der", "wrong.der"),
        ("server.key", "wrong.key"),
    ] {
        std::fs::copy(other.path().join(from), dir.join(to)).unwrap();
    }
}

/// s_client verified the peer: it says "Verify return code: 0 (ok)" (in the
/// session block for TLS 1.2) and its verify callback reported no error.
fn assert_verified(run: &ClientRun, what: &str) {
    let ok_line = run
        .text
        .lines()
        .any(|l| l.trim() == "Verify return code: 0 (ok)");
    assert!(
        run.success() && ok_line && !run.text.contains("verify error:"),
        "{what} should verify:\n{}",
        run.text
    );
}

/// s_client refused the peer at certificate verification (its verify
/// callback printed the error), not for some other reason.
fn assert_refused(run: &ClientRun, what: &str) {
    assert!(
        !run.success() && run.text.contains("verify error:num="),
        "{what} should be refused by verification:\n{}",
        run.text
    );
}

/// s_client verifying by name, by IP, and refusing the wrong anchor.
fn check_openssl_clients(d: &Path, port: u16, ip: &str, key: &str, mode: &str) {
    let base = ["-verify_return_error", "-CAfile", "server.crt"];
    let by_name = [&base[..], &["-verify_hostname", "openmv"]].concat();
    let run = openssl_client(d, port, &by_name, "");
    assert_verified(
        &run,
        &format!("{key} {mode}: s_client -verify_hostname openmv"),
    );
    let by_ip = [&base[..], &["-verify_ip", ip]].concat();
    let run = openssl_client(d, port, &by_ip, "");
    assert_verified(&run, &format!("{key} {mode}: s_client -verify_ip {ip}"));
    let wrong = [
        "-verify_return_error",
        "-CAfile",
        "wrong.crt",
        "-verify_hostname",
        "openmv",
    ];
    let run = openssl_client(d, port, &wrong, "");
    assert_refused(
        &run,
        &format!("{key} {mode}: s_client with the wrong anchor"),
    );
}

/// Behind `openssl s_server` presenting server.crt/server.key: s_client
/// (TLS 1.2 and its default, 1.3) by name and IP, gnutls-cli, and the mbedTLS
/// client with server.der as its one anchor; each also with the wrong anchor.
fn pc_and_device_clients_verify(key: &str) {
    let dir = server_files(key, "127.0.0.1");
    let d = dir.path();
    add_wrong_anchor(d);
    // -rev answers each line reversed: proof the data went both ways.
    let server = openssl_server(
        d,
        &[
            "-cert",
            "server.crt",
            "-key",
            "server.key",
            "-rev",
            "-tls1_2",
        ],
    );
    let port = server.port;
    check_openssl_clients(d, port, "127.0.0.1", key, "-tls1_2");

    let gnutls = |ca: &str, name: &str| {
        let ca = format!("--x509cafile={ca}");
        let name = format!("--verify-hostname={name}");
        gnutls_client(d, port, &[&ca, &name], "")
    };
    for name in ["openmv", "127.0.0.1"] {
        let run = gnutls("server.crt", name);
        assert!(
            run.success() && run.text.contains("The certificate is trusted"),
            "{key}: gnutls-cli verifying {name}:\n{}",
            run.text
        );
    }
    let run = gnutls("wrong.crt", "openmv");
    assert!(
        !run.success() && run.text.contains("NOT trusted"),
        "{key}: gnutls-cli with the wrong anchor:\n{}",
        run.text
    );

    let mbed = |ca: &str| {
        device::client(
            d,
            port,
            &["--ca", ca, "--hostname", "openmv", "--send", "olleh\n"],
        )
    };
    let run = mbed("server.der");
    let conn = run.single();
    assert!(
        conn.ok && run.exited(0),
        "{key}: mbedTLS client:\n{}",
        run.transcript
    );
    assert_eq!(conn.received.as_deref(), Some("hello\n"), "{key}");
    assert_eq!(conn.version.as_deref(), Some("TLSv1.2"), "{key}");
    assert_eq!(conn.peer_subject.as_deref(), Some("CN=openmv"), "{key}");
    // The device (3.6) matches server_hostname against iPAddress SANs too.
    let run = device::client(d, port, &["--ca", "server.der", "--hostname", "127.0.0.1"]);
    assert!(
        run.single().ok,
        "{key}: device peer by IP:\n{}",
        run.transcript
    );
    let run = mbed("wrong.der");
    let conn = run.single();
    assert!(
        !conn.ok && conn.code == Some(CERT_VERIFY_FAILED) && run.exited(1),
        "{key}: mbedTLS client with the wrong anchor:\n{}",
        run.transcript
    );
    drop(server);

    // OpenSSL's default server (TLS 1.3 with s_client) presents the same files.
    let server = openssl_server(d, &["-cert", "server.crt", "-key", "server.key"]);
    check_openssl_clients(d, server.port, "127.0.0.1", key, "default");
}

#[test]
fn p256_server_files_verify_with_openssl_gnutls_and_mbedtls() {
    pc_and_device_clients_verify("p256");
}

#[test]
fn p384_server_files_verify_with_openssl_gnutls_and_mbedtls() {
    pc_and_device_clients_verify("p384");
}

#[test]
fn rsa2048_server_files_verify_with_openssl_gnutls_and_mbedtls() {
    pc_and_device_clients_verify("rsa2048");
}

#[test]
fn openssl_verifies_mbedtls_server_presenting_devtls_der_files() {
    for key in KEYS {
        let dir = server_files(key, "127.0.0.1");
        let d = dir.path();
        add_wrong_anchor(d);
        let server = device::server(
            d,
            &[
                "--cert",
                "server.der",
                "--key",
                "server.key.der",
                "--count",
                "3",
            ],
        );
        let port = server.port;
        let base = ["-verify_return_error", "-CAfile", "server.crt", "-ign_eof"];
        let by_name = [&base[..], &["-verify_hostname", "openmv"]].concat();
        let run = openssl_client(d, port, &by_name, "hello\n");
        assert_verified(&run, &format!("{key}: s_client -> mbedTLS by name"));
        assert!(
            run.text.lines().any(|l| l == "hello"),
            "{key}: no reply:\n{}",
            run.text
        );
        let by_ip = [&base[..], &["-verify_ip", "127.0.0.1"]].concat();
        let run = openssl_client(d, port, &by_ip, "hello\n");
        assert_verified(&run, &format!("{key}: s_client -> mbedTLS by IP"));
        let wrong = ["-verify_return_error", "-CAfile", "wrong.crt", "-ign_eof"];
        let run = openssl_client(d, port, &wrong, "hello\n");
        assert_refused(&run, &format!("{key}: s_client -> mbedTLS, wrong anchor"));

        let run = device::server_results(server, WAIT);
        assert_eq!(run.conns.len(), 3, "{key}:\n{}", run.transcript);
        for conn in &run.conns[..2] {
            assert!(conn.ok, "{key}:\n{}", run.transcript);
            assert_eq!(conn.received.as_deref(), Some("hello\n"), "{key}");
            assert_eq!(conn.version.as_deref(), Some("TLSv1.2"), "{key}");
        }
        // The client refused us: the server saw the handshake fail.
        assert!(
            !run.conns[2].ok && run.exited(1),
            "{key}:\n{}",
            run.transcript
        );
    }
}

/// The guide's address 192.168.1.50 is not on this machine: the name is
/// verified over 127.0.0.1, the IP SAN by OpenSSL's offline IP check.
#[test]
fn guide_files_for_192_168_1_50_verify_by_name_over_loopback() {
    let dir = server_files("p256", "192.168.1.50");
    let d = dir.path();
    add_wrong_anchor(d);
    let server = openssl_server(
        d,
        &[
            "-cert",
            "server.crt",
            "-key",
            "server.key",
            "-rev",
            "-tls1_2",
        ],
    );
    check_openssl_clients(d, server.port, "192.168.1.50", "p256", "guide");
    // The certificate does not name the address it is served from here.
    let run = openssl_client(
        d,
        server.port,
        &[
            "-verify_return_error",
            "-CAfile",
            "server.crt",
            "-verify_ip",
            "127.0.0.1",
        ],
        "",
    );
    assert_refused(&run, "guide cert checked against 127.0.0.1");
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
    assert_eq!(conn.received.as_deref(), Some("hello\n"));
}

/// DTLS 1.2 with the cookie exchange: OpenSSL and the mbedTLS client verify
/// the mbedTLS DTLS server presenting the devtls DER files.
#[test]
fn dtls_mbedtls_server_presenting_devtls_files_is_verified() {
    let dir = server_files("p256", "127.0.0.1");
    let d = dir.path();
    let server = device::server(
        d,
        &[
            "--dtls",
            "--cert",
            "server.der",
            "--key",
            "server.key.der",
            "--count",
            "2",
        ],
    );
    let run = openssl_client(
        d,
        server.port,
        &[
            "-dtls1_2",
            "-verify_return_error",
            "-CAfile",
            "server.crt",
            "-verify_hostname",
            "openmv",
            "-ign_eof",
        ],
        "hello\n",
    );
    assert_verified(&run, "s_client -dtls1_2 -> mbedTLS");
    let client = device::client(
        d,
        server.port,
        &["--dtls", "--ca", "server.der", "--hostname", "openmv"],
    );
    let conn = client.single();
    assert!(conn.ok, "{}", client.transcript);
    assert_eq!(conn.version.as_deref(), Some("DTLSv1.2"));
    assert_eq!(conn.received.as_deref(), Some("hello\n"));
    let run = device::server_results(server, WAIT);
    assert!(
        run.exited(0) && run.conns.len() == 2 && run.conns.iter().all(|c| c.ok),
        "{}",
        run.transcript
    );
}

/// Like the device, the mbedTLS peer cannot use a PEM certificate: devtls's
/// .der files are the ones to copy.
#[test]
fn mbedtls_peer_refuses_pem_where_the_device_needs_der() {
    let dir = server_files("p256", "127.0.0.1");
    let d = dir.path();
    let server = openssl_server(d, &["-cert", "server.crt", "-key", "server.key"]);
    let run = device::client(
        d,
        server.port,
        &["--ca", "server.crt", "--hostname", "openmv"],
    );
    let conn = run.single();
    assert!(
        !conn.ok && conn.code == Some(X509_INVALID_FORMAT) && run.exited(2),
        "{}",
        run.transcript
    );
    assert!(conn.error.as_deref().unwrap_or("").contains("server.crt"));
}

/// `devtls new client` files authenticate the device to a server: the mbedTLS
/// server demanding a certificate verifies client.der as its one anchor, and
/// refuses a client without one or with another certificate.
#[test]
fn mbedtls_server_verifies_devtls_client_files() {
    let dir = server_files("p256", "127.0.0.1");
    let d = dir.path();
    add_wrong_anchor(d);
    ok_in(d, &words("new client --dns device1"));
    let server = device::server(
        d,
        &[
            "--cert",
            "server.der",
            "--key",
            "server.key.der",
            "--ca",
            "client.der",
            "--count",
            "3",
        ],
    );
    let base = [
        "-verify_return_error",
        "-CAfile",
        "server.crt",
        "-verify_hostname",
        "openmv",
        "-ign_eof",
    ];
    let with_cert = [&base[..], &["-cert", "client.crt", "-key", "client.key"]].concat();
    let run = openssl_client(d, server.port, &with_cert, "hello\n");
    assert_verified(&run, "s_client presenting client.crt");
    assert!(run.text.lines().any(|l| l == "hello"), "{}", run.text);
    let run = openssl_client(d, server.port, &base, "hello\n");
    assert!(!run.success(), "no client certificate:\n{}", run.text);
    let with_wrong = [&base[..], &["-cert", "wrong.crt", "-key", "wrong.key"]].concat();
    let run = openssl_client(d, server.port, &with_wrong, "hello\n");
    assert!(!run.success(), "another certificate:\n{}", run.text);

    let run = device::server_results(server, WAIT);
    assert_eq!(run.conns.len(), 3, "{}", run.transcript);
    assert!(run.conns[0].ok, "{}", run.transcript);
    assert_eq!(run.conns[0].peer_subject.as_deref(), Some("CN=device1"));
    // mbedTLS's NO_CLIENT_CERTIFICATE (-0x7480), as the device reports it.
    assert_eq!(run.conns[1].code, Some(-0x7480), "{}", run.transcript);
    assert_eq!(
        run.conns[2].code,
        Some(CERT_VERIFY_FAILED),
        "{}",
        run.transcript
    );
}

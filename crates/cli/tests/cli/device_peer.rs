//! The device peer (mbedTLS 3.6.5 with the device's configuration,
//! tests/peers/mbedtls36) behaves as the device: it connects where the device
//! connects and fails with the device's code where the device fails, as a
//! client of devtls and OpenSSL, as a server to OpenSSL, over TLS and DTLS.

use crate::support;

use std::io::Write;
use std::path::Path;

use support::device;
use support::net::Serve;
use support::peers::{openssl_client, openssl_server, LineServer, PeerRun, WAIT};
use support::{ok_in, words};

const VERIFY_FAILED: i64 = -0x2700;
const FATAL_ALERT: i64 = -0x7780;

/// `devtls new server` for openmv/127.0.0.1 plus a second, unrelated one.
fn guide_files(d: &Path) {
    ok_in(d, &words("new server --dns openmv --ip 127.0.0.1"));
    ok_in(d, &words("new server --dns other --name other"));
}

/// The device peer as a client of `port` on loopback, trusting the guide's
/// `server.der` for the name `openmv`, plus `extra` options.
fn guide_client(d: &Path, port: u16, extra: &[&str]) -> PeerRun {
    let guide = ["--ca", "server.der", "--hostname", "openmv"];
    device::client(d, port, &[&guide[..], extra].concat())
}

/// `openssl s_server` with the guide's `server.crt`/`server.key`, plus `extra`.
fn guide_openssl_server(d: &Path, extra: &[&str]) -> LineServer {
    openssl_server(
        d,
        &[&["-cert", "server.crt", "-key", "server.key"][..], extra].concat(),
    )
}

/// `openssl s_client` verifying the guide's server (`server.crt`, `openmv`),
/// plus `extra`, sending `ping`.
fn guide_openssl_client(d: &Path, port: u16, extra: &[&str]) -> support::peers::ClientRun {
    let verify = [
        "-CAfile",
        "server.crt",
        "-verify_hostname",
        "openmv",
        "-verify_return_error",
        "-quiet",
    ];
    openssl_client(d, port, &[extra, &verify[..]].concat(), "ping\n")
}

/// The device client's connection failed with a fatal alert from the server.
fn assert_fatal_alert(run: &PeerRun) {
    let conn = run.single();
    assert!(!conn.ok, "{}", run.transcript);
    assert_eq!(conn.code, Some(FATAL_ALERT), "{}", run.transcript);
    assert_eq!(
        conn.error.as_deref(),
        Some("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
    );
}

#[test]
fn device_client_verifies_openssl_server_and_refuses_a_wrong_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let server = guide_openssl_server(d, &["-rev"]);

    let run = guide_client(d, server.port, &["--send", "olleh\n"]);
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
    let run = guide_client(d, serve.port, &[]);
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
    let server = guide_openssl_server(d, &["-tls1_3"]);
    assert_fatal_alert(&guide_client(d, server.port, &[]));

    // Control: the same server with TLS 1.2 allowed.
    let server = guide_openssl_server(d, &["-rev"]);
    let run = guide_client(d, server.port, &[]);
    assert!(run.single().ok, "{}", run.transcript);
}

#[test]
fn device_server_answers_openssl_client_over_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let server = device::server(d, &["--cert", "server.der", "--key", "server.key.der"]);
    let port = server.port;
    let client = guide_openssl_client(d, port, &[]);
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
    let server = guide_openssl_server(d, &["-rev"]);

    // An unset RTC reads 2000-01-01: the certificate is not valid yet.
    let run = guide_client(d, server.port, &["--time", "unset"]);
    let conn = run.single();
    assert_eq!(conn.code, Some(VERIFY_FAILED), "{}", run.transcript);
    assert_eq!(
        conn.verify,
        ["The certificate validity starts in the future"]
    );

    // A clock far ahead: expired.
    let later = unix_in_days(20 * 365).to_string();
    let run = guide_client(d, server.port, &["--time", &later]);
    let conn = run.single();
    assert_eq!(conn.code, Some(VERIFY_FAILED), "{}", run.transcript);
    assert_eq!(conn.verify, ["The certificate validity has expired"]);

    // Control: the clock set to now.
    let now = unix_in_days(0).to_string();
    let run = guide_client(d, server.port, &["--time", &now]);
    assert!(run.single().ok, "{}", run.transcript);
}

#[test]
fn device_client_fails_on_an_x25519_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guide_files(d);
    let server = guide_openssl_server(d, &["-rev", "-groups", "X25519"]);
    assert_fatal_alert(&guide_client(d, server.port, &[]));

    // Control: P-256 only.
    let server = guide_openssl_server(d, &["-rev", "-groups", "P-256"]);
    let run = guide_client(d, server.port, &[]);
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
    let client = guide_openssl_client(d, server.port, &["-dtls1_2"]);
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

/// The servers issue 10 lists as doctor's misses, as the device sees them:
/// P-521 leaf and RSA key exchange connect; secp256k1 and brainpoolP256r1
/// leaves get a fatal alert; an unknown critical extension fails parsing.
#[test]
fn device_client_on_leaf_curves_rsa_key_exchange_and_unknown_critical_extensions() {
    use support::doctor::{serve, Pki};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d, "t", 3650, (-1, 3650));
    let issuer = pki.int_files();
    let issuer = (issuer.0.as_str(), issuer.1.as_str());
    const P521: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"];
    const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    const K1: &[&str] = &[
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:secp256k1",
    ];
    const BP: &[&str] = &[
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:brainpoolP256r1",
    ];
    const RSA: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
    const CRITICAL: &str = "1.3.6.1.4.1.99999.1=critical,ASN1:NULL\n";
    let rsa_kx: &[&str] = &["-tls1_2", "-cipher", "AES128-GCM-SHA256"];
    // (stem, key, extension lines, server options, expected code or None: works)
    let cases = [
        ("p521", P521, "", &[][..], None),
        ("rsakx", RSA, "", rsa_kx, None),
        ("k1", K1, "", &[][..], Some(FATAL_ALERT)),
        ("bp", BP, "", &[][..], Some(FATAL_ALERT)),
        ("crit", P256, CRITICAL, &[][..], Some(-0x2562)),
    ];
    for (stem, keyalg, ext, server_extra, expect) in cases {
        pki.openssl_leaf(stem, keyalg, issuer, &[], ext);
        let server = serve(d, stem, Some("t-int.pem"), server_extra);
        let run = device::client(
            d,
            server.port,
            &["--ca", "t-root.der", "--hostname", "localhost"],
        );
        let conn = run.single();
        println!("{stem:6} {:?} {:?} {:?}", conn.ok, conn.code, conn.cipher);
        match expect {
            None => assert!(conn.ok, "{stem}: {}", run.transcript),
            Some(code) => assert_eq!(conn.code, Some(code), "{stem}: {}", run.transcript),
        }
        if stem == "rsakx" {
            assert_eq!(
                conn.cipher.as_deref(),
                Some("TLS-RSA-WITH-AES-128-GCM-SHA256")
            );
        }
    }
}

/// A self-signed P-256 certificate for `openmv` padded with `sans` extra DNS
/// names: STEM.crt/.key (PEM) and STEM.der/.key.der; returns the DER size.
fn padded_cert(d: &Path, stem: &str, sans: usize) -> usize {
    let names: Vec<String> = (0..sans)
        .map(|i| format!("DNS:host{i:04}.example.com"))
        .collect();
    let san = format!("subjectAltName=DNS:openmv,{}", names.join(","));
    let (crt, key) = (format!("{stem}.crt"), format!("{stem}.key"));
    let args = [
        "req",
        "-x509",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=openmv",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-keyout",
        &key,
        "-out",
        &crt,
        "-addext",
        &san,
    ];
    support::openssl_ok(d, &args);
    let der = format!("{stem}.der");
    support::openssl_ok(d, &["x509", "-in", &crt, "-outform", "DER", "-out", &der]);
    let kder = format!("{stem}.key.der");
    support::openssl_ok(d, &["pkey", "-in", &key, "-outform", "DER", "-out", &kder]);
    std::fs::metadata(d.join(der)).unwrap().len() as usize
}

#[test]
fn device_buffers_4096_bytes_out_and_16384_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Its own certificate must fit the 4096-byte output buffer.
    let size = padded_cert(d, "big", 185);
    assert!(size > 4096, "{size}");
    let server = device::server(d, &["--cert", "big.der", "--key", "big.key.der"]);
    let _ = openssl_client(d, server.port, &["-quiet"], "ping\n");
    let run = device::server_results(server, WAIT);
    assert_eq!(run.single().code, Some(-0x6A00), "{}", run.transcript);
    assert_eq!(
        run.single().error.as_deref(),
        Some("MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL")
    );
    // Control: a certificate that fits.
    padded_cert(d, "fits", 150);
    let server = device::server(d, &["--cert", "fits.der", "--key", "fits.key.der"]);
    let _ = openssl_client(d, server.port, &["-quiet"], "ping\n");
    let run = device::server_results(server, WAIT);
    assert!(run.single().ok, "{}", run.transcript);

    // A server certificate over the 16384-byte input buffer fails; one
    // under it (but over 4096) works.
    for (stem, sans, fits) in [("huge", 770, false), ("large", 600, true)] {
        let size = padded_cert(d, stem, sans);
        let (crt, key, der) = (
            format!("{stem}.crt"),
            format!("{stem}.key"),
            format!("{stem}.der"),
        );
        let server = openssl_server(d, &["-cert", &crt, "-key", &key, "-rev"]);
        let run = device::client(d, server.port, &["--ca", &der, "--hostname", "openmv"]);
        let conn = run.single();
        println!("server certificate of {size} bytes: {conn:?}");
        if fits {
            assert!(conn.ok, "{size} bytes: {}", run.transcript);
        } else {
            assert_eq!(conn.code, Some(-0x7100), "{size} bytes: {}", run.transcript);
        }
    }
}

#[test]
fn build_script_is_idempotent_and_safe_to_run_twice_at_once() {
    let bin = device::binary(); // built (or found) once
    if std::env::var_os("DEVTLS_DEVICE_PEER").is_some() {
        return; // a binary from elsewhere: build.sh is not ours to run
    }
    let before = std::fs::metadata(&bin).unwrap().modified().unwrap();
    let target = bin.parent().unwrap().parent().unwrap().to_path_buf();
    let script = support::repo_root().join("tests/peers/mbedtls36/build.sh");
    let spawn = || {
        std::process::Command::new("bash")
            .arg(&script)
            .env("CARGO_TARGET_DIR", &target)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        let text = support::text(&out);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("mbedtls36: up to date"), "{text}");
    }
    let after = std::fs::metadata(&bin).unwrap().modified().unwrap();
    assert_eq!(before, after, "an up-to-date build rewrote the binary");
}

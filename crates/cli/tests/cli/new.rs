//! `devtls new`: the files it writes are the guide's, and OpenSSL accepts them.

use crate::support;

use std::fs;

use support::{ok_in, openssl_ok, run_in, text, words};

#[test]
fn server_files_verify_with_openssl_for_every_key_type() {
    for key in ["p256", "p384", "rsa2048"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ok_in(
            d,
            &[
                "new",
                "server",
                "--dns",
                "openmv",
                "--ip",
                "192.168.1.50",
                "--key",
                key,
            ],
        );
        for f in ["server.key", "server.crt", "server.der", "server.key.der"] {
            assert!(d.join(f).is_file(), "{key}: {f} missing");
        }
        openssl_ok(d, &words("x509 -inform DER -in server.der -noout"));
        openssl_ok(d, &words("pkey -inform DER -in server.key.der -noout"));
        openssl_ok(
            d,
            &words(
                "verify -CAfile server.crt -purpose sslserver -verify_hostname openmv server.crt",
            ),
        );
        openssl_ok(
            d,
            &words("verify -CAfile server.crt -verify_ip 192.168.1.50 server.crt"),
        );
        // The PEM and DER certificates are the same certificate.
        let pem_as_der = openssl_ok(d, &words("x509 -in server.crt -outform DER")).stdout;
        assert_eq!(pem_as_der, fs::read(d.join("server.der")).unwrap(), "{key}");
        // The DER key is exactly one structure (the device refuses trailing bytes).
        let parsed = openssl_ok(d, &words("asn1parse -inform DER -in server.key.der")).stdout;
        let first = String::from_utf8_lossy(&parsed)
            .lines()
            .next()
            .unwrap()
            .to_string();
        let field = |name: &str| -> usize {
            let rest = first.split(name).nth(1).unwrap().trim_start();
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        let file_len = fs::read(d.join("server.key.der")).unwrap().len();
        assert_eq!(field("hl=") + field(" l="), file_len, "{key}: {first}");
    }
}

#[test]
fn client_certificate_is_for_client_auth_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new client --cn sensor-01"));
    let shown = openssl_ok(
        d,
        &words("x509 -in client.crt -noout -subject -ext extendedKeyUsage"),
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("sensor-01") && shown.contains("TLS Web Client Authentication"),
        "{shown}"
    );
    assert!(!shown.contains("Server"), "{shown}");
    openssl_ok(
        d,
        &words("verify -CAfile client.crt -purpose sslclient client.crt"),
    );
}

#[test]
fn keys_are_private_and_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &["new", "server"]);
    for f in ["server.key", "server.key.der"] {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777,
                0o600,
                "{f}"
            );
        }
        #[cfg(windows)]
        assert!(devtls_pki::files::is_owner_only(&d.join(f)).unwrap(), "{f}");
    }
    let before = fs::read(d.join("server.key")).unwrap();
    let again = run_in(d, &["new", "server"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        fs::read(d.join("server.key")).unwrap(),
        before,
        "the key was overwritten"
    );
    ok_in(d, &["new", "server", "--force"]);
    assert_ne!(fs::read(d.join("server.key")).unwrap(), before);
}

#[test]
fn ed25519_is_refused_for_the_device_with_the_alternative() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &words("new server --key ed25519"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Ed25519") && err.contains("p256"), "{err}");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing may be written"
    );
}

#[test]
fn prints_the_micropython_lines_that_load_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok_in(dir.path(), &words("new server --dns openmv"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ctx.load_cert_chain(\"server.der\", \"server.key.der\")"),
        "{stdout}"
    );
    assert!(
        stdout.contains("load_verify_locations(cafile=\"server.der\")"),
        "{stdout}"
    );
    assert!(stdout.contains("mpremote cp server.der :"), "{stdout}");
}

//! `devtls csr`: OpenSSL verifies the CSR, loads the DER key, and the key is the CSR's.

use crate::support;

use std::fs;

use support::{ok_in, openssl_ok, run_in, text, words};

#[test]
fn csr_verifies_carries_the_sans_and_matches_its_key_for_every_key_type() {
    for key in ["p256", "p384", "rsa2048"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ok_in(
            d,
            &[
                "csr",
                "--domain",
                "cam.example.com",
                "--domain",
                "www.cam.example.com",
                "--key",
                key,
            ],
        );
        let shown = openssl_ok(d, &words("req -in domain.csr -verify -noout -text"));
        let shown = String::from_utf8_lossy(&shown.stdout).to_string() + &text(&shown);
        assert!(shown.contains("verify OK"), "{key}: {shown}");
        assert!(
            shown.contains("DNS:cam.example.com, DNS:www.cam.example.com"),
            "{key}: {shown}"
        );
        assert!(shown.contains("CN = cam.example.com"), "{key}: {shown}");
        openssl_ok(d, &words("pkey -inform DER -in domain.key.der -noout"));
        let from_key = openssl_ok(d, &words("pkey -in domain.key -pubout")).stdout;
        let from_der_key =
            openssl_ok(d, &words("pkey -inform DER -in domain.key.der -pubout")).stdout;
        let from_csr = openssl_ok(d, &words("req -in domain.csr -pubkey -noout")).stdout;
        assert_eq!(from_key, from_csr, "{key}: key and CSR differ");
        assert_eq!(from_der_key, from_csr, "{key}: DER key and CSR differ");
        #[cfg(unix)]
        for secret in ["domain.key", "domain.key.der"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(d.join(secret)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}: {secret}");
        }
    }
}

#[test]
fn ed25519_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &words("csr --domain cam.example.com --key ed25519"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Ed25519") && err.contains("p256"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn existing_key_is_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &["csr", "--domain", "cam.example.com"]);
    let before = fs::read(d.join("domain.key")).unwrap();
    let out = run_in(d, &["csr", "--domain", "cam.example.com"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(fs::read(d.join("domain.key")).unwrap(), before);
    ok_in(d, &words("csr --domain cam.example.com --force"));
    assert_ne!(fs::read(d.join("domain.key")).unwrap(), before);
}

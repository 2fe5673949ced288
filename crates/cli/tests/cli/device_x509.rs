//! The device peer's offline answers: X.509 verification of a chain
//! (`device-peer verify`, as the TLS layer parses and verifies the server's
//! chain) and loading key and certificate files (`loadkey`/`loadcert`, as
//! `load_cert_chain`/`load_verify_locations` do), on known cases.

use crate::support;

use std::path::Path;

use support::device::{self, VerifyCase};
use support::doctor::{self_signed, Pki};
use support::openssl_ok;

const EXPIRED: u32 = 0x01;
const CN_MISMATCH: u32 = 0x04;
const NOT_TRUSTED: u32 = 0x08;
const BAD_MD: u32 = 0x4000;

fn read(d: &Path, f: &str) -> Vec<u8> {
    std::fs::read(d.join(f)).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn case(id: &str, anchor: &[u8], chain: &[&[u8]], hostname: Option<&str>, time: i64) -> VerifyCase {
    VerifyCase {
        id: id.into(),
        anchor: anchor.to_vec(),
        chain: chain.iter().map(|c| c.to_vec()).collect(),
        hostname: hostname.map(str::to_string),
        time,
    }
}

#[test]
fn verify_gives_the_devices_flags_and_texts_for_known_chains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d, "t", 3650, (-1, 3650));
    let other = Pki::new(d, "o", 3650, (-1, 3650));
    let leaf = pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    let (int_pem, int_key) = pki.int_files();
    let sha1 = pki.openssl_leaf(
        "sha1",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        (&int_pem, &int_key),
        &["-sha1"],
        "",
    );
    let pinned = self_signed(d, "pinned", (-1, 30));
    let day = 86_400;

    let cases = [
        case(
            "ok",
            &pki.root,
            &[&leaf, &pki.int],
            Some("localhost"),
            now(),
        ),
        case("no name check", &pki.root, &[&leaf, &pki.int], None, now()),
        case(
            "expired",
            &pki.root,
            &[&leaf, &pki.int],
            Some("localhost"),
            now() + 200 * day,
        ),
        case(
            "wrong name",
            &pki.root,
            &[&leaf, &pki.int],
            Some("other.example"),
            now(),
        ),
        case(
            "sha1 leaf",
            &pki.root,
            &[&sha1, &pki.int],
            Some("localhost"),
            now(),
        ),
        case(
            "untrusted",
            &other.root,
            &[&leaf, &pki.int],
            Some("localhost"),
            now(),
        ),
        case(
            "pinned self-signed",
            &pinned,
            &[&pinned],
            Some("localhost"),
            now(),
        ),
        case(
            "pinned CA-issued leaf",
            &leaf,
            &[&leaf, &pki.int],
            Some("localhost"),
            now(),
        ),
        case(
            "intermediate anchor, leaf only",
            &pki.int,
            &[&leaf],
            Some("localhost"),
            now(),
        ),
    ];
    let verdicts = device::verify(&cases);
    for v in &verdicts {
        println!("{:32} flags={:?} {:?}", v.id, v.flags, v.texts);
    }
    let flags = |id: &str| {
        let v = verdicts.iter().find(|v| v.id == id).unwrap();
        assert_eq!(v.parse, None, "{v:?}");
        assert_eq!(
            v.ret,
            Some(if v.flags == Some(0) { 0 } else { -0x2700 }),
            "{v:?}"
        );
        v.flags.unwrap()
    };
    assert_eq!(flags("ok"), 0);
    assert_eq!(flags("no name check"), 0);
    assert_eq!(flags("expired"), EXPIRED);
    assert_eq!(flags("wrong name"), CN_MISMATCH);
    assert_eq!(flags("sha1 leaf"), BAD_MD);
    assert_eq!(flags("untrusted"), NOT_TRUSTED);
    assert_eq!(flags("pinned self-signed"), 0);
    assert_eq!(flags("pinned CA-issued leaf"), NOT_TRUSTED);
    assert_eq!(flags("intermediate anchor, leaf only"), 0);
    let texts = |id: &str| verdicts.iter().find(|v| v.id == id).unwrap().texts.clone();
    assert_eq!(texts("expired"), ["The certificate validity has expired"]);
    assert_eq!(
        texts("sha1 leaf"),
        ["The certificate is signed with an unacceptable hash."]
    );
    assert_eq!(
        texts("untrusted"),
        ["The certificate is not correctly signed by the trusted CA"]
    );
    assert!(verdicts.iter().all(|v| v.server_auth == Some(true)));
}

#[test]
fn verify_reports_the_chain_certificate_the_tls_layer_cannot_parse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d, "t", 3650, (-1, 3650));
    let leaf = pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    let mut truncated = pki.int.clone();
    truncated.truncate(truncated.len() - 10);
    let verdicts = device::verify(&[
        case(
            "truncated int",
            &pki.root,
            &[&leaf, &truncated],
            Some("localhost"),
            now(),
        ),
        case(
            "garbage anchor",
            b"not a certificate",
            &[&leaf],
            Some("localhost"),
            now(),
        ),
    ]);
    let parse = verdicts[0].parse.as_ref().expect("a parse failure");
    assert_eq!(parse.index, Some(1), "{:?}", verdicts[0]);
    assert!(
        parse.code < 0 && parse.error.starts_with("MBEDTLS_ERR_X509_"),
        "{parse:?}"
    );
    assert_eq!(verdicts[0].flags, None, "verification does not run");
    assert!(verdicts[1].anchor.is_some(), "{:?}", verdicts[1]);
    assert_eq!(verdicts[1].flags, None);
}

/// `openssl` writing key files in the formats a user may hand the device.
fn key_files(d: &Path) {
    for args in [
        "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -outform DER -out p8.der",
        "pkey -in p8.der -inform DER -outform PEM -out p8.pem",
        "ec -in p8.der -inform DER -outform DER -out sec1.der",
        "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem",
        "rsa -in rsa.pem -outform DER -traditional -out pkcs1.der",
        "genpkey -algorithm ed25519 -outform DER -out ed25519.der",
        "pkcs8 -topk8 -in p8.pem -passout pass:secret -outform DER -out encrypted.der",
    ] {
        openssl_ok(d, &args.split(' ').collect::<Vec<_>>());
    }
    for (src, dst, extra) in [
        ("p8.der", "p8-trailing.der", &b"\0\0\0\0"[..]),
        ("sec1.der", "sec1-trailing.der", b"junk"),
        ("pkcs1.der", "pkcs1-trailing.der", b"\0"),
    ] {
        let mut bytes = read(d, src);
        bytes.extend_from_slice(extra);
        std::fs::write(d.join(dst), bytes).unwrap();
    }
    let p8 = read(d, "p8.der");
    std::fs::write(d.join("truncated.der"), &p8[..p8.len() / 2]).unwrap();
}

#[test]
fn loadkey_loads_what_the_device_loads_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    key_files(d);
    let invalid = -0x3D00; // MBEDTLS_ERR_PK_KEY_INVALID_FORMAT
    let table = [
        // (file, loads on 1.28 firmware, loads on 1.29)
        ("p8.der", true, true),
        ("sec1.der", true, true),
        ("pkcs1.der", true, true),
        // Measured on 3.6.5: trailing bytes after a PKCS#8 or SEC1 key are
        // ignored, after a PKCS#1 key they are not.
        ("p8-trailing.der", true, true),
        ("sec1-trailing.der", true, true),
        ("pkcs1-trailing.der", false, false),
        // PEM: no NUL terminator before 1.29, so mbedTLS tries DER and fails.
        ("p8.pem", false, true),
        ("ed25519.der", false, false),
        ("encrypted.der", false, false),
        ("truncated.der", false, false),
    ];
    for (file, on_128, on_129) in table {
        let old = device::load(d, "loadkey", file, None);
        let new = device::load(d, "loadkey", file, Some("1.29"));
        println!("{file:20} 1.28: {old:?}\n{:20} 1.29: {new:?}", "");
        assert_eq!(old.ok, on_128, "{file} on 1.28: {old:?}");
        assert_eq!(new.ok, on_129, "{file} on 1.29: {new:?}");
        if !old.ok {
            assert_eq!(old.code, invalid, "{file}: {old:?}");
            assert_eq!(
                old.error.as_deref(),
                Some("MBEDTLS_ERR_PK_KEY_INVALID_FORMAT")
            );
            assert_eq!(old.raises.as_deref(), Some("ValueError('invalid key')"));
        }
    }
}

#[test]
fn loadcert_takes_der_and_pem_only_on_newer_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let der = self_signed(d, "s", (-1, 30));
    let mut two = der.clone();
    two.extend_from_slice(&der);
    std::fs::write(d.join("two.der"), two).unwrap();

    assert!(device::load(d, "loadcert", "s.der", None).ok);
    // Concatenated DER: the first certificate loads, the rest is ignored.
    assert!(device::load(d, "loadcert", "two.der", None).ok);
    let pem = device::load(d, "loadcert", "s.pem", None);
    assert!(!pem.ok);
    assert_eq!(pem.code, -0x2180, "{pem:?}");
    assert_eq!(
        pem.error.as_deref(),
        Some("MBEDTLS_ERR_X509_INVALID_FORMAT")
    );
    assert!(device::load(d, "loadcert", "s.pem", Some("1.29")).ok);
}

//! `devtls lint`: one real file per finding, made by OpenSSL or devtls, with
//! the finding's id and the exit status asserted; and a clean set lints clean.

use crate::support;

use std::fs;
use std::path::Path;

use support::lint::{lint, openssl_cert};
use support::{ok_in, openssl_ok, run_in, text, words};

const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn new_server(d: &Path) {
    ok_in(d, &words("new server --dns openmv --ip 192.168.1.50"));
}

/// A CA (ca.pem, ca.key) and a leaf it signs with `x509 -req` extra arguments; returns the leaf's DER name.
fn ca_issued(d: &Path, name: &str, x509_args: &[&str]) -> String {
    if !d.join("ca.pem").exists() {
        let mut args = vec![
            "req",
            "-x509",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Test CA",
            "-days",
            "3650",
        ];
        args.extend_from_slice(P256);
        openssl_ok(d, &args);
    }
    let (key, csr, der) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.der"),
    );
    let subject = format!("/CN={name}");
    let san = format!("subjectAltName=DNS:{name}");
    let mut args = vec![
        "req", "-new", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subject, "-addext", &san,
    ];
    args.extend_from_slice(P256);
    openssl_ok(d, &args);
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "4242",
        "-copy_extensions",
        "copy",
        "-outform",
        "DER",
        "-out",
        &der,
    ];
    args.extend_from_slice(x509_args);
    openssl_ok(d, &args);
    der
}

#[test]
fn a_fresh_devtls_set_lints_clean() {
    let d = dir();
    let d = d.path();
    new_server(d);
    let all = [
        "server.key",
        "server.crt",
        "server.der",
        "server.key.der",
        "--host",
        "openmv",
    ];
    lint(d, &all).expect(0, &[]);
    let r = lint(d, &words("server.der server.key.der --host 192.168.1.50"));
    r.expect(0, &[]);
    // The human form ends with the summary line.
    let out = run_in(d, &["lint", "server.der", "server.key.der"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 files: 0 errors"), "{stdout}");
    // A client set too.
    ok_in(d, &words("new client --cn sensor-01"));
    let r = lint(
        d,
        &words("client.der client.key.der server.der --host openmv"),
    );
    r.expect(0, &[]);
}

#[test]
fn pem_where_the_device_needs_der() {
    let d = dir();
    let d = d.path();
    new_server(d);
    let r = lint(d, &["server.crt"]);
    r.expect(1, &["pem-not-der"]);
    assert_eq!(r.finding("pem-not-der")["severity"], "error");
    assert!(r.finding("pem-not-der")["fix"]
        .as_str()
        .unwrap()
        .contains("devtls convert server.crt"));
    let r = lint(d, &["server.key"]);
    r.expect(1, &["pem-not-der"]);
    // Newer firmware reads PEM.
    let r = lint(d, &["server.crt", "--profile", "micropython-pem"]);
    r.expect(0, &[]);
    // The human line carries severity, id, file, message and fix.
    let out = run_in(d, &["lint", "server.crt"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap();
    assert!(
        line.contains("error")
            && line.contains("[pem-not-der] server.crt:")
            && line.contains("fix:"),
        "{stdout}"
    );
    assert!(stdout.contains("1 file: 1 error"), "{stdout}");
}

#[test]
fn concatenated_der_is_a_warning() {
    let d = dir();
    let d = d.path();
    new_server(d);
    ok_in(d, &words("new client --cn sensor-01"));
    let mut both = fs::read(d.join("server.der")).unwrap();
    both.extend(fs::read(d.join("client.der")).unwrap());
    fs::write(d.join("anchors.der"), both).unwrap();
    let r = lint(d, &["anchors.der"]);
    r.expect(0, &["concatenated-der"]);
    assert_eq!(r.finding("concatenated-der")["severity"], "warning");
}

#[test]
fn key_with_trailing_bytes() {
    let d = dir();
    let d = d.path();
    new_server(d);
    let mut key = fs::read(d.join("server.key.der")).unwrap();
    key.extend([0u8; 4]);
    fs::write(d.join("padded.key.der"), key).unwrap();
    // The device loads it (mbedTLS 3.6.5, measured): a warning about
    // canonical DER, not an error. The key is still the certificate's.
    let r = lint(d, &["padded.key.der", "server.der"]);
    r.expect(0, &["key-trailing-bytes"]);
    assert_eq!(r.finding("key-trailing-bytes")["severity"], "warning");
}

#[test]
fn encrypted_keys_pkcs8_and_legacy_pem() {
    let d = dir();
    let d = d.path();
    new_server(d);
    openssl_ok(d, &words("pkcs8 -topk8 -in server.key -v2 aes-256-cbc -passout pass:secret -outform DER -out enc.key.der"));
    let r = lint(d, &["enc.key.der"]);
    r.expect(1, &["encrypted-key"]);
    openssl_ok(
        d,
        &words("ec -in server.key -aes128 -passout pass:secret -out legacy.key"),
    );
    assert!(fs::read_to_string(d.join("legacy.key"))
        .unwrap()
        .contains("Proc-Type: 4,ENCRYPTED"));
    let r = lint(d, &["legacy.key"]);
    assert_eq!(r.code, 1, "{}", r.transcript);
    assert!(r.has("encrypted-key"), "{}", r.transcript);
}

#[test]
fn sha1_signatures() {
    let d = dir();
    let d = d.path();
    // Self-signed with SHA-1, as a server would present it (a pinned leaf:
    // mbedTLS checks its hash before trusting it as the anchor).
    let old = openssl_cert(d, "old", P256, &["-sha1"]);
    let r = lint(d, &[&old, "--role", "server"]);
    r.expect(1, &["sig-hash"]);
    assert!(r.finding("sig-hash")["message"]
        .as_str()
        .unwrap()
        .contains("ecdsa-with-SHA1"));
    // The same file as the anchor above other certificates: its own
    // signature is never checked, so no finding (issue 17).
    let r = lint(d, &[&old, "--role", "anchor"]);
    r.expect(0, &[]);
    // A CA-issued leaf signed with SHA-1.
    let leaf = ca_issued(d, "leaf1", &["-sha1", "-days", "30"]);
    let r = lint(d, &[&leaf]);
    r.expect(1, &["sig-hash"]);
}

#[test]
fn sha1_root_as_the_anchor_is_not_a_finding() {
    let d = dir();
    let d = d.path();
    let mut args = vec![
        "req",
        "-x509",
        "-sha1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=Old Root",
        "-days",
        "3650",
    ];
    args.extend_from_slice(P256);
    openssl_ok(d, &args);
    openssl_ok(d, &words("x509 -in ca.pem -outform DER -out ca.der"));
    let leaf = ca_issued(d, "leaf", &["-sha256", "-days", "30"]);
    let r = lint(d, &["ca.der", &leaf]);
    r.expect(0, &[]);
    let roles = r.json["roles"].as_array().unwrap();
    assert_eq!(roles[0]["file"], "ca.der");
    assert_eq!(roles[0]["role"], "anchor");
    assert_eq!(roles[0]["guessed"], true);
    // Served in a chain above the leaf, the device's anchor takes over before it.
    let chain = [
        fs::read(d.join(&leaf)).unwrap(),
        fs::read(d.join("ca.der")).unwrap(),
    ]
    .concat();
    fs::write(d.join("chain.der"), chain).unwrap();
    let r = lint(d, &["chain.der", "--role", "chain"]);
    assert!(!r.has("sig-hash"), "{}", r.transcript);
}

#[test]
fn rsa_1024_in_certificate_and_key() {
    let d = dir();
    let d = d.path();
    let cert = openssl_cert(
        d,
        "small",
        &["-newkey", "rsa:1024", "-keyout", "small.key"],
        &["-sha256"],
    );
    let r = lint(d, &[&cert]);
    r.expect(1, &["key-rsa-small"]);
    openssl_ok(
        d,
        &words("pkey -in small.key -outform DER -out small.key.der"),
    );
    // The device loads the key file; a peer refuses the certificate made for it.
    let r = lint(d, &["small.key.der"]);
    r.expect(0, &["key-rsa-small"]);
    assert_eq!(r.finding("key-rsa-small")["severity"], "warning");
    let r = lint(d, &["small.key.der", "--profile", "modern"]);
    assert!(r.has("key-rsa-small"), "{}", r.transcript);
}

#[test]
fn ed25519_key_and_certificate() {
    let d = dir();
    let d = d.path();
    openssl_ok(d, &words("genpkey -algorithm ed25519 -out ed.pem"));
    openssl_ok(d, &words("pkey -in ed.pem -outform DER -out ed.key.der"));
    let r = lint(d, &["ed.key.der"]);
    r.expect(1, &["key-ed25519"]);
    let cert = openssl_cert(d, "ed", &["-key", "ed.pem"], &[]);
    let r = lint(d, &[&cert, "ed.key.der"]);
    assert_eq!(r.code, 1, "{}", r.transcript);
    assert!(
        r.has("key-ed25519") && r.has("sig-ed25519"),
        "{}",
        r.transcript
    );
    assert!(!r.has("key-cert-mismatch"), "{}", r.transcript);
    // The modern profile takes Ed25519.
    let r = lint(d, &[&cert, "ed.key.der", "--profile", "modern"]);
    r.expect(0, &[]);
}

#[test]
fn secp256k1_key_and_certificate() {
    let d = dir();
    let d = d.path();
    openssl_ok(
        d,
        &words("ecparam -name secp256k1 -genkey -noout -out k1.pem"),
    );
    openssl_ok(d, &words("pkey -in k1.pem -outform DER -out k1.key.der"));
    // The device's build compiles secp256k1: the key loads; its certificate is refused.
    let r = lint(d, &["k1.key.der"]);
    r.expect(0, &["key-secp256k1"]);
    assert_eq!(r.finding("key-secp256k1")["severity"], "warning");
    let cert = openssl_cert(d, "k1", &["-key", "k1.pem"], &["-sha256"]);
    let r = lint(d, &[&cert]);
    r.expect(1, &["key-secp256k1"]);
}

#[test]
fn rsa_pss_signature_and_key() {
    let d = dir();
    let d = d.path();
    let cert = openssl_cert(
        d,
        "pss",
        &["-newkey", "rsa:2048", "-keyout", "pss.key"],
        &["-sha256", "-sigopt", "rsa_padding_mode:pss"],
    );
    let r = lint(d, &[&cert]);
    r.expect(1, &["sig-rsa-pss"]);
    openssl_ok(
        d,
        &words(
            "genpkey -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 -outform DER -out psskey.der",
        ),
    );
    let r = lint(d, &["psskey.der"]);
    r.expect(1, &["key-rsa-pss"]);
}

#[test]
fn critical_name_constraints_and_policies() {
    let d = dir();
    let d = d.path();
    let nc = openssl_cert(
        d,
        "nc",
        P256,
        &[
            "-addext",
            "nameConstraints=critical,permitted;DNS:.example.com",
        ],
    );
    let r = lint(d, &[&nc]);
    r.expect(1, &["critical-name-constraints"]);
    let pol = openssl_cert(
        d,
        "pol",
        P256,
        &["-addext", "certificatePolicies=critical,1.2.3.4"],
    );
    let r = lint(d, &[&pol]);
    r.expect(1, &["critical-policies"]);
    // Critical anyPolicy alone is accepted by the device.
    let any = openssl_cert(
        d,
        "any",
        P256,
        &["-addext", "certificatePolicies=critical,anyPolicy"],
    );
    let r = lint(d, &[&any]);
    r.expect(0, &[]);
}

#[test]
fn expired_and_not_yet_valid_at_the_given_time() {
    let d = dir();
    let d = d.path();
    new_server(d);
    let r = lint(d, &["server.der", "--at", "2100-01-01"]);
    r.expect(1, &["expired"]);
    let r = lint(d, &["server.der", "--at", "2000-01-01T00:00:00Z"]);
    r.expect(1, &["not-yet-valid"]);
    // The openmv device's clock starts unset: the message says so.
    let message = r.finding("not-yet-valid")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("clock"), "{message}");
    let r = lint(d, &words("server.der --at 2000-01-01 --profile modern"));
    assert!(
        !r.finding("not-yet-valid")["message"]
            .as_str()
            .unwrap()
            .contains("clock"),
        "{}",
        r.transcript
    );
    // A bad --at is unusable input.
    let out = run_in(d, &["lint", "server.der", "--at", "next tuesday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
}

#[test]
fn key_and_certificate_that_do_not_match() {
    let d = dir();
    let d = d.path();
    new_server(d);
    ok_in(d, &words("new client --cn sensor-01"));
    let r = lint(d, &["server.der", "client.key.der"]);
    r.expect(1, &["key-cert-mismatch"]);
    assert_eq!(r.finding("key-cert-mismatch")["file"], "client.key.der");
    // The key's own certificate by name decides, even beside another leaf.
    let r = lint(d, &["server.der", "client.der", "client.key.der"]);
    r.expect(0, &[]);
    fs::copy(d.join("server.der"), d.join("client.der")).unwrap();
    lint(d, &words("client.der client.key.der --role server")).expect(1, &["key-cert-mismatch"]);
    // A CA given beside a device key is its anchor, not its certificate.
    let mut args = vec![
        "req",
        "-x509",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.der",
        "-outform",
        "DER",
        "-subj",
        "/CN=Test CA",
    ];
    args.extend_from_slice(P256);
    openssl_ok(d, &args);
    let r = lint(d, &["ca.der", "server.key.der"]);
    assert!(
        r.code == 0 && !r.has("key-cert-mismatch"),
        "{}",
        r.transcript
    );
}

#[test]
fn host_not_in_the_san_with_wildcards_and_ips() {
    let d = dir();
    let d = d.path();
    new_server(d);
    let r = lint(d, &["server.der", "--host", "camera.local"]);
    r.expect(1, &["host-mismatch"]);
    let r = lint(d, &["server.der", "--host", "192.168.1.51"]);
    r.expect(1, &["host-mismatch"]);
    let wild = openssl_cert(
        d,
        "server-wild",
        P256,
        &["-addext", "subjectAltName=DNS:*.example.com"],
    );
    let r = lint(d, &[&wild, "--host", "cam.example.com"]);
    r.expect(0, &[]);
    for wrong in ["a.cam.example.com", "example.com"] {
        let r = lint(d, &[&wild, "--host", wrong]);
        assert_eq!(r.ids, ["host-mismatch"], "{wrong}: {}", r.transcript);
    }
}

#[test]
fn cn_only_certificate_is_noted() {
    let d = dir();
    let d = d.path();
    // openssl req -x509 without -addext: the name only in the CN.
    let mut args = vec![
        "req",
        "-x509",
        "-nodes",
        "-subj",
        "/CN=server-cn",
        "-outform",
        "DER",
        "-out",
        "server-cn.der",
    ];
    args.extend_from_slice(P256);
    openssl_ok(d, &args);
    let cert = "server-cn.der";
    let r = lint(d, &[cert, "--host", "server-cn"]);
    r.expect(0, &["cn-only"]);
    assert_eq!(r.finding("cn-only")["severity"], "note");
    // The modern profile has no CN fallback: the name does not match at all.
    let r = lint(d, &[cert, "--host", "server-cn", "--profile", "modern"]);
    r.expect(1, &["host-mismatch"]);
}

#[test]
fn eku_wrong_for_the_role() {
    let d = dir();
    let d = d.path();
    ok_in(d, &words("new client --cn sensor-01"));
    let r = lint(d, &["client.der", "--role", "server"]);
    assert_eq!(r.code, 1, "{}", r.transcript);
    assert!(r.has("eku-role"), "{}", r.transcript);
    // The role guessed from the file name.
    fs::copy(d.join("client.der"), d.join("server.der")).unwrap();
    let r = lint(d, &["server.der"]);
    assert_eq!(r.code, 1, "{}", r.transcript);
    assert!(r.has("eku-role"), "{}", r.transcript);
    // As a client it is right.
    let r = lint(d, &["client.der", "--role", "client"]);
    r.expect(0, &[]);
}

#[test]
fn own_chain_over_the_output_buffer() {
    let d = dir();
    let d = d.path();
    let names: Vec<String> = (0..200)
        .map(|i| format!("DNS:camera-{i:03}.devices.example.com"))
        .collect();
    let san = format!("subjectAltName={}", names.join(","));
    let big = openssl_cert(d, "big", P256, &["-addext", &san]);
    assert!(fs::metadata(d.join(&big)).unwrap().len() > 4096);
    let r = lint(d, &[&big, "--role", "client"]);
    r.expect(1, &["chain-over-output-buffer"]);
    assert!(r.finding("chain-over-output-buffer")["message"]
        .as_str()
        .unwrap()
        .contains("4096"));
}

#[test]
fn ca_issued_lifetime_beyond_the_cabf_maximum() {
    let d = dir();
    let d = d.path();
    let long = ca_issued(d, "long", &["-days", "500"]);
    let r = lint(d, &[&long]);
    r.expect(0, &["lifetime-over-cabf"]);
    assert_eq!(r.finding("lifetime-over-cabf")["severity"], "warning");
    let short = ca_issued(d, "short", &["-days", "45"]);
    let r = lint(d, &[&short]);
    r.expect(0, &[]);
    // A self-signed certificate is no public CA's: devtls new's 365 days are fine.
    new_server(d);
    lint(d, &["server.der"]).expect(0, &[]);
}

#[test]
fn unusable_input_exits_2_naming_the_file() {
    let d = dir();
    let d = d.path();
    fs::write(d.join("noise.der"), b"\x01\x02 not a certificate at all").unwrap();
    let out = run_in(d, &["lint", "noise.der"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("noise.der") && err.lines().count() == 1,
        "{err}"
    );
    let out = run_in(d, &["lint", "missing.der"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run_in(d, &words("lint x.der --profile nokia"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn other_curves_and_key_algorithms() {
    let d = dir();
    let d = d.path();
    openssl_ok(
        d,
        &words("ecparam -name brainpoolP256r1 -genkey -noout -outform DER -out bp.key.der"),
    );
    lint(d, &["bp.key.der"]).expect(1, &["key-curve"]);
    openssl_ok(
        d,
        &words("genpkey -algorithm x25519 -outform DER -out x.key.der"),
    );
    lint(d, &["x.key.der"]).expect(1, &["key-algorithm"]);
    // P-521 is one of the device's curves.
    openssl_ok(
        d,
        &words("ecparam -name secp521r1 -genkey -noout -outform DER -out p521.key.der"),
    );
    lint(d, &["p521.key.der"]).expect(0, &[]);
}

#[test]
fn csr_with_a_broken_signature() {
    let d = dir();
    let d = d.path();
    ok_in(d, &["csr", "--domain", "cam.example.com"]);
    // A CSR goes to the CA, in PEM: nothing for the device to load.
    lint(d, &["domain.csr"]).expect(0, &[]);
    openssl_ok(
        d,
        &words("req -in domain.csr -outform DER -out good.csr.der"),
    );
    lint(d, &["good.csr.der"]).expect(0, &[]);
    let mut der = fs::read(d.join("good.csr.der")).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    fs::write(d.join("bad.csr.der"), der).unwrap();
    lint(d, &["bad.csr.der"]).expect(1, &["csr-signature"]);
}

#[test]
fn chains_too_big_or_too_long_for_the_device() {
    let d = dir();
    let d = d.path();
    let names: Vec<String> = (0..200)
        .map(|i| format!("DNS:camera-{i:03}.devices.example.com"))
        .collect();
    let san = format!("subjectAltName={}", names.join(","));
    let big = openssl_cert(d, "big", P256, &["-addext", &san]);
    let one = fs::read(d.join(&big)).unwrap();
    let copies = 16384 / one.len() + 1;
    fs::write(d.join("huge-chain.der"), one.repeat(copies)).unwrap();
    let r = lint(d, &["huge-chain.der"]);
    assert!(r.has("chain-over-input-buffer"), "{}", r.transcript);
    assert_eq!(r.finding("chain-over-input-buffer")["severity"], "warning");
    assert!(r.finding("chain-over-input-buffer")["message"]
        .as_str()
        .unwrap()
        .contains("16384"));
    // A leaf followed by nine CA-issued certificates: one more than the device follows.
    let leaf = ca_issued(d, "leaf", &["-days", "30"]);
    let mid = ca_issued(d, "mid", &["-days", "30"]);
    let mut chain = fs::read(d.join(&leaf)).unwrap();
    for _ in 0..9 {
        chain.extend(fs::read(d.join(&mid)).unwrap());
    }
    fs::write(d.join("long-chain.der"), chain).unwrap();
    lint(d, &["long-chain.der"]).expect(0, &["concatenated-der", "too-many-intermediates"]);
}

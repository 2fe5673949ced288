//! `devtls anchor` and `devtls roots`: which certificate the device must
//! trust, read from servers on 127.0.0.1 (openssl s_server presenting chains
//! this test builds) with `--roots` pointing at the test root.

use crate::support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::doctor::{serve, Pki};
use support::{free_tcp_port, ok_in, run_in, text, wait_for_tcp, words, Peer};

fn anchor(dir: &Path, port: u16, extra: &[&str]) -> Output {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec!["anchor", target.as_str(), "--timeout", "5"];
    args.extend_from_slice(extra);
    run_in(dir, &args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn full_chain_gives_the_root_printed_like_showcerts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(d, "t", 20 * 365, (-1, 365));
    pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    let server = serve(d, "leaf", Some("t-int.pem"), &[]);
    let out = anchor(d, server.port, &["--roots", "t-root.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        fs::read(d.join("ca.der")).unwrap(),
        pki.root,
        "the root is the anchor"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        " 0 s:CN=localhost",
        "   i:CN=t Test Int",
        " 1 s:CN=t Test Int",
        "   i:CN=t Test Root",
        "a:PKEY: ECDSA P-256",
        "v:NotBefore:",
    ] {
        assert!(stdout.contains(line), "missing {line:?}:\n{stdout}");
    }
    assert!(stdout.contains("wrote ca.der (root"), "{stdout}");
    assert!(
        stdout.contains("load_verify_locations(cafile=\"ca.der\")"),
        "{stdout}"
    );
    assert!(
        !stderr(&out).contains("does not send its intermediate"),
        "{}",
        text(&out)
    );
    assert!(
        !stderr(&out).contains("service life"),
        "a 20-year root needs no expiry warning: {}",
        text(&out)
    );

    // Never overwritten without --force.
    let again = anchor(d, server.port, &["--roots", "t-root.pem"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(stderr(&again).contains("--force"), "{}", text(&again));

    // --trust intermediate writes the intermediate with the rotation warning.
    let out = anchor(
        d,
        server.port,
        &[
            "--roots",
            "t-root.pem",
            "--trust",
            "intermediate",
            "-o",
            "int.der",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fs::read(d.join("int.der")).unwrap(), pki.int);
    assert!(stderr(&out).contains("rotated"), "{}", text(&out));

    // Pinning a CA-issued leaf: the device's mbedTLS refuses it, so nothing is written.
    let out = anchor(
        d,
        server.port,
        &[
            "--roots",
            "t-root.pem",
            "--trust",
            "leaf",
            "-o",
            "leaf-pin.der",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!d.join("leaf-pin.der").exists());
    assert!(
        stderr(&out).contains("only when it is self-signed"),
        "{}",
        text(&out)
    );

    // The same offline from a saved fullchain, as JSON.
    let full = [
        fs::read_to_string(d.join("leaf.pem")).unwrap(),
        fs::read_to_string(d.join("t-int.pem")).unwrap(),
    ]
    .concat();
    fs::write(d.join("fullchain.pem"), full).unwrap();
    let out = run_in(
        d,
        &words("anchor --chain fullchain.pem --roots t-root.pem -o offline.der --json"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["anchor"]["trust"], "root", "{v:#}");
    assert_eq!(fs::read(d.join("offline.der")).unwrap(), pki.root);
    assert_eq!(
        v["chain"]["presented"][1]["subject"], "CN=t Test Int",
        "{v:#}"
    );
}

#[test]
fn leaf_only_gives_the_intermediate_and_warns_about_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(d, "t", 20 * 365, (-1, 365));
    // The server sends its leaf only; the leaf says where its issuer is (caIssuers), as CA-issued leaves do.
    let http = free_tcp_port();
    let (int_pem, int_key) = pki.int_files();
    let aia = format!("authorityInfoAccess=caIssuers;URI:http://127.0.0.1:{http}/t-int.der\n");
    pki.openssl_leaf(
        "aia",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        (&int_pem, &int_key),
        &[],
        &aia,
    );
    let _web = Peer::spawn(
        "python3 -m http.server",
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &http.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(d),
    );
    wait_for_tcp(http, Duration::from_secs(20));
    let server = serve(d, "aia", None, &[]);
    let out = anchor(d, server.port, &["--roots", "t-root.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        fs::read(d.join("ca.der")).unwrap(),
        pki.int,
        "the intermediate is the anchor"
    );
    let err = stderr(&out);
    assert!(
        err.contains("does not send its intermediate")
            && err.contains("with the root as anchor the device will fail"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("downloaded from its issuer URL"),
        "{}",
        text(&out)
    );

    // Without a way to get the intermediate nothing is written.
    pki.leaf("bare", "localhost", &["localhost"], (-1, 90));
    let server = serve(d, "bare", None, &[]);
    let out = anchor(d, server.port, &["--roots", "t-root.pem", "-o", "none.der"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!d.join("none.der").exists());
    assert!(
        stderr(&out).contains("does not send the issuer"),
        "{}",
        text(&out)
    );
}

#[test]
fn chain_outside_the_set_and_soon_expiring_anchor_warn() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(d, "t", 2 * 365, (-1, 365));
    pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    let other = Pki::new(d, "other", 20 * 365, (-1, 365));
    let _ = other;
    let server = serve(d, "leaf", Some("t-int.pem"), &[]);

    // The root is not in the set: the top of what the server sent is offered, with a warning.
    let out = anchor(
        d,
        server.port,
        &["--roots", "other-root.pem", "-o", "top.der"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fs::read(d.join("top.der")).unwrap(), pki.int);
    assert!(
        stderr(&out).contains("no root in the roots file other-root.pem anchors this chain"),
        "{}",
        text(&out)
    );

    // A root that expires in two years, within the 10-year service life.
    let out = anchor(d, server.port, &["--roots", "t-root.pem", "-o", "soon.der"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fs::read(d.join("soon.der")).unwrap(), pki.root);
    assert!(
        stderr(&out).contains("within the 10-year service life"),
        "{}",
        text(&out)
    );
    let out = anchor(
        d,
        server.port,
        &[
            "--roots",
            "t-root.pem",
            "-o",
            "short.der",
            "--service-years",
            "1",
        ],
    );
    assert!(!stderr(&out).contains("service life"), "{}", text(&out));
}

#[test]
fn chains_the_device_rejects_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(d, "t", 20 * 365, (-1, 365));
    let (int_pem, int_key) = pki.int_files();
    pki.openssl_leaf(
        "ed",
        &["-algorithm", "ed25519"],
        (&int_pem, &int_key),
        &[],
        "",
    );
    pki.openssl_leaf(
        "sha1",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        (&int_pem, &int_key),
        &["-sha1"],
        "",
    );
    let int = fs::read_to_string(d.join("t-int.pem")).unwrap();
    // A TLS 1.3-only server still yields its anchor: anchor reads the chain with any client.
    let server = serve(d, "ed", Some("t-int.pem"), &["-tls1_3"]);
    let out = anchor(
        d,
        server.port,
        &["--roots", "t-root.pem", "-o", "ed-ca.der"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fs::read(d.join("ed-ca.der")).unwrap(), pki.root);
    assert!(
        stderr(&out).contains("Ed25519") && stderr(&out).contains("the openmv device fails"),
        "{}",
        text(&out)
    );

    let sha1 = [fs::read_to_string(d.join("sha1.pem")).unwrap(), int.clone()].concat();
    fs::write(d.join("sha1-chain.pem"), sha1).unwrap();
    let out = run_in(
        d,
        &words("anchor --chain sha1-chain.pem --roots t-root.pem -o sha1-ca.der"),
    );
    assert!(
        stderr(&out).contains("sha1WithRSAEncryption") || stderr(&out).contains("ecdsa-with-SHA1"),
        "{}",
        text(&out)
    );

    // A secp256k1 leaf key.
    pki.openssl_leaf(
        "k1",
        &[
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp256k1",
        ],
        (&int_pem, &int_key),
        &[],
        "",
    );
    let k1 = [fs::read_to_string(d.join("k1.pem")).unwrap(), int.clone()].concat();
    fs::write(d.join("k1-chain.pem"), k1).unwrap();
    let out = run_in(
        d,
        &words("anchor --chain k1-chain.pem --roots t-root.pem -o k1-ca.der"),
    );
    assert!(
        stderr(&out).contains("secp256k1")
            && stderr(&out).contains("a curve the device's verification refuses"),
        "{}",
        text(&out)
    );

    // A critical nameConstraints in the intermediate.
    support::doctor::openssl_int(
        d,
        "t",
        "nc-int",
        "nameConstraints=critical,permitted;DNS:localhost\n",
    );
    pki.openssl_leaf(
        "ncleaf",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ("nc-int.pem", "nc-int.key"),
        &[],
        "",
    );
    let nc = [
        fs::read_to_string(d.join("ncleaf.pem")).unwrap(),
        fs::read_to_string(d.join("nc-int.pem")).unwrap(),
    ]
    .concat();
    fs::write(d.join("nc-chain.pem"), nc).unwrap();
    let out = run_in(
        d,
        &words("anchor --chain nc-chain.pem --roots t-root.pem -o nc-ca.der"),
    );
    assert_eq!(
        fs::read(d.join("nc-ca.der")).unwrap(),
        pki.root,
        "{}",
        text(&out)
    );
    assert!(
        stderr(&out).contains("CN=nc-int")
            && stderr(&out).contains("critical nameConstraints extension (2.5.29.30)"),
        "{}",
        text(&out)
    );

    // A Certificate message over the device's 16 KB input buffer.
    let names: Vec<String> = (0..700)
        .map(|i| format!("host-{i:04}.a-rather-long-subdomain.example.com"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    pki.leaf("big", "localhost", &refs, (-1, 90));
    let big = [fs::read_to_string(d.join("big.pem")).unwrap(), int].concat();
    fs::write(d.join("big-chain.pem"), big).unwrap();
    let out = run_in(
        d,
        &words("anchor --chain big-chain.pem --roots t-root.pem -o big-ca.der"),
    );
    assert!(
        stderr(&out).contains("16384-byte input buffer"),
        "{}",
        text(&out)
    );
}

#[test]
fn self_signed_server_is_its_own_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok_in(d, &words("new server --dns localhost"));
    fs::copy(d.join("server.crt"), d.join("server.pem")).unwrap();
    let server = serve(d, "server", None, &[]);
    let out = anchor(d, server.port, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        fs::read(d.join("ca.der")).unwrap(),
        fs::read(d.join("server.der")).unwrap()
    );
    assert!(
        stderr(&out).contains("changes on every renewal"),
        "{}",
        text(&out)
    );
    assert!(
        stderr(&out).contains("self-signed and not in the bundled Mozilla roots"),
        "{}",
        text(&out)
    );
}

#[test]
fn roots_lists_the_bundled_set_with_its_date() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok_in(tmp.path(), &["roots", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["roots"].as_array().unwrap().len() > 100, "{v:#}");
    assert_eq!(v["crate_name"], "webpki-root-certs");
    let date = v["date"].as_str().unwrap();
    let human = ok_in(tmp.path(), &["roots"]);
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(
        stdout.contains(date) && stdout.contains("ISRG Root X1"),
        "{stdout}"
    );
    // A bundle that is not certificates is refused, naming the file.
    fs::write(tmp.path().join("bad.pem"), "not a bundle").unwrap();
    let out = run_in(tmp.path(), &words("anchor 127.0.0.1:1 --roots bad.pem"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("bad.pem"), "{}", text(&out));
}

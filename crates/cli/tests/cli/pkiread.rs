//! convert, split and inspect: devtls reads what OpenSSL and GnuTLS write,
//! OpenSSL reads what devtls writes, and bad input fails cleanly.

use crate::support;

use std::fs;
use std::path::Path;

use support::pkiread::{
    certtool_ok, certtool_pair, description, mbedtls_loads, openssl_cert, openssl_chain,
    openssl_encrypt, openssl_keys, openssl_pubkey, KEY_TYPES,
};
use support::{ok_in, openssl_ok, run_in, text, words};

fn inspect_json(dir: &Path, files: &[&str]) -> serde_json::Value {
    let mut args = vec!["inspect", "--json"];
    args.extend_from_slice(files);
    let out = ok_in(dir, &args);
    serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
}

fn openssl_fingerprint(dir: &Path, cert: &str, inform: &str) -> String {
    let out = openssl_ok(
        dir,
        &[
            "x509",
            "-inform",
            inform,
            "-in",
            cert,
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim().split_once('=').unwrap().1.to_string()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn openssl_keys_in_every_structure_convert_to_a_der_key_openssl_loads() {
    for (key_type, _) in KEY_TYPES {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl_keys(d, "k", key_type);
        let expected = openssl_pubkey(d, "k.p8.pem", "PEM");
        let trad_format = if key_type == "rsa2048" {
            "Pkcs1"
        } else {
            "Sec1"
        };
        for (file, format) in [
            ("k.p8.pem", "Pkcs8"),
            ("k.p8.der", "Pkcs8"),
            ("k.trad.pem", trad_format),
            ("k.trad.der", trad_format),
        ] {
            let json = inspect_json(d, &[file]);
            let details = &json[0]["items"][0]["details"];
            assert_eq!(details["format"], format, "{key_type} {file}: {json}");
            assert_eq!(
                details["key"]["description"],
                description(key_type),
                "{key_type} {file}"
            );
            assert_eq!(details["encrypted"], false);
            let to = if file.ends_with(".pem") { "der" } else { "pem" };
            let out = format!("{file}.out");
            ok_in(d, &["convert", file, "-o", &out, "--to", to]);
            #[cfg(unix)]
            assert_eq!(mode(&d.join(&out)), 0o600, "{file}: keys are written 0600");
            let inform = to.to_uppercase();
            assert_eq!(
                openssl_pubkey(d, &out, &inform),
                expected,
                "{key_type} {file}: the converted key is the same key"
            );
        }
        // The DER devtls writes is exactly the structure, no trailing bytes:
        // byte-identical to OpenSSL's own DER of the same structure.
        ok_in(d, &words("convert k.p8.pem -o mine.p8.der"));
        assert_eq!(
            fs::read(d.join("mine.p8.der")).unwrap(),
            fs::read(d.join("k.p8.der")).unwrap()
        );
        ok_in(d, &words("convert k.trad.pem -o mine.trad.der"));
        assert_eq!(
            fs::read(d.join("mine.trad.der")).unwrap(),
            fs::read(d.join("k.trad.der")).unwrap()
        );
    }
}

#[test]
fn certificates_from_openssl_and_certtool_convert_exactly_like_openssl_and_fingerprints_match() {
    for (key_type, _) in KEY_TYPES {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl_keys(d, "k", key_type);
        openssl_cert(d, "k.p8.pem", "server.crt");
        certtool_pair(d, "gnutls", key_type);
        for cert in ["server.crt", "gnutls.crt"] {
            let stem = cert.trim_end_matches(".crt");
            // Default name: server.crt -> server.der.
            ok_in(d, &["convert", cert]);
            let der = format!("{stem}.der");
            let theirs = openssl_ok(d, &["x509", "-in", cert, "-outform", "DER"]).stdout;
            assert_eq!(fs::read(d.join(&der)).unwrap(), theirs, "{key_type} {cert}");
            #[cfg(unix)]
            assert_eq!(mode(&d.join(&der)), 0o644);
            // Back to PEM: OpenSSL reads it and it is the same certificate.
            ok_in(d, &["convert", &der, "-o", &format!("{stem}.back.pem")]);
            let back = openssl_ok(
                d,
                &[
                    "x509",
                    "-in",
                    &format!("{stem}.back.pem"),
                    "-outform",
                    "DER",
                ],
            );
            assert_eq!(back.stdout, theirs);

            let json = inspect_json(d, &[cert, &der]);
            for file in json.as_array().unwrap() {
                let c = &file["items"][0]["details"];
                assert_eq!(
                    c["sha256"],
                    openssl_fingerprint(d, cert, "PEM"),
                    "{key_type} {cert}"
                );
                assert_eq!(c["public_key"]["description"], description(key_type));
                assert_eq!(c["sans"]["dns"][0], "openmv");
                assert_eq!(c["sans"]["ip"][0], "192.168.1.50");
                assert_eq!(c["self_signed"], true);
                assert_eq!(c["der_size"], theirs.len());
                assert_eq!(c["validity"]["status"], "valid");
                let days = c["validity"]["days_left"].as_i64().unwrap();
                assert!((29..=30).contains(&days), "{days}");
                let serial = openssl_ok(d, &["x509", "-in", cert, "-noout", "-serial"]).stdout;
                let serial = String::from_utf8(serial).unwrap();
                assert_eq!(c["serial"], serial.trim().trim_start_matches("serial="));
            }
            let gnutls = &json[0]["items"][0]["details"];
            if cert == "gnutls.crt" {
                assert_eq!(gnutls["extended_key_usage"]["server_auth"], true);
            }
        }
        // The certtool key reads and converts to a key OpenSSL loads.
        ok_in(d, &["convert", "gnutls.key"]);
        assert_eq!(
            openssl_pubkey(d, "gnutls.key.der", "DER"),
            openssl_pubkey(d, "gnutls.key", "PEM")
        );
    }
}

#[test]
fn human_inspect_shows_days_left_and_expiry_at_a_given_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_keys(d, "k", "p256");
    openssl_cert(d, "k.p8.pem", "server.crt");
    let out = ok_in(d, &["inspect", "server.crt", "k.p8.pem"]);
    let shown = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "subject",
        "CN=openmv",
        "DNS:openmv, IP:192.168.1.50",
        "day(s) left",
        "ECDSA P-256",
        "ecdsa-with-SHA256",
        &openssl_fingerprint(d, "server.crt", "PEM"),
        "private key (PKCS#8)",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(40);
    let at = format!("{}", later.date());
    let out = ok_in(d, &["inspect", "server.crt", "--at", &at]);
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("EXPIRED"), "{shown}");
    let json = inspect_json(d, &["server.crt", "--at", &at]);
    let days = json[0]["items"][0]["details"]["validity"]["days_since_expiry"]
        .as_i64()
        .unwrap();
    assert!((9..=11).contains(&days), "{days}");
}

#[test]
fn encrypted_pkcs8_and_legacy_keys_decrypt_with_the_right_password_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("right.txt"), "s3cret pass\n").unwrap();
    fs::write(d.join("wrong.txt"), "nope\n").unwrap();
    for (key_type, _) in KEY_TYPES {
        openssl_keys(d, key_type, key_type);
        let plain = format!("{key_type}.p8.pem");
        let expected = openssl_pubkey(d, &plain, "PEM");
        let enc = format!("{key_type}.enc.pem");
        openssl_encrypt(d, &plain, &enc, "s3cret pass");
        let tool = if key_type == "rsa2048" { "rsa" } else { "ec" };
        let legacy = format!("{key_type}.legacy.pem");
        let cipher = if key_type == "p384" {
            "-des3"
        } else {
            "-aes128"
        };
        let mut args = vec![tool, "-in", &plain, cipher, "-out", &legacy];
        args.extend(["-passout", "pass:s3cret pass"]);
        if tool == "rsa" {
            args.push("-traditional");
        }
        openssl_ok(d, &args);
        assert!(fs::read_to_string(d.join(&legacy))
            .unwrap()
            .contains("Proc-Type: 4,ENCRYPTED"));

        for file in [&enc, &legacy] {
            let json = inspect_json(d, &[file]);
            assert_eq!(json[0]["items"][0]["details"]["encrypted"], true, "{file}");
            // Default name: NAME.pem -> NAME.der.
            let out_name = file.replace(".pem", ".der");
            // Wrong password: exit 2, one line naming the file, nothing written.
            let bad = run_in(d, &["convert", file, "--password-file", "wrong.txt"]);
            assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
            let err = String::from_utf8(bad.stderr).unwrap();
            assert!(
                err.contains(file.as_str()) && err.contains("password"),
                "{err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(!d.join(&out_name).exists());
            // No password and no terminal: a clear error, not a hang.
            let none = run_in(d, &["convert", file]);
            assert_eq!(none.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&none.stderr).contains("--password-file"));
            // Right password: the same key, unencrypted DER, 0600.
            ok_in(d, &["convert", file, "--password-file", "right.txt"]);
            assert_eq!(openssl_pubkey(d, &out_name, "DER"), expected, "{file}");
            #[cfg(unix)]
            assert_eq!(mode(&d.join(&out_name)), 0o600);
        }
    }
}

#[test]
fn csrs_and_crls_from_openssl_and_certtool_round_trip_and_openssl_verifies_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (key_type, _) in KEY_TYPES {
        openssl_keys(d, key_type, key_type);
        let csr = format!("{key_type}.csr");
        openssl_ok(
            d,
            &[
                "req",
                "-new",
                "-key",
                &format!("{key_type}.p8.pem"),
                "-subj",
                "/CN=cam.example.com",
                "-addext",
                "subjectAltName=DNS:cam.example.com",
                "-out",
                &csr,
            ],
        );
        ok_in(d, &["convert", &csr]);
        let der = format!("{csr}.der");
        openssl_ok(
            d,
            &["req", "-inform", "DER", "-in", &der, "-verify", "-noout"],
        );
        let json = inspect_json(d, &[&der]);
        let c = &json[0]["items"][0]["details"];
        assert_eq!(c["subject"], "CN=cam.example.com");
        assert_eq!(c["sans"]["dns"][0], "cam.example.com");
        assert_eq!(c["signature_valid"], true);
        assert_eq!(c["public_key"]["description"], description(key_type));
    }
    // A CRL from certtool revoking a certificate, and one from `openssl ca`.
    openssl_chain(d);
    fs::write(d.join("crl.tmpl"), "crl_next_update = 30\ncrl_number = 5\n").unwrap();
    certtool_ok(
        d,
        &[
            "--generate-crl",
            "--load-ca-privkey",
            "int.key",
            "--load-ca-certificate",
            "int.crt",
            "--load-certificate",
            "leaf.crt",
            "--template",
            "crl.tmpl",
            "--outfile",
            "gnutls.crl",
        ],
    );
    fs::create_dir(d.join("db")).unwrap();
    fs::write(d.join("db/index.txt"), "").unwrap();
    fs::write(d.join("db/crlnumber"), "1000\n").unwrap();
    fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca=x\n[x]\ndatabase=db/index.txt\ncrlnumber=db/crlnumber\ndefault_md=sha256\n\
         default_crl_days=7\ncertificate=ca.crt\nprivate_key=ca.key\n",
    )
    .unwrap();
    openssl_ok(d, &words("ca -config ca.cnf -revoke int.crt"));
    openssl_ok(d, &words("ca -config ca.cnf -gencrl -out openssl.crl"));
    for (crl, revoked) in [("gnutls.crl", "leaf.crt"), ("openssl.crl", "int.crt")] {
        ok_in(d, &["convert", crl]);
        let der = format!("{crl}.der");
        openssl_ok(d, &["crl", "-inform", "DER", "-in", &der, "-noout"]);
        let theirs = openssl_ok(d, &["crl", "-in", crl, "-outform", "DER"]).stdout;
        assert_eq!(fs::read(d.join(&der)).unwrap(), theirs);
        let serial = openssl_ok(d, &["x509", "-in", revoked, "-noout", "-serial"]).stdout;
        let serial = String::from_utf8(serial).unwrap();
        let json = inspect_json(d, &[&der]);
        let c = &json[0]["items"][0]["details"];
        assert_eq!(
            c["revoked"][0]["serial"],
            serial.trim().trim_start_matches("serial="),
            "{crl}"
        );
        assert_eq!(c["stale"], false);
    }
}

#[test]
fn split_names_leaf_intermediates_and_root_and_openssl_reads_each() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_chain(d);
    let pem = |f: &str| fs::read_to_string(d.join(f)).unwrap();
    // certbot's fullchain.pem: leaf + intermediate, no root.
    fs::write(d.join("fullchain.pem"), pem("leaf.crt") + &pem("int.crt")).unwrap();
    // Converting it would drop the intermediate: refused, pointing to split.
    let refused = run_in(d, &["convert", "fullchain.pem"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("devtls split"));
    assert!(!d.join("fullchain.der").exists());

    let out = ok_in(d, &words("split fullchain.pem --out parts"));
    let said = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "leaf.der",
        "intermediate-1.der",
        "CN=cam.example.com",
        "signed by intermediate-1.der",
        "Test Root X1",
        "exactly one certificate",
    ] {
        assert!(said.contains(needle), "missing {needle:?}:\n{said}");
    }
    for (file, source) in [("leaf.der", "leaf.crt"), ("intermediate-1.der", "int.crt")] {
        let path = format!("parts/{file}");
        openssl_ok(d, &["x509", "-inform", "DER", "-in", &path, "-noout"]);
        let theirs = openssl_ok(d, &["x509", "-in", source, "-outform", "DER"]).stdout;
        assert_eq!(fs::read(d.join(&path)).unwrap(), theirs, "{file}");
    }
    // The split files still form a chain OpenSSL verifies.
    openssl_ok(
        d,
        &words("x509 -inform DER -in parts/intermediate-1.der -out int-again.pem"),
    );
    openssl_ok(
        d,
        &words("x509 -inform DER -in parts/leaf.der -out leaf-again.pem"),
    );
    openssl_ok(
        d,
        &words("verify -CAfile ca.crt -untrusted int-again.pem leaf-again.pem"),
    );

    // Again without --force: nothing is overwritten.
    let again = run_in(d, &words("split fullchain.pem --out parts"));
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // Out of order, with the root, as concatenated DER: still leaf first, root named.
    let der = |f: &str| openssl_ok(d, &["x509", "-in", f, "-outform", "DER"]).stdout;
    fs::write(
        d.join("bundle.der"),
        [der("ca.crt"), der("int.crt"), der("leaf.crt")].concat(),
    )
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&ok_in(d, &words("split bundle.der --out b --json")).stdout)
            .unwrap();
    let names: Vec<&str> = json["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["leaf.der", "intermediate-1.der", "root.der"]);
    assert_eq!(fs::read(d.join("b/root.der")).unwrap(), der("ca.crt"));

    // A .ca-bundle (intermediates only).
    fs::write(d.join("x.ca-bundle"), pem("int.crt")).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&ok_in(d, &words("split x.ca-bundle --out c --json")).stdout)
            .unwrap();
    assert_eq!(json["parts"][0]["file_name"], "intermediate-1.der");
    assert_eq!(json["missing_issuer"], "CN=Test Root X1");

    // A self-signed leaf (devtls new) is its own anchor, with no issuer missing.
    ok_in(d, &words("new server --dns openmv --out selfsigned"));
    let out = ok_in(d, &words("split selfsigned/server.crt --out s"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("its own trust anchor"));
    let json: serde_json::Value = serde_json::from_slice(
        &ok_in(d, &words("split selfsigned/server.crt --out s2 --json")).stdout,
    )
    .unwrap();
    assert_eq!(json["parts"][0]["file_name"], "leaf.der");
    assert!(json["missing_issuer"].is_null());

    // inspect reads every item of a bundle.
    let json = inspect_json(d, &["fullchain.pem"]);
    assert_eq!(json[0]["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        json[0]["items"][1]["details"]["basic_constraints"]["ca"],
        true
    );
    assert_eq!(
        json[0]["items"][1]["details"]["basic_constraints"]["path_len"],
        0
    );
}

#[test]
fn bad_input_is_one_line_naming_the_file_exit_2_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_keys(d, "k", "p256");
    openssl_cert(d, "k.p8.pem", "server.crt");
    fs::write(d.join("empty.crt"), "").unwrap();
    let cert = fs::read(d.join("server.crt")).unwrap();
    fs::write(d.join("truncated.crt"), &cert[..cert.len() / 2]).unwrap();
    let der = openssl_ok(d, &words("x509 -in server.crt -outform DER")).stdout;
    fs::write(d.join("truncated.der"), &der[..der.len() - 10]).unwrap();
    fs::write(
        d.join("random.bin"),
        (0..500u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    fs::create_dir(d.join("folder")).unwrap();
    fs::write(d.join("two.pem"), [cert.clone(), cert.clone()].concat()).unwrap();

    let cases: &[(&[&str], &str, &str)] = &[
        (&["inspect", "missing.crt"], "missing.crt", "no such file"),
        (&["convert", "missing.crt"], "missing.crt", "no such file"),
        (&["inspect", "empty.crt"], "empty.crt", "empty"),
        (&["convert", "empty.crt"], "empty.crt", "empty"),
        (&["inspect", "truncated.crt"], "truncated.crt", "truncated"),
        (&["convert", "truncated.der"], "truncated.der", "truncated"),
        (&["inspect", "random.bin"], "random.bin", "devtls reads"),
        (&["split", "random.bin"], "random.bin", "devtls reads"),
        (&["convert", "folder"], "folder", "folder"),
        (&["split", "folder"], "folder", "folder"),
        (&["split", "k.p8.pem"], "k.p8.pem", "private key"),
        (&["convert", "two.pem"], "two.pem", "devtls split"),
        (
            &["inspect", "server.crt", "--at", "yesterday"],
            "--at",
            "2027-01-01",
        ),
    ];
    let before: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for (args, file, what) in cases {
        let out = run_in(d, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(file) && err.contains(what), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    let after: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "no file written by failed commands");

    // Converting a key where a certificate was meant works, and says what it found.
    let out = ok_in(d, &words("convert k.p8.pem -o x.der"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("private key"));
    // Never overwritten without --force.
    fs::write(d.join("x.der"), b"keep").unwrap();
    let out = run_in(d, &words("convert k.p8.pem -o x.der"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(fs::read(d.join("x.der")).unwrap(), b"keep");
    ok_in(d, &words("convert k.p8.pem -o x.der --force"));
    assert_ne!(fs::read(d.join("x.der")).unwrap(), b"keep");
}

#[test]
fn the_device_library_loads_every_der_key_and_certificate_devtls_converts() {
    for (key_type, _) in KEY_TYPES {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl_keys(d, "k", key_type);
        openssl_cert(d, "k.p8.pem", "server.crt");
        fs::write(d.join("pw.txt"), "pw\n").unwrap();
        openssl_encrypt(d, "k.p8.pem", "enc.pem", "pw");
        ok_in(d, &["convert", "server.crt"]);
        let mut keys = Vec::new();
        for (file, out) in [
            ("k.p8.pem", "p8.der"),
            ("k.trad.pem", "trad.der"),
            ("enc.pem", "dec.der"),
        ] {
            ok_in(
                d,
                &["convert", file, "-o", out, "--password-file", "pw.txt"],
            );
            keys.push(out.to_string());
        }
        mbedtls_loads(d, "server.der", &keys);
    }
}

#[test]
fn on_a_terminal_the_password_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_keys(d, "k", "p256");
    openssl_encrypt(d, "k.p8.pem", "enc.pem", "typed-secret");
    // `script` gives devtls a pseudo-terminal; the password arrives after the prompt.
    let devtls = env!("CARGO_BIN_EXE_devtls");
    support::require("script");
    let mut child = support::tool("timeout")
        .args([
            "20",
            "script",
            "-qec",
            &format!("{devtls} convert enc.pem -o k.der"),
            "/dev/null",
        ])
        .current_dir(d)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) and timeout are installed");
    // Type the password once the prompt is shown. (Whether the terminal echoes it
    // is rpassword's business and racy to observe here, so it is not asserted.)
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !String::from_utf8_lossy(&seen).contains("Password for") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!(
                "no password prompt within 15 s: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"typed-secret\n").unwrap();
    }
    let status = child.wait().unwrap();
    drop(child);
    reader.join().unwrap();
    seen.extend(rx.try_iter().flatten());
    let shown = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{shown}");
    assert!(shown.contains("Password for enc.pem"), "{shown}");
    assert_eq!(
        openssl_pubkey(d, "k.der", "DER"),
        openssl_pubkey(d, "k.p8.pem", "PEM")
    );
}

//! Issue 17's proofs that lint and `doctor --files` say only what the
//! device does: the whole bundled Mozilla root set linted as anchors, and a
//! generated set of key files, each judged against the mbedTLS 3.6 device
//! peer (`loadcert`, `verify`, `loadkey`).

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::device::{self, VerifyCase};
use support::lint::lint;
use support::{openssl_ok, run_in, words};

/// mbedTLS's "unacceptable hash" flag: on a root verified as its own
/// (pinned) chain it is the root's self-signature, which the device never
/// checks when the root anchors other certificates.
const BAD_MD: u32 = 0x4000;

#[test]
fn the_mozilla_roots_as_anchors_lint_as_the_device_loads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let roots = devtls_pki::roots::RootSet::bundled();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut names = Vec::new();
    for (i, der) in roots.certs.iter().enumerate() {
        let name = format!("root-{i:03}.der");
        std::fs::write(d.join(&name), der).unwrap();
        names.push(name);
    }
    // The device's view of each root as its one anchor: it loads, it is in
    // date, and its key is one the device verifies with.
    let cases: Vec<VerifyCase> = roots
        .certs
        .iter()
        .enumerate()
        .map(|(i, der)| VerifyCase {
            id: format!("{i}"),
            anchor: der.clone(),
            chain: vec![der.clone()],
            hostname: None,
            time: now,
        })
        .collect();
    let verdicts = device::verify(&cases);
    let accepted: Vec<bool> = verdicts
        .iter()
        .map(|v| {
            v.anchor.is_none() && v.parse.is_none() && v.flags.is_some_and(|f| f & !BAD_MD == 0)
        })
        .collect();
    let sha1_roots = verdicts
        .iter()
        .zip(&accepted)
        .filter(|(v, ok)| **ok && v.flags.is_some_and(|f| f & BAD_MD != 0))
        .count();

    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = lint(d, &args);
    let findings = r.json["findings"].as_array().unwrap();
    let roles = r.json["roles"].as_array().unwrap();
    assert_eq!(roles.len(), names.len(), "{}", r.transcript);
    assert!(
        roles
            .iter()
            .all(|x| x["role"] == "anchor" && x["guessed"] == true),
        "every root is guessed to be an anchor: {}",
        r.transcript
    );
    let mut wrong = Vec::new();
    for (name, ok) in names.iter().zip(&accepted) {
        let errors: Vec<&Value> = findings
            .iter()
            .filter(|f| f["file"] == name.as_str() && f["severity"] == "error")
            .collect();
        if *ok != errors.is_empty() {
            wrong.push(format!(
                "{name}: device accepts={ok}, lint errors={errors:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let host_notes: Vec<&Value> = findings
        .iter()
        .filter(|f| f["id"] == "cn-only" || f["id"] == "host-mismatch")
        .collect();
    assert!(
        host_notes.is_empty(),
        "host-name findings on CA certificates: {host_notes:?}"
    );
    println!(
        "{} Mozilla roots: {} accepted by the device as anchors ({} of them self-signed with a hash the device refuses elsewhere), lint agrees on all",
        names.len(),
        accepted.iter().filter(|a| **a).count(),
        sha1_roots
    );
    assert!(
        sha1_roots > 0,
        "the bundle should hold SHA-1 self-signed roots"
    );
}

/// Makes one key file with openssl; returns its name.
fn key_file(d: &Path, name: &str, gen: &str, form: &[&str]) -> String {
    let pem = format!("{name}.src.pem");
    openssl_ok(d, &words(&format!("{gen} -out {pem}")));
    let mut args = vec!["pkey", "-in", &pem, "-out", name];
    args.extend_from_slice(form);
    openssl_ok(d, &args);
    name.to_string()
}

#[test]
fn key_files_lint_and_doctor_accept_are_exactly_those_the_device_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let kinds = [
        (
            "p256",
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256",
        ),
        (
            "p384",
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384",
        ),
        (
            "p521",
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521",
        ),
        (
            "rsa2048",
            "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048",
        ),
        ("ed25519", "genpkey -algorithm ed25519"),
        ("x25519", "genpkey -algorithm x25519"),
    ];
    let mut files = Vec::new();
    for (kind, gen) in kinds {
        let pkcs8 = key_file(
            d,
            &format!("{kind}-pkcs8.key.der"),
            gen,
            &["-outform", "DER"],
        );
        files.push(pkcs8.clone());
        files.push(key_file(d, &format!("{kind}-pem.key"), gen, &[]));
        if kind.starts_with('p') {
            let sec1 = format!("{kind}-sec1.key.der");
            let src = format!("{kind}-sec1.src.pem");
            openssl_ok(d, &words(&format!("{gen} -out {src}")));
            openssl_ok(d, &words(&format!("ec -in {src} -outform DER -out {sec1}")));
            let mut padded = std::fs::read(d.join(&sec1)).unwrap();
            padded.extend([0u8; 5]);
            std::fs::write(d.join(format!("{kind}-sec1-trailing.key.der")), padded).unwrap();
            files.push(sec1);
            files.push(format!("{kind}-sec1-trailing.key.der"));
        }
        if kind == "rsa2048" {
            let pkcs1 = format!("{kind}-pkcs1.key.der");
            let src = format!("{kind}-pkcs1.src.pem");
            openssl_ok(d, &words(&format!("{gen} -out {src}")));
            openssl_ok(
                d,
                &words(&format!(
                    "rsa -in {src} -traditional -outform DER -out {pkcs1}"
                )),
            );
            let mut padded = std::fs::read(d.join(&pkcs1)).unwrap();
            padded.extend([0u8; 5]);
            std::fs::write(d.join(format!("{kind}-pkcs1-trailing.key.der")), padded).unwrap();
            files.push(pkcs1);
            files.push(format!("{kind}-pkcs1-trailing.key.der"));
        }
        let bytes = std::fs::read(d.join(&pkcs8)).unwrap();
        let mut trailing = bytes.clone();
        trailing.extend([0u8; 5]);
        let name = format!("{kind}-trailing.key.der");
        std::fs::write(d.join(&name), trailing).unwrap();
        files.push(name);
        let name = format!("{kind}-truncated.key.der");
        std::fs::write(d.join(&name), &bytes[..bytes.len() / 2]).unwrap();
        files.push(name);
        let name = format!("{kind}-encrypted.key.der");
        openssl_ok(
            d,
            &words(&format!(
                "pkcs8 -topk8 -in {kind}-pem.key -v2 aes-256-cbc -passout pass:secret -outform DER -out {name}"
            )),
        );
        files.push(name);
    }
    let mut rows = Vec::new();
    let mut wrong = Vec::new();
    for file in &files {
        let device = device::load(d, "loadkey", file, None);
        let linted = lint(d, &[file.as_str()]);
        let lint_ok = linted.code == 0;
        // doctor --files with the key alone: only "does not load" counts here.
        let dir = d.join(format!("dev-{file}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(d.join(file), dir.join(file)).unwrap();
        let out = run_in(d, &["doctor", "--files", &format!("dev-{file}"), "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let doctor_refuses = v["failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["kind"] == "key_unloadable"));
        rows.push(format!(
            "{file:32} device {:5} lint {:5} doctor {:5}",
            device.ok, lint_ok, !doctor_refuses
        ));
        if device.ok != lint_ok || device.ok == doctor_refuses {
            wrong.push(format!(
                "{file}: device loads={} ({:?}); lint exit {} {:?}; doctor refuses={doctor_refuses}",
                device.ok, device.error, linted.code, linted.ids
            ));
        }
    }
    println!("{}", rows.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A root of one shape: `STEM-root.{pem,der,key}` made by openssl.
fn openssl_root(d: &Path, stem: &str, newkey: &[&str], hash: &str) {
    let (key, pem, der) = (
        format!("{stem}-root.key"),
        format!("{stem}-root.pem"),
        format!("{stem}-root.der"),
    );
    let subj = format!("/CN={stem} Shape Root");
    let mut args = vec![
        "req", "-x509", "-nodes", "-keyout", &key, "-out", &pem, "-subj", &subj,
    ];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        hash,
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl_ok(d, &args);
    openssl_ok(d, &["x509", "-in", &pem, "-outform", "DER", "-out", &der]);
}

/// An expired root (P-256, SHA-256), made with devtls-pki: `STEM-root.*`.
fn expired_root(d: &Path, stem: &str) {
    use devtls_pki::issue::{self, CertSpec, Role};
    use devtls_pki::keys::{KeyType, PrivateKey};
    let key = PrivateKey::generate(KeyType::P256).unwrap();
    let mut spec = CertSpec::new(format!("{stem} Shape Root"), Role::Ca, 1);
    let now = time::OffsetDateTime::now_utc();
    spec.not_before = now - time::Duration::days(3650);
    spec.not_after = now - time::Duration::days(10);
    let cert = issue::self_signed_root(&spec, &key).unwrap();
    std::fs::write(d.join(format!("{stem}-root.pem")), cert.pem()).unwrap();
    std::fs::write(d.join(format!("{stem}-root.der")), &cert.der).unwrap();
    std::fs::write(d.join(format!("{stem}-root.key")), key.pkcs8_pem()).unwrap();
}

/// A leaf for localhost under `STEM-int`: `STEM-leaf.{pem,key}`.
fn leaf_under(d: &Path, stem: &str) {
    let (key, csr, pem, ext) = (
        format!("{stem}-leaf.key"),
        format!("{stem}-leaf.csr"),
        format!("{stem}-leaf.pem"),
        format!("{stem}-leaf.ext"),
    );
    openssl_ok(
        d,
        &words(&format!(
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}"
        )),
    );
    openssl_ok(
        d,
        &words(&format!(
            "req -new -key {key} -subj /CN=localhost -out {csr}"
        )),
    );
    std::fs::write(
        d.join(&ext),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    openssl_ok(
        d,
        &words(&format!(
            "x509 -req -in {csr} -CA {stem}-int.pem -CAkey {stem}-int.key -set_serial 77 -days 30 -sha256 -extfile {ext} -out {pem}"
        )),
    );
}

/// Issue 17's first proof: for each shape of root in the Mozilla set
/// (self-signature SHA-1/256/384; RSA 2048 and 4096, P-256, P-384; expired
/// and valid), a test root of that shape with an intermediate and a leaf
/// served by `openssl s_server` on loopback: lint's verdict on the root as
/// an anchor, anchor's warnings, doctor's verdict and the device peer agree.
#[test]
fn root_shapes_lint_anchor_doctor_and_the_device_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let shapes: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "ec256-sha1",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "-sha1",
        ),
        (
            "ec256-sha256",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "-sha256",
        ),
        (
            "ec384-sha384",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "-sha384",
        ),
        ("rsa2048-sha1", vec!["-newkey", "rsa:2048"], "-sha1"),
        ("rsa2048-sha256", vec!["-newkey", "rsa:2048"], "-sha256"),
        ("rsa4096-sha384", vec!["-newkey", "rsa:4096"], "-sha384"),
        ("expired", vec![], ""),
    ];
    let mut rows = Vec::new();
    let mut wrong = Vec::new();
    for (stem, newkey, hash) in &shapes {
        if newkey.is_empty() {
            expired_root(d, stem);
        } else {
            openssl_root(d, stem, newkey, hash);
        }
        support::doctor::openssl_int(d, stem, &format!("{stem}-int"), "");
        leaf_under(d, stem);
        let leaf = format!("{stem}-leaf");
        let int = format!("{stem}-int.pem");
        let server = support::doctor::serve(d, &leaf, Some(&int), &["-tls1_2"]);
        let root_der = format!("{stem}-root.der");
        let root_pem = format!("{stem}-root.pem");
        // The device.
        let run = device::client(
            d,
            server.port,
            &[
                "--ca",
                &root_der,
                "--hostname",
                "localhost",
                "--send",
                "olleh\n",
                "--timeout",
                "10",
            ],
        );
        let device_ok = run.single().ok;
        // lint on the root as the anchor (guessed: a self-signed CA).
        let linted = lint(d, &[root_der.as_str()]);
        let lint_ok = linted.code == 0;
        assert_eq!(
            linted.json["roles"][0]["role"], "anchor",
            "{}",
            linted.transcript
        );
        // doctor's verdict.
        let target = format!("127.0.0.1:{}", server.port);
        let out = run_in(
            d,
            &[
                "doctor",
                &target,
                "--ca",
                &root_der,
                "--hostname",
                "localhost",
                "--json",
                "--timeout",
                "5",
            ],
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let doctor_ok = v["works"] == true;
        // anchor's warnings with this root as the root set.
        let out = run_in(
            d,
            &[
                "anchor",
                &target,
                "--roots",
                &root_pem,
                "-o",
                &format!("{stem}-ca.der"),
                "--force",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let anchor_ok = !stderr.contains("device fails");
        rows.push(format!(
            "{stem:16} device {device_ok:5} lint {lint_ok:5} doctor {doctor_ok:5} anchor {anchor_ok:5}"
        ));
        if ![lint_ok, doctor_ok, anchor_ok]
            .iter()
            .all(|x| *x == device_ok)
        {
            wrong.push(format!(
                "{stem}: device {device_ok} ({}), lint {:?}, doctor {}, anchor: {stderr}",
                run.transcript.lines().next().unwrap_or(""),
                linted.ids,
                v["failures"]
            ));
        }
        // The SHA-1 roots are the case issue 17 is about: the device connects.
        if hash == &"-sha1" {
            assert!(device_ok, "{stem}: {}", run.transcript);
        }
    }
    println!("{}", rows.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

//! Issue 17's proofs that lint and `doctor --files` say only what the
//! device does: the whole bundled Mozilla root set linted as anchors, and a
//! generated set of key files, each judged against the mbedTLS 3.6 device
//! peer (`loadcert`, `verify`, `loadkey`).

mod support;

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

//! `devtls quickstart`: every row reports what really happened on loopback,
//! checked against the files it wrote.

use crate::support;

use std::fs;
use std::path::Path;

use devtls_pki::profile::{self, TlsVersion};
use serde_json::Value;
use support::{ok_in, openssl_ok, run_in, text, words};

/// `openssl x509 -fingerprint -sha256` of a DER certificate, as plain lower-case hex.
fn openssl_sha256(dir: &Path, der: &str) -> String {
    let out = openssl_ok(
        dir,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            der,
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    line.rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase()
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step '{name}' in {report:#}"))
}

#[test]
fn runs_the_guide_on_loopback_and_reports_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run_in(d, &["quickstart", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out)));
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out));
    assert_eq!(report["ok"], true);

    let q = d.join("devtls-quickstart");
    for f in ["server", "client"] {
        for ext in [".crt", ".der"] {
            assert!(q.join(format!("{f}{ext}")).is_file(), "{f}{ext}");
        }
        for ext in [".key", ".key.der"] {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(q.join(format!("{f}{ext}")))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}{ext}");
            }
            #[cfg(windows)]
            assert!(
                devtls_pki::files::is_owner_only(&q.join(format!("{f}{ext}"))).unwrap(),
                "{f}{ext}"
            );
        }
    }
    // OpenSSL agrees the server certificate is for localhost and 127.0.0.1.
    openssl_ok(
        &q,
        &words("verify -CAfile server.crt -verify_hostname localhost server.crt"),
    );
    openssl_ok(
        &q,
        &words("verify -CAfile server.crt -verify_ip 127.0.0.1 server.crt"),
    );

    for name in [
        "server certificate",
        "client certificate",
        "TLS server",
        "verified client",
        "mutual TLS",
        "mTLS, no client certificate",
    ] {
        assert_eq!(step(&report, name)["status"], "ok", "{name}: {report:#}");
    }
    assert!(step(&report, "TLS server")["detail"]
        .as_str()
        .unwrap()
        .contains("listening on 127.0.0.1:"));

    // The exchanges showed exactly the certificates written, on the device's
    // version and suites, and carried the guide's hello both ways.
    let server_fp = openssl_sha256(&q, "server.der");
    let client_fp = openssl_sha256(&q, "client.der");
    let device = profile::DEFAULT;
    let version = if device.speaks(TlsVersion::Tls13) {
        "TLSv1.3"
    } else {
        "TLSv1.2"
    };
    let dtls = device.speaks(TlsVersion::Dtls12);
    let mut exchanges = vec![
        ("verified client", Value::Null, version),
        ("mutual TLS", Value::from(client_fp.clone()), version),
    ];
    if dtls {
        exchanges.push(("DTLS with cookie", Value::Null, "DTLSv1.2"));
    }
    for (name, client, version) in exchanges {
        let row = step(&report, name);
        assert_eq!(row["status"], "ok", "{name}: {row:#}");
        let seen = &row["seen"];
        assert_eq!(
            seen["server_cert_sha256"],
            server_fp.as_str(),
            "{name}: {seen:#}"
        );
        assert_eq!(seen["client_cert_sha256"], client, "{name}: {seen:#}");
        assert_eq!(seen["reply"], "hello\n", "{name}");
        assert_eq!(seen["server_received"], "hello\n", "{name}");
        assert_eq!(seen["version"], version, "{name}");
        let suite = seen["cipher_suite"].as_str().unwrap();
        assert!(
            device.cipher_suites.iter().any(|s| s.name == suite),
            "{name}: {suite} is not a suite of the {} profile",
            device.name
        );
    }
    assert!(step(&report, "mutual TLS")["detail"]
        .as_str()
        .unwrap()
        .contains("CN=device-01"));

    // DTLS went through the cookie exchange, by the server's own count.
    let row = step(&report, "DTLS with cookie");
    if dtls {
        let detail = row["detail"].as_str().unwrap();
        assert!(
            detail.contains("HelloVerifyRequest cookie sent, the client came back with it"),
            "{row:#}"
        );
    } else {
        assert_eq!(row["status"], "not_run", "{row:#}");
    }

    // The device lines load the written DER files.
    let mp = report["device"]["micropython"].as_str().unwrap();
    assert!(
        mp.contains("ctx.load_cert_chain(\"client.der\", \"client.key.der\")"),
        "{mp}"
    );
    assert!(
        mp.contains("load_verify_locations(cafile=\"server.der\")"),
        "{mp}"
    );
}

#[test]
fn reuses_its_files_overwrites_only_with_force_and_prints_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("quickstart --out qs --json"));
    let key = fs::read(d.join("qs/server.key.der")).unwrap();

    // Run again, its own files are reused, never rewritten (first_hour.rs
    // has the folder that holds something else).
    let again = run_in(d, &["quickstart", "--out", "qs"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("reusing the files"));
    assert_eq!(fs::read(d.join("qs/server.key.der")).unwrap(), key);

    let human = ok_in(d, &words("quickstart --out qs --force"));
    assert_ne!(fs::read(d.join("qs/server.key.der")).unwrap(), key);
    let shown = String::from_utf8_lossy(&human.stdout);
    for needle in [
        "verified client",
        "mutual TLS",
        "DTLS with cookie",
        "mpremote cp qs/client.der :",
        "ctx.load_cert_chain(\"client.der\", \"client.key.der\")",
        "devtls serve --cert qs/server.der",
    ] {
        assert!(shown.contains(needle), "no '{needle}' in:\n{shown}");
    }
    assert!(!shown.contains("FAILED"), "{shown}");
}

//! Fleet test helpers: reading a fleet's inventory through `fleet export`
//! and checking it against the device folders on disk, independently of the
//! code that wrote them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde_json::Value;

use super::{ok_in, openssl, openssl_ok, text};

/// The inventory rows, read with `devtls fleet export --json` (which runs recovery first).
pub fn export(work: &Path, fleet: &str) -> Vec<Value> {
    let out = ok_in(work, &["fleet", "export", "--json", "--dir", fleet]);
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("export is not JSON ({e}):\n{}", text(&out)))
        .as_array()
        .expect("export is an array")
        .clone()
}

/// A row's string field.
pub fn field<'a>(row: &'a Value, name: &str) -> &'a str {
    row[name].as_str().unwrap_or("")
}

/// Checks that inventory and files agree, and returns the rows:
/// - no pending rows and no staging left behind;
/// - no serial and no fingerprint twice;
/// - every device folder's certificate has a row for that device (no certificate without a row);
/// - every device with a row has a folder, and an active row's fingerprint is
///   the certificate in its folder (no row without a certificate);
/// - a device has at most one active certificate.
pub fn assert_agreement(work: &Path, fleet: &str) -> Vec<Value> {
    let rows = export(work, fleet);
    let dir = work.join(fleet);
    let mut serials = BTreeSet::new();
    let mut fingerprints = BTreeSet::new();
    let mut by_device: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for row in &rows {
        assert_ne!(field(row, "status"), "pending", "pending row left: {row}");
        assert!(
            serials.insert(field(row, "serial").to_string()),
            "serial used twice: {row}"
        );
        assert!(
            fingerprints.insert(field(row, "sha256").to_string()),
            "fingerprint twice: {row}"
        );
        by_device
            .entry(field(row, "device").to_string())
            .or_default()
            .push(row);
    }
    let work_dir = dir.join(".work");
    if work_dir.exists() {
        let stale: Vec<_> = fs::read_dir(&work_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "recover.lock")
            .collect();
        assert!(stale.is_empty(), "staging left behind: {stale:?}");
    }
    let mut folders = BTreeSet::new();
    for entry in fs::read_dir(dir.join("devices")).unwrap() {
        let entry = entry.unwrap();
        let device = entry.file_name().to_string_lossy().into_owned();
        let certs: Vec<_> = ["client.der", "server.der"]
            .iter()
            .map(|f| entry.path().join(f))
            .filter(|p| p.exists())
            .collect();
        assert_eq!(certs.len(), 1, "{device}: expected one certificate file");
        let fp = devtls_pki::fingerprint::sha256_hex(&fs::read(&certs[0]).unwrap());
        let rows = by_device
            .get(&device)
            .unwrap_or_else(|| panic!("{device}: a folder without any inventory row"));
        assert!(
            rows.iter().any(|r| field(r, "sha256") == fp),
            "{device}: the certificate on disk has no row"
        );
        let active: Vec<_> = rows
            .iter()
            .filter(|r| matches!(field(r, "status"), "active" | "expired"))
            .collect();
        assert!(active.len() <= 1, "{device}: several active certificates");
        if let Some(a) = active.first() {
            assert_eq!(
                field(a, "sha256"),
                fp,
                "{device}: the active row is not the certificate on disk"
            );
        }
        assert!(entry.path().join("ca.der").exists(), "{device}: no ca.der");
        assert!(
            entry.path().join("boot.py").exists(),
            "{device}: no boot.py"
        );
        folders.insert(device);
    }
    for device in by_device.keys() {
        assert!(
            folders.contains(device),
            "{device}: rows without a certificate folder"
        );
    }
    rows
}

/// The DER CRL `crl`, listed by OpenSSL (`-text`, stdout and stderr) after
/// asserting OpenSSL verifies its signature against the fleet CA
/// (`fleet/ca.crt`).
pub fn crl_verified(d: &Path, crl: &str) -> String {
    let out = openssl_ok(
        d,
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            crl,
            "-CAfile",
            "fleet/ca.crt",
            "-noout",
            "-text",
        ],
    );
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("verify OK"),
        "{crl} is not signed by the CA:\n{shown}"
    );
    shown
}

/// `openssl verify -crl_check` of `cert` against the fleet CA
/// (`fleet/ca.crt`) and the DER CRL `crl`.
pub fn crl_check(d: &Path, crl: &str, cert: &str) -> std::process::Output {
    openssl(
        d,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "fleet/ca.crt",
            "-CRLfile",
            crl,
            cert,
        ],
    )
}

/// The CRL number of a DER CRL, read by OpenSSL.
pub fn crl_number(d: &Path, crl: &str) -> u64 {
    let out = openssl_ok(
        d,
        &["crl", "-inform", "DER", "-in", crl, "-noout", "-crlnumber"],
    );
    let s = String::from_utf8_lossy(&out.stdout);
    let hex = s
        .trim()
        .trim_start_matches("crlNumber=")
        .trim_start_matches("0x");
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("crl number in {s:?}"))
}

/// Every device folder of issuer `dir` is complete and its certificate is
/// the active row of that device.
pub fn folders_complete(d: &Path, dir: &str, prefix: &str, n: usize, rows: &[Value]) {
    let active: std::collections::HashMap<&str, &str> = rows
        .iter()
        .filter(|r| field(r, "device").starts_with(prefix) && field(r, "status") != "superseded")
        .map(|r| (field(r, "device"), field(r, "sha256")))
        .collect();
    assert_eq!(active.len(), n, "{prefix}: one row per device");
    for i in 1..=n {
        let id = format!("{prefix}{i}");
        let folder = d.join(dir).join("devices").join(&id);
        for f in ["client.der", "client.key.der", "ca.der", "boot.py"] {
            assert!(folder.join(f).is_file(), "{id}: {f} missing");
        }
        let fp = devtls_pki::fingerprint::sha256_hex(&fs::read(folder.join("client.der")).unwrap());
        assert_eq!(
            active.get(id.as_str()),
            Some(&fp.as_str()),
            "{id}: folder and row agree"
        );
    }
    let staged: Vec<_> = fs::read_dir(d.join(dir).join(".work"))
        .map(|e| {
            e.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "recover.lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(staged.is_empty(), "{dir}: staging left behind: {staged:?}");
}

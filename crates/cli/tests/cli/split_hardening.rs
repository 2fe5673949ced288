//! Issue 11 item 7: `split` of a bundle of 1,100 certificates under a 1,024
//! open-file limit, with one certificate twice (written once, reported).

use crate::support;

use std::fs;
use std::io::Write;

use support::{ok_in, text};

#[test]
fn eleven_hundred_certificates_split_under_a_1024_fd_limit_and_duplicates_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &["fleet", "init"]);
    ok_in(
        d,
        &[
            "fleet",
            "issue",
            "--count",
            "1100",
            "--prefix",
            "c",
            "--threads",
            "2",
        ],
    );
    let mut bundle = fs::File::create(d.join("bundle.der")).unwrap();
    for i in 1..=1100 {
        bundle
            .write_all(&fs::read(d.join(format!("fleet/devices/c{i}/client.der"))).unwrap())
            .unwrap();
    }
    // The first certificate again.
    bundle
        .write_all(&fs::read(d.join("fleet/devices/c1/client.der")).unwrap())
        .unwrap();
    drop(bundle);
    let devtls = env!("CARGO_BIN_EXE_devtls");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 1024 && exec '{devtls}' split bundle.der --out out --json"
        ))
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"].as_array().unwrap().len(), 1100);
    assert_eq!(fs::read_dir(d.join("out")).unwrap().count(), 1100);
    let dups = report["duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 1, "{dups:?}");
    assert!(dups[0]["subject"].as_str().unwrap().contains("c1"));
    // In words too.
    let human = std::process::Command::new(devtls)
        .args(["split", "bundle.der", "--out", "again", "--quiet"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(human.status.success(), "{}", text(&human));
    assert!(
        text(&human).contains("a duplicate, written once as"),
        "{}",
        text(&human)
    );
}

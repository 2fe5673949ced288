//! `devtls acme` given hostile names and run twice at once (issue 27):
//! `--domain` goes through pki's one name rule, and two `issue --force`
//! runs on one folder are serialized, so one account is created and
//! `account.json` is whole.

use crate::acme_support;
use crate::support;

use std::time::Duration;

use acme_support::{args, Options, Pebble};
use support::text;

#[test]
fn domain_names_follow_pkis_rule_idn_in_control_characters_out() {
    let work = tempfile::tempdir().unwrap();
    let port = support::free_tcp_port();
    let server = format!("https://127.0.0.1:{port}/dir");
    let issue = |domain: &str| {
        acme_support::acme(
            work.path(),
            &args(&[
                "issue", "--domain", domain, "--server", &server, "--dir", "acme",
            ]),
        )
    };
    // A terminal escape and a line break: refused, echoed escaped.
    let out = issue("cam\x1b[2J\nforged.example.com");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b'),
        "no raw escape on the terminal: {stderr:?}"
    );
    assert!(stderr.contains("\\u{1b}"), "{stderr}");
    assert!(
        !work.path().join("acme").exists(),
        "nothing made for a bad name"
    );
    // An internationalised name is accepted (as its A-labels): the run
    // gets as far as the (absent) ACME server.
    let out = issue("bücher.example");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the ACME directory"),
        "{stderr}"
    );
}

#[test]
fn two_forced_issues_at_once_share_one_account() {
    let pebble = Pebble::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let hook = pebble.dns_hook(work.path()).display().to_string();
    let mut a = args(&[
        "acme",
        "issue",
        "--domain",
        "cam.example.com",
        "--dir",
        "acme",
        "--force",
        "--json",
        "--challenge",
        "dns-01",
        "--dns-hook",
        &hook,
    ]);
    a.extend(pebble.server_args());
    let runs: Vec<support::Peer> = (0..2)
        .map(|_| {
            let mut cmd = support::devtls();
            cmd.args(&a).current_dir(work.path());
            support::Peer::spawn("devtls acme issue", &mut cmd)
        })
        .collect();
    let outs: Vec<_> = runs
        .into_iter()
        .map(|p| p.finish(Duration::from_secs(240)))
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for out in &outs {
        assert!(out.status.success(), "{}", text(out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(json["account"].as_str().unwrap().to_string());
        created += usize::from(json["account_created"] == true);
    }
    assert_eq!(ids[0], ids[1], "both runs used one account");
    assert_eq!(created, 1, "one account was created");
    let accounts = walk(&work.path().join("acme/accounts"));
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&accounts[0]).unwrap()).expect("whole JSON");
    assert_eq!(stored["id"].as_str().unwrap(), ids[0]);
}

/// Every file under `dir` named `account.json`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.file_name().is_some_and(|n| n == "account.json") {
            out.push(p);
        }
    }
    out
}

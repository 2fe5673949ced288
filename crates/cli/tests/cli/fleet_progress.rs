//! Long fleet work shows progress on a terminal, and nowhere else: not when
//! stderr is a pipe, never with --quiet. On the backend `DEVTLS_TEST_BACKEND`
//! names (scripts/test.sh runs this file on both).

use crate::support;

use std::path::Path;

use support::{ok_in, text, tool, words};

/// Runs devtls under a pseudo-terminal (`script`), stdout to a file; returns
/// what reached the terminal (stderr, where progress goes).
fn on_a_terminal(d: &Path, args: &str) -> String {
    let devtls = env!("CARGO_BIN_EXE_devtls");
    let mut script = tool("script");
    // The inventory of the test's backend, as support::devtls gives it.
    script.env_remove("DEVTLS_FLEET_DB");
    if let Some(url) = support::postgres::FLEET_DB.with(|db| db.borrow().clone()) {
        script.env("DEVTLS_FLEET_DB", url);
    }
    let out = script
        .args(["-qec", &format!("{devtls} {args} > out.csv"), "/dev/null"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn export_of_a_large_fleet_shows_progress_only_on_a_terminal() {
    let backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("fleet init --dir fleet"));
    let issued = ok_in(
        d,
        &words("fleet issue --count 150 --prefix cam- --dir fleet"),
    );
    assert!(
        issued.stderr.is_empty(),
        "no progress into a pipe:\n{}",
        text(&issued)
    );

    let piped = ok_in(d, &words("fleet export --csv --dir fleet"));
    assert!(
        piped.stderr.is_empty(),
        "no progress into a pipe:\n{}",
        text(&piped)
    );
    assert_eq!(String::from_utf8_lossy(&piped.stdout).lines().count(), 151);
    backend.assert_inventory(&d.join("fleet"), 150);

    let shown = on_a_terminal(d, "fleet export --csv --dir fleet");
    assert!(
        shown.contains("/150 rows"),
        "progress on a terminal: {shown:?}"
    );
    let quiet = on_a_terminal(d, "fleet export --csv --dir fleet --quiet");
    assert!(!quiet.contains("rows"), "--quiet: {quiet:?}");
    assert_eq!(
        std::fs::read_to_string(d.join("out.csv"))
            .unwrap()
            .lines()
            .count(),
        151
    );
}

//! A test whose peer is not installed fails with one line saying which peer
//! and how to install it: no panic message, no backtrace (support::require).
//!
//! Unix only: the PATH without the peer is a folder of symbolic links, and
//! the install hint is an apt-get command.
#![cfg(unix)]

use crate::support;

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use support::peers::gnutls_server;
use support::{ok_in, text, words};

/// The probe the other test re-runs: gnutls-serv serving a devtls server
/// certificate (with gnutls-serv installed, it must listen).
#[test]
fn gnutls_serv_serves_a_devtls_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    let server = gnutls_server(
        d,
        &words("--echo --x509certfile server.crt --x509keyfile server.key"),
    );
    TcpStream::connect(("127.0.0.1", server.port)).expect("gnutls-serv accepts");
}

/// A folder of links to everything on PATH except `missing`.
fn path_without(missing: &str, farm: &Path) {
    let path = std::env::var_os("PATH").unwrap();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let link = farm.join(&name);
            if name != missing && !link.exists() {
                let _ = std::os::unix::fs::symlink(entry.path(), link);
            }
        }
    }
}

#[test]
fn without_gnutls_serv_the_test_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    path_without("gnutls-serv", dir.path());
    assert!(dir.path().join("openssl").exists() || dir.path().join("ls").exists());
    assert!(!dir.path().join("gnutls-serv").exists());
    // The probe's name in this test binary: its module path without the crate.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let probe = format!("{module}::gnutls_serv_serves_a_devtls_certificate");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &probe])
        .env("PATH", dir.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "the probe fails:\n{all}");
    let line = "missing test peer gnutls-serv: install it with `sudo apt-get install gnutls-bin` \
                (scripts/test.sh installs every peer)";
    assert_eq!(all.matches(line).count(), 1, "one line:\n{all}");
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!all.contains(noise), "no {noise:?}:\n{all}");
    }
    // The test's own output is that line and nothing else.
    let captured: Vec<&str> = all
        .split(&format!("---- {probe}"))
        .nth(1)
        .expect("the failing test's output is shown")
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("failures:"))
        .filter(|l| !l.trim().is_empty() && !l.starts_with("----"))
        .collect();
    assert_eq!(captured, [line], "{all}");
}

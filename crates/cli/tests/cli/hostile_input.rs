//! Every command that reads files, given what a careless or hostile user
//! gives it: empty, random 1 B / 1 KB / 10 MB, truncated DER, bad base64, a
//! folder, a FIFO nobody writes, /dev/zero, an unreadable file, a name that
//! is not UTF-8. Each must end (the test kills it after a minute and fails: a hang, not slowness) with
//! exit 2, or 1 where the file was read and the check failed, and one line
//! saying what is wrong.
//!
//! `doctor --files` takes a folder: each case is put in a folder of its own
//! (as `device.der`, or as the folder's only entry for the FIFO, `/dev/zero`
//! and `/proc/self/mem` links). "Unreadable" is `/proc/self/mem`, whose
//! first page read fails with EIO even for root (the tests run as root, so
//! permissions would not stop a read).
//!
//! Unix only: FIFOs, `/dev/zero`, `/proc/self/mem` and non-UTF-8 names
//! (Windows names are UTF-16) have no Windows counterparts.
#![cfg(unix)]

use crate::support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::ok_in;

/// A hang guard (a FIFO or a device file read forever), not a speed test:
/// generous, so a machine busy with the rest of the suite never trips it.
const LIMIT: Duration = Duration::from_secs(60);

/// Pseudo-random bytes (xorshift), the same every run.
fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The hostile inputs, by name.
fn inputs(d: &Path) -> Vec<(&'static str, PathBuf)> {
    ok_in(d, &["new", "server", "--out", "good"]);
    let der = std::fs::read(d.join("good/server.der")).unwrap();
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random-1B", random(1, 1)),
        ("random-1KB", random(1024, 2)),
        ("random-10MB", random(10 << 20, 3)),
        ("truncated-DER", der[..100].to_vec()),
        (
            "bad-base64",
            b"-----BEGIN CERTIFICATE-----\n!!!not*base64@@@\n-----END CERTIFICATE-----\n".to_vec(),
        ),
    ];
    let mut out = Vec::new();
    for (name, bytes) in files.drain(..) {
        let path = d.join(name);
        std::fs::write(&path, bytes).unwrap();
        out.push((name, path));
    }
    let folder = d.join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    out.push(("folder", folder));
    let fifo = d.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    out.push(("fifo-without-writer", fifo));
    out.push(("dev-zero", PathBuf::from("/dev/zero")));
    out.push(("unreadable", PathBuf::from("/proc/self/mem")));
    let odd = d.join(OsStr::from_bytes(b"odd-\xff\xfe-name.pem"));
    std::fs::write(&odd, random(300, 4)).unwrap();
    out.push(("non-UTF-8-name", odd));
    out
}

/// Runs devtls, killing it after [`LIMIT`]; returns (exit code, stderr) or
/// panics naming the case if it had to be killed.
fn run_bounded(d: &Path, case: &str, args: &[&OsStr]) -> (Option<i32>, String) {
    let (code, err, _) = run_bounded_out(d, case, args);
    (code, err)
}

/// [`run_bounded`], with stdout too.
fn run_bounded_out(d: &Path, case: &str, args: &[&OsStr]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devtls"))
        .args(args)
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
                String::from_utf8_lossy(&out.stdout).to_string(),
            );
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{case}: `devtls {args:?}` still running after {LIMIT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_file_reading_command_refuses_hostile_files_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &["fleet", "init"]);
    let inputs = inputs(d);
    // (command words before the file, words after, exit codes allowed)
    let commands: &[(&[&str], &[&str], &[i32])] = &[
        (&["inspect"], &[], &[2]),
        (&["lint"], &[], &[1, 2]),
        (&["convert"], &["-o", "converted.out", "--force"], &[2]),
        (&["split"], &["--out", "split-out", "--force"], &[2]),
        (&["romfs", "ls"], &[], &[2]),
        (&["fleet", "issue", "--from"], &[], &[2]),
        (&["fleet", "issue", "dev-x", "--csr"], &[], &[2]),
    ];
    let mut failures = Vec::new();
    for (before, after, codes) in commands {
        for (case, path) in &inputs {
            let mut args: Vec<&OsStr> = before.iter().map(OsStr::new).collect();
            args.push(path.as_os_str());
            args.extend(after.iter().map(OsStr::new));
            let (code, err) = run_bounded(d, case, &args);
            let shown = path.to_string_lossy();
            // The 1-byte file is "A": a valid CSV of one device, rightly issued.
            if before[..] == ["fleet", "issue", "--from"] && *case == "random-1B" {
                assert_eq!(std::fs::read(path).unwrap(), b"A");
                assert_eq!(code, Some(0), "{err}");
                assert!(d.join("fleet/devices/A").is_dir());
                continue;
            }
            let ok = code.is_some_and(|c| codes.contains(&c))
                && err.lines().count() == 1
                && (err.contains(shown.as_ref()) || err.contains("line "));
            if !ok {
                failures.push(format!("{before:?} {case}: exit {code:?}: {err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        !d.join("fleet/devices/dev-x").exists(),
        "nothing was issued"
    );
}

#[test]
fn dev_zero_ends_at_once_naming_the_file_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_bounded(
        dir.path(),
        "dev-zero",
        &[OsStr::new("inspect"), OsStr::new("/dev/zero")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/dev/zero") && err.contains("64 MiB"), "{err}");
}

#[test]
fn doctor_files_ends_on_hostile_files_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut failures = Vec::new();
    for (case, path) in inputs(d) {
        let folder = d.join(format!("doctor-{case}"));
        std::fs::create_dir(&folder).unwrap();
        let inside = match path.is_file() && !path.starts_with("/proc") {
            true => {
                let name = path.file_name().unwrap();
                let target = match case {
                    "non-UTF-8-name" => folder.join(name),
                    _ => folder.join("device.der"),
                };
                std::fs::copy(&path, &target).unwrap();
                target
            }
            false => {
                let link = folder.join("device.der");
                std::os::unix::fs::symlink(&path, &link).unwrap();
                link
            }
        };
        let args = [
            OsStr::new("doctor"),
            OsStr::new("--files"),
            folder.as_os_str(),
        ];
        let (code, err, out) = run_bounded_out(d, case, &args);
        let all = format!("{out}{err}");
        let named = all.contains(folder.to_string_lossy().as_ref())
            || all.contains(inside.to_string_lossy().as_ref());
        let ok = match code {
            Some(2) => err.lines().count() == 1 && named,
            Some(1) => named,
            _ => false,
        };
        if !ok {
            failures.push(format!("doctor --files {case}: exit {code:?}:\n{all}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

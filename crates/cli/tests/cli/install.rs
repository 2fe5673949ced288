//! devtls installs as its users' other tools do: the README's two commands
//! work in a fresh clone, and the wheel installs with pip into a fresh venv.
//!
//! Both build devtls from a fresh clone of this checkout's HEAD (made once
//! per run), so a plain `cargo test` skips them (`#[ignore]`) and
//! `scripts/test.sh` (the README's test command, and CI) runs them in a
//! phase of their own. They share the clone and one target folder, seeded
//! with the compiled registry dependencies of this test build (the same
//! profile and features: docs/testing.md), so only the workspace's own
//! crates compile from the clone's sources. Commit first: both test what
//! HEAD holds.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use support::{repo_root, require, text, tool};

/// Longest a README command may take (a build on a busy machine).
const BOUND: &str = "1500";

/// The first shell block of a README: its command lines without comments.
fn readme_commands(readme: &str) -> Vec<String> {
    readme
        .split("```")
        .nth(1)
        .expect("the README opens with a code block")
        .lines()
        .skip(1)
        .map(|l| l.split(" #").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The target folder of everything built from the clone (the release
/// build both tests use, the README test's test run): `install-tests` in
/// `$CARGO_TARGET_DIR` or this checkout's `target/`. Never the checkout's
/// own folder: cargo tells a crate's builds apart by its path inside the
/// workspace and the files' times, so the clone's newer files would pass
/// its build off as the checkout's (a wheel built here once took four
/// crates from the clone and failed on code they lacked).
fn clone_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("install-tests")
}

/// Copies the compiled registry dependencies of this test build (its
/// `debug/` folder) into the clone's target folder, so the clone's build
/// compiles only the workspace's crates. Cargo gives a workspace crate the
/// same file names wherever the workspace lies, so those are left out: the
/// clone's must come from the clone's sources, never from this checkout's.
fn seed_clone_target() {
    let ours = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("debug");
    let theirs = clone_target().join("debug");
    let workspace = |name: &str| {
        [
            "devtls",
            "libdevtls",
            "cli-",
            "net-",
            "pki-",
            "expiry-",
            "fuzz_csv-",
        ]
        .iter()
        .any(|p| name.starts_with(p))
    };
    for dir in ["deps", "build", ".fingerprint"] {
        let to = theirs.join(dir);
        std::fs::create_dir_all(&to).unwrap();
        let Ok(entries) = std::fs::read_dir(ours.join(dir)) else {
            continue;
        };
        let copy: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| !workspace(&e.file_name().to_string_lossy()))
            .filter(|e| !to.join(e.file_name()).exists())
            .map(|e| e.path())
            .collect();
        if copy.is_empty() {
            continue;
        }
        // cp -a keeps the times cargo's freshness check compares.
        let out = Command::new("cp")
            .arg("-a")
            .args(&copy)
            .arg(&to)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "seeding {}:\n{}",
            to.display(),
            text(&out)
        );
    }
}

/// The fresh clone of HEAD both tests use, made once per run in cargo's
/// temporary folder for tests (an earlier run's is removed first).
fn fresh_clone() -> &'static Path {
    static CLONE: OnceLock<PathBuf> = OnceLock::new();
    CLONE.get_or_init(|| {
        seed_clone_target();
        require("git");
        let clone = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-clone/devtls");
        if clone.exists() {
            std::fs::remove_dir_all(&clone).unwrap();
        }
        std::fs::create_dir_all(clone.parent().unwrap()).unwrap();
        let out = tool("git")
            .args(["clone", "-q", "--no-hardlinks"])
            .arg(repo_root())
            .arg(&clone)
            .output()
            .unwrap();
        assert!(out.status.success(), "git clone:\n{}", text(&out));
        clone
    })
}

/// Held by each test while it builds and runs from the clone: both build
/// the devtls binary into the one target folder (maturin with its own
/// flags), and one build replacing `debug/devtls` while the other runs it
/// fails the run ("No such file or directory").
static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a command line with bash in `dir`, bounded by `timeout`.
fn run_line(dir: &Path, line: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = tool("timeout");
    cmd.args([BOUND, "bash", "-c", line])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", clone_target());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
#[ignore = "slow (a build in a fresh clone): scripts/test.sh runs it"]
fn the_readme_commands_work_in_a_fresh_clone() {
    let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let clone = fresh_clone();

    let readme = std::fs::read_to_string(clone.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert_eq!(
        commands.len(),
        2,
        "two commands open the README: {commands:?}"
    );
    assert_eq!(
        commands,
        readme_commands(&std::fs::read_to_string(root.join("README.md")).unwrap()),
        "the clone's README is this checkout's (commit README.md first)"
    );
    assert!(
        !commands[1].starts_with("cargo test"),
        "the test command installs the peers first, bare cargo test does not"
    );

    let main = run_line(clone, &commands[0], &[]);
    assert!(main.status.success(), "{}:\n{}", commands[0], text(&main));
    let stdout = String::from_utf8_lossy(&main.stdout);
    for step in ["verified client", "mutual TLS", "DTLS with cookie"] {
        assert!(stdout.contains(step), "no {step:?}:\n{}", text(&main));
    }
    assert!(!stdout.contains("FAILED"), "{}", text(&main));
    assert!(clone.join("devtls-quickstart/server.der").is_file());
    // Run again as written, it reuses its files (issue 24; first_hour.rs).
    let again = run_line(clone, &commands[0], &[]);
    assert!(again.status.success(), "{}:\n{}", commands[0], text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("reusing the files"),
        "{}",
        text(&again)
    );

    // The test command with the peers already installed (no apt/pip), on
    // one small package: the whole suite again would run this test again.
    let tests = run_line(
        clone,
        &commands[1],
        &[
            ("DEVTLS_SKIP_SETUP", "1"),
            ("DEVTLS_TEST_SCOPE", "-p devtls-romfs"),
        ],
    );
    let all = text(&tests);
    assert!(tests.status.success(), "{}:\n{all}", commands[1]);
    assert!(
        all.contains("cargo test -p devtls-romfs --no-fail-fast")
            && all.contains("test result: ok")
            && !all.contains("test result: FAILED"),
        "{all}"
    );
}

#[test]
#[ignore = "slow (the wheel built from a fresh clone): scripts/test.sh runs it"]
fn the_wheel_installs_with_pip_into_a_fresh_venv() {
    require("maturin");
    require("python3");
    let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    // Built from the clone, in the dev profile the README's command builds
    // too (the same dependencies, compiled once); users get --release.
    let built = tool("bash")
        .arg(fresh_clone().join("scripts/build-wheel.sh"))
        .args(["--profile", "dev"])
        .env("CARGO_TARGET_DIR", clone_target())
        .output()
        .unwrap();
    assert!(built.status.success(), "build-wheel.sh:\n{}", text(&built));
    let wheel = String::from_utf8(built.stdout.clone()).unwrap();
    let wheel = Path::new(wheel.lines().last().expect("the wheel's path"));
    let name = wheel.file_name().unwrap().to_string_lossy();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        name.starts_with(&format!("devtls-{version}-")),
        "{name}: the crate's version"
    );

    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(made.status.success(), "venv:\n{}", text(&made));
    // --no-index: nothing but the wheel is available, so it needs no Python dependency.
    let pip = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--no-index", "-q"])
        .arg(wheel)
        .output()
        .unwrap();
    assert!(pip.status.success(), "pip install:\n{}", text(&pip));

    let v = Command::new(venv.join("bin/devtls"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("devtls {version}"),
        "{}",
        text(&v)
    );
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let new = Command::new(venv.join("bin/python"))
        .args(["-m", "devtls", "new", "server"])
        .current_dir(&work)
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    assert!(
        new.status.success(),
        "python -m devtls new server:\n{}",
        text(&new)
    );
    for file in ["server.crt", "server.key", "server.der", "server.key.der"] {
        assert!(work.join(file).is_file(), "no {file}:\n{}", text(&new));
    }
    let bad = Command::new(venv.join("bin/python"))
        .args(["-m", "devtls", "convert", "missing.pem"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "the exit status passes through");
}

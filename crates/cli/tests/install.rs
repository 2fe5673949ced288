//! devtls installs as its users' other tools do: the README's two commands
//! work in a fresh clone, and the wheel installs with pip into a fresh venv.
//!
//! Both build the release binary (minutes), so a plain `cargo test` skips
//! them (`#[ignore]`) and `scripts/test.sh` (the README's test command, and
//! CI) runs them with `--include-ignored`. Both share this checkout's target
//! folder so that dependencies compile once.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{repo_root, require, text, tool};

/// Longest a README command may take (a release build on a busy machine).
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

/// Runs a command line with bash in `dir`, bounded by `timeout`.
fn run_line(dir: &Path, line: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = tool("timeout");
    cmd.args([BOUND, "bash", "-c", line])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", repo_root().join("target"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
#[ignore = "slow (release build in a fresh clone): scripts/test.sh runs it"]
fn the_readme_commands_work_in_a_fresh_clone() {
    require("git");
    let root = repo_root();
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("devtls");
    let out = tool("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(&root)
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success(), "git clone:\n{}", text(&out));

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

    let main = run_line(&clone, &commands[0], &[]);
    assert!(main.status.success(), "{}:\n{}", commands[0], text(&main));
    let stdout = String::from_utf8_lossy(&main.stdout);
    for step in ["verified client", "mutual TLS", "DTLS with cookie"] {
        assert!(stdout.contains(step), "no {step:?}:\n{}", text(&main));
    }
    assert!(!stdout.contains("FAILED"), "{}", text(&main));
    assert!(clone.join("devtls-quickstart/server.der").is_file());

    // The test command with the peers already installed (no apt/pip), on
    // one small package: the whole suite again would run this test again.
    let tests = run_line(
        &clone,
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
#[ignore = "slow (release build of the wheel): scripts/test.sh runs it"]
fn the_wheel_installs_with_pip_into_a_fresh_venv() {
    require("maturin");
    require("python3");
    let root = repo_root();
    let built = tool("bash")
        .arg(root.join("scripts/build-wheel.sh"))
        .env("CARGO_TARGET_DIR", root.join("target"))
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

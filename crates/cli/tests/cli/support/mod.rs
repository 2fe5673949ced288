//! Shared plumbing for the integration tests: the devtls binary, free ports,
//! peer processes that are always stopped, and the repository's test peers.
//!
//! Each test file uses what it needs, so unused items are expected.
#![allow(dead_code)]

pub mod fleet;
pub mod interactive;
pub mod ports;
pub mod postgres;
pub mod require;

#[allow(unused_imports)] // each test file uses what it needs
pub use require::{require, tool};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `Command` for the devtls binary under test.
pub fn devtls() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devtls"));
    // A fleet test running against PostgreSQL (see postgres::backend).
    cmd.env_remove("DEVTLS_FLEET_DB");
    postgres::FLEET_DB.with(|db| {
        if let Some(url) = db.borrow().as_ref() {
            cmd.env("DEVTLS_FLEET_DB", url);
        }
    });
    cmd
}

/// Runs devtls with `args` in `dir` and returns its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    devtls()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("devtls runs")
}

/// Runs devtls and panics with its output unless it exits 0.
pub fn ok_in(dir: &Path, args: &[&str]) -> Output {
    let out = run_in(dir, args);
    assert!(
        out.status.success(),
        "devtls {args:?} failed:\n{}",
        text(&out)
    );
    out
}

/// Stdout and stderr of a finished process, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A TCP port on 127.0.0.1 for a peer to bind, given to no other test
/// (see ports: why not the kernel's port 0).
pub fn free_tcp_port() -> u16 {
    ports::port()
}

/// A UDP port on 127.0.0.1 for a peer to bind, given to no other test.
pub fn free_udp_port() -> u16 {
    ports::port()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_tcp(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listened on 127.0.0.1:{port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed when the guard is dropped, so a failing
/// test never leaves a server running.
pub struct Peer {
    /// The running process.
    pub child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Peer {
    /// Starts `cmd` with piped output (read it with [`Peer::finish`]).
    /// A missing peer program fails the test in one line ([`require`]).
    pub fn spawn(name: &str, cmd: &mut Command) -> Peer {
        require::require_if_peer(cmd.get_program());
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        Peer {
            child,
            name: name.to_string(),
        }
    }

    /// Waits at most `timeout` for the process to exit on its own, then kills it;
    /// returns its output either way.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A test peer script under `tests/peers/` (e.g. `mbedtls_peer.py`).
/// What the script needs is [`require`]d first.
pub fn peer_script(name: &str) -> PathBuf {
    require::require_for_script(name);
    repo_root().join("tests/peers").join(name)
}

/// A command line written as one string, for arguments without spaces:
/// `openssl_ok(d, &words("pkey -in k.pem -outform DER -out k.der"))`.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs `openssl` with `args` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    tool("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs")
}

/// Runs `openssl` and panics with its output unless it exits 0.
pub fn openssl_ok(dir: &Path, args: &[&str]) -> Output {
    let out = openssl(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        text(&out)
    );
    out
}
pub mod certgen;
pub mod device;
pub mod doctor;
pub mod lint;
pub mod micropython;
pub mod net;
pub mod peers;
pub mod pkiread;

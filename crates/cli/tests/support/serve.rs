//! Processes whose output is read while they run: `devtls serve` on a port
//! it picks itself, peers that print when they are ready, and interactive
//! clients (`openssl s_client`, `gnutls-cli`) fed one line. Always stopped;
//! every wait is bounded.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{devtls, Peer};

/// A process whose stdout and stderr are collected as they come.
pub struct Running {
    peer: Peer,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a [`Running`] process ended.
pub struct Ended {
    /// Exit status (`None`: still running at the deadline, then killed).
    pub status: Option<ExitStatus>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Ended {
    /// The exit code, if it exited on its own.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

impl Running {
    /// Starts `cmd` with piped stdio and collects its output.
    pub fn spawn(name: &str, cmd: &mut Command) -> Running {
        let mut peer = Peer::spawn(name, cmd);
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(peer.child.stdout.take().unwrap(), out.clone()),
            collect(peer.child.stderr.take().unwrap(), err.clone()),
        ];
        Running {
            peer,
            out,
            err,
            readers,
        }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits at most `timeout` until stdout has `n` lines containing
    /// `needle`; returns whether it did.
    pub fn wait_lines(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stdout().lines().filter(|l| l.contains(needle)).count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first complete stdout line, waiting at most `timeout`.
    pub fn first_line(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((line, _)) = self.stdout().split_once('\n') {
                return Some(line.to_string());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes `text` to its stdin.
    pub fn send(&mut self, text: &str) {
        let stdin = self.peer.child.stdin.as_mut().expect("stdin is open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes its stdin (an interactive client then says goodbye and exits).
    pub fn close_stdin(&mut self) {
        drop(self.peer.child.stdin.take());
    }

    /// Waits at most `timeout` for it to exit on its own (then kills it) and
    /// returns what it printed.
    pub fn finish(mut self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        let mut status = None;
        loop {
            if let Ok(Some(s)) = self.peer.child.try_wait() {
                status = Some(s);
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.peer.child.kill();
        let _ = self.peer.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Ended {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

/// A running `devtls serve`.
pub struct Serve {
    /// The process.
    pub run: Running,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Serve {
    /// Starts `devtls serve ARGS --bind 127.0.0.1 --port 0` in `dir` and
    /// waits (at most 10 s) for its `listening on 127.0.0.1:PORT` line.
    pub fn start(dir: &Path, args: &[&str]) -> Serve {
        let mut cmd = devtls();
        cmd.arg("serve")
            .args(args)
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .current_dir(dir);
        let run = Running::spawn(&format!("devtls serve {args:?}"), &mut cmd);
        let first = run.first_line(Duration::from_secs(10)).unwrap_or_else(|| {
            panic!(
                "devtls serve {args:?} printed no first line within 10 s; stderr:\n{}",
                run.stderr()
            )
        });
        let port = first
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line of devtls serve: {first:?}"));
        Serve { run, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// See [`Running::stdout`].
    pub fn stdout(&self) -> String {
        self.run.stdout()
    }

    /// See [`Running::stderr`].
    pub fn stderr(&self) -> String {
        self.run.stderr()
    }

    /// See [`Running::wait_lines`].
    pub fn wait_lines(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        self.run.wait_lines(needle, n, timeout)
    }

    /// See [`Running::finish`].
    pub fn finish(self, timeout: Duration) -> Ended {
        self.run.finish(timeout)
    }
}

/// Runs an interactive TLS client: sends `text` on its stdin, waits at most
/// `timeout` until its stdout shows `expect`, then closes stdin and returns
/// everything it printed (stdout, then stderr). Panics if `expect` never came.
pub fn talk(cmd: &mut Command, text: &str, expect: &str, timeout: Duration) -> String {
    let name = format!("{cmd:?}");
    let mut run = Running::spawn(&name, cmd);
    run.send(text);
    let start = Instant::now();
    while start.elapsed() < timeout && !run.stdout().contains(expect) {
        if let Ok(Some(_)) = run.peer.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    run.close_stdin();
    let ended = run.finish(timeout);
    // Judged on everything it printed: the readers have drained the pipes now.
    let got = ended.stdout.contains(expect);
    let all = format!("{}\n{}", ended.stdout, ended.stderr);
    assert!(
        got,
        "{name}: no '{expect}' within {timeout:?}; it printed:\n{all}"
    );
    all
}

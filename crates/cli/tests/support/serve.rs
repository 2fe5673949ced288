//! `devtls serve` as a test peer, on a port it picks itself, and interactive
//! clients (`gnutls-cli`) that must stay connected until the reply arrives.
//! Built on [`super::peers::LineServer`]; every wait is bounded.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::devtls;
use super::peers::LineServer;

/// A running `devtls serve` (killed on drop).
pub struct Serve {
    /// The process and the lines it printed.
    pub server: LineServer,
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
        let mut server = LineServer::spawn(&format!("devtls serve {args:?}"), &mut cmd, 0);
        let first = server.wait_line(Duration::from_secs(10), |l| l.stdout);
        let port = first
            .text
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line of devtls serve: {first:?}"));
        server.port = port;
        Serve { server, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits at most `timeout` until it has printed `n` stdout lines
    /// containing `needle`; panics with its output otherwise.
    pub fn wait_lines(&mut self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let matches = |l: &super::peers::Line| l.stdout && l.text.contains(needle);
        let mut count = self.server.seen.iter().filter(|l| matches(l)).count();
        while count < n {
            let left = deadline.saturating_duration_since(Instant::now());
            self.server.wait_line(left, matches);
            count += 1;
        }
    }

    /// Everything printed so far, for assertion messages.
    pub fn transcript(&self) -> String {
        self.server.transcript()
    }

    /// Waits at most `timeout` for it to exit on its own (then kills it);
    /// returns the exit status (None if killed) and its stdout.
    pub fn finish(mut self, timeout: Duration) -> (Option<ExitStatus>, String) {
        let status = self.server.finish(timeout);
        let stdout = self
            .server
            .seen
            .iter()
            .filter(|l| l.stdout)
            .map(|l| format!("{}\n", l.text))
            .collect();
        (status, stdout)
    }
}

/// Runs an interactive TLS client that closes as soon as its stdin does
/// (`gnutls-cli`): sends `text`, waits at most `timeout` for a stdout line
/// equal to `expect` (panicking with its output if none comes), then closes
/// stdin and returns everything it printed.
pub fn talk(cmd: &mut Command, text: &str, expect: &str, timeout: Duration) -> String {
    let mut client = LineServer::spawn(&format!("{cmd:?}"), cmd, 0);
    let stdin = client.peer.child.stdin.as_mut().expect("stdin is piped");
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    client.wait_line(timeout, |l| l.stdout && l.text == expect);
    drop(client.peer.child.stdin.take());
    client.finish(timeout);
    client.transcript()
}

//! Real TLS peers for the interop tests, all on 127.0.0.1 and all bounded in
//! time: the device peers ([`PeerProgram`]: mbedTLS 3.6 with the device's
//! configuration, `tests/peers/mbedtls36/`, and the older mbedTLS 2.28 one,
//! `tests/peers/mbedtls_peer.py`), `openssl s_server`/`s_client` and
//! `gnutls-serv`/`gnutls-cli`.
//!
//! Servers are [`LineServer`]s: their stdout and stderr lines are read by
//! threads, so a test can wait for "listening" and still read what the server
//! printed afterwards; the process is killed when the guard is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{free_tcp_port, free_udp_port, peer_script, Peer};

/// Longest wait for a peer to start listening or a client to finish.
pub const WAIT: Duration = Duration::from_secs(20);

/// One connection as a device peer reports it (both peers print the same
/// JSON; `verify_flags`/`verify` come from the mbedTLS 3.6 peer only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Conn {
    /// The handshake completed and the application data went both ways.
    pub ok: bool,
    /// What went wrong, in mbedTLS's words when it was mbedTLS.
    pub error: Option<String>,
    /// The mbedTLS error code, negative (e.g. -9984 for -0x2700).
    pub code: Option<i64>,
    /// "TLSv1.2" or "DTLSv1.2" once negotiated.
    pub version: Option<String>,
    /// The mbedTLS suite name, e.g. "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384".
    pub cipher: Option<String>,
    /// What the other side sent (the reply for a client, the request for a server).
    pub received: Option<String>,
    /// Subject of the certificate the other side presented, when it did.
    pub peer_subject: Option<String>,
    /// For -0x2700: the verify flags (mbedTLS 3.6 peer).
    #[serde(default)]
    pub verify_flags: Option<u32>,
    /// For -0x2700: one text per flag, as `mbedtls_x509_crt_verify_info`
    /// writes them (mbedTLS 3.6 peer).
    #[serde(default)]
    pub verify: Vec<String>,
}

/// A finished run of a device peer.
#[derive(Debug)]
pub struct PeerRun {
    /// One entry per connection, in order.
    pub conns: Vec<Conn>,
    /// Exit status (None: killed at the time limit).
    pub status: Option<ExitStatus>,
    /// Everything printed, for assertion messages.
    pub transcript: String,
}

impl PeerRun {
    /// The only connection of a client run; panics with the transcript otherwise.
    pub fn single(&self) -> &Conn {
        assert_eq!(
            self.conns.len(),
            1,
            "one connection expected:\n{}",
            self.transcript
        );
        &self.conns[0]
    }

    /// The process exited with `code`.
    pub fn exited(&self, code: i32) -> bool {
        self.status.and_then(|s| s.code()) == Some(code)
    }
}

/// A line a server printed, and on which stream.
#[derive(Debug, Clone)]
pub struct Line {
    /// True for stdout, false for stderr.
    pub stdout: bool,
    /// The line without its newline.
    pub text: String,
}

/// A server process whose output lines are collected as they come.
pub struct LineServer {
    /// The process (killed on drop).
    pub peer: Peer,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    lines: Receiver<Line>,
    /// Lines read so far.
    pub seen: Vec<Line>,
}

impl LineServer {
    /// Starts `cmd` and collects its stdout and stderr lines.
    pub fn spawn(name: &str, cmd: &mut Command, port: u16) -> LineServer {
        let mut peer = Peer::spawn(name, cmd);
        let (tx, rx) = channel();
        let out = peer.child.stdout.take().unwrap();
        let err = peer.child.stderr.take().unwrap();
        for (stream, is_stdout) in [
            (Box::new(out) as Box<dyn Read + Send>, true),
            (Box::new(err), false),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for text in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx
                        .send(Line {
                            stdout: is_stdout,
                            text,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        LineServer {
            peer,
            port,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits at most `timeout` for a line matching `pred`; panics with what
    /// the server printed if none comes or the server exits first.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&Line) -> bool) -> Line {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: expected line not printed within {timeout:?}:\n{}",
                    self.peer.name,
                    self.transcript()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} exited before printing the expected line:\n{}",
                    self.peer.name,
                    self.transcript()
                ),
            }
        }
    }

    /// Waits at most `timeout` for the server to exit (then kills it) and
    /// returns its exit status (None if it had to be killed).
    pub fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = self.peer.child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.peer.child.kill();
                let _ = self.peer.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end at EOF, which the exit (or kill) brings.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        status
    }

    /// Everything printed so far, for assertion messages.
    pub fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|l| format!("{} {}\n", if l.stdout { "out|" } else { "err|" }, l.text))
            .collect()
    }
}

/// Which device peer program runs: both take the same flags and print the
/// same JSON, so a test picks one by what it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerProgram {
    /// mbedTLS 3.6.5 built with the device's configuration
    /// (`tests/peers/mbedtls36/`): the device.
    Device36,
    /// python-mbedtls on mbedTLS 2.28 (`tests/peers/mbedtls_peer.py`): older
    /// firmware only.
    Python228,
}

impl PeerProgram {
    /// A command running this peer.
    pub fn command(self) -> Command {
        match self {
            PeerProgram::Device36 => Command::new(super::device::binary()),
            PeerProgram::Python228 => {
                let mut cmd = Command::new("python3");
                cmd.arg(peer_script("mbedtls_peer.py"));
                cmd
            }
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            PeerProgram::Device36 => "device-peer (mbedTLS 3.6)",
            PeerProgram::Python228 => "mbedtls_peer.py (mbedTLS 2.28)",
        }
    }
}

fn conns(lines: &[Line]) -> Vec<Conn> {
    lines
        .iter()
        .filter(|l| l.stdout && l.text.starts_with("{\"ok\""))
        .map(|l| serde_json::from_str(&l.text).unwrap_or_else(|e| panic!("{e}: {}", l.text)))
        .collect()
}

/// A device peer as a server: `args` after `server --port 0` (e.g.
/// `--cert s.der --key s.key.der [--dtls] [--count N]`), paths relative to
/// `dir`. Returns once it listens; read its port from [`LineServer::port`].
pub fn peer_server(program: PeerProgram, dir: &Path, args: &[&str]) -> LineServer {
    let mut cmd = program.command();
    cmd.args(["server", "--port", "0"])
        .args(args)
        .current_dir(dir);
    let name = format!("{} server", program.name());
    let mut server = LineServer::spawn(&name, &mut cmd, 0);
    let first = server.wait_line(WAIT, |l| l.stdout);
    let v: serde_json::Value = serde_json::from_str(&first.text)
        .unwrap_or_else(|e| panic!("{e}: first line {:?}\n{}", first.text, server.transcript()));
    server.port = v["listening"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no listening port:\n{}", server.transcript()));
    server
}

/// Waits for a device peer server started by [`peer_server`] to serve its
/// `--count` connections (at most `timeout`) and returns what it reported.
pub fn peer_server_results(mut server: LineServer, timeout: Duration) -> PeerRun {
    let status = server.finish(timeout);
    PeerRun {
        conns: conns(&server.seen),
        status,
        transcript: server.transcript(),
    }
}

/// Runs a device peer as a client of 127.0.0.1:`port`, with `args` after
/// `client --host 127.0.0.1 --port PORT` (e.g. `--ca a.der --hostname
/// openmv`), paths relative to `dir`.
pub fn peer_client(program: PeerProgram, dir: &Path, port: u16, args: &[&str]) -> PeerRun {
    let port = port.to_string();
    let mut cmd = program.command();
    cmd.args(["client", "--host", "127.0.0.1", "--port", &port])
        .args(args)
        .current_dir(dir);
    let name = format!("{} client", program.name());
    let mut client = LineServer::spawn(&name, &mut cmd, 0);
    let status = client.finish(WAIT);
    PeerRun {
        conns: conns(&client.seen),
        status,
        transcript: client.transcript(),
    }
}

/// The mbedTLS 2.28 peer (python-mbedtls) as a server; see [`peer_server`].
pub fn mbedtls_server(dir: &Path, args: &[&str]) -> LineServer {
    peer_server(PeerProgram::Python228, dir, args)
}

/// See [`peer_server_results`].
pub fn mbedtls_server_results(server: LineServer, timeout: Duration) -> PeerRun {
    peer_server_results(server, timeout)
}

/// The mbedTLS 2.28 peer (python-mbedtls) as a client; see [`peer_client`].
pub fn mbedtls_client(dir: &Path, port: u16, args: &[&str]) -> PeerRun {
    peer_client(PeerProgram::Python228, dir, port, args)
}

fn wants_udp(args: &[&str]) -> bool {
    args.iter()
        .any(|a| a.starts_with("-dtls") || *a == "--udp" || *a == "-u")
}

/// `openssl s_server -accept 127.0.0.1:PORT` plus `args` (e.g. `-cert server.crt
/// -key server.key -tls1_2`) in `dir`, on a free port (UDP when `args` has
/// `-dtls*`). Returns once it prints ACCEPT.
pub fn openssl_server(dir: &Path, args: &[&str]) -> LineServer {
    let port = if wants_udp(args) {
        free_udp_port()
    } else {
        free_tcp_port()
    };
    let accept = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-accept", &accept])
        .args(args)
        .current_dir(dir);
    let mut server = LineServer::spawn("openssl s_server", &mut cmd, port);
    server.wait_line(WAIT, |l| l.text.trim() == "ACCEPT");
    server
}

/// `gnutls-serv -p PORT` plus `args` (e.g. `--echo --x509certfile server.crt
/// --x509keyfile server.key`) in `dir`, on a free port (UDP with `--udp`).
/// gnutls-serv cannot bind one address: it listens on all interfaces, the
/// tests only ever connect to 127.0.0.1. Returns once it listens.
pub fn gnutls_server(dir: &Path, args: &[&str]) -> LineServer {
    let port = if wants_udp(args) {
        free_udp_port()
    } else {
        free_tcp_port()
    };
    let p = port.to_string();
    // gnutls-serv 3.7 over UDP spins on a datagram that is not a ClientHello
    // once a handshake was refused (it peeks and never reads it): at the
    // lowest priority that loop takes only what nobody else wants.
    let mut cmd = if wants_udp(args) {
        super::require::require("gnutls-serv");
        let mut nice = Command::new("nice");
        nice.args(["-n", "19", "gnutls-serv"]);
        nice
    } else {
        Command::new("gnutls-serv")
    };
    cmd.args(["-p", &p]).args(args).current_dir(dir);
    let mut server = LineServer::spawn("gnutls-serv", &mut cmd, port);
    server.wait_line(WAIT, |l| {
        l.text.contains("listening on IPv4") && l.text.ends_with("done")
    });
    server
}

/// Output of a client run: exit status (None: killed at the time limit) and
/// everything it printed.
#[derive(Debug)]
pub struct ClientRun {
    /// Exit status, None if it had to be killed.
    pub status: Option<ExitStatus>,
    /// Stdout and stderr, in that order.
    pub text: String,
}

impl ClientRun {
    /// Exited 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

fn run_client(name: &str, cmd: &mut Command, input: &str) -> ClientRun {
    let mut peer = Peer::spawn(name, cmd.stdin(Stdio::piped()));
    if let Some(mut stdin) = peer.child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
        // Dropping stdin sends EOF: the client closes once done.
    }
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Ok(Some(status)) = peer.child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = peer.finish(Duration::ZERO);
    ClientRun {
        status,
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `openssl s_client -connect 127.0.0.1:PORT` plus `args`, in `dir`, with
/// `input` on its stdin (closed afterwards).
pub fn openssl_client(dir: &Path, port: u16, args: &[&str], input: &str) -> ClientRun {
    let connect = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &connect])
        .args(args)
        .current_dir(dir);
    run_client("openssl s_client", &mut cmd, input)
}

/// `gnutls-cli -p PORT 127.0.0.1` plus `args`, in `dir`, with `input` on its
/// stdin (closed afterwards).
pub fn gnutls_client(dir: &Path, port: u16, args: &[&str], input: &str) -> ClientRun {
    let p = port.to_string();
    let mut cmd = Command::new("gnutls-cli");
    cmd.args(["-p", &p])
        .args(args)
        .arg("127.0.0.1")
        .current_dir(dir);
    run_client("gnutls-cli", &mut cmd, input)
}

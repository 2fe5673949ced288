//! Helpers for the serve/connect tests: certificates made with the pki
//! library (any validity window), `devtls serve` and `openssl s_server`
//! started on free loopback ports and always stopped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use devtls_pki::issue::{self, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use time::OffsetDateTime;

use super::{devtls, free_tcp_port, wait_for_tcp, Peer};

/// Writes STEM.der, STEM.key.der, STEM.crt, STEM.key for a self-signed
/// certificate valid from `from` to `until`, for `localhost` and 127.0.0.1.
pub fn cert_valid(
    dir: &Path,
    stem: &str,
    role: Role,
    key_type: KeyType,
    from: OffsetDateTime,
    until: OffsetDateTime,
) {
    let key = PrivateKey::generate(key_type).unwrap();
    let mut spec = CertSpec::new(stem, role, 1);
    spec.dns = vec!["localhost".into()];
    spec.ips = vec!["127.0.0.1".parse().unwrap()];
    spec.not_before = from;
    spec.not_after = until;
    let cert = issue::self_signed(&spec, &key).unwrap();
    std::fs::write(dir.join(format!("{stem}.der")), &cert.der).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key.der")), key.pkcs8_der()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.pkcs8_pem()).unwrap();
}

/// A running `devtls serve` with its output lines arriving on a channel.
pub struct Serve {
    /// The process (killed on drop).
    pub peer: Peer,
    /// The port it listens on, from its first line.
    pub port: u16,
    lines: Receiver<String>,
}

impl Serve {
    /// Starts `devtls serve --port 0 ARGS` in `dir` and waits for its `listening on` line.
    pub fn start(dir: &Path, args: &[&str]) -> Serve {
        let mut cmd = devtls();
        cmd.current_dir(dir)
            .args(["serve", "--port", "0"])
            .args(args);
        let mut peer = Peer::spawn("devtls serve", &mut cmd);
        let lines = stdout_lines(&mut peer);
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("devtls serve printed its listening line");
        let port = first
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        Serve { peer, port, lines }
    }

    /// Starts `devtls serve` with the files `devtls new server` wrote
    /// (server.der, server.key.der), plus `args`.
    pub fn guide(dir: &Path, args: &[&str]) -> Serve {
        let files = ["--cert", "server.der", "--key", "server.key.der"];
        Serve::start(dir, &[&files[..], args].concat())
    }

    /// The next output line, waiting at most `timeout`.
    pub fn line(&self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .expect("devtls serve printed a line in time")
    }

    /// The next output line that parses as a JSON object with a `result` (a client report).
    pub fn report(&self, timeout: Duration) -> serde_json::Value {
        loop {
            let line = self.line(timeout);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v.get("result").is_some() {
                    return v;
                }
            }
        }
    }

    /// Waits for the process to exit (it was given --count) and returns its status.
    pub fn finish(self, timeout: Duration) -> Output {
        self.peer.finish(timeout)
    }
}

/// The stdout lines of a running peer, as they come.
pub fn stdout_lines(peer: &mut Peer) -> Receiver<String> {
    let stdout = peer.child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Starts `openssl s_server -accept PORT ARGS` in `dir` and waits until it accepts.
pub fn s_server(dir: &Path, args: &[&str]) -> (Peer, u16) {
    let port = free_tcp_port();
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir)
        .args(["s_server", "-accept", &port.to_string()])
        .args(args);
    let peer = Peer::spawn("openssl s_server", &mut cmd);
    wait_for_tcp(port, Duration::from_secs(10));
    (peer, port)
}

/// `devtls connect ARGS --json` in `dir`: exit status and the parsed report.
pub fn connect_json(dir: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value, Output) {
    let out = devtls()
        .current_dir(dir)
        .arg("connect")
        .args(args)
        .args(["--json", "--timeout", "10"])
        .output()
        .expect("devtls runs");
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "connect --json printed no JSON ({e}):\n{}",
            super::text(&out)
        )
    });
    (out.status.code(), value, out)
}

/// A P-256 key by `openssl ecparam` (SEC1 PEM), as the device guide makes it.
pub fn openssl_key(dir: &Path, key: &str) {
    super::openssl_ok(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            key,
        ],
    );
}

/// A self-signed certificate by `openssl req -new -x509` (CA:TRUE, as the
/// guide's commands make it), plus `extra` arguments (e.g. `-addext ...`).
pub fn openssl_self_signed(dir: &Path, key: &str, out: &str, subj: &str, extra: &[&str]) {
    let base = [
        "req", "-new", "-x509", "-key", key, "-out", out, "-days", "30",
    ];
    super::openssl_ok(dir, &[&base[..], &["-subj", subj], extra].concat());
}

/// A certificate for `key` signed by ca.crt/ca.key with `openssl x509 -req`;
/// without an extensions file OpenSSL makes an X.509 v1 certificate.
pub fn openssl_signed(dir: &Path, key: &str, subj: &str, out: &str, extfile: Option<&str>) {
    let csr = format!("{out}.csr");
    super::openssl_ok(
        dir,
        &["req", "-new", "-key", key, "-subj", subj, "-out", &csr],
    );
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        out,
    ];
    if let Some(ext) = extfile {
        args.extend(["-extfile", ext]);
    }
    super::openssl_ok(dir, &args);
}

/// A loopback TCP server answering each connection (at most 8) with
/// `answer` after reading what the client sent, then closing: a peer that
/// is not TLS, or (empty answer) one that hangs up mid-handshake.
pub fn raw_server(answer: &'static [u8]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read(&mut [0u8; 512]);
            let _ = stream.write_all(answer);
        }
    });
    port
}

//! Plumbing for the `devtls gateway` tests: a certificate chain like a public
//! CA's (root, intermediate, leaf; the leaf and intermediate in
//! fullchain.pem, the root kept apart for clients), the gateway as a process
//! whose JSON lines are read as they come, and a rustls client that holds
//! only the root.
#![allow(dead_code)] // each test file uses what it needs

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::support::peers::{LineServer, WAIT};
use crate::support::{devtls, openssl_ok, words};

/// Fails the test in one line saying how to install `tool` when it is
/// missing (the workspace's one peer table, support::require).
pub fn need(tool: &str, _package: &str) {
    crate::support::require(tool);
}

/// Makes `root.pem` (and its key) and an intermediate in `dir` once, then a
/// leaf for `names` signed by the intermediate: `{stem}.pem` (leaf),
/// `{stem}-fullchain.pem` (leaf + intermediate) and `{stem}-key.pem`.
pub fn public_chain(dir: &Path, stem: &str, names: &[&str]) {
    need("openssl", "openssl");
    if !dir.join("root.pem").exists() {
        openssl_ok(dir, &words("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem -days 30 -subj /CN=Gateway-Test-Root -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"));
        openssl_ok(dir, &words("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key -out int.csr -subj /CN=Gateway-Test-Intermediate"));
        std::fs::write(
            dir.join("int.ext"),
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        openssl_ok(dir, &words("x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -out int.pem -days 30 -extfile int.ext"));
    }
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join(format!("{stem}.ext")),
        format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            sans.join(",")
        ),
    )
    .unwrap();
    let subj = format!("/CN={}", names[0]);
    openssl_ok(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{stem}-key.pem"),
            "-out",
            &format!("{stem}.csr"),
            "-subj",
            &subj,
        ],
    );
    openssl_ok(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{stem}.csr"),
            "-CA",
            "int.pem",
            "-CAkey",
            "int.key",
            "-CAcreateserial",
            "-out",
            &format!("{stem}.pem"),
            "-days",
            "30",
            "-extfile",
            &format!("{stem}.ext"),
        ],
    );
    let leaf = std::fs::read(dir.join(format!("{stem}.pem"))).unwrap();
    let int = std::fs::read(dir.join("int.pem")).unwrap();
    std::fs::write(
        dir.join(format!("{stem}-fullchain.pem")),
        [leaf, int].concat(),
    )
    .unwrap();
}

/// A running `devtls gateway --json`.
pub struct Gateway {
    /// The process and its lines.
    pub server: LineServer,
    /// The port of each listener, in the order they were printed.
    pub ports: Vec<u16>,
}

impl Gateway {
    /// Starts `devtls gateway --json ARGS` in `dir`, waiting for `listeners` listening lines.
    pub fn start(dir: &Path, args: &[&str], listeners: usize) -> Gateway {
        let mut cmd = devtls();
        cmd.arg("gateway").arg("--json").args(args).current_dir(dir);
        let mut server = LineServer::spawn("devtls gateway", &mut cmd, 0);
        let mut ports = Vec::new();
        for _ in 0..listeners {
            let line = server.wait_line(WAIT, |l| l.stdout && l.text.contains("\"listening\""));
            let v: Value = serde_json::from_str(&line.text).unwrap();
            ports.push(v["port"].as_u64().unwrap() as u16);
        }
        Gateway { server, ports }
    }

    /// The first listener's port.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// Waits for the next JSON line matching `pred`.
    pub fn wait_json(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.server.wait_line(WAIT, |l| {
            l.stdout && serde_json::from_str::<Value>(&l.text).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line.text).unwrap()
    }

    /// Waits for `n` connection lines (any outcome) and returns them.
    pub fn connections(&mut self, n: usize) -> Vec<Value> {
        let mut out: Vec<Value> = self.conn_lines();
        while out.len() < n {
            self.wait_json(|v| v.get("client").is_some());
            out = self.conn_lines();
        }
        out
    }

    /// The connection lines read so far.
    pub fn conn_lines(&self) -> Vec<Value> {
        self.server
            .seen
            .iter()
            .filter(|l| l.stdout)
            .filter_map(|l| serde_json::from_str::<Value>(&l.text).ok())
            .filter(|v| v.get("client").is_some())
            .collect()
    }

    /// The gateway's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.server.peer.child.id()))
                .unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

/// A rustls client configuration trusting only the certificates in `root`,
/// without session resumption.
pub fn client_config(root: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake, so each one sees (and verifies)
    // the certificate the gateway shows now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A verified TLS connection through the gateway.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the handshake (verifying `name` against the root).
pub fn tls_connect(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    name: &str,
) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(WAIT))?;
    tcp.set_write_timeout(Some(WAIT))?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// Sends `data` and reads until the other side closes; `Ok` only for a
/// clean close (close_notify), so a reset or a truncated stream is an error.
pub fn exchange(tls: &mut Tls, data: &[u8]) -> std::io::Result<Vec<u8>> {
    tls.write_all(data)?;
    tls.flush()?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply)?;
    Ok(reply)
}

/// Connects, sends, reads the reply to the end: one whole exchange.
pub fn tls_exchange(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    name: &str,
    data: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut tls = tls_connect(config, port, name)?;
    exchange(&mut tls, data)
}

/// How long the tests wait for a gateway log line after a client finished.
pub const LOG_WAIT: Duration = Duration::from_secs(10);

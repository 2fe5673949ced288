//! The device's own TLS stack as a test peer: mbedTLS 3.6.5 built with the
//! device's configuration by `tests/peers/mbedtls36/build.sh` (see
//! docs/device-behaviour.md). Client and server take the same flags and print
//! the same JSON as the mbedTLS 2.28 peer ([`super::peers`]); `verify`,
//! `loadkey` and `loadcert` answer X.509 and key questions as the device does;
//! [`record_client_hello`] captures the hello the device sends.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::peers::{
    peer_client, peer_server, peer_server_results, LineServer, PeerProgram, PeerRun,
};
use super::{repo_root, Peer};

/// The one line a test fails with when the peer cannot be had.
pub const MISSING: &str =
    "mbedTLS 3.6 device peer missing: run bash tests/peers/mbedtls36/build.sh (needs gcc)";

/// The cargo target folder the tests were built in (`.../target`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            repo_root().join(dir)
        };
    }
    // CARGO_BIN_EXE_devtls is <target>/<profile>/devtls.
    Path::new(env!("CARGO_BIN_EXE_devtls"))
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The device peer binary: `$DEVTLS_DEVICE_PEER`, else
/// `<target>/mbedtls36/device-peer`, built by build.sh once per test process
/// (build.sh does nothing when it is up to date). Panics with [`MISSING`]
/// when it cannot be had.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| {
        if let Some(p) = std::env::var_os("DEVTLS_DEVICE_PEER") {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("DEVTLS_DEVICE_PEER={} does not exist", p.display()))
            };
        }
        let target = target_dir();
        let bin = target.join("mbedtls36/device-peer");
        let script = repo_root().join("tests/peers/mbedtls36/build.sh");
        let built = Command::new("bash")
            .arg(&script)
            .env("CARGO_TARGET_DIR", &target)
            .stdin(Stdio::null())
            .output();
        match built {
            Ok(out) if out.status.success() && bin.is_file() => Ok(bin),
            // No compiler here but an earlier build exists: use it.
            _ if bin.is_file() => Ok(bin),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("build.sh failed")
                .to_string()),
            Err(e) => Err(format!("bash: {e}")),
        }
    });
    match found {
        Ok(p) => p.clone(),
        Err(why) => super::require::fail(&format!("{MISSING} ({why})")),
    }
}

/// The device as a TLS/DTLS client of 127.0.0.1:`port`; `args` as for
/// [`super::peers::peer_client`] plus `--time UNIX|unset` and `--firmware`.
pub fn client(dir: &Path, port: u16, args: &[&str]) -> PeerRun {
    peer_client(PeerProgram::Device36, dir, port, args)
}

/// The device as a TLS/DTLS server; see [`super::peers::peer_server`].
pub fn server(dir: &Path, args: &[&str]) -> LineServer {
    peer_server(PeerProgram::Device36, dir, args)
}

/// What a device server started by [`server`] reported.
pub fn server_results(server: LineServer, timeout: Duration) -> PeerRun {
    peer_server_results(server, timeout)
}

/// Runs the peer with `args` in `dir` and `input` on stdin.
pub fn run(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{MISSING} ({e})"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

/// What `loadkey`/`loadcert` report for a file.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Load {
    /// The device loads it.
    pub ok: bool,
    /// mbedTLS's return code (0 when loaded).
    pub code: i64,
    /// Its MBEDTLS_ERR_ name when not loaded.
    pub error: Option<String>,
    /// What MicroPython raises when not loaded.
    pub raises: Option<String>,
    /// Key type ("EC", "RSA") when loaded.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// Loads `file` (in `dir`) as the device's key (`loadkey`) or certificate
/// (`loadcert`), with `--firmware VERSION` when given.
pub fn load(dir: &Path, what: &str, file: &str, firmware: Option<&str>) -> Load {
    let mut args = vec![what, file];
    if let Some(v) = firmware {
        args.extend(["--firmware", v]);
    }
    let out = run(dir, &args, b"");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "device-peer {args:?} printed no JSON ({e}):\n{}",
            super::text(&out)
        )
    })
}

/// The first handshake record(s) the device sends as a client: a raw TCP
/// (or UDP for DTLS) listener on 127.0.0.1 takes the device's connection and
/// returns its bytes until the first handshake message is complete
/// (TLS: records, each with its 5-byte header; DTLS: the first datagram).
/// The connection is then dropped.
pub fn record_client_hello(dtls: bool, hostname: &str) -> Vec<u8> {
    let dir = std::env::temp_dir();
    if dtls {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let _peer = spawn_hello_client(&dir, port, true, hostname);
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("the device sends a DTLS ClientHello within 20 s");
        buf.truncate(n);
        return buf;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _peer = spawn_hello_client(&dir, port, false, hostname);
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("the device did not connect within 20 s: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = Vec::new();
    let mut fragment = Vec::new();
    loop {
        let mut header = [0u8; 5];
        conn.read_exact(&mut header).expect("a TLS record header");
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).expect("a TLS record body");
        out.extend_from_slice(&header);
        out.extend_from_slice(&body);
        fragment.extend_from_slice(&body);
        if fragment.len() >= 4 {
            let need = 4 + u32::from_be_bytes([0, fragment[1], fragment[2], fragment[3]]) as usize;
            if fragment.len() >= need {
                return out;
            }
        }
    }
}

fn spawn_hello_client(dir: &Path, port: u16, dtls: bool, hostname: &str) -> Peer {
    let port = port.to_string();
    let mut cmd = Command::new(binary());
    cmd.args(["client", "--host", "127.0.0.1", "--port", &port])
        .args(["--hostname", hostname, "--timeout", "5"])
        .current_dir(dir);
    if dtls {
        cmd.arg("--dtls");
    }
    Peer::spawn("device-peer client (hello recording)", &mut cmd)
}

/// A ClientHello's fields, in the order the device sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// Record-layer version (0x0303 TLS 1.2, 0xfefd DTLS 1.2; TLS 1.2 hellos
    /// often say 0x0301 here).
    pub record_version: u16,
    /// client_version in the hello.
    pub version: u16,
    /// Session id length.
    pub session_id_len: usize,
    /// DTLS cookie (empty on the first hello).
    pub cookie: Vec<u8>,
    /// Cipher suites in order (SCSV included).
    pub suites: Vec<u16>,
    /// Compression methods.
    pub compression: Vec<u8>,
    /// Extension types in order.
    pub extensions: Vec<u16>,
    /// supported_groups, in order.
    pub groups: Vec<u16>,
    /// signature_algorithms, in order.
    pub sig_algs: Vec<u16>,
    /// ec_point_formats.
    pub point_formats: Vec<u8>,
    /// server_name host, when sent.
    pub server_name: Option<String>,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = self
            .b
            .get(self.at..self.at + n)
            .unwrap_or_else(|| panic!("ClientHello truncated at byte {}", self.at));
        self.at += n;
        s
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        let s = self.take(2);
        u16::from_be_bytes([s[0], s[1]])
    }
    fn vec8(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.take(n)
    }
    fn vec16(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }
}

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// Parses what [`record_client_hello`] returned.
pub fn parse_client_hello(bytes: &[u8], dtls: bool) -> ClientHello {
    // Records: concatenate the fragments.
    let header = if dtls { 13 } else { 5 };
    let mut at = 0;
    let mut body = Vec::new();
    let record_version = u16::from_be_bytes([bytes[1], bytes[2]]);
    while at + header <= bytes.len() {
        assert_eq!(bytes[at], 22, "not a handshake record");
        let len = u16::from_be_bytes([bytes[at + header - 2], bytes[at + header - 1]]) as usize;
        body.extend_from_slice(&bytes[at + header..at + header + len]);
        at += header + len;
    }
    let mut c = Cursor { b: &body, at: 0 };
    assert_eq!(c.u8(), 1, "not a ClientHello");
    c.take(3);
    if dtls {
        c.take(8); // message_seq, fragment_offset, fragment_length
    }
    let version = c.u16();
    c.take(32);
    let session_id_len = c.vec8().len();
    let cookie = if dtls { c.vec8().to_vec() } else { Vec::new() };
    let suites = u16s(c.vec16());
    let compression = c.vec8().to_vec();
    let mut hello = ClientHello {
        record_version,
        version,
        session_id_len,
        cookie,
        suites,
        compression,
        extensions: Vec::new(),
        groups: Vec::new(),
        sig_algs: Vec::new(),
        point_formats: Vec::new(),
        server_name: None,
    };
    if c.at == body.len() {
        return hello;
    }
    let exts = c.vec16();
    let mut e = Cursor { b: exts, at: 0 };
    while e.at < exts.len() {
        let kind = e.u16();
        let data = e.vec16();
        hello.extensions.push(kind);
        let mut d = Cursor { b: data, at: 0 };
        match kind {
            0 => {
                let list = d.vec16();
                let mut l = Cursor { b: list, at: 0 };
                let _name_type = l.u8();
                hello.server_name = Some(String::from_utf8_lossy(l.vec16()).into_owned());
            }
            10 => hello.groups = u16s(d.vec16()),
            11 => hello.point_formats = d.vec8().to_vec(),
            13 => hello.sig_algs = u16s(d.vec16()),
            _ => {}
        }
    }
    hello
}

/// One chain for the device's X.509 verification (`device-peer verify`).
#[derive(Debug, Clone)]
pub struct VerifyCase {
    /// Echoed back as the answer's `id`.
    pub id: String,
    /// The one anchor, DER (what `load_verify_locations` gets).
    pub anchor: Vec<u8>,
    /// What the server sends, leaf first, DER each.
    pub chain: Vec<Vec<u8>>,
    /// `server_hostname`, or None for no name check.
    pub hostname: Option<String>,
    /// The device clock, seconds since 1970.
    pub time: i64,
}

/// The device's answer for one [`VerifyCase`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Verdict {
    /// The case's id.
    pub id: String,
    /// The anchor failed to load: its code.
    pub anchor: Option<ParseFailure>,
    /// The first chain certificate the TLS layer refuses to parse.
    pub parse: Option<ParseFailure>,
    /// Chain certificates skipped (unknown signature algorithm).
    #[serde(default)]
    pub skipped: Vec<usize>,
    /// mbedtls_x509_crt_verify_with_profile's return (0 or -0x2700).
    pub ret: Option<i64>,
    /// Its verify flags (None when it did not run).
    pub flags: Option<u32>,
    /// One text per flag, as mbedtls_x509_crt_verify_info writes them.
    #[serde(default)]
    pub texts: Vec<String>,
    /// The leaf's EKU allows serverAuth (the TLS client checks it next).
    pub server_auth: Option<bool>,
}

/// A certificate mbedTLS refused to parse.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ParseFailure {
    /// Position in the chain (absent for the anchor).
    pub index: Option<usize>,
    /// mbedTLS's code.
    pub code: i64,
    /// Its MBEDTLS_ERR_ name(s).
    pub error: String,
}

/// Verifies every case in one `device-peer verify` process, in order.
pub fn verify(cases: &[VerifyCase]) -> Vec<Verdict> {
    let mut input = String::new();
    for c in cases {
        let line = serde_json::json!({
            "id": c.id,
            "anchor": base64(&c.anchor),
            "chain": c.chain.iter().map(|d| base64(d)).collect::<Vec<_>>(),
            "hostname": c.hostname,
            "time": c.time,
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let out = run(&std::env::temp_dir(), &["verify"], input.as_bytes());
    assert!(
        out.status.success(),
        "device-peer verify failed:\n{}",
        super::text(&out)
    );
    let verdicts: Vec<Verdict> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(verdicts.len(), cases.len(), "one answer per case");
    verdicts
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

//! Debian's Pebble (2.4) has no ACME Renewal Information (RFC 9773) and no
//! certificate profiles. This stand-in sits in front of Pebble on 127.0.0.1
//! and answers just those requests itself: the directory gains
//! `renewalInfo` and `meta.profiles`, `GET renewal-info/ID` answers a
//! window the test chooses, and a new order's `replaces` (which Pebble
//! ignores) is recorded and reflected in the answer as RFC 9773 requires.
//! Everything else is forwarded to Pebble unchanged (with curl), with the
//! Host header kept, so Pebble's URLs point back here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::Pebble;

/// What the stand-in saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Certificate ids asked for at renewal-info.
    pub ari_ids: Vec<String>,
    /// `replaces` values of new orders.
    pub replaces: Vec<String>,
}

/// The running stand-in (its threads end with the test process).
pub struct AriStandIn {
    /// `https://127.0.0.1:PORT/dir`.
    pub url: String,
    /// When set (by [`AriStandIn::renew_now`]), renewal-info answers a
    /// window that began then and has passed: renew now.
    since: Arc<Mutex<Option<time::OffsetDateTime>>>,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
}

struct Upstream {
    base: String,
    ca: PathBuf,
    host: String,
}

impl AriStandIn {
    pub fn start(pebble: &Pebble) -> AriStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = pebble.dir.path();
        let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
            devtls_pki::sniff::sniff(&std::fs::read(dir.join("pebble.crt")).unwrap())
                .unwrap()
                .certificates()
                .map(|i| i.der.clone().into())
                .collect();
        let key = devtls_pki::sniff::sniff(&std::fs::read(dir.join("pebble.key")).unwrap())
            .unwrap()
            .items
            .remove(0)
            .der;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()))
        .unwrap();
        let config = Arc::new(config);
        let upstream = Arc::new(Upstream {
            base: pebble.url.trim_end_matches("/dir").to_string(),
            ca: pebble.server_ca.clone(),
            host: format!("127.0.0.1:{port}"),
        });
        let renew_now: Arc<Mutex<Option<time::OffsetDateTime>>> = Arc::default();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (now, log) = (renew_now.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (config, upstream, now, log) =
                    (config.clone(), upstream.clone(), now.clone(), log.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    while let Some(req) = read_request(&mut tls) {
                        let rsp = answer(&req, &upstream, &now, &log);
                        if tls.write_all(&rsp).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        AriStandIn {
            url: format!("https://127.0.0.1:{port}/dir"),
            since: renew_now,
            seen,
        }
    }

    /// From now on the CA says: renew now (a one-second window starting now;
    /// waits until it has passed). Certificates issued later are not concerned.
    pub fn renew_now(&self) {
        *self.since.lock().unwrap() = Some(time::OffsetDateTime::now_utc());
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

struct Req {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn read_request(tls: &mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>) -> Option<Req> {
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut length, mut content_type) = (0usize, None);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "content-type" => content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        content_type,
        body,
    })
}

fn answer(
    req: &Req,
    up: &Upstream,
    renew_now: &Mutex<Option<time::OffsetDateTime>>,
    seen: &Mutex<Seen>,
) -> Vec<u8> {
    if let Some(id) = req.path.strip_prefix("/renewal-info/") {
        seen.lock().unwrap().ari_ids.push(id.to_string());
        let now = time::OffsetDateTime::now_utc();
        let (start, end) = match *renew_now.lock().unwrap() {
            Some(since) => (since, since + time::Duration::seconds(1)),
            None => (
                now + time::Duration::days(30),
                now + time::Duration::days(31),
            ),
        };
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let body = serde_json::json!({"suggestedWindow": {"start": fmt(start), "end": fmt(end)}})
            .to_string();
        return response(
            200,
            &[
                ("Content-Type", "application/json".into()),
                ("Retry-After", "21600".into()),
            ],
            body.as_bytes(),
        );
    }
    let mut replaces = None;
    if req.method == "POST" && req.path == "/order-plz" {
        let jws: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let payload = jws["payload"].as_str().map(base64url).unwrap_or_default();
        let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        if let Some(r) = payload["replaces"].as_str() {
            seen.lock().unwrap().replaces.push(r.to_string());
            replaces = Some(r.to_string());
        }
    }
    let (status, headers, mut body) = forward(req, up);
    if req.path == "/dir" {
        let mut dir: serde_json::Value = serde_json::from_slice(&body).unwrap();
        dir["renewalInfo"] = format!("https://{}/renewal-info", up.host).into();
        dir["meta"]["profiles"] =
            serde_json::json!({"classic": "90 days", "shortlived": "6 days, IP addresses"});
        body = dir.to_string().into_bytes();
    }
    if let Some(r) = replaces {
        if let Ok(mut order) = serde_json::from_slice::<serde_json::Value>(&body) {
            if order.get("status").is_some() {
                order["replaces"] = r.into();
                body = order.to_string().into_bytes();
            }
        }
    }
    response(status, &headers, &body)
}

/// Sends the request to Pebble with curl (HTTP/1.1, Host kept).
fn forward(req: &Req, up: &Upstream) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--http1.1", "--max-time", "20", "--cacert"])
        .arg(&up.ca)
        .args(["-H", &format!("Host: {}", up.host), "-H", "Expect:"]);
    match req.method.as_str() {
        "HEAD" => {
            cmd.arg("-I");
        }
        "POST" => {
            cmd.args(["-X", "POST", "--data-binary", "@-"]);
            if let Some(ct) = &req.content_type {
                cmd.args(["-H", &format!("Content-Type: {ct}")]);
            }
        }
        _ => {}
    }
    cmd.arg(format!("{}{}", up.base, req.path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("curl is installed");
    child.stdin.take().unwrap().write_all(&req.body).unwrap();
    let out = child.wait_with_output().unwrap();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer from Pebble");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let keep = [
        "content-type",
        "replay-nonce",
        "location",
        "link",
        "retry-after",
        "cache-control",
    ];
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            keep.iter()
                .find(|x| **x == k)
                .map(|x| (*x, v.trim().to_string()))
        })
        .collect();
    (
        status,
        headers,
        if req.method == "HEAD" {
            Vec::new()
        } else {
            body
        },
    )
}

fn response(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn base64url(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => continue,
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

//! `devtls fleet serve`: devices renew their own certificates.
//!
//! The devices here are rustls clients restricted to the `openmv` device
//! profile (TLS 1.2, the device's ECDHE AES-GCM suites and groups, the fleet
//! CA as the one anchor), the restriction devtls's own device-restricted
//! endpoints use; standard EST clients are `curl` with OpenSSL parsing what
//! it gets; one test runs the device's own TLS stack (the mbedTLS 3.6
//! device peer) against the service. Every server is a `devtls fleet serve`
//! process on 127.0.0.1, killed when its test ends.

use crate::support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use support::fleet::{export, field};
use support::{free_tcp_port, ok_in, openssl_ok, require, text, wait_for_tcp, Peer};

mod attack;
mod hostile;

const KEYGEN: &str = "/.well-known/est/serverkeygen";
const REENROLL: &str = "/.well-known/est/simplereenroll";
const CACERTS: &str = "/.well-known/est/cacerts";
const DEVTLS: &str = "application/x-devtls-renew";

/// A device's credentials: certificate and PKCS#8 key, DER.
#[derive(Clone, Debug, PartialEq)]
struct Creds {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Creds {
    fn of(dir: &Path, id: &str) -> Creds {
        let d = dir.join("fleet/devices").join(id);
        Creds {
            cert: fs::read(d.join("client.der")).unwrap(),
            key: fs::read(d.join("client.key.der")).unwrap(),
        }
    }

    fn serial(&self) -> String {
        serial_of(&self.cert)
    }
}

/// The serial of a DER certificate as lower-case hex (via OpenSSL, not devtls).
fn serial_of(der: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("c.der"), der).unwrap();
    let out = openssl_ok(
        dir.path(),
        &[
            "x509", "-inform", "der", "-in", "c.der", "-noout", "-serial",
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The devtls format: (cert, key, not_after).
    fn devtls(&self) -> (Vec<u8>, Vec<u8>, u64) {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(self.header("content-type"), DEVTLS);
        let b = &self.body;
        assert_eq!(&b[..4], b"DTR1");
        let cl = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
        let cert = b[8..8 + cl].to_vec();
        let kl = u32::from_be_bytes(b[8 + cl..12 + cl].try_into().unwrap()) as usize;
        let key = b[12 + cl..12 + cl + kl].to_vec();
        let rest = &b[12 + cl + kl..];
        assert_eq!(rest.len(), 8, "nothing after not_after");
        (cert, key, u64::from_be_bytes(rest.try_into().unwrap()))
    }
}

/// A client restricted like the `openmv` profile, with the fleet CA as its
/// one anchor, before its client certificate is chosen.
fn device_builder(
    ca_der: &[u8],
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let profile = devtls_pki::profile::by_name("openmv").unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
    rustls::ClientConfig::builder_with_provider(devtls_net::restrict::provider(profile))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
}

/// A device connecting like the `openmv` profile does, presenting `creds`.
fn tls_config(ca_der: &[u8], creds: &Creds) -> Arc<rustls::ClientConfig> {
    let config = device_builder(ca_der)
        .with_client_auth_cert(
            vec![CertificateDer::from(creds.cert.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key.clone())),
        )
        .unwrap();
    Arc::new(config)
}

/// One request on its own connection; `stop_after` drops the connection
/// after that many bytes of the answer (a device losing power mid-answer).
/// What a request asks.
struct Ask<'a> {
    method: &'a str,
    path: &'a str,
    accept: Option<&'a str>,
    body: &'a [u8],
    stop_after: Option<usize>,
}

fn request_partial(port: u16, ca: &[u8], creds: &Creds, ask: Ask<'_>) -> Result<Answer, String> {
    let Ask {
        method,
        path,
        accept,
        body,
        stop_after,
    } = ask;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    exchange(port, ca, creds, &raw, Duration::from_secs(30), stop_after)
}

/// Sends `request` (bytes as they are) on one connection presenting
/// `creds`, and reads the answer, waiting at most `wait` for each read.
fn exchange(
    port: u16,
    ca: &[u8],
    creds: &Creds,
    request: &[u8],
    wait: Duration,
    stop_after: Option<usize>,
) -> Result<Answer, String> {
    let config = tls_config(ca, creds);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(wait)).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(request).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.to_string()),
        }
        if stop_after.is_some_and(|n| raw.len() >= n) {
            return Err("dropped mid-answer".into());
        }
    }
    let (status, headers, body) = crate::fleet_storm::storm::split_answer(&raw)?;
    let headers = headers.into_iter().collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_vec(),
    })
}

fn keygen(port: u16, ca: &[u8], creds: &Creds) -> Result<Answer, String> {
    let ask = Ask {
        method: "POST",
        path: KEYGEN,
        accept: Some(DEVTLS),
        body: b"",
        stop_after: None,
    };
    request_partial(port, ca, creds, ask)
}

/// A fleet of `n` devices (`cam-1`...) valid `days` days, in `dir/fleet`.
fn fleet(dir: &Path, n: u32, days: u32) -> Vec<u8> {
    ok_in(dir, &["fleet", "init", "--name", "Renewal test fleet"]);
    ok_in(
        dir,
        &[
            "fleet",
            "issue",
            "--count",
            &n.to_string(),
            "--prefix",
            "cam-",
            "--days",
            &days.to_string(),
            "--quiet",
        ],
    );
    fs::read(dir.join("fleet/ca.der")).unwrap()
}

/// A DER CSR for a new P-256 key, made by `openssl req` with `extra` options.
fn openssl_csr(dir: &Path, name: &str, extra: &[&str]) -> Vec<u8> {
    let (key, der) = (format!("{name}.key"), format!("{name}.der"));
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        "/CN=x",
        "-outform",
        "der",
        "-out",
        &der,
    ];
    args.extend_from_slice(extra);
    openssl_ok(dir, &args);
    fs::read(dir.join(&der)).unwrap()
}

/// `devtls fleet serve` on 127.0.0.1 with `extra` arguments.
pub(crate) fn serve(dir: &Path, extra: &[&str]) -> (Peer, u16) {
    let port = free_tcp_port();
    let port_s = port.to_string();
    let mut args = vec!["fleet", "serve", "--bind", "127.0.0.1", "--port", &port_s];
    args.extend_from_slice(extra);
    let mut cmd = support::devtls();
    cmd.args(&args).current_dir(dir);
    let peer = Peer::spawn("devtls fleet serve", &mut cmd);
    wait_for_tcp(port, Duration::from_secs(20));
    (peer, port)
}

/// A fleet of `n` devices valid 30 days with `fleet serve` (and `extra`)
/// on it: its folder, the CA, cam-1's credentials, the server and its port.
fn fleet_served(n: u32, extra: &[&str]) -> (tempfile::TempDir, Vec<u8>, Creds, Peer, u16) {
    require("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let ca = fleet(tmp.path(), n, 30);
    let old = Creds::of(tmp.path(), "cam-1");
    let (server, port) = serve(tmp.path(), extra);
    (tmp, ca, old, server, port)
}

/// Inventory rows by status.
fn statuses(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for row in export(dir, "fleet") {
        *out.entry(field(&row, "status").to_string()).or_default() += 1;
    }
    out
}

fn rows_by_serial(dir: &Path) -> BTreeMap<String, Value> {
    export(dir, "fleet")
        .into_iter()
        .map(|r| (field(&r, "serial").to_string(), r))
        .collect()
}

fn status_json(dir: &Path) -> Value {
    let out = ok_in(dir, &["fleet", "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// `fleet status --json` once the service has written the outcome counts
/// `want` (it counts in memory and writes every 2 s), or after 10 s.
fn status_counted(dir: &Path, want: &[(&str, u64)]) -> Value {
    let mut status = Value::Null;
    for _ in 0..100 {
        status = status_json(dir);
        let outcomes = &status["renewal"]["outcomes"];
        if want.iter().all(|(name, n)| outcomes[*name] == *n) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    status
}

/// Runs `f` for every device on its own thread, all at once.
fn all_at_once<T: Send + 'static>(
    devices: Vec<(String, Creds)>,
    f: impl Fn(&str, &Creds) -> T + Send + Sync + 'static,
) -> Vec<(String, T)> {
    let f = Arc::new(f);
    let threads: Vec<_> = devices
        .into_iter()
        .map(|(id, creds)| {
            let f = f.clone();
            std::thread::spawn(move || {
                let r = f(&id, &creds);
                (id, r)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn devices(dir: &Path, n: u32) -> Vec<(String, Creds)> {
    (1..=n)
        .map(|i| {
            let id = format!("cam-{i}");
            let creds = Creds::of(dir, &id);
            (id, creds)
        })
        .collect()
}

/// `openssl x509` converts the DER certificate `der` to PEM in `pem` (curl
/// and openssl's client options want PEM).
fn der_to_pem(dir: &Path, der: &str, pem: &str) {
    openssl_ok(dir, &["x509", "-inform", "der", "-in", der, "-out", pem]);
}

#[test]
fn two_hundred_devices_renew_concurrently_then_confirm() {
    let _backend = support::postgres::backend();
    require("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = fleet(dir, 200, 30);
    // 200 devices at once from one address (one NAT): more than the 64
    // unauthenticated connections an address may hold by default.
    let (_server, port) = serve(dir, &["--renew-after", "0", "--max-per-address", "256"]);
    let old = devices(dir, 200);

    // Phase 1: every device asks at once with its old certificate.
    let ca1 = ca.clone();
    let got = all_at_once(old.clone(), move |_, creds| {
        keygen(port, &ca1, creds).map(|a| a.devtls())
    });
    let mut new: Vec<(String, Creds)> = Vec::new();
    for ((id, r), (_, old_creds)) in got.into_iter().zip(&old) {
        let (cert, key, not_after) = r.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_ne!(cert, old_creds.cert, "{id} got a new certificate");
        assert!(not_after > 1_700_000_000);
        new.push((id, Creds { cert, key }));
    }
    let counts = statuses(dir);
    assert_eq!(counts.get("pending"), Some(&200), "{counts:?}");
    assert_eq!(counts.get("active"), Some(&200), "{counts:?}");
    // The new certificates are the fleet's (OpenSSL verifies them against ca.der).
    let one = dir.join("new.der");
    fs::write(&one, &new[0].1.cert).unwrap();
    der_to_pem(dir, "new.der", "new.pem");
    der_to_pem(dir, "fleet/ca.der", "ca.pem");
    openssl_ok(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "new.pem",
        ],
    );
    // Asking again before confirming gives back the same certificate and key.
    let again = keygen(port, &ca, &old[7].1).unwrap().devtls();
    assert_eq!(
        (again.0, again.1),
        (new[7].1.cert.clone(), new[7].1.key.clone())
    );

    // Phase 2: every device connects with its new credentials: that confirms.
    let ca2 = ca.clone();
    let confirmed = all_at_once(new.clone(), move |_, creds| keygen(port, &ca2, creds));
    for (id, r) in confirmed {
        let a = r.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            (a.status, a.header("x-devtls-status")),
            (204, "current"),
            "{id}"
        );
    }
    let rows = rows_by_serial(dir);
    for ((id, o), (_, n)) in old.iter().zip(&new) {
        assert_eq!(field(&rows[&o.serial()], "status"), "superseded", "{id}");
        assert_eq!(field(&rows[&n.serial()], "status"), "active", "{id}");
        assert_eq!(field(&rows[&n.serial()], "device"), id);
    }
    assert_eq!(statuses(dir).get("pending"), None);
    // The old certificate no longer renews anything.
    let a = keygen(port, &ca, &old[0].1).unwrap();
    assert_eq!((a.status, a.header("x-devtls-status")), (403, "superseded"));
    assert_eq!(a.body, b"refused: superseded\n");
    // No pending key is left on disk once confirmed.
    let left = fs::read_dir(dir.join("fleet/renewal")).map_or(0, |d| d.count());
    assert_eq!(left, 0);
    let status = status_counted(
        dir,
        &[
            ("issued", 200),
            ("renewed", 200),
            ("resent", 1),
            ("refused-superseded", 1),
        ],
    );
    let outcomes = &status["renewal"]["outcomes"];
    assert_eq!(outcomes["issued"], 200, "{status}");
    assert_eq!(outcomes["renewed"], 200, "{status}");
    assert_eq!(outcomes["resent"], 1, "{status}");
    assert_eq!(outcomes["refused-superseded"], 1, "{status}");
    assert_eq!(status["renewal"]["pending"], 0);
}

#[test]
fn revoked_unknown_and_foreign_certificates_are_refused() {
    let _backend = support::postgres::backend();
    require("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = fleet(dir, 3, 30);
    // A certificate from the same CA that this inventory never recorded:
    // issued by a copy of the fleet.
    let copy = dir.join("copy");
    fs::create_dir(&copy).unwrap();
    let cp = Command::new("cp")
        .args(["-a"])
        .arg(dir.join("fleet"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    // On PostgreSQL the copy and the other fleet get databases of their own.
    let inventory = support::postgres::FLEET_DB.with(|db| db.borrow().clone());
    support::postgres::fresh_database();
    ok_in(&copy, &["fleet", "issue", "stranger", "--quiet"]);
    let stranger = Creds::of(&copy, "stranger");
    // A certificate from another CA altogether.
    let other = dir.join("other");
    fs::create_dir(&other).unwrap();
    support::postgres::fresh_database();
    fleet(&other, 1, 30);
    let foreign = Creds::of(&other, "cam-1");
    support::postgres::FLEET_DB.with(|db| *db.borrow_mut() = inventory);

    ok_in(dir, &["fleet", "revoke", "cam-2"]);
    let (_server, port) = serve(dir, &[]);
    let revoked = keygen(port, &ca, &Creds::of(dir, "cam-2")).unwrap();
    assert_eq!(
        (revoked.status, revoked.header("x-devtls-status")),
        (403, "revoked")
    );
    assert_eq!(revoked.body, b"refused: revoked\n");
    let unknown = keygen(port, &ca, &stranger).unwrap();
    assert_eq!(
        (unknown.status, unknown.header("x-devtls-status")),
        (403, "unknown")
    );
    assert_eq!(unknown.body, b"refused: unknown\n");
    // The TLS layer itself refuses a certificate the fleet CA did not sign.
    assert!(
        keygen(port, &ca, &foreign).is_err(),
        "a foreign certificate got an answer"
    );
    // By default the window opens after two thirds of the lifetime: a fresh
    // certificate is current, and cacerts still answers.
    let current = keygen(port, &ca, &Creds::of(dir, "cam-1")).unwrap();
    assert_eq!(
        (current.status, current.header("x-devtls-status")),
        (204, "current")
    );
    let raw = request_partial(
        port,
        &ca,
        &Creds::of(dir, "cam-1"),
        Ask {
            method: "GET",
            path: CACERTS,
            accept: Some("application/pkix-cert"),
            body: b"",
            stop_after: None,
        },
    )
    .unwrap();
    assert_eq!((raw.status, raw.body.as_slice()), (200, ca.as_slice()));
    let want = [
        ("refused-revoked", 1),
        ("refused-unknown", 1),
        ("refused-tls", 1),
        ("current", 1),
    ];
    let outcomes = status_counted(dir, &want)["renewal"]["outcomes"].clone();
    assert_eq!(outcomes["refused-revoked"], 1, "{outcomes}");
    assert_eq!(outcomes["refused-unknown"], 1, "{outcomes}");
    assert_eq!(outcomes["refused-tls"], 1, "{outcomes}");
    assert_eq!(outcomes["current"], 1, "{outcomes}");
}

#[test]
fn connections_killed_mid_answer_and_a_killed_server_leave_every_device_working() {
    let _backend = support::postgres::backend();
    require("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = fleet(dir, 40, 30);
    let old = devices(dir, 40);
    let (server, port) = serve(dir, &["--renew-after", "0"]);
    // Half the devices lose the connection after 100 bytes of the answer.
    let ca1 = ca.clone();
    let first = all_at_once(old.clone(), move |id, creds| {
        let n: u32 = id.trim_start_matches("cam-").parse().unwrap();
        let stop = n.is_multiple_of(2).then_some(100);
        request_partial(
            port,
            &ca1,
            creds,
            Ask {
                method: "POST",
                path: KEYGEN,
                accept: Some(DEVTLS),
                body: b"",
                stop_after: stop,
            },
        )
    });
    let mut got: BTreeMap<String, Creds> = BTreeMap::new();
    for (id, r) in first {
        if let Ok(a) = r {
            let (cert, key, _) = a.devtls();
            got.insert(id, Creds { cert, key });
        }
    }
    assert_eq!(got.len(), 20, "the odd devices got their answers");
    // The server is killed (SIGKILL) while devices are asking, then restarted.
    let ca2 = ca.clone();
    let old2 = old.clone();
    let storm =
        std::thread::spawn(move || all_at_once(old2, move |_, c| keygen(port, &ca2, c).ok()));
    std::thread::sleep(Duration::from_millis(30));
    drop(server);
    for (id, answer) in storm.join().unwrap() {
        if let Some(a) = answer.filter(|a| a.status == 200) {
            let (cert, key, _) = a.devtls();
            got.insert(id, Creds { cert, key });
        }
    }
    let (_server, port) = serve(dir, &["--renew-after", "0"]);
    // Every device works: with the new credentials it has (confirming them),
    // or else with its old ones (which get it the pending credentials again).
    for (id, old_creds) in &old {
        let creds = match got.get(id) {
            Some(new) => new.clone(),
            None => {
                let (cert, key, _) = keygen(port, &ca, old_creds)
                    .unwrap_or_else(|e| panic!("{id} with its old credentials: {e}"))
                    .devtls();
                Creds { cert, key }
            }
        };
        let a = keygen(port, &ca, &creds)
            .unwrap_or_else(|e| panic!("{id} with its new credentials: {e}"));
        assert_eq!(a.status, 204, "{id}: {a:?}");
    }
    let counts = statuses(dir);
    assert_eq!(counts.get("active"), Some(&40), "{counts:?}");
    assert_eq!(counts.get("pending"), None, "{counts:?}");
}

#[test]
fn a_device_that_never_confirms_keeps_its_old_credentials() {
    let _backend = support::postgres::backend();
    let (tmp, ca, old, _server, port) = fleet_served(1, &["--renew-after", "0"]);
    let dir = tmp.path();
    let first = keygen(port, &ca, &old).unwrap().devtls();
    for _ in 0..3 {
        let again = keygen(port, &ca, &old).unwrap().devtls();
        assert_eq!(again, first, "the same pending credentials every time");
    }
    let rows = rows_by_serial(dir);
    assert_eq!(field(&rows[&old.serial()], "status"), "active");
    assert_eq!(field(&rows[&serial_of(&first.0)], "status"), "pending");
    // The pending key is a 0600 file in the fleet folder until confirmed.
    let keys: Vec<_> = fs::read_dir(dir.join("fleet/renewal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&keys[0]).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert_eq!(fs::read(&keys[0]).unwrap(), first.1);
}

/// The key file is written under its final name (no rename): a kill while
/// writing it leaves a cut file that no row names, which the next start
/// removes, while a pending renewal's file stays and is sent again.
#[test]
fn a_key_file_cut_short_by_a_crash_is_removed_and_the_pending_one_kept() {
    let _backend = support::postgres::backend();
    let (tmp, ca, old, server, port) = fleet_served(1, &["--renew-after", "0"]);
    let dir = tmp.path();
    let first = keygen(port, &ca, &old).unwrap().devtls();
    drop(server);
    let cut = dir.join("fleet/renewal/4f2a9c.key.der");
    fs::write(&cut, &first.1[..20]).unwrap();
    let (_server, port) = serve(dir, &["--renew-after", "0"]);
    assert!(!cut.exists(), "the cut file is removed at start");
    let again = keygen(port, &ca, &old).unwrap().devtls();
    assert_eq!(again, first, "the pending credentials, key file and all");
}

#[test]
fn revoke_old_puts_the_old_serial_in_the_next_crl() {
    let _backend = support::postgres::backend();
    let (tmp, ca, old, _server, port) = fleet_served(2, &["--renew-after", "0", "--revoke-old"]);
    let dir = tmp.path();
    let (cert, key, _) = keygen(port, &ca, &old).unwrap().devtls();
    let new = Creds { cert, key };
    assert_eq!(keygen(port, &ca, &new).unwrap().status, 204);
    let listing = crl_listing(dir);
    assert!(
        listing.contains(&old.serial()),
        "old serial {} not in:\n{listing}",
        old.serial()
    );
    assert!(
        !listing.contains(&new.serial()),
        "the new certificate is not revoked"
    );
    let a = keygen(port, &ca, &old).unwrap();
    assert_eq!((a.status, a.header("x-devtls-status")), (403, "revoked"));
}

/// `curl` with EST's content types; OpenSSL reads what comes back.
#[test]
fn standard_est_clients_work_with_curl_and_openssl() {
    let _backend = support::postgres::backend();
    require("openssl");
    require("curl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fleet(dir, 2, 30);
    let (_server, port) = serve(dir, &["--renew-after", "0"]);
    for (id, stem) in [("cam-1", "c1"), ("cam-2", "c2")] {
        let d = format!("fleet/devices/{id}");
        openssl_ok(
            dir,
            &[
                "x509",
                "-inform",
                "der",
                "-in",
                &format!("{d}/client.der"),
                "-out",
                &format!("{stem}.pem"),
            ],
        );
        openssl_ok(
            dir,
            &[
                "pkey",
                "-inform",
                "der",
                "-in",
                &format!("{d}/client.key.der"),
                "-out",
                &format!("{stem}.key"),
            ],
        );
    }
    der_to_pem(dir, "fleet/ca.der", "ca.pem");
    let curl = |stem: &str, args: &[&str]| {
        let url_base = format!("https://127.0.0.1:{port}");
        let mut cmd = Command::new("curl");
        cmd.current_dir(dir)
            .args([
                "-sS",
                "--fail",
                "--max-time",
                "20",
                "--tlsv1.2",
                "--cacert",
                "ca.pem",
            ])
            .args([
                "--cert",
                &format!("{stem}.pem"),
                "--key",
                &format!("{stem}.key"),
            ]);
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if let Some(last) = v.last_mut() {
            *last = format!("{url_base}{last}");
        }
        let out = cmd.args(&v).output().unwrap();
        assert!(out.status.success(), "curl {args:?}: {}", text(&out));
        out.stdout
    };
    let print_certs = |b64: &[u8], name: &str| {
        fs::write(dir.join(format!("{name}.b64")), b64).unwrap();
        openssl_ok(
            dir,
            &[
                "base64",
                "-d",
                "-in",
                &format!("{name}.b64"),
                "-out",
                &format!("{name}.p7"),
            ],
        );
        let out = openssl_ok(
            dir,
            &[
                "pkcs7",
                "-inform",
                "der",
                "-in",
                &format!("{name}.p7"),
                "-print_certs",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // cacerts: certs-only PKCS#7, base64.
    let ca_list = print_certs(&curl("c1", &[CACERTS]), "cacerts");
    assert!(
        ca_list.contains("subject=CN=Renewal test fleet")
            || ca_list.contains("subject=CN = Renewal test fleet"),
        "{ca_list}"
    );

    // serverkeygen without the devtls Accept: RFC 7030 multipart (PKCS#8 key + PKCS#7).
    let body = curl(
        "c1",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "",
            KEYGEN,
        ],
    );
    let text_body = String::from_utf8(body).unwrap();
    let parts: Vec<&str> = text_body.split("--devtls-est-7f3a9c").collect();
    let part = |ctype: &str| {
        let p = parts
            .iter()
            .find(|p| p.contains(&format!("Content-Type: {ctype}")))
            .unwrap_or_else(|| panic!("no {ctype} part in {text_body}"));
        p.split("\r\n\r\n").nth(1).unwrap().trim().to_string()
    };
    fs::write(dir.join("key.b64"), part("application/pkcs8")).unwrap();
    openssl_ok(dir, &["base64", "-d", "-in", "key.b64", "-out", "key.der"]);
    let key_pub = openssl_ok(
        dir,
        &["pkey", "-inform", "der", "-in", "key.der", "-pubout"],
    )
    .stdout;
    let certs = print_certs(part("application/pkcs7-mime").as_bytes(), "keygen");
    assert!(
        certs.contains("CN=cam-1") || certs.contains("CN = cam-1"),
        "{certs}"
    );
    fs::write(dir.join("keygen.pem"), &certs).unwrap();
    let cert_pub = openssl_ok(dir, &["x509", "-in", "keygen.pem", "-pubkey", "-noout"]).stdout;
    assert_eq!(key_pub, cert_pub, "the key sent belongs to the certificate");

    // simplereenroll with a CSR made by `openssl req`, base64 as EST sends it.
    openssl_csr(dir, "csr", &[]);
    openssl_ok(dir, &["base64", "-in", "csr.der", "-out", "csr.b64"]);
    let p7 = curl(
        "c2",
        &[
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "@csr.b64",
            REENROLL,
        ],
    );
    let certs = print_certs(&p7, "reenroll");
    assert!(
        certs.contains("CN=cam-2") || certs.contains("CN = cam-2"),
        "the device's name, not the CSR's: {certs}"
    );
    fs::write(dir.join("reenroll.pem"), &certs).unwrap();
    let cert_pub = openssl_ok(dir, &["x509", "-in", "reenroll.pem", "-pubkey", "-noout"]).stdout;
    let csr_pub = openssl_ok(
        dir,
        &[
            "req", "-inform", "der", "-in", "csr.der", "-pubkey", "-noout",
        ],
    )
    .stdout;
    assert_eq!(cert_pub, csr_pub, "the CSR's key was signed");
    // A CSR with an RSA 1024 key is refused with the reason (the device profile's rule).
    openssl_ok(
        dir,
        &[
            "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", "weak.key", "-subj",
            "/CN=x", "-outform", "der", "-out", "weak.der",
        ],
    );
    let out = Command::new("curl")
        .current_dir(dir)
        .args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            "ca.pem",
            "--cert",
            "c2.pem",
            "--key",
            "c2.key",
        ])
        .args([
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "@weak.der",
        ])
        .arg(format!("https://127.0.0.1:{port}{REENROLL}"))
        .args(["-w", "\n%{http_code}"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.ends_with("400") && said.contains("key"), "{said}");
}

/// The device's own TLS stack (the mbedTLS 3.6 device peer, built with the
/// device's configuration) handshakes with the service, presents its fleet
/// certificate and gets an answer: 200 with new credentials, or 403 once revoked.
#[test]
fn the_device_tls_stack_renews_through_the_service() {
    let _backend = support::postgres::backend();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fleet(dir, 2, 30);
    ok_in(dir, &["fleet", "revoke", "cam-2"]);
    let (_server, port) = serve(dir, &["--renew-after", "0"]);
    // EST's multipart answer: all text (the peer prints what it received as JSON).
    let ask = "POST /.well-known/est/serverkeygen HTTP/1.1\r\nHost: 127.0.0.1\r\n\
               Content-Length: 0\r\n\r\n";
    let device = |id: &str| {
        let d = format!("fleet/devices/{id}");
        let (cert, key) = (format!("{d}/client.der"), format!("{d}/client.key.der"));
        let args = [
            "--ca",
            "fleet/ca.der",
            "--hostname",
            "127.0.0.1",
            "--cert",
            &cert,
            "--key",
            &key,
            "--send",
            ask,
        ];
        support::device::client(dir, port, &args)
    };
    // The status line only (the rest holds the new key).
    let first_line = |run: &support::peers::PeerRun| {
        assert_eq!(
            run.conns.len(),
            1,
            "{}",
            run.transcript.lines().next().unwrap_or("")
        );
        let conn = run.single();
        assert!(conn.ok, "{:?}", conn.error);
        assert_eq!(conn.version.as_deref(), Some("TLSv1.2"));
        let received = conn.received.clone().unwrap_or_default();
        received.lines().next().unwrap_or("").trim_end().to_string()
    };
    assert_eq!(first_line(&device("cam-1")), "HTTP/1.1 200 OK");
    assert_eq!(statuses(dir).get("pending"), Some(&1));
    assert_eq!(first_line(&device("cam-2")), "HTTP/1.1 403 Forbidden");
}

/// The serials OpenSSL lists in `fleet/crl.der` (lower-case).
fn crl_listing(dir: &Path) -> String {
    ok_in(dir, &["fleet", "crl", "--dir", "fleet"]);
    let out = openssl_ok(
        dir,
        &[
            "crl",
            "-inform",
            "der",
            "-in",
            "fleet/crl.der",
            "-noout",
            "-text",
        ],
    );
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

/// Two `fleet serve` processes on one inventory (one PostgreSQL database,
/// or one SQLite file) and one fleet folder, 16 connections of one device
/// at once, spread over both: one pending renewal is recorded and every
/// connection gets it; then 16 connections with the new certificate at
/// once (two fresh services, so no renewal window is open): it is confirmed
/// once (one `renewed`), the old one superseded.
#[test]
fn two_services_on_one_inventory_record_one_renewal_and_confirm_it_once() {
    let _backend = support::postgres::backend();
    require("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = fleet(dir, 2, 30);
    let old = Creds::of(dir, "cam-1");
    let at_once = |ports: [u16; 2], creds: &Creds| {
        let asks: Vec<(String, Creds)> = (0..16)
            .map(|i| (ports[i % 2].to_string(), creds.clone()))
            .collect();
        let ca = ca.clone();
        all_at_once(asks, move |port, c| keygen(port.parse().unwrap(), &ca, c))
    };

    let (a, port_a) = serve(dir, &["--renew-after", "0"]);
    let (b, port_b) = serve(dir, &["--renew-after", "0"]);
    let answers = at_once([port_a, port_b], &old);
    let mut got = Vec::new();
    for (port, r) in answers {
        let a = r.unwrap_or_else(|e| panic!("service on {port}: {e}"));
        assert_eq!(a.status, 200, "service on {port}: {a:?}");
        got.push(a.devtls());
    }
    let (cert, key, _) = got[0].clone();
    for (i, g) in got.iter().enumerate() {
        assert_eq!((&g.0, &g.1), (&cert, &key), "answer {i} differs");
    }
    let device_rows = |dir: &Path| -> Vec<(String, String)> {
        export(dir, "fleet")
            .iter()
            .filter(|r| field(r, "device") == "cam-1")
            .map(|r| {
                (
                    field(r, "serial").to_string(),
                    field(r, "status").to_string(),
                )
            })
            .collect()
    };
    let new = Creds { cert, key };
    let mut rows = device_rows(dir);
    rows.sort();
    let mut want = vec![
        (old.serial(), "active".to_string()),
        (new.serial(), "pending".to_string()),
    ];
    want.sort();
    assert_eq!(rows, want, "one pending renewal, nothing else recorded");

    // The answers are counted before the services stop (within 2 s).
    status_counted(dir, &[("issued", 1), ("resent", 15)]);
    // The default window (two thirds of the lifetime): a connection with
    // the confirmed certificate is current, not renewed again.
    drop((a, b));
    let (_a, port_a) = serve(dir, &[]);
    let (_b, port_b) = serve(dir, &[]);
    for (port, r) in at_once([port_a, port_b], &new) {
        let a = r.unwrap_or_else(|e| panic!("service on {port}: {e}"));
        assert_eq!(
            (a.status, a.header("x-devtls-status")),
            (204, "current"),
            "service on {port}"
        );
    }
    let mut rows = device_rows(dir);
    rows.sort();
    let mut want = vec![
        (old.serial(), "superseded".to_string()),
        (new.serial(), "active".to_string()),
    ];
    want.sort();
    assert_eq!(rows, want);
    let want = [
        ("renewed", 1),
        ("issued", 1),
        ("resent", 15),
        ("current", 15),
    ];
    let status = status_counted(dir, &want);
    let outcomes = &status["renewal"]["outcomes"];
    assert_eq!(outcomes["renewed"], 1, "confirmed once: {status}");
    assert_eq!(outcomes["issued"], 1, "recorded once: {status}");
    assert_eq!(outcomes["resent"], 15, "{status}");
    assert_eq!(outcomes["current"], 15, "{status}");
    assert_eq!(status["renewal"]["pending"], 0, "{status}");
}

/// `fleet revoke DEVICE` while a renewal is pending revokes the pending
/// certificate too: both serials are in the next CRL, and the device is
/// refused with either certificate.
#[test]
fn revoking_a_device_revokes_its_pending_renewal_too() {
    let _backend = support::postgres::backend();
    let (tmp, ca, old, _server, port) = fleet_served(2, &["--renew-after", "0"]);
    let dir = tmp.path();
    let (cert, key, _) = keygen(port, &ca, &old).unwrap().devtls();
    let new = Creds { cert, key };
    assert_eq!(status_json(dir)["renewal"]["pending"], 1);

    let out = ok_in(
        dir,
        &["fleet", "revoke", "cam-1", "--reason", "keyCompromise"],
    );
    let said = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(said.contains(&new.serial()), "{}", text(&out));
    let rows = rows_by_serial(dir);
    for c in [&old, &new] {
        assert_eq!(field(&rows[&c.serial()], "status"), "revoked", "{rows:?}");
        assert_eq!(field(&rows[&c.serial()], "reason"), "keyCompromise");
    }
    let listing = crl_listing(dir);
    for c in [&old, &new] {
        assert!(
            listing.contains(&c.serial()),
            "{} not in:\n{listing}",
            c.serial()
        );
    }
    assert_eq!(status_json(dir)["renewal"]["pending"], 0);
    for c in [&old, &new] {
        let a = keygen(port, &ca, c).unwrap();
        assert_eq!((a.status, a.header("x-devtls-status")), (403, "revoked"));
    }
    // The other device is untouched.
    let other = Creds::of(dir, "cam-2");
    assert!(!listing.contains(&other.serial()));
}

/// A fleet served from SQLite with a renewal pending, moved with `fleet
/// migrate` to PostgreSQL (a server this test starts whatever the backend)
/// and served from there: the device asking again gets the same pending
/// credentials, confirms them, and the counters went along.
#[test]
fn a_pending_renewal_survives_fleet_migrate_on_postgres() {
    require("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = fleet(dir, 2, 30);
    let old = Creds::of(dir, "cam-1");
    let (server, port) = serve(dir, &["--renew-after", "0"]);
    let first = keygen(port, &ca, &old).unwrap().devtls();
    drop(server);

    let backend = support::postgres::postgres();
    let url = backend.url().unwrap();
    let out = support::devtls()
        .current_dir(dir)
        .env_remove("DEVTLS_FLEET_DB")
        .args(["fleet", "migrate", "--to", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pending renewals: 1 in both"),
        "{}",
        text(&out)
    );
    // From here on every devtls this test starts uses the database.
    fs::remove_file(dir.join("fleet/inventory.db")).unwrap();
    let (_server, port) = serve(dir, &["--renew-after", "0"]);
    let again = keygen(port, &ca, &old).unwrap().devtls();
    assert_eq!(again, first, "the same pending credentials");
    let new = Creds {
        cert: first.0,
        key: first.1,
    };
    let a = keygen(port, &ca, &new).unwrap();
    assert_eq!((a.status, a.header("x-devtls-status")), (204, "current"));
    let rows = rows_by_serial(dir);
    assert_eq!(field(&rows[&old.serial()], "status"), "superseded");
    assert_eq!(field(&rows[&new.serial()], "status"), "active");
    let status = status_counted(dir, &[("issued", 1), ("resent", 1), ("renewed", 1)]);
    let outcomes = &status["renewal"]["outcomes"];
    assert_eq!(outcomes["issued"], 1, "{status}");
    assert_eq!(outcomes["resent"], 1, "{status}");
    assert_eq!(outcomes["renewed"], 1, "{status}");
}

/// A PostgreSQL inventory made by the devtls before the renewal tables
/// (schema version 1: the same database with those tables dropped and the
/// version set back) is migrated when `fleet serve` connects, and renews.
#[test]
fn fleet_serve_migrates_a_version_1_inventory_on_postgres() {
    require("openssl");
    let backend = support::postgres::postgres();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = fleet(dir, 1, 30);
    backend.psql(
        "DROP TABLE renewals, renewal_counts; DELETE FROM schema_version; \
         INSERT INTO schema_version (version) VALUES (1)",
    );
    let tables = "SELECT COUNT(*) FROM information_schema.tables WHERE table_name LIKE 'renewal%'";
    assert_eq!(backend.psql(tables), "0");
    let (_server, port) = serve(dir, &["--renew-after", "0"]);
    assert_eq!(backend.psql("SELECT MAX(version) FROM schema_version"), "2");
    assert_eq!(backend.psql(tables), "2");
    let old = Creds::of(dir, "cam-1");
    let a = keygen(port, &ca, &old).unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(status_json(dir)["renewal"]["pending"], 1);
}

/// Two services on one PostgreSQL database with fleet folders of their own
/// (two machines): the pending key is in the first one's folder only, so the
/// device asking the second one again is refused 409 `pending` there (one
/// certificate per renewal: nothing new made, nothing revoked); it confirms
/// what the first one made at the second service (confirming needs no key).
#[test]
fn services_on_two_machines_share_renewals_on_postgres() {
    require("openssl");
    let _backend = support::postgres::postgres();
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    fs::create_dir_all(&one).unwrap();
    fs::create_dir_all(two.join("fleet")).unwrap();
    let ca = fleet(&one, 1, 30);
    for f in ["ca.der", "ca.crt", "ca.key"] {
        fs::copy(one.join("fleet").join(f), two.join("fleet").join(f)).unwrap();
    }
    let old = Creds::of(&one, "cam-1");
    let (_a, port_a) = serve(&one, &["--renew-after", "0"]);
    let (_b, port_b) = serve(&two, &["--renew-after", "0"]);
    let (cert, key, _) = keygen(port_a, &ca, &old).unwrap().devtls();
    let made = Creds { cert, key };
    let b = keygen(port_b, &ca, &old).unwrap();
    assert_eq!((b.status, b.header("x-devtls-status")), (409, "pending"));
    let rows = rows_by_serial(&two);
    assert_eq!(field(&rows[&made.serial()], "status"), "pending");
    assert_eq!(statuses(&two).get("revoked"), None, "nothing revoked");
    let b = keygen(port_b, &ca, &made).unwrap();
    assert_eq!((b.status, b.header("x-devtls-status")), (204, "current"));
    let rows = rows_by_serial(&one);
    assert_eq!(field(&rows[&old.serial()], "status"), "superseded");
    assert_eq!(field(&rows[&made.serial()], "status"), "active");
}

/// A device's connection whose handshake is done: the serial of the
/// certificate the service presented, and the open connection.
fn handshake(port: u16, ca: &[u8], creds: &Creds) -> (String, rustls::ClientConnection, TcpStream) {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(tls_config(ca, creds), name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    let presented = conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    (serial_of(&presented), conn, tcp)
}

/// The service's own certificate (issued by the fleet CA, kept in
/// fleet/service/) is issued again once two thirds of its lifetime have
/// passed; handshakes from then on present the new one, a connection opened
/// before still gets its answer, and a restart loads the renewed pair.
#[test]
fn the_service_renews_its_own_certificate_without_dropping_connections() {
    use devtls_pki::issue::{CertSpec, Role};
    use devtls_pki::keys::{KeyType, PrivateKey};
    require("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let ca = fleet(tmp.path(), 1, 30);
    let old = Creds::of(tmp.path(), "cam-1");
    // A service certificate of 15 seconds, 2 seconds old: due 8 seconds
    // from now. (Made here, as `fleet serve` would, by the fleet CA.)
    let service = tmp.path().join("fleet/service");
    let first = {
        let fleet = devtls_fleet::Fleet::open(&tmp.path().join("fleet")).unwrap();
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let mut spec = CertSpec::new("127.0.0.1", Role::Server, 1);
        spec.ips.push("127.0.0.1".parse().unwrap());
        spec.not_before = now - time::Duration::seconds(2);
        spec.not_after = now + time::Duration::seconds(13);
        let cert = fleet.authority().unwrap().sign(&spec, &key).unwrap();
        fs::create_dir_all(&service).unwrap();
        fs::write(service.join("server.der"), &cert.der).unwrap();
        devtls_pki::files::write_atomic(
            &service.join("server.key.der"),
            &key.pkcs8_der(),
            devtls_pki::files::Secrecy::Secret,
        )
        .unwrap();
        serial_of(&cert.der)
    };
    let (server, port) = serve(tmp.path(), &[]);
    let (presented, mut open_conn, mut open_tcp) = handshake(port, &ca, &old);
    assert_eq!(
        presented, first,
        "the service started after its certificate was due; nothing to watch"
    );
    // New handshakes, until one presents another certificate (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let (serial, _, _) = handshake(port, &ca, &old);
        if serial != first {
            break serial;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service still presents its first certificate after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The connection opened before the swap is answered.
    let mut tls = rustls::Stream::new(&mut open_conn, &mut open_tcp);
    tls.write_all(
        format!("GET {CACERTS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/pkix-cert\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("the connection opened before the renewal failed: {e}"),
    }
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(raw.ends_with(&ca), "the answer is ca.der");
    // On disk: the new certificate, for the same name, valid about 397 days.
    assert_eq!(
        serial_of(&fs::read(service.join("server.der")).unwrap()),
        renewed
    );
    let out = openssl_ok(
        &service,
        &[
            "x509",
            "-inform",
            "der",
            "-in",
            "server.der",
            "-noout",
            "-ext",
            "subjectAltName",
            "-checkend",
            &(390 * 86400).to_string(),
        ],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("IP Address:127.0.0.1") && shown.contains("will not expire"),
        "{shown}"
    );
    assert!(
        !service.join("server.der.new").exists() && !service.join("server.key.der.new").exists()
    );
    // Devices verify the new certificate with ca.der and are answered
    // (current: not in their renewal window).
    assert_eq!(keygen(port, &ca, &old).unwrap().status, 204);
    let log = text(&server.finish(Duration::from_millis(100)));
    assert!(
        log.contains(&format!(
            "renewed the service's certificate (service/server.der): serial {renewed}"
        )),
        "{log}"
    );
    // A restart presents the renewed pair (not a new one).
    let (again, port) = serve(tmp.path(), &[]);
    assert_eq!(handshake(port, &ca, &old).0, renewed);
    drop(again);
}

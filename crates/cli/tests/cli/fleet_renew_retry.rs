//! `renew.py` on real MicroPython (the unix port: its `ssl` is the device's
//! mbedTLS 3.6 module) against a service that is busy or unreachable: it
//! tries again after the service's `Retry-After`, or after a growing wait,
//! and then renews through the real `devtls fleet serve`.
//!
//! Between the device and the service sits a stand-in on 127.0.0.1: its
//! first connections get what the test scripts (the connection dropped, or
//! TLS with the service's own certificate and a 503 answer), later ones are
//! passed through to `devtls fleet serve` untouched.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::support::{self, micropython, ok_in, text, Peer};

/// What the stand-in does with one connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scripted {
    /// Closes it before any byte (the service unreachable mid-handshake).
    Drop,
    /// Completes TLS and answers 503, with this `Retry-After` if any.
    Busy(Option<u32>),
    /// Passes it through to the service.
    Pass,
}

/// The stand-in: connections in order, each with when it arrived.
struct StandIn {
    seen: Arc<Mutex<Vec<(Instant, Scripted)>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn tls_server(dir: &Path) -> Arc<rustls::ServerConfig> {
    let service = dir.join("fleet/service");
    let cert = std::fs::read(service.join("server.der")).unwrap();
    let key = std::fs::read(service.join("server.key.der")).unwrap();
    let profile = devtls_pki::profile::by_name("openmv").unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(devtls_net::restrict::provider(profile))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .unwrap();
    Arc::new(config)
}

fn busy(tcp: TcpStream, config: Arc<rustls::ServerConfig>, retry_after: Option<u32>) {
    let mut tcp = tcp;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match tls.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let header = retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\n{header}Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
    );
    let _ = tls.write_all(answer.as_bytes());
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
}

fn pass(device: TcpStream, upstream: u16) {
    let Ok(service) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    pipe(device.try_clone().unwrap(), service.try_clone().unwrap());
    pipe(service, device);
}

/// Starts the stand-in on `listener`: connection i gets `script[i]`, every
/// later one [`Scripted::Pass`] to `upstream` (or the last scripted
/// answer when there is no upstream).
fn stand_in(
    listener: TcpListener,
    script: Vec<Scripted>,
    upstream: Option<u16>,
    config: Arc<rustls::ServerConfig>,
) -> StandIn {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    listener.set_nonblocking(true).unwrap();
    let (seen2, stop2) = (seen.clone(), stop.clone());
    std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let tcp = match listener.accept() {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            tcp.set_nonblocking(false).unwrap();
            let n = seen2.lock().unwrap().len();
            let what = match (script.get(n), upstream) {
                (Some(s), _) => *s,
                (None, Some(_)) => Scripted::Pass,
                (None, None) => *script.last().unwrap(),
            };
            seen2.lock().unwrap().push((Instant::now(), what));
            let config = config.clone();
            std::thread::spawn(move || match what {
                Scripted::Drop => drop(tcp),
                Scripted::Busy(after) => busy(tcp, config, after),
                Scripted::Pass => pass(tcp, upstream.unwrap()),
            });
        }
    });
    StandIn { seen, stop }
}

/// A fleet of one device (`cam-1`) renewing at the stand-in's address, the
/// stand-in's listener, and `devtls fleet serve` (renewing at once) with
/// its port.
fn fleet_behind_stand_in(dir: &Path) -> (TcpListener, Peer, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    ok_in(dir, &["fleet", "init"]);
    ok_in(
        dir,
        &[
            "fleet",
            "issue",
            "cam-1",
            "--days",
            "30",
            "--renew-url",
            &url,
        ],
    );
    let (server, port) = crate::fleet_serve::serve(dir, &["--renew-after", "0"]);
    (listener, server, port)
}

/// Runs `renew.run()` on MicroPython in a copy of cam-1's folder; returns
/// what it printed and the folder.
fn device_run(dir: &Path) -> (String, tempfile::TempDir) {
    let device = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.join("fleet/devices/cam-1")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), device.path().join(entry.file_name())).unwrap();
    }
    let script = micropython::with_prelude("import renew\nprint('result', renew.run())\n");
    let out = micropython::run_ok(device.path(), "main.py", &script, Duration::from_secs(120));
    (text(&out), device)
}

#[test]
fn renew_py_tries_again_after_a_drop_and_a_503_then_renews() {
    support::require("micropython");
    let tmp = tempfile::tempdir().unwrap();
    let (listener, server, port) = fleet_behind_stand_in(tmp.path());
    let script = vec![Scripted::Drop, Scripted::Busy(Some(1))];
    let stand_in = stand_in(listener, script, Some(port), tls_server(tmp.path()));
    let first = std::fs::read(tmp.path().join("fleet/devices/cam-1/client.der")).unwrap();
    let (printed, device) = device_run(tmp.path());
    assert!(
        printed.contains("renew: new certificate installed"),
        "{printed}"
    );
    assert!(printed.contains("result 204"), "confirmed: {printed}");
    let renewed = std::fs::read(device.path().join("client.der")).unwrap();
    assert_ne!(renewed, first);
    let seen = stand_in.seen.lock().unwrap().clone();
    let kinds: Vec<Scripted> = seen.iter().map(|s| s.1).collect();
    assert_eq!(
        kinds,
        [
            Scripted::Drop,
            Scripted::Busy(Some(1)),
            Scripted::Pass,
            Scripted::Pass
        ],
        "{printed}"
    );
    // After the drop it waited at least 2 s (its first backoff), after the
    // 503 at least the 1 s the service asked for.
    assert!(seen[1].0 - seen[0].0 >= Duration::from_secs(2), "{seen:?}");
    assert!(seen[2].0 - seen[1].0 >= Duration::from_secs(1), "{seen:?}");
    // The service recorded the renewal and its confirmation.
    let log = text(&server.finish(Duration::from_millis(100)));
    assert!(
        log.contains(" issued 200") && log.contains(" renewed 204"),
        "{log}"
    );
}

#[test]
fn renew_py_gives_up_at_once_on_a_long_retry_after_and_keeps_its_pair() {
    support::require("micropython");
    let tmp = tempfile::tempdir().unwrap();
    let (listener, _server, _port) = fleet_behind_stand_in(tmp.path());
    let stand_in = stand_in(
        listener,
        vec![Scripted::Busy(Some(3600))],
        None,
        tls_server(tmp.path()),
    );
    let first = std::fs::read(tmp.path().join("fleet/devices/cam-1/client.der")).unwrap();
    let (printed, device) = device_run(tmp.path());
    assert!(
        printed.contains("renew: kept the current certificate"),
        "{printed}"
    );
    assert!(printed.contains("result -1"), "{printed}");
    assert_eq!(
        std::fs::read(device.path().join("client.der")).unwrap(),
        first
    );
    assert_eq!(stand_in.seen.lock().unwrap().len(), 1, "{printed}");
}

//! Slow peers (issue 11 item 5): `--timeout` bounds the whole operation of
//! connect, anchor and doctor, TLS and DTLS. A loopback server that answers
//! one byte per second (TCP), or a trickle of one-byte datagrams (UDP), never
//! completes a handshake; each command must end on its own within
//! `--timeout` + 1 s (the kill bound below) and say that nothing answered.

use crate::support;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{devtls, Peer};

const TIMEOUT: u64 = 3;

/// A server on 127.0.0.1 that trickles one byte per second to every client,
/// stopped when dropped.
struct Trickle {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// The start of a plausible TLS record, then padding: never a whole message.
const BYTES: &[u8] = &[0x16, 0x03, 0x03, 0x40, 0x00, 0x02, 0x00, 0x3F, 0xFF];

fn tcp_trickle() -> Trickle {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let _ = conn.set_nonblocking(true);
                        let mut sink = [0u8; 4096];
                        for i in 0.. {
                            if flag.load(Ordering::SeqCst) {
                                break;
                            }
                            let _ = conn.read(&mut sink);
                            let byte = BYTES.get(i).copied().unwrap_or(0);
                            if conn.write_all(&[byte]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Trickle { port, stop }
}

fn udp_trickle() -> Trickle {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut peer = None;
        let mut i = 0;
        let mut last = std::time::Instant::now();
        while !flag.load(Ordering::SeqCst) {
            if let Ok((_, from)) = sock.recv_from(&mut buf) {
                peer = Some(from);
            }
            if let Some(p) = peer {
                if last.elapsed() >= Duration::from_secs(1) {
                    let _ = sock.send_to(&[BYTES[i % BYTES.len()]], p);
                    i += 1;
                    last = std::time::Instant::now();
                }
            }
        }
    });
    Trickle { port, stop }
}

fn anchor_file(dir: &Path) {
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-keyout", "a.key", "-outform", "DER", "-out", "a.der"])
        .current_dir(dir)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(out.status.success(), "openssl req failed");
}

// Runs devtls with `args`; it must exit by itself within TIMEOUT + 1 s.
fn bounded(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = devtls();
    cmd.args(args).current_dir(dir);
    let peer = Peer::spawn("devtls", &mut cmd);
    let out = peer.finish(Duration::from_secs(TIMEOUT + 1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.code().is_some(),
        "devtls {args:?} did not end within --timeout {TIMEOUT} + 1 s (killed):\n{all}"
    );
    (out.status.code(), all)
}

fn expect_no_answer(args: &[&str], port: u16) {
    let dir = tempfile::tempdir().unwrap();
    anchor_file(dir.path());
    let (code, all) = bounded(dir.path(), args);
    assert_eq!(code, Some(2), "devtls {args:?}:\n{all}");
    let want = format!("no answer from 127.0.0.1:{port} within {TIMEOUT} s");
    assert!(
        all.contains(&want),
        "devtls {args:?} should say '{want}':\n{all}"
    );
}

#[test]
fn doctor_tls_ends_within_its_timeout_against_a_one_byte_per_second_server() {
    let server = tcp_trickle();
    let target = format!("127.0.0.1:{}", server.port);
    let t = TIMEOUT.to_string();
    expect_no_answer(
        &["doctor", &target, "--ca", "a.der", "--timeout", &t],
        server.port,
    );
}

#[test]
fn doctor_dtls_ends_within_its_timeout_against_a_trickling_server() {
    let server = udp_trickle();
    let target = format!("127.0.0.1:{}", server.port);
    let t = TIMEOUT.to_string();
    expect_no_answer(
        &[
            "doctor",
            &target,
            "--ca",
            "a.der",
            "--dtls",
            "--timeout",
            &t,
        ],
        server.port,
    );
}

#[test]
fn anchor_tls_ends_within_its_timeout_against_a_one_byte_per_second_server() {
    let server = tcp_trickle();
    let target = format!("127.0.0.1:{}", server.port);
    let t = TIMEOUT.to_string();
    expect_no_answer(&["anchor", &target, "--timeout", &t], server.port);
}

#[test]
fn anchor_dtls_ends_within_its_timeout_against_a_trickling_server() {
    let server = udp_trickle();
    let target = format!("127.0.0.1:{}", server.port);
    let t = TIMEOUT.to_string();
    expect_no_answer(&["anchor", &target, "--dtls", "--timeout", &t], server.port);
}

#[test]
fn connect_tls_and_dtls_end_within_their_timeout_against_slow_servers() {
    let dir = tempfile::tempdir().unwrap();
    anchor_file(dir.path());
    let t = TIMEOUT.to_string();
    let tcp = tcp_trickle();
    let target = format!("127.0.0.1:{}", tcp.port);
    let (code, all) = bounded(
        dir.path(),
        &[
            "connect",
            &target,
            "--ca",
            "a.der",
            "--hostname",
            "localhost",
            "--timeout",
            &t,
        ],
    );
    assert_ne!(code, Some(0), "{all}");
    assert!(
        all.contains("no answer") || all.contains("in time"),
        "{all}"
    );
    let udp = udp_trickle();
    let target = format!("127.0.0.1:{}", udp.port);
    let (code, all) = bounded(
        dir.path(),
        &[
            "connect",
            &target,
            "--ca",
            "a.der",
            "--hostname",
            "localhost",
            "--dtls",
            "--timeout",
            &t,
        ],
    );
    assert_ne!(code, Some(0), "{all}");
}

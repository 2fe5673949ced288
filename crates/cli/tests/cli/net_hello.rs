//! The ClientHello `devtls doctor` sends is the device's: recorded on a raw
//! loopback socket from doctor and from the device's own stack (mbedTLS
//! 3.6.5 with the device's configuration, `support::device`), TLS and DTLS,
//! and compared field by field (everything but the random bytes). Over DTLS
//! doctor also answers a HelloVerifyRequest as the device does: the same
//! hello again, carrying the cookie.

use crate::support;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::device::{parse_client_hello, record_client_hello, ClientHello};
use support::{devtls, Peer};

const HOST: &str = "device.example";

fn anchor(dir: &Path) -> String {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=device.example"])
        .args(["-keyout", "a.key", "-outform", "DER", "-out", "a.der"])
        .current_dir(dir)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(out.status.success(), "openssl req failed");
    "a.der".into()
}

fn doctor(dir: &Path, port: u16, dtls: bool) -> Peer {
    let target = format!("127.0.0.1:{port}");
    let mut cmd = devtls();
    cmd.args(["doctor", &target, "--ca", "a.der", "--hostname", HOST])
        .args(["--timeout", "5"])
        .current_dir(dir);
    if dtls {
        cmd.arg("--dtls");
    }
    Peer::spawn("devtls doctor", &mut cmd)
}

// doctor's first handshake record(s) over TCP.
fn doctor_hello_tls(dir: &Path) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _doctor = doctor(dir, port, false);
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("doctor did not connect within 20 s: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut header = [0u8; 5];
    conn.read_exact(&mut header).expect("a TLS record header");
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("a TLS record body");
    [header.to_vec(), body].concat()
}

// The hello's bytes with the 32 random bytes blanked: everything else must
// be byte for byte the device's.
fn without_random(bytes: &[u8], dtls: bool) -> Vec<u8> {
    let at = if dtls { 13 + 12 + 2 } else { 5 + 4 + 2 };
    let mut b = bytes.to_vec();
    b[at..at + 32].fill(0);
    b
}

fn show(label: &str, h: &ClientHello) {
    println!("{label}: {h:x?}");
}

#[test]
fn doctors_tls_hello_is_the_devices_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    anchor(dir.path());
    let device_bytes = record_client_hello(false, HOST);
    let our_bytes = doctor_hello_tls(dir.path());
    let device = parse_client_hello(&device_bytes, false);
    let ours = parse_client_hello(&our_bytes, false);
    show("device (mbedTLS 3.6)", &device);
    show("devtls doctor       ", &ours);
    assert_eq!(ours.record_version, device.record_version, "record version");
    assert_eq!(ours.version, device.version, "client_version");
    assert_eq!(ours.session_id_len, device.session_id_len, "session id");
    assert_eq!(ours.suites, device.suites, "cipher suites in order");
    assert_eq!(ours.compression, device.compression, "compression");
    assert_eq!(ours.extensions, device.extensions, "extensions in order");
    assert_eq!(ours.groups, device.groups, "supported_groups");
    assert_eq!(ours.sig_algs, device.sig_algs, "signature_algorithms");
    assert_eq!(ours.point_formats, device.point_formats, "ec_point_formats");
    assert_eq!(ours.server_name, device.server_name, "server_name");
    assert_eq!(ours, device, "every field");
    assert_eq!(
        without_random(&our_bytes, false),
        without_random(&device_bytes, false),
        "byte for byte apart from the random"
    );
}

#[test]
fn doctors_dtls_hello_is_the_devices_and_it_answers_a_cookie_with_it() {
    let dir = tempfile::tempdir().unwrap();
    anchor(dir.path());
    let device_bytes = record_client_hello(true, HOST);
    let device = parse_client_hello(&device_bytes, true);

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let _doctor = doctor(dir.path(), port, true);
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).expect("doctor sends a DTLS hello");
    let first = buf[..n].to_vec();
    let ours = parse_client_hello(&first, true);
    show("device (mbedTLS 3.6)", &device);
    show("devtls doctor       ", &ours);
    assert_eq!(ours, device, "every field of the first DTLS hello");
    assert_eq!(
        without_random(&first, true),
        without_random(&device_bytes, true),
        "byte for byte apart from the random"
    );

    // HelloVerifyRequest with a cookie: record seq = the hello's, message_seq 0.
    let cookie = [0xC0u8, 0x0C, 0x1E, 0x05, 0x42];
    let mut hvr_body = vec![0xFE, 0xFF, cookie.len() as u8];
    hvr_body.extend_from_slice(&cookie);
    let mut msg = vec![
        3,
        0,
        0,
        hvr_body.len() as u8,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        hvr_body.len() as u8,
    ];
    msg.extend_from_slice(&hvr_body);
    let mut record = vec![22, 0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0];
    record.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    record.extend_from_slice(&msg);
    sock.send_to(&record, from).unwrap();
    let second = loop {
        let (n, _) = sock.recv_from(&mut buf).expect("doctor answers the cookie");
        if buf[..n] != first[..] {
            break buf[..n].to_vec();
        }
    };
    let again = parse_client_hello(&second, true);
    assert_eq!(again.cookie, cookie, "the second hello carries the cookie");
    assert_eq!(
        ClientHello {
            cookie: Vec::new(),
            ..again
        },
        ours,
        "otherwise the same hello"
    );
    // message_seq 1 and record sequence 1, as RFC 6347 and mbedTLS have it.
    assert_eq!(
        u16::from_be_bytes([second[17], second[18]]),
        1,
        "message_seq"
    );
    assert_eq!(second[10], 1, "record sequence number");
    let _ = std::io::stdout().flush();
}

//! `devtls serve` under load: 200 concurrent verified clients all get their
//! `hello` while 50 others stall mid-handshake, send garbage or vanish, and
//! the server still serves afterwards.

use crate::support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::net::Serve;
use support::{ok_in, words};

const GOOD: usize = 200;
const STALLED: usize = 20;
const GARBAGE: usize = 20;
const VANISHED: usize = 10;
/// Bound on the whole burst of good clients (generous for 2 shared cores).
const BURST_DEADLINE: Duration = Duration::from_secs(40);
/// The server's handshake timeout (`serve --timeout`), short so the test is.
const HANDSHAKE_TIMEOUT_S: u64 = 5;
/// Bound on the server dropping a client that never finishes its handshake.
const STALL_DEADLINE: Duration = Duration::from_secs(HANDSHAKE_TIMEOUT_S + 15);

fn client_config(anchor: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(anchor.to_vec())).unwrap();
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One verified client: handshake, send `text`, read the reply to EOF or `\n`.
fn good_client(port: u16, config: Arc<ClientConfig>, text: &str) -> Result<String, String> {
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(BURST_DEADLINE)).unwrap();
    sock.set_write_timeout(Some(BURST_DEADLINE)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(text.as_bytes())
        .map_err(|e| format!("handshake/write: {e}"))?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with(b"\n") {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if reply.is_empty() => return Err(format!("read: {e}")),
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// The first half of a real ClientHello record: the server has to wait for the rest.
fn half_client_hello(config: Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello.truncate(hello.len() / 2);
    hello
}

/// Waits (bounded by the socket's read timeout) until the server closes the
/// connection; an alert or an error on the way counts as closing.
fn closed_by_server(mut sock: TcpStream) -> Result<(), String> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return Ok(()),
            // A TLS alert record before the close is fine; keep reading.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open after {:?}", start.elapsed()))
            }
            Err(_) => return Ok(()), // reset by the server
        }
    }
}

/// Reads the server's lines until `n` of them contain `needle`, within `timeout`.
fn wait_lines(server: &Serve, needle: &str, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {seen} of {n} lines with {needle:?} in {timeout:?}"
        );
        seen += usize::from(server.line(left).contains(needle));
    }
}

#[test]
fn serves_200_concurrent_clients_while_others_stall_or_send_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    let anchor = std::fs::read(d.join("server.der")).unwrap();
    let config = client_config(&anchor);
    let timeout = HANDSHAKE_TIMEOUT_S.to_string();
    let server = Serve::start(
        d,
        &[
            "--cert",
            "server.der",
            "--key",
            "server.key.der",
            "--timeout",
            &timeout,
        ],
    );
    let port = server.port;

    // Bad clients first, so they are all in progress while the good ones come.
    let stalled_at = Instant::now();
    let hello_half = half_client_hello(config.clone());
    let stalled: Vec<TcpStream> = (0..STALLED)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&hello_half).unwrap();
            s.set_read_timeout(Some(STALL_DEADLINE)).unwrap();
            s
        })
        .collect();
    let garbage: Vec<TcpStream> = (0..GARBAGE)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let junk: Vec<u8> = if i % 2 == 0 {
                b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()
            } else {
                (0..1000u32).map(|b| (b * 7919 % 251) as u8).collect()
            };
            s.write_all(&junk).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    for _ in 0..VANISHED {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.shutdown(Shutdown::Both);
    }

    // The good clients, released together.
    let start = Instant::now();
    let barrier = Arc::new(Barrier::new(GOOD));
    let (tx, rx) = mpsc::channel();
    for i in 0..GOOD {
        let (barrier, config, tx) = (barrier.clone(), config.clone(), tx.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let _ = tx.send((i, good_client(port, config, &format!("client {i}\n"))));
        });
    }
    drop(tx);
    let mut failures = Vec::new();
    let mut done = 0;
    while done < GOOD {
        let left = BURST_DEADLINE.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok((_, Ok(reply))) if reply == "hello\n" => done += 1,
            Ok((i, other)) => {
                done += 1;
                failures.push(format!("client {i}: {other:?}"));
            }
            Err(_) => {
                panic!("only {done} of {GOOD} good clients finished within {BURST_DEADLINE:?}")
            }
        }
    }
    let burst = start.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {GOOD} good clients failed:\n{}",
        failures.len(),
        failures.join("\n"),
    );
    // The server reports each good client and what it sent.
    wait_lines(&server, "received \"client ", GOOD, Duration::from_secs(10));

    // Garbage is dropped promptly; stalled handshakes are dropped by the
    // server's handshake timeout, not held forever.
    for s in garbage {
        closed_by_server(s).expect("a client sending garbage was not dropped");
    }
    let stall_results: Vec<_> = stalled
        .into_iter()
        .map(|s| closed_by_server(s).map(|_| stalled_at.elapsed()))
        .collect();
    for r in &stall_results {
        let held = r
            .as_ref()
            .unwrap_or_else(|e| panic!("a stalled handshake was never dropped: {e}"));
        // Dropped by the handshake timeout, not at once for being incomplete.
        assert!(
            *held >= Duration::from_secs(HANDSHAKE_TIMEOUT_S) - Duration::from_millis(500),
            "a stalled handshake was dropped after {held:?}, before the {HANDSHAKE_TIMEOUT_S} s timeout"
        );
    }

    // And it is still serving.
    let after = good_client(port, config, "after\n").expect("the server stopped serving");
    assert_eq!(after, "hello\n");
    wait_lines(&server, "received \"after", 1, Duration::from_secs(5));
    eprintln!(
        "{GOOD} clients in {burst:?}; stalled handshakes dropped after at most {:?}",
        stall_results.iter().flatten().max()
    );
}

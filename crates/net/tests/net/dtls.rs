//! DTLS 1.2 end to end on loopback: devtls against itself, against OpenSSL
//! both ways, mTLS, failures diagnosed, and a lossy relay the exchange must
//! survive. Every wait is bounded.

use crate::require;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use devtls_net::config::{self, Anchors, ClientSettings, Identity, ServerSettings};
use devtls_net::diagnose::Reason;
use devtls_net::dtls::{self, ClientOptions};
use devtls_net::report::{ClientReport, ConnectError, Outcome};
use devtls_pki::issue::{self, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::profile;

struct Made {
    cert: Vec<u8>,
    pem: String,
    key: PrivateKey,
}

fn self_signed(cn: &str, role: Role, key_type: KeyType) -> Made {
    let key = PrivateKey::generate(key_type).unwrap();
    let mut spec = CertSpec::new(cn, role, 30);
    spec.dns = vec!["localhost".into()];
    spec.ips = vec!["127.0.0.1".parse().unwrap()];
    let cert = issue::self_signed(&spec, &key).unwrap();
    Made {
        pem: cert.pem(),
        cert: cert.der,
        key,
    }
}

fn identity(made: &Made) -> Identity {
    Identity::from_bytes(&made.cert, &made.key.pkcs8_der(), &profile::OPENMV).unwrap()
}

fn client_settings(anchor: &Made) -> ClientSettings {
    let mut s = ClientSettings::new(
        "localhost",
        Anchors::Given(config::certificates(&anchor.cert).unwrap()),
    );
    s.timeout = Duration::from_secs(10);
    s
}

/// Endpoint options for a client that trusts `anchor` and checks `localhost`.
fn client_options(anchor: &Made) -> ClientOptions {
    let settings = client_settings(anchor);
    ClientOptions {
        server_name: "localhost".into(),
        verifier: Some(devtls_net::tls::client::client_config(&settings).unwrap().1),
        identity: None,
        profile: &profile::OPENMV,
        timeout: Duration::from_secs(10),
    }
}

/// Starts a devtls DTLS server for `count` clients on a thread; reports come
/// on the channel. The server gives up after 60 s whatever happens.
fn start(settings: ServerSettings, count: usize) -> (SocketAddr, mpsc::Receiver<ClientReport>) {
    let mut server = dtls::Server::bind("127.0.0.1:0".parse().unwrap(), settings).unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = server.serve(Some(count), Some(Duration::from_secs(60)), |r| {
            let _ = tx.send(r.clone());
        });
    });
    (addr, rx)
}

fn report(rx: &mpsc::Receiver<ClientReport>) -> ClientReport {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the server reported the client")
}

#[test]
fn devtls_client_and_server_exchange_hello_with_each_key_type() {
    for (key_type, suite_part) in [
        (KeyType::P256, "ECDHE_ECDSA"),
        (KeyType::P384, "ECDHE_ECDSA"),
        (KeyType::Rsa2048, "ECDHE_RSA"),
    ] {
        let server = self_signed("localhost", Role::Server, key_type);
        let (addr, reports) = start(ServerSettings::new(identity(&server)), 1);
        let (info, reply) =
            dtls::exchange(&addr.to_string(), &client_settings(&server), b"hi\n").unwrap();
        assert_eq!(reply, b"hello\n", "{key_type:?}");
        assert_eq!(info.version, "DTLSv1.2");
        assert!(
            info.cipher_suite.contains(suite_part),
            "{key_type:?}: {}",
            info.cipher_suite
        );
        assert_eq!(info.chain[0].common_name(), "localhost");
        match report(&reports).outcome {
            Outcome::Served(s) => {
                assert_eq!(s.received, "hi\n");
                assert_eq!(s.version, "DTLSv1.2");
                assert!(s.client_chain.is_empty());
            }
            Outcome::Failed(d) => panic!("{key_type:?}: server failed: {}", d.diagnosis.what),
        }
    }
}

/// A child process killed when dropped, with its stdout lines on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the peer program starts");
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Proc { child, lines }
    }

    fn write(&mut self, text: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        let _ = stdin.write_all(text.as_bytes());
        let _ = stdin.flush();
    }

    /// Waits up to `limit` for a line containing `needle`; returns everything seen.
    fn wait_for(&self, needle: &str, limit: Duration) -> (bool, String) {
        let end = Instant::now() + limit;
        let mut seen = String::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(needle) {
                        return (true, seen);
                    }
                }
                Err(_) => break,
            }
        }
        (false, seen)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    crate::ports::port()
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// `openssl s_server -dtls1_2 -listen` (which insists on a cookie exchange)
/// answering `hello`; with `client_ca` it demands a client certificate.
fn openssl_server(dir: &tempfile::TempDir, server: &Made, client_ca: Option<&Made>) -> (Proc, u16) {
    let port = free_udp_port();
    let cert = write_temp(dir, "s.crt", server.pem.as_bytes());
    let key = write_temp(dir, "s.key", server.key.pkcs8_pem().as_bytes());
    let mut cmd = require::tool("openssl");
    cmd.args(["s_server", "-dtls1_2", "-listen", "-naccept", "1"])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", &cert, "-key", &key]);
    if let Some(ca) = client_ca {
        let ca = write_temp(dir, "ca.crt", ca.pem.as_bytes());
        cmd.args(["-Verify", "1", "-CAfile", &ca, "-verify_return_error"]);
    }
    let mut proc = Proc::spawn(&mut cmd);
    // s_server sends what it reads on stdin once a client is connected.
    proc.write("hello\n");
    // It prints ACCEPT once its socket is bound (a fixed 300 ms was too
    // short on a loaded machine: "nothing is listening").
    let (up, seen) = proc.wait_for("ACCEPT", Duration::from_secs(30));
    assert!(up, "openssl s_server did not start listening:\n{seen}");
    (proc, port)
}

#[test]
fn devtls_client_against_openssl_s_server_with_cookies_and_each_key_type() {
    for key_type in [KeyType::P256, KeyType::P384, KeyType::Rsa2048] {
        let dir = tempfile::tempdir().unwrap();
        let server = self_signed("localhost", Role::Server, key_type);
        let (_proc, port) = openssl_server(&dir, &server, None);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let done = dtls::connect(addr, &client_options(&server), b"hi\n")
            .unwrap_or_else(|e| panic!("{key_type:?}: {e}"));
        assert!(
            done.cookie_exchange,
            "s_server -listen sends a HelloVerifyRequest"
        );
        assert!(String::from_utf8_lossy(&done.reply).contains("hello"));
        assert_eq!(done.presented.len(), 1);
    }
}

#[test]
fn openssl_s_client_against_devtls_server_with_each_key_type() {
    for key_type in [KeyType::P256, KeyType::P384, KeyType::Rsa2048] {
        let dir = tempfile::tempdir().unwrap();
        let server = self_signed("localhost", Role::Server, key_type);
        let (addr, reports) = start(ServerSettings::new(identity(&server)), 1);
        let ca = write_temp(&dir, "s.crt", server.pem.as_bytes());
        let mut client = Proc::spawn(
            require::tool("openssl")
                .args(["s_client", "-dtls1_2", "-connect", &addr.to_string()])
                .args([
                    "-CAfile",
                    &ca,
                    "-verify_return_error",
                    "-verify_hostname",
                    "localhost",
                ])
                .args(["-servername", "localhost", "-ign_eof"]),
        );
        client.write("hi\n");
        let (ok, seen) = client.wait_for("hello", Duration::from_secs(15));
        assert!(ok, "{key_type:?}: s_client never got hello:\n{seen}");
        match report(&reports).outcome {
            Outcome::Served(s) => assert_eq!(s.received, "hi\n"),
            Outcome::Failed(d) => panic!("{key_type:?}: {}", d.diagnosis.what),
        }
    }
}

fn mtls_server_settings(server: &Made, client: &Made) -> ServerSettings {
    let mut s = ServerSettings::new(identity(server));
    s.client_ca = Some(config::certificates(&client.cert).unwrap());
    s
}

fn failure(err: ConnectError) -> devtls_net::report::HandshakeFailure {
    match err {
        ConnectError::Handshake(f) => *f,
        other => panic!("expected a handshake failure, got {other}"),
    }
}

#[test]
fn mtls_between_devtls_client_and_server_and_missing_certificate_is_diagnosed() {
    for key_type in [KeyType::P256, KeyType::P384, KeyType::Rsa2048] {
        let server = self_signed("localhost", Role::Server, KeyType::P256);
        let client = self_signed("device-1", Role::Client, key_type);
        let (addr, reports) = start(mtls_server_settings(&server, &client), 2);

        let mut with_cert = client_settings(&server);
        with_cert.identity = Some(identity(&client));
        let (info, reply) = dtls::exchange(&addr.to_string(), &with_cert, b"hi\n").unwrap();
        assert_eq!(reply, b"hello\n");
        assert!(info.client_cert_requested);
        match report(&reports).outcome {
            Outcome::Served(s) => assert_eq!(s.client_chain[0].common_name(), "device-1"),
            Outcome::Failed(d) => panic!("{key_type:?}: {}", d.diagnosis.what),
        }

        let without = client_settings(&server);
        let f = failure(dtls::exchange(&addr.to_string(), &without, b"hi\n").unwrap_err());
        assert_eq!(
            f.diagnosis.reason,
            Reason::ClientCertMissing,
            "{:?}",
            f.diagnosis
        );
        assert!(matches!(report(&reports).outcome, Outcome::Failed(_)));
    }
}

#[test]
fn unknown_client_certificate_is_refused_by_the_devtls_server() {
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let trusted = self_signed("device-1", Role::Client, KeyType::P256);
    let stranger = self_signed("device-2", Role::Client, KeyType::P256);
    let (addr, reports) = start(mtls_server_settings(&server, &trusted), 1);
    let mut settings = client_settings(&server);
    settings.identity = Some(identity(&stranger));
    let f = failure(dtls::exchange(&addr.to_string(), &settings, b"hi\n").unwrap_err());
    assert_eq!(
        f.diagnosis.reason,
        Reason::ClientCertRejected,
        "{:?}",
        f.diagnosis
    );
    match report(&reports).outcome {
        Outcome::Failed(d) => {
            assert_eq!(d.diagnosis.reason, Reason::ClientCertRejected, "{d:?}");
            assert_eq!(d.client_chain[0].common_name(), "device-2");
        }
        Outcome::Served(_) => panic!("an unknown client certificate was served"),
    }
}

#[test]
fn wrong_host_name_is_diagnosed_and_the_chain_kept() {
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let (addr, _reports) = start(ServerSettings::new(identity(&server)), 1);
    let mut settings = client_settings(&server);
    settings.server_name = "camera.example".into();
    let f = failure(dtls::exchange(&addr.to_string(), &settings, b"hi\n").unwrap_err());
    assert_eq!(
        f.diagnosis.reason,
        Reason::WrongHostName,
        "{:?}",
        f.diagnosis
    );
    assert_eq!(f.chain[0].common_name(), "localhost");
    assert!(f.diagnosis.device.is_some());
}

#[test]
fn mtls_with_openssl_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let client = self_signed("device-1", Role::Client, KeyType::P384);

    // devtls client with a certificate -> s_server -Verify.
    let (_proc, port) = openssl_server(&dir, &server, Some(&client));
    let mut settings = client_settings(&server);
    settings.identity = Some(identity(&client));
    let (info, reply) = dtls::exchange(&format!("127.0.0.1:{port}"), &settings, b"hi\n").unwrap();
    assert!(info.client_cert_requested);
    assert!(String::from_utf8_lossy(&reply).contains("hello"));

    // s_client with a certificate -> devtls serve with a client CA.
    let (addr, reports) = start(mtls_server_settings(&server, &client), 1);
    let ca = write_temp(&dir, "server.crt", server.pem.as_bytes());
    let cert = write_temp(&dir, "client.crt", client.pem.as_bytes());
    let key = write_temp(&dir, "client.key", client.key.pkcs8_pem().as_bytes());
    let mut proc = Proc::spawn(
        require::tool("openssl")
            .args(["s_client", "-dtls1_2", "-connect", &addr.to_string()])
            .args(["-CAfile", &ca, "-verify_return_error", "-ign_eof"])
            .args(["-cert", &cert, "-key", &key]),
    );
    proc.write("hi\n");
    let (ok, seen) = proc.wait_for("hello", Duration::from_secs(15));
    assert!(ok, "{seen}");
    match report(&reports).outcome {
        Outcome::Served(s) => assert_eq!(s.client_chain[0].common_name(), "device-1"),
        Outcome::Failed(d) => panic!("{}", d.diagnosis.what),
    }
}

/// A UDP relay for one client on loopback that drops every `drop_every`th
/// datagram (both directions counted together) and holds back every 5th to
/// send it after the next one (reordering). Runs until `limit` passes.
fn lossy_relay(
    server: SocketAddr,
    drop_every: usize,
    limit: Duration,
) -> (SocketAddr, thread::JoinHandle<usize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let handle = thread::spawn(move || {
        let end = Instant::now() + limit;
        let mut client: Option<SocketAddr> = None;
        let mut buf = [0u8; 65_535];
        let mut n = 0usize;
        let mut dropped = 0usize;
        let mut held: Option<(Vec<u8>, SocketAddr)> = None;
        while Instant::now() < end {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let to = if from == server {
                match client {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                client = Some(from);
                server
            };
            n += 1;
            if n.is_multiple_of(drop_every) {
                dropped += 1;
                continue;
            }
            if n.is_multiple_of(5) && held.is_none() {
                held = Some((buf[..len].to_vec(), to));
                continue;
            }
            let _ = sock.send_to(&buf[..len], to);
            if let Some((data, dest)) = held.take() {
                let _ = sock.send_to(&data, dest);
            }
        }
        dropped
    });
    (addr, handle)
}

#[test]
fn exchange_completes_through_a_lossy_reordering_relay() {
    // devtls client -> relay -> devtls server.
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let (addr, reports) = start(ServerSettings::new(identity(&server)), 1);
    let (relay, dropped) = lossy_relay(addr, 3, Duration::from_secs(25));
    let mut settings = client_settings(&server);
    settings.timeout = Duration::from_secs(20);
    let (_, reply) = dtls::exchange(&relay.to_string(), &settings, b"hi\n").unwrap();
    assert_eq!(reply, b"hello\n");
    assert!(matches!(report(&reports).outcome, Outcome::Served(_)));
    assert!(dropped.join().unwrap() >= 2, "the relay dropped datagrams");

    // devtls client -> relay -> openssl s_server (a peer that is not us).
    // s_server sends a line per line on its stdin and never repeats it, so the
    // test keeps feeding it lines: a dropped answer is followed by another.
    // s_server shrinks its fragments after a timeout, so fragments of one
    // message from two transmissions overlap: devtls reassembles by byte range.
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, port) = openssl_server(&dir, &server, None);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (relay, dropped) = lossy_relay(target, 3, Duration::from_secs(25));
    let client = thread::spawn(move || dtls::exchange(&relay.to_string(), &settings, b"hi\n"));
    let end = Instant::now() + Duration::from_secs(25);
    while !client.is_finished() && Instant::now() < end {
        proc.write("hello\n");
        thread::sleep(Duration::from_millis(300));
    }
    let (_, reply) = client.join().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("hello"));
    assert!(dropped.join().unwrap() >= 2);
}

/// A first ClientHello as a minimal client would send it.
fn raw_client_hello(record_seq: u8, message_seq: u8, cookie: &[u8]) -> Vec<u8> {
    let mut hello = vec![0xfe, 0xfd];
    hello.extend_from_slice(&[7u8; 32]);
    hello.push(0);
    hello.push(cookie.len() as u8);
    hello.extend_from_slice(cookie);
    hello.extend_from_slice(&[0, 2, 0xc0, 0x2b, 1, 0]);
    // Extensions: supported_groups P-256, ec_point_formats, signature_algorithms ECDSA-SHA256.
    hello.extend_from_slice(&[0, 22, 0, 0x0a, 0, 4, 0, 2, 0, 0x17, 0, 0x0b, 0, 2, 1, 0]);
    hello.extend_from_slice(&[0, 0x0d, 0, 4, 0, 2, 4, 3]);
    let len = hello.len() as u8;
    let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, record_seq, 0, len + 12];
    rec.extend_from_slice(&[1, 0, 0, len, 0, message_seq, 0, 0, 0, 0, 0, len]);
    rec.extend_from_slice(&hello);
    rec
}

#[test]
fn server_keeps_no_state_for_cookieless_hellos_survives_garbage_and_drops_stalled_clients() {
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let mut settings = ServerSettings::new(identity(&server));
    settings.handshake_timeout = Duration::from_secs(2);
    let mut srv = dtls::Server::bind("127.0.0.1:0".parse().unwrap(), settings).unwrap();
    let addr = srv.local_addr().unwrap();

    let client = thread::spawn(move || {
        // Garbage and cookieless hellos from 20 addresses each.
        for i in 0..20u8 {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(&[i; 40], addr).unwrap();
            s.send_to(b"hello\n", addr).unwrap();
            s.send_to(&raw_client_hello(0, 0, &[]), addr).unwrap();
        }
        // A client that answers the cookie, then vanishes mid-handshake.
        let stall = UdpSocket::bind("127.0.0.1:0").unwrap();
        stall
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stall.send_to(&raw_client_hello(0, 0, &[]), addr).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = stall.recv_from(&mut buf).unwrap();
        assert_eq!(buf[13], 3, "a HelloVerifyRequest");
        let cookie = buf[n - 20..n].to_vec();
        // The cookie is bound to the address: from another port it is refused.
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        other
            .send_to(&raw_client_hello(1, 1, &cookie), addr)
            .unwrap();
        let (_, _) = other.recv_from(&mut buf).unwrap();
        assert_eq!(
            buf[13], 3,
            "another address gets a fresh HelloVerifyRequest"
        );
        stall
            .send_to(&raw_client_hello(1, 1, &cookie), addr)
            .unwrap();
        let (_, _) = stall.recv_from(&mut buf).unwrap();
        assert_eq!(buf[13], 2, "the right address gets a ServerHello");
        // Then a good client is still served.
        dtls::exchange(&addr.to_string(), &client_settings(&server), b"hi\n").unwrap()
    });

    let mut outcomes = Vec::new();
    srv.serve(Some(2), Some(Duration::from_secs(30)), |r| {
        outcomes.push(r.clone())
    })
    .unwrap();
    let (_, reply) = client.join().unwrap();
    assert_eq!(reply, b"hello\n");
    let stats = srv.stats();
    assert!(stats.hello_verify_requests >= 22, "{stats:?}");
    assert!(stats.garbage >= 40, "{stats:?}");
    assert_eq!(
        stats.handshakes, 2,
        "only cookie-proven clients got state: {stats:?}"
    );
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes
        .iter()
        .any(|r| matches!(&r.outcome, Outcome::Served(_))));
    assert!(
        outcomes.iter().any(
            |r| matches!(&r.outcome, Outcome::Failed(d) if d.diagnosis.reason == Reason::Timeout)
        ),
        "{outcomes:?}"
    );
}

#[test]
fn many_clients_at_once_are_all_served() {
    const CLIENTS: usize = 24;
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let (addr, reports) = start(ServerSettings::new(identity(&server)), CLIENTS);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let settings = client_settings(&server);
            thread::spawn(move || {
                let text = format!("client {i}\n");
                dtls::exchange(&addr.to_string(), &settings, text.as_bytes())
            })
        })
        .collect();
    for c in clients {
        let (_, reply) = c.join().unwrap().unwrap();
        assert_eq!(reply, b"hello\n");
    }
    let mut received: Vec<String> = (0..CLIENTS)
        .map(|_| match report(&reports).outcome {
            Outcome::Served(s) => s.received,
            Outcome::Failed(d) => panic!("{}", d.diagnosis.what),
        })
        .collect();
    received.sort();
    received.dedup();
    assert_eq!(received.len(), CLIENTS, "every client was served once");
}

/// A tokio runtime for the async endpoints' tests.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts the async DTLS server for `count` clients as a task; the task
/// returns the reports and the server's counters. It gives up after 60 s.
async fn start_async(
    settings: ServerSettings,
    count: usize,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<(Vec<ClientReport>, dtls::server::Stats)>,
) {
    let mut srv = dtls::AsyncServer::bind("127.0.0.1:0".parse().unwrap(), settings)
        .await
        .unwrap();
    let addr = srv.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        let mut reports = Vec::new();
        srv.serve(Some(count), Some(Duration::from_secs(60)), |r| {
            reports.push(r.clone())
        })
        .await
        .unwrap();
        (reports, srv.stats())
    });
    (addr, serving)
}

/// What each served client sent, sorted; panics on a failed client.
fn received_sorted(reports: &[ClientReport]) -> Vec<String> {
    let mut received: Vec<String> = reports
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Served(s) => s.received.clone(),
            Outcome::Failed(d) => panic!("{}", d.diagnosis.what),
        })
        .collect();
    received.sort();
    received
}

/// The async endpoints on tokio: the async server answers the async client
/// and `openssl s_client`, and the async client completes an exchange with
/// `openssl s_server`, cookies included.
#[test]
fn async_client_and_server_interoperate_with_each_other_and_openssl() {
    let runtime = runtime();
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let dir = tempfile::tempdir().unwrap();
    let ca = write_temp(&dir, "s.crt", server.pem.as_bytes());

    let reports = runtime.block_on(async {
        let (addr, serving) = start_async(ServerSettings::new(identity(&server)), 2).await;
        let settings = client_settings(&server);
        let (info, reply) = dtls::exchange_async(&addr.to_string(), &settings, b"async\n")
            .await
            .unwrap();
        assert_eq!(reply, b"hello\n");
        assert_eq!(info.version, "DTLSv1.2");
        let s_client = tokio::task::spawn_blocking(move || {
            let mut client = Proc::spawn(
                require::tool("openssl")
                    .args(["s_client", "-dtls1_2", "-connect", &addr.to_string()])
                    .args(["-CAfile", &ca, "-verify_return_error"])
                    .args(["-verify_hostname", "localhost", "-ign_eof"]),
            );
            client.write("openssl\n");
            client.wait_for("hello", Duration::from_secs(15))
        });
        let (ok, seen) = s_client.await.unwrap();
        assert!(
            ok,
            "s_client never got hello from the async server:\n{seen}"
        );
        let (reports, stats) = serving.await.unwrap();
        assert!(stats.hello_verify_requests >= 2, "{stats:?}");
        reports
    });
    assert_eq!(received_sorted(&reports), ["async\n", "openssl\n"]);

    // The async client against openssl s_server -listen (which demands a cookie).
    let (_proc, port) = openssl_server(&dir, &server, None);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let done = runtime
        .block_on(dtls::connect_async(addr, &client_options(&server), b"hi\n"))
        .unwrap();
    assert!(
        done.cookie_exchange,
        "s_server -listen sends a HelloVerifyRequest"
    );
    assert!(String::from_utf8_lossy(&done.reply).contains("hello"));
}

/// Many async clients on one tokio runtime against the async server: the
/// server's single task serves them all, each once.
#[test]
fn async_server_serves_many_async_clients_at_once() {
    const CLIENTS: usize = 64;
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let (reports, _) = runtime().block_on(async {
        let (addr, serving) = start_async(ServerSettings::new(identity(&server)), CLIENTS).await;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let settings = client_settings(&server);
                tokio::spawn(async move {
                    let text = format!("client {i}\n");
                    dtls::exchange_async(&addr.to_string(), &settings, text.as_bytes()).await
                })
            })
            .collect();
        for c in clients {
            let (_, reply) = c.await.unwrap().unwrap();
            assert_eq!(reply, b"hello\n");
        }
        serving.await.unwrap()
    });
    let mut received = received_sorted(&reports);
    received.dedup();
    assert_eq!(received.len(), CLIENTS, "every client was served once");
}

//! Hostile clients against `devtls fleet serve` on loopback (issue 27):
//! idle connections, failing handshakes, a device asking again and again,
//! malformed HTTP and CSRs, text that would forge a log line. Every count
//! and wait is bounded; docs/hardening.md ("fleet serve") points here.

use super::*;

use std::net::{IpAddr, SocketAddr};

/// A serverkeygen request in the devtls format, as renew.py sends it.
const KEYGEN_REQUEST: &[u8] = b"POST /.well-known/est/serverkeygen HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/x-devtls-renew\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Opens `n` TCP connections to `port` from the loopback address `from`
/// that send nothing; they stay open as long as the runtime and the
/// returned streams live.
fn hold_idle(
    port: u16,
    from: [u8; 4],
    n: usize,
) -> (tokio::runtime::Runtime, Vec<tokio::net::TcpStream>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let streams = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..n {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
            let connect = tokio::time::timeout(Duration::from_secs(2), socket.connect(to));
            if let Ok(Ok(s)) = connect.await {
                held.push(s);
            }
        }
        held
    });
    (rt, streams)
}

/// A TLS handshake without a client certificate: the service refuses it.
fn refused_handshake(port: u16, ca: &[u8]) {
    let config = device_builder(ca).with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let _ = tls.write_all(KEYGEN_REQUEST);
    let _ = tls.read_to_end(&mut Vec::new());
}

fn reenroll(port: u16, ca: &[u8], creds: &Creds, csr: &[u8]) -> Answer {
    let ask = Ask {
        method: "POST",
        path: REENROLL,
        accept: Some(DEVTLS),
        body: csr,
        stop_after: None,
    };
    request_partial(port, ca, creds, ask).unwrap()
}

/// Idle connections that never send a byte, from another address, held
/// while devices renew. Before the fix each took one of the service's
/// connection slots for its 10 s handshake limit and devices waited in the
/// accept queue behind them; a device here waits 8 s for each read (less
/// than that limit): it must be served in between, not after the holders
/// time out. Then the service still works for everyone.
#[test]
fn idle_connections_do_not_keep_devices_out() {
    let (tmp, ca, _old, _server, port) =
        fleet_served(4, &["--renew-after", "0", "--max-connections", "32"]);
    let (_rt, idle) = hold_idle(port, [127, 0, 0, 2], 200);
    assert!(idle.len() >= 100, "only {} idle connections", idle.len());
    for (id, creds) in devices(tmp.path(), 4) {
        let a = exchange(
            port,
            &ca,
            &creds,
            KEYGEN_REQUEST,
            Duration::from_secs(8),
            None,
        )
        .unwrap_or_else(|e| panic!("{id} was kept out: {e}"));
        assert_eq!(a.status, 200, "{id}: {a:?}");
        a.devtls();
    }
}

/// How many bytes the inventory's write-ahead log grew by while `f` ran.
/// A SQLite transaction appends at least one 4 KiB page frame.
fn wal_growth(dir: &Path, f: impl FnOnce()) -> u64 {
    let wal = dir.join("fleet/inventory.db-wal");
    let size = || fs::metadata(&wal).map_or(0, |m| m.len());
    let before = size();
    f();
    size().saturating_sub(before)
}

/// TLS handshakes the service refuses (no client certificate) are counted
/// in memory and written in one batch: the inventory's write-ahead log
/// grows by a few pages, not one transaction per refused client.
#[test]
fn refused_handshakes_cost_no_inventory_write_each() {
    let (tmp, ca, _old, _server, port) = fleet_served(1, &[]);
    let dir = tmp.path();
    let grown = wal_growth(dir, || {
        for _ in 0..60 {
            refused_handshake(port, &ca);
        }
    });
    assert!(
        grown < 10 * 4096,
        "{grown} bytes of WAL for 60 refused handshakes"
    );
    // They are still counted (within the flush interval): refused by the
    // TLS layer, then, past the address's failure budget (50), at accept.
    let mut counted = (0, 0);
    for _ in 0..100 {
        let outcomes = &status_json(dir)["renewal"]["outcomes"];
        let n = |o: &str| outcomes[o].as_u64().unwrap_or(0);
        counted = (n("refused-tls"), n("refused-failing"));
        if counted.0 + counted.1 == 60 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(counted.0 + counted.1, 60, "{counted:?}");
}

/// Answered requests are counted in memory and written every 2 s, like
/// refused handshakes: before, each request wrote its counter in a write
/// transaction of its own (two per renewal, under the inventory lock).
#[test]
fn answered_requests_cost_no_counter_write_each() {
    let (tmp, ca, old, _server, port) = fleet_served(1, &[]);
    let dir = tmp.path();
    let grown = wal_growth(dir, || {
        for _ in 0..60 {
            let a = keygen(port, &ca, &old).unwrap();
            assert_eq!((a.status, a.header("x-devtls-status")), (204, "current"));
        }
    });
    assert!(
        grown < 10 * 4096,
        "{grown} bytes of WAL for 60 answered requests"
    );
    let status = status_counted(dir, &[("current", 60)]);
    assert_eq!(status["renewal"]["outcomes"]["current"], 60, "{status}");
}

/// One device in its window asking again and again, switching between
/// serverkeygen and CSRs with new keys: before the fix every switch made a
/// new certificate and revoked the last (300 certificates, a CRL 30 times
/// larger). Now one certificate is made; the same request gets it again,
/// another is refused 409 `pending` with the reason; nothing is revoked.
#[test]
fn a_device_gets_one_certificate_per_renewal() {
    let (tmp, ca, old, _server, port) = fleet_served(1, &["--renew-after", "0"]);
    let dir = tmp.path();
    let first = keygen(port, &ca, &old).unwrap().devtls();
    for i in 0..6 {
        let csr = openssl_csr(dir, &format!("csr{i}"), &[]);
        let a = reenroll(port, &ca, &old, &csr);
        assert_eq!(
            (a.status, a.header("x-devtls-status")),
            (409, "pending"),
            "{a:?}"
        );
        assert!(String::from_utf8_lossy(&a.body).contains("send the same request again"));
        let again = keygen(port, &ca, &old).unwrap().devtls();
        assert_eq!(
            (&again.0, &again.1),
            (&first.0, &first.1),
            "the same credentials"
        );
    }
    let counts = statuses(dir);
    assert_eq!(counts.get("pending"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("revoked"), None, "nothing revoked: {counts:?}");
    assert!(
        !crl_listing(dir).contains("serial number"),
        "the CRL is empty"
    );
}

/// A CSR renewal request of the device `n` (of 3) with `request` as it
/// is, at a fresh service; nothing may be issued. The answer.
fn refused_request(n: usize, request: impl Fn(&Path, &[u8]) -> Vec<u8>) -> Answer {
    let (tmp, ca, _old, _server, port) = fleet_served(3, &["--renew-after", "0"]);
    let dir = tmp.path();
    let csr = openssl_csr(dir, "good", &[]);
    let devs = devices(dir, 3);
    let raw = request(dir, &csr);
    let a = exchange(port, &ca, &devs[n].1, &raw, Duration::from_secs(30), None).unwrap();
    assert_eq!(statuses(dir).get("pending"), None, "nothing issued: {a:?}");
    a
}

fn reenroll_request(body: &[u8], extra_header: &str) -> Vec<u8> {
    let mut raw = format!(
        "POST {REENROLL} HTTP/1.1\r\nHost: x\r\nAccept: {DEVTLS}\r\nContent-Length: {}\r\n{extra_header}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Two Content-Lengths that disagree: before, the first won (and the CSR
/// was signed); hyper refuses the request.
#[test]
fn conflicting_content_lengths_are_refused() {
    let a = refused_request(0, |_, csr| reenroll_request(csr, "Content-Length: 7\r\n"));
    assert_eq!(a.status, 400, "{a:?}");
}

/// A CSR followed by more bytes: before, signed as if they were not there.
#[test]
fn a_csr_with_bytes_after_it_is_refused() {
    let a = refused_request(1, |_, csr| {
        let mut body = csr.to_vec();
        body.extend_from_slice(b"\x00\x00junk");
        reenroll_request(&body, "")
    });
    assert_eq!(
        (a.status, a.header("x-devtls-status")),
        (400, "bad-request"),
        "{a:?}"
    );
    assert!(
        String::from_utf8_lossy(&a.body).contains("after the request"),
        "{a:?}"
    );
}

/// A CSR with an extension the signer (rcgen) cannot copy: before, 500.
#[test]
fn a_csr_the_signer_cannot_read_is_a_bad_request() {
    let a = refused_request(2, |dir, _| {
        let csr = openssl_csr(dir, "policy", &["-addext", "certificatePolicies=1.2.3.4"]);
        reenroll_request(&csr, "")
    });
    assert_eq!(
        (a.status, a.header("x-devtls-status")),
        (400, "bad-request"),
        "{a:?}"
    );
    assert!(
        String::from_utf8_lossy(&a.body).contains("refused: bad-request: "),
        "{a:?}"
    );
}

/// The log of a service after `ask` sent it hostile text.
fn log_after(ask: impl Fn(u16, &[u8], &Creds)) -> String {
    let (_tmp, ca, old, server, port) = fleet_served(1, &["--renew-after", "0"]);
    ask(port, &ca, &old);
    String::from_utf8_lossy(&server.finish(Duration::from_secs(1)).stdout).into_owned()
}

/// A CSR asking for a DNS name with a line break that would forge a log
/// line: before, logged as it was. Every logged field is escaped now.
#[test]
fn a_csr_name_cannot_forge_a_log_line() {
    let log = log_after(|port, ca, old| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let forged = "x.example\n203.0.113.9:1 cam-1 01 serverkeygen issued 200";
        params.subject_alt_names = vec![rcgen::SanType::DnsName(forged.try_into().unwrap())];
        let csr = params.serialize_request(&key).unwrap();
        let a = reenroll(port, ca, old, csr.der());
        assert_eq!(a.status, 400, "{a:?}");
    });
    assert!(!log.lines().any(|l| l.starts_with("203.0.113.9")), "{log}");
    assert!(
        log.contains("x.example\\x0a203.0.113.9"),
        "escaped, not lost: {log}"
    );
}

/// A header value with a terminal escape: before, copied into the error
/// that was logged (the operator's screen cleared). hyper refuses it and
/// nothing of it is logged.
#[test]
fn a_header_cannot_put_a_terminal_escape_in_the_log() {
    let log = log_after(|port, ca, old| {
        let escape = b"POST /.well-known/est/simplereenroll HTTP/1.1\r\nHost: x\r\nContent-Length: 1\x1b[2J\r\n\r\nx";
        let a = exchange(port, ca, old, escape, Duration::from_secs(30), None).unwrap();
        assert_eq!(a.status, 400, "{a:?}");
    });
    assert!(!log.contains('\x1b'), "{log:?}");
}

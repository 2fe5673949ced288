//! `devtls fleet serve` while something else holds the device (a `fleet
//! rotate` in progress, an issuer killed mid-way, its own connections, a
//! deleted pending key) and while an address fails TLS handshakes in a loop
//! (issue 27). docs/hardening.md ("fleet serve") points here.

use super::*;

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use devtls_fleet::store::{NewCert, Reserved};
use devtls_fleet::{renewal, Fleet};

/// 503 `busy` with `Retry-After: 5`.
fn assert_busy(a: &Answer) {
    let got = (
        a.status,
        a.header("x-devtls-status"),
        a.header("retry-after"),
    );
    assert_eq!(got, (503, "busy", "5"), "{a:?}");
}

/// The inventory holds the device's active certificate and one pending
/// row, nothing else: nothing more was issued.
fn assert_one_active_one_pending(dir: &Path) {
    let counts = statuses(dir);
    let got = (counts.get("active"), counts.get("pending"), counts.len());
    assert_eq!(got, (Some(&1), Some(&1), 2), "{counts:?}");
}

/// A `fleet rotate` of `device` in progress, taken the way the issuer
/// takes it (crates/fleet/src/issue.rs, `Session::start` and step 2): the
/// owner token marked alive, its lock file `.work/TOKEN.lock` locked, and
/// a `pending` row owned by the token that replaces the device's active
/// certificate. The issuer lives as long as the returned lock is held.
fn rotation_in_progress(fleet_dir: &Path, device: &str, active_serial: &str) -> (String, File) {
    let fleet = Fleet::open(fleet_dir).unwrap();
    let token = format!("{:016x}{:08x}", 0x7e57_0000_u64, std::process::id());
    fleet.db().hold_owner(&token).unwrap();
    let work = fleet_dir.join(".work");
    fs::create_dir_all(&work).unwrap();
    let lock = File::create(work.join(format!("{token}.lock"))).unwrap();
    lock.try_lock().unwrap();
    let old = renewal::find(&fleet, active_serial).unwrap().unwrap();
    let serial = "7e57c0de".to_string();
    let cert = NewCert {
        device: device.into(),
        serial: serial.clone(),
        sha256: String::new(),
        key_type: old.key_type.clone(),
        role: old.role.clone(),
        dns: old.dns.clone(),
        ips: old.ips.clone(),
        not_before: old.not_before,
        not_after: old.not_after + 86_400,
        replaces: Some(old.id),
        old_status: Some("superseded"),
        reissue: false,
        from_csr: false,
    };
    assert_eq!(
        fleet.db().reserve(&token, &[cert]).unwrap(),
        [Reserved::Owned]
    );
    (serial, lock)
}

/// A device renewing while a `fleet rotate` of it is in progress: the
/// service's record finds the issuer's pending row twice ("raced twice").
/// Before, a 500. Now 503 `busy` with `Retry-After` and nothing issued;
/// and once the issuer is dead (its lock released, as a SIGKILL leaves
/// it) the device's next renewal settles the dead issuer's row and is
/// answered. Before that fix, the service (which opened the fleet, and so
/// ran recovery, only at start) answered 503 to that device until some
/// other fleet command happened to open the fleet.
#[test]
fn a_renewal_during_a_rotation_is_told_busy_and_a_dead_issuer_does_not_keep_it_busy() {
    let (tmp, ca, old, _server, port) = fleet_served(1, &["--renew-after", "0"]);
    let dir = tmp.path();
    let (issuer_serial, issuer) = rotation_in_progress(&dir.join("fleet"), "cam-1", &old.serial());

    for _ in 0..2 {
        let a = keygen(port, &ca, &old).unwrap();
        assert_busy(&a);
    }
    // `fleet export` opens the fleet (and runs recovery): the live issuer's
    // row stays, and the service issued nothing.
    assert_one_active_one_pending(dir);
    assert!(rows_by_serial(dir).contains_key(&issuer_serial));

    // The issuer dies (its certificate never reached devices/cam-1). No
    // fleet command runs: the device's next request is the first to look.
    drop(issuer);
    let (cert, key, _) = keygen(port, &ca, &old).unwrap().devtls();
    let new = Creds { cert, key };
    let a = keygen(port, &ca, &new).unwrap();
    assert_eq!(
        (a.status, a.header("x-devtls-status")),
        (204, "current"),
        "confirmed: {a:?}"
    );
    let rows = rows_by_serial(dir);
    assert!(!rows.contains_key(&issuer_serial), "rolled back: {rows:?}");
    assert_eq!(field(&rows[&old.serial()], "status"), "superseded");
    assert_eq!(field(&rows[&new.serial()], "status"), "active");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let work = fs::read_dir(dir.join("fleet/.work"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("7e57"))
        .collect::<Vec<_>>();
    assert!(
        work.is_empty(),
        "the dead issuer's lock is removed: {work:?}"
    );
}

/// A TCP connection to the service from the loopback address `from`.
fn connect_from(rt: &tokio::runtime::Runtime, from: [u8; 4], port: u16) -> TcpStream {
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
        let connected = tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await;
        connected
            .expect("connected within 5 s")
            .unwrap()
            .into_std()
            .unwrap()
    });
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp
}

/// A TLS ClientHello without a client certificate from `from`, dropped
/// once the service answers (after its key exchange and signature: the
/// costly failure). `true` when the service closed the connection without
/// sending a byte: closed at accept, before any TLS work.
fn closed_at_accept(rt: &tokio::runtime::Runtime, from: [u8; 4], port: u16, ca: &[u8]) -> bool {
    let config = Arc::new(device_builder(ca).with_no_client_auth());
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tcp = connect_from(rt, from, port);
    // A write may already find the connection reset.
    let _ = conn.write_tls(&mut tcp);
    let mut byte = [0u8; 1];
    match tcp.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(e) => panic!("neither an answer nor a close within 10 s: {e}"),
    }
}

/// One address fails TLS handshakes in a loop (each one after the
/// service's full first flight) while a device renews from another. Past
/// the address's failure budget (the gateway's, devtls_net::failures) its
/// connections are closed at accept, before a byte of TLS; the device
/// keeps renewing. Before, every one of those handshakes was answered.
#[test]
fn an_address_failing_handshakes_in_a_loop_is_closed_at_accept_and_devices_keep_renewing() {
    require("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = fleet(dir, 1, 30);
    let old = Creds::of(dir, "cam-1");
    // Its log (a line per connection) is read as it comes: a pipe left full
    // would stop the service, attack or not.
    let port = free_tcp_port();
    let mut cmd = support::devtls();
    let port_s = port.to_string();
    cmd.args(["fleet", "serve", "--bind", "127.0.0.1", "--port", &port_s])
        .args(["--renew-after", "0"])
        .current_dir(dir);
    let _server = support::peers::LineServer::spawn("devtls fleet serve", &mut cmd, port);
    wait_for_tcp(port, Duration::from_secs(20));
    // Four connections at a time from 127.0.0.3, so the address fails
    // faster than its budget refills even on a loaded machine.
    let tries = Arc::new(AtomicU32::new(0));
    let (answered, closed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let (ca, tries) = (ca.clone(), tries.clone());
            let (answered, closed) = (answered.clone(), closed.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                // Bounded: without a budget all 1,000 are answered.
                while closed.load(Relaxed) < 20 && tries.fetch_add(1, Relaxed) < 1000 {
                    match closed_at_accept(&rt, [127, 0, 0, 3], port, &ca) {
                        true => closed.fetch_add(1, Relaxed),
                        false => answered.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    // The device renews and confirms, again and again, from 127.0.0.1.
    let mut creds = old;
    let mut renewals = 0;
    while attackers.iter().any(|a| !a.is_finished()) || renewals < 3 {
        let (cert, key, _) = keygen(port, &ca, &creds).unwrap().devtls();
        let next = Creds { cert, key };
        let a = keygen(port, &ca, &next).unwrap();
        assert_eq!(a.status, 204, "confirmed: {a:?}");
        creds = next;
        renewals += 1;
    }
    for a in attackers {
        a.join().unwrap();
    }
    let (answered, closed) = (answered.load(Relaxed), closed.load(Relaxed));
    assert!(
        closed >= 20,
        "the failing address was closed at accept {closed} times in 1,000 tries \
         ({answered} handshakes answered)"
    );
    assert!(
        answered >= devtls_net::failures::FAILURE_BURST as u32,
        "the budget's burst is answered first: {answered}"
    );
    // The service counted them (written within its 2 s flush interval).
    let mut counted = Value::Null;
    for _ in 0..100 {
        counted = status_json(dir)["renewal"]["outcomes"]["refused-failing"].clone();
        if counted.as_u64().is_some_and(|n| n >= 20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(counted.as_u64().is_some_and(|n| n >= 20), "{counted}");
}

/// One device certificate holding `--max-per-address` connections (its
/// handshakes done, no request sent) gets 503 `busy` with `Retry-After`
/// on one more; once it lets one go, it is answered again.
#[test]
fn one_certificate_holds_at_most_its_connections_then_503() {
    let (_tmp, ca, old, _server, port) = fleet_served(1, &["--max-per-address", "2"]);
    let held: Vec<_> = (0..2).map(|_| handshake(port, &ca, &old)).collect();
    let a = keygen(port, &ca, &old).unwrap();
    assert_busy(&a);
    drop(held);
    // The service sees the held connections close (bounded: 50 tries).
    let mut a = keygen(port, &ca, &old).unwrap();
    for _ in 0..50 {
        if a.status != 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        a = keygen(port, &ca, &old).unwrap();
    }
    assert_eq!(
        (a.status, a.header("x-devtls-status")),
        (204, "current"),
        "{a:?}"
    );
}

/// A local user who deletes a pending renewal's key file (the fleet folder
/// is theirs): the device asking again cannot be sent that key, nor be
/// given a second certificate: 409 `pending`; nothing else is issued.
#[test]
fn a_deleted_pending_key_leaves_the_device_refused_pending() {
    let (tmp, ca, old, _server, port) = fleet_served(1, &["--renew-after", "0"]);
    let dir = tmp.path();
    keygen(port, &ca, &old).unwrap().devtls();
    let keys: Vec<_> = fs::read_dir(dir.join("fleet/renewal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    fs::remove_file(&keys[0]).unwrap();
    let a = keygen(port, &ca, &old).unwrap();
    assert_eq!(
        (a.status, a.header("x-devtls-status")),
        (409, "pending"),
        "{a:?}"
    );
    assert_one_active_one_pending(dir);
}

/// A log reader that stops reading (a paused pager, a stalled log shipper,
/// or an attacker making log lines faster than they are read) does not
/// stop the service: its standard output is a pipe nobody reads, and a
/// thousand requests (each a `--json` log line, four times what the pipe
/// holds) are all answered; once the log is read again every line is
/// there (the queue held them; past its bound lines are dropped and said:
/// `devtls_net::log_out`'s tests). Before, the service's tasks waited on
/// the full pipe, and every device with them.
#[test]
fn a_log_nobody_reads_does_not_stop_the_service() {
    let (_tmp, ca, old, mut server, port) = fleet_served(1, &["--json"]);
    for i in 0..1000 {
        let a = keygen(port, &ca, &old).unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(a.status, 204, "request {i}: {a:?}");
    }
    let lines = support::net::stdout_lines(&mut server);
    // Every answer's line (the others: the start-up probe's connection).
    let logged = std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(30)).ok())
        .filter(|l| l.contains("\"current\""))
        .take(1000)
        .count();
    assert_eq!(logged, 1000);
}

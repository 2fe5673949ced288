//! What MicroPython itself (the unix port, the device's `ssl` on mbedTLS
//! 3.6) raises, compared with what devtls predicts and prints: a refused
//! client certificate (EPIPE or the alert, by the server's timing), a key
//! that is not the certificate's, the combined error names, the printed
//! device-as-server loop surviving bad clients, the printed client lines
//! verifying, the gateway with a device that closes without close_notify,
//! and the DTLS server answering the device's first ClientHello at once.
//! Every wait is bounded; nothing is timed.

use crate::support;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::micropython as mp;
use support::net::{connect_json, s_server, Serve};
use support::peers::{LineServer, WAIT};
use support::{devtls, free_tcp_port, ok_in, openssl_ok, text, words};

const RUN: Duration = Duration::from_secs(30);

/// A MicroPython TLS client: loads `chain` (cert, key) when given, trusts
/// `anchor`, connects to 127.0.0.1:`port` as `localhost`, sends a line and
/// prints the answer. Returns what it raised (`None`: it worked) and its output.
fn device_client(
    dir: &Path,
    port: u16,
    anchor: &str,
    chain: Option<(&str, &str)>,
) -> (Option<String>, String) {
    let load = chain.map_or(String::new(), |(c, k)| {
        format!("ctx.load_cert_chain({c:?}, {k:?})\n")
    });
    let script = format!(
        "import socket, ssl\n\
         ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
         ctx.verify_mode = ssl.CERT_REQUIRED\n\
         {load}ctx.load_verify_locations(cafile={anchor:?})\n\
         sock = socket.socket()\n\
         sock.connect(socket.getaddrinfo(\"127.0.0.1\", {port})[0][-1])\n\
         ssock = ctx.wrap_socket(sock, server_hostname=\"localhost\")\n\
         ssock.write(b\"device here\\n\")\n\
         print(\"answer:\", ssock.readline())\n\
         ssock.close()\n"
    );
    let out = mp::run(dir, "client.py", &script, RUN);
    (mp::raised(&out), text(&out))
}

/// The printed lines of every possible outcome in a prediction (the
/// `outcomes` of doctor's failure or of connect's device words).
fn predicted(outcomes: &Value) -> Vec<String> {
    outcomes["raised"]
        .as_array()
        .unwrap_or_else(|| panic!("no outcomes in {outcomes}"))
        .iter()
        .map(|r| r["printed"].as_str().unwrap().to_string())
        .collect()
}

/// `devtls new server --dns localhost` and two clients: `client` (the
/// one the server trusts) and `stranger`.
fn mtls_files(d: &Path) {
    ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    ok_in(d, &words("new client --cn cam-1"));
    ok_in(d, &words("new client --cn stranger --name stranger"));
}

/// A MicroPython TLS server demanding a client certificate from `client.der`,
/// which prints the device's words for every client it fails.
fn device_mtls_server(d: &Path) -> (LineServer, u16) {
    let port = free_tcp_port();
    let script = format!(
        "import socket, ssl\n\
         ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
         ctx.load_cert_chain(\"server.der\", \"server.key.der\")\n\
         ctx.verify_mode = ssl.CERT_REQUIRED\n\
         ctx.load_verify_locations(cafile=\"client.der\")\n\
         sock = socket.socket()\n\
         sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         sock.bind(socket.getaddrinfo(\"127.0.0.1\", {port})[0][-1])\n\
         sock.listen(1)\n\
         print(\"listening\")\n\
         while True:\n    \
         c, a = sock.accept()\n    \
         try:\n        \
         s = ctx.wrap_socket(c, server_side=True)\n        \
         s.write(b\"hello\\n\")\n        \
         s.read(64)\n        \
         s.close()\n    \
         except Exception as e:\n        \
         print(\"failed:\", repr(e))\n        \
         c.close()\n"
    );
    std::fs::write(d.join("mtls_server.py"), script).unwrap();
    let mut server = LineServer::spawn(
        "micropython server",
        &mut mp::command(d, "mtls_server.py"),
        port,
    );
    // Not a probe connection: the device would count it as a failed client.
    server.wait_line(WAIT, |l| l.stdout && l.text == "listening");
    (server, port)
}

/// Finding 1: a refused client certificate. The device raises `OSError: 32`
/// against devtls serve and a MicroPython server, the alert against
/// OpenSSL; doctor and connect name both.
#[test]
fn a_refused_client_certificate_is_predicted_as_every_outcome_the_device_raises() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mtls_files(d);
    let stranger = ("stranger.der", "stranger.key.der");
    let mut seen = Vec::new();

    // devtls serve.
    let serve = Serve::guide(d, &["--ca", "client.der", "--json"]);
    let (raised, out) = device_client(d, serve.port, "server.der", Some(stranger));
    let raised = raised.unwrap_or_else(|| panic!("the device was not refused:\n{out}"));
    seen.push(raised);
    let target = format!("127.0.0.1:{}", serve.port);
    let (code, v, _) = connect_json(
        d,
        &[
            &target,
            "--ca",
            "server.der",
            "--hostname",
            "localhost",
            "--cert",
            "stranger.der",
            "--key",
            "stranger.key.der",
        ],
    );
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["reason"], "client_cert_rejected", "{v}");
    let connect_says = predicted(&v["device"]["outcomes"]);
    let doctor = doctor_json(d, serve.port, stranger);
    let doctor_says = doctor_outcomes(&doctor, "the server refused");

    // A MicroPython server.
    let (_server, port) = device_mtls_server(d);
    let (raised, out) = device_client(d, port, "server.der", Some(stranger));
    seen.push(raised.unwrap_or_else(|| panic!("the device was not refused:\n{out}")));

    // OpenSSL.
    openssl_ok(d, &words("x509 -inform DER -in client.der -out client.pem"));
    let (_openssl, port) = s_server(
        d,
        &[
            "-cert",
            "server.crt",
            "-key",
            "server.key",
            "-CAfile",
            "client.pem",
            "-Verify",
            "1",
            "-verify_return_error",
            "-tls1_2",
            "-quiet",
        ],
    );
    let (raised, out) = device_client(d, port, "server.der", Some(stranger));
    seen.push(raised.unwrap_or_else(|| panic!("the device was not refused:\n{out}")));

    for raised in &seen {
        assert!(
            connect_says.contains(raised),
            "connect predicts {connect_says:?}, the device raised {raised}"
        );
        assert!(
            doctor_says.contains(raised),
            "doctor predicts {doctor_says:?}, the device raised {raised}"
        );
    }
    assert!(seen.contains(&"OSError: 32".to_string()), "{seen:?}");
}

/// `devtls doctor 127.0.0.1 --port PORT --ca server.der --cert C --key K --json`.
fn doctor_json(d: &Path, port: u16, (cert, key): (&str, &str)) -> Value {
    let out = devtls()
        .current_dir(d)
        .args(["doctor", &format!("127.0.0.1:{port}")])
        .args(["--ca", "server.der", "--hostname", "localhost"])
        .args(["--cert", cert, "--key", key, "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}):\n{}", text(&out)))
}

/// The printed outcomes of doctor's failure whose `why` contains `why`.
fn doctor_outcomes(doctor: &Value, why: &str) -> Vec<String> {
    assert_eq!(doctor["works"], false, "{doctor}");
    let failure = doctor["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["why"].as_str().unwrap_or("").contains(why))
        .unwrap_or_else(|| panic!("no failure saying {why:?} in {doctor}"));
    predicted(&failure["outcomes"])
}

/// Finding 5 and 7: a key that is not the certificate's. The device loads
/// it and fails in the handshake; doctor and lint predict it, serve names it.
#[test]
fn a_key_that_is_not_the_certificates_is_predicted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mtls_files(d);
    // client.der with the stranger's key.
    let wrong = ("client.der", "stranger.key.der");
    let serve = Serve::guide(d, &["--ca", "client.der", "--json"]);
    let (raised, out) = device_client(d, serve.port, "server.der", Some(wrong));
    let raised = raised.unwrap_or_else(|| panic!("the device was not refused:\n{out}"));
    // The device loaded the pair: it failed in the handshake, not at load.
    assert!(!out.contains("load_cert_chain"), "{out}");
    let report = serve.report(WAIT);
    assert_eq!(report["reason"], "key_mismatch", "{report}");
    assert!(
        !report["what"].as_str().unwrap().contains("not signed"),
        "{report}"
    );
    let doctor = doctor_json(d, serve.port, wrong);
    let says = doctor_outcomes(&doctor, "does not belong");
    assert!(
        says.contains(&raised),
        "doctor predicts {says:?}, the device raised {raised}"
    );

    // A MicroPython server: another outcome, also predicted.
    let (_server, port) = device_mtls_server(d);
    let (raised, out) = device_client(d, port, "server.der", Some(wrong));
    let raised = raised.unwrap_or_else(|| panic!("the device was not refused:\n{out}"));
    assert!(
        says.contains(&raised),
        "doctor predicts {says:?}, the device raised {raised}"
    );

    // lint names the same outcomes.
    let out = devtls()
        .current_dir(d)
        .args(["lint", "client.der", "stranger.key.der"])
        .output()
        .unwrap();
    assert!(text(&out).contains(&raised), "{}", text(&out));
}

/// Finding 4: MicroPython prints a combined error as `A+B`, and doctor
/// names it exactly so.
#[test]
fn a_combined_error_name_is_spelled_as_micropython_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    openssl_ok(
        d,
        &words(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout nc.key \
             -out nc.crt -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
             -addext nameConstraints=critical,permitted;DNS:localhost",
        ),
    );
    let (_openssl, port) = s_server(d, &words("-cert nc.crt -key nc.key -tls1_2 -quiet"));
    let (raised, out) = device_client(d, port, "server.der", None);
    let raised = raised.unwrap_or_else(|| panic!("the device connected:\n{out}"));
    assert!(raised.contains('+'), "{raised}");
    let out = devtls()
        .current_dir(d)
        .args(["doctor", &format!("127.0.0.1:{port}")])
        .args(["--ca", "server.der", "--hostname", "localhost", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let says: Vec<&str> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["device_says"].as_str().unwrap())
        .collect();
    assert!(
        says.contains(&raised.as_str()),
        "doctor says {says:?}, the device raised {raised}"
    );
}

/// The lines `devtls new server` prints under `heading`, up to the next blank line.
fn printed_lines(stdout: &str, heading: &str) -> String {
    let start = stdout
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{stdout}"));
    let body = &stdout[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body.find("\n\n").unwrap_or(body.len());
    format!("{}\n", &body[..end])
}

/// Finding 2: the printed device-as-server loop survives a port scanner,
/// garbage, a client refusing its certificate and doctor's probe, prints
/// the device's words for each, and serves the next good client.
#[test]
fn the_printed_server_loop_survives_every_bad_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    let printed = printed_lines(&text(&out), "On the device, as the TLS server:");
    let port = free_tcp_port();
    let script = mp::with_prelude(&printed.replace("8443", &port.to_string()));
    std::fs::write(d.join("server.py"), &script).unwrap();
    let mut server =
        LineServer::spawn("micropython server", &mut mp::command(d, "server.py"), port);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // A port scanner: connect and close (the first such probe also says
    // the server is up).
    let deadline = std::time::Instant::now() + WAIT;
    while TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() >= deadline {
            server.finish(Duration::from_secs(1));
            panic!(
                "the device's server never listened:\n{}",
                server.transcript()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive = |server: &mut LineServer, after: &str| -> TcpStream {
        TcpStream::connect(addr).unwrap_or_else(|_| {
            server.finish(Duration::from_secs(1));
            panic!(
                "the device's server loop died after {after}:\n{}",
                server.transcript()
            )
        })
    };
    // Garbage.
    {
        use std::io::Write;
        let mut s = alive(&mut server, "a port scanner");
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _ = s.set_read_timeout(Some(WAIT));
        let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
    }
    drop(alive(&mut server, "garbage"));
    // A client refusing the certificate (it trusts another one).
    ok_in(d, &words("new server --dns localhost --name other"));
    let (raised, out) = device_client(d, port, "other.der", None);
    assert!(raised.is_some(), "the refusing client connected:\n{out}");
    // doctor's probe, which ends its handshake early.
    let _ = devtls()
        .current_dir(d)
        .args(["doctor", &format!("127.0.0.1:{port}")])
        .args(["--ca", "server.der", "--hostname", "localhost"])
        .output()
        .unwrap();
    // A good client is still served.
    let (raised, out) = device_client(d, port, "server.der", None);
    assert_eq!(
        raised,
        None,
        "{out}\n--- server ---\n{}",
        server.transcript()
    );
    assert!(out.contains("hello"), "{out}");
    let failed = server.wait_line(WAIT, |l| {
        l.stdout && l.text.contains("client failed: OSError")
    });
    assert!(failed.text.contains("OSError"), "{}", failed.text);
}

/// Finding 8: the printed client lines verify: against a server with
/// another certificate they fail on MicroPython.
#[test]
fn the_printed_client_lines_refuse_a_server_with_the_wrong_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    let printed = printed_lines(&text(&out), "On a client of the device, trust server.der");
    assert!(printed.contains("CERT_NONE"), "says why: {printed}");
    ok_in(
        d,
        &words("new server --dns localhost --ip 127.0.0.1 --name impostor"),
    );
    let serve = Serve::start(
        d,
        &words("--cert impostor.der --key impostor.key.der --count 1"),
    );
    let script = mp::with_prelude(&printed.replace("8443", &serve.port.to_string()));
    let out = mp::run(d, "client.py", &script, RUN);
    // The verify text follows `ValueError:` on the lines after it.
    assert!(
        !out.status.success()
            && text(&out).contains("ValueError")
            && text(&out).contains("not correctly signed"),
        "the device accepted the impostor:\n{}",
        text(&out)
    );
}

/// A UDP relay between the device and a DTLS server that counts the
/// ClientHellos going to the server.
fn counting_relay(server: u16) -> (u16, Arc<AtomicUsize>) {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.connect(("127.0.0.1", server)).unwrap();
    let port = front.local_addr().unwrap().port();
    let hellos = Arc::new(AtomicUsize::new(0));
    let count = hellos.clone();
    let (f2, b2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
    let device = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    let dev2 = device.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = front.recv_from(&mut buf) {
            *device.lock().unwrap() = Some(from);
            // A DTLS handshake record (22) holding a ClientHello (1).
            if n > 13 && buf[0] == 22 && buf[13] == 1 {
                count.fetch_add(1, Ordering::SeqCst);
            }
            let _ = back.send(&buf[..n]);
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok(n) = b2.recv(&mut buf) {
            if let Some(to) = *dev2.lock().unwrap() {
                let _ = f2.send_to(&buf[..n], to);
            }
        }
    });
    (port, hellos)
}

/// Finding 6: devtls serve --dtls answers the device at once: its
/// handshake needs its first ClientHello and the one with the cookie (no
/// retransmission), and its `read(64)` (n bytes or the end of the
/// conversation) returns with the answer, not after the server's idle
/// timeout (an hour here, past the script's time limit).
#[test]
fn the_dtls_server_answers_the_devices_first_client_hello_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    let udp = support::free_udp_port();
    let mut cmd = devtls();
    cmd.current_dir(d)
        .args([
            "serve",
            "--dtls",
            "--cert",
            "server.der",
            "--key",
            "server.key.der",
        ])
        // An hour of idle time: the answer must not wait for it.
        .args([
            "--port",
            &udp.to_string(),
            "--count",
            "1",
            "--timeout",
            "3600",
        ]);
    let mut serve = LineServer::spawn("devtls serve --dtls", &mut cmd, udp);
    serve.wait_line(WAIT, |l| l.stdout);
    let (port, hellos) = counting_relay(udp);
    let script = format!(
        "import socket, ssl\n\
         ctx = ssl.SSLContext(ssl.PROTOCOL_DTLS_CLIENT)\n\
         ctx.verify_mode = ssl.CERT_REQUIRED\n\
         ctx.load_verify_locations(cafile=\"server.der\")\n\
         sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         sock.connect(socket.getaddrinfo(\"127.0.0.1\", {port})[0][-1])\n\
         ssock = ctx.wrap_socket(sock, server_hostname=\"localhost\")\n\
         ssock.write(b\"device here\\n\")\n\
         print(\"answer:\", ssock.read(64))\n"
    );
    let out = mp::run(d, "dtls_client.py", &script, RUN);
    assert_eq!(mp::raised(&out), None, "{}", text(&out));
    assert!(text(&out).contains("hello"), "{}", text(&out));
    assert_eq!(
        hellos.load(Ordering::SeqCst),
        2,
        "the first ClientHello and the one with the cookie, no retransmission"
    );
}

/// An outbound route (device -> public) with the device files of
/// [`mtls_files`] (`server.der` is the gateway's certificate), plus `extra`
/// arguments. The public server keeps the connection open after answering
/// (an HTTP keep-alive server would): the device's close ends it.
fn outbound_gateway(d: &Path, extra: &[&str]) -> (support::Peer, crate::gateway_support::Gateway) {
    mtls_files(d);
    crate::gateway_support::public_chain(d, "public", &["public.test"]);
    let (public, public_port) = s_server(
        d,
        &words("-cert public-fullchain.pem -key public-key.pem -cert_chain int.pem -rev -quiet"),
    );
    let to = format!("127.0.0.1:{public_port}");
    let mut args = vec![
        "--outbound",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "server.der",
        "--key",
        "server.key.der",
        "--to",
        &to,
        "--public-name",
        "public.test",
        "--public-ca",
        "root.pem",
    ];
    args.extend(extra);
    let gateway = crate::gateway_support::Gateway::start(d, &args, 1);
    (public, gateway)
}

/// Finding 3: a MicroPython device on an outbound route sends its request,
/// reads the answer and calls `close()` (no close_notify): a normal end.
#[test]
fn the_gateway_logs_a_device_that_closes_without_close_notify_as_relayed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_public, mut gateway) = outbound_gateway(d, &[]);
    let (raised, out) = device_client(d, gateway.port(), "server.der", None);
    assert_eq!(raised, None, "{out}");
    assert!(
        out.contains("ereh ecived"),
        "the public server's answer: {out}"
    );
    let line = gateway.wait_json(|v| v.get("client").is_some());
    assert_eq!(line["outcome"], "relayed", "{line}");
}

/// Finding 3: on an inbound route the device is the server; when the
/// gateway fails it, the gateway names what the device (as the server)
/// raises, which the device's own loop prints.
#[test]
fn the_gateway_names_what_a_device_server_raises_when_it_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mtls_files(d);
    crate::gateway_support::public_chain(d, "gw", &["gw.test"]);
    // The device demands a client certificate the gateway does not have.
    let (mut device, port) = device_mtls_server(d);
    let to = format!("127.0.0.1:{port}");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "gw-fullchain.pem",
        "--key",
        "gw-key.pem",
        "--to",
        &to,
        "--device-ca",
        "server.der",
        "--device-name",
        "localhost",
    ];
    let mut gateway = crate::gateway_support::Gateway::start(d, &args, 1);
    let config = crate::gateway_support::client_config(&d.join("root.pem"));
    let _ = crate::gateway_support::tls_exchange(&config, gateway.port(), "gw.test", b"hi\n");
    let line = gateway.wait_json(|v| v["outcome"] == "upstream_failed");
    let words = &line["diagnosis"]["device"];
    let failed = device.wait_line(WAIT, |l| l.stdout && l.text.starts_with("failed:"));
    let name = words["name"].as_str().unwrap_or_else(|| panic!("{line}"));
    assert!(
        failed.text.contains(name),
        "the gateway says the device raises {name}; it printed {}",
        failed.text
    );
}

/// Findings 1 and 3: a device connecting to the gateway (an outbound route)
/// with a certificate the gateway's client CA did not sign: the gateway's
/// line names what the device, as the client, raised.
#[test]
fn the_gateway_names_what_a_refused_device_client_raises() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_public, mut gateway) = outbound_gateway(d, &["--client-ca", "client.der"]);
    let stranger = ("stranger.der", "stranger.key.der");
    let (raised, out) = device_client(d, gateway.port(), "server.der", Some(stranger));
    let raised = raised.unwrap_or_else(|| panic!("the gateway let the stranger in:\n{out}"));
    let line = gateway.wait_json(|v| v["outcome"] == "client_failed");
    let says = predicted(&line["diagnosis"]["device"]["outcomes"]);
    assert!(
        says.contains(&raised),
        "the gateway says {says:?}, the device raised {raised}"
    );
}

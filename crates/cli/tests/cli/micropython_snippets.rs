//! Issue 25 item 1: the MicroPython lines devtls prints run unchanged on
//! MicroPython itself (the unix port: the device's `modtls_mbedtls.c` on
//! mbedTLS 3.6, support/micropython.rs) over real loopback sockets, in both
//! roles, TLS and DTLS, with and without client certificates: quickstart's
//! lines, and `devtls new server|client`'s blocks (the device-server loop
//! among them) against `devtls serve`, `devtls connect` and OpenSSL.
//!
//! The lines are cut from devtls's own output and written to the device's
//! main.py as they are, but for the port (the guide's 8443 becomes a free
//! one, [`mp::on_port`]); the board's start-up file runs it after putting
//! an `ntptime` stand-in in place (support/micropython.rs, [`Board`]). Every positive
//! case has a negative control: the wrong anchor, or a missing client
//! certificate, makes the same lines fail.

use crate::support;

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use support::micropython::{self as mp, Board};
use support::net::{stdout_lines, Serve};
use support::peers::openssl_client;
use support::{ok_in, text, words, Peer};

const WAIT: Duration = Duration::from_secs(60);

/// A folder with `devtls new server` (localhost, 127.0.0.1) and `new client`
/// files, and a second server certificate as the wrong anchor (wrong.der,
/// wrong.crt); returns what `new server` and `new client` printed.
fn guide_folder(d: &Path) -> (String, String) {
    let server = ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    let client = ok_in(d, &words("new client --cn sensor-01 --dns localhost"));
    ok_in(
        d,
        &words("new server --dns localhost --ip 127.0.0.1 --out other"),
    );
    std::fs::copy(d.join("other/server.der"), d.join("wrong.der")).unwrap();
    std::fs::copy(d.join("other/server.crt"), d.join("wrong.crt")).unwrap();
    (
        String::from_utf8_lossy(&server.stdout).into_owned(),
        String::from_utf8_lossy(&client.stdout).into_owned(),
    )
}

/// Whether something waits for clients on `port` (`/proc/net/*`): a
/// passive look, so a device server's loop never sees a probe connection.
fn bound(port: u16, udp: bool) -> bool {
    let want = format!(":{port:04X}");
    ["", "6"].iter().any(|v| {
        let table = if udp { "udp" } else { "tcp" };
        std::fs::read_to_string(format!("/proc/net/{table}{v}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // TCP: LISTEN. UDP: not connected to a peer (a DTLS
                // server's next socket, not the one that served a client).
                cols.len() > 3
                    && cols[1].ends_with(&want)
                    && if udp {
                        cols[2].bytes().all(|b| matches!(b, b'0' | b':'))
                    } else {
                        cols[3] == "0A"
                    }
            })
    })
}

fn wait_bound(port: u16, udp: bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !bound(port, udp) {
        assert!(
            std::time::Instant::now() < deadline,
            "the device did not bind port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The device serving `lines` (a server block devtls printed) on a free
/// port, listening; with its stdout as lines.
fn device_server(d: &Path, lines: &str, udp: bool) -> (Peer, u16, Receiver<String>) {
    let port = if udp {
        support::free_udp_port()
    } else {
        support::free_tcp_port()
    };
    std::fs::write(d.join("main.py"), mp::on_port(lines, port)).unwrap();
    let mut peer = mp::spawn_board(d, "main.py", &Board::default());
    let out = stdout_lines(&mut peer);
    wait_bound(port, udp);
    (peer, port, out)
}

/// The device printed the client's `hello` (what the server loop reads).
fn device_read_hello(out: &Receiver<String>, what: &str) {
    let line = out
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("{what}: the device printed nothing"));
    assert_eq!(line, "b'hello\\n'", "{what}");
}

/// The device's server loop told of the client that sent no certificate
/// (mbedTLS's NO_CLIENT_CERTIFICATE, -0x7480) and went on serving: the
/// printed loop survives a failing client (docs/device-behaviour.md).
fn assert_no_client_certificate(out: &Receiver<String>, what: &str) {
    let line = out
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("{what}: the device printed nothing for the refused client"));
    assert_eq!(
        line, "client failed: OSError: (-29824, 'MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE')",
        "{what}: the device saw no client certificate"
    );
}

/// `devtls connect 127.0.0.1:PORT ARGS`, as the device's peer.
fn connect(d: &Path, port: u16, args: &[&str]) -> std::process::Output {
    support::devtls()
        .current_dir(d)
        .args(["connect", &format!("127.0.0.1:{port}"), "--timeout", "20"])
        .args(args)
        .output()
        .unwrap()
}

/// Runs a client block devtls printed on the device against `port`.
fn device_client(d: &Path, lines: &str, port: u16) -> std::process::Output {
    std::fs::write(d.join("main.py"), mp::on_port(lines, port)).unwrap();
    mp::run_board(d, "main.py", &Board::default(), WAIT)
}

fn assert_said_hello(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("b'hello\\n'"),
        "{what}: {}",
        text(out)
    );
}

/// `new server`'s "as the TLS server" block: the device-server loop serves
/// `devtls connect` twice in a row and OpenSSL's s_client, each verifying
/// it by name; a client with the wrong anchor refuses it.
#[test]
fn new_server_block_serves_devtls_connect_and_openssl_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (printed, _) = guide_folder(d);
    let lines = mp::block_after(&printed, "On the device, as the TLS server:");
    assert!(lines.contains("while True:"), "{lines}");
    let (_device, port, out) = device_server(d, &lines, false);
    for i in 0..2 {
        let run = connect(d, port, &words("--ca server.der --hostname localhost"));
        assert!(run.status.success(), "connect {i}: {}", text(&run));
        assert!(
            String::from_utf8_lossy(&run.stdout).contains("hello"),
            "{}",
            text(&run)
        );
        device_read_hello(&out, &format!("devtls connect {i}"));
    }
    let run = openssl_client(
        d,
        port,
        &words("-verify_return_error -CAfile server.crt -verify_hostname localhost -tls1_2"),
        "hello\n",
    );
    assert!(
        run.success() && run.text.contains("Verify return code: 0 (ok)"),
        "{}",
        run.text
    );
    device_read_hello(&out, "s_client");
    // Negative control: the same device, a client trusting another certificate.
    let run = connect(d, port, &words("--ca wrong.der --hostname localhost"));
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
}

/// Two devices, both running lines `new server` printed: the device-server
/// loop on one and the client block on the other (MicroPython to
/// MicroPython, no devtls in between). The client reads one line and
/// closes, which ends the server's `read()`; before, both called `read()`,
/// which waits for the end of the stream, and the two devices waited for
/// each other until the test's timeout. The client's wrong anchor is the negative
/// control.
#[test]
fn a_device_client_and_a_device_server_from_the_printed_lines_talk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (printed, _) = guide_folder(d);
    let server = mp::block_after(&printed, "On the device, as the TLS server:");
    let client = mp::block_after(&printed, "On a client of the device");
    let (_device, port, out) = device_server(d, &server, false);
    let client_dir = d.join("client-board");
    std::fs::create_dir_all(&client_dir).unwrap();
    for f in ["server.der", "wrong.der"] {
        std::fs::copy(d.join(f), client_dir.join(f)).unwrap();
    }
    let run = device_client(&client_dir, &client, port);
    assert_said_hello(&run, "the device client of the device server");
    device_read_hello(&out, "the device server");
    // Negative control: the client board trusts another certificate.
    std::fs::copy(d.join("wrong.der"), client_dir.join("server.der")).unwrap();
    let run = device_client(&client_dir, &client, port);
    mp::assert_refused_unsigned(&run, "a device client with another anchor");
}

/// `new server`'s client block (the device verifying the server) against
/// `devtls serve` presenting server.der, over TLS and DTLS (the DTLS block
/// answers the HelloVerifyRequest cookie); with the wrong certificate
/// served, the same lines refuse it.
#[test]
fn new_server_client_blocks_verify_devtls_serve_over_tls_and_dtls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (printed, _) = guide_folder(d);
    let tls = mp::block_after(&printed, "On a client of the device");
    let dtls = mp::block_after(&printed, "The same client over DTLS:");
    for (lines, extra) in [(&tls, &[][..]), (&dtls, &["--dtls"][..])] {
        let what = if extra.is_empty() { "TLS" } else { "DTLS" };
        let serve = Serve::guide(d, &[extra, &["--count", "1"]].concat());
        let out = device_client(d, lines, serve.port);
        assert_said_hello(&out, what);
        let line = serve.line(WAIT);
        let version = if extra.is_empty() {
            "TLSv1.2"
        } else {
            "DTLSv1.2"
        };
        assert!(
            line.contains(version) && line.contains("no client certificate"),
            "{what}: {line}"
        );
        drop(serve);
        // Negative control: a server presenting another certificate.
        let mut args = words("--cert other/server.der --key other/server.key.der --count 1");
        args.extend_from_slice(extra);
        let serve = Serve::start(d, &args);
        let out = device_client(d, lines, serve.port);
        mp::assert_refused_unsigned(&out, &format!("{what}, wrong server"));
    }
}

/// `new server`'s mutual-TLS block: the device server demands a client
/// certificate and verifies it with client.der; `devtls connect` presenting
/// client.der is served, one without a certificate is refused.
#[test]
fn new_server_mtls_block_demands_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (printed, _) = guide_folder(d);
    let lines = mp::block_after(&printed, "devtls new client --cn sensor-01");
    assert!(lines.contains("CERT_REQUIRED"), "{lines}");
    let (device, port, out) = device_server(d, &lines, false);
    let mtls = words("--ca server.der --hostname localhost --cert client.der --key client.key.der");
    let run = connect(d, port, &mtls);
    assert!(run.status.success(), "{}", text(&run));
    device_read_hello(&out, "mTLS client");
    // Negative control: no client certificate; the device refuses it, says
    // so, and still serves the next client.
    let run = connect(d, port, &words("--ca server.der --hostname localhost"));
    assert_ne!(run.status.code(), Some(0), "{}", text(&run));
    assert_no_client_certificate(&out, "TLS");
    let run = connect(d, port, &mtls);
    assert!(run.status.success(), "{}", text(&run));
    device_read_hello(&out, "mTLS client after the refused one");
    drop(device);
}

/// `new client`'s blocks: the device as an mTLS client over TLS and DTLS
/// against the `devtls serve ... --ca client.der` lines `new client`
/// printed; the server sees CN=sensor-01. A server trusting another CA
/// refuses the same device.
#[test]
fn new_client_blocks_authenticate_to_the_printed_serve_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, printed) = guide_folder(d);
    let tls = mp::block_after(&printed, "On the device, as an mTLS client");
    let dtls = mp::block_after(&printed, "The same client over DTLS:");
    let serve_lines = mp::block_after(&printed, "On the server, demand and verify");
    let serve_args: Vec<Vec<&str>> = serve_lines
        .lines()
        .map(|l| {
            l.strip_prefix("devtls serve ")
                .expect(l)
                .split(' ')
                .collect()
        })
        .collect();
    assert_eq!(serve_args.len(), 2, "{serve_lines}");
    for (lines, args) in [(&tls, &serve_args[0]), (&dtls, &serve_args[1])] {
        let what = args.join(" ");
        let serve = Serve::start(d, &[&args[..], &["--count", "1"]].concat());
        let out = device_client(d, lines, serve.port);
        assert_said_hello(&out, &what);
        let line = serve.line(WAIT);
        assert!(line.contains("client CN=sensor-01"), "{what}: {line}");
        drop(serve);
        // Negative control: the server demands a certificate from another CA.
        let wrong: Vec<&str> = args
            .iter()
            .map(|a| if *a == "client.der" { "wrong.der" } else { a })
            .collect();
        let serve = Serve::start(d, &[&wrong[..], &["--count", "1"]].concat());
        let out = device_client(d, lines, serve.port);
        // The server's alert (-0x7780), or EPIPE when it closed while the
        // device was still writing (docs/device-behaviour.md).
        let raised = mp::raised(&out).unwrap_or_default();
        assert!(
            !out.status.success()
                && (raised.contains("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
                    || raised == "OSError: 32"
                    || raised.contains("-30592")),
            "{what} with another CA: {raised}\n{}",
            text(&out)
        );
        let line = serve.line(WAIT);
        assert!(line.contains("failed"), "{what}: {line}");
    }
}

/// `new server`'s DTLS server blocks: the first ClientHello gets a
/// HelloVerifyRequest, the client comes back with the cookie; `devtls
/// connect --dtls` twice (the loop) and `openssl s_client -dtls1_2`; the
/// mTLS block serves a client presenting client.der and refuses one without.
#[test]
fn dtls_server_blocks_answer_with_a_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (printed, _) = guide_folder(d);
    let plain = mp::block_after(&printed, "Or as a DTLS server");
    let (_device, port, out) = device_server(d, &plain, true);
    for i in 0..2 {
        let run = connect(
            d,
            port,
            &words("--dtls --ca server.der --hostname localhost"),
        );
        assert!(run.status.success(), "DTLS connect {i}: {}", text(&run));
        device_read_hello(&out, &format!("DTLS connect {i}"));
        wait_bound(port, true); // the loop binds its next socket
    }
    let run = openssl_client(
        d,
        port,
        &words("-dtls1_2 -verify_return_error -CAfile server.crt -verify_hostname localhost"),
        "hello\n",
    );
    assert!(
        run.text.contains("Verify return code: 0 (ok)"),
        "{}",
        run.text
    );
    device_read_hello(&out, "s_client -dtls1_2");
    wait_bound(port, true);
    // Negative control: a client trusting another certificate refuses the
    // device, which says so and serves the next client.
    let run = connect(
        d,
        port,
        &words("--dtls --ca wrong.der --hostname localhost"),
    );
    assert_eq!(run.status.code(), Some(1), "wrong anchor: {}", text(&run));
    dtls_client_failed(&out, "(-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')");

    let mtls = mp::block_after(&printed, "Mutual TLS over DTLS:");
    let (_device, port, out) = device_server(d, &mtls, true);
    let with_cert =
        "--dtls --ca server.der --hostname localhost --cert client.der --key client.key.der";
    let run = connect(d, port, &words(with_cert));
    assert!(run.status.success(), "DTLS mTLS: {}", text(&run));
    device_read_hello(&out, "DTLS mTLS");
    wait_bound(port, true);
    // Negative control: no client certificate.
    let run = connect(
        d,
        port,
        &words("--dtls --ca server.der --hostname localhost"),
    );
    assert_ne!(
        run.status.code(),
        Some(0),
        "no client certificate: {}",
        text(&run)
    );
    dtls_client_failed(&out, "(-29824, 'MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE')");
    wait_bound(port, true);
    let run = connect(d, port, &words(with_cert));
    assert!(
        run.status.success(),
        "DTLS mTLS after a refused client: {}",
        text(&run)
    );
    device_read_hello(&out, "DTLS mTLS after a refused client");
}

/// The DTLS device-server loop printed that a client failed with `error`.
fn dtls_client_failed(out: &Receiver<String>, error: &str) {
    let line = out
        .recv_timeout(WAIT)
        .expect("the device printed the failure");
    assert_eq!(line, format!("DTLS client failed: {error}"));
}

/// quickstart's lines for the real device: the `mpremote cp` lines give
/// the device its files, the PC server line runs `devtls serve`, and the
/// MicroPython lines complete mutual TLS with it (the server sees
/// CN=device-01). With another anchor copied instead, they fail.
#[test]
fn quickstart_lines_complete_mutual_tls_on_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok_in(d, &words("quickstart --json"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = &report["device"];
    let device = d.join("device");
    std::fs::create_dir_all(&device).unwrap();
    let copy = lines["copy"].as_str().expect("copy lines");
    for l in copy.lines() {
        let file = l
            .strip_prefix("mpremote cp ")
            .and_then(|l| l.strip_suffix(" :"))
            .unwrap_or_else(|| panic!("not an mpremote cp line: {l}"));
        let from = d.join(file);
        std::fs::copy(&from, device.join(from.file_name().unwrap())).unwrap();
    }
    let pc = lines["pc_server"].as_str().expect("the PC server line");
    let args: Vec<&str> = pc
        .strip_prefix("devtls serve ")
        .expect(pc)
        .split(' ')
        .collect();
    // The guide's port goes; Serve::start listens on a free one.
    let at = args.iter().position(|a| *a == "--port").expect(pc);
    let args = [&args[..at], &args[at + 2..], &["--count", "1"]].concat();
    let mpy = lines["micropython"].as_str().expect("the device lines");
    let serve = Serve::start(d, &args);
    let out = device_client(&device, mpy, serve.port);
    assert_said_hello(&out, "quickstart's lines");
    let line = serve.line(WAIT);
    assert!(line.contains("client CN=device-01"), "{line}");
    drop(serve);
    // Negative control: the device trusts another certificate.
    ok_in(d, &words("new server --dns localhost --out other"));
    std::fs::copy(d.join("other/server.der"), device.join("server.der")).unwrap();
    let serve = Serve::start(d, &args);
    let out = device_client(&device, mpy, serve.port);
    mp::assert_refused_unsigned(&out, "quickstart's lines, another anchor");
}

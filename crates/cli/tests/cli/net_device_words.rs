//! The device's words that `connect` and `serve` predict are the words
//! mbedTLS itself produces: every failure is run twice, once through devtls
//! and once through the device peer (mbedTLS 3.6 with the device's
//! configuration, tests/peers/mbedtls36), and the error codes must agree.

use crate::support;

use std::process::Command;
use std::time::Duration;

use devtls_pki::issue::Role;
use devtls_pki::keys::KeyType;
use serde_json::Value;
use support::device;
use support::net::{cert_valid, connect_json, raw_server, s_server, stdout_lines, Serve};
use support::{ok_in, text, words, Peer};
use time::{Duration as Span, OffsetDateTime};

const WAIT: Duration = Duration::from_secs(30);

/// What the mbedTLS client reports connecting to 127.0.0.1:`port` with `args`.
fn mbedtls_client(dir: &std::path::Path, port: u16, args: &[&str]) -> Value {
    let out = Command::new(device::binary())
        .current_dir(dir)
        .args(["client", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--timeout", "10"])
        .args(args)
        .output()
        .expect("the device peer runs");
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("device peer printed no JSON ({e}):\n{}", text(&out)))
}

/// devtls connect and the mbedTLS client, same server, same files: same code.
fn same_code(d: &std::path::Path, port: u16, args: &[&str], reason: &str) {
    let target = format!("127.0.0.1:{port}");
    let (code, devtls, out) = connect_json(d, &[&[&target[..]][..], args].concat());
    assert_eq!(code, Some(1), "{}", text(&out));
    assert_eq!(devtls["reason"], reason, "{devtls}");
    let mbedtls = mbedtls_client(d, port, args);
    assert_eq!(mbedtls["ok"], false, "{mbedtls}");
    assert!(mbedtls["code"].is_i64(), "mbedTLS gave a code: {mbedtls}");
    assert_eq!(
        devtls["device"]["code"], mbedtls["code"],
        "{reason}: devtls predicts {} but mbedTLS says {}",
        devtls["device"], mbedtls["error"]
    );
}

#[test]
fn client_side_failures_match_mbedtls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    ok_in(d, &words("new server --dns other --name other"));
    ok_in(d, &words("new client --cn sensor-01"));
    ok_in(d, &words("new client --cn stranger --name stranger"));
    let now = OffsetDateTime::now_utc();
    cert_valid(
        d,
        "old",
        Role::Server,
        KeyType::P256,
        now - Span::days(60),
        now - Span::days(30),
    );
    cert_valid(
        d,
        "new",
        Role::Server,
        KeyType::P256,
        now + Span::days(30),
        now + Span::days(60),
    );

    let serve = Serve::guide(d, &[]);
    let name = ["--hostname", "localhost"];
    same_code(
        d,
        serve.port,
        &["--ca", "server.der", "--hostname", "wrong"],
        "wrong_host_name",
    );
    same_code(
        d,
        serve.port,
        &[&["--ca", "other.der"][..], &name].concat(),
        "unknown_ca",
    );
    for (stem, reason) in [("old", "expired"), ("new", "not_yet_valid")] {
        let (cert, key) = (format!("{stem}.der"), format!("{stem}.key.der"));
        let serve = Serve::start(d, &["--cert", &cert, "--key", &key]);
        same_code(
            d,
            serve.port,
            &[&["--ca", &cert[..]][..], &name].concat(),
            reason,
        );
    }

    let mtls = Serve::guide(d, &["--ca", "client.der"]);
    let anchor = [&["--ca", "server.der"][..], &name].concat();
    same_code(d, mtls.port, &anchor, "client_cert_missing");
    let stranger = ["--cert", "stranger.der", "--key", "stranger.key.der"];
    same_code(
        d,
        mtls.port,
        &[&anchor[..], &stranger].concat(),
        "client_cert_rejected",
    );

    let (_tls13, port) = s_server(d, &["-cert", "server.crt", "-key", "server.key", "-tls1_3"]);
    same_code(d, port, &anchor, "no_common_version");
    support::openssl_ok(d, &words("genpkey -algorithm ed25519 -out ed.key"));
    let ed_subj = ["-subj", "/CN=localhost", "-days", "30"];
    let ed_req = ["req", "-x509", "-new", "-key", "ed.key", "-out", "ed.crt"];
    support::openssl_ok(d, &[&ed_req[..], &ed_subj].concat());
    let (_ed, port) = s_server(d, &["-cert", "ed.crt", "-key", "ed.key"]);
    same_code(d, port, &anchor, "refused_key_type");

    let http = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    same_code(d, http, &anchor, "not_tls");
    let hangs_up = raw_server(b"");
    same_code(d, hangs_up, &anchor, "peer_closed");
}

#[test]
fn server_side_failures_match_mbedtls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --ip 127.0.0.1"));
    ok_in(d, &words("new client --cn sensor-01"));
    ok_in(d, &words("new client --cn stranger --name stranger"));
    let stranger = ["--cert", "stranger.der", "--key", "stranger.key.der"];
    let anchor = ["--ca", "server.der"];

    // devtls serve's prediction of what the device-as-server says.
    let serve = Serve::guide(d, &["--ca", "client.der", "--count", "2", "--json"]);
    let target = format!("127.0.0.1:{}", serve.port);
    connect_json(d, &[&[&target[..]][..], &anchor].concat());
    let missing = serve.report(WAIT);
    connect_json(d, &[&[&target[..]][..], &anchor, &stranger].concat());
    let unknown = serve.report(WAIT);
    serve.finish(WAIT);

    // What the device's server says to the same two clients.
    let mut cmd = Command::new(device::binary());
    cmd.current_dir(d).args([
        "server",
        "--port",
        "0",
        "--cert",
        "server.der",
        "--key",
        "server.key.der",
        "--ca",
        "client.der",
        "--count",
        "2",
        "--timeout",
        "25",
    ]);
    let mut peer = Peer::spawn("device peer server", &mut cmd);
    let lines = stdout_lines(&mut peer);
    let listening: Value = serde_json::from_str(&lines.recv_timeout(WAIT).unwrap()).unwrap();
    let target = format!("127.0.0.1:{}", listening["listening"]);
    let mut said = Vec::new();
    for args in [&anchor[..], &[&anchor[..], &stranger].concat()] {
        connect_json(d, &[&[&target[..]][..], args].concat());
        let line: Value = serde_json::from_str(&lines.recv_timeout(WAIT).unwrap()).unwrap();
        said.push(line);
    }
    assert!(said.iter().all(|s| s["code"].is_i64()), "{said:?}");
    assert_eq!(missing["reason"], "client_cert_missing");
    assert_eq!(missing["device"]["code"], said[0]["code"], "{}", said[0]);
    assert_eq!(unknown["reason"], "client_cert_rejected");
    assert_eq!(unknown["device"]["code"], said[1]["code"], "{}", said[1]);
    peer.finish(WAIT);
}

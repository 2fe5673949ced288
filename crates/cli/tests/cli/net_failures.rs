//! `devtls connect`/`serve` failures: each reports the right reason in plain
//! words, the fix, the device's own words, and exit status 1.

use crate::support;

use std::time::Duration;

use devtls_pki::device_error::{self, flags};
use devtls_pki::issue::Role;
use devtls_pki::keys::KeyType;
use serde_json::Value;
use support::net::{
    cert_valid, connect_json, openssl_key, openssl_self_signed, openssl_signed, raw_server,
    s_server, Serve,
};
use support::{ok_in, openssl_ok, text, words};
use time::{Duration as Span, OffsetDateTime};

const WAIT: Duration = Duration::from_secs(20);

/// Asserts a failed connect: exit 1, the reason, and the device's code and words.
fn assert_failure(code: Option<i32>, v: &Value, reason: &str, device_code: i32, printed: &str) {
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["reason"], reason, "{v}");
    assert!(!v["what"].as_str().unwrap().is_empty() && !v["fix"].as_str().unwrap().is_empty());
    assert_eq!(v["device"]["code"], device_code, "{v}");
    assert!(
        v["device"]["printed"].as_str().unwrap().contains(printed),
        "device words {} should contain {printed:?}",
        v["device"]["printed"]
    );
}

/// Serves `stem` with devtls serve for one client and connects to it with `args`.
fn connect_to_serve(d: &std::path::Path, stem: &str, args: &[&str]) -> (Option<i32>, Value) {
    let cert = format!("{stem}.der");
    let key = format!("{stem}.key.der");
    let serve = Serve::start(d, &["--cert", &cert, "--key", &key, "--count", "1"]);
    let target = format!("127.0.0.1:{}", serve.port);
    let mut all = vec![target.as_str()];
    all.extend(args);
    let (code, v, out) = connect_json(d, &all);
    assert!(code.is_some(), "{}", text(&out));
    serve.finish(WAIT);
    (code, v)
}

#[test]
fn wrong_host_name_says_cn_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns openmv"));
    let (code, v) = connect_to_serve(d, "server", &["--ca", "server.der", "--hostname", "camera"]);
    let cve = device_error::CERT_VERIFY_FAILED.code;
    assert_failure(
        code,
        &v,
        "wrong_host_name",
        cve,
        "The certificate Common Name (CN) does not match with the expected CN",
    );
    assert!(
        v["what"].as_str().unwrap().contains("openmv"),
        "names what it is for: {v}"
    );
    assert!(
        v["fix"].as_str().unwrap().contains("--hostname openmv"),
        "{v}"
    );
    assert_eq!(
        v["chain"][0]["subject"], "CN=openmv",
        "the presented chain is kept"
    );
}

#[test]
fn expired_and_not_yet_valid_say_so_like_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let now = OffsetDateTime::now_utc();
    let cve = device_error::CERT_VERIFY_FAILED.code;
    cert_valid(
        d,
        "old",
        Role::Server,
        KeyType::P256,
        now - Span::days(60),
        now - Span::days(30),
    );
    let (code, v) = connect_to_serve(d, "old", &["--ca", "old.der", "--hostname", "localhost"]);
    assert_failure(code, &v, "expired", cve, "validity has expired");
    cert_valid(
        d,
        "new",
        Role::Server,
        KeyType::P256,
        now + Span::days(30),
        now + Span::days(60),
    );
    let (code, v) = connect_to_serve(d, "new", &["--ca", "new.der", "--hostname", "localhost"]);
    assert_failure(
        code,
        &v,
        "not_yet_valid",
        cve,
        "validity starts in the future",
    );
    assert!(v["fix"].as_str().unwrap().contains("clock"), "{v}");
}

#[test]
fn unknown_ca_says_not_signed_by_the_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --ip 127.0.0.1"));
    ok_in(d, &words("new server --dns other --name other"));
    let (code, v) = connect_to_serve(d, "server", &["--ca", "other.der"]);
    let cve = device_error::CERT_VERIFY_FAILED.code;
    assert_failure(
        code,
        &v,
        "unknown_ca",
        cve,
        "not correctly signed by the trusted CA",
    );
    // Without --ca the Mozilla roots are the anchors: a self-signed server is unknown too.
    let (code, v) = connect_to_serve(d, "server", &[]);
    assert_failure(code, &v, "unknown_ca", cve, "not correctly signed");
    assert!(v["what"].as_str().unwrap().contains("Mozilla"), "{v}");
}

/// For TLS 1.2 (openmv) and TLS 1.3 (modern). A TLS 1.3 server judges the
/// client certificate after the client's side of the handshake is done: the
/// refusal arrives with the reply and must still be explained.
#[test]
fn mtls_client_certificate_missing_or_unknown_is_named_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --ip 127.0.0.1"));
    ok_in(d, &words("new client --cn sensor-01"));
    ok_in(d, &words("new client --cn stranger --name stranger"));
    let fatal = device_error::FATAL_ALERT.code;
    for profile in ["openmv", "modern"] {
        let common = ["--profile", profile];
        let serve = Serve::start(
            d,
            &[
                &[
                    "--cert",
                    "server.der",
                    "--key",
                    "server.key.der",
                    "--ca",
                    "client.der",
                ][..],
                &["--count", "2", "--json"],
                &common,
            ]
            .concat(),
        );
        let target = format!("127.0.0.1:{}", serve.port);
        let server = [&target[..], "--ca", "server.der"];

        let (code, v, _) = connect_json(d, &[&server[..], &common].concat());
        assert_failure(code, &v, "client_cert_missing", fatal, "FATAL_ALERT");
        assert!(v["fix"].as_str().unwrap().contains("--cert"), "{v}");
        let report = serve.report(WAIT);
        assert_eq!(report["result"], "failed");
        assert_eq!(
            report["reason"], "client_cert_missing",
            "{profile}: {report}"
        );
        assert_eq!(
            report["device"]["code"],
            device_error::NO_CLIENT_CERTIFICATE.code
        );

        let stranger = ["--cert", "stranger.der", "--key", "stranger.key.der"];
        let (code, v, _) = connect_json(d, &[&server[..], &common, &stranger].concat());
        assert_failure(code, &v, "client_cert_rejected", fatal, "FATAL_ALERT");
        let report = serve.report(WAIT);
        assert_eq!(
            report["reason"], "client_cert_rejected",
            "{profile}: {report}"
        );
        assert_eq!(
            report["client_chain"][0]["subject"], "CN=stranger",
            "who was refused"
        );
        assert!(
            report["what"].as_str().unwrap().contains("sensor-01"),
            "names the CA: {report}"
        );
        assert_eq!(serve.finish(WAIT).status.code(), Some(1));
    }
}

#[test]
fn ed25519_server_certificate_is_refused_by_the_openmv_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ok(d, &words("genpkey -algorithm ed25519 -out ed.key"));
    openssl_ok(d, &words("req -x509 -new -key ed.key -out ed.crt -subj /CN=localhost -addext subjectAltName=DNS:localhost -days 30"));
    let (_server, port) = s_server(d, &["-cert", "ed.crt", "-key", "ed.key", "-rev"]);
    let target = format!("localhost:{port}");
    let (code, v, _) = connect_json(d, &[&target, "--ca", "ed.crt", "--profile", "openmv"]);
    assert_failure(
        code,
        &v,
        "refused_key_type",
        device_error::FATAL_ALERT.code,
        "-30592",
    );
    assert!(v["what"].as_str().unwrap().contains("Ed25519"), "{v}");
    assert_eq!(v["probe"]["leaf"]["key"], "Ed25519");
    // The same server is fine for a PC stack: the refusal is the profile's.
    let (code, _, out) = connect_json(d, &[&target, "--ca", "ed.crt", "--profile", "modern"]);
    assert_eq!(code, Some(0), "{}", text(&out));
    // devtls serve itself refuses to start with a key the profile cannot use.
    let out = support::run_in(d, &words("serve --cert ed.crt --key ed.key --port 0"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("openmv profile cannot sign"));
}

#[test]
fn tls13_only_server_has_no_common_version_with_openmv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    let (_server, port) = s_server(
        d,
        &[
            "-cert",
            "server.crt",
            "-key",
            "server.key",
            "-tls1_3",
            "-rev",
        ],
    );
    let target = format!("localhost:{port}");
    let (code, v, _) = connect_json(d, &[&target, "--ca", "server.der", "--profile", "openmv"]);
    assert_failure(
        code,
        &v,
        "no_common_version",
        device_error::FATAL_ALERT.code,
        "OSError: (-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')",
    );
    assert!(v["what"].as_str().unwrap().contains("TLS 1.2"), "{v}");
    assert_eq!(v["probe"]["version"], "TLSv1.3");
}

#[test]
fn a_peer_that_is_not_tls_or_closes_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    let port = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let (code, v, _) = connect_json(d, &[&format!("127.0.0.1:{port}"), "--ca", "server.der"]);
    assert_failure(
        code,
        &v,
        "not_tls",
        device_error::INVALID_RECORD.code,
        "-29184",
    );
    let port = raw_server(b"");
    let (code, v, _) = connect_json(d, &[&format!("127.0.0.1:{port}"), "--ca", "server.der"]);
    assert_failure(
        code,
        &v,
        "peer_closed",
        device_error::CONN_EOF.code,
        "CONN_EOF",
    );
}

#[test]
fn unusable_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    std::fs::write(d.join("junk.der"), b"not a certificate at all").unwrap();
    let out = support::run_in(d, &words("connect 127.0.0.1:1 --ca junk.der"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("junk.der"),
        "{}",
        text(&out)
    );
    let out = support::run_in(d, &words("serve --cert server.der --key server.der"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.der: holds a certificate"));
    let out = support::run_in(d, &words("connect no-port-here --ca server.der"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// `openssl x509 -req` without an extensions file makes X.509 v1
/// certificates: the device takes them, rustls-webpki cannot. devtls must say
/// that, not blame the key or the algorithm.
#[test]
fn x509_v1_certificates_are_named_as_what_devtls_cannot_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_key(d, "ca.key");
    openssl_self_signed(d, "ca.key", "ca.crt", "/CN=ca", &[]);
    openssl_key(d, "v1.key");
    openssl_signed(d, "v1.key", "/CN=localhost", "v1.crt", None);
    let (_server, port) = s_server(d, &["-cert", "v1.crt", "-key", "v1.key", "-rev"]);
    let (code, v, _) = connect_json(d, &[&format!("localhost:{port}"), "--ca", "ca.crt"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["reason"], "unverifiable", "{v}");
    assert!(v["what"].as_str().unwrap().contains("X.509 v1"), "{v}");
    assert_eq!(v["device"], Value::Null, "the device itself accepts v1");
    let out = support::run_in(
        d,
        &words("connect 127.0.0.1:1 --ca ca.crt --cert v1.crt --key v1.key"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("v1.crt: is an X.509 v1 certificate"));
}

/// The device's words for a failed verification are mbedTLS's own: the
/// `ValueError` with one line per flag as `mbedtls_x509_crt_verify_info`
/// writes it (pki's rules, `flags::value_error`), in `connect`'s JSON and
/// text output and in `serve`'s report on a client certificate.
#[test]
fn connect_and_serve_print_mbedtls_verify_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns openmv"));
    let now = OffsetDateTime::now_utc();
    let (from, until) = (now - Span::days(60), now - Span::days(30));
    cert_valid(d, "old", Role::Server, KeyType::P256, from, until);
    cert_valid(d, "oldclient", Role::Client, KeyType::P256, from, until);
    let expired = flags::value_error(flags::EXPIRED);
    let wrong_name = flags::value_error(flags::CN_MISMATCH);
    assert_eq!(
        wrong_name,
        "ValueError:\nThe certificate Common Name (CN) does not match with the expected CN"
    );

    let (_, v) = connect_to_serve(d, "server", &["--ca", "server.der", "--hostname", "camera"]);
    assert_eq!(v["device"]["printed"], wrong_name.as_str(), "{v}");
    let (_, v) = connect_to_serve(d, "old", &["--ca", "old.der", "--hostname", "localhost"]);
    assert_eq!(v["device"]["printed"], expired.as_str(), "{v}");

    // The text output: each of mbedTLS's lines on a line of its own.
    for (stem, host, line) in [
        ("server", "camera", wrong_name.lines().last().unwrap()),
        ("old", "localhost", expired.lines().last().unwrap()),
    ] {
        let cert = format!("{stem}.der");
        let key = format!("{stem}.key.der");
        let serve = Serve::start(d, &["--cert", &cert, "--key", &key, "--count", "1"]);
        let target = format!("127.0.0.1:{}", serve.port);
        let out = support::run_in(d, &["connect", &target, "--ca", &cert, "--hostname", host]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
        let at = lines
            .iter()
            .position(|l| *l == "device: ValueError:")
            .unwrap_or_else(|| panic!("no ValueError line:\n{stdout}"));
        assert!(
            lines[at + 1].starts_with(line),
            "{stem}: the flag's line follows:\n{stdout}"
        );
        serve.finish(WAIT);
    }

    // serve, refusing an expired client certificate.
    let serve = Serve::guide(d, &["--ca", "oldclient.der", "--count", "1", "--json"]);
    let target = format!("127.0.0.1:{}", serve.port);
    let client = [
        "--cert",
        "oldclient.der",
        "--key",
        "oldclient.key.der",
        "--hostname",
        "openmv",
    ];
    let (code, _, out) = connect_json(
        d,
        &[&[&target[..], "--ca", "server.der"][..], &client].concat(),
    );
    assert_eq!(code, Some(1), "{}", text(&out));
    let report = serve.report(WAIT);
    assert_eq!(report["reason"], "expired", "{report}");
    assert_eq!(report["device"]["printed"], expired.as_str(), "{report}");
    serve.finish(WAIT);
}

//! `devtls serve --dtls` and `devtls connect --dtls` against themselves,
//! GnuTLS (`--udp`) and the device peer (mbedTLS 3.6 with the device's
//! configuration), both ways,
//! with and without client certificates, for P-256, P-384 and RSA-2048.

use crate::support;

use std::time::Duration;

use support::device;
use support::net::{connect_json, Serve};
use support::peers::{gnutls_client, gnutls_server};
use support::{ok_in, text};

const WAIT: Duration = Duration::from_secs(30);
const KEYS: [&str; 3] = ["p256", "p384", "rsa2048"];

/// server.* (for localhost and 127.0.0.1) and client.* made by `devtls new`.
fn made(key: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(
        d,
        &[
            "new",
            "server",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--key",
            key,
        ],
    );
    ok_in(d, &["new", "client", "--cn", "device-1", "--key", key]);
    dir
}

fn serve_dtls(dir: &std::path::Path, mtls: bool) -> Serve {
    let mut args = vec![
        "--dtls",
        "--cert",
        "server.der",
        "--key",
        "server.key.der",
        "--count",
        "1",
        "--json",
    ];
    if mtls {
        args.extend(["--ca", "client.der"]);
    }
    Serve::start(dir, &args)
}

#[test]
fn connect_and_serve_dtls_for_every_key_type_with_and_without_client_certificates() {
    for key in KEYS {
        for mtls in [false, true] {
            let dir = made(key);
            let d = dir.path();
            let serve = serve_dtls(d, mtls);
            let target = format!("127.0.0.1:{}", serve.port);
            let mut args = vec![
                target.as_str(),
                "--dtls",
                "--ca",
                "server.der",
                "--hostname",
                "localhost",
            ];
            if mtls {
                args.extend(["--cert", "client.der", "--key", "client.key.der"]);
            }
            let (code, v, out) = connect_json(d, &args);
            assert_eq!(code, Some(0), "{key} mtls={mtls}: {}", text(&out));
            assert_eq!(v["reply"], "hello\n");
            assert_eq!(v["version"], "DTLSv1.2");
            assert_eq!(v["client_cert_requested"], mtls);
            let r = serve.report(WAIT);
            assert_eq!(r["result"], "served", "{r}");
            assert_eq!(r["version"], "DTLSv1.2");
            assert_eq!(r["received"], "hello\n");
            if mtls {
                assert_eq!(r["client_chain"][0]["subject"], "CN=device-1", "{r}");
            }
            assert!(serve.finish(WAIT).status.success());
        }
    }
}

#[test]
fn dtls_client_certificate_missing_is_diagnosed_with_the_device_words() {
    let dir = made("p256");
    let d = dir.path();
    let serve = serve_dtls(d, true);
    let target = format!("127.0.0.1:{}", serve.port);
    let (code, v, out) = connect_json(
        d,
        &[
            &target,
            "--dtls",
            "--ca",
            "server.der",
            "--hostname",
            "localhost",
        ],
    );
    assert_eq!(code, Some(1), "{}", text(&out));
    assert_eq!(v["reason"], "client_cert_missing", "{v}");
    assert_eq!(
        v["device"]["name"], "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE",
        "{v}"
    );
    let r = serve.report(WAIT);
    assert_eq!(r["result"], "failed", "{r}");
    assert_eq!(r["reason"], "client_cert_missing", "{r}");
}

#[test]
fn gnutls_cli_and_serv_over_udp_both_ways() {
    for key in KEYS {
        for mtls in [false, true] {
            let dir = made(key);
            let d = dir.path();
            // gnutls-cli --udp -> devtls serve --dtls.
            let serve = serve_dtls(d, mtls);
            let mut args = vec!["--udp", "--x509cafile", "server.crt"];
            if mtls {
                args.extend([
                    "--x509certfile",
                    "client.crt",
                    "--x509keyfile",
                    "client.key",
                ]);
            }
            let run = gnutls_client(d, serve.port, &args, "hello\n");
            let r = serve.report(WAIT);
            assert_eq!(
                r["result"], "served",
                "{key} mtls={mtls}: {r}\n{}",
                run.text
            );
            assert_eq!(r["received"], "hello\n");
            if mtls {
                assert_eq!(r["client_chain"][0]["subject"], "CN=device-1");
            }

            // devtls connect --dtls -> gnutls-serv --udp --echo.
            let mut args = vec![
                "--udp",
                "--echo",
                "--x509certfile",
                "server.crt",
                "--x509keyfile",
                "server.key",
            ];
            // gnutls-serv asks for an optional client certificate by default.
            if !mtls {
                args.push("--disable-client-cert");
            }
            if mtls {
                args.extend([
                    "--require-client-cert",
                    "--verify-client-cert",
                    "--x509cafile",
                    "client.crt",
                ]);
            }
            let server = gnutls_server(d, &args);
            let target = format!("127.0.0.1:{}", server.port);
            let mut args = vec![
                target.as_str(),
                "--dtls",
                "--ca",
                "server.der",
                "--hostname",
                "localhost",
            ];
            if mtls {
                args.extend(["--cert", "client.der", "--key", "client.key.der"]);
            }
            let (code, v, out) = connect_json(d, &args);
            assert_eq!(
                code,
                Some(0),
                "{key} mtls={mtls}: {}\n{}",
                text(&out),
                server.transcript()
            );
            assert_eq!(v["reply"], "hello\n");
            assert_eq!(v["client_cert_requested"], mtls);
        }
    }
}

#[test]
fn mbedtls_peer_over_dtls_both_ways() {
    for key in KEYS {
        for mtls in [false, true] {
            let dir = made(key);
            let d = dir.path();
            // mbedTLS client (the device's library, DER files) -> devtls serve --dtls.
            let serve = serve_dtls(d, mtls);
            let mut args = vec!["--dtls", "--ca", "server.der", "--hostname", "localhost"];
            if mtls {
                args.extend(["--cert", "client.der", "--key", "client.key.der"]);
            }
            let run = device::client(d, serve.port, &args);
            let conn = run.single();
            assert!(conn.ok, "{key} mtls={mtls}: {}", run.transcript);
            assert_eq!(conn.version.as_deref(), Some("DTLSv1.2"));
            assert_eq!(conn.received.as_deref(), Some("hello\n"));
            let r = serve.report(WAIT);
            assert_eq!(r["result"], "served", "{r}");
            if mtls {
                assert_eq!(r["client_chain"][0]["subject"], "CN=device-1");
            }

            // devtls connect --dtls -> mbedTLS server (cookie exchange as on the device).
            let mut args = vec![
                "--dtls",
                "--cert",
                "server.der",
                "--key",
                "server.key.der",
                "--count",
                "1",
            ];
            if mtls {
                args.extend(["--ca", "client.der"]);
            }
            let server = device::server(d, &args);
            let target = format!("127.0.0.1:{}", server.port);
            let mut args = vec![
                target.as_str(),
                "--dtls",
                "--ca",
                "server.der",
                "--hostname",
                "localhost",
            ];
            if mtls {
                args.extend(["--cert", "client.der", "--key", "client.key.der"]);
            }
            let (code, v, out) = connect_json(d, &args);
            assert_eq!(code, Some(0), "{key} mtls={mtls}: {}", text(&out));
            assert_eq!(v["reply"], "hello\n");
            let results = device::server_results(server, WAIT);
            let conn = results.single();
            assert!(conn.ok, "{}", results.transcript);
            assert_eq!(conn.received.as_deref(), Some("hello\n"));
            if mtls {
                assert_eq!(conn.peer_subject.as_deref(), Some("CN=device-1"));
            }
        }
    }
}

#[test]
fn nothing_listening_on_udp_is_said_in_udp_terms() {
    let dir = made("p256");
    let d = dir.path();
    let target = format!("127.0.0.1:{}", support::free_udp_port());
    let (code, v, out) = connect_json(d, &[&target, "--dtls", "--ca", "server.der"]);
    assert_eq!(code, Some(1), "{}", text(&out));
    assert_eq!(v["reason"], "connect_failed", "{v}");
    assert!(v["what"].as_str().unwrap().contains("UDP"), "{v}");
}

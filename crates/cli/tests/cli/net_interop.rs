//! `devtls connect` and `devtls serve` against real TLS peers on 127.0.0.1:
//! OpenSSL, GnuTLS and mbedTLS (the device's library), for P-256, P-384 and
//! RSA-2048 certificates made by `devtls new`, TLS 1.2 and 1.3, with and
//! without client certificates. Every case checks what was exchanged, the
//! version both sides agree on, and that verification was on.
//!
//! The three key types run in parallel threads; every wait is bounded.

use crate::support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::device;
use support::interactive::talk;
use support::net::{connect_json, Serve};
use support::peers::{gnutls_server, openssl_client, openssl_server, LineServer, WAIT};
use support::{ok_in, text};

const KEYS: [&str; 3] = ["p256", "p384", "rsa2048"];

/// Server files for `localhost`/127.0.0.1 and a client identity `sensor-01`,
/// both with `key`, made by `devtls new`.
fn fixture(key: &str) -> tempfile::TempDir {
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
    ok_in(d, &["new", "client", "--cn", "sensor-01", "--key", key]);
    dir
}

/// Runs `case` for every key type in parallel, each in its own fixture.
fn for_each_key(case: impl Fn(&str, &Path) + Sync) {
    std::thread::scope(|s| {
        for key in KEYS {
            let case = &case;
            s.spawn(move || {
                let dir = fixture(key);
                case(key, dir.path());
            });
        }
    });
}

/// The version flags of each protocol version, per tool, and the profile
/// devtls needs for it (the default `openmv` profile is the device: TLS 1.2 only).
#[derive(Clone, Copy, Debug)]
struct Version {
    openssl: &'static str,
    openssl_name: &'static str,
    gnutls_priority: &'static str,
    gnutls_name: &'static str,
    profile: &'static str,
}

const TLS12: Version = Version {
    openssl: "-tls1_2",
    openssl_name: "TLSv1.2",
    gnutls_priority: "NORMAL:-VERS-ALL:+VERS-TLS1.2",
    gnutls_name: "TLS1.2",
    profile: "openmv",
};
const TLS13: Version = Version {
    openssl: "-tls1_3",
    openssl_name: "TLSv1.3",
    gnutls_priority: "NORMAL:-VERS-ALL:+VERS-TLS1.3",
    gnutls_name: "TLS1.3",
    profile: "modern",
};

/// `devtls connect ... --json` and its parsed report.
struct Connected {
    code: Option<i32>,
    report: Value,
    shown: String,
}

fn connect(dir: &Path, port: u16, version: &str, mtls: bool, send: &str) -> Connected {
    connect_with(dir, port, version, mtls, send, "server.der")
}

fn connect_with(
    dir: &Path,
    port: u16,
    profile: &str,
    mtls: bool,
    send: &str,
    anchor: &str,
) -> Connected {
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![
        &addr,
        "--ca",
        anchor,
        "--hostname",
        "localhost",
        "--profile",
        profile,
        "--send",
        send,
    ];
    if mtls {
        args.extend(["--cert", "client.der", "--key", "client.key.der"]);
    }
    let (code, report, out) = connect_json(dir, &args);
    Connected {
        code,
        report,
        shown: text(&out),
    }
}

impl Connected {
    fn field(&self, name: &str) -> String {
        match &self.report[name] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// Asserts a completed, verified exchange with `reply` on `version`.
    fn assert_ok(&self, what: &str, reply: &str, version: &str) {
        assert_eq!(self.code, Some(0), "{what}: {}", self.shown);
        assert_eq!(self.field("reply"), reply, "{what}: {}", self.shown);
        assert!(
            self.field("version").contains(version),
            "{what}: version {} not {version}: {}",
            self.field("version"),
            self.shown
        );
        assert_eq!(
            self.report["verified"],
            Value::Bool(true),
            "{what}: {}",
            self.shown
        );
    }
}

fn reversed(line: &str) -> String {
    let mut r: String = line.trim_end().chars().rev().collect();
    r.push('\n');
    r
}

// ---------------------------------------------------------------- OpenSSL

/// `openssl s_server -rev` for one client: it answers each line reversed,
/// so the reply proves the bytes went through it.
fn s_server(dir: &Path, version: Version, mtls: bool) -> LineServer {
    let mut args = vec!["-cert", "server.crt", "-key", "server.key", version.openssl];
    args.extend(["-naccept", "1", "-rev"]);
    if mtls {
        args.extend([
            "-Verify",
            "1",
            "-CAfile",
            "client.crt",
            "-verify_return_error",
        ]);
    }
    openssl_server(dir, &args)
}

/// The arguments `devtls serve` gets for one client on `version`.
fn serve_args(version: Version, mtls: bool) -> Vec<&'static str> {
    let mut args = vec!["--cert", "server.der", "--key", "server.key.der"];
    args.extend(["--profile", version.profile, "--count", "1"]);
    if mtls {
        args.extend(["--ca", "client.der"]);
    }
    args
}

#[test]
fn devtls_connect_against_openssl_s_server() {
    for_each_key(|key, d| {
        for version in [TLS12, TLS13] {
            for mtls in [false, true] {
                let what = format!("{key} {} mtls={mtls}", version.openssl_name);
                let mut server = s_server(d, version, mtls);
                let send = format!("ping {key}\n");
                let c = connect(d, server.port, version.profile, mtls, &send);
                c.assert_ok(&what, &reversed(&send), version.openssl_name);
                server.finish(WAIT);
                let seen = server.transcript();
                assert!(
                    seen.contains(&format!("Protocol version: {}", version.openssl_name)),
                    "{what}: s_server saw:\n{seen}"
                );
                if mtls {
                    assert!(
                        seen.contains("Peer certificate: CN = sensor-01")
                            && seen.contains("Verification: OK"),
                        "{what}: s_server did not verify the client:\n{seen}"
                    );
                }
            }
        }
        // Verification is on: the client's own certificate is not the server's anchor.
        let server = s_server(d, TLS12, false);
        let c = connect_with(d, server.port, "openmv", false, "x\n", "client.der");
        assert_eq!(c.code, Some(1), "{key}: wrong anchor accepted: {}", c.shown);
    });
}

#[test]
fn openssl_s_client_against_devtls_serve() {
    for_each_key(|key, d| {
        for version in [TLS12, TLS13] {
            for mtls in [false, true] {
                let what = format!("{key} {} mtls={mtls}", version.openssl_name);
                let server = Serve::start(d, &serve_args(version, mtls));
                let mut args = vec!["-servername", "localhost", "-verify_hostname", "localhost"];
                args.extend(["-CAfile", "server.crt", "-verify_return_error"]);
                // -ign_eof: wait for the server's reply and close, not for our stdin.
                args.extend([version.openssl, "-ign_eof"]);
                if mtls {
                    args.extend(["-cert", "client.crt", "-key", "client.key"]);
                }
                let sent = format!("from s_client {key}\n");
                let run = openssl_client(d, server.port, &args, &sent);
                assert!(
                    run.success()
                        && run
                            .text
                            .contains(&format!("New, {}, Cipher is", version.openssl_name))
                        && run.text.contains("Verify return code: 0 (ok)")
                        && run.text.lines().any(|l| l == "hello"),
                    "{what}: s_client saw:\n{}",
                    run.text
                );
                assert_served(&what, server, &sent, mtls);
            }
        }
    });
}

/// `devtls serve --count 1` served its one client and printed it: the
/// version, what it sent, and its certificate under mTLS.
fn assert_served(what: &str, server: Serve, sent: &str, mtls: bool) {
    let needle = format!("received {sent:?}");
    let line = loop {
        let line = server.line(WAIT);
        if line.contains(&needle) {
            break line;
        }
    };
    assert!(line.contains("TLSv1."), "{what}: {line}");
    if mtls {
        assert!(
            line.contains("client CN=sensor-01"),
            "{what}: serve did not report the client certificate: {line}"
        );
    }
    let out = server.finish(WAIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: serve --count 1 did not finish well: {}",
        text(&out)
    );
}

// ---------------------------------------------------------------- GnuTLS

#[test]
fn gnutls_both_ways() {
    for_each_key(|key, d| {
        for version in [TLS12, TLS13] {
            for mtls in [false, true] {
                let what = format!("{key} {} mtls={mtls}", version.gnutls_name);
                // devtls connect -> gnutls-serv --echo
                let mut args = vec![
                    "--x509certfile",
                    "server.crt",
                    "--x509keyfile",
                    "server.key",
                ];
                args.extend(["--echo", "--priority", version.gnutls_priority]);
                if mtls {
                    args.extend(["--require-client-cert", "--verify-client-cert"]);
                    args.extend(["--x509cafile", "client.crt"]);
                }
                let mut server = gnutls_server(d, &args);
                let send = format!("echo {key}\n");
                let c = connect(d, server.port, version.profile, mtls, &send);
                c.assert_ok(&what, &send, version.openssl_name);
                server.finish(std::time::Duration::ZERO);
                let seen = server.transcript();
                assert!(
                    seen.contains(&format!("- Version: {}", version.gnutls_name)),
                    "{what}: gnutls-serv saw:\n{seen}"
                );
                if mtls {
                    assert!(
                        seen.contains("Subject: CN=sensor-01")
                            && seen.contains("The certificate is trusted"),
                        "{what}: gnutls-serv did not verify the client:\n{seen}"
                    );
                }

                // gnutls-cli -> devtls serve
                let server = Serve::start(d, &serve_args(version, mtls));
                let mut cmd = Command::new("gnutls-cli");
                cmd.current_dir(d).args([
                    "-p",
                    &server.port.to_string(),
                    "127.0.0.1",
                    "--sni-hostname",
                    "localhost",
                    "--verify-hostname",
                    "localhost",
                    "--x509cafile",
                    "server.crt",
                    "--priority",
                    version.gnutls_priority,
                ]);
                if mtls {
                    cmd.args([
                        "--x509certfile",
                        "client.crt",
                        "--x509keyfile",
                        "client.key",
                    ]);
                }
                // gnutls-cli hangs up when its stdin closes: keep it open until the reply.
                let sent = format!("from gnutls {key}\n");
                let seen = talk(&mut cmd, &sent, "hello", WAIT);
                assert!(
                    seen.contains(&format!("({}-X.509)", version.gnutls_name))
                        || seen.contains(&format!("({})", version.gnutls_name)),
                    "{what}: gnutls-cli saw:\n{seen}"
                );
                assert!(
                    seen.contains("The certificate is trusted")
                        && seen.contains("Handshake was completed"),
                    "{what}: gnutls-cli saw:\n{seen}"
                );
                assert_served(&what, server, &sent, mtls);
            }
        }
    });
}

// ---------------------------------------------------------------- mbedTLS

#[test]
fn mbedtls_peer_both_ways() {
    for_each_key(|key, d| {
        for mtls in [false, true] {
            let what = format!("{key} mbedTLS mtls={mtls}");
            // devtls connect -> mbedTLS server
            let reply = format!("reply from mbedtls {key}\n");
            let mut args = vec!["--cert", "server.der", "--key", "server.key.der"];
            args.extend(["--count", "1", "--reply", &reply, "--timeout", "20"]);
            if mtls {
                args.extend(["--ca", "client.der"]);
            }
            let server = device::server(d, &args);
            let send = format!("to mbedtls {key}\n");
            let c = connect(d, server.port, "openmv", mtls, &send);
            c.assert_ok(&what, &reply, "TLSv1.2");
            let run = device::server_results(server, WAIT);
            let conn = run.single();
            assert!(conn.ok && run.exited(0), "{what}: {}", run.transcript);
            assert_eq!(conn.received.as_deref(), Some(send.as_str()), "{what}");
            if mtls {
                assert!(
                    conn.peer_subject
                        .as_deref()
                        .unwrap_or("")
                        .contains("sensor-01"),
                    "{what}: {}",
                    run.transcript
                );
            }

            // mbedTLS client -> devtls serve (the device's side: DER, one anchor, TLS 1.2)
            let server = Serve::start(d, &serve_args(TLS12, mtls));
            let sent = format!("from mbedtls {key}\n");
            let mut args = vec!["--ca", "server.der", "--hostname", "localhost"];
            args.extend(["--send", &sent, "--timeout", "15"]);
            if mtls {
                args.extend(["--cert", "client.der", "--key", "client.key.der"]);
            }
            let run = device::client(d, server.port, &args);
            let conn = run.single();
            assert!(conn.ok && run.exited(0), "{what}: {}", run.transcript);
            assert_eq!(conn.received.as_deref(), Some("hello\n"), "{what}");
            assert_eq!(conn.version.as_deref(), Some("TLSv1.2"), "{what}");
            assert_served(&what, server, &sent, mtls);
        }
    });
}

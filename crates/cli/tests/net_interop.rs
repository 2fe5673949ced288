//! `devtls connect` and `devtls serve` against real TLS peers on 127.0.0.1:
//! OpenSSL, GnuTLS and mbedTLS (the device's library), for P-256, P-384 and
//! RSA-2048 certificates made by `devtls new`, TLS 1.2 and 1.3, with and
//! without client certificates. Every case checks what was exchanged, the
//! version both sides agree on, and that verification was on.
//!
//! The three key types run in parallel threads; every wait is bounded.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::serve::{talk, Running, Serve};
use support::{ok_in, run_in, text};

const KEYS: [&str; 3] = ["p256", "p384", "rsa2048"];
const WAIT: Duration = Duration::from_secs(15);

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
        "connect",
        &addr,
        "--ca",
        anchor,
        "--hostname",
        "localhost",
        "--profile",
        profile,
        "--send",
        send,
        "--json",
    ];
    if mtls {
        args.extend(["--cert", "client.der", "--key", "client.key.der"]);
    }
    let out = run_in(dir, &args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Connected {
        code: out.status.code(),
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
fn s_server(dir: &Path, version: Version, mtls: bool) -> (Running, u16) {
    let port = support::free_tcp_port();
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args([
        "s_server",
        "-accept",
        &format!("127.0.0.1:{port}"),
        "-cert",
        "server.crt",
        "-key",
        "server.key",
        version.openssl,
        "-naccept",
        "1",
        "-rev",
    ]);
    if mtls {
        cmd.args([
            "-Verify",
            "1",
            "-CAfile",
            "client.crt",
            "-verify_return_error",
        ]);
    }
    // Ready when it says ACCEPT (a probe connection would use up its one accept).
    let server = Running::spawn("openssl s_server", &mut cmd);
    assert!(
        server.wait_lines("ACCEPT", 1, WAIT),
        "s_server did not start: {}",
        server.stderr()
    );
    (server, port)
}

#[test]
fn devtls_connect_against_openssl_s_server() {
    for_each_key(|key, d| {
        for version in [TLS12, TLS13] {
            for mtls in [false, true] {
                let what = format!("{key} {} mtls={mtls}", version.openssl_name);
                let (server, port) = s_server(d, version, mtls);
                let send = format!("ping {key}\n");
                let c = connect(d, port, version.profile, mtls, &send);
                c.assert_ok(&what, &reversed(&send), version.openssl_name);
                let ended = server.finish(WAIT);
                let seen = ended.stdout + &ended.stderr;
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
        let (_server, port) = s_server(d, TLS12, false);
        let c = connect_with(d, port, "openmv", false, "x\n", "client.der");
        assert_eq!(c.code, Some(1), "{key}: wrong anchor accepted: {}", c.shown);
    });
}

#[test]
fn openssl_s_client_against_devtls_serve() {
    for_each_key(|key, d| {
        for version in [TLS12, TLS13] {
            for mtls in [false, true] {
                let what = format!("{key} {} mtls={mtls}", version.openssl_name);
                let mut args = vec!["--cert", "server.der", "--key", "server.key.der"];
                args.extend(["--profile", version.profile, "--count", "1"]);
                if mtls {
                    args.extend(["--ca", "client.der"]);
                }
                let server = Serve::start(d, &args);
                let mut cmd = Command::new("openssl");
                cmd.current_dir(d).args([
                    "s_client",
                    "-connect",
                    &server.addr(),
                    "-servername",
                    "localhost",
                    "-verify_hostname",
                    "localhost",
                    "-CAfile",
                    "server.crt",
                    "-verify_return_error",
                    version.openssl,
                ]);
                if mtls {
                    cmd.args(["-cert", "client.crt", "-key", "client.key"]);
                }
                let seen = talk(&mut cmd, &format!("from s_client {key}\n"), "\nhello", WAIT);
                assert!(
                    seen.contains(&format!("New, {}, Cipher is", version.openssl_name))
                        && seen.contains("Verify return code: 0 (ok)"),
                    "{what}: s_client saw:\n{seen}"
                );
                let ended = server.finish(WAIT);
                assert_eq!(
                    ended.status.and_then(|s| s.code()),
                    Some(0),
                    "{what}: serve --count 1 did not finish: {}",
                    ended.stderr
                );
                assert_client_line(&what, &ended.stdout, &format!("from s_client {key}"), mtls);
            }
        }
    });
}

/// `devtls serve` reported the client: what it sent, and its certificate under mTLS.
fn assert_client_line(what: &str, stdout: &str, sent: &str, mtls: bool) {
    assert!(
        stdout.contains(sent),
        "{what}: serve did not print what the client sent:\n{stdout}"
    );
    if mtls {
        assert!(
            stdout.contains("CN=sensor-01"),
            "{what}: serve did not report the client certificate:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------- GnuTLS

#[test]
fn gnutls_both_ways() {
    for_each_key(|key, d| {
        for version in [TLS12, TLS13] {
            for mtls in [false, true] {
                let what = format!("{key} {} mtls={mtls}", version.gnutls_name);
                // devtls connect -> gnutls-serv --echo
                let port = support::free_tcp_port();
                let mut cmd = Command::new("gnutls-serv");
                cmd.current_dir(d).args([
                    "--port",
                    &port.to_string(),
                    "--x509certfile",
                    "server.crt",
                    "--x509keyfile",
                    "server.key",
                    "--echo",
                    "--priority",
                    version.gnutls_priority,
                ]);
                if mtls {
                    cmd.args([
                        "--require-client-cert",
                        "--verify-client-cert",
                        "--x509cafile",
                        "client.crt",
                    ]);
                }
                let server = Running::spawn("gnutls-serv", &mut cmd);
                support::wait_for_tcp(port, WAIT);
                let send = format!("echo {key}\n");
                let c = connect(d, port, version.profile, mtls, &send);
                c.assert_ok(&what, &send, version.openssl_name);
                let ended = server.finish(Duration::ZERO);
                let seen = ended.stdout + &ended.stderr;
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
                let mut args = vec!["--cert", "server.der", "--key", "server.key.der"];
                args.extend(["--profile", version.profile, "--count", "1"]);
                if mtls {
                    args.extend(["--ca", "client.der"]);
                }
                let server = Serve::start(d, &args);
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
                let seen = talk(&mut cmd, &format!("from gnutls {key}\n"), "\nhello", WAIT);
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
                let ended = server.finish(WAIT);
                assert_eq!(
                    ended.status.and_then(|s| s.code()),
                    Some(0),
                    "{what}: {}",
                    ended.stderr
                );
                assert_client_line(&what, &ended.stdout, &format!("from gnutls {key}"), mtls);
            }
        }
    });
}

// ---------------------------------------------------------------- mbedTLS

fn mbedtls_peer() -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(support::peer_script("mbedtls_peer.py"));
    cmd
}

#[test]
fn mbedtls_peer_both_ways() {
    for_each_key(|key, d| {
        for mtls in [false, true] {
            let what = format!("{key} mbedTLS mtls={mtls}");
            // devtls connect -> mbedTLS server
            let reply = format!("reply from mbedtls {key}\n");
            let mut cmd = mbedtls_peer();
            cmd.current_dir(d).args([
                "server",
                "--port",
                "0",
                "--cert",
                "server.der",
                "--key",
                "server.key.der",
                "--count",
                "1",
                "--reply",
                &reply,
                "--timeout",
                "20",
            ]);
            if mtls {
                cmd.args(["--ca", "client.der"]);
            }
            let server = Running::spawn("mbedtls server", &mut cmd);
            let listening: Value = server
                .first_line(WAIT)
                .and_then(|l| serde_json::from_str(&l).ok())
                .unwrap_or_default();
            let port = listening["listening"]
                .as_u64()
                .unwrap_or_else(|| panic!("mbedTLS server did not start: {}", server.stderr()))
                as u16;
            let send = format!("to mbedtls {key}\n");
            let c = connect(d, port, "openmv", mtls, &send);
            c.assert_ok(&what, &reply, "1.2");
            let ended = server.finish(WAIT);
            let lines: Vec<&str> = ended.stdout.lines().collect();
            let conn: Value = serde_json::from_str(lines.last().unwrap_or(&"")).unwrap_or_default();
            assert_eq!(conn["ok"], Value::Bool(true), "{what}: {lines:?}");
            assert_eq!(
                conn["received"],
                Value::String(send.clone()),
                "{what}: {lines:?}"
            );
            if mtls {
                assert!(
                    conn["peer_subject"]
                        .as_str()
                        .unwrap_or("")
                        .contains("sensor-01"),
                    "{what}: {lines:?}"
                );
            }

            // mbedTLS client -> devtls serve
            let mut args = vec![
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
            let server = Serve::start(d, &args);
            let sent = format!("from mbedtls {key}\n");
            let mut cmd = mbedtls_peer();
            cmd.current_dir(d).args([
                "client",
                "--host",
                "127.0.0.1",
                "--port",
                &server.port.to_string(),
                "--ca",
                "server.der",
                "--hostname",
                "localhost",
                "--send",
                &sent,
                "--timeout",
                "15",
            ]);
            if mtls {
                cmd.args(["--cert", "client.der", "--key", "client.key.der"]);
            }
            let out = support::Peer::spawn("mbedtls client", &mut cmd).finish(WAIT);
            let conn: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            assert_eq!(conn["ok"], Value::Bool(true), "{what}: {}", text(&out));
            assert_eq!(
                conn["received"],
                Value::String("hello\n".into()),
                "{what}: {}",
                text(&out)
            );
            assert!(
                conn["version"].as_str().unwrap_or("").contains("1.2"),
                "{what}: {}",
                text(&out)
            );
            let ended = server.finish(WAIT);
            assert_eq!(
                ended.status.and_then(|s| s.code()),
                Some(0),
                "{what}: {}",
                ended.stderr
            );
            assert_client_line(&what, &ended.stdout, sent.trim_end(), mtls);
        }
    });
}

//! `devtls serve` and `devtls connect`: exchanges that must complete, with
//! each other and with OpenSSL, and a server that survives bad clients.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use support::net::{
    connect_json, openssl_key, openssl_self_signed, openssl_signed, s_server, Serve,
};
use support::{ok_in, text, words};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn connect_and_serve_complete_for_every_key_type() {
    for key in ["p256", "p384", "rsa2048"] {
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
        let serve = Serve::guide(d, &["--count", "1"]);
        let target = format!("127.0.0.1:{}", serve.port);
        let (code, v, out) = connect_json(d, &[&target, "--ca", "server.der"]);
        assert_eq!(code, Some(0), "{key}: {}", text(&out));
        assert_eq!(v["reply"], "hello\n", "{key}");
        assert_eq!(v["version"], "TLSv1.2", "{key}: openmv speaks TLS 1.2 only");
        assert_eq!(v["verified"], true);
        assert_eq!(v["chain"][0]["subject"], "CN=localhost");
        let expected_key = match key {
            "p256" => "EC P-256",
            "p384" => "EC P-384",
            _ => "RSA 2048",
        };
        assert_eq!(v["chain"][0]["key"], expected_key);
        let line = serve.line(WAIT);
        assert!(
            line.contains("TLSv1.2") && line.contains("received \"hello\\n\""),
            "{key}: serve printed {line:?}"
        );
        assert!(
            serve.finish(WAIT).status.success(),
            "{key}: serve --count 1 exits 0"
        );
    }
}

#[test]
fn modern_profile_negotiates_tls13_between_devtls_peers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    let serve = Serve::guide(d, &["--count", "1", "--profile", "modern"]);
    let target = format!("localhost:{}", serve.port);
    let (code, v, out) = connect_json(d, &[&target, "--ca", "server.der", "--profile", "modern"]);
    assert_eq!(code, Some(0), "{}", text(&out));
    assert_eq!(v["version"], "TLSv1.3");
    assert!(serve.finish(WAIT).status.success());
}

#[test]
fn mutual_tls_shows_the_client_subject() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --ip 127.0.0.1"));
    ok_in(d, &words("new client --cn sensor-01"));
    let serve = Serve::guide(d, &["--ca", "client.der", "--count", "1", "--json"]);
    let target = format!("127.0.0.1:{}", serve.port);
    let (code, v, out) = connect_json(
        d,
        &[
            &target,
            "--ca",
            "server.der",
            "--cert",
            "client.der",
            "--key",
            "client.key.der",
        ],
    );
    assert_eq!(code, Some(0), "{}", text(&out));
    assert_eq!(v["client_cert_requested"], true);
    let report = serve.report(WAIT);
    assert_eq!(report["result"], "served", "{report}");
    assert_eq!(report["client_chain"][0]["subject"], "CN=sensor-01");
    assert_eq!(report["received"], "hello\n");
    assert!(serve.finish(WAIT).status.success());
}

#[test]
fn insecure_completes_and_warns_that_anyone_could_be_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    let serve = Serve::guide(d, &["--count", "1"]);
    // No --ca and a self-signed server: only --insecure gets through.
    let target = format!("127.0.0.1:{}", serve.port);
    let (code, v, out) = connect_json(d, &[&target, "--hostname", "not-the-name", "--insecure"]);
    assert_eq!(code, Some(0), "{}", text(&out));
    assert_eq!(v["verified"], false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NOT verified")
            && stderr.contains("Anyone in the middle could be the peer"),
        "{stderr}"
    );
    serve.finish(WAIT);
}

#[test]
fn device_cn_fallback_accepts_a_certificate_without_san() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No --dns/--ip: the certificate has no SAN, only CN=localhost.
    ok_in(d, &words("new server --cn localhost"));
    let serve = Serve::guide(d, &["--count", "2"]);
    let target = format!("127.0.0.1:{}", serve.port);
    let (code, v, out) = connect_json(
        d,
        &[&target, "--ca", "server.der", "--hostname", "localhost"],
    );
    assert_eq!(code, Some(0), "openmv matches the CN: {}", text(&out));
    assert_eq!(v["chain"][0]["names"], serde_json::json!([]));
    // A PC stack has no CN fallback.
    let (code, v, _) = connect_json(
        d,
        &[
            &target,
            "--ca",
            "server.der",
            "--hostname",
            "localhost",
            "--profile",
            "modern",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(v["reason"], "wrong_host_name");
    serve.finish(WAIT);
}

#[test]
fn connect_talks_to_openssl_s_server_tls12_and_tls13() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    for (flag, profile, version) in [
        ("-tls1_2", "openmv", "TLSv1.2"),
        ("-tls1_3", "modern", "TLSv1.3"),
    ] {
        // -rev answers each line reversed: proof the server got our text.
        let (_server, port) = s_server(
            d,
            &["-cert", "server.crt", "-key", "server.key", "-rev", flag],
        );
        let target = format!("127.0.0.1:{port}");
        let (code, v, out) =
            connect_json(d, &[&target, "--ca", "server.der", "--profile", profile]);
        assert_eq!(code, Some(0), "{flag}: {}", text(&out));
        assert_eq!(v["version"], version);
        assert!(
            v["reply"].as_str().unwrap().contains("olleh"),
            "{flag}: {v}"
        );
    }
}

#[test]
fn openssl_s_client_gets_hello_from_serve_with_and_without_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost"));
    ok_in(d, &words("new client --cn sensor-01"));
    for mtls in [false, true] {
        let mut args = vec![
            "--cert",
            "server.crt",
            "--key",
            "server.key",
            "--count",
            "1",
        ];
        if mtls {
            args.extend(["--ca", "client.crt"]);
        }
        let serve = Serve::start(d, &args);
        let connect = format!("127.0.0.1:{}", serve.port);
        let mut cmd = support::tool("openssl");
        cmd.current_dir(d).args([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-CAfile",
            "server.crt",
            "-verify_hostname",
            "localhost",
            "-verify_return_error",
            "-quiet",
        ]);
        if mtls {
            cmd.args(["-cert", "client.crt", "-key", "client.key"]);
        }
        let mut client = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        client
            .stdin
            .take()
            .unwrap()
            .write_all(b"hi from openssl\n")
            .unwrap();
        let client = support::Peer {
            child: client,
            name: "s_client".into(),
        }
        .finish(WAIT);
        assert!(
            String::from_utf8_lossy(&client.stdout).contains("hello"),
            "mtls={mtls}: {}",
            text(&client)
        );
        let line = serve.line(WAIT);
        assert!(line.contains("received \"hi from openssl\\n\""), "{line}");
        if mtls {
            assert!(line.contains("client CN=sensor-01"), "{line}");
        }
        assert!(serve.finish(WAIT).status.success());
    }
}

#[test]
fn serve_survives_garbage_stalled_and_vanishing_clients() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --ip 127.0.0.1"));
    let serve = Serve::guide(d, &["--count", "4", "--json", "--timeout", "2"]);
    let addr = ("127.0.0.1", serve.port);
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let _stalled = TcpStream::connect(addr).unwrap();
    drop(TcpStream::connect(addr).unwrap());
    let (code, v, out) = connect_json(
        d,
        &[&format!("127.0.0.1:{}", serve.port), "--ca", "server.der"],
    );
    assert_eq!(
        code,
        Some(0),
        "a good client is still served: {}",
        text(&out)
    );
    assert_eq!(v["reply"], "hello\n");
    let mut reasons: Vec<String> = (0..4)
        .map(|_| {
            let r = serve.report(WAIT);
            r.get("reason")
                .map_or_else(|| r["result"].to_string(), |x| x.to_string())
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "\"not_tls\"",
            "\"peer_closed\"",
            "\"served\"",
            "\"timeout\""
        ],
        "one report per client"
    );
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest);
    let out = serve.finish(WAIT);
    assert_eq!(out.status.code(), Some(1), "some clients failed: exit 1");
}

/// The device guide's own OpenSSL commands make CA:TRUE self-signed
/// certificates; the device trusts them as their own anchor, so devtls must too.
#[test]
fn guide_openssl_certificates_work_both_ways_with_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (stem, subj) in [("server", "/CN=openmv"), ("client", "/CN=sensor-01")] {
        let (key, crt) = (format!("{stem}.key"), format!("{stem}.crt"));
        openssl_key(d, &key);
        let san = ["-addext", "subjectAltName=DNS:openmv,IP:127.0.0.1"];
        openssl_self_signed(d, &key, &crt, subj, &san);
        let der = format!("{stem}.der");
        support::openssl_ok(d, &["x509", "-in", &crt, "-outform", "DER", "-out", &der]);
        let key_der = format!("{stem}.key.der");
        support::openssl_ok(
            d,
            &["pkey", "-in", &key, "-outform", "DER", "-out", &key_der],
        );
    }
    let ca_flag = support::openssl_ok(d, &words("x509 -in server.crt -noout -text"));
    assert!(
        String::from_utf8_lossy(&ca_flag.stdout).contains("CA:TRUE"),
        "the guide's certs are CA:TRUE"
    );
    let serve = Serve::start(
        d,
        &[
            "--cert",
            "server.crt",
            "--key",
            "server.key",
            "--ca",
            "client.crt",
            "--count",
            "1",
            "--json",
        ],
    );
    let target = format!("127.0.0.1:{}", serve.port);
    let (code, v, out) = connect_json(
        d,
        &[
            &target,
            "--ca",
            "server.der",
            "--hostname",
            "openmv",
            "--cert",
            "client.der",
            "--key",
            "client.key.der",
        ],
    );
    assert_eq!(code, Some(0), "{}", text(&out));
    assert_eq!(v["reply"], "hello\n");
    let report = serve.report(WAIT);
    assert_eq!(
        report["client_chain"][0]["subject"], "CN=sensor-01",
        "{report}"
    );
    // The name is still checked for such a certificate.
    let serve2 = Serve::start(
        d,
        &[
            "--cert",
            "server.crt",
            "--key",
            "server.key",
            "--count",
            "1",
        ],
    );
    let (code, v, _) = connect_json(
        d,
        &[
            &format!("127.0.0.1:{}", serve2.port),
            "--ca",
            "server.der",
            "--hostname",
            "camera",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(v["reason"], "wrong_host_name");
}

/// `serve --crl`: a device whose certificate the CA revoked is refused, its
/// sibling from the same CA is served. CA, certificates and CRL by OpenSSL.
#[test]
fn serve_refuses_a_client_revoked_by_the_crl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca = fleet\n[fleet]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         default_md = sha256\ndefault_crl_days = 7\n",
    )
    .unwrap();
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("crlnumber"), "01\n").unwrap();
    std::fs::write(
        d.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let ossl = |args: &[&str]| support::openssl_ok(d, args);
    openssl_key(d, "ca.key");
    openssl_self_signed(d, "ca.key", "ca.crt", "/CN=fleet-ca", &[]);
    for dev in ["dev1", "dev2"] {
        let key = format!("{dev}.key");
        openssl_key(d, &key);
        openssl_signed(
            d,
            &key,
            &format!("/CN={dev}"),
            &format!("{dev}.crt"),
            Some("ext.cnf"),
        );
    }
    ossl(&[
        "ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt", "-revoke", "dev2.crt",
    ]);
    ossl(&[
        "ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt", "-gencrl", "-out",
        "crl.pem",
    ]);
    ossl(&[
        "crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der",
    ]);
    ok_in(d, &words("new server --ip 127.0.0.1"));

    let serve = Serve::guide(
        d,
        &[
            "--ca", "ca.crt", "--crl", "crl.der", "--count", "2", "--json",
        ],
    );
    let target = format!("127.0.0.1:{}", serve.port);
    let (code, v, out) = connect_json(
        d,
        &[
            &target,
            "--ca",
            "server.der",
            "--cert",
            "dev1.crt",
            "--key",
            "dev1.key",
        ],
    );
    assert_eq!(code, Some(0), "{}", text(&out));
    assert_eq!(v["reply"], "hello\n");
    let (code, v, _) = connect_json(
        d,
        &[
            &target,
            "--ca",
            "server.der",
            "--cert",
            "dev2.crt",
            "--key",
            "dev2.key",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(v["reason"], "client_cert_rejected", "{v}");
    let mut reports: Vec<String> = (0..2)
        .map(|_| {
            let r = serve.report(WAIT);
            match r["result"].as_str() {
                Some("served") => format!("served {}", r["client_chain"][0]["subject"]),
                _ => r["reason"].to_string(),
            }
        })
        .collect();
    reports.sort();
    assert_eq!(reports, ["\"revoked\"", "served \"CN=dev1\""]);
}

//! `devtls doctor`: the device's verdict on real servers (openssl s_server and
//! gnutls-serv on 127.0.0.1 presenting chains this test builds), checked
//! against what the device's own stack (mbedTLS 3.6.5 built with the device's
//! configuration, `support::device`) does with the same server: one DER
//! anchor, the same host name, the same clock. Every row of the agreement
//! table is asserted: verdict and mbedTLS error code.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::doctor::{serve, Pki};
use support::peers::LineServer;
use support::{run_in, text, words};

struct Case<'a> {
    name: &'a str,
    server: LineServer,
    /// The server mbedTLS is tried against, when it must differ (the clock
    /// scenario: a chain that is not yet valid now; a gnutls-serv that a
    /// refused DTLS handshake leaves answering nobody). Doctor's server is
    /// stopped before mbedTLS runs.
    mbedtls_server: Option<LineServer>,
    ca: &'a str,
    hostname: &'a str,
    doctor_extra: Vec<&'a str>,
    mbedtls_extra: Vec<&'a str>,
    /// What doctor must say: None works, Some(text in the first failure's device_says).
    expect: Option<&'a str>,
    /// Text the fix must contain.
    fix: Option<&'a str>,
    /// A documented difference between doctor and the device: the device is
    /// then expected to do the opposite of doctor (none today).
    known_difference: Option<&'a str>,
}

impl<'a> Case<'a> {
    /// A row of the agreement table: `name` against `server`, the device
    /// anchoring the test root and passing `localhost`; it must work unless
    /// [`Case::fails`] says otherwise.
    fn new(name: &'a str, server: LineServer) -> Self {
        Case {
            name,
            server,
            mbedtls_server: None,
            ca: "t-root.der",
            hostname: "localhost",
            doctor_extra: Vec::new(),
            mbedtls_extra: Vec::new(),
            expect: None,
            fix: None,
            known_difference: None,
        }
    }

    /// The device's anchor file.
    fn ca(mut self, ca: &'a str) -> Self {
        self.ca = ca;
        self
    }

    /// The `server_hostname` the device passes.
    fn host(mut self, hostname: &'a str) -> Self {
        self.hostname = hostname;
        self
    }

    /// Arguments for doctor and the device peer alike (`--dtls`, `--cert` ...).
    fn both(self, args: &[&'a str]) -> Self {
        self.doctor(args).mbedtls(args)
    }

    /// Arguments for doctor only.
    fn doctor(mut self, args: &[&'a str]) -> Self {
        self.doctor_extra.extend_from_slice(args);
        self
    }

    /// Arguments for the device peer only.
    fn mbedtls(mut self, args: &[&'a str]) -> Self {
        self.mbedtls_extra.extend_from_slice(args);
        self
    }

    /// The server the device peer is tried against, when it must differ.
    fn mbedtls_server(mut self, server: LineServer) -> Self {
        self.mbedtls_server = Some(server);
        self
    }

    /// The device fails, and doctor's first failure says `expect`.
    fn fails(mut self, expect: &'a str) -> Self {
        self.expect = Some(expect);
        self
    }

    /// A fix must mention `fix`.
    fn fix(mut self, fix: &'a str) -> Self {
        self.fix = Some(fix);
        self
    }
}

struct Row {
    name: String,
    doctor: String,
    mbedtls: String,
    agree: String,
}

fn doctor_json(dir: &Path, port: u16, case: &Case) -> (Value, i32) {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec![
        "doctor",
        target.as_str(),
        "--ca",
        case.ca,
        "--hostname",
        case.hostname,
        "--json",
        "--timeout",
        "5",
    ];
    args.extend(case.doctor_extra.iter().copied());
    let out = run_in(dir, &args);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: doctor printed no JSON ({e}):\n{}",
            case.name,
            text(&out)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

fn run_case(dir: &Path, case: Case, rows: &mut Vec<Row>) {
    let port = case.server.port;
    let (v, code) = doctor_json(dir, port, &case);
    let works = v["works"].as_bool().unwrap();
    let first = &v["failures"][0];
    let says = first["device_says"].as_str().unwrap_or("").to_string();
    let doctor_code = first["error"]["code"].as_i64();
    match case.expect {
        None => {
            assert!(works, "{}: doctor says it fails: {v:#}", case.name);
            assert_eq!(code, 0, "{}", case.name);
        }
        Some(expected) => {
            assert!(!works, "{}: doctor says it works: {v:#}", case.name);
            assert_eq!(code, 1, "{}", case.name);
            assert!(
                says.contains(expected),
                "{}: expected '{expected}' in '{says}'",
                case.name
            );
        }
    }
    if let Some(fix) = case.fix {
        let fixes: Vec<&str> = v["failures"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["fix"].as_str())
            .collect();
        assert!(
            fixes.iter().any(|f| f.contains(fix)),
            "{}: no fix mentions '{fix}': {fixes:?}",
            case.name
        );
    }

    // A case that ends in the device's timeout needs no long wait to show it.
    let timeout = match case.expect {
        Some(e) if e.contains("TIMEOUT") => "3",
        _ => "8",
    };
    let mut margs = vec![
        "--ca",
        case.ca,
        "--hostname",
        case.hostname,
        "--timeout",
        timeout,
    ];
    margs.extend(case.mbedtls_extra.iter().copied());
    let mport = case.mbedtls_server.as_ref().map_or(port, |s| s.port);
    if mport != port {
        // Done with doctor's server: a gnutls-serv left wedged by a refused
        // DTLS handshake spins on a core until it is stopped.
        drop(case.server);
    }
    let peer = support::device::client(dir, mport, &margs);
    let conn = peer.single().clone();
    let mbed = if conn.ok {
        "works".to_string()
    } else {
        format!(
            "fails {} ({})",
            conn.code.unwrap_or(0),
            conn.error.clone().unwrap_or_default()
        )
    };
    let agree = match case.known_difference {
        None => {
            assert_eq!(
                works, conn.ok,
                "{}: doctor {works} vs mbedTLS {mbed}\n{}",
                case.name, peer.transcript
            );
            if !works {
                assert_eq!(
                    doctor_code, conn.code,
                    "{}: doctor says {says} ({doctor_code:?}) but mbedTLS failed with {mbed}\n{}\n{}",
                    case.name, v["handshake"], peer.transcript
                );
            }
            "agree".to_string()
        }
        Some(why) => {
            assert_ne!(
                works, conn.ok,
                "{}: the documented difference ({why}) no longer shows:\n{}",
                case.name, peer.transcript
            );
            format!("known difference: {why}")
        }
    };
    rows.push(Row {
        name: case.name.to_string(),
        doctor: if works {
            "works".into()
        } else {
            format!("fails {} {says}", doctor_code.unwrap_or(0))
        },
        mbedtls: mbed,
        agree,
    });
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<34} | {:<62} | {:<48} | agreement",
        "scenario", "doctor (openmv profile)", "the device (mbedTLS 3.6.5 peer)"
    );
    println!("{}", "-".repeat(170));
    for r in rows {
        let clip = |s: &str, n: usize| {
            if s.chars().count() > n {
                format!("{}…", s.chars().take(n - 1).collect::<String>())
            } else {
                s.to_string()
            }
        };
        println!(
            "{:<34} | {:<62} | {:<48} | {}",
            r.name,
            // The device's ValueError lines, on the row's one line.
            clip(&r.doctor.replace('\n', " / "), 62),
            clip(&r.mbedtls, 48),
            r.agree
        );
    }
    println!();
}

#[test]
fn doctor_verdicts_agree_with_mbedtls() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = support::doctor::table_pki(d);
    let (int_pem, int_key) = pki.int_files();
    pki.openssl_leaf(
        "ed",
        &["-algorithm", "ed25519"],
        (&int_pem, &int_key),
        &[],
        "",
    );
    // An RSA-PSS-signed leaf needs an RSA issuer: a small RSA CA made by openssl.
    support::doctor::rsa_ca(d);
    pki.openssl_leaf(
        "pss",
        &["-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"],
        ("rsa-ca.pem", "rsa-ca.key"),
        &[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-sha256",
        ],
        "",
    );
    // A client identity for mTLS, issued by the test intermediate, and one from another CA.
    support::doctor::self_signed(d, "selfsigned", (-1, 30));
    support::doctor::self_signed(d, "selfexpired", (-60, -1));
    support::doctor::openssl_int(
        d,
        "t",
        "nc-int",
        "nameConstraints=critical,permitted;DNS:localhost\n",
    );
    pki.openssl_leaf(
        "ncleaf",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ("nc-int.pem", "nc-int.key"),
        &[],
        "",
    );
    pki.openssl_leaf(
        "policy",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        (&int_pem, &int_key),
        &[],
        "certificatePolicies=critical,1.2.3.4\n",
    );
    pki.openssl_leaf(
        "sha1",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        (&int_pem, &int_key),
        &["-sha1"],
        "",
    );
    let ec = |curve: &str| {
        [
            "-algorithm".to_string(),
            "EC".into(),
            "-pkeyopt".into(),
            format!("ec_paramgen_curve:{curve}"),
        ]
    };
    for (stem, curve) in [
        ("p521", "P-521"),
        ("k1", "secp256k1"),
        ("bp", "brainpoolP256r1"),
    ] {
        let alg = ec(curve);
        let alg: Vec<&str> = alg.iter().map(String::as_str).collect();
        pki.openssl_leaf(stem, &alg, (&int_pem, &int_key), &[], "");
    }
    pki.openssl_leaf(
        "rsaleaf",
        &["-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"],
        (&int_pem, &int_key),
        &[],
        "",
    );
    pki.openssl_leaf(
        "critext",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        (&int_pem, &int_key),
        &[],
        "1.3.6.1.4.1.55555.1=critical,ASN1:UTF8String:devtls\n",
    );
    pki.client("client", "cam-1");
    pki.client("clientonly", "localhost");
    Pki::new(d, "rogue", 3650, (-1, 365)).client("rogue-client", "cam-x");
    let client_ca = pki.clients_ca();

    let chain = Some("t-int.pem");
    // openssl s_server demanding a client certificate from the test CA.
    let mtls = || {
        serve(
            d,
            "leaf",
            chain,
            &["-Verify", "1", "-verify_return_error", "-CAfile", client_ca],
        )
    };
    let mut rows = Vec::new();
    let cases = vec![
        Case::new("full chain", serve(d, "leaf", chain, &[])),
        Case::new("leaf only, root anchor", serve(d, "leaf", None, &[]))
            .fails("not correctly signed by the trusted CA")
            .fix("--trust intermediate"),
        Case::new(
            "leaf only, intermediate anchor",
            serve(d, "leaf", None, &[]),
        )
        .ca("t-int.der"),
        Case::new(
            "expired intermediate",
            serve(d, "oldleaf", Some("old-int.pem"), &[]),
        )
        .ca("old-root.der")
        .fails("validity has expired")
        .fix("intermediate"),
        Case::new("wrong host", serve(d, "leaf", chain, &[]))
            .host("wrong.example")
            .fails("Common Name (CN) does not match")
            .fix("server_hostname=\"localhost\""),
        Case::new("CN-only leaf (no SAN)", serve(d, "cnonly", chain, &[])),
        Case::new("CN-only leaf, wrong host", serve(d, "cnonly", chain, &[]))
            .host("other.example")
            .fails("Common Name (CN) does not match"),
        Case::new(
            "clock: leaf not yet valid now",
            serve(d, "future", chain, &[]),
        )
        .fails("validity starts in the future"),
        Case::new(
            "clock unset (--device-time unset)",
            serve(d, "leaf", chain, &[]),
        )
        .doctor(&["--device-time", "unset"])
        .mbedtls(&["--time", "unset"])
        .fails("validity starts in the future")
        .fix("ntptime.settime()"),
        Case::new("anchor of another CA", serve(d, "leaf", chain, &[]))
            .ca("other-root.der")
            .fails("not correctly signed by the trusted CA")
            .fix("devtls anchor 127.0.0.1:"),
        Case::new("CA-issued leaf pinned", serve(d, "leaf", chain, &[]))
            .ca("leaf.der")
            .fails("not correctly signed by the trusted CA")
            .fix("anchor the CA instead"),
        Case::new(
            "self-signed server pinned",
            serve(d, "selfsigned", None, &[]),
        )
        .ca("selfsigned.der"),
        Case::new(
            "expired self-signed pinned",
            serve(d, "selfexpired", None, &[]),
        )
        .ca("selfexpired.der")
        .fails("validity has expired")
        .fix("renew it on the server"),
        Case::new(
            "leaf with clientAuth EKU only",
            serve(d, "clientonly", chain, &[]),
        )
        .fails("MBEDTLS_ERR_SSL_BAD_CERTIFICATE")
        .fix("serverAuth"),
        Case::new(
            "critical nameConstraints",
            serve(d, "ncleaf", Some("nc-int.pem"), &[]),
        )
        .fails("MBEDTLS_ERR_X509_INVALID_EXTENSIONS")
        .fix("nameConstraints"),
        Case::new(
            "critical certificatePolicies",
            serve(d, "policy", chain, &[]),
        )
        .fails("MBEDTLS_ERR_X509_FEATURE_UNAVAILABLE")
        .fix("certificatePolicies"),
        Case::new(
            "SHA-1-signed leaf",
            serve(d, "sha1", chain, &["-cipher", "DEFAULT:@SECLEVEL=0"]),
        )
        .fails("unacceptable hash")
        .fix("SHA-256"),
        Case::new("TLS 1.3-only server", serve(d, "leaf", chain, &["-tls1_3"]))
            .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
            .fix("enable TLS 1.2"),
        Case::new("Ed25519 leaf", serve(d, "ed", chain, &[]))
            .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
            .fix("ECDSA P-256"),
        Case::new("RSA-PSS-signed leaf", serve(d, "pss", None, &[]))
            .ca("rsa-ca.der")
            .fails("-8960")
            .fix("RSA PKCS#1 v1.5"),
        Case::new("mTLS: server demands, none sent", mtls())
            .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
            .fix("load_cert_chain"),
        Case::new("mTLS: device certificate accepted", mtls()).both(&[
            "--cert",
            "client.der",
            "--key",
            "client.key.der",
        ]),
        Case::new("mTLS: device certificate refused", mtls())
            .both(&[
                "--cert",
                "rogue-client.der",
                "--key",
                "rogue-client.key.der",
            ])
            .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
            .fix("CA the server trusts"),
        // What a rustls handshake could not tell (issue 10): the device's own hello can.
        Case::new("P-521 leaf", serve(d, "p521", chain, &[])),
        Case::new("secp256k1 leaf", serve(d, "k1", chain, &[]))
            .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
            .fix("P-256"),
        Case::new("brainpoolP256r1 leaf", serve(d, "bp", chain, &[]))
            .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
            .fix("P-256"),
        Case::new(
            "RSA key exchange only (AES128-GCM-SHA256)",
            serve(d, "rsaleaf", chain, &["-cipher", "AES128-GCM-SHA256"]),
        ),
        Case::new(
            "AES-CBC only (ECDHE-ECDSA-AES128-SHA256)",
            serve(d, "leaf", chain, &["-cipher", "ECDHE-ECDSA-AES128-SHA256"]),
        ),
        Case::new(
            "X25519-only server",
            serve(d, "leaf", chain, &["-groups", "X25519"]),
        )
        .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
        .fix("secp256r1"),
        Case::new(
            "leaf with unknown critical extension",
            serve(d, "critext", chain, &[]),
        )
        .fails("MBEDTLS_ERR_X509_INVALID_EXTENSIONS"),
    ];
    for case in cases {
        run_case(d, case, &mut rows);
    }
    print_table(&rows);
}

#[test]
fn doctor_exit_2_when_it_cannot_find_out() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    Pki::new(d, "t", 3650, (-1, 365));
    let port = support::free_tcp_port().to_string();
    let target = format!("127.0.0.1:{port}");
    let out = run_in(
        d,
        &["doctor", &target, "--ca", "t-root.der", "--timeout", "2"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out)
    );
    let out = run_in(d, &["doctor", &target, "--ca", "missing.der"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.der"),
        "{}",
        text(&out)
    );
    // Nothing answers on this UDP port: doctor cannot find out.
    let silent = format!("127.0.0.1:{}", support::free_udp_port());
    let out = run_in(
        d,
        &[
            "doctor",
            &silent,
            "--ca",
            "t-root.der",
            "--dtls",
            "--timeout",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UDP"),
        "{}",
        text(&out)
    );
}

#[test]
fn doctor_pem_anchor_and_plain_port_fail_in_the_device_words() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(d, "t", 3650, (-1, 365));
    pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    let server = serve(d, "leaf", Some("t-int.pem"), &[]);
    let target = format!("127.0.0.1:{}", server.port);
    let out = run_in(
        d,
        &[
            "doctor",
            &target,
            "--ca",
            "t-root.pem",
            "--hostname",
            "localhost",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ValueError: invalid cert") && stdout.contains("--to der"),
        "{stdout}"
    );
    // A port that answers but does not speak TLS.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let target = format!("127.0.0.1:{plain}");
    let out = run_in(
        d,
        &[
            "doctor",
            &target,
            "--ca",
            "t-root.der",
            "--hostname",
            "localhost",
            "--json",
        ],
    );
    handle.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["failures"][0]["error"]["name"], "MBEDTLS_ERR_SSL_INVALID_RECORD",
        "{v:#}"
    );
}

#[test]
fn doctor_files_checks_a_devices_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let dev = d.join("device");
    std::fs::create_dir(&dev).unwrap();
    let pki = Pki::new(&dev, "t", 3650, (-1, 365));
    support::ok_in(&dev, &words("new client --cn cam-1"));
    for f in [
        "client.key",
        "client.crt",
        "t-root.pem",
        "t-root.key",
        "t-int.pem",
        "t-int.key",
        "t-int.der",
    ] {
        std::fs::remove_file(dev.join(f)).unwrap();
    }
    let _ = pki;
    let out = run_in(d, &words("doctor --files device --json"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let roles: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"the device's certificate") && roles.contains(&"trust anchor"),
        "{v:#}"
    );
    // A PKCS#8 key with trailing bytes: mbedTLS 3.6.5 loads it (measured),
    // so it is not a failure; doctor notes it is not canonical DER.
    let good_key = std::fs::read(dev.join("client.key.der")).unwrap();
    let mut key = good_key.clone();
    key.extend([0, 0]);
    std::fs::write(dev.join("client.key.der"), key).unwrap();
    let out = run_in(d, &["doctor", "--files", "device"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("not canonical DER"), "{}", text(&out));
    std::fs::write(dev.join("client.key.der"), &good_key).unwrap();
}

/// Issue 11 item 4: every file doctor --files finds either loads as the
/// device loads it or is reported in the device's words; never a ✓ for a
/// file it could not read or parse.
#[test]
fn doctor_files_never_passes_a_file_the_device_cannot_load() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let dev = d.join("device");
    std::fs::create_dir(&dev).unwrap();
    support::ok_in(&dev, &words("new client --cn cam-1"));
    support::ok_in(&dev, &words("new server --dns ca-stand-in"));
    for f in [
        "client.key",
        "client.crt",
        "server.key",
        "server.crt",
        "server.key.der",
    ] {
        std::fs::remove_file(dev.join(f)).unwrap();
    }
    // The device's anchor: ca.der (a self-signed server certificate stands in).
    std::fs::rename(dev.join("server.der"), dev.join("ca.der")).unwrap();
    let key = std::fs::read(dev.join("client.key.der")).unwrap();
    let ca = std::fs::read(dev.join("ca.der")).unwrap();
    let verdict = |label: &str| -> (i32, Value, String) {
        let out = run_in(d, &words("doctor --files device --json"));
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {}", text(&out)));
        let human = text(&run_in(d, &words("doctor --files device")));
        (out.status.code().unwrap(), v, human)
    };
    let (code, v, _) = verdict("intact");
    assert_eq!(code, 0, "{v:#}");

    type Damage<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Damage<'_>, &str, &str)> = vec![
        (
            "key truncated to 60 bytes",
            Box::new(|| std::fs::write(dev.join("client.key.der"), &key[..60]).unwrap()),
            "client.key.der",
            "ValueError: invalid key",
        ),
        (
            "empty key",
            Box::new(|| std::fs::write(dev.join("client.key.der"), b"").unwrap()),
            "client.key.der",
            "ValueError: invalid key",
        ),
        (
            "unreadable key (a link to nothing)",
            Box::new(|| {
                std::fs::remove_file(dev.join("client.key.der")).unwrap();
                #[cfg(unix)]
                std::os::unix::fs::symlink(d.join("gone"), dev.join("client.key.der")).unwrap();
                #[cfg(windows)]
                std::os::windows::fs::symlink_file(d.join("gone"), dev.join("client.key.der"))
                    .unwrap();
            }),
            "client.key.der",
            "ValueError: invalid key",
        ),
        (
            "ca.der truncated to 100 bytes",
            Box::new(|| std::fs::write(dev.join("ca.der"), &ca[..100]).unwrap()),
            "ca.der",
            "ValueError: invalid cert",
        ),
        (
            "empty ca.der",
            Box::new(|| std::fs::write(dev.join("ca.der"), b"").unwrap()),
            "ca.der",
            "ValueError: invalid cert",
        ),
    ];
    for (label, damage, file, says) in cases {
        damage();
        let (code, v, human) = verdict(label);
        assert_eq!(code, 1, "{label}: {v:#}");
        assert_eq!(v["works"], false, "{label}: {v:#}");
        let failures = v["failures"].as_array().unwrap();
        assert!(
            failures
                .iter()
                .any(|f| f["device_says"] == says
                    && f["subject"].as_str().unwrap_or("").ends_with(file)),
            "{label}: expected {says} for {file}: {v:#}"
        );
        assert!(
            !human.contains("the device loads these files"),
            "{label}: {human}"
        );
        // Restore.
        let _ = std::fs::remove_file(dev.join("client.key.der"));
        std::fs::write(dev.join("client.key.der"), &key).unwrap();
        std::fs::write(dev.join("ca.der"), &ca).unwrap();
    }

    // Issue 11 item 1 (lint side): a key that is not the certificate's.
    support::ok_in(d, &words("new client --cn other -o other"));
    std::fs::copy(d.join("other/client.key.der"), dev.join("client.key.der")).unwrap();
    let (code, v, _) = verdict("swapped key");
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "key_mismatch"
                && f["device_says"] == devtls_pki::device_error::KEY_MISMATCH.printed()),
        "{v:#}"
    );
    let r = support::lint::lint(&dev, &["client.der", "client.key.der"]);
    assert!(r.has("key-cert-mismatch"), "{}", r.transcript);
}

/// The test PKI with a `localhost` leaf, and leaf-full.pem: the leaf and
/// its intermediate, as a server's certificate file holds them.
fn full_chain_pki(d: &Path) -> Pki {
    let pki = Pki::new(d, "t", 20 * 365, (-1, 365));
    pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    let full = [
        support::doctor::pem(&std::fs::read(d.join("leaf.der")).unwrap()),
        support::doctor::pem(&pki.int),
    ]
    .concat();
    std::fs::write(d.join("leaf-full.pem"), full).unwrap();
    pki
}

#[test]
fn doctor_over_dtls_agrees_with_mbedtls() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // gnutls-serv echoes over DTLS (openssl s_server's -rev is TLS only), so
    // the mbedTLS peer gets its reply; the certificate file holds the chain.
    let pki = full_chain_pki(d);
    let udp = |cert: &str| {
        support::peers::gnutls_server(
            d,
            &[
                "--udp",
                "--echo",
                "--x509certfile",
                cert,
                "--x509keyfile",
                "leaf.key",
            ],
        )
    };
    let mut rows = Vec::new();
    let cases = vec![
        Case::new("DTLS full chain", udp("leaf-full.pem")).both(&["--dtls"]),
        Case::new("DTLS wrong host", udp("leaf-full.pem"))
            .host("wrong.example")
            .both(&["--dtls"])
            .fails("Common Name (CN) does not match"),
        Case::new("DTLS leaf only, root anchor", udp("leaf.pem"))
            .both(&["--dtls"])
            .fails("not correctly signed by the trusted CA")
            .fix("--trust intermediate"),
    ];
    for case in cases {
        run_case(d, case, &mut rows);
    }
    // mTLS over DTLS: the device's certificate flight in DTLS records, then
    // its Finished; the server's ChangeCipherSpec, alert or silence decides.
    pki.client("client", "cam-1");
    pki.client_valid("expired-client", "cam-2", (-60, -1));
    Pki::new(d, "rogue", 3650, (-1, 365)).client("rogue-client", "cam-x");
    let both = [pki.int.as_slice(), pki.root.as_slice()]
        .map(support::doctor::pem)
        .concat();
    pki.write("clients-ca.pem", both.as_bytes());
    let mtls_with = |priority: &str| {
        support::peers::gnutls_server(
            d,
            &[
                "--udp",
                "--echo",
                "--x509certfile",
                "leaf-full.pem",
                "--x509keyfile",
                "leaf.key",
                "--require-client-cert",
                "--verify-client-cert",
                "--x509cafile",
                "clients-ca.pem",
                "--priority",
                priority,
            ],
        )
    };
    let mtls = || mtls_with("NORMAL");
    // An AES-CBC suite: the device's Finished sealed with CBC and HMAC.
    let mtls_cbc = || mtls_with("NORMAL:-CIPHER-ALL:+AES-128-CBC:-VERS-ALL:+VERS-DTLS1.2");
    for case in [
        Case::new(
            "DTLS mTLS, AES-CBC: device certificate accepted",
            mtls_cbc(),
        )
        .both(&["--dtls", "--cert", "client.der", "--key", "client.key.der"]),
        // After a handshake without the device's certificate gnutls-serv
        // answers nobody (and spins): the device peer gets a server of its own.
        Case::new("DTLS mTLS, AES-CBC: none sent", mtls_cbc())
            .both(&["--dtls"])
            .mbedtls_server(mtls_cbc())
            .fails("MBEDTLS_ERR_SSL_TIMEOUT"),
        Case::new("DTLS mTLS: none sent", mtls())
            .both(&["--dtls"])
            .mbedtls_server(mtls())
            .fails("MBEDTLS_ERR_SSL_TIMEOUT")
            .fix("load_cert_chain"),
        Case::new("DTLS mTLS: device certificate accepted", mtls()).both(&[
            "--dtls",
            "--cert",
            "client.der",
            "--key",
            "client.key.der",
        ]),
        // gnutls-serv crashes after refusing a certificate with an alert:
        // the device peer gets a server of its own.
        Case::new("DTLS mTLS: device certificate expired", mtls())
            .both(&[
                "--dtls",
                "--cert",
                "expired-client.der",
                "--key",
                "expired-client.key.der",
            ])
            .mbedtls_server(mtls())
            .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE"),
        // gnutls-serv crashes after refusing a certificate with an alert:
        // the device peer gets a server of its own.
        Case::new(
            "DTLS mTLS: device certificate from a CA the server does not trust",
            mtls(),
        )
        .both(&[
            "--dtls",
            "--cert",
            "rogue-client.der",
            "--key",
            "rogue-client.key.der",
        ])
        .mbedtls_server(mtls())
        .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE"),
    ] {
        run_case(d, case, &mut rows);
    }
    print_table(&rows);
    // The silent refusal is read from the server's silence after the
    // device's own Finished, not from a second handshake.
    let silent =
        Case::new("DTLS mTLS: none sent (silence after the Finished)", mtls()).doctor(&["--dtls"]);
    let (v, code) = doctor_json(d, silent.server.port, &silent);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["handshake"]["device_finished"], true, "{v:#}");
    assert_eq!(v["handshake"]["end"]["end"], "server_silent", "{v:#}");
    // anchor reads the chain over DTLS too.
    let server = udp("leaf-full.pem");
    let target = format!("127.0.0.1:{}", server.port);
    let out = run_in(
        d,
        &[
            "anchor",
            &target,
            "--dtls",
            "--roots",
            "t-root.pem",
            "--timeout",
            "5",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read(d.join("ca.der")).unwrap(), pki.root);
}

#[test]
fn doctor_speaks_the_devices_aes_cbc_suites_and_says_what_it_negotiated() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(d, "t", 20 * 365, (-1, 365));
    pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    // AES-CBC only: the device offers it (rustls could not).
    let server = serve(
        d,
        "leaf",
        Some("t-int.pem"),
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"],
    );
    let target = format!("127.0.0.1:{}", server.port);
    let out = run_in(
        d,
        &[
            "doctor",
            &target,
            "--ca",
            "t-root.der",
            "--hostname",
            "localhost",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["works"], true, "{v:#}");
    assert_eq!(
        v["handshake"]["suite"], "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "{v:#}"
    );
    assert_eq!(v["handshake"]["group"], "P-256", "{v:#}");
    // Rightly so: the device connects.
    let peer = support::device::client(
        d,
        server.port,
        &[
            "--ca",
            "t-root.der",
            "--hostname",
            "localhost",
            "--timeout",
            "8",
        ],
    );
    assert!(peer.single().ok, "{}", peer.transcript);
}

// nginx on 127.0.0.1 with `server` lines added to a minimal configuration,
// in the foreground, stopped when dropped.
fn nginx(dir: &Path, name: &str, server: &str) -> LineServer {
    if std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
    {
        panic!("nginx missing: apt-get install nginx");
    }
    let port = support::free_tcp_port();
    let prefix = dir.join(format!("nginx-{name}"));
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log stderr;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port} ssl;\n    {server}\n    return 200 \"ok\\n\";\n  }}\n}}\n",
        p = prefix.display()
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = std::process::Command::new("nginx");
    cmd.arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf_path)
        .current_dir(dir);
    let server = LineServer::spawn("nginx", &mut cmd, port);
    support::wait_for_tcp(port, std::time::Duration::from_secs(10));
    server
}

#[test]
fn doctor_agrees_with_the_device_on_nginx() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    full_chain_pki(d);
    let certs = format!(
        "ssl_certificate {}; ssl_certificate_key {};",
        d.join("leaf-full.pem").display(),
        d.join("leaf.key").display()
    );
    let mut rows = Vec::new();
    let cases = vec![
        Case::new("nginx defaults", nginx(d, "plain", &certs)),
        Case::new(
            "nginx TLS 1.3 only",
            nginx(d, "tls13", &format!("{certs} ssl_protocols TLSv1.3;")),
        )
        .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
        .fix("enable TLS 1.2"),
        Case::new(
            "nginx X25519 only",
            nginx(d, "x25519", &format!("{certs} ssl_ecdh_curve X25519;")),
        )
        .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
        .fix("secp256r1"),
        Case::new(
            "nginx ChaCha20 only",
            nginx(
                d,
                "chacha",
                &format!(
                    "{certs} ssl_protocols TLSv1.2; ssl_ciphers ECDHE-ECDSA-CHACHA20-POLY1305;"
                ),
            ),
        )
        .fails("MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
        .fix("device's suites"),
    ];
    for c in cases {
        run_case(d, c, &mut rows);
    }
    print_table(&rows);
}

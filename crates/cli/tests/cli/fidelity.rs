//! doctor's prediction against MicroPython itself at the socket (issue 25,
//! item 2): the failure classes of the doctor and rules_differential tables,
//! each served by `devtls serve` and by `openssl s_server` on 127.0.0.1, and
//! for each `devtls doctor --micropython` (item 4): the prediction, then the
//! same handshake made by MicroPython's unix port (the device's
//! modtls_mbedtls.c on mbedTLS 3.6), compared by verdict, exception type,
//! code or errno, and text.
//!
//! Each row also checks the device's outcome against what the device facts
//! say it raises (docs/device-behaviour.md), so the comparison is not judged
//! by itself alone. The table prints with `--nocapture`; with
//! `DEVTLS_FIDELITY_TABLE=FILE` it is also written to FILE
//! (scripts/fidelity.sh prints it and exits non-zero below 100%).

use crate::support;

use std::path::Path;

use devtls_net::doctor::on_device::one_line;
use serde_json::Value;
use support::doctor::{self as pki_files, Pki};
use support::net::Serve;
use support::peers::LineServer;
use support::{run_in, text};

/// Which server presents the scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Devtls,
    Openssl,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Devtls => "devtls serve",
            Kind::Openssl => "openssl s_server",
        }
    }
}

/// A server: the leaf `STEM.pem`/`STEM.key`, its chain, options.
#[derive(Clone)]
struct Server {
    stem: &'static str,
    /// The intermediate(s) sent after the leaf.
    chain: Option<&'static str>,
    /// Demand a client certificate from these CAs.
    client_ca: Option<&'static str>,
    /// openssl s_server options (cipher, version).
    openssl: Vec<&'static str>,
}

enum Running {
    Openssl(LineServer),
    Devtls(Serve),
}

impl Running {
    fn port(&self) -> u16 {
        match self {
            Running::Openssl(s) => s.port,
            Running::Devtls(s) => s.port,
        }
    }
}

impl Server {
    fn start(&self, d: &Path, kind: Kind) -> Running {
        match kind {
            Kind::Openssl => {
                let mut extra = self.openssl.clone();
                if let Some(ca) = self.client_ca {
                    extra.extend(["-Verify", "1", "-verify_return_error", "-CAfile", ca]);
                }
                Running::Openssl(pki_files::serve(d, self.stem, self.chain, &extra))
            }
            Kind::Devtls => {
                // devtls serve takes the chain in the certificate file.
                let mut pem = std::fs::read(d.join(format!("{}.pem", self.stem))).unwrap();
                if let Some(c) = self.chain {
                    pem.extend(std::fs::read(d.join(c)).unwrap());
                }
                let chained = format!("{}-chained.pem", self.stem);
                std::fs::write(d.join(&chained), pem).unwrap();
                let key = format!("{}.key", self.stem);
                let mut args = vec!["--cert", chained.as_str(), "--key", key.as_str()];
                if let Some(ca) = self.client_ca {
                    args.extend(["--ca", ca]);
                }
                Running::Devtls(Serve::start(d, &args))
            }
        }
    }
}

/// One row: a scenario on one server.
struct Scenario {
    name: &'static str,
    kind: Kind,
    server: Server,
    ca: &'static str,
    host: &'static str,
    client: Option<(&'static str, &'static str)>,
    /// What MicroPython must do, from the device facts: `works`, or words
    /// its exception contains (each `|`-separated choice is allowed).
    device: &'static str,
    /// The prediction is being fixed on another branch: agreement is
    /// reported, not asserted (the device's outcome still is).
    pending: Option<&'static str>,
}

/// The test PKIs and leaves every scenario draws on.
fn files(d: &Path) {
    let pki = support::doctor::table_pki(d);
    let (int_pem, int_key) = pki.int_files();
    let int = (int_pem.as_str(), int_key.as_str());
    let p256 = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    pki.openssl_leaf("ed", &["-algorithm", "ed25519"], int, &[], "");
    pki.openssl_leaf("sha1", &p256, int, &["-sha1"], "");
    let rsa = |bits: &'static str| ["-algorithm", "rsa", "-pkeyopt", bits];
    pki.openssl_leaf("rsa1024", &rsa("rsa_keygen_bits:1024"), int, &[], "");
    pki_files::rsa_ca(d);
    pki.openssl_leaf(
        "pss",
        &rsa("rsa_keygen_bits:2048"),
        ("rsa-ca.pem", "rsa-ca.key"),
        &[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ],
        "",
    );
    pki_files::openssl_int(
        d,
        "t",
        "nc-int",
        "nameConstraints=critical,permitted;DNS:localhost\n",
    );
    pki.openssl_leaf("ncleaf", &p256, ("nc-int.pem", "nc-int.key"), &[], "");
    pki.openssl_leaf(
        "policy",
        &p256,
        int,
        &[],
        "certificatePolicies=critical,1.2.3.4\n",
    );
    pki.client("clientonly", "localhost");
    pki.client("client", "cam-1");
    Pki::new(d, "rogue", 3650, (-1, 365)).client("rogue-client", "cam-x");
    pki.clients_ca();
}

const FATAL: &str = "OSError: (-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')";

/// The rows: each failure class, on both servers where the server can
/// present it (devtls serve signs with P-256 and RSA-2048 keys only under
/// the device profile, and speaks TLS 1.2 with the device's suites).
fn scenarios() -> Vec<Scenario> {
    let srv = |stem, chain| Server {
        stem,
        chain,
        client_ca: None,
        openssl: Vec::new(),
    };
    let chain = Some("t-int.pem");
    let mtls = Server {
        client_ca: Some("clients-ca.pem"),
        ..srv("leaf", chain)
    };
    let row = |name, kind, server: &Server, device| Scenario {
        name,
        kind,
        server: server.clone(),
        ca: "t-root.der",
        host: "localhost",
        client: None,
        device,
        pending: None,
    };
    let mut rows = Vec::new();
    let mut both = |make: &dyn Fn(Kind) -> Scenario, kinds: &[Kind]| {
        rows.extend(kinds.iter().map(|k| make(*k)));
    };
    let all = [Kind::Devtls, Kind::Openssl];
    let openssl = [Kind::Openssl];
    both(
        &|k| row("works: full chain", k, &srv("leaf", chain), "works"),
        &all,
    );
    both(
        &|k| Scenario {
            ca: "old-root.der",
            ..row(
                "expired intermediate",
                k,
                &srv("oldleaf", Some("old-int.pem")),
                "validity has expired",
            )
        },
        &all,
    );
    both(
        &|k| {
            row(
                "leaf not yet valid",
                k,
                &srv("future", chain),
                "validity starts in the future",
            )
        },
        &all,
    );
    both(
        &|k| Scenario {
            host: "wrong.example",
            ..row(
                "wrong host",
                k,
                &srv("leaf", chain),
                "Common Name (CN) does not match",
            )
        },
        &all,
    );
    both(
        &|k| row("CN fallback (no SAN)", k, &srv("cnonly", chain), "works"),
        &all,
    );
    both(
        &|k| Scenario {
            host: "other.example",
            ..row(
                "CN-only leaf, wrong host",
                k,
                &srv("cnonly", chain),
                "Common Name (CN) does not match",
            )
        },
        &openssl,
    );
    both(
        &|k| Scenario {
            ca: "other-root.der",
            ..row(
                "untrusted: anchor of another CA",
                k,
                &srv("leaf", chain),
                "not correctly signed by the trusted CA",
            )
        },
        &all,
    );
    both(
        &|k| {
            row(
                "missing intermediate",
                k,
                &srv("leaf", None),
                "not correctly signed by the trusted CA",
            )
        },
        &all,
    );
    let seclevel0 = |stem| Server {
        openssl: vec!["-cipher", "DEFAULT:@SECLEVEL=0"],
        ..srv(stem, chain)
    };
    both(
        &|k| {
            row(
                "SHA-1-signed leaf",
                k,
                &seclevel0("sha1"),
                "unacceptable hash",
            )
        },
        &all,
    );
    both(
        &|k| {
            row(
                "RSA-1024 leaf",
                k,
                &seclevel0("rsa1024"),
                "unacceptable key|RSA too short",
            )
        },
        &openssl,
    );
    both(
        &|k| Scenario {
            ca: "rsa-ca.der",
            ..row("RSA-PSS-signed leaf", k, &srv("pss", None), "MBEDTLS_ERR")
        },
        &all,
    );
    both(
        &|k| row("Ed25519 leaf key", k, &srv("ed", chain), FATAL),
        &openssl,
    );
    both(
        &|k| Scenario {
            ..row(
                "critical nameConstraints",
                k,
                &srv("ncleaf", Some("nc-int.pem")),
                "MBEDTLS_ERR_X509_INVALID_EXTENSIONS+MBEDTLS_ERR_ASN1_UNEXPECTED_TAG",
            )
        },
        &all,
    );
    both(
        &|k| {
            row(
                "critical certificatePolicies",
                k,
                &srv("policy", chain),
                "MBEDTLS_ERR_X509_FEATURE_UNAVAILABLE|MBEDTLS_ERR_X509_INVALID_EXTENSIONS",
            )
        },
        &openssl,
    );
    both(
        &|k| {
            row(
                "EKU clientAuth only",
                k,
                &srv("clientonly", chain),
                "MBEDTLS_ERR_SSL_BAD_CERTIFICATE",
            )
        },
        &all,
    );
    let opts = |o: &[&'static str]| Server {
        openssl: o.to_vec(),
        ..srv("leaf", chain)
    };
    both(
        &|k| row("TLS 1.3-only server", k, &opts(&["-tls1_3"]), FATAL),
        &openssl,
    );
    both(
        &|k| {
            row(
                "no common suite (ChaCha20 only)",
                k,
                &opts(&["-no_tls1_3", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"]),
                FATAL,
            )
        },
        &openssl,
    );
    both(
        &|k| {
            row(
                "no common group (X25519 only)",
                k,
                &opts(&["-groups", "X25519"]),
                FATAL,
            )
        },
        &openssl,
    );
    both(
        &|k| Scenario {
            ..row(
                "mTLS: no client cert",
                k,
                &mtls,
                "OSError: 32|MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE",
            )
        },
        &all,
    );
    both(
        &|k| Scenario {
            client: Some(("client.der", "client.key.der")),
            ..row("mTLS: client cert accepted", k, &mtls, "works")
        },
        &all,
    );
    both(
        &|k| Scenario {
            client: Some(("rogue-client.der", "rogue-client.key.der")),
            // EPIPE when the server closes while the device still writes.
            ..row(
                "mTLS: client cert refused",
                k,
                &mtls,
                "OSError: 32|MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE",
            )
        },
        &all,
    );
    both(
        &|k| Scenario {
            client: Some(("client.der", "rogue-client.key.der")),
            ..row(
                "mTLS: client key mismatch",
                k,
                &mtls,
                // Refused by the server, in its timing (as a refused certificate).
                "OSError: 32|MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE",
            )
        },
        &all,
    );
    rows
}

/// What one row found.
struct Row {
    name: String,
    server: &'static str,
    predicted: String,
    raised: String,
    agree: bool,
    pending: Option<&'static str>,
    /// The device did not do what the device facts say.
    unexpected: Option<String>,
}

/// `devtls doctor --micropython --json` on the scenario; checks the exit
/// status follows the device and the device did what the facts say.
fn run_row(d: &Path, s: &Scenario) -> Row {
    eprintln!("fidelity: {} on {}", s.name, s.kind.name());
    let server = s.server.start(d, s.kind);
    let target = format!("127.0.0.1:{}", server.port());
    let mpy = support::micropython::binary();
    let mpy = mpy.to_str().unwrap();
    let mut args = vec![
        "doctor",
        target.as_str(),
        "--ca",
        s.ca,
        "--hostname",
        s.host,
        "--json",
        "--timeout",
        "5",
        "--micropython",
        mpy,
    ];
    if let Some((c, k)) = s.client {
        args.extend(["--cert", c, "--key", k]);
    }
    let out = run_in(d, &args);
    drop(server);
    let what = format!("{} on {}", s.name, s.kind.name());
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: doctor printed no JSON ({e}):\n{}", text(&out)));
    let on = &v["on_device"];
    let works = on["outcome"]["works"].as_bool().unwrap();
    let raised = on["outcome"]["raised"].as_str().unwrap_or("").to_string();
    assert_eq!(
        out.status.code(),
        Some(if works { 0 } else { 1 }),
        "{what}: the exit status follows the device\n{}",
        text(&out)
    );
    let expected = if s.device == "works" {
        works
    } else {
        !works && s.device.split('|').any(|w| raised.contains(w))
    };
    let unexpected = (!expected).then(|| {
        format!(
            "{what}: the device was expected to do `{}`, it raised `{raised}`",
            s.device
        )
    });
    let predicted = if v["prediction"]["works"].as_bool().unwrap() {
        "works".to_string()
    } else {
        let p: Vec<String> = on["predicted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| one_line(p.as_str().unwrap()))
            .collect();
        p.join(" or ")
    };
    Row {
        name: s.name.to_string(),
        server: s.kind.name(),
        predicted,
        raised: if works {
            "works".into()
        } else {
            one_line(&raised)
        },
        agree: on["agree"].as_bool().unwrap(),
        pending: s.pending,
        unexpected,
    }
}

fn table(rows: &[Row]) -> String {
    let clip = |s: &str, n: usize| {
        if s.chars().count() > n {
            format!("{}…", s.chars().take(n - 1).collect::<String>())
        } else {
            s.to_string()
        }
    };
    let mut out = format!(
        "{:<32} | {:<16} | {:<58} | {:<58} | agree?\n{}\n",
        "scenario",
        "server",
        "doctor predicted",
        "MicroPython raised",
        "-".repeat(182)
    );
    for r in rows {
        out.push_str(&format!(
            "{:<32} | {:<16} | {:<58} | {:<58} | {}\n",
            clip(&r.name, 32),
            r.server,
            clip(&r.predicted, 58),
            clip(&r.raised, 58),
            match (r.agree, r.pending) {
                (true, _) => "yes".to_string(),
                (false, None) => "NO".to_string(),
                (false, Some(p)) => format!("NO (pending {p})"),
            }
        ));
    }
    let agree = rows.iter().filter(|r| r.agree).count();
    out.push_str(&format!(
        "agreement: {agree}/{} ({:.1}%)\n",
        rows.len(),
        100.0 * agree as f64 / rows.len().max(1) as f64
    ));
    out
}

#[test]
fn micropython_raises_what_doctor_predicts_against_devtls_serve_and_openssl() {
    support::require("micropython");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    files(d);
    let rows: Vec<Row> = scenarios().iter().map(|s| run_row(d, s)).collect();
    let table = table(&rows);
    println!("\n{table}");
    if let Some(path) = std::env::var_os("DEVTLS_FIDELITY_TABLE") {
        std::fs::write(path, &table).unwrap();
    }
    let unexpected: Vec<&String> = rows.iter().filter_map(|r| r.unexpected.as_ref()).collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let differ: Vec<String> = rows
        .iter()
        .filter(|r| !r.agree && r.pending.is_none())
        .map(|r| format!("{} on {}", r.name, r.server))
        .collect();
    assert!(
        differ.is_empty(),
        "doctor and MicroPython differ: {differ:?}\n{table}"
    );
    for kind in [Kind::Devtls, Kind::Openssl] {
        assert!(rows.iter().any(|r| r.server == kind.name() && r.agree));
    }
}

/// `devtls doctor` against `server` in text form with `extra`: exit status, stdout.
fn doctor_text(d: &Path, port: u16, extra: &[&str]) -> (Option<i32>, String, String) {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec![
        "doctor",
        target.as_str(),
        "--ca",
        "t-root.der",
        "--timeout",
        "5",
    ];
    args.extend_from_slice(extra);
    let out = run_in(d, &args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `leaf` (for localhost) with its intermediate, on openssl s_server.
fn full_chain_server(d: &Path) -> LineServer {
    let pki = Pki::new(d, "t", 3650, (-1, 365));
    pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    pki_files::serve(d, "leaf", Some("t-int.pem"), &[])
}

#[test]
fn on_device_prints_prediction_and_outcome_side_by_side() {
    let mpy = support::micropython::binary();
    let mpy = mpy.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let server = full_chain_server(d);
    // A working server: both connect, they agree, exit 0.
    let (code, out, err) = doctor_text(
        d,
        server.port,
        &["--hostname", "localhost", "--micropython", mpy],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("the device would connect"), "{out}");
    assert!(
        out.contains("On the device: MicroPython unix port"),
        "{out}"
    );
    assert!(out.contains("doctor predicted  connects"), "{out}");
    assert!(out.contains("the device did    connected"), "{out}");
    assert!(out.contains("prediction and device agree"), "{out}");
    // A failing one (the name): both fail in the same words, exit 1.
    let (code, out, err) = doctor_text(
        d,
        server.port,
        &["--hostname", "wrong.example", "--micropython", mpy],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains(
            "the device did    ValueError: / The certificate Common Name (CN) does not match"
        ),
        "{out}"
    );
    assert!(out.contains("prediction and device agree"), "{out}");
    assert!(!err.contains("DIFFER"), "{err}");
}

#[test]
fn on_device_exit_status_follows_the_device_when_the_prediction_differs() {
    let mpy = support::micropython::binary();
    let mpy = mpy.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let server = full_chain_server(d);
    // doctor is told the clock is unset (it predicts "starts in the
    // future"); the unix port's clock is the host's, so the device connects.
    let extra = [
        "--hostname",
        "localhost",
        "--device-time",
        "unset",
        "--micropython",
        mpy,
    ];
    let (code, out, err) = doctor_text(d, server.port, &extra);
    assert_eq!(code, Some(0), "the device connected:\n{out}{err}");
    assert!(out.contains("the device would fail"), "{out}");
    assert!(out.contains("the device did    connected"), "{out}");
    assert!(err.contains("PREDICTION AND DEVICE DIFFER"), "{err}");
    let (code, out, _) = doctor_text(d, server.port, &[&extra[..], &["--json"][..]].concat());
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["prediction"]["works"], false, "{v:#}");
    assert_eq!(v["on_device"]["outcome"]["works"], true, "{v:#}");
    assert_eq!(v["on_device"]["agree"], false, "{v:#}");
    // MicroPython that cannot run: doctor could not find out, exit 2.
    let (code, _, err) = doctor_text(
        d,
        server.port,
        &[
            "--hostname",
            "localhost",
            "--micropython",
            "/nonexistent/micropython",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("/nonexistent/micropython: cannot be started"),
        "{err}"
    );
}

#[test]
fn the_mpremote_script_runs_on_the_unix_port_and_mpremote_without_a_board_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(d, "t", 3650, (-1, 365));
    pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    pki.client("cam", "cam-1");
    pki.clients_ca();
    let server = pki_files::serve(
        d,
        "leaf",
        Some("t-int.pem"),
        &[
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            "clients-ca.pem",
        ],
    );
    // The script --print-script shows is the one sent to a board; run it
    // here on the unix port with the files beside it, as mpremote would
    // after copying them.
    let board = d.join("board");
    std::fs::create_dir(&board).unwrap();
    for f in ["t-root.der", "cam.der", "cam.key.der"] {
        std::fs::copy(d.join(f), board.join(f)).unwrap();
    }
    for (host, works) in [("localhost", true), ("wrong.example", false)] {
        let (code, script, err) = doctor_text(
            d,
            server.port,
            &[
                "--hostname",
                host,
                "--cert",
                "cam.der",
                "--key",
                "cam.key.der",
                "--mpremote",
                "--print-script",
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        let out = support::micropython::run(
            &board,
            "devtls_doctor.py",
            &script,
            std::time::Duration::from_secs(30),
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        let outcome = devtls_net::doctor::on_device::parse(&printed)
            .unwrap_or_else(|| panic!("no outcome:\n{}", text(&out)));
        assert_eq!(outcome.works, works, "{host}: {outcome:?}");
    }
    // --rom: the script opens the files in /rom; nothing is copied.
    let (_, script, _) = doctor_text(
        d,
        server.port,
        &[
            "--mpremote",
            "--rom",
            "--print-script",
            "--cert",
            "cam.der",
            "--key",
            "cam.key.der",
        ],
    );
    assert!(script.contains("CA = \"/rom/t-root.der\""), "{script}");
    assert!(script.contains("KEY = \"/rom/cam.key.der\""), "{script}");
    // No board on this machine: mpremote finds none, doctor says so, exit 2.
    support::require("mpremote");
    let (code, out, err) = doctor_text(
        d,
        server.port,
        &[
            "--hostname",
            "localhost",
            "--mpremote",
            "/dev/devtls-no-such-board",
        ],
    );
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("mpremote printed no outcome"), "{err}");
    // The board would not reach 127.0.0.1: doctor says so first.
    assert!(err.contains("is the board itself"), "{err}");
}

//! `devtls fleet`: OpenSSL accepts what the fleet issues and revokes, the
//! inventory answers questions correctly, and issuance survives SIGKILL and
//! a second process.

use crate::support;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fleet::{assert_agreement, crl_check, crl_verified, export, field};
use support::{ok_in, openssl_ok, run_in, text, words};

/// A new fleet in `d` (with PostgreSQL, in a new database).
fn init(d: &Path) {
    support::postgres::fresh_database();
    ok_in(d, &["fleet", "init", "--name", "Test fleet"]);
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", text(out)))
}

#[test]
fn openssl_verifies_every_device_and_refuses_revoked_ones_with_the_crl() {
    let backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d);
    for f in ["ca.der", "ca.crt", "ca.key", "inventory.db"] {
        let here = d.join("fleet").join(f).is_file();
        // With PostgreSQL the inventory is in the database, not a file.
        assert_eq!(here, f != "inventory.db" || !backend.is_postgres(), "{f}");
    }
    ok_in(d, &words("fleet issue --count 12 --prefix cam-"));
    ok_in(d, &words("fleet issue srv-1 --role server --key p384"));
    let rows = assert_agreement(d, "fleet");
    assert_eq!(rows.len(), 13);
    assert_eq!(
        fs::read(d.join("fleet/devices/cam-5/ca.der")).unwrap(),
        fs::read(d.join("fleet/ca.der")).unwrap(),
        "each device trusts the fleet CA"
    );
    let mut certs: Vec<String> = (1..=12)
        .map(|i| format!("fleet/devices/cam-{i}/client.der"))
        .collect();
    certs.push("fleet/devices/srv-1/server.der".into());
    let mut args = vec!["verify", "-CAfile", "fleet/ca.crt"];
    args.extend(certs.iter().map(String::as_str));
    let out = openssl_ok(d, &args);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches(": OK").count(),
        13,
        "{}",
        text(&out)
    );
    // Each device's key is the one its certificate certifies.
    for (cert, key) in [
        ("cam-3/client.der", "cam-3/client.key.der"),
        ("srv-1/server.der", "srv-1/server.key.der"),
    ] {
        let from_cert = openssl_ok(
            d,
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                &format!("fleet/devices/{cert}"),
                "-noout",
                "-pubkey",
            ],
        )
        .stdout;
        let from_key = openssl_ok(
            d,
            &[
                "pkey",
                "-inform",
                "DER",
                "-in",
                &format!("fleet/devices/{key}"),
                "-pubout",
            ],
        )
        .stdout;
        assert_eq!(from_cert, from_key, "{cert}");
    }
    let purpose = openssl_ok(d, &words("verify -CAfile fleet/ca.crt -purpose sslserver -verify_hostname srv-1 fleet/devices/srv-1/server.der"));
    assert!(String::from_utf8_lossy(&purpose.stdout).contains("OK"));

    let revoked = json(&ok_in(
        d,
        &words("fleet revoke cam-7 --reason keyCompromise --json"),
    ));
    let serial = revoked["revoked"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    ok_in(d, &["fleet", "crl"]);
    let shown = crl_verified(d, "fleet/crl.der");
    assert!(shown.contains(&serial.to_uppercase()), "{shown}");
    assert!(shown.contains("Key Compromise"), "{shown}");
    let bad = crl_check(d, "fleet/crl.der", "fleet/devices/cam-7/client.der");
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(text(&bad).contains("certificate revoked"), "{}", text(&bad));
    let good = crl_check(d, "fleet/crl.der", "fleet/devices/cam-8/client.der");
    assert!(good.status.success(), "{}", text(&good));
    // Revoking by serial works too, and the CRL number grows.
    let by_serial = json(&ok_in(d, &["fleet", "revoke", &serial, "--json"]));
    assert_eq!(by_serial["already"].as_array().unwrap().len(), 1);
    ok_in(d, &words("fleet crl -o second.der"));
    let second = openssl_ok(
        d,
        &words("crl -inform DER -in second.der -noout -crlnumber"),
    );
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("0x02")
            || String::from_utf8_lossy(&second.stdout).contains("=2"),
        "{}",
        text(&second)
    );
}

/// A revoked device is skipped by a plain `issue`; `issue --reissue` gives it
/// a new key and certificate in place of its old folder and leaves devices
/// with an active certificate alone. OpenSSL accepts the new certificate
/// with the CRL and still refuses the old one.
#[test]
fn a_revoked_device_gets_a_new_identity_with_reissue() {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d);
    ok_in(d, &words("fleet issue cam-1 cam-2"));
    let folder = |id: &str, f: &str| d.join("fleet/devices").join(id).join(f);
    let old_cert = fs::read(folder("cam-1", "client.der")).unwrap();
    let old_key = fs::read(folder("cam-1", "client.key.der")).unwrap();
    let other = fs::read(folder("cam-2", "client.der")).unwrap();
    fs::write(d.join("old-cam-1.der"), &old_cert).unwrap();
    ok_in(d, &words("fleet revoke cam-1 --reason keyCompromise"));

    let plain = run_in(d, &["fleet", "issue", "cam-1"]);
    assert!(plain.status.success(), "{}", text(&plain));
    assert!(text(&plain).contains("--reissue"), "{}", text(&plain));
    assert_eq!(fs::read(folder("cam-1", "client.der")).unwrap(), old_cert);

    let again = json(&ok_in(
        d,
        &words("fleet issue cam-1 cam-2 --reissue --json"),
    ));
    assert_eq!(
        (again["issued"].as_u64(), again["skipped"].as_u64()),
        (Some(1), Some(1))
    );
    let new_cert = fs::read(folder("cam-1", "client.der")).unwrap();
    assert_ne!(new_cert, old_cert, "a new certificate");
    assert_ne!(
        fs::read(folder("cam-1", "client.key.der")).unwrap(),
        old_key,
        "a new key"
    );
    assert_eq!(fs::read(folder("cam-2", "client.der")).unwrap(), other);
    let rows = assert_agreement(d, "fleet");
    let mut cam1: Vec<&str> = rows
        .iter()
        .filter(|r| field(r, "device") == "cam-1")
        .map(|r| field(r, "status"))
        .collect();
    cam1.sort();
    assert_eq!(cam1, ["active", "revoked"]);
    // Once re-issued it has an active certificate: --reissue skips it now.
    let twice = json(&ok_in(d, &words("fleet issue cam-1 --reissue --json")));
    assert_eq!(twice["issued"].as_u64(), Some(0));

    ok_in(d, &["fleet", "crl"]);
    let new = crl_check(d, "fleet/crl.der", "fleet/devices/cam-1/client.der");
    assert!(new.status.success(), "{}", text(&new));
    let old = crl_check(d, "fleet/crl.der", "old-cam-1.der");
    assert!(text(&old).contains("certificate revoked"), "{}", text(&old));
}

#[test]
fn list_expiring_status_export_and_rotate() {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d);
    ok_in(d, &words("fleet issue --count 3 --prefix short- --days 10"));
    ok_in(d, &words("fleet issue --count 4 --prefix long- --days 200"));
    ok_in(d, &["fleet", "revoke", "long-4"]);

    let expiring = json(&ok_in(d, &words("fleet list --expiring 30d --json")));
    let mut names: Vec<&str> = expiring
        .as_array()
        .unwrap()
        .iter()
        .map(|r| field(r, "device"))
        .collect();
    names.sort();
    assert_eq!(names, ["short-1", "short-2", "short-3"]);
    let revoked = json(&ok_in(d, &words("fleet list --status revoked --json")));
    assert_eq!(revoked.as_array().unwrap().len(), 1);
    assert_eq!(field(&revoked[0], "device"), "long-4");
    let human = ok_in(d, &words("fleet list --status active"));
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("6 certificates") && !human.contains("long-4"),
        "{human}"
    );

    let status = json(&ok_in(d, &words("fleet status --json --weeks 4")));
    assert_eq!(status["counts"]["active"], 6);
    assert_eq!(status["counts"]["revoked"], 1);
    let weeks: Vec<u64> = status["expiring_per_week"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        weeks,
        [0, 3, 0, 0],
        "10-day certificates expire in the second week"
    );
    assert_eq!(status["expiring_later"], 3);
    assert!(field(&status["next_expiries"][0], "device").starts_with("short-"));
    let drawn = ok_in(d, &words("fleet status --weeks 4"));
    let drawn = String::from_utf8_lossy(&drawn.stdout);
    assert!(drawn.contains("week   2  ████"), "{drawn}");

    let csv = ok_in(d, &["fleet", "export", "--csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert_eq!(csv.lines().count(), 8, "{csv}");
    assert!(csv.starts_with("device,serial,sha256"), "{csv}");

    let before = fs::read(d.join("fleet/devices/short-1/client.der")).unwrap();
    let rotated = json(&ok_in(
        d,
        &words("fleet rotate --within 30d --revoke-old --json"),
    ));
    assert_eq!(rotated["issued"], 3, "{rotated}");
    let after = fs::read(d.join("fleet/devices/short-1/client.der")).unwrap();
    assert_ne!(before, after, "the device got a new certificate");
    openssl_ok(
        d,
        &words("verify -CAfile fleet/ca.crt fleet/devices/short-1/client.der"),
    );
    let rows = assert_agreement(d, "fleet");
    assert_eq!(rows.len(), 10);
    let short1: Vec<&Value> = rows
        .iter()
        .filter(|r| field(r, "device") == "short-1")
        .collect();
    let statuses: Vec<&str> = short1.iter().map(|r| field(r, "status")).collect();
    assert!(
        statuses.contains(&"revoked") && statuses.contains(&"active"),
        "{statuses:?}"
    );
    let none_left = json(&ok_in(d, &words("fleet list --expiring 30d --json")));
    assert!(none_left.as_array().unwrap().is_empty(), "{none_left}");
    // Rotating again has nothing to do.
    let again = json(&ok_in(d, &words("fleet rotate --within 30d --json")));
    assert_eq!(again["issued"], 0);
    // Re-issuing is idempotent: existing devices are skipped.
    let rerun = json(&ok_in(
        d,
        &words("fleet issue --count 4 --prefix long- --json"),
    ));
    assert_eq!(
        (rerun["issued"].as_u64(), rerun["skipped"].as_u64()),
        (Some(0), Some(4))
    );
}

#[test]
fn csr_signing_and_csv_input() {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d);
    openssl_ok(d, &words("req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=made-on-device -keyout dev.key -out dev.csr"));
    let out = ok_in(d, &words("fleet issue cam-csr --csr dev.csr --json"));
    assert_eq!(json(&out)["issued"], 1);
    let folder = d.join("fleet/devices/cam-csr");
    assert!(folder.join("client.der").exists() && !folder.join("client.key.der").exists());
    let from_cert = openssl_ok(
        d,
        &words("x509 -inform DER -in fleet/devices/cam-csr/client.der -noout -pubkey"),
    )
    .stdout;
    let from_key = openssl_ok(d, &words("pkey -in dev.key -pubout")).stdout;
    assert_eq!(
        from_cert, from_key,
        "the certificate certifies the device's own key"
    );
    openssl_ok(
        d,
        &words("verify -CAfile fleet/ca.crt -purpose sslclient fleet/devices/cam-csr/client.der"),
    );
    let rows = assert_agreement(d, "fleet");
    assert_eq!(rows[0]["from_csr"], true);
    assert_eq!(field(&rows[0], "key_type"), "p256");

    fs::write(
        d.join("devices.csv"),
        "id,dns,ip\ngw-1,gw-1.lan,10.0.0.5\ngw-2,,\n",
    )
    .unwrap();
    ok_in(d, &words("fleet issue --from devices.csv --role server"));
    openssl_ok(d, &words("verify -CAfile fleet/ca.crt -verify_ip 10.0.0.5 -verify_hostname gw-1.lan fleet/devices/gw-1/server.der"));
    assert_eq!(assert_agreement(d, "fleet").len(), 3);
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d);
    for ids in [vec!["ok-1", "../escape"], vec!["a/b"], vec![".hidden"]] {
        let mut args = vec!["fleet", "issue"];
        args.extend(ids.iter());
        let out = run_in(d, &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("device ID"),
            "{}",
            text(&out)
        );
    }
    fs::write(d.join("bad.csv"), "cam-1\ncam-2\ncam 3\n").unwrap();
    let out = run_in(d, &words("fleet issue --from bad.csv"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv") && err.contains("line 3"), "{err}");
    let out = run_in(d, &words("fleet issue cam-1 --key ed25519"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(export(d, "fleet").is_empty(), "nothing may be issued");
    assert_eq!(fs::read_dir(d.join("fleet/devices")).unwrap().count(), 0);
    let out = run_in(d, &words("fleet list --dir nowhere"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fleet init"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_ca_key_never_leaves_ca_key() {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let outputs = vec![
        ok_in(d, &["fleet", "init"]),
        ok_in(d, &words("fleet issue --count 5 --prefix c- --json")),
        ok_in(d, &words("fleet issue s-1 --role both")),
        ok_in(d, &["fleet", "revoke", "c-1"]),
        ok_in(d, &["fleet", "crl"]),
        ok_in(d, &words("fleet rotate --within 100d")),
        ok_in(d, &["fleet", "status"]),
        ok_in(d, &["fleet", "list", "--json"]),
        ok_in(d, &["fleet", "export", "--csv"]),
    ];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(d.join("fleet/ca.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    #[cfg(windows)]
    assert!(devtls_pki::files::is_owner_only(&d.join("fleet/ca.key")).unwrap());
    let ca_key_der = openssl_ok(d, &words("pkey -in fleet/ca.key -outform DER")).stdout;
    let ca_key_pem = fs::read_to_string(d.join("fleet/ca.key")).unwrap();
    let body: String = ca_key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    // The private scalar: the 32 bytes after the OCTET STRING header inside the PKCS#8.
    let scalar = {
        let sec1 = openssl_ok(d, &words("ec -in fleet/ca.key -outform DER")).stdout;
        sec1[7..39].to_vec()
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for out in &outputs {
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !contains(stream, body.as_bytes()) && !contains(stream, &body.as_bytes()[..40])
            );
            assert!(!contains(stream, &ca_key_der) && !contains(stream, &scalar));
        }
    }
    let mut files = 0;
    for device in fs::read_dir(d.join("fleet/devices")).unwrap() {
        for f in fs::read_dir(device.unwrap().path()).unwrap() {
            let bytes = fs::read(f.unwrap().path()).unwrap();
            assert!(!contains(&bytes, &scalar) && !contains(&bytes, &body.as_bytes()[..40]));
            files += 1;
        }
    }
    assert!(files >= 6 * 3, "{files} device files checked");
}

/// The issue demands 5000 devices per run; DEVTLS_CRASH_COUNT may lower it while developing.
fn crash_count() -> usize {
    std::env::var("DEVTLS_CRASH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

fn spawn_issue(d: &Path, prefix: &str, count: &str) -> std::process::Child {
    support::devtls()
        .args([
            "fleet", "issue", "--count", count, "--prefix", prefix, "--json",
        ])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills `fleet issue --count 5000` with SIGKILL at random moments, twenty
/// times; after each kill inventory and files agree, and re-running the same
/// command completes the fleet.
#[test]
fn issuance_survives_sigkill_twenty_times() {
    let backend = support::postgres::backend();
    let n = crash_count();
    let started = Instant::now();
    let mut kills = 0;
    let mut fleets = 0;
    // Calibrate on a fifth of the run: how long a whole run takes on this machine now.
    let full = {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path());
        let t0 = Instant::now();
        let out = spawn_issue(dir.path(), "cam-", &(n / 5).to_string())
            .wait_with_output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        t0.elapsed() * 5
    };
    // Fleets are started until twenty kills have landed; each fleet ends with a run that completes.
    while kills < 20 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        init(d);
        fleets += 1;
        let mut done = 0usize;
        let mut kills_here = 0;
        loop {
            let mut child = spawn_issue(d, "cam-", &n.to_string());
            let t0 = Instant::now();
            // Anywhere in what is left of the run, start-up and recovery
            // included, but early enough that the run rarely finishes first.
            let remaining = full.mul_f64((n - done) as f64 / n as f64 * 0.8 + 0.02);
            let at = remaining.mul_f64(rand_fraction());
            // After the twentieth kill the last run must finish on its own (bounded).
            let deadline = if kills < 20 && kills_here < KILLS_PER_FLEET {
                at
            } else {
                Duration::from_secs(600)
            };
            let finished = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if t0.elapsed() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            match finished {
                Some(status) => {
                    let out = child.wait_with_output().unwrap();
                    assert!(status.success(), "{}", text(&out));
                    let rows = assert_agreement(d, "fleet");
                    assert_eq!(rows.len(), n, "re-running completed the fleet");
                    let ids: std::collections::BTreeSet<&str> =
                        rows.iter().map(|r| field(r, "device")).collect();
                    assert!((1..=n).all(|i| ids.contains(format!("cam-{i}").as_str())));
                    // The kills landed on the backend under test.
                    backend.assert_inventory(&d.join("fleet"), n);
                    break;
                }
                None => {
                    assert!(
                        kills < 20 && kills_here < KILLS_PER_FLEET,
                        "the final run did not finish within 10 minutes"
                    );
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    kills_here += 1;
                    done = assert_agreement(d, "fleet").len();
                    eprintln!("kill {kills}: {done} devices in agreement");
                }
            }
        }
    }
    eprintln!(
        "20 kills over {fleets} fleets in {:?} (a full run took {full:?})",
        started.elapsed()
    );
}

/// Kills per fleet before its run is let finish: 20 kills take three fleets.
const KILLS_PER_FLEET: usize = 7;

fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() % 10_000) as f64 / 10_000.0
}

/// A killed issuer's PostgreSQL session can outlive it for a moment (the
/// server notices the closed connection late when it is busy): recovery
/// waits for the database to agree with the freed lock file instead of
/// leaving the dead owner's rows and staging for a later command. The
/// server's backend of the killed issuer is stopped (SIGSTOP) so the moment
/// lasts 1.5 s; before the wait, recovery took the owner for alive.
#[test]
fn recovery_waits_for_a_killed_issuers_database_session_on_postgres() {
    let pg = support::postgres::postgres();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d);
    let mut child = spawn_issue(d, "cam-", "5000");
    let work = d.join("fleet/.work");
    let deadline = Instant::now() + Duration::from_secs(60);
    // The issuer's session lock and its lock file, both in place.
    let backend = loop {
        let pid =
            pg.psql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted LIMIT 1");
        let locked = fs::read_dir(&work).is_ok_and(|mut e| {
            e.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".lock")))
        });
        if !pid.is_empty() && locked {
            break pid;
        }
        assert!(Instant::now() < deadline, "the issuer never took its locks");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the issuer ended first"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &backend])
        .output()
        .unwrap();
    assert!(
        stop.status.success(),
        "kill -STOP {backend}: {}",
        text(&stop)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &backend])
            .output();
    });
    // The next command's recovery settles the dead issuer's rows and staging.
    let rows = assert_agreement(d, "fleet");
    resumed.join().unwrap();
    pg.assert_inventory(&d.join("fleet"), rows.len());
}

#[test]
fn two_issuers_at_once_never_share_a_serial_or_a_device() {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d);
    let a = spawn_issue(d, "cam-", "1500");
    let b = spawn_issue(d, "cam-", "1500");
    let c = spawn_issue(d, "other-", "500");
    let mut issued = 0;
    for (child, prefix) in [(a, "cam-"), (b, "cam-"), (c, "other-")] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{prefix}: {}", text(&out));
        let report = json(&out);
        if prefix == "cam-" {
            issued += report["issued"].as_u64().unwrap();
        } else {
            assert_eq!(report["issued"], 500);
        }
    }
    assert_eq!(issued, 1500, "the two overlapping issuers split the work");
    let rows = assert_agreement(d, "fleet");
    assert_eq!(rows.len(), 2000);
}

/// The fleet end to end with the device's TLS library: a gateway certificate
/// and device identities from the fleet, `devtls serve --ca ca.der --crl
/// crl.der`, and the device peer (mbedTLS 3.6 with the device's
/// configuration) loading a device folder's DER files. A
/// device completes mTLS; after `fleet revoke` and `fleet crl` it is refused.
#[test]
fn mbedtls_device_does_mtls_with_serve_until_revoked() {
    let _backend = support::postgres::backend();
    use support::device;
    use support::net::Serve;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d);
    fs::write(d.join("gw.csv"), "gateway,gateway.local,127.0.0.1\n").unwrap();
    ok_in(d, &words("fleet issue --from gw.csv --role server"));
    ok_in(d, &words("fleet issue cam-1 cam-2"));
    ok_in(d, &words("fleet revoke cam-2 --reason keyCompromise"));
    ok_in(d, &["fleet", "crl"]);
    let gw = "fleet/devices/gateway";
    let serve = Serve::start(
        d,
        &[
            "--cert",
            &format!("{gw}/server.der"),
            "--key",
            &format!("{gw}/server.key.der"),
            "--ca",
            "fleet/ca.der",
            "--crl",
            "fleet/crl.der",
            "--count",
            "2",
            "--json",
        ],
    );
    let device = |id: &str| {
        let f = |name: &str| format!("fleet/devices/{id}/{name}");
        device::client(
            d,
            serve.port,
            &[
                "--ca",
                &f("ca.der"),
                "--hostname",
                "gateway.local",
                "--cert",
                &f("client.der"),
                "--key",
                &f("client.key.der"),
                "--send",
                "hello from the device\n",
                "--timeout",
                "15",
            ],
        )
    };
    let good = device("cam-1");
    assert!(good.single().ok, "{}", good.transcript);
    assert_eq!(good.single().version.as_deref(), Some("TLSv1.2"));
    let report = serve.report(Duration::from_secs(20));
    assert_eq!(report["result"], "served", "{report}");
    assert_eq!(report["client_chain"][0]["subject"], "CN=cam-1", "{report}");
    let revoked = device("cam-2");
    assert!(!revoked.single().ok, "{}", revoked.transcript);
    let report = serve.report(Duration::from_secs(20));
    assert_ne!(report["result"], "served", "{report}");
    assert!(
        report.to_string().to_lowercase().contains("revoked"),
        "the server says why: {report}"
    );
}

//! Issue 11's fleet reproductions: a foreign ca.key, an emptied inventory,
//! a CRL that would un-revoke, code injected through --server-host, names a
//! certificate or spreadsheet must not take, a device twice in a CSV.
//!
//! The fleet tests run on the backend `DEVTLS_TEST_BACKEND` names
//! (scripts/test.sh runs this file on both). Those about one backend's own
//! damage say so in their name and always use it: `..._on_sqlite` (an
//! emptied inventory.db, an old copy of the file) and `..._on_postgres`
//! (an old copy of the database, a server that is not there, a wrong
//! password, a newer schema).

use crate::support;

use std::fs;
use std::path::Path;

use support::{ok_in, openssl_ok, run_in, text, words};

fn fleet_with_devices(d: &Path) {
    support::postgres::fresh_database();
    ok_in(d, &["fleet", "init", "--name", "Test fleet"]);
    ok_in(d, &words("fleet issue d1 d2"));
}

/// Exit 2 with one line that contains every word of `says`.
fn refused(d: &Path, args: &[&str], says: &[&str]) -> String {
    let out = run_in(d, args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}:\n{all}");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{args:?}: one line:\n{err}");
    for w in says {
        assert!(err.contains(w), "{args:?}: {w:?} missing in:\n{err}");
    }
    err
}

#[test]
fn a_ca_key_that_is_not_the_certificates_signs_nothing() {
    let backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_with_devices(d);
    ok_in(d, &words("fleet revoke d2"));
    ok_in(d, &words("fleet crl"));
    let crl_before = fs::read(d.join("fleet/crl.der")).unwrap();
    openssl_ok(
        d,
        &words("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out fleet/ca.key"),
    );
    for args in [
        "fleet issue d3",
        "fleet crl",
        "fleet rotate --within 3650d",
        "fleet issue d2 --reissue",
    ] {
        refused(
            d,
            &words(args),
            &["fleet/ca.key", "does not belong", "ca.der"],
        );
    }
    assert!(!d.join("fleet/devices/d3").exists());
    assert_eq!(fs::read(d.join("fleet/crl.der")).unwrap(), crl_before);
    // Reading the inventory still works: only signing needs the key.
    ok_in(d, &words("fleet list"));
    backend.assert_inventory(&d.join("fleet"), 2);
}

#[test]
fn an_emptied_or_missing_inventory_is_damage_not_a_new_fleet_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_with_devices(d);
    ok_in(d, &words("fleet revoke d1 --reason keyCompromise"));
    ok_in(d, &words("fleet crl"));
    let crl = fs::read(d.join("fleet/crl.der")).unwrap();
    fs::write(d.join("fleet/inventory.db"), b"").unwrap();
    for args in ["fleet list", "fleet crl", "fleet issue d9", "fleet status"] {
        refused(
            d,
            &words(args),
            &["inventory.db is empty", "damaged", "backup"],
        );
    }
    refused(d, &words("fleet init"), &["already holds a fleet"]);
    assert_eq!(
        fs::read(d.join("fleet/crl.der")).unwrap(),
        crl,
        "the CRL is untouched"
    );
    assert_eq!(fs::metadata(d.join("fleet/inventory.db")).unwrap().len(), 0);
    for f in ["inventory.db", "inventory.db-wal", "inventory.db-shm"] {
        let _ = fs::remove_file(d.join("fleet").join(f));
    }
    refused(
        d,
        &words("fleet list"),
        &["inventory.db is missing", "damaged"],
    );
    refused(d, &words("fleet init"), &["already holds a fleet"]);
}

#[test]
fn a_crl_that_would_un_revoke_a_device_is_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_with_devices(d);
    // An old copy of the inventory, from before the revocation.
    let old = d.join("old");
    fs::create_dir(&old).unwrap();
    ok_in(d, &words("fleet list"));
    for f in ["inventory.db", "inventory.db-wal"] {
        if d.join("fleet").join(f).exists() {
            fs::copy(d.join("fleet").join(f), old.join(f)).unwrap();
        }
    }
    ok_in(d, &words("fleet revoke d1 --reason keyCompromise"));
    ok_in(d, &words("fleet crl"));
    let crl = fs::read(d.join("fleet/crl.der")).unwrap();
    for f in ["inventory.db", "inventory.db-wal", "inventory.db-shm"] {
        let _ = fs::remove_file(d.join("fleet").join(f));
        if old.join(f).exists() {
            fs::copy(old.join(f), d.join("fleet").join(f)).unwrap();
        }
    }
    refused(
        d,
        &words("fleet crl"),
        &["lists 1 revoked", "un-revoke", "inventory.db"],
    );
    assert_eq!(fs::read(d.join("fleet/crl.der")).unwrap(), crl);
    // Another CA's CRL at the target is not this fleet's history: written over.
    ok_in(d, &words("fleet crl -o other.der"));
}

#[test]
fn server_host_injection_is_refused_and_boot_py_compiles() {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_with_devices(d);
    for host in [
        "x\"+str(__import__(\"os\").system(\"echo PWNED\"))[:0]+\"",
        "a\"b",
        "a b",
        "=cmd|' /C calc'!A0",
        "*.example.com",
    ] {
        let out = run_in(d, &["fleet", "issue", "d5", "--server-host", host]);
        assert_eq!(out.status.code(), Some(2), "{host}: {}", text(&out));
        assert!(text(&out).contains("--server-host"), "{}", text(&out));
    }
    assert!(!d.join("fleet/devices/d5").exists());
    for (id, host) in [
        ("d6", "fe80::1"),
        ("d7", "Bücher.example"),
        ("d8", "10.0.0.1"),
    ] {
        ok_in(d, &["fleet", "issue", id, "--server-host", host]);
        let boot = d.join("fleet/devices").join(id).join("boot.py");
        let src = fs::read_to_string(&boot).unwrap();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys; compile(open(sys.argv[1]).read(), 'boot.py', 'exec')",
            ])
            .arg(&boot)
            .output()
            .expect("python3 is missing: apt-get install python3");
        assert!(
            out.status.success(),
            "{src}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = match host {
            "Bücher.example" => "\"xn--bcher-kva.example\"",
            h => &format!("\"{h}\""),
        };
        assert!(src.contains(&format!("server_hostname={want}")), "{src}");
    }
}

#[test]
fn names_a_certificate_cannot_hold_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (args, says) in [
        (vec!["new", "server", "--dns", "a b"], "contains ' '"),
        (
            vec!["new", "server", "--dns", "=cmd|' /C calc'!A0"],
            "contains",
        ),
        (vec!["new", "server", "--dns", "a.*.com"], "wildcard"),
        (vec!["new", "server", "--ip", "10.0.0.300"], "10.0.0.300"),
        (vec!["csr", "--domain", "bad_name.com"], "contains '_'"),
    ] {
        let out = run_in(d, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    assert!(!d.join("server.key").exists());
    ok_in(
        d,
        &words("new server --dns *.cam.example --dns Bücher.example"),
    );
    let cert = openssl_ok(d, &words("x509 -in server.crt -noout -ext subjectAltName"));
    let sans = text(&cert);
    assert!(
        sans.contains("DNS:*.cam.example, DNS:xn--bcher-kva.example"),
        "{sans}"
    );
}

#[test]
fn csv_devices_twice_or_with_formulas_are_reported_and_export_is_defused() {
    let backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::postgres::fresh_database();
    ok_in(d, &["fleet", "init"]);
    fs::write(
        d.join("twice.csv"),
        "id,dns\ncam-1,a.lan\ncam-2\ncam-1,b.lan\n",
    )
    .unwrap();
    refused(
        d,
        &words("fleet issue --from twice.csv"),
        &["line 4", "'cam-1'", "line 2"],
    );
    fs::write(d.join("evil.csv"), "=cmd|' /C calc'!A0\n").unwrap();
    refused(
        d,
        &words("fleet issue --from evil.csv"),
        &["line 1", "contains '='"],
    );
    fs::write(d.join("evil2.csv"), "cam-1,=cmd|' /C calc'!A0\n").unwrap();
    refused(
        d,
        &words("fleet issue --from evil2.csv"),
        &["line 1", "'='"],
    );
    assert!(!d.join("fleet/devices/cam-1").exists(), "nothing issued");
    ok_in(d, &words("fleet issue cam-1"));
    backend.assert_inventory(&d.join("fleet"), 1);
    let out = ok_in(d, &words("fleet export --csv"));
    let csv = String::from_utf8(out.stdout).unwrap();
    for cell in csv.lines().flat_map(|l| l.split(',')) {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{cell:?} in\n{csv}"
        );
    }
}

/// The PostgreSQL counterpart of the old-copy test above: the database
/// restored from a copy made before a revocation.
#[test]
fn a_crl_that_would_un_revoke_a_device_is_refused_on_postgres() {
    let pg = support::postgres::postgres();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_with_devices(d);
    let old = pg.copy_database();
    ok_in(d, &words("fleet revoke d1 --reason keyCompromise"));
    ok_in(d, &words("fleet crl"));
    let crl = fs::read(d.join("fleet/crl.der")).unwrap();
    pg.use_url(&old);
    refused(
        d,
        &words("fleet crl"),
        &["lists 1 revoked", "un-revoke", "inventory database"],
    );
    assert_eq!(fs::read(d.join("fleet/crl.der")).unwrap(), crl);
}

/// What goes wrong with a database is one line, exit 2, naming the database
/// without its password and saying what to do: a server that is not there,
/// a wrong password, an unknown database, a schema newer than this devtls.
#[test]
fn a_database_that_cannot_be_used_is_one_line_on_postgres() {
    let pg = support::postgres::postgres();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_with_devices(d);
    let port = pg.port();
    let closed = support::free_tcp_port();
    pg.require_password("issuer", "right-pw");
    let url = |user: &str, db: &str, port: u16| {
        format!("postgres://{user}@127.0.0.1:{port}/{db}?sslmode=disable")
    };
    let db = pg.url().unwrap();
    let name = db.rsplit('/').next().unwrap().split('?').next().unwrap();
    // The password the role needs works (and is the control for the next case).
    ok_in(
        d,
        &[
            "fleet",
            "status",
            "--db",
            &url("issuer:right-pw", name, port),
        ],
    );
    for (db, says) in [
        (
            url("postgres", name, closed),
            vec!["could not connect", "Check that the server runs"],
        ),
        (
            url("issuer:wrong-pw", name, port),
            vec!["issuer:***@", "password authentication failed"],
        ),
        (
            url("postgres", "no_such_db", port),
            vec!["no_such_db", "does not exist"],
        ),
    ] {
        for cmd in ["status", "issue d9"] {
            let line = format!("fleet {cmd} --db");
            let mut args = words(&line);
            args.push(&db);
            let err = refused(d, &args, &says.iter().map(|s| &**s).collect::<Vec<_>>());
            assert!(!err.contains("wrong-pw"), "the password is hidden: {err}");
        }
    }
    assert!(!d.join("fleet/devices/d9").exists());
    pg.psql("UPDATE schema_version SET version = version + 1");
    let found = pg.psql("SELECT version FROM schema_version");
    refused(
        d,
        &words("fleet issue d9"),
        &[
            &format!("version {found}"),
            "newer than this devtls",
            "nothing was changed",
        ],
    );
    assert!(!d.join("fleet/devices/d9").exists());
}

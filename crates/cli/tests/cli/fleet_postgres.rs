//! `devtls fleet` on a PostgreSQL inventory shared by several issuers, each
//! with its own copy of the fleet folder (as on several machines): unique
//! serials by the database's constraint (a forced clash is signed again),
//! one CRL whose numbers strictly increase across issuers, every device
//! folder complete; `fleet migrate` copies an SQLite fleet; the schema
//! version is checked. Every test starts its own server (support/postgres.rs).

use crate::support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use serde_json::Value;
use support::fleet::{crl_number, field, folders_complete};
use support::postgres::{backend, postgres};
use support::{ok_in, openssl_ok, run_in, text, words};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", text(out)))
}

/// A copy of the first issuer's CA files in `d/name`: another issuer.
fn issuer_folder(d: &Path, name: &str) {
    fs::create_dir_all(d.join(name)).unwrap();
    for f in ["ca.der", "ca.crt", "ca.key"] {
        fs::copy(d.join("fleet").join(f), d.join(name).join(f)).unwrap();
    }
}

/// The proof: 4 issuers × 5,000 devices into one database at once
/// while a fifth process revokes devices and publishes CRLs.
#[test]
fn four_issuers_and_a_revoker_share_one_database() {
    let n: usize = std::env::var("DEVTLS_PG_ISSUE_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let _pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("fleet init --name Shared"));
    let t0 = Instant::now();
    let issuers: Vec<_> = (1..=4)
        .map(|i| {
            let name = format!("line{i}");
            issuer_folder(d, &name);
            support::devtls()
                .args(["fleet", "issue", "--json", "--dir", &name, "--count"])
                .arg(n.to_string())
                .args(["--prefix", &format!("line{i}-")])
                .current_dir(d)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // The fifth process: revokes a device of each line in turn and
    // publishes a CRL after each, until the issuers are done.
    let mut numbers = Vec::new();
    let mut revoked = BTreeSet::new();
    let mut k = 0usize;
    let mut issuers: Vec<_> = issuers.into_iter().map(Some).collect();
    let mut outputs = Vec::new();
    while issuers.iter().any(Option::is_some) || revoked.len() < 8 {
        k += 1;
        let target = format!("line{}-{}", k % 4 + 1, (k * 37) % n + 1);
        if !revoked.contains(&target) {
            let out = run_in(d, &["fleet", "revoke", "--json", "--dir", "fleet", &target]);
            // Not issued yet (unknown), or still being issued (pending: a
            // certificate not yet in place is not revoked): tried again later.
            if out.status.success()
                && json(&out)["revoked"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            {
                revoked.insert(target);
            }
        }
        let crl = format!("crl-{k}.der");
        ok_in(d, &["fleet", "crl", "--dir", "fleet", "-o", &crl]);
        numbers.push(crl_number(d, &crl));
        for slot in issuers.iter_mut() {
            if let Some(child) = slot.as_mut() {
                if child.try_wait().unwrap().is_some() {
                    outputs.push(slot.take().unwrap().wait_with_output().unwrap());
                }
            }
        }
    }
    let took = t0.elapsed();
    for out in &outputs {
        assert!(out.status.success(), "{}", text(out));
        assert_eq!(json(out)["issued"], n as u64, "{}", text(out));
    }
    eprintln!(
        "4 x {n} devices in {took:?} ({:.0} devices/s) with {} CRLs and {} revocations",
        (4 * n) as f64 / took.as_secs_f64(),
        numbers.len(),
        revoked.len()
    );
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "CRL numbers strictly increase: {numbers:?}"
    );
    let rows = support::fleet::export(d, "fleet");
    assert_eq!(rows.len(), 4 * n);
    let serials: BTreeSet<&str> = rows.iter().map(|r| field(r, "serial")).collect();
    assert_eq!(serials.len(), 4 * n, "every serial unique");
    assert!(
        serials.iter().all(|s| s.len() >= 16),
        "serials of at least 64 bits"
    );
    for i in 1..=4 {
        folders_complete(d, &format!("line{i}"), &format!("line{i}-"), n, &rows);
    }
    // The last CRL: signed by the CA and listing every revocation.
    let last = format!("crl-{k}.der");
    let all = support::fleet::crl_verified(d, &last);
    let listed = all.matches("Serial Number:").count();
    assert_eq!(listed, revoked.len(), "the last CRL lists every revocation");
}

/// A serial the database already holds (forced by a trigger that records
/// the first certificate's serial for a decoy just before it is inserted)
/// is refused by the UNIQUE constraint, and the device is signed again.
#[test]
fn a_serial_clash_is_signed_again() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("fleet init"));
    pg.psql(
        "CREATE TABLE clash_done (x INTEGER);
         CREATE FUNCTION clash() RETURNS trigger AS $$
         BEGIN
           IF NEW.device = 'clash-me' AND NOT EXISTS (SELECT 1 FROM clash_done) THEN
             INSERT INTO clash_done VALUES (1);
             INSERT INTO certs (device, serial, key_type, role, not_before, not_after, status, issued_at)
             VALUES ('decoy', NEW.serial, 'p256', 'client', 0, 1, 'superseded', 0);
           END IF;
           RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER clash BEFORE INSERT ON certs FOR EACH ROW EXECUTE FUNCTION clash();",
    );
    let out = ok_in(d, &words("fleet issue clash-me --json"));
    assert_eq!(json(&out)["issued"], 1, "{}", text(&out));
    let decoy = pg.psql("SELECT serial FROM certs WHERE device = 'decoy'");
    let mine = pg.psql("SELECT serial FROM certs WHERE device = 'clash-me' AND status = 'active'");
    assert_eq!(
        pg.psql("SELECT COUNT(*) FROM clash_done"),
        "1",
        "the clash happened"
    );
    assert!(
        !decoy.is_empty() && !mine.is_empty() && decoy != mine,
        "{decoy} vs {mine}"
    );
    let out = openssl_ok(
        d,
        &words("x509 -inform DER -in fleet/devices/clash-me/client.der -noout -serial"),
    );
    let serial = String::from_utf8_lossy(&out.stdout)
        .trim()
        .to_ascii_lowercase();
    assert_eq!(
        serial,
        format!("serial={mine}"),
        "the folder holds the re-signed certificate"
    );
}

/// A database whose schema is newer than this devtls is refused, naming both versions.
#[test]
fn a_newer_schema_is_refused() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("fleet init"));
    pg.psql("UPDATE schema_version SET version = version + 40");
    let found = pg.psql("SELECT version FROM schema_version");
    let out = run_in(d, &words("fleet status"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = text(&out);
    assert!(
        err.contains(&format!("version {found}")) && err.contains("newer"),
        "{err}"
    );
}

/// Runs under either backend: `fleet list` pages with --limit/--after.
#[test]
fn list_pages() {
    let _b = backend();
    support::postgres::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("fleet init"));
    ok_in(d, &words("fleet issue --count 25 --prefix cam-"));
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = words("fleet list --json --limit 10");
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let page = json(&ok_in(d, &args));
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = Some(field(page.last().unwrap(), "cursor").to_string());
        seen.extend(page.iter().map(|r| field(r, "device").to_string()));
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        (seen.len(), unique.len()),
        (25, 25),
        "each row once: {seen:?}"
    );
}

/// Rows for a large fleet, inserted directly in one statement (PostgreSQL)
/// or one transaction (SQLite): 1 in 100 revoked, the rest active, expiring
/// over the next 13 weeks. The same queries at a million rows, timed, are
/// bench/fleet_million.sh's (docs/fleet-postgres.md, "Large fleets");
/// `DEVTLS_LARGE_FLEET=1000000` runs these tests at that size.
fn large() -> u64 {
    std::env::var("DEVTLS_LARGE_FLEET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// `fleet status` and pages of `fleet list` on `d/fleet` with a large
/// fleet's rows: they answer, with the right counts (the time is printed,
/// not asserted).
fn status_and_list_answer(d: &Path, backend: &str, rows: u64) {
    let t0 = Instant::now();
    let status = json(&ok_in(d, &words("fleet status --json")));
    let status_time = t0.elapsed();
    assert_eq!(status["counts"]["active"], rows - rows / 100, "{status}");
    assert_eq!(status["counts"]["revoked"], rows / 100, "{status}");
    let t0 = Instant::now();
    let first = json(&ok_in(d, &words("fleet list --json --limit 1000")));
    let first_time = t0.elapsed();
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 1000);
    let cursor = field(first.last().unwrap(), "cursor").to_string();
    let t0 = Instant::now();
    let next = json(&ok_in(
        d,
        &[
            "fleet", "list", "--json", "--limit", "1000", "--after", &cursor,
        ],
    ));
    let next_time = t0.elapsed();
    let next = next.as_array().unwrap();
    assert_eq!(next.len(), 1000);
    let firsts: BTreeSet<&str> = first.iter().map(|r| field(r, "device")).collect();
    assert!(
        next.iter().all(|r| !firsts.contains(field(r, "device"))),
        "the next page continues after the first"
    );
    let t0 = Instant::now();
    let revoked = json(&ok_in(
        d,
        &words("fleet list --json --status revoked --limit 100"),
    ));
    let revoked_time = t0.elapsed();
    assert_eq!(revoked.as_array().unwrap().len(), 100);
    eprintln!(
        "{backend}, {rows} devices: status {status_time:?}, first page of 1000 {first_time:?}, \
         next page {next_time:?}, 100 revoked {revoked_time:?}"
    );
}

#[test]
fn a_large_fleet_on_postgres() {
    let rows = large();
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("fleet init"));
    let t0 = Instant::now();
    pg.psql(&format!(
        "INSERT INTO certs (device, serial, key_type, role, not_before, not_after, status,
                            issued_at, revoked_at, reason)
         SELECT 'cam-' || g, lpad(to_hex(g), 32, '0'), 'p256', 'client', n, n + 86400 + (g % 91) * 86400,
                CASE WHEN g % 100 = 0 THEN 'revoked' ELSE 'active' END, n,
                CASE WHEN g % 100 = 0 THEN n END, CASE WHEN g % 100 = 0 THEN 'keyCompromise' END
         FROM generate_series(1, {rows}) AS g,
              (SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) AS n) AS t;
         ANALYZE certs;"
    ));
    eprintln!("postgres: {rows} rows inserted in {:?}", t0.elapsed());
    status_and_list_answer(d, "postgres", rows);
}

#[test]
fn a_large_fleet_on_sqlite() {
    let rows = large();
    support::require("python3");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::devtls()
        .args(words("fleet init"))
        .current_dir(d)
        .output()
        .unwrap();
    let t0 = Instant::now();
    let script = format!(
        "import sqlite3, time\n\
         db = sqlite3.connect('fleet/inventory.db')\n\
         n = int(time.time())\n\
         rows = (('cam-%d' % g, '%032x' % g, 'p256', 'client', n, n + 86400 + (g % 91) * 86400,\n\
                  'revoked' if g % 100 == 0 else 'active', n,\n\
                  n if g % 100 == 0 else None, 'keyCompromise' if g % 100 == 0 else None)\n\
                 for g in range(1, {rows} + 1))\n\
         db.executemany('INSERT INTO certs (device, serial, key_type, role, not_before, not_after, '\n\
                        'status, issued_at, revoked_at, reason) VALUES (?,?,?,?,?,?,?,?,?,?)', rows)\n\
         db.commit()\n\
         db.execute('ANALYZE')\n\
         db.commit()\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("sqlite: {rows} rows inserted in {:?}", t0.elapsed());
    status_and_list_answer(d, "sqlite", rows);
}

/// `fleet migrate` copies an SQLite fleet (rows, revocations, CRL number)
/// into an empty database, checks it, and refuses a non-empty target; the
/// fleet then works on the database.
#[test]
fn migrate_copies_and_checks_an_sqlite_fleet() {
    let pg = postgres();
    let url = pg.url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sqlite = |args: &str| {
        let out = support::devtls()
            .args(words(args))
            .current_dir(d)
            .env_remove("DEVTLS_FLEET_DB")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}: {}", text(&out));
        out
    };
    sqlite("fleet init");
    sqlite("fleet issue --count 300 --prefix cam-");
    sqlite("fleet revoke cam-7 --reason keyCompromise");
    sqlite("fleet crl");
    sqlite("fleet crl");
    let before = json(&sqlite("fleet export --json"));
    let out = sqlite(&format!("fleet migrate --to {url} --json"));
    let report = json(&out);
    assert_eq!(report["rows"], 300, "{report}");
    assert_eq!(report["digest"].as_str().unwrap().len(), 64);
    // The fleet on the database: same rows, the CRL number goes on from 2.
    let after = json(&ok_in(d, &words("fleet export --json")));
    assert_eq!(before, after);
    ok_in(d, &words("fleet crl -o next.der"));
    assert_eq!(crl_number(d, "next.der"), 3);
    ok_in(d, &words("fleet issue cam-301"));
    // A non-empty target is refused.
    let out = run_in(d, &["fleet", "migrate", "--to", &url]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
}

//! `devtls acme` against a real ACME server on loopback: Debian's Pebble and
//! pebble-challtestsrv, started and stopped by each test, their test CA
//! trusted only through `--server-ca`.

use crate::acme_support;
use crate::support;

use std::path::Path;
use std::process::Output;

use acme_support::{acme, args, Options, Pebble};
use support::text;

const NAME: &str = "cam.example.com";

fn issue_args(pebble: &Pebble, extra: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "issue",
        "--domain",
        NAME,
        "--bind",
        "127.0.0.1",
        "--dir",
        "acme",
    ]);
    a.extend(pebble.server_args());
    a.extend(args(extra));
    a
}

fn http01(pebble: &Pebble) -> Vec<String> {
    let port = pebble.http_port.to_string();
    issue_args(pebble, &["--challenge", "http-01", "--http-port", &port])
}

/// Pebble started with `options`, and a certificate issued from it by
/// http-01 into `WORK/acme` (the work folder is the second value).
fn issued(options: Options) -> (Pebble, tempfile::TempDir) {
    let pebble = Pebble::start(options);
    let work = tempfile::tempdir().unwrap();
    let out = acme(work.path(), &http01(&pebble));
    assert!(out.status.success(), "{}", text(&out));
    (pebble, work)
}

/// Pebble offering a second chain (to another root), and a certificate
/// issued with `--anchor` at its first root plus `extra`; returns the
/// issue's output and that root's DER.
fn issued_anchored_at_root1(work: &Path, extra: &[&str]) -> (Pebble, Output, Vec<u8>) {
    let pebble = Pebble::start(Options {
        alternate_roots: 1,
        ..Options::default()
    });
    let root1 = work.join("root1.pem");
    std::fs::write(&root1, pebble.management_get("roots/1")).unwrap();
    let mut a = http01(&pebble);
    a.extend(args(&["--anchor", &root1.display().to_string()]));
    a.extend(args(extra));
    let out = acme(work, &a);
    assert!(out.status.success(), "{}", text(&out));
    (pebble, out, certs_in(&root1).remove(0))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn certs_in(pem_file: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(pem_file).unwrap();
    devtls_pki::sniff::sniff(&bytes)
        .unwrap()
        .certificates()
        .map(|i| i.der.clone())
        .collect()
}

/// The live files are whole and consistent: certbot's PEM files, the
/// device's DER files, the key 0600 and matching the certificate.
fn assert_lineage(live: &Path) {
    for f in [
        "privkey.pem",
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "cert.der",
        "privkey.der",
        "ca.der",
    ] {
        assert!(live.join(f).is_file(), "{f} missing in {}", live.display());
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&live.join("privkey.der")), 0o600);
        assert_eq!(mode(&live.join("privkey.pem")), 0o600);
    }
    let full = certs_in(&live.join("fullchain.pem"));
    assert!(full.len() >= 2, "leaf and intermediate");
    assert_eq!(std::fs::read(live.join("cert.der")).unwrap(), full[0]);
    assert_eq!(certs_in(&live.join("chain.pem")), full[1..].to_vec());
    let leaf = devtls_pki::chain::Cert::parse(&full[0]).unwrap();
    assert!(
        leaf.info.sans.dns.iter().any(|n| n == NAME),
        "{:?}",
        leaf.info.sans
    );
    let key = std::fs::read(live.join("privkey.der")).unwrap();
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(
        &rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()),
    )
    .unwrap();
    rustls::sign::CertifiedKey::new(vec![full[0].clone().into()], signing)
        .keys_match()
        .expect("privkey.der is cert.der's key");
}

#[test]
fn http01_issue_writes_certbots_layout_and_the_device_files() {
    let pebble = Pebble::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let out = acme(work.path(), &http01(&pebble));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Said before ordering: leaf only, no clientAuth from a public CA.
    assert!(
        stdout.contains("presents only its own certificate") && stdout.contains("devtls split"),
        "{stdout}"
    );
    assert!(
        stdout.contains("clientAuth") && stdout.contains("devtls fleet"),
        "{stdout}"
    );
    assert!(stdout.contains("(created"), "{stdout}");
    let live = work.path().join("acme/live").join(NAME);
    assert_lineage(&live);
    // Pebble's roots are in no Mozilla set: ca.der is the intermediate, as `devtls anchor` chooses.
    let chain = certs_in(&live.join("chain.pem"));
    assert_eq!(
        std::fs::read(live.join("ca.der")).unwrap(),
        chain[chain.len() - 1]
    );
    // The account: 0600, and reused by the next order.
    #[cfg(unix)]
    let account = std::fs::read_dir(work.path().join("acme/accounts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("account.json");
    #[cfg(unix)]
    assert_eq!(mode(&account), 0o600);
    let again = acme(work.path(), &http01(&pebble));
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing lineage is not replaced without --force: {}",
        text(&again)
    );
    let mut forced = http01(&pebble);
    forced.push("--force".into());
    let out = acme(work.path(), &forced);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(reused"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_link(&live).unwrap(),
        Path::new("../archive").join(NAME).join("2")
    );
    assert_lineage(&live);
    let shown = acme(work.path(), &args(&["account", "--dir", "acme", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["server"], pebble.url.as_str());
    assert_eq!(v[0]["mode"], "0600");
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains("key_pkcs8"),
        "the key is never shown"
    );
}

#[test]
fn dns01_through_a_hook_that_drives_challtestsrvs_api() {
    let pebble = Pebble::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let hook = pebble.dns_hook(work.path());
    let hook = hook.display().to_string();
    let out = acme(
        work.path(),
        &issue_args(&pebble, &["--challenge", "dns-01", "--dns-hook", &hook]),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_lineage(&work.path().join("acme/live").join(NAME));
    let log = std::fs::read_to_string(work.path().join("dns-hook.log")).unwrap();
    assert_eq!(
        log,
        format!("add _acme-challenge.{NAME}\nremove _acme-challenge.{NAME}\n"),
        "the record is added, then removed"
    );
}

#[test]
fn tls_alpn01_on_devtlss_own_listener() {
    let pebble = Pebble::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let port = pebble.tls_port.to_string();
    let out = acme(
        work.path(),
        &issue_args(
            &pebble,
            &["--challenge", "tls-alpn-01", "--tls-port", &port],
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_lineage(&work.path().join("acme/live").join(NAME));
}

#[test]
fn a_failing_challenge_is_one_line_with_the_cas_detail_and_nothing_in_live() {
    let pebble = Pebble::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    // devtls listens on a port Pebble does not validate on: Pebble finds nothing there.
    let wrong = support::free_tcp_port().to_string();
    let out = acme(
        work.path(),
        &issue_args(&pebble, &["--challenge", "http-01", "--http-port", &wrong]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains(&format!("could not validate {NAME} with http-01")),
        "{stderr}"
    );
    assert!(
        lines[0].contains(&pebble.http_port.to_string()),
        "the CA's detail names where it looked: {stderr}"
    );
    assert!(lines[0].contains("firewall"), "and what to check: {stderr}");
    assert!(!work.path().join("acme/live").join(NAME).exists());
}

#[test]
fn an_unreachable_directory_is_one_line_and_exit_2() {
    let work = tempfile::tempdir().unwrap();
    let port = support::free_tcp_port();
    let out = acme(
        work.path(),
        &args(&[
            "issue",
            "--domain",
            NAME,
            "--server",
            &format!("https://127.0.0.1:{port}/dir"),
            "--dir",
            "acme",
        ]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach the ACME directory") && stderr.contains("--server"),
        "{stderr}"
    );
    assert!(
        !work.path().join("acme/accounts").exists(),
        "no account made"
    );
}

#[test]
fn bad_nonces_are_retried_and_a_ca_that_refuses_every_nonce_is_one_line() {
    // 15% of nonces refused: every request still goes through.
    let (pebble, work) = issued(Options {
        nonce_reject: 15,
        ..Options::default()
    });
    assert_lineage(&work.path().join("acme/live").join(NAME));
    drop(pebble);
    // Every nonce refused: the CA's problem, said once.
    let pebble = Pebble::start(Options {
        nonce_reject: 100,
        ..Options::default()
    });
    let work = tempfile::tempdir().unwrap();
    let out = acme(work.path(), &http01(&pebble));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("rejected the request's nonce") && stderr.contains("try again"),
        "{stderr}"
    );
}

#[test]
fn revoke_by_the_account_that_ordered_it() {
    let (pebble, work) = issued(Options::default());
    let live = format!("acme/live/{NAME}");
    let ca = pebble.server_ca.display().to_string();
    let revoke = args(&[
        "revoke",
        &live,
        "--reason",
        "keyCompromise",
        "--dir",
        "acme",
        "--server-ca",
        &ca,
    ]);
    let out = acme(work.path(), &revoke);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoked"),
        "{}",
        text(&out)
    );
    // The CA now knows it as revoked: a second request is refused as such.
    let again = acme(work.path(), &revoke);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .to_lowercase()
            .contains("revoked"),
        "{}",
        text(&again)
    );
    let bad = acme(
        work.path(),
        &args(&["revoke", &live, "--reason", "becauseICan", "--dir", "acme"]),
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[test]
fn alternate_chains_are_fetched_and_anchor_picks_the_one_ending_at_the_devices_root() {
    let work = tempfile::tempdir().unwrap();
    let (pebble, out, root1_der) = issued_anchored_at_root1(work.path(), &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chains_offered"], 2, "{v}");
    let live = work.path().join("acme/live").join(NAME);
    assert_lineage(&live);
    // ca.der is the devices' root, and the chain written ends under it.
    assert_eq!(std::fs::read(live.join("ca.der")).unwrap(), root1_der);
    assert_eq!(v["anchor"]["trust"], "root", "{v}");
    let chain = certs_in(&live.join("chain.pem"));
    let top = devtls_pki::chain::Cert::parse(chain.last().unwrap()).unwrap();
    let root = devtls_pki::chain::Cert::parse(&root1_der).unwrap();
    assert!(top.issued_by(&root), "the written chain ends at roots/1");
    // A root no chain ends at is refused, naming where the chains end.
    let other = work.path().join("other.pem");
    std::fs::write(&other, pebble.server_ca_pem()).unwrap();
    let mut a = http01(&pebble);
    a.extend(args(&["--anchor", &other.display().to_string(), "--force"]));
    let out = acme(work.path(), &a);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("none of the CA's 2 chain(s)"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(live.join("ca.der")).unwrap(),
        root1_der,
        "live/ untouched"
    );
}

#[test]
fn ten_renew_runs_on_a_fresh_6_day_certificate_order_nothing() {
    let (_pebble, work) = issued(Options {
        validity_secs: Some(6 * 86400),
        ..Options::default()
    });
    let renew = args(&[
        "renew",
        "--dir",
        "acme",
        "--deploy-hook",
        "echo deployed >> hook.log",
        "--json",
    ]);
    for run in 0..10 {
        let out = acme(work.path(), &renew);
        assert_eq!(out.status.code(), Some(0), "run {run}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["outcome"], "not_due", "run {run}: {v}");
        assert_eq!(v[0]["basis"], "two_thirds", "Pebble 2.4 offers no ARI: {v}");
    }
    let versions = std::fs::read_dir(work.path().join("acme/archive").join(NAME))
        .unwrap()
        .count();
    assert_eq!(versions, 1, "no order placed");
    assert!(!work.path().join("hook.log").exists());
}

/// Starts `devtls acme renew` (`renew` are its arguments) in `work` while
/// the test holds the folder's lock, and returns once it says it waits for
/// that lock; the thread returns the rest of its stderr.
fn waiting_renew(
    work: &Path,
    renew: &[String],
) -> (support::Peer, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let mut cmd = support::devtls();
    cmd.arg("acme").args(renew).current_dir(work);
    let mut peer = support::Peer::spawn("devtls acme renew", &mut cmd);
    let stderr = peer.child.stderr.take().unwrap();
    let (said, waits) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains("another `devtls acme renew` is running") {
                let _ = said.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if waits
        .recv_timeout(std::time::Duration::from_secs(120))
        .is_err()
    {
        let out = peer.finish(std::time::Duration::from_secs(5));
        panic!(
            "renew did not wait for the held lock:\n{}\n{}",
            text(&out),
            reader.join().unwrap()
        );
    }
    (peer, reader)
}

#[test]
fn renew_orders_a_due_certificate_once_and_runs_the_deploy_hook() {
    // 15-second certificates: two thirds of the lifetime pass within the test.
    let (pebble, work) = issued(Options {
        validity_secs: Some(15),
        ..Options::default()
    });
    let hook = "printf '%s|%s\\n' \"$RENEWED_LINEAGE\" \"$RENEWED_DOMAINS\" >> hook.log";
    let renew = args(&["renew", "--dir", "acme", "--deploy-hook", hook, "--json"]);
    std::thread::sleep(std::time::Duration::from_secs(11));
    // Two runs at once (cron and a manual run): while another holds the
    // folder's lock, both say they wait; then one orders, and the other,
    // after it, finds the fresh certificate not due.
    let held = std::fs::File::create(work.path().join("acme/renew.lock")).unwrap();
    held.lock().unwrap();
    let runs = [
        waiting_renew(work.path(), &renew),
        waiting_renew(work.path(), &renew),
    ];
    drop(held);
    let mut outcomes: Vec<String> = runs
        .into_iter()
        .map(|(peer, stderr)| {
            let out = peer.finish(std::time::Duration::from_secs(240));
            let stderr = stderr.join().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}\n{stderr}", text(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v[0]["outcome"].as_str().unwrap().to_string()
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["not_due", "renewed"], "one order for two runs");
    let live = work.path().join("acme/live").join(NAME);
    assert_eq!(
        std::fs::read_link(&live).unwrap(),
        Path::new("../archive").join(NAME).join("2")
    );
    assert_lineage(&live);
    let log = std::fs::read_to_string(work.path().join("hook.log")).unwrap();
    let abs_live = std::path::absolute(&live).unwrap();
    assert_eq!(log, format!("{}|{NAME}\n", abs_live.display()));
    // The fresh certificate is not due: the next runs order nothing.
    for _ in 0..3 {
        let out = acme(work.path(), &renew);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["outcome"], "not_due", "{v}");
    }
    assert_eq!(
        std::fs::read_dir(work.path().join("acme/archive").join(NAME))
            .unwrap()
            .count(),
        2
    );
    // The CA gone: a due certificate fails with exit 1, and live/ stays as it was.
    drop(pebble);
    std::thread::sleep(std::time::Duration::from_secs(11));
    let out = acme(work.path(), &renew);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        std::fs::read_link(&live).unwrap(),
        Path::new("../archive").join(NAME).join("2")
    );
}

#[test]
fn print_timer_gives_a_systemd_service_and_timer() {
    let work = tempfile::tempdir().unwrap();
    let out = acme(
        work.path(),
        &args(&[
            "renew",
            "--dir",
            "acme",
            "--print-timer",
            "--deploy-hook",
            "systemctl reload gw",
        ]),
    );
    assert!(out.status.success(), "{}", text(&out));
    let units = String::from_utf8_lossy(&out.stdout);
    assert!(
        units.contains("[Timer]")
            && units.contains("OnCalendar=hourly")
            && units.contains("Type=oneshot"),
        "{units}"
    );
    assert!(
        units.contains("acme renew --dir")
            && units.contains("--deploy-hook \"systemctl reload gw\""),
        "{units}"
    );
    let nothing = acme(work.path(), &args(&["renew", "--dir", "acme"]));
    assert_eq!(
        nothing.status.code(),
        Some(2),
        "no lineage is unusable input: {}",
        text(&nothing)
    );
}

#[test]
fn the_issued_files_work_on_the_device_and_behind_devtls_serve() {
    let work = tempfile::tempdir().unwrap();
    let (_pebble, _, _) = issued_anchored_at_root1(work.path(), &[]);
    let live = work.path().join("acme/live").join(NAME);
    // 1. The device (mbedTLS 3.6 with its configuration) loads cert.der and
    //    privkey.der as its server identity; a device client anchored at the
    //    intermediate (what the device presents is the leaf alone) verifies it.
    let chain = certs_in(&live.join("chain.pem"));
    let side = work.path().join("device");
    std::fs::create_dir_all(&side).unwrap();
    for f in ["cert.der", "privkey.der", "ca.der"] {
        std::fs::copy(live.join(f), side.join(f)).unwrap();
    }
    std::fs::write(side.join("intermediate.der"), &chain[0]).unwrap();
    let server = support::device::server(
        &side,
        &["--cert", "cert.der", "--key", "privkey.der", "--count", "1"],
    );
    let port = server.port;
    let client = support::device::client(
        &side,
        port,
        &["--ca", "intermediate.der", "--hostname", NAME],
    );
    let served = support::device::server_results(server, support::peers::WAIT);
    assert!(client.single().ok, "device client: {}", client.transcript);
    assert!(
        served.conns.first().is_some_and(|c| c.ok),
        "device server: {}",
        served.transcript
    );
    // 2. `devtls serve` with certbot's fullchain.pem; the device client holds
    //    only the written ca.der (the devices' root) and verifies the chain.
    let serve = support::net::Serve::start(
        &live,
        &[
            "--cert",
            "fullchain.pem",
            "--key",
            "privkey.pem",
            "--count",
            "1",
        ],
    );
    let client =
        support::device::client(&side, serve.port, &["--ca", "ca.der", "--hostname", NAME]);
    let conn = client.single();
    assert!(
        conn.ok,
        "device client against devtls serve: {}",
        client.transcript
    );
    assert_eq!(
        conn.received.as_deref(),
        Some("hello\n"),
        "{}",
        client.transcript
    );
    assert!(serve.finish(support::peers::WAIT).status.success());
}

#[test]
fn ari_stand_in_renew_follows_the_cas_window_and_names_the_certificate_it_replaces() {
    // Pebble 2.4 has no ARI: the stand-in in acme_support/ari.rs answers
    // renewal-info (and lists profiles) in front of it.
    let pebble = Pebble::start(Options::default());
    let ari = acme_support::ari::AriStandIn::start(&pebble);
    let work = tempfile::tempdir().unwrap();
    let port = pebble.http_port.to_string();
    let ca = pebble.server_ca.display().to_string();
    let mut issue = args(&[
        "issue",
        "--domain",
        NAME,
        "--bind",
        "127.0.0.1",
        "--dir",
        "acme",
    ]);
    issue.extend(args(&[
        "--server",
        &ari.url,
        "--server-ca",
        &ca,
        "--http-port",
        &port,
    ]));
    let out = acme(work.path(), &issue);
    assert!(out.status.success(), "{}", text(&out));
    let renew = args(&["renew", "--dir", "acme", "--json"]);
    // The CA's window is a month away: not due, by ARI.
    let out = acme(work.path(), &renew);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v[0]["outcome"].as_str(), v[0]["basis"].as_str()),
        (Some("not_due"), Some("ari")),
        "{v}"
    );
    // The CA says: renew now. One renewal, whose order names the old certificate.
    ari.renew_now();
    let out = acme(work.path(), &renew);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v[0]["outcome"].as_str(), v[0]["basis"].as_str()),
        (Some("renewed"), Some("ari")),
        "{v}"
    );
    assert_eq!(v[0]["report"]["replaced"], true, "{v}");
    {
        let seen = ari.seen.lock().unwrap();
        assert_eq!(seen.replaces.len(), 1, "{seen:?}");
        assert_eq!(
            seen.ari_ids.last(),
            seen.replaces.last(),
            "the order replaces the certificate ARI was asked about"
        );
        assert!(seen.replaces[0].contains('.'), "AKI.serial: {seen:?}");
    }
    // The same past window for the new certificate began before it existed:
    // not about it, so two thirds apply and there is no loop.
    for _ in 0..3 {
        let out = acme(work.path(), &renew);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (v[0]["outcome"].as_str(), v[0]["basis"].as_str()),
            (Some("not_due"), Some("two_thirds")),
            "{v}"
        );
    }
    assert_eq!(ari.seen.lock().unwrap().replaces.len(), 1);
    assert_eq!(
        std::fs::read_dir(work.path().join("acme/archive").join(NAME))
            .unwrap()
            .count(),
        2
    );
    // Profiles listed by the CA: an IP certificate without shortlived is refused before ordering.
    let mut ip = args(&[
        "issue",
        "--ip",
        "127.0.0.1",
        "--bind",
        "127.0.0.1",
        "--dir",
        "acme",
    ]);
    ip.extend(args(&[
        "--server",
        &ari.url,
        "--server-ca",
        &ca,
        "--http-port",
        &port,
    ]));
    let out = acme(work.path(), &ip);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--profile shortlived"),
        "{}",
        text(&out)
    );
    assert!(!work.path().join("acme/live/127.0.0.1").exists());
}

#[test]
fn http01_by_webroot_under_a_real_web_server() {
    let pebble = Pebble::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let www = work.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    // Python's web server stands for the site's server, on the port Pebble validates.
    let mut server = std::process::Command::new("python3");
    server
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &pebble.http_port.to_string(),
            "--directory",
        ])
        .arg(&www);
    let _web = support::Peer::spawn("python3 -m http.server", &mut server);
    support::wait_for_tcp(pebble.http_port, std::time::Duration::from_secs(20));
    let root = www.display().to_string();
    let out = acme(work.path(), &issue_args(&pebble, &["--webroot", &root]));
    assert!(out.status.success(), "{}", text(&out));
    assert_lineage(&work.path().join("acme/live").join(NAME));
    let left: Vec<_> = std::fs::read_dir(www.join(".well-known/acme-challenge"))
        .unwrap()
        .collect();
    assert!(
        left.is_empty(),
        "the challenge files are removed afterwards"
    );
}

#[test]
fn external_account_binding_when_the_ca_requires_it() {
    let pebble = Pebble::start(Options {
        eab: true,
        ..Options::default()
    });
    let work = tempfile::tempdir().unwrap();
    let out = acme(work.path(), &http01(&pebble));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--eab-kid") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let mut a = http01(&pebble);
    a.extend(args(&[
        "--eab-kid",
        acme_support::EAB_KID,
        "--eab-hmac",
        acme_support::EAB_HMAC,
    ]));
    let out = acme(work.path(), &a);
    assert!(out.status.success(), "{}", text(&out));
    assert_lineage(&work.path().join("acme/live").join(NAME));
}

#[test]
fn dns01_manual_prints_the_record_and_waits_for_enter() {
    use std::io::{BufRead, Write};
    let pebble = Pebble::start(Options::default());
    let work = tempfile::tempdir().unwrap();
    let mut cmd = support::devtls();
    cmd.arg("acme")
        .args(issue_args(&pebble, &["--challenge", "dns-01", "--manual"]))
        .current_dir(work.path());
    let mut peer = support::Peer::spawn("devtls acme issue --manual", &mut cmd);
    let stderr = peer.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let record = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("devtls printed the TXT record");
        if line.contains(" IN TXT ") {
            break line;
        }
    };
    // `_acme-challenge.NAME. 300 IN TXT "VALUE"`: publish it as a person would, then press Enter.
    let host = record.split_whitespace().next().unwrap().to_string();
    let value = record.rsplit('"').nth(1).unwrap().to_string();
    assert_eq!(host, format!("_acme-challenge.{NAME}."));
    let set = std::process::Command::new("curl")
        .args(["-sS", "--fail", "-X", "POST", "-d"])
        .arg(serde_json::json!({"host": host, "value": value}).to_string())
        .arg(format!("http://127.0.0.1:{}/set-txt", pebble.challtest))
        .status()
        .unwrap();
    assert!(set.success());
    peer.child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    let out = peer.finish(std::time::Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out));
    assert_lineage(&work.path().join("acme/live").join(NAME));
}

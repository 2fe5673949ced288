//! A renewal storm, scaled out, small: 200 devices in a PostgreSQL
//! inventory renew exactly once each through two `devtls fleet serve`
//! processes (each with its own fleet folder) on that database behind one
//! address (nginx's stream proxy); one service is SIGKILLed when a third
//! have renewed, and restarted. The load and the checks are the ones
//! `bench/fleet_storm.sh` runs (crates/renewal/examples/storm/mod.rs,
//! included here): every device holds a new certificate that is its one
//! active row, its old one revoked, one renewal each, and the CRL lists
//! exactly the inventory's revoked serials.

use crate::support;

#[path = "../../../renewal/examples/storm/mod.rs"]
pub(crate) mod storm;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{free_tcp_port, ok_in, require, wait_for_tcp};

const DEVICES: u64 = 200;
const CONCURRENCY: usize = 64;

/// A child process killed (SIGKILL) and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `fleet serve` in `dir` on `port` as the bench starts it, its lines (one
/// per connection) appended to `dir/serve.log`, its messages to `serve.err`.
fn serve(dir: &Path, port: u16) -> Running {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .unwrap();
    let err = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.err"))
        .unwrap();
    let child = support::devtls()
        .current_dir(dir)
        .args([
            "fleet",
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--name", "127.0.0.1", "--renew-after", "0", "--revoke-old"])
        // nginx connects from 127.0.0.1: a trusted proxy, exempt from the
        // per-address bounds (which would count the whole fleet as one).
        .args(["--proxy", "127.0.0.1"])
        .stdout(log)
        .stderr(err)
        .spawn()
        .expect("devtls fleet serve");
    wait_for_tcp(port, Duration::from_secs(20));
    Running(child)
}

/// nginx's stream proxy on `front`, passing TCP to `ports` (the config the
/// bench writes).
fn nginx(dir: &Path, front: u16, ports: &[u16]) -> Running {
    let module = ["/usr/lib/nginx/modules", "/usr/share/nginx/modules"]
        .iter()
        .map(|d| Path::new(d).join("ngx_stream_module.so"))
        .find(|p| p.exists())
        .map(|p| format!("load_module {};\n", p.display()));
    let dynamic = Command::new("nginx")
        .arg("-V")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("--with-stream=dynamic"));
    if dynamic && module.is_none() {
        support::require::fail(
            "nginx's stream module is missing: apt-get install libnginx-mod-stream",
        );
    }
    let module = module.unwrap_or_default();
    let prefix = dir.join("nginx");
    fs::create_dir_all(prefix.join("logs")).unwrap();
    let upstreams: String = ports
        .iter()
        .map(|p| format!("server 127.0.0.1:{p} fail_timeout=1s; "))
        .collect();
    let conf = format!(
        "{module}daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         stream {{\n  upstream fleet {{ {upstreams}}}\n  \
         server {{ listen 127.0.0.1:{front}; proxy_pass fleet; proxy_connect_timeout 2s; }}\n}}\n",
        p = prefix.display()
    );
    fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-e")
        .arg(prefix.join("logs/error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx");
    wait_for_tcp(front, Duration::from_secs(20));
    Running(child)
}

fn log_lines(dir: &Path) -> usize {
    fs::read_to_string(dir.join("serve.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn two_hundred_devices_renew_once_through_two_services_one_killed_on_postgres() {
    require("openssl");
    require("nginx");
    let backend = support::postgres::postgres();
    let url = backend.url().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("s1");
    let two = tmp.path().join("s2");
    fs::create_dir_all(&one).unwrap();
    fs::create_dir_all(two.join("fleet")).unwrap();
    ok_in(&one, &["fleet", "init", "--name", "storm"]);
    let count = DEVICES.to_string();
    ok_in(
        &one,
        &[
            "fleet", "issue", "--count", &count, "--prefix", "d-", "--days", "30", "--quiet",
        ],
    );
    for f in ["ca.der", "ca.crt", "ca.key"] {
        fs::copy(one.join("fleet").join(f), two.join("fleet").join(f)).unwrap();
    }
    let (port_one, port_two, front) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let first = serve(&one, port_one);
    let _second = serve(&two, port_two);
    let _nginx = nginx(tmp.path(), front, &[port_one, port_two]);

    let cfg = storm::Config {
        addr: ([127, 0, 0, 1], front).into(),
        server_name: "127.0.0.1".into(),
        ca: fs::read(one.join("fleet/ca.der")).unwrap(),
        concurrency: CONCURRENCY,
        tries: 10,
    };
    let devices = storm::load_devices(&one.join("fleet")).unwrap();
    assert_eq!(devices.len() as u64, DEVICES);
    let progress = storm::Progress::default();
    let (report, at_kill, logged_before, restarted) = std::thread::scope(|s| {
        let storm = s.spawn(|| storm::run(&cfg, devices, &progress));
        // Mid-storm: SIGKILL the first service, then start it again.
        while progress.renewed.load(Ordering::Relaxed) < DEVICES / 3 && !storm.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let at_kill = progress.renewed.load(Ordering::Relaxed);
        drop(first);
        let logged_before = log_lines(&one);
        let restarted = serve(&one, port_one);
        (storm.join().unwrap(), at_kill, logged_before, restarted)
    });
    drop(restarted);
    println!("{}", report.summary());
    assert!(
        (DEVICES / 3..DEVICES).contains(&at_kill),
        "the kill came mid-storm: {at_kill} renewed"
    );
    assert!(logged_before > 0, "the killed service had served the storm");
    println!(
        "service 1 answered {} connections after its restart",
        log_lines(&one) - logged_before
    );

    let crl = tmp.path().join("storm.crl");
    ok_in(&one, &["fleet", "crl", "--out", crl.to_str().unwrap()]);
    let psql: PathBuf = support::require::postgres_bin().unwrap().join("psql");
    let inventory = storm::Inventory::read(&psql, &url).unwrap();
    let listed = storm::crl_serials(&crl).unwrap();
    let (text, ok) = storm::check(&report, &inventory, &listed);
    assert!(ok, "{text}");
    assert_eq!(listed.len() as u64, DEVICES, "{text}");
    assert_eq!(report.renewed() as u64, DEVICES);

    // The checks see a broken end: one old certificate no longer revoked
    // (the CRL lists a serial the inventory does not have revoked), and
    // one device with a second renewal row.
    backend.psql(
        "UPDATE certs SET status = 'superseded' WHERE id = (SELECT MIN(id) FROM certs); \
         INSERT INTO renewals (cert_id, device, old_id, cert_der, created_at) \
         SELECT cert_id + 1000000, device, old_id, cert_der, created_at FROM renewals \
         WHERE device = 'd-7'",
    );
    let broken = storm::Inventory::read(&psql, &url).unwrap();
    let (text, ok) = storm::check(&report, &broken, &listed);
    assert!(!ok, "{text}");
    for want in [
        "one active certificate each, the new one   FAILED (1 wrong)",
        "exactly one renewal each (none twice)      FAILED (1 wrong)",
        "CRL = the inventory's revoked serials      FAILED",
        "d-7: 2 renewals recorded",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

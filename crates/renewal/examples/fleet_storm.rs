//! The load and the checks of `bench/fleet_storm.sh`: every device of
//! FLEET_DIR renews exactly once through ADDR (the proxy in front of the
//! `fleet serve` processes), CONCURRENCY at a time; when KILL_AT devices
//! have renewed, MIDWAY_FILE is created (the script then SIGKILLs a service
//! and restarts it). Then `DEVTLS fleet crl` writes the CRL, and the
//! inventory (PSQL on the database DEVTLS_FLEET_DB names) and the CRL are
//! checked against what the devices hold (examples/storm/mod.rs).
//!
//! Usage: fleet_storm FLEET_DIR ADDR SERVER_NAME CONCURRENCY KILL_AT MIDWAY_FILE DEVTLS PSQL
//! Prints the figures and one line per check; exits 1 when a check fails.

mod storm;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 8 {
        eprintln!("usage: fleet_storm FLEET_DIR ADDR SERVER_NAME CONCURRENCY KILL_AT MIDWAY_FILE DEVTLS PSQL");
        std::process::exit(2);
    }
    let fleet = PathBuf::from(&args[0]);
    let url = std::env::var("DEVTLS_FLEET_DB").expect("DEVTLS_FLEET_DB: the inventory's URL");
    let cfg = storm::Config {
        addr: args[1].parse().expect("ADDR: HOST:PORT"),
        server_name: args[2].clone(),
        ca: std::fs::read(fleet.join("ca.der")).expect("FLEET_DIR/ca.der"),
        concurrency: args[3].parse().expect("CONCURRENCY"),
        tries: 10,
    };
    let kill_at: u64 = args[4].parse().expect("KILL_AT");
    let midway = PathBuf::from(&args[5]);
    let (devtls, psql) = (PathBuf::from(&args[6]), PathBuf::from(&args[7]));

    let devices = storm::load_devices(&fleet).expect("FLEET_DIR/devices");
    let progress = storm::Progress::default();
    let done = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if progress.renewed.load(Ordering::Relaxed) >= kill_at {
                    std::fs::write(&midway, b"").expect("MIDWAY_FILE");
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let report = storm::run(&cfg, devices, &progress);
        done.store(true, Ordering::Relaxed);
        report
    });
    print!("{}", report.summary());

    let crl = fleet.join("storm.crl");
    let out = std::process::Command::new(&devtls)
        .args(["fleet", "crl", "--dir"])
        .arg(&fleet)
        .arg("--out")
        .arg(&crl)
        .output()
        .expect("devtls fleet crl");
    assert!(
        out.status.success(),
        "fleet crl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inventory = storm::Inventory::read(&psql, &url).unwrap_or_else(|e| panic!("{e}"));
    let listed = storm::crl_serials(&crl).unwrap_or_else(|e| panic!("{e}"));
    let (text, ok) = storm::check(&report, &inventory, &listed);
    print!("{text}");
    std::process::exit(if ok { 0 } else { 1 });
}

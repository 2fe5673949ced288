//! Issue 25 item 1: a fleet device's own files, `boot.py` and `renew.py`
//! as `devtls fleet issue --renew-url` writes them, run unchanged on
//! MicroPython (the unix port, support/micropython.rs) against a real
//! `devtls fleet serve` and a real `devtls serve` (the server boot.py talks
//! to) on loopback: renewal twice; the process killed after every step
//! renew.py takes on the file system (atomic renames, and FAT's
//! remove-then-rename), then booted again; a device whose first pair is in
//! a ROMFS image mounted at /rom. A revoked device and a wrong anchor are
//! the negative controls.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde_json::Value;
use support::micropython::{self as mp, Board};
use support::net::stdout_lines;
use support::{free_tcp_port, ok_in, text, wait_for_tcp, Peer};

const WAIT: Duration = Duration::from_secs(90);

/// A fleet in `d/fleet` with `fleet serve` renewing at once
/// (`--renew-after 0d`) and `devtls serve` as the devices' server: the
/// fleet's own server certificate `srv` (127.0.0.1), demanding a
/// certificate from the fleet CA.
struct Rig {
    d: PathBuf,
    renew_port: u16,
    server_port: u16,
    renewal: Option<Peer>,
    server: Option<(Peer, Receiver<String>)>,
}

impl Rig {
    fn new(d: &Path) -> Rig {
        ok_in(d, &["fleet", "init"]);
        fs::write(d.join("srv.csv"), "srv,localhost,127.0.0.1\n").unwrap();
        ok_in(
            d,
            &["fleet", "issue", "--from", "srv.csv", "--role", "server"],
        );
        let mut rig = Rig {
            d: d.to_path_buf(),
            renew_port: free_tcp_port(),
            server_port: free_tcp_port(),
            renewal: None,
            server: None,
        };
        rig.renewal = Some(rig.fleet_serve(&["--renew-after", "0d"]));
        let srv = d.join("fleet/devices/srv");
        let mut cmd = support::devtls();
        cmd.current_dir(d)
            .args(["serve", "--port", &rig.server_port.to_string()]);
        cmd.arg("--cert").arg(srv.join("server.der"));
        cmd.arg("--key").arg(srv.join("server.key.der"));
        cmd.args(["--ca", "fleet/ca.der"]);
        let mut peer = Peer::spawn("devtls serve", &mut cmd);
        let lines = stdout_lines(&mut peer);
        lines.recv_timeout(WAIT).expect("devtls serve listens");
        rig.server = Some((peer, lines));
        rig
    }

    fn fleet_serve(&self, extra: &[&str]) -> Peer {
        let mut cmd = support::devtls();
        cmd.current_dir(&self.d)
            .args([
                "fleet",
                "serve",
                "--bind",
                "127.0.0.1",
                "--name",
                "127.0.0.1",
            ])
            .args(["--port", &self.renew_port.to_string()])
            .args(extra);
        let peer = Peer::spawn("devtls fleet serve", &mut cmd);
        wait_for_tcp(self.renew_port, WAIT);
        peer
    }

    /// `fleet issue IDS --renew-url ... --server-host 127.0.0.1 --port P` plus `extra`.
    fn issue(&self, ids: &[&str], extra: &[&str]) {
        let url = format!("https://127.0.0.1:{}", self.renew_port);
        let port = self.server_port.to_string();
        let mut args = vec!["fleet", "issue"];
        args.extend_from_slice(ids);
        args.extend_from_slice(&[
            "--renew-url",
            &url,
            "--server-host",
            "127.0.0.1",
            "--port",
            &port,
        ]);
        args.extend_from_slice(extra);
        ok_in(&self.d, &args);
    }

    fn device(&self, id: &str) -> PathBuf {
        self.d.join("fleet/devices").join(id)
    }

    /// A copy of a device's folder: its writable file system.
    fn flash(&self, id: &str, name: &str) -> PathBuf {
        let to = self.d.join(name);
        fs::create_dir_all(&to).unwrap();
        for e in fs::read_dir(self.device(id)).unwrap() {
            let e = e.unwrap();
            if !e.file_name().to_string_lossy().ends_with(".romfs") {
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
        to
    }

    /// The next line `devtls serve` printed (one per client).
    fn served(&self) -> String {
        let (_, lines) = self.server.as_ref().unwrap();
        lines
            .recv_timeout(WAIT)
            .expect("devtls serve reported a client")
    }

    /// The inventory rows of `id`: (status, SHA-256 of the certificate).
    fn rows(&self, id: &str) -> Vec<(String, String)> {
        let out = ok_in(&self.d, &["fleet", "export", "--json"]);
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        all.iter()
            .filter(|r| r["device"] == id)
            .map(|r| {
                (
                    r["status"].as_str().unwrap().into(),
                    r["sha256"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    /// The certificate in `flash` is `id`'s one active certificate.
    fn assert_active(&self, id: &str, flash: &Path, what: &str) {
        let der = fs::read(flash.join("client.der")).unwrap();
        let sha = devtls_pki::fingerprint::sha256_hex(&der);
        let rows = self.rows(id);
        let active: Vec<&String> = rows
            .iter()
            .filter(|(s, _)| s == "active")
            .map(|(_, h)| h)
            .collect();
        assert_eq!(active, [&sha], "{what}: {rows:?}");
    }
}

/// Boots a device: `script` (boot.py, or /rom/boot.py) on `board`, to its end.
fn boot(flash: &Path, script: &str, board: &Board) -> (String, std::process::Output) {
    let out = mp::run_board(flash, script, board, WAIT);
    (String::from_utf8_lossy(&out.stdout).into_owned(), out)
}

/// A boot that renewed (installed a new pair and had it confirmed: the
/// script prints the install only then goes on to the confirming request),
/// then completed mutual TLS with the device's server using that pair.
fn assert_renewed_and_talked(
    rig: &Rig,
    id: &str,
    said: &str,
    out: &std::process::Output,
    what: &str,
) {
    assert!(
        out.status.success() && said.contains("renew: new certificate installed"),
        "{what}: {}",
        text(out)
    );
    assert!(said.contains("b'hello\\n'"), "{what}: {}", text(out));
    let line = rig.served();
    assert!(line.contains(&format!("client CN={id}")), "{what}: {line}");
}

fn no_new_files(flash: &Path) -> bool {
    !fs::read_dir(flash)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".new"))
}

/// boot.py renews twice (a new certificate each time, the old one
/// superseded), talking to its server with each new pair; with the
/// service's default window the fresh certificate is kept. A revoked device
/// is refused and keeps its files; a device given another fleet's CA as its
/// anchor renews nothing and its handshake with its server fails.
#[test]
fn boot_py_renews_twice_and_talks_to_its_server() {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::new(dir.path());
    rig.issue(&["cam-1", "cam-2", "cam-3"], &[]);
    let flash = rig.flash("cam-1", "cam-1-flash");
    let board = Board::default();
    let mut certs = vec![fs::read(flash.join("client.der")).unwrap()];
    for round in 1..=2 {
        let (said, out) = boot(&flash, "boot.py", &board);
        assert_renewed_and_talked(&rig, "cam-1", &said, &out, &format!("renewal {round}"));
        assert_eq!(
            mp::steps(&out),
            Some(8),
            "two files written in halves, two renames"
        );
        let cert = fs::read(flash.join("client.der")).unwrap();
        assert!(
            !certs.contains(&cert),
            "renewal {round} installed a new certificate"
        );
        certs.push(cert);
        assert!(no_new_files(&flash));
    }
    let rows = rig.rows("cam-1");
    let count = |st: &str| rows.iter().filter(|(s, _)| s == st).count();
    assert_eq!((count("active"), count("superseded")), (1, 2), "{rows:?}");
    rig.assert_active("cam-1", &flash, "after two renewals");

    // The default window (two thirds of the lifetime): nothing to renew.
    rig.renewal = None;
    rig.renewal = Some(rig.fleet_serve(&[]));
    let (said, out) = boot(&flash, "boot.py", &board);
    assert!(
        out.status.success() && !said.contains("installed"),
        "{}",
        text(&out)
    );
    assert_eq!(mp::steps(&out), Some(0), "{}", text(&out));
    assert!(rig.served().contains("client CN=cam-1"));
    assert_eq!(fs::read(flash.join("client.der")).unwrap(), certs[2]);

    // Negative controls. Revoked: refused, keeps its files.
    ok_in(&rig.d, &["fleet", "revoke", "cam-2"]);
    let revoked = rig.flash("cam-2", "cam-2-flash");
    let kept = fs::read(revoked.join("client.der")).unwrap();
    let (said, out) = boot(&revoked, "boot.py", &board);
    assert!(
        said.contains("renew: refused (403 revoked)"),
        "{}",
        text(&out)
    );
    assert_eq!(fs::read(revoked.join("client.der")).unwrap(), kept);
    let _ = rig.served(); // its server has no CRL: it still talks
                          // Another fleet's CA as the anchor: renew.py and boot.py refuse the servers.
    let other = rig.d.join("other");
    fs::create_dir_all(&other).unwrap();
    ok_in(&other, &["fleet", "init"]);
    let wrong = rig.flash("cam-3", "cam-3-flash");
    fs::copy(other.join("fleet/ca.der"), wrong.join("ca.der")).unwrap();
    let (said, out) = boot(&wrong, "boot.py", &board);
    assert!(
        said.contains("renew: kept the current certificate") && !said.contains("hello"),
        "{}",
        text(&out)
    );
    mp::assert_refused_unsigned(&out, "boot.py with another fleet's CA");
    assert_eq!(mp::steps(&out), None, "boot.py died");
}

/// Kills a device after each of the `steps` file-system steps of a
/// renewal, boots it again and kills it after that boot's first step, then
/// boots it a third time: every time it comes up with a pair its server and
/// the renewal service accept, renews and talks. Each case is a device of
/// its own (`fleet issue`d here, with `--romfs` for `rom`): a device whose
/// certificate was renewed and confirmed cannot renew with the old one
/// again (the service answers 403 superseded).
fn kill_at_every_step(rig: &Rig, rom: bool, fat: bool, steps: u32) -> usize {
    let script = if rom { "/rom/boot.py" } else { "boot.py" };
    let tag = format!(
        "{}-{}",
        if rom { "rom" } else { "flash" },
        if fat { "fat" } else { "atomic" }
    );
    let ids: Vec<String> = (0..=steps).map(|k| format!("{tag}-{k}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    rig.issue(&refs, if rom { &["--romfs"] } else { &[] });
    // The device's writable file system, and its board.
    let device = |id: &str| -> (PathBuf, Board) {
        let board = Board {
            rom: rom.then(|| rig.device(id).join(format!("{id}.romfs"))),
            fat,
            power_loss_after: None,
        };
        if rom {
            let p = rig.d.join(format!("{id}-flash"));
            fs::create_dir_all(&p).unwrap();
            (p, board)
        } else {
            (rig.flash(id, &format!("{id}-flash")), board)
        }
    };
    // Uninterrupted, the renewal takes exactly `steps` steps.
    let (flash, board) = device(&ids[0]);
    let (said, out) = boot(&flash, script, &board);
    assert_renewed_and_talked(rig, &ids[0], &said, &out, &tag);
    assert_eq!(mp::steps(&out), Some(steps), "{tag}: {}", text(&out));
    for (k, id) in (1..=steps).zip(&ids[1..]) {
        let what = format!("{tag}: power lost after step {k}");
        let (flash, mut board) = device(id);
        // Power lost after step k, then again after the first step of the
        // next boot (its recovery's, or its renewal's when none is needed).
        for limit in [k, 1] {
            board.power_loss_after = Some(limit);
            let mut device = mp::spawn_board(&flash, script, &board);
            let lines = stdout_lines(&mut device);
            let mut seen = Vec::new();
            for l in std::iter::from_fn(|| lines.recv_timeout(WAIT).ok()) {
                let lost = l == mp::POWER_LOST;
                seen.push(l);
                if lost || seen.last().unwrap().starts_with(mp::STEPS) {
                    break;
                }
            }
            drop(device); // SIGKILL: the process dies between two steps
            if seen.last().map(String::as_str) == Some(mp::POWER_LOST) {
                continue;
            }
            // Only a boot with nothing left to write ends before its first
            // step: power lost after the last rename, the service confirms
            // the installed pair (204) and the device talks to its server.
            assert!(
                limit == 1 && k == steps && seen.iter().any(|l| l == "b'hello\\n'"),
                "{what}, then after step {limit} of the next boot: the board never lost power:\n{}",
                seen.join("\n")
            );
            assert!(rig.served().contains(&format!("client CN={id}")), "{what}");
        }
        // The third boot renews, or (when the recovery installed the pair
        // the service handed out) its request confirms that pair; either
        // way it talks to its server, and its certificate is the active one.
        board.power_loss_after = None;
        let (said, out) = boot(&flash, script, &board);
        assert!(
            out.status.success()
                && said.contains("b'hello\\n'")
                && !said.contains("kept the current")
                && !said.contains("refused"),
            "{what}: {}",
            text(&out)
        );
        assert!(rig.served().contains(&format!("client CN={id}")), "{what}");
        assert!(no_new_files(&flash), "{what}");
        rig.assert_active(id, &flash, &what);
    }
    steps as usize
}

/// [`kill_at_every_step`] with atomic renames (8 steps) and with FAT's
/// (`fat_steps`), on a fleet of its own.
fn kill_in_both_modes(rom: bool, fat_steps: u32) {
    let _backend = support::postgres::backend();
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new(dir.path());
    let cases =
        kill_at_every_step(&rig, rom, false, 8) + kill_at_every_step(&rig, rom, true, fat_steps);
    eprintln!("{cases} cases (killed at a step, then at the next boot's first), each booted again to a handshake");
}

/// Power lost (the process killed) after every step renew.py takes on a
/// device whose pair is on its writable file system: with atomic renames
/// (8 steps) and with FAT's remove-then-rename (10 steps).
#[test]
fn killed_at_every_renewal_step_boots_again_and_renews() {
    kill_in_both_modes(false, 10);
}

/// The same for devices whose first pair is in their ROMFS image (`fleet
/// issue --romfs`), mounted at /rom with `vfs.VfsRom`: boot.py and renew.py
/// run from /rom, the first renewal's handshake uses /rom's pair, and the
/// renewed pair lands on the writable file system (8 steps either way: no
/// file to replace there yet).
#[test]
fn romfs_device_killed_at_every_renewal_step_boots_again_and_renews() {
    kill_in_both_modes(true, 8);
}

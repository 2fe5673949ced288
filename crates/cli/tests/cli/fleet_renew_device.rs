//! The device side of certificate renewal (issue 15 items 2 and 3):
//! `fleet issue --renew-url` writes a renew.py that real MicroPython
//! compiles and that fits 4 KB; run under CPython with the stand-in for
//! MicroPython's `ssl` (tests/micropython/cpython/mpy_ssl.py, docs/renewal.md),
//! power lost after every write, rename and remove it makes leaves a pair
//! the mbedTLS 3.6 device peer loads, the old or the new; `--romfs` writes
//! an image holding the files, and boot.py's pair prefers a renewed one.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{free_tcp_port, ok_in, repo_root, run_in, text, wait_for_tcp, Peer};

const PY_MISSING: &str = "python3 missing: apt-get install python3";

fn harness() -> PathBuf {
    repo_root().join("tests/micropython/cpython/renew_harness.py")
}

/// A fleet in `d/fleet` with devices `cam-1` (the device under test) and
/// `cam-2` (whose pair stands for the renewed one in the file-handling tests).
fn fleet(d: &Path, extra: &[&str]) {
    ok_in(d, &["fleet", "init"]);
    let mut args = vec![
        "fleet",
        "issue",
        "cam-1",
        "cam-2",
        "--renew-url",
        "https://127.0.0.1:9443",
    ];
    args.extend_from_slice(extra);
    ok_in(d, &args);
}

fn device(d: &Path, id: &str) -> PathBuf {
    d.join("fleet/devices").join(id)
}

/// Runs the harness; returns its JSON line and what the script printed.
fn harness_run(args: &[&str]) -> (Value, String) {
    harness_run_env(args, &[])
}

/// [`harness_run`] with environment variables.
fn harness_run_env(args: &[&str], env: &[(&str, &Path)]) -> (Value, String) {
    // Bounded: the script's own socket timeout is 30 s.
    let out = Command::new("timeout")
        .args(["120", "python3"])
        .arg(harness())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|_| support::require::fail(PY_MISSING));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "harness {args:?}: {}", text(&out));
    let last = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (json, stdout)
}

/// Loads a pair as the device does (`load_cert_chain`) with the mbedTLS 3.6
/// peer, and whether the key belongs to the certificate.
fn device_loads(dir: &Path, cert: &str, key: &str) -> (bool, bool) {
    let out = support::device::run(dir, &["loadchain", cert, key], b"");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (v["ok"] == true, v["pair"] == true)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn renew_py_compiles_under_real_micropython_and_fits_4_kb() {
    let _backend = support::postgres::backend();
    let d = tempfile::tempdir().unwrap();
    fleet(d.path(), &["--romfs"]);
    let dev = device(d.path(), "cam-1");
    let renew = fs::read(dev.join("renew.py")).unwrap();
    assert!(renew.len() <= 4096, "renew.py is {} bytes", renew.len());
    // Only MicroPython's modules.
    let src = String::from_utf8(renew).unwrap();
    for line in src.lines().filter(|l| l.starts_with("import ")) {
        for m in line["import ".len()..].split(',') {
            assert!(
                ["os", "socket", "ssl", "time", "ntptime", "binascii"].contains(&m.trim()),
                "renew.py imports {m}"
            );
        }
    }
    let checker = repo_root().join("tests/micropython");
    if !checker.join("node_modules/@micropython").is_dir() {
        support::require::fail(
            "MicroPython checker missing: apt-get install nodejs npm && npm install --prefix tests/micropython",
        );
    }
    // MicroPython's own compiler: compile() raises SyntaxError on anything
    // MicroPython does not accept (its grammar, not CPython's).
    let probe = d.path().join("probe.mjs");
    fs::write(
        &probe,
        format!(
            "import {{ readFileSync }} from 'node:fs';\n\
             import {{ loadMicroPython }} from {:?};\n\
             const mp = await loadMicroPython({{ stdout: (l) => console.log(l) }});\n\
             for (const f of process.argv.slice(2)) {{\n\
               mp.globals.set('src', readFileSync(f, 'utf8'));\n\
               try {{ mp.runPython(\"compile(src, 'renew.py', 'exec'); print('compiled')\"); }}\n\
               catch (e) {{ console.log('ERROR ' + String(e).split('\\n').filter(Boolean).pop()); process.exit(1); }}\n\
             }}\n",
            checker
                .join("node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs")
                .display()
                .to_string()
        ),
    )
    .unwrap();
    let node = |files: &[&Path]| {
        Command::new("node")
            .arg(&probe)
            .args(files)
            .output()
            .unwrap_or_else(|_| support::require::fail("node missing: apt-get install nodejs npm"))
    };
    // The check has teeth: syntax CPython takes and MicroPython does not.
    let bad = d.path().join("bad.py");
    fs::write(&bad, "def f[T](x: T):\n    pass\n").unwrap();
    let out = node(&[&bad]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("SyntaxError"),
        "{}",
        text(&out)
    );
    let out = node(&[&dev.join("renew.py"), &dev.join("boot.py")]);
    assert!(out.status.success(), "MicroPython: {}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("compiled")
            .count(),
        2,
        "{}",
        text(&out)
    );
}

/// What the interrupted runs of one device saw.
#[derive(Default)]
struct Interrupted {
    cases: usize,
    saw_old: bool,
    /// The new certificate the interrupted runs left, the same every time.
    new_cert: Option<Vec<u8>>,
}

/// Runs renew.py for the device whose first files are in `old` with power
/// lost after its k-th step for k = 1..=`steps`, and for each, the next
/// boot's recovery losing power after its j-th step (j = 1..); then checks
/// what a last recovery leaves. With `rom`, `old` is the device's `/rom`
/// and its writable file system starts with renew.py only.
fn interrupt_every_step(
    d: &Path,
    old: &Path,
    rom: bool,
    fs_mode: &str,
    steps: u64,
    seen: &mut Interrupted,
) {
    let old_cert = fs::read(old.join("client.der")).unwrap();
    let unused = d.join("rom-unused");
    fs::create_dir_all(&unused).unwrap();
    let rom_dir = if rom { old } else { &unused };
    let tag = if rom { "rom" } else { "flash" };
    for k in 1..=steps {
        // j = 0: a clean reboot; j >= 1: the recovery loses power too.
        for j in 0..=4u64 {
            let dir = d.join(format!("{tag}-{fs_mode}-{k}-{j}"));
            if rom {
                fs::create_dir_all(&dir).unwrap();
                fs::copy(old.join("renew.py"), dir.join("renew.py")).unwrap();
            } else {
                copy_dir(old, &dir);
            }
            let j_arg = if j == 0 {
                "-".to_string()
            } else {
                j.to_string()
            };
            let case = format!("{tag} {fs_mode} k={k} j={j}");
            let (v, printed) = harness_run(&[
                "crash",
                dir.to_str().unwrap(),
                rom_dir.to_str().unwrap(),
                &k.to_string(),
                fs_mode,
                &j_arg,
            ]);
            assert_eq!(v["crashed"], true, "{case}: {printed}");
            assert_eq!(v["ops"], k, "{case}: {printed}");
            let left = v["left"].as_array().unwrap();
            assert!(
                !left.iter().any(|f| f.as_str().unwrap().ends_with(".new")),
                "{case}: recovery left {left:?}"
            );
            // The pair pair() names: on the writable file system, or in /rom.
            let pair = v["pair"].as_array().unwrap();
            let (cert, key) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            let (base, cert, key) = match (cert.strip_prefix("/rom/"), key.strip_prefix("/rom/")) {
                (Some(c), Some(k)) if rom => (rom_dir, c, k),
                (None, None) => (dir.as_path(), cert, key),
                _ => panic!("{case}: a pair split between /rom and the writable FS: {pair:?}"),
            };
            let (loads, matches) = device_loads(base, cert, key);
            assert!(
                loads && matches,
                "{case}: the device cannot use the pair ({printed})"
            );
            let cert = fs::read(base.join(cert)).unwrap();
            if cert == old_cert {
                seen.saw_old = true;
            } else {
                let first = seen.new_cert.get_or_insert_with(|| cert.clone());
                assert!(
                    *first == cert,
                    "{case}: a third certificate, neither old nor the pending one"
                );
            }
            seen.cases += 1;
            if j > 0 && v["recover_crashed"] == false {
                break; // the recovery has fewer steps than j: later j are the same case
            }
        }
    }
}

/// Power lost after each step renew.py takes while renewing against the
/// real `devtls fleet serve` (creating a file, each half of each write,
/// each rename and remove), with atomic renames (littlefs) and with FAT's
/// remove-then-rename, on a device whose pair is on the writable file
/// system and on one whose first pair is in /rom; and at the next boot,
/// after each step of the recovery too. Every case leaves a pair the mbedTLS
/// 3.6 device peer loads whose key belongs to its certificate, and it is the
/// old pair or the new one: the one the service hands out (the same pending
/// pair each time, until the device confirms it in the last, uninterrupted run).
#[test]
fn power_loss_at_every_step_leaves_a_loadable_old_or_new_pair() {
    let _backend = support::postgres::backend();
    let d = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    ok_in(d.path(), &["fleet", "init"]);
    let url = format!("https://127.0.0.1:{port}");
    ok_in(d.path(), &["fleet", "issue", "cam-1", "--renew-url", &url]);
    ok_in(d.path(), &["fleet", "issue", "cam-r", "--romfs"]);
    let server = serve(d.path(), port);
    let mut cases = 0;
    // Each device: (its folder, whether it is /rom, the steps per file-system
    // mode). 2 files x (create + 2 halves) + 2 renames; FAT adds a remove
    // before each rename onto an existing file (none on a /rom device's
    // first renewal).
    let devices = [
        ("cam-1", false, [("atomic", 8u64), ("fat", 10)]),
        ("cam-r", true, [("atomic", 8u64), ("fat", 8)]),
    ];
    for (id, rom, modes) in devices {
        let old = device(d.path(), id);
        let mut seen = Interrupted::default();
        for (fs_mode, steps) in modes {
            interrupt_every_step(d.path(), &old, rom, fs_mode, steps, &mut seen);
        }
        assert!(seen.saw_old, "{id}: no interruption kept the old pair");
        let new_cert = seen.new_cert.expect("some interruption left the new pair");
        cases += seen.cases;
        // Uninterrupted: the steps counted above, and the pending pair installed and confirmed.
        let full = d.path().join(format!("{id}-full"));
        let rom_dir = if rom {
            old.clone()
        } else {
            d.path().join("rom-unused")
        };
        if rom {
            fs::create_dir_all(&full).unwrap();
            fs::copy(old.join("renew.py"), full.join("renew.py")).unwrap();
        } else {
            copy_dir(&old, &full);
        }
        let (v, printed) = harness_run(&[
            "crash",
            full.to_str().unwrap(),
            rom_dir.to_str().unwrap(),
            "1000000",
            "fat",
            "-",
        ]);
        assert_eq!(v["crashed"], false, "{id}: {printed}");
        assert_eq!(v["ops"], modes[1].1, "{id}: {printed}");
        assert_eq!(v["code"], 204, "{id}: the confirming connection: {printed}");
        assert_eq!(
            v["pair"],
            serde_json::json!(["client.der", "client.key.der"])
        );
        assert!(
            fs::read(full.join("client.der")).unwrap() == new_cert,
            "{id}: the interrupted runs' new certificate is the one the service confirmed"
        );
        let after = rows(d.path(), id);
        assert_eq!(
            after.iter().filter(|(st, _)| st == "active").count(),
            1,
            "{id}: {after:?}"
        );
    }
    drop(server);
    eprintln!("{cases} interruption cases, each loaded by the device peer");
}

#[test]
fn romfs_image_holds_the_first_credentials_and_boot_prefers_the_renewed_pair() {
    let _backend = support::postgres::backend();
    let d = tempfile::tempdir().unwrap();
    ok_in(d.path(), &["fleet", "init"]);
    let out = ok_in(
        d.path(),
        &[
            "fleet",
            "issue",
            "cam-1",
            "cam-2",
            "--romfs",
            "--renew-url",
            "https://renew.example.com",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("ROMFS is read-only"), "{said}");
    let dev = device(d.path(), "cam-1");
    let image = fs::read(dev.join("cam-1.romfs")).unwrap();
    let listed = devtls_romfs::list(&image).unwrap();
    let mut names: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "boot.py",
            "ca.der",
            "client.der",
            "client.key.der",
            "renew.py"
        ]
    );
    for e in &listed {
        let data = fs::read(dev.join(&e.path)).unwrap();
        assert_eq!(e.size, Some(data.len() as u64), "{}", e.path);
        assert!(
            image.windows(data.len()).any(|w| w == data),
            "{} is not in the image as written in the folder",
            e.path
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dev.join("cam-1.romfs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the image holds the key: 0600");
    }
    let boot = fs::read_to_string(dev.join("boot.py")).unwrap();
    assert!(boot.contains("cafile=\"/rom/ca.der\""), "{boot}");
    assert!(boot.contains("ctx.load_cert_chain(cert, key)"), "{boot}");
    // The board: /rom holds the image's files; the writable file system
    // holds boot.py, and renew.py is imported from /rom.
    let rom = d.path().join("rom");
    copy_dir(&dev, &rom);
    let flash = d.path().join("flash");
    fs::create_dir_all(&flash).unwrap();
    fs::copy(dev.join("renew.py"), flash.join("renew.py")).unwrap();
    let boot_pair = |flash: &Path| {
        let (v, _) = harness_run(&["boot", flash.to_str().unwrap(), rom.to_str().unwrap()]);
        v["pair"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    // Nothing renewed yet: the /rom pair.
    assert_eq!(
        boot_pair(&flash),
        ["/rom/client.der", "/rom/client.key.der"]
    );
    // A renewed pair that loads: it wins.
    let renewed = device(d.path(), "cam-2");
    fs::copy(renewed.join("client.der"), flash.join("client.der")).unwrap();
    fs::copy(renewed.join("client.key.der"), flash.join("client.key.der")).unwrap();
    assert_eq!(boot_pair(&flash), ["client.der", "client.key.der"]);
    let (loads, matches) = device_loads(&flash, "client.der", "client.key.der");
    assert!(loads && matches);
    // One that does not load (a damaged file): the /rom pair again.
    fs::write(flash.join("client.key.der"), b"damaged").unwrap();
    assert_eq!(
        boot_pair(&flash),
        ["/rom/client.der", "/rom/client.key.der"]
    );
    // A renewal cut between its two renames on the first renewal (no key
    // on the writable file system yet): the recovery completes it.
    fs::remove_file(flash.join("client.key.der")).unwrap();
    fs::copy(
        renewed.join("client.key.der"),
        flash.join("client.key.der.new"),
    )
    .unwrap();
    assert_eq!(boot_pair(&flash), ["client.der", "client.key.der"]);
    assert_eq!(
        fs::read(flash.join("client.key.der")).unwrap(),
        fs::read(renewed.join("client.key.der")).unwrap()
    );
}

#[test]
fn renew_url_is_checked_remembered_and_refused_for_server_only_devices() {
    let _backend = support::postgres::backend();
    let d = tempfile::tempdir().unwrap();
    ok_in(d.path(), &["fleet", "init"]);
    for bad in ["http://a.example", "https://a\"b:1", "https://a.example/x"] {
        let out = run_in(d.path(), &["fleet", "issue", "cam-1", "--renew-url", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(
            !device(d.path(), "cam-1").exists(),
            "{bad}: nothing is issued"
        );
    }
    let out = run_in(
        d.path(),
        &[
            "fleet",
            "issue",
            "s-1",
            "--role",
            "server",
            "--renew-url",
            "https://r.example",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--role both"),
        "{}",
        text(&out)
    );
    ok_in(
        d.path(),
        &[
            "fleet",
            "issue",
            "cam-1",
            "--renew-url",
            "https://[::1]:9000",
        ],
    );
    // A later issue without the option still writes renew.py, for the same service.
    ok_in(d.path(), &["fleet", "issue", "cam-2"]);
    let renew = fs::read_to_string(device(d.path(), "cam-2").join("renew.py")).unwrap();
    assert!(
        renew.contains("HOST = \"::1\"\nPORT = 9000\nHHDR = \"[::1]:9000\"\n"),
        "{renew}"
    );
    let boot = fs::read_to_string(device(d.path(), "cam-2").join("boot.py")).unwrap();
    assert!(boot.contains("import renew\nrenew.run()"), "{boot}");
    // Rotated folders keep renewing at the remembered service.
    ok_in(d.path(), &["fleet", "rotate", "--within", "3650d"]);
    let rotated = fs::read_to_string(device(d.path(), "cam-1").join("renew.py")).unwrap();
    assert!(rotated.contains("PORT = 9000\n"), "{rotated}");
}

/// `devtls fleet serve` on 127.0.0.1:`port` for the fleet in `d/fleet`,
/// renewing any certificate at once (`--renew-after 0d`).
fn serve(d: &Path, port: u16) -> Peer {
    serve_with(d, port, &["--renew-after", "0d"])
}

/// `devtls fleet serve` on 127.0.0.1:`port` with `extra` options.
fn serve_with(d: &Path, port: u16, extra: &[&str]) -> Peer {
    let mut cmd = support::devtls();
    cmd.current_dir(d).args([
        "fleet",
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--name",
        "127.0.0.1",
    ]);
    cmd.args(extra);
    let peer = Peer::spawn("devtls fleet serve", &mut cmd);
    wait_for_tcp(port, std::time::Duration::from_secs(60));
    peer
}

/// The inventory rows of `device`: (status, serial), oldest first.
fn rows(d: &Path, device: &str) -> Vec<(String, String)> {
    let out = ok_in(d, &["fleet", "export", "--json"]);
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.iter()
        .filter(|r| r["device"] == device)
        .map(|r| {
            (
                r["status"].as_str().unwrap().to_string(),
                r["serial"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// renew.py under CPython (the MicroPython-limited ssl stand-in) against the
/// real `devtls fleet serve` on loopback: a device renews, installs the new
/// pair, confirms it (the inventory shows the new certificate active and
/// the old superseded), then is told it is current; a revoked device is
/// refused and keeps its files; a ROMFS device's first renewal lands on the
/// writable file system and boot prefers it.
#[test]
fn renew_py_renews_against_fleet_serve() {
    let _backend = support::postgres::backend();
    let d = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let url = format!("https://127.0.0.1:{port}");
    ok_in(d.path(), &["fleet", "init"]);
    ok_in(
        d.path(),
        &[
            "fleet",
            "issue",
            "cam-1",
            "cam-2",
            "cam-4",
            "--renew-url",
            &url,
        ],
    );
    ok_in(d.path(), &["fleet", "issue", "cam-3", "--romfs"]);
    ok_in(d.path(), &["fleet", "revoke", "cam-2"]);
    let server = serve(d.path(), port);
    let rom = d.path().join("rom-unused");
    fs::create_dir_all(&rom).unwrap();

    // cam-1: renews.
    let flash = d.path().join("cam-1-flash");
    copy_dir(&device(d.path(), "cam-1"), &flash);
    let old = fs::read(flash.join("client.der")).unwrap();
    let before = rows(d.path(), "cam-1");
    assert_eq!(before.len(), 1);
    let (v, printed) = harness_run(&["run", flash.to_str().unwrap(), rom.to_str().unwrap()]);
    assert!(
        printed.contains("renew: new certificate installed"),
        "{printed}"
    );
    assert_eq!(
        v["code"], 204,
        "the confirming connection is told it is current: {printed}"
    );
    let new = fs::read(flash.join("client.der")).unwrap();
    assert!(new != old, "a new certificate was installed");
    let (loads, matches) = device_loads(&flash, "client.der", "client.key.der");
    assert!(loads && matches, "the device loads the renewed pair");
    assert!(
        !fs::read_dir(&flash).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".new")),
        "no .new file is left"
    );
    let after = rows(d.path(), "cam-1");
    let status = |serial: &str| {
        after
            .iter()
            .find(|(_, s)| s == serial)
            .map(|(st, _)| st.clone())
            .unwrap_or_default()
    };
    assert_eq!(status(&before[0].1), "superseded", "{after:?}");
    assert_eq!(
        after.iter().filter(|(st, _)| st == "active").count(),
        1,
        "the confirmed certificate is active: {after:?}"
    );
    // cam-4: the same renewal by real MicroPython (WebAssembly, no sockets):
    // the connections CPython made are recorded and replayed to it, and it
    // installs the same pair from its own file system.
    let (cpy, mpy_in, mpy_out, rec) = (
        d.path().join("cam-4-cpython"),
        d.path().join("cam-4-micropython"),
        d.path().join("cam-4-micropython-after"),
        d.path().join("cam-4-recorded"),
    );
    copy_dir(&device(d.path(), "cam-4"), &cpy);
    copy_dir(&device(d.path(), "cam-4"), &mpy_in);
    fs::create_dir_all(&rec).unwrap();
    let (v, printed) = harness_run_env(
        &["run", cpy.to_str().unwrap(), rom.to_str().unwrap()],
        &[("MPY_SSL_RECORD", &rec)],
    );
    assert_eq!(v["code"], 204, "{printed}");
    let out = Command::new("timeout")
        .args(["120", "node"])
        .arg(repo_root().join("tests/micropython/run_renew.mjs"))
        .args([&mpy_in, &rec, &mpy_out])
        .output()
        .unwrap_or_else(|_| support::require::fail("node missing: apt-get install nodejs npm"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "MicroPython: {}", text(&out));
    assert!(
        said.contains("renew: new certificate installed") && said.contains("result: 204"),
        "MicroPython: {said}"
    );
    for f in ["client.der", "client.key.der"] {
        assert!(
            fs::read(mpy_out.join(f)).unwrap() == fs::read(cpy.join(f)).unwrap(),
            "MicroPython installed another {f} than CPython"
        );
    }
    let (loads, matches) = device_loads(&mpy_out, "client.der", "client.key.der");
    assert!(
        loads && matches,
        "the device loads what MicroPython installed"
    );
    assert!(
        !fs::read_dir(&mpy_out).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".new")),
        "MicroPython left a .new file"
    );

    // With the service's default window (two thirds of the lifetime) the
    // fresh certificate is current: nothing changes.
    let log = server.finish(std::time::Duration::from_millis(10));
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    let server = serve_with(d.path(), port, &[]);
    let (v, printed) = harness_run(&["run", flash.to_str().unwrap(), rom.to_str().unwrap()]);
    assert_eq!(v["code"], 204, "{printed}");
    assert!(!printed.contains("installed"), "{printed}");
    assert!(
        fs::read(flash.join("client.der")).unwrap() == new,
        "the pair is kept"
    );

    // cam-2, revoked: refused, keeps its files.
    let revoked = d.path().join("cam-2-flash");
    copy_dir(&device(d.path(), "cam-2"), &revoked);
    let kept = fs::read(revoked.join("client.der")).unwrap();
    let (v, printed) = harness_run(&["run", revoked.to_str().unwrap(), rom.to_str().unwrap()]);
    assert_eq!(v["code"], 403, "{printed}");
    assert!(printed.contains("refused (403 revoked)"), "{printed}");
    assert!(
        fs::read(revoked.join("client.der")).unwrap() == kept,
        "kept its certificate"
    );

    let log2 = server.finish(std::time::Duration::from_millis(10));
    let log = log + &String::from_utf8_lossy(&log2.stdout);
    let server = serve(d.path(), port);
    // cam-3, first credentials in ROMFS: the renewed pair is written beside
    // boot.py, and pair() names it from then on.
    let rom3 = d.path().join("cam-3-rom");
    copy_dir(&device(d.path(), "cam-3"), &rom3);
    let flash3 = d.path().join("cam-3-flash");
    fs::create_dir_all(&flash3).unwrap();
    fs::copy(rom3.join("renew.py"), flash3.join("renew.py")).unwrap();
    let (v, printed) = harness_run(&["run", flash3.to_str().unwrap(), rom3.to_str().unwrap()]);
    assert_eq!(v["code"], 204, "{printed}");
    assert_eq!(
        v["pair"],
        serde_json::json!(["client.der", "client.key.der"]),
        "{printed}"
    );
    let (loads, matches) = device_loads(&flash3, "client.der", "client.key.der");
    assert!(loads && matches);
    assert!(
        fs::read(flash3.join("client.der")).unwrap() != fs::read(rom3.join("client.der")).unwrap(),
        "the renewed certificate is on the writable file system"
    );
    let log2 = server.finish(std::time::Duration::from_millis(10));
    let log = log + &String::from_utf8_lossy(&log2.stdout);
    assert!(log.lines().count() >= 6, "one log line per request:\n{log}");
}

/// renew.py on the MicroPython unix port (its `ssl` is the device's
/// modtls_mbedtls.c on mbedTLS 3.6) with real sockets, against the hyper
/// HTTP of `fleet serve`: it renews (200, installed) and confirms (204),
/// twice in a row (`--renew-after 0`).
#[test]
fn renew_py_on_the_micropython_unix_port_renews_through_hyper() {
    use support::micropython;
    support::require("micropython");
    let d = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let url = format!("https://127.0.0.1:{port}");
    ok_in(d.path(), &["fleet", "init"]);
    ok_in(d.path(), &["fleet", "issue", "cam-1", "--renew-url", &url]);
    let _server = serve(d.path(), port);
    let flash = d.path().join("cam-1-flash");
    copy_dir(&device(d.path(), "cam-1"), &flash);
    let old = fs::read(flash.join("client.der")).unwrap();
    let script = micropython::with_prelude(
        "import renew\nprint('code', renew.run())\nprint('again', renew.run())\n",
    );
    let out = micropython::run_ok(
        &flash,
        "run.py",
        &script,
        std::time::Duration::from_secs(120),
    );
    let printed = text(&out);
    assert!(
        printed.contains("code 204") && printed.contains("again 204"),
        "{printed}"
    );
    assert_eq!(
        printed.matches("renew: new certificate installed").count(),
        2,
        "{printed}"
    );
    assert_ne!(fs::read(flash.join("client.der")).unwrap(), old);
    let statuses: Vec<String> = rows(d.path(), "cam-1")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses,
        ["superseded", "superseded", "active"],
        "{statuses:?}"
    );
}

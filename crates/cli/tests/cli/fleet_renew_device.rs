//! The device side of certificate renewal (issue 15 items 2 and 3):
//! `fleet issue --renew-url` writes a renew.py that MicroPython 1.27's
//! plain grammar compiles (the WebAssembly build, tests/micropython: an
//! older release than the unix port the other tests run) and that fits
//! 4 KB; `--romfs` writes an image holding the files, and the pair boot.py
//! loads prefers a renewed one that loads, on MicroPython with the image
//! mounted at /rom. Renewal itself, end to end on MicroPython against
//! `devtls fleet serve`, power loss included: micropython_fleet.rs.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::micropython::{self as mp, Board};
use support::{ok_in, repo_root, run_in, text};

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

/// Loads a pair as the device does (`load_cert_chain`) with the mbedTLS 3.6
/// peer, and whether the key belongs to the certificate.
fn device_loads(dir: &Path, cert: &str, key: &str) -> (bool, bool) {
    let out = support::device::run(dir, &["loadchain", cert, key], b"");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (v["ok"] == true, v["pair"] == true)
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
    // The board: MicroPython with the image mounted at /rom and renew.py
    // imported from there; its writable file system starts empty.
    let board = Board {
        rom: Some(dev.join("cam-1.romfs")),
        ..Board::default()
    };
    let flash = d.path().join("flash");
    fs::create_dir_all(&flash).unwrap();
    let boot_pair = |flash: &Path| {
        let script = "import sys\nsys.path.append('/rom')\nimport renew\n\
                      renew.recover()\nprint('PAIR', *renew.pair())\n";
        fs::write(flash.join("pair.py"), script).unwrap();
        let out = mp::run_board(flash, "pair.py", &board, std::time::Duration::from_secs(60));
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = said
            .lines()
            .find_map(|l| l.strip_prefix("PAIR "))
            .unwrap_or_else(|| panic!("{}", text(&out)));
        line.split(' ').map(String::from).collect::<Vec<_>>()
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

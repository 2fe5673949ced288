//! `devtls romfs`: images byte for byte as MicroPython's own builder
//! (`mpremote romfs build`) writes them, read back, checked against the
//! device profile, and bad input refused without touching anything.

use crate::support;

use std::fs;
use std::path::Path;

use support::{ok_in, run_in, text, words};

/// A folder as a device gets it: a fleet device's files, the guide's server
/// pair beside their PEM copies, a nested folder, an empty file and a script.
fn device_folder(d: &Path) {
    ok_in(d, &words("new server --dns openmv --out rom"));
    ok_in(d, &words("new client --cn sensor-01 --out rom/certs"));
    fs::create_dir_all(d.join("rom/lib/empty")).unwrap();
    fs::write(d.join("rom/lib/util.py"), "def hello():\n    print('hi')\n").unwrap();
    fs::write(d.join("rom/README"), "").unwrap();
}

fn mpremote_build(d: &Path, dir: &str, out: &str) -> Vec<u8> {
    let built = support::tool("mpremote")
        .args(["romfs", "--no-mpy", "-o", out, "build", dir])
        .current_dir(d)
        .output()
        .expect("mpremote runs");
    assert!(built.status.success(), "{}", text(&built));
    fs::read(d.join(out)).unwrap()
}

#[test]
fn the_image_is_what_mpremote_builds_and_lists_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    device_folder(d);
    let out = ok_in(d, &words("romfs build rom --json"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["image"], "rom.romfs");
    let ours = fs::read(d.join("rom.romfs")).unwrap();
    assert_eq!(report["size"], ours.len());
    assert_eq!(ours, mpremote_build(d, "rom", "mp.romfs"));
    assert_eq!(report["findings"], serde_json::json!([]), "a clean set");

    // Reading it back lists every entry, parents first, in mpremote's order.
    let listed = ok_in(d, &words("romfs ls mp.romfs --json"));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let paths: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "README",
            "certs",
            "certs/client.crt",
            "certs/client.der",
            "certs/client.key",
            "certs/client.key.der",
            "lib",
            "lib/empty",
            "lib/util.py",
            "server.crt",
            "server.der",
            "server.key",
            "server.key.der",
        ]
    );
    let der_size = fs::metadata(d.join("rom/server.der")).unwrap().len();
    let server = &listed["entries"][10];
    assert_eq!(server["size"], der_size);
    assert_eq!(listed["entries"][7]["size"], serde_json::Value::Null);

    // The human output says what to deploy and the /rom paths to load.
    let human = ok_in(d, &words("romfs build rom -o again.romfs"));
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("mpremote romfs deploy again.romfs"),
        "{human}"
    );
    assert!(
        human.contains("ctx.load_cert_chain(\"/rom/server.der\", \"/rom/server.key.der\")"),
        "{human}"
    );
    assert_eq!(fs::read(d.join("again.romfs")).unwrap(), ours);

    // Built from inside the folder, the image is named after it, beside it.
    fs::remove_file(d.join("rom.romfs")).unwrap();
    ok_in(&d.join("rom"), &words("romfs build ."));
    assert_eq!(fs::read(d.join("rom.romfs")).unwrap(), ours);
}

#[test]
fn a_file_the_device_cannot_load_is_reported_and_the_exit_status_is_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns openmv"));
    fs::create_dir(d.join("rom")).unwrap();
    // Only the PEM copy goes in: the device reads DER.
    fs::copy(d.join("server.crt"), d.join("rom/ca.crt")).unwrap();
    let out = run_in(d, &words("romfs build rom --json"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["findings"][0]["id"], "pem-not-der");
    assert_eq!(report["findings"][0]["file"], "rom/ca.crt");
    // The image is written all the same, and is what mpremote would write.
    assert_eq!(
        fs::read(d.join("rom.romfs")).unwrap(),
        mpremote_build(d, "rom", "mp.romfs")
    );
}

#[test]
fn bad_input_is_refused_with_the_file_named_and_nothing_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let refused = |args: &str, says: &str| {
        let out = run_in(d, &words(args));
        assert_eq!(out.status.code(), Some(2), "{args}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains(says), "{args}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    };
    refused("romfs build missing", "missing: no such folder");
    fs::create_dir(d.join("empty")).unwrap();
    refused("romfs build empty", "empty: holds no files");
    fs::create_dir(d.join("names")).unwrap();
    fs::write(d.join("names/zertifikat-ü.der"), b"x").unwrap();
    refused(
        "romfs build names",
        "rename it (e.g. to 'zertifikat-_.der')",
    );
    assert!(!d.join("names.romfs").exists());

    fs::create_dir(d.join("rom")).unwrap();
    fs::write(d.join("rom/a.txt"), "hi").unwrap();
    fs::write(d.join("rom.romfs"), b"keep me").unwrap();
    refused("romfs build rom", "rom.romfs already exists; pass --force");
    assert_eq!(fs::read(d.join("rom.romfs")).unwrap(), b"keep me");
    ok_in(d, &words("romfs build rom --force"));
    assert_eq!(
        fs::read(d.join("rom.romfs")).unwrap(),
        b"\xd2\xcd\x31\x0c\x05\x0a\x05a.txt\x02\x02hi"
    );

    fs::write(d.join("junk.romfs"), b"PK\x03\x04 not an image").unwrap();
    refused("romfs ls junk.romfs", "junk.romfs: not a ROMFS image");
    refused("romfs ls nothing.romfs", "nothing.romfs: no such file");
}

//! Issue 25 item 1: ROMFS images devtls writes, mounted on MicroPython (the
//! unix port, support/micropython.rs) the way a board mounts its ROMFS
//! partition, `vfs.mount(vfs.VfsRom(open(IMG, 'rb').read()), '/rom')`, and
//! the device's files read from /rom used in real handshakes: `devtls romfs
//! build`'s image with the lines it prints, and `devtls fleet issue
//! --romfs`'s image with the boot.py inside it. An image holding another
//! anchor is the negative control.

use crate::support;

use std::fs;
use std::time::Duration;

use support::micropython::{self as mp, Board};
use support::net::{stdout_lines, Serve};
use support::{free_tcp_port, ok_in, text, words, Peer};

const WAIT: Duration = Duration::from_secs(60);

/// `new client`'s mTLS block with its two loading lines replaced by the
/// ones `romfs build` printed for /rom (both printed by devtls).
fn rom_client(new_client: &str, romfs_build: &str) -> String {
    let block = mp::block_after(new_client, "On the device, as an mTLS client");
    let rom_lines = mp::block_after(romfs_build, "On the device, load the files from /rom");
    let chain = rom_lines
        .lines()
        .find(|l| l.starts_with("ctx.load_cert_chain(\"/rom/client.der\""))
        .unwrap_or_else(|| panic!("no /rom pair in:\n{rom_lines}"));
    let anchor = rom_lines
        .lines()
        .find(|l| l.starts_with("ctx.load_verify_locations(cafile=\"/rom/server.der\""))
        .unwrap_or_else(|| panic!("no /rom anchor in:\n{rom_lines}"));
    let mut replaced = 0;
    let script: String = block
        .lines()
        .map(|l| {
            let swap = if l.starts_with("ctx.load_cert_chain(") {
                Some(chain)
            } else if l.starts_with("ctx.load_verify_locations(") {
                Some(anchor)
            } else {
                None
            };
            replaced += usize::from(swap.is_some());
            format!("{}\n", swap.unwrap_or(l))
        })
        .collect();
    assert_eq!(replaced, 2, "{block}");
    script
}

/// `devtls romfs build` of a device folder (`new client`'s pair and the
/// server's certificate as its anchor): MicroPython mounts the image at
/// /rom and, with the lines romfs build printed, completes mutual TLS
/// against `devtls serve --ca client.der`. An image built with another
/// server certificate as the anchor makes the same lines refuse the server.
#[test]
fn romfs_build_image_mounted_at_rom_completes_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    let printed = ok_in(
        d,
        &words("new client --cn sensor-01 --dns localhost --out dev"),
    );
    let new_client = String::from_utf8_lossy(&printed.stdout).into_owned();
    fs::copy(d.join("server.der"), d.join("dev/server.der")).unwrap();
    let built = ok_in(d, &words("romfs build dev"));
    let built = String::from_utf8_lossy(&built.stdout).into_owned();
    let lines = rom_client(&new_client, &built);
    let board = Board {
        rom: Some(d.join("dev.romfs")),
        ..Board::default()
    };
    // The device's writable file system holds only the script: every file
    // it loads comes from /rom.
    let flash = d.join("flash");
    fs::create_dir_all(&flash).unwrap();
    let serve = Serve::guide(d, &words("--ca dev/client.der --count 1"));
    fs::write(flash.join("main.py"), mp::on_port(&lines, serve.port)).unwrap();
    let out = mp::run_board(&flash, "main.py", &board, WAIT);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("b'hello\\n'"),
        "{}",
        text(&out)
    );
    let line = serve.line(WAIT);
    assert!(line.contains("client CN=sensor-01"), "{line}");
    drop(serve);

    // Negative control: the image holds another server certificate.
    ok_in(
        d,
        &words("new server --dns localhost --ip 127.0.0.1 --out other"),
    );
    fs::copy(d.join("other/server.der"), d.join("dev/server.der")).unwrap();
    ok_in(d, &words("romfs build dev -o wrong.romfs"));
    let board = Board {
        rom: Some(d.join("wrong.romfs")),
        ..Board::default()
    };
    let serve = Serve::guide(d, &words("--ca dev/client.der --count 1"));
    fs::write(flash.join("main.py"), mp::on_port(&lines, serve.port)).unwrap();
    let out = mp::run_board(&flash, "main.py", &board, WAIT);
    mp::assert_refused_unsigned(&out, "an image with another anchor");
}

/// The lines `romfs build` prints for a client image are enough on their
/// own: after MicroPython's bare `SSLContext(PROTOCOL_TLS_CLIENT)` (which
/// starts with verification off) they turn verification on, so an image
/// whose anchor is another server's certificate refuses the server, and
/// the right image completes mutual TLS. Before, the printed lines loaded
/// the anchor without `verify_mode` and the device accepted any server.
#[test]
fn romfs_build_lines_alone_verify_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    ok_in(d, &words("new client --cn sensor-01 --out dev"));
    ok_in(
        d,
        &words("new server --dns localhost --ip 127.0.0.1 --out other"),
    );
    let flash = d.join("flash");
    fs::create_dir_all(&flash).unwrap();
    for (anchor, image, right) in [
        ("server.der", "right.romfs", true),
        ("other/server.der", "wrong.romfs", false),
    ] {
        fs::copy(d.join(anchor), d.join("dev/server.der")).unwrap();
        let built = ok_in(d, &["romfs", "build", "dev", "-o", image]);
        let built = String::from_utf8_lossy(&built.stdout).into_owned();
        let rom_lines = mp::block_after(&built, "On the device, load the files from /rom");
        let serve = Serve::guide(d, &words("--ca dev/client.der --count 1"));
        let script = format!(
            "import socket, ssl\n\
             sock = socket.socket()\n\
             sock.connect(socket.getaddrinfo('127.0.0.1', {port})[0][-1])\n\
             ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
             {rom_lines}\
             ssock = ctx.wrap_socket(sock, server_hostname='localhost')\n\
             ssock.write(b'hello\\n')\n\
             print(ssock.read())\n",
            port = serve.port
        );
        fs::write(flash.join("main.py"), &script).unwrap();
        let board = Board {
            rom: Some(d.join(image)),
            ..Board::default()
        };
        let out = mp::run_board(&flash, "main.py", &board, WAIT);
        if right {
            assert!(
                out.status.success()
                    && String::from_utf8_lossy(&out.stdout).contains("b'hello\\n'"),
                "{}\n--- main.py ---\n{script}",
                text(&out)
            );
        } else {
            mp::assert_refused_unsigned(&out, "the printed /rom lines with another anchor");
        }
    }
}

/// `fleet issue --romfs` without renewal: the board mounts the device's
/// image and runs the boot.py inside it, which loads /rom/client.der,
/// /rom/client.key.der and /rom/ca.der and completes mutual TLS with the
/// fleet's server (which verifies it with the fleet CA). The image of a
/// device of another fleet (another CA) fails against the same server.
#[test]
fn fleet_romfs_image_boots_from_rom_and_completes_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_tcp_port().to_string();
    for fleet in ["fleet", "other"] {
        ok_in(d, &["fleet", "init", "--dir", fleet]);
        let issue = ["fleet", "issue", "--dir", fleet, "cam-1", "--romfs"];
        ok_in(
            d,
            &[&issue[..], &["--server-host", "127.0.0.1", "--port", &port]].concat(),
        );
    }
    fs::write(d.join("srv.csv"), "srv,localhost,127.0.0.1\n").unwrap();
    ok_in(d, &words("fleet issue --from srv.csv --role server"));
    let mut cmd = support::devtls();
    cmd.current_dir(d)
        .args(["serve", "--port", &port, "--count", "2"]);
    cmd.args(words(
        "--cert fleet/devices/srv/server.der --key fleet/devices/srv/server.key.der",
    ));
    cmd.args(["--ca", "fleet/ca.der"]);
    let mut server = Peer::spawn("devtls serve", &mut cmd);
    let served = stdout_lines(&mut server);
    served.recv_timeout(WAIT).expect("devtls serve listens");

    let boot = |fleet: &str| {
        let flash = d.join(format!("{fleet}-flash"));
        fs::create_dir_all(&flash).unwrap();
        let board = Board {
            rom: Some(d.join(format!("{fleet}/devices/cam-1/cam-1.romfs"))),
            ..Board::default()
        };
        mp::run_board(&flash, "/rom/boot.py", &board, WAIT)
    };
    let out = boot("fleet");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("b'hello\\n'"),
        "{}",
        text(&out)
    );
    let line = served.recv_timeout(WAIT).unwrap();
    assert!(line.contains("client CN=cam-1"), "{line}");
    // Negative control: another fleet's image (its CA is not the server's).
    let out = boot("other");
    mp::assert_refused_unsigned(&out, "another fleet's image");
}

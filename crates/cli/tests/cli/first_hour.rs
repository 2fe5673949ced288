//! The first ten minutes without a stumble, and docs/first-hour.md run as
//! written (issue 24): quickstart run twice, doctor on the folder quickstart
//! wrote and every fix it prints pasted, serve's line for doctor's probe,
//! the short usage of `devtls doctor`, where `devtls --help` starts; then the
//! page's commands, with MicroPython's unix port standing in for the board.

use crate::support;

use std::fs;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde_json::Value;
use support::micropython;
use support::net::{stdout_lines, Serve};
use support::{devtls, ok_in, run_in, text, words, Peer};

const WAIT: Duration = Duration::from_secs(30);

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

#[test]
fn quickstart_runs_again_reusing_its_own_files_or_moving_to_a_fresh_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &["quickstart"]);
    let q = d.join("devtls-quickstart");
    let keys = |q: &Path| {
        [
            "server.key",
            "server.key.der",
            "client.key",
            "client.key.der",
        ]
        .map(|k| fs::read(q.join(k)).unwrap())
    };
    let made = keys(&q);

    // The README's command, again: the same files, reused and said so.
    let again = ok_in(d, &["quickstart"]);
    let shown = String::from_utf8_lossy(&again.stdout);
    assert!(
        shown.contains("reusing the files of an earlier run in devtls-quickstart"),
        "{shown}"
    );
    assert!(
        shown.contains("reused devtls-quickstart/server.key.der"),
        "{shown}"
    );
    assert!(!shown.contains("FAILED"), "{shown}");
    assert_eq!(keys(&q), made);
    let report = json(&ok_in(d, &words("quickstart --json")));
    assert_eq!(report["files_from"], "reused", "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");

    // Something that is not quickstart's in the folder: left alone, the run
    // moves to a fresh folder and says so.
    ok_in(d, &words("new client --cn other --out elsewhere"));
    fs::copy(d.join("elsewhere/client.crt"), q.join("client.crt")).unwrap();
    let moved = json(&ok_in(d, &words("quickstart --json")));
    assert_eq!(moved["out"], "devtls-quickstart-2", "{moved:#}");
    assert_eq!(moved["files_from"], "new");
    let note = moved["note"].as_str().unwrap();
    assert!(
        note.contains("client.crt") && note.contains("devtls-quickstart-2"),
        "{note}"
    );
    assert_eq!(keys(&q), made, "an earlier run's keys are never touched");
    assert!(d.join("devtls-quickstart-2/server.key.der").is_file());

    // A folder the user named is not swapped for another: exit 2, nothing touched.
    let named = run_in(d, &words("quickstart --out devtls-quickstart"));
    assert_eq!(named.status.code(), Some(2), "{}", text(&named));
    assert!(String::from_utf8_lossy(&named.stderr).contains("--force"));
    assert_eq!(keys(&q), made);
}

/// The `fix` lines of doctor's report that are devtls commands, as typed.
fn printed_fixes(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("fix"))
        .filter_map(|fix| fix.find("devtls ").map(|at| fix[at..].trim().to_string()))
        .collect()
}

/// Runs a printed `devtls ...` command in `d` as pasted.
fn paste(d: &Path, command: &str) -> std::process::Output {
    let argv: Vec<&str> = command.split_whitespace().skip(1).collect();
    run_in(d, &argv)
}

#[test]
fn doctor_files_tells_the_pcs_pem_copies_from_the_devices_files_and_its_fixes_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("quickstart --json"));
    let out = run_in(d, &words("doctor --files devtls-quickstart"));
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("the device loads these files"), "{shown}");
    for pem in ["server.crt", "server.key", "client.crt", "client.key"] {
        let line = shown
            .lines()
            .find(|l| l.contains(&format!("devtls-quickstart/{pem} ")))
            .unwrap_or_else(|| panic!("{pem} not listed:\n{shown}"));
        assert!(line.contains("the PC's copy (PEM) of"), "{line}");
    }
    let report = json(&ok_in(d, &words("doctor --files devtls-quickstart --json")));
    let copies = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["role"] == "the PC's copy")
        .count();
    assert_eq!(copies, 4, "{report:#}");

    // A PEM certificate without its DER twin: the printed fix, pasted, works.
    ok_in(d, &words("new server --out solo"));
    fs::remove_file(d.join("solo/server.der")).unwrap();
    // And one whose DER name is taken by another certificate: convert would
    // refuse to overwrite it, so the fix must write elsewhere.
    ok_in(d, &words("new server --out clash"));
    ok_in(d, &words("new server --out other"));
    fs::copy(d.join("other/server.crt"), d.join("clash/server.crt")).unwrap();
    for folder in ["solo", "clash"] {
        let before = run_in(d, &["doctor", "--files", folder]);
        assert_eq!(before.status.code(), Some(1), "{}", text(&before));
        let fixes = printed_fixes(&before);
        assert!(
            !fixes.is_empty(),
            "{folder}: no fix printed:\n{}",
            text(&before)
        );
        for fix in &fixes {
            let pasted = paste(d, fix);
            assert!(
                pasted.status.success(),
                "{folder}: `{fix}` failed:\n{}",
                text(&pasted)
            );
        }
        let after = run_in(d, &["doctor", "--files", folder]);
        assert_eq!(after.status.code(), Some(0), "{folder}:\n{}", text(&after));
    }
}

/// Starts `devtls serve SERVE --count 1`, runs `devtls doctor` at it with
/// DOCTOR, which must say the device connects; returns serve's line for it
/// after checking serve exited 0 (no client failed).
fn doctor_at_serve(d: &Path, serve: &[&str], doctor: &[&str]) -> String {
    let serve = Serve::start(d, &[serve, &["--count", "1"]].concat());
    let target = format!("127.0.0.1:{}", serve.port);
    let out = run_in(d, &[&["doctor", target.as_str()], doctor].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let line = serve.line(WAIT);
    let served = serve.finish(WAIT);
    assert_eq!(served.status.code(), Some(0), "{line}\n{}", text(&served));
    line
}

#[test]
fn serve_logs_doctors_probe_as_a_probe_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("quickstart --json"));
    let server =
        words("--cert devtls-quickstart/server.der --key devtls-quickstart/server.key.der");
    let anchor = words("--ca devtls-quickstart/server.der --hostname localhost");
    let canceled = |line: &str| line.contains("  probe: ") && line.contains("devtls doctor");

    // Without --ca: doctor reads the hello and certificate, then cancels.
    let line = doctor_at_serve(d, &server, &anchor);
    assert!(canceled(&line), "{line}");

    // With --ca (mTLS): doctor --cert sends the device's certificate, then a
    // Finished made to be refused.
    let mtls = [&server[..], &["--ca", "devtls-quickstart/client.der"]].concat();
    let identity =
        words("--cert devtls-quickstart/client.der --key devtls-quickstart/client.key.der");
    let line = doctor_at_serve(d, &mtls, &[&anchor[..], &identity[..]].concat());
    assert!(line.contains("  probe (client CN=device-01): "), "{line}");

    // Over DTLS doctor cancels the same way.
    let line = doctor_at_serve(
        d,
        &[&["--dtls"], &server[..]].concat(),
        &[&["--dtls"], &anchor[..]].concat(),
    );
    assert!(canceled(&line), "{line}");
}

#[test]
fn doctor_without_arguments_shows_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bare = run_in(d, &["doctor"]);
    assert_eq!(bare.status.code(), Some(2), "{}", text(&bare));
    let usage = String::from_utf8_lossy(&bare.stderr);
    assert!(
        usage.contains("devtls doctor <TARGET> --ca <FILE>"),
        "{usage}"
    );
    assert!(usage.contains("devtls doctor --files <DIR>"), "{usage}");
}

#[test]
fn help_opens_with_where_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let help = ok_in(d, &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    let first = help.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(first.starts_with("Where to start"), "{help}");
    let opening = &help[..help.find("Usage:").expect("a usage line")];
    let at = |word: &str| {
        opening
            .find(word)
            .unwrap_or_else(|| panic!("{word} is not in the opening:\n{opening}"))
    };
    let path = [
        "devtls quickstart",
        "devtls new",
        "devtls serve / connect",
        "devtls doctor",
        "devtls fleet",
    ];
    assert!(
        path.windows(2).all(|w| at(w[0]) < at(w[1])),
        "the opening does not follow the guide's path:\n{opening}"
    );
}

/// The commands of the page's ```sh blocks and the lines of its ```python
/// blocks, in order.
fn page() -> (Vec<String>, Vec<String>) {
    let text = fs::read_to_string(support::repo_root().join("docs/first-hour.md")).unwrap();
    let (mut sh, mut py) = (Vec::new(), Vec::new());
    let mut block: Option<&str> = None;
    for line in text.lines() {
        match (block, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => block = Some(if lang == "python" { "py" } else { "sh" }),
            (Some(_), Some(_)) => block = None,
            (Some("sh"), None) if !line.trim().is_empty() => sh.push(line.trim().to_string()),
            (Some("py"), None) if !line.trim().is_empty() => py.push(line.to_string()),
            _ => {}
        }
    }
    (sh, py)
}

#[test]
fn the_first_hour_page_runs_as_written_with_the_unix_port_as_the_board() {
    micropython::binary();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let board = d.join("flash");
    fs::create_dir(&board).unwrap();
    let (commands, python) = page();
    assert!(commands.len() >= 8, "{commands:?}");
    let port = support::free_tcp_port().to_string();
    let mut serve: Option<(Peer, Receiver<String>)> = None;
    let mut device_lines = String::new();
    let mut image: Option<Vec<u8>> = None;
    for command in &commands {
        let command = command.replace("8443", &port);
        let argv: Vec<&str> = command.split_whitespace().collect();
        match argv.as_slice() {
            ["devtls", "quickstart", ..] => {
                let out = ok_in(d, &argv[1..]);
                let human = String::from_utf8_lossy(&out.stdout).into_owned();
                let json = json(&ok_in(d, &[&argv[1..], &["--json"]].concat()));
                assert_eq!(json["files_from"], "reused", "{json:#}");
                device_lines = json["device"]["micropython"]
                    .as_str()
                    .unwrap()
                    .replace("8443", &port);
                // The copy lines it printed name the files step 5 copies.
                for f in ["client.der", "client.key.der", "server.der"] {
                    assert!(
                        human.contains(&format!("mpremote cp devtls-quickstart/{f} :")),
                        "{human}"
                    );
                }
            }
            ["devtls", "serve", ..] => {
                let mut peer =
                    Peer::spawn("devtls serve", devtls().args(&argv[1..]).current_dir(d));
                let lines = stdout_lines(&mut peer);
                let first = lines
                    .recv_timeout(WAIT)
                    .expect("serve printed its first line");
                assert!(first.ends_with(&format!(":{port}")), "{first}");
                serve = Some((peer, lines));
            }
            ["devtls", "doctor", target, ..] if !target.starts_with("--") => {
                let out = run_in(d, &argv[1..]);
                assert_eq!(out.status.code(), Some(0), "`{command}`:\n{}", text(&out));
                let line = serve
                    .as_ref()
                    .expect("serve runs")
                    .1
                    .recv_timeout(WAIT)
                    .unwrap();
                assert!(line.contains("  probe (client CN=device-01): "), "{line}");
            }
            ["devtls", "romfs", "build", folder] => {
                let out = ok_in(d, &argv[1..]);
                assert!(
                    String::from_utf8_lossy(&out.stdout)
                        .contains(&format!("mpremote romfs deploy {folder}.romfs")),
                    "{}",
                    text(&out)
                );
                let ours = fs::read(d.join(format!("{folder}.romfs"))).unwrap();
                let theirs = support::tool("mpremote")
                    .args(["romfs", "--no-mpy", "-o", "mpremote.romfs", "build", folder])
                    .current_dir(d)
                    .output()
                    .expect("mpremote runs");
                assert!(theirs.status.success(), "{}", text(&theirs));
                assert_eq!(ours, fs::read(d.join("mpremote.romfs")).unwrap());
            }
            ["devtls", ..] => {
                ok_in(d, &argv[1..]);
            }
            ["mpremote", "cp", files @ .., ":"] => {
                for f in files {
                    let name = Path::new(f).file_name().unwrap();
                    fs::copy(d.join(f), board.join(name)).unwrap();
                }
            }
            ["mpremote", "romfs", "deploy", img] => {
                image = Some(fs::read(d.join(img)).unwrap());
            }
            ["mkdir", ..] => {
                let out = std::process::Command::new("sh")
                    .args(["-c", &command])
                    .current_dir(d)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "`{command}`:\n{}", text(&out));
            }
            other => panic!("the page has a command this test does not know: {other:?}"),
        }
    }
    let (_server, lines) = serve.expect("the page starts a server");
    assert!(
        !device_lines.is_empty(),
        "quickstart printed no device lines"
    );

    // 5a: the copied files, in the folder the unix port runs in.
    board_says_hello(&board, &device_lines, &lines);

    // 5b: the ROMFS image mounted at /rom, the page's line first.
    let image = image.expect("the page deploys a ROMFS image");
    let rom = d.join("rom-board");
    fs::create_dir(&rom).unwrap();
    fs::write(rom.join("image.romfs"), image).unwrap();
    let mount = "import vfs\nvfs.mount(vfs.VfsRom(open('image.romfs', 'rb').read()), '/rom')\n";
    let script = format!("{mount}{}\n{device_lines}", python.join("\n"));
    board_says_hello(&rom, &script, &lines);
}

/// Runs `script` on the unix port in `dir` (the board): it must print the
/// server's reply, and the server the board's certificate and `hello`.
fn board_says_hello(dir: &Path, script: &str, serve_lines: &Receiver<String>) {
    let out = micropython::run_ok(dir, "main.py", &micropython::with_prelude(script), WAIT);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("b'hello\\n'"),
        "{}",
        text(&out)
    );
    let line = serve_lines.recv_timeout(WAIT).unwrap();
    assert!(
        line.contains("client CN=device-01") && line.contains("received \"hello\\n\""),
        "{line}"
    );
}

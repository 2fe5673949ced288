//! A throw-away PostgreSQL server for the fleet tests: made with `initdb` in
//! a temporary folder, listening on a free loopback port (and a unix socket
//! in the same folder), trusting local connections, stopped and deleted when
//! dropped. As root, the server programs run as the `postgres` user (they
//! refuse to run as root).
//!
//! [`backend`] runs a fleet test against the backend `DEVTLS_TEST_BACKEND`
//! names (`sqlite`, the default, or `postgres`): with `postgres`, every
//! `devtls` the test starts through [`super::devtls`] gets `DEVTLS_FLEET_DB`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::require::{self, postgres_bin};

thread_local! {
    /// The inventory URL of the test running on this thread, if PostgreSQL.
    pub static FLEET_DB: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The server of the test running on this thread, if PostgreSQL.
    static SERVER: RefCell<Option<Server>> = const { RefCell::new(None) };
}

/// A running server.
pub struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    databases: u32,
}

#[cfg(unix)]
fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(not(unix))]
fn as_root() -> bool {
    false
}

/// Lets the server programs (the `postgres` user, as root) write into `dir`.
fn open_to_server(dir: &Path) {
    #[cfg(unix)]
    if as_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    }
}

/// `program` from the server's folder, as the `postgres` user when root.
fn server_cmd(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| require::fail(&format!("{what}: could not start: {e}")));
    if !out.status.success() {
        require::fail(&format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    out
}

/// The arguments every server's data folder is made with.
const INITDB_ARGS: [&str; 7] = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"];

/// A data folder fresh from `initdb` that each server starts from a copy
/// of: `initdb` runs once per PostgreSQL installation, not once per test
/// (about a second of CPU each, mostly its bootstrap; docs/testing.md). It
/// lives in cargo's scratch folder for tests, one per installation and
/// arguments, made in a folder of its own and renamed into place when
/// complete, so runs in parallel (the suite's phases) never see half of one;
/// nothing writes to it afterwards.
fn template(bin: &Path) -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let key: String = format!("{}_{}", bin.display(), INITDB_ARGS.join("_"))
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("postgres-template");
        let done = root.join(&key);
        if done.join("data/PG_VERSION").is_file() {
            return done;
        }
        let work = root.join(format!("{key}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("template folder");
        open_to_server(&work);
        run(
            server_cmd(bin, "initdb")
                .args(INITDB_ARGS)
                .arg("-D")
                .arg(work.join("data")),
            "initdb",
        );
        if std::fs::rename(&work, &done).is_err() {
            // Another run made it meanwhile: use theirs.
            assert!(done.join("data/PG_VERSION").is_file(), "{}", done.display());
            let _ = std::fs::remove_dir_all(&work);
        }
        done
    })
}

/// `cp -a from/data to`: the copy keeps the owner and modes PostgreSQL checks.
fn copy_dir(template: &Path, to: &Path) {
    run(
        Command::new("cp")
            .arg("-a")
            .arg(template.join("data"))
            .arg(to),
        "copying the initdb template",
    );
}

impl Server {
    /// Starts a server, or fails the test in one line when PostgreSQL is missing.
    pub fn start() -> Server {
        require::require("postgresql");
        let bin = postgres_bin().expect("required above");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        open_to_server(dir.path());
        copy_dir(template(&bin), &data);
        let port = super::free_tcp_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            dir.path().display()
        );
        run(
            server_cmd(&bin, "pg_ctl")
                .args(["-w", "-t", "60", "-l"])
                .arg(dir.path().join("log"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &opts, "start"]),
            "pg_ctl start",
        );
        Server {
            dir,
            bin,
            port,
            databases: 0,
        }
    }

    /// How a client program (createdb, psql) reaches this server.
    fn client_args(&self) -> [String; 6] {
        [
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]
        .map(String::from)
    }

    /// Creates an empty database and returns its URL.
    pub fn database(&mut self) -> String {
        self.databases += 1;
        let name = format!("fleet{}", self.databases);
        run(
            server_cmd(&self.bin, "createdb")
                .args(self.client_args())
                .arg(&name),
            "createdb",
        );
        self.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL with `psql` in database `name`; returns its stdout (unaligned, tuples only).
    pub fn psql(&self, name: &str, sql: &str) -> String {
        let out = run(&mut self.psql_cmd(name, sql), "psql");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A copy of database `name` (`CREATE DATABASE ... TEMPLATE`), as an
    /// older backup of it would be; returns the copy's URL. Retried while
    /// the server still counts a just-finished client on `name`.
    pub fn copy_database(&mut self, name: &str) -> String {
        self.databases += 1;
        let copy = format!("fleet{}", self.databases);
        let sql = format!("CREATE DATABASE {copy} TEMPLATE {name}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.psql_cmd("postgres", &sql).output().expect("psql runs");
            if out.status.success() {
                return self.url(&copy);
            }
            if Instant::now() > deadline {
                require::fail(&format!(
                    "psql {sql}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Makes role `user` log in over TCP only with `password` (SCRAM), as a
    /// production server would; every other role stays trusted.
    pub fn require_password(&self, user: &str, password: &str) {
        self.psql(
            "postgres",
            &format!("CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{password}'"),
        );
        let hba = self.dir.path().join("data/pg_hba.conf");
        let old = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        let line = format!("host all {user} 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(&hba, format!("{line}{old}")).expect("write pg_hba.conf");
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    fn psql_cmd(&self, name: &str, sql: &str) -> Command {
        let mut cmd = server_cmd(&self.bin, "psql");
        cmd.args(self.client_args()).args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            name,
            "-c",
            sql,
        ]);
        cmd
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let _ = server_cmd(&self.bin, "pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .output();
        while self.dir.path().join("data/postmaster.pid").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The backend a fleet test runs against: while it lives, the test's
/// thread has a server (PostgreSQL) and [`fresh_database`] makes databases on it.
pub struct Backend {
    postgres: bool,
}

impl Backend {
    /// Whether the backend is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// The URL `devtls` gets now (PostgreSQL), or `None` (SQLite).
    pub fn url(&self) -> Option<String> {
        FLEET_DB.with(|db| db.borrow().clone())
    }

    /// The current database's name (PostgreSQL only).
    fn name(&self) -> String {
        let url = self.url().expect("a PostgreSQL backend");
        url.rsplit('/')
            .next()
            .and_then(|n| n.split('?').next())
            .unwrap_or_default()
            .to_string()
    }

    /// A copy of the current database, as an older backup of it (PostgreSQL
    /// only); `devtls` keeps using the current one until [`Backend::use_url`].
    pub fn copy_database(&self) -> String {
        let name = self.name();
        SERVER.with(|s| {
            s.borrow_mut()
                .as_mut()
                .expect("server")
                .copy_database(&name)
        })
    }

    /// Points `devtls` at `url` from now on.
    pub fn use_url(&self, url: &str) {
        FLEET_DB.with(|db| *db.borrow_mut() = Some(url.to_string()));
    }

    /// Makes `user` need `password` (PostgreSQL only); see [`Server::require_password`].
    pub fn require_password(&self, user: &str, password: &str) {
        SERVER.with(|s| {
            s.borrow()
                .as_ref()
                .expect("server")
                .require_password(user, password)
        });
    }

    /// The server's TCP port (PostgreSQL only).
    pub fn port(&self) -> u16 {
        SERVER.with(|s| s.borrow().as_ref().expect("server").port)
    }

    /// Proves the test ran on this backend: with PostgreSQL, `fleet` has no
    /// inventory.db and the current database holds `rows` certificates;
    /// with SQLite, `fleet/inventory.db` is there.
    pub fn assert_inventory(&self, fleet: &Path, rows: usize) {
        let file = fleet.join("inventory.db");
        if self.postgres {
            assert!(
                !file.exists(),
                "{}: PostgreSQL backend, yet a file",
                file.display()
            );
            assert_eq!(self.psql("SELECT count(*) FROM certs"), rows.to_string());
        } else {
            assert!(file.is_file(), "{}: missing", file.display());
        }
    }

    /// Runs `sql` with psql in the current database (PostgreSQL only).
    pub fn psql(&self, sql: &str) -> String {
        let name = self.name();
        SERVER.with(|s| s.borrow().as_ref().expect("server").psql(&name, sql))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        FLEET_DB.with(|db| db.borrow_mut().take());
        SERVER.with(|s| s.borrow_mut().take()); // stops it
    }
}

/// Sets up the backend `DEVTLS_TEST_BACKEND` names (`sqlite`, the default,
/// or `postgres`) for the calling test.
pub fn backend() -> Backend {
    match std::env::var("DEVTLS_TEST_BACKEND").as_deref() {
        Ok("postgres") => postgres(),
        Ok("sqlite") | Ok("") | Err(_) => Backend { postgres: false },
        Ok(other) => require::fail(&format!(
            "DEVTLS_TEST_BACKEND={other}: write sqlite or postgres"
        )),
    }
}

/// A PostgreSQL backend for the calling test, whatever `DEVTLS_TEST_BACKEND`
/// says, with a first empty database.
pub fn postgres() -> Backend {
    let server = Server::start();
    SERVER.with(|s| *s.borrow_mut() = Some(server));
    fresh_database();
    Backend { postgres: true }
}

/// With a PostgreSQL backend: points `devtls` at a new empty database (a
/// new fleet needs one). With SQLite: nothing.
pub fn fresh_database() {
    let url = SERVER.with(|s| s.borrow_mut().as_mut().map(Server::database));
    if url.is_some() {
        FLEET_DB.with(|db| *db.borrow_mut() = url);
    }
}

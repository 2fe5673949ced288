//! `devtls fleet`: a fleet CA with unique short-lived credentials per device,
//! an inventory, revocation, expiry and rotation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anstream::println;
use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use devtls_fleet::devices::{self, DeviceReq, Source};
use devtls_fleet::inventory::{Filter, Row};
use devtls_fleet::issue::{self, BootPy, IssueOptions};
use devtls_fleet::{names, Db, Fleet, InitOptions};
use devtls_pki::crl::Reason;
use devtls_pki::files::{self, Output};
use devtls_pki::issue::Role;
use devtls_pki::keys::KeyType;
use devtls_pki::sniff::Kind;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::output::{self, Exit};
use crate::snippets::{self, DeviceFiles};

// `devtls fleet`: described on `Command::Fleet` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet init --name \"Acme cameras\"
  devtls fleet issue --count 100 --prefix cam-
  devtls fleet issue --from devices.csv --role server
  devtls fleet list --expiring 30d
  devtls fleet revoke cam-17 --reason keyCompromise && devtls fleet crl
  devtls fleet rotate --within 30d --revoke-old
  devtls fleet status")]
pub struct Args {
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, clap::Args)]
struct DirArg {
    /// The fleet folder.
    #[arg(long, default_value = "fleet", global = true)]
    dir: PathBuf,
    /// Where the inventory lives: postgres://USER@HOST[:PORT]/DB for a
    /// PostgreSQL database shared by several issuers (also DEVTLS_FLEET_DB);
    /// without it, inventory.db in the fleet folder. See docs/fleet-postgres.md.
    #[arg(long, value_name = "URL", global = true)]
    db: Option<String>,
}

impl DirArg {
    /// The inventory `--db` or `DEVTLS_FLEET_DB` names.
    fn db(&self) -> anyhow::Result<Db> {
        let env = std::env::var("DEVTLS_FLEET_DB").ok();
        Ok(Db::parse(self.db.as_deref().or(env.as_deref()))?)
    }
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    Init(InitArgs),
    Issue(IssueArgs),
    List(ListArgs),
    Revoke(RevokeArgs),
    Crl(CrlArgs),
    Rotate(RotateArgs),
    Export(ExportArgs),
    Status(StatusArgs),
    Migrate(MigrateArgs),
}

/// Create a fleet: a CA certificate and key, and an empty inventory.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet init
  devtls fleet init --dir /srv/fleet --name \"Acme cameras\" --key p384")]
struct InitArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The CA's name (subject CN).
    #[arg(long, default_value = "devtls fleet CA")]
    name: String,
    /// The CA key type.
    #[arg(long, default_value = "p256", value_parser = ca_key)]
    key: KeyType,
    /// Days the CA certificate is valid.
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
    /// Print what was made as JSON.
    #[arg(long)]
    json: bool,
}

/// `--server-host`: a host name or IP literal, as it goes into boot.py.
fn server_host(s: &str) -> Result<String, String> {
    devtls_pki::names::host(s)
        .map(|h| h.to_string())
        .map_err(|why| {
            format!(
                "'{}' {why}; give the server's host name or IP address",
                s.escape_default()
            )
        })
}

fn ca_key(s: &str) -> Result<KeyType, String> {
    match s.parse::<KeyType>()? {
        k @ (KeyType::P256 | KeyType::P384) => Ok(k),
        _ => Err(format!("'{s}': a fleet CA key is p256 or p384")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Client,
    Server,
    Both,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Client => Role::Client,
            RoleArg::Server => Role::Server,
            RoleArg::Both => Role::Both,
        }
    }
}

/// Issue a new key and certificate for each device that has none yet.
///
/// Each device gets devices/ID/ with its DER certificate (client.der or
/// server.der by role), its DER key (*.key.der, 0600), the CA's ca.der and a
/// boot.py that loads them. Re-running the same command completes an
/// interrupted run: devices that already have a certificate are skipped.
/// A revoked device (a stolen identity, say) gets a new identity with
/// --reissue once it is back in your hands.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet issue cam-001 cam-002
  devtls fleet issue --count 1000 --prefix cam-
  devtls fleet issue --from devices.csv          # columns: id[,dns[,ip]]
  devtls fleet issue cam-9 --csr cam-9.csr       # the device made its own key
  devtls fleet revoke cam-7 && devtls fleet issue cam-7 --reissue   # a new identity")]
struct IssueArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Device IDs (letters, digits, '.', '_', '-').
    #[arg(value_name = "DEVICE-ID", conflicts_with_all = ["count", "from"])]
    ids: Vec<String>,
    /// Issue N devices named PREFIX1..PREFIXN.
    #[arg(long, requires = "prefix", conflicts_with = "from")]
    count: Option<u64>,
    /// The ID prefix for --count.
    #[arg(long, requires = "count")]
    prefix: Option<String>,
    /// A CSV of devices: id, optional dns, optional ip (several separated by ';').
    #[arg(long, value_name = "CSV")]
    from: Option<PathBuf>,
    /// Days each certificate is valid.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// What the devices' certificates are for.
    #[arg(long, value_enum, default_value = "client")]
    role: RoleArg,
    /// Device key type: p256 (recommended), p384 or rsa2048.
    #[arg(long, default_value = "p256")]
    key: KeyType,
    /// Sign this CSR (PEM or DER) instead of making a key: one DEVICE-ID only.
    #[arg(long, value_name = "FILE")]
    csr: Option<PathBuf>,
    /// The server the devices connect to, for boot.py (client role): a
    /// host name or an IP address.
    #[arg(long, default_value = "server.local", value_parser = server_host)]
    server_host: String,
    /// The port in boot.py.
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Device profile the keys must suit.
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// Worker threads making keys, certificates and device folders
    /// [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Also give devices whose certificates were all revoked a new key and
    /// certificate, replacing their folder (the old serial stays on the CRL).
    #[arg(long, conflicts_with = "csr")]
    reissue: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar (it is only ever shown on a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// List certificates in the inventory.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet list
  devtls fleet list --expiring 30d
  devtls fleet list --status revoked --json
  devtls fleet list --limit 1000 --json              # a page; each row has a cursor
  devtls fleet list --limit 1000 --after CURSOR      # the next page")]
struct ListArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Only active certificates expiring within this span (e.g. 30d, 2w).
    #[arg(long, value_name = "SPAN", value_parser = devtls_fleet::parse_span)]
    expiring: Option<time::Duration>,
    /// Only certificates with this status.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// At most N rows (a page); each row then shows its cursor.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Continue after this cursor (the last row of the previous page).
    #[arg(long, value_name = "CURSOR")]
    after: Option<devtls_fleet::inventory::Cursor>,
    /// Print JSON (streamed: rows are written as they are read).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Active,
    Revoked,
    Expired,
    Superseded,
}

/// Revoke a device (all its unrevoked certificates) or one certificate by serial.
///
/// Then publish the list with `devtls fleet crl` so servers refuse it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet revoke cam-17 --reason keyCompromise
  devtls fleet revoke 4a:1f:...:09")]
struct RevokeArgs {
    #[command(flatten)]
    dir: DirArg,
    /// A device ID or a certificate serial (hex, colons allowed).
    #[arg(value_name = "ID|SERIAL")]
    target: String,
    /// Why: unspecified, keyCompromise, superseded, cessationOfOperation,
    /// affiliationChanged, privilegeWithdrawn.
    #[arg(long, default_value = "unspecified")]
    reason: Reason,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Write a DER CRL of every revoked certificate, signed by the fleet CA.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet crl
  devtls fleet crl -o /srv/gateway/crl.der --days 2
  devtls serve --ca fleet/ca.der --crl fleet/crl.der ...")]
struct CrlArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Where to write it [default: DIR/crl.der].
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Days until the next CRL is due (nextUpdate).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
    days: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// New keys and certificates for devices whose certificate expires soon.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet rotate --within 30d
  devtls fleet rotate --within 2w --revoke-old && devtls fleet crl")]
struct RotateArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Rotate active certificates expiring within this span (expired ones too).
    #[arg(long, value_name = "SPAN", value_parser = devtls_fleet::parse_span)]
    within: time::Duration,
    /// Revoke the old certificates (reason superseded) instead of letting them expire.
    #[arg(long)]
    revoke_old: bool,
    /// Days the new certificates are valid.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// The server the devices connect to, for boot.py (client role): a
    /// host name or an IP address.
    #[arg(long, default_value = "server.local", value_parser = server_host)]
    server_host: String,
    /// The port in boot.py.
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar (it is only ever shown on a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// Copy the fleet folder's inventory.db into an empty PostgreSQL database
/// and check the copy (row count and a SHA-256 over every row).
///
/// inventory.db is only read. Afterwards run every fleet command with
/// --db URL (or DEVTLS_FLEET_DB); see docs/fleet-postgres.md.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet migrate --to postgres://devtls@db.example/fleet
  devtls fleet migrate --dir /srv/fleet --to postgres://devtls@127.0.0.1:5432/fleet --json")]
struct MigrateArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The empty PostgreSQL database: postgres://USER@HOST[:PORT]/DB.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar (it is only ever shown on a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// Export the whole inventory as CSV or JSON (stdout).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet export --csv > inventory.csv
  devtls fleet export --json | jq '.[] | select(.status == \"revoked\")'")]
struct ExportArgs {
    #[command(flatten)]
    dir: DirArg,
    /// CSV with a header line.
    #[arg(long, conflicts_with = "json", required_unless_present = "json")]
    csv: bool,
    /// A JSON array.
    #[arg(long)]
    json: bool,
    /// No progress bar (it is only ever shown on a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// Summarise the fleet: counts by status, next expiries, weekly expiry histogram.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet status
  devtls fleet status --weeks 26 --json")]
struct StatusArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Weeks shown in the histogram.
    #[arg(long, default_value_t = 13, value_parser = clap::value_parser!(u32).range(1..=520))]
    weeks: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        FleetCommand::Init(a) => init(a),
        FleetCommand::Issue(a) => issue(a),
        FleetCommand::List(a) => list(a),
        FleetCommand::Revoke(a) => revoke(a),
        FleetCommand::Crl(a) => crl(a),
        FleetCommand::Rotate(a) => rotate(a),
        FleetCommand::Export(a) => export(a),
        FleetCommand::Status(a) => status(a),
        FleetCommand::Migrate(a) => migrate(a),
    }
}

fn open(dir: &DirArg) -> anyhow::Result<Fleet> {
    Ok(Fleet::open_in(&dir.dir, &dir.db()?)?)
}

fn init(a: InitArgs) -> anyhow::Result<ExitCode> {
    let fleet = Fleet::init_in(
        &a.dir.dir,
        &InitOptions {
            name: a.name.clone(),
            key: a.key,
            days: a.days,
        },
        &a.dir.db()?,
    )?;
    #[derive(Serialize)]
    struct Made {
        dir: String,
        name: String,
        key_type: KeyType,
        sha256: String,
        files: Vec<String>,
    }
    let dir = fleet.dir();
    let made = Made {
        dir: dir.display().to_string(),
        name: a.name,
        key_type: a.key,
        sha256: devtls_pki::fingerprint::sha256_colon(fleet.ca_der()),
        // With PostgreSQL the inventory is in the database, not a file here.
        files: [
            names::CA_DER,
            names::CA_PEM,
            names::CA_KEY,
            names::INVENTORY,
        ]
        .iter()
        .filter(|n| **n != names::INVENTORY || fleet.db().backend() == "sqlite")
        .map(|n| dir.join(n).display().to_string())
        .collect(),
    };
    if a.json {
        output::json(&made)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::ok(&format!(
        "fleet CA \"{}\" ({}) in {}",
        made.name,
        a.key.describe(),
        made.dir
    ));
    println!("  SHA-256 {}", made.sha256);
    for f in &made.files {
        println!("  wrote {f}");
    }
    println!(
        "  {} is the CA's private key (0600): keep it here and back it up offline.",
        dir.join(names::CA_KEY).display()
    );
    println!();
    output::heading("Next:");
    println!(
        "devtls fleet issue --dir {} --count 10 --prefix cam-",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The boot.py each device gets: the guide's MicroPython lines for its role,
/// loading its own files and the fleet CA as the one anchor.
fn boot_py(server_host: String, port: u16) -> BootPy {
    Arc::new(move |role: Role| {
        let (cert, key) = issue::device_file_names(role);
        let files = DeviceFiles {
            cert: Some(&cert),
            key: Some(&key),
            anchor: Some(names::CA_DER),
        };
        let body = match role {
            Role::Client => snippets::client(&files, &server_host, port),
            _ => snippets::server(&files, port),
        };
        format!("# devtls fleet: this device's identity; the fleet CA is the one anchor.\n{body}")
    })
}

/// Progress for long work on stderr: drawn only on a terminal (indicatif
/// hides it otherwise), never with --quiet or for fewer than 100 `unit`s.
fn progress_bar(len: Option<u64>, quiet: bool, unit: &str) -> ProgressBar {
    let bar = match len {
        _ if quiet => ProgressBar::hidden(),
        Some(n) if n >= 100 => ProgressBar::new(n),
        Some(_) => ProgressBar::hidden(),
        None => ProgressBar::no_length(),
    };
    let template = match len {
        Some(_) => {
            format!("{{spinner}} {{wide_bar}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}")
        }
        None => format!("{{spinner}} {{pos}} {unit}  {{per_sec}}"),
    };
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn read_csr(path: &Path) -> anyhow::Result<Vec<u8>> {
    let sniffed = crate::input::sniff(path)?;
    let csr = sniffed.of_kind(Kind::Csr).next().map(|i| i.der.clone());
    match csr {
        Some(der) => Ok(der),
        None => bail!(
            "{}: holds {} but no certificate signing request; give the CSR the device made",
            path.display(),
            sniffed
                .items
                .first()
                .map_or("nothing usable", |i| i.kind.describe())
        ),
    }
}

fn issue(a: IssueArgs) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&a.profile)?;
    if let Some(why) = a.key.refused_by(profile) {
        bail!("--key {}: {why}", a.key);
    }
    // Check every device ID (and the whole CSV) before anything is written.
    let source = || -> anyhow::Result<Source> {
        Ok(match (&a.count, &a.prefix, &a.from) {
            (Some(n), Some(prefix), None) => Source::count(prefix, *n),
            (None, None, Some(path)) => Source::csv(path, crate::input::open(path)?),
            _ if !a.ids.is_empty() => Source::list(a.ids.clone()),
            _ => bail!(
                "name the devices: DEVICE-ID..., --count N --prefix PREFIX, or --from devices.csv"
            ),
        })
    };
    match (&a.count, &a.prefix) {
        (Some(n), Some(prefix)) => {
            devices::validate_id(&format!("{prefix}{}", (*n).max(1)))?;
        }
        _ => {
            let mut devices = 0u64;
            for req in source()? {
                req?;
                devices += 1;
            }
            if let (0, Some(path)) = (devices, &a.from) {
                bail!(
                    "{}: lists no devices; write one per line as id[,dns[,ip]]",
                    path.display()
                );
            }
        }
    }
    let mut opts = IssueOptions::new(
        a.days,
        a.role.into(),
        a.key,
        boot_py(a.server_host.clone(), a.port),
    );
    if let Some(t) = a.threads {
        opts.threads = t.max(1);
    }
    opts.reissue = a.reissue;
    let mut fleet = open(&a.dir)?;
    let report = if let Some(csr_path) = &a.csr {
        let [id] = a.ids.as_slice() else {
            bail!("--csr signs one device's request: give exactly one DEVICE-ID");
        };
        let csr = read_csr(csr_path)?;
        issue::issue_csr(&mut fleet, DeviceReq::plain(id.clone()), csr, &opts)
            .with_context(|| format!("{}", csr_path.display()))?
    } else {
        let source = source()?;
        let bar = progress_bar(source.len_hint(), a.quiet, "devices");
        let report = issue::issue(&mut fleet, source, &opts, &|done| bar.set_position(done))?;
        bar.finish_and_clear();
        report
    };
    if a.json {
        output::json(&report)?;
    } else {
        print_issued(&fleet, &report, a.role.into(), "issued");
    }
    finish(report.failed_count)
}

fn print_issued(fleet: &Fleet, report: &issue::Report, role: Role, verb: &str) {
    output::ok(&format!(
        "{verb} {} device certificate{}{}",
        report.issued,
        if report.issued == 1 { "" } else { "s" },
        match report.skipped {
            0 => String::new(),
            n => format!(
                ", skipped {n} that already have one (or are being issued; \
                 a revoked device gets a new one with --reissue)"
            ),
        }
    ));
    for f in &report.failed {
        output::warn(&format!("{}: {}", f.device, f.error));
    }
    if report.failed_count > report.failed.len() as u64 {
        output::warn(&format!(
            "... and {} more failures",
            report.failed_count - report.failed.len() as u64
        ));
    }
    if let Some(first) = &report.first {
        let dir = fleet.device_dir(first);
        let (cert, key) = issue::device_file_names(role);
        println!();
        output::heading(&format!(
            "Copy a device's folder to it, e.g. {}:",
            dir.display()
        ));
        print!(
            "{}",
            snippets::copy_commands(
                &[cert, key, names::CA_DER.into(), names::BOOT_PY.into()]
                    .iter()
                    .map(|f| dir.join(f).display().to_string())
                    .collect::<Vec<_>>()
            )
        );
    }
}

fn finish(failed: u64) -> anyhow::Result<ExitCode> {
    if failed > 0 {
        return Err(Exit {
            code: 1,
            message: format!("{failed} device(s) could not be issued; re-run to retry them"),
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes rows as a JSON array one at a time, so a large fleet is never held in memory.
struct JsonRows<W: Write> {
    out: W,
    first: bool,
}

impl<W: Write> JsonRows<W> {
    fn new(mut out: W) -> anyhow::Result<Self> {
        out.write_all(b"[")?;
        Ok(JsonRows { out, first: true })
    }

    fn push(&mut self, row: &Row) -> anyhow::Result<()> {
        self.out
            .write_all(if self.first { b"\n  " } else { b",\n  " })?;
        self.first = false;
        serde_json::to_writer(&mut self.out, row)?;
        Ok(())
    }

    fn end(mut self) -> anyhow::Result<()> {
        self.out
            .write_all(if self.first { b"]\n" } else { b"\n]\n" })?;
        Ok(())
    }
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let fleet = open(&a.dir)?;
    let filter = Filter {
        status: a.status.map(|s| {
            s.to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        }),
        expiring_before: a.expiring.map(|span| devtls_fleet::now() + span),
        limit: a.limit,
        after: a.after,
    };
    let stdout = std::io::stdout().lock();
    if a.json {
        let mut rows = JsonRows::new(stdout)?;
        fleet.db().for_each(&filter, &mut |r| {
            rows.push(&r)
                .map_err(|e| devtls_fleet::Error::Invalid(e.to_string()))
        })?;
        rows.end()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::BufWriter::new(stdout);
    writeln!(
        out,
        "{:<24} {:<10} {:<8} {:<20} {:<32}",
        "DEVICE", "STATUS", "KEY", "NOT AFTER", "SERIAL"
    )?;
    let mut n = 0u64;
    let mut last = None;
    fleet.db().for_each(&filter, &mut |r| {
        n += 1;
        last = r.cursor.clone();
        writeln!(
            out,
            "{:<24} {:<10} {:<8} {:<20} {}",
            r.device,
            r.status,
            r.key_type,
            date_time(r.not_after),
            r.serial
        )
        .map_err(|e| devtls_fleet::Error::Invalid(e.to_string()))
    })?;
    writeln!(out, "{n} certificate{}", if n == 1 { "" } else { "s" })?;
    if let (Some(limit), Some(cursor)) = (a.limit, last) {
        if n == limit {
            writeln!(out, "next page: --limit {limit} --after {cursor}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn date_time(t: time::OffsetDateTime) -> String {
    format!(
        "{} {:02}:{:02}Z",
        t.date(),
        t.time().hour(),
        t.time().minute()
    )
}

fn revoke(a: RevokeArgs) -> anyhow::Result<ExitCode> {
    let mut fleet = open(&a.dir)?;
    let done = fleet.revoke(&a.target, a.reason)?;
    if a.json {
        output::json(&done)?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in &done.revoked {
        output::ok(&format!(
            "revoked {} serial {} ({})",
            r.device,
            r.serial,
            a.reason.name()
        ));
    }
    for r in &done.already {
        println!("  {} serial {} was already revoked", r.device, r.serial);
    }
    println!();
    output::heading("Publish the change so servers refuse it:");
    println!("devtls fleet crl --dir {}", fleet.dir().display());
    Ok(ExitCode::SUCCESS)
}

fn crl(a: CrlArgs) -> anyhow::Result<ExitCode> {
    let fleet = open(&a.dir)?;
    let out = a.out.unwrap_or_else(|| fleet.dir().join("crl.der"));
    // The CRL this one replaces: the file about to be overwritten.
    let previous = match out.exists() {
        true => Some(crate::input::read(&out)?),
        false => None,
    };
    let der = fleet.crl(a.days, previous.as_deref())?;
    files::write_all(&[Output::public(&out, der)], true)?;
    let revoked = fleet.db().revoked()?.len();
    #[derive(Serialize)]
    struct Written {
        file: String,
        revoked: usize,
        days: u32,
    }
    let written = Written {
        file: out.display().to_string(),
        revoked,
        days: a.days,
    };
    if a.json {
        output::json(&written)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::ok(&format!(
        "CRL with {revoked} revoked certificate{} written to {} (next update in {} days)",
        if revoked == 1 { "" } else { "s" },
        written.file,
        a.days
    ));
    println!(
        "  Servers refuse them with: devtls serve --ca {} --crl {}",
        fleet.dir().join(names::CA_DER).display(),
        written.file
    );
    Ok(ExitCode::SUCCESS)
}

fn rotate(a: RotateArgs) -> anyhow::Result<ExitCode> {
    let mut fleet = open(&a.dir)?;
    let opts = IssueOptions::new(
        a.days,
        Role::Client,
        KeyType::P256,
        boot_py(a.server_host.clone(), a.port),
    );
    let bar = progress_bar(None, a.quiet, "devices rotated");
    let done = issue::rotate(&mut fleet, a.within, a.revoke_old, &opts, &|n| {
        bar.set_position(n)
    })?;
    bar.finish_and_clear();
    if a.json {
        output::json(&done)?;
    } else {
        output::ok(&format!(
            "rotated {} device{}; the old certificates are {}",
            done.report.issued,
            if done.report.issued == 1 { "" } else { "s" },
            if a.revoke_old {
                "revoked (publish with `devtls fleet crl`)"
            } else {
                "superseded and expire on their own"
            }
        ));
        for f in &done.report.failed {
            output::warn(&format!("{}: {}", f.device, f.error));
        }
        if !done.need_csr.is_empty() {
            output::warn(&format!(
                "{} device(s) made their own key and need a new CSR: {}",
                done.need_csr.len(),
                done.need_csr.join(", ")
            ));
        }
    }
    finish(done.report.failed_count)
}

fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let fleet = open(&a.dir)?;
    let total: u64 = fleet.db().counts()?.iter().map(|(_, n)| n).sum();
    let bar = progress_bar(Some(total), a.quiet, "rows");
    let stdout = std::io::stdout().lock();
    let io = |e: std::io::Error| devtls_fleet::Error::Invalid(e.to_string());
    if a.json {
        let mut rows = JsonRows::new(stdout)?;
        fleet.db().for_each(&Filter::default(), &mut |r| {
            bar.inc(1);
            rows.push(&r)
                .map_err(|e| devtls_fleet::Error::Invalid(e.to_string()))
        })?;
        rows.end()?;
    } else {
        let mut out = std::io::BufWriter::new(stdout);
        writeln!(
            out,
            "device,serial,sha256,key_type,role,not_before,not_after,status,from_csr,revoked_at,reason"
        )?;
        let rfc = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        fleet.db().for_each(&Filter::default(), &mut |r| {
            bar.inc(1);
            // Every cell escaped: a spreadsheet shows a value, never evaluates it.
            let cells = [
                r.device,
                r.serial,
                r.sha256.unwrap_or_default(),
                r.key_type,
                r.role,
                rfc(r.not_before),
                rfc(r.not_after),
                r.status,
                r.from_csr.to_string(),
                r.revoked_at.map(rfc).unwrap_or_default(),
                r.reason.unwrap_or_default(),
            ];
            let line: Vec<String> = cells
                .iter()
                .map(|c| devtls_pki::names::csv_cell(c))
                .collect();
            writeln!(out, "{}", line.join(",")).map_err(io)
        })?;
        out.flush()?;
    }
    bar.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}

fn migrate(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    if a.dir.db.is_some() {
        bail!("fleet migrate reads the fleet folder's inventory.db: name the database with --to, not --db");
    }
    let Db::Postgres(url) = Db::parse(Some(&a.to))? else {
        bail!("--to {}: write postgres://USER@HOST[:PORT]/DB", a.to);
    };
    let fleet = Fleet::open(&a.dir.dir)?;
    let bar = progress_bar(None, a.quiet, "rows");
    let done = devtls_fleet::migrate::migrate(
        &fleet,
        &url,
        &mut |n| {
            if n >= 100 && !a.quiet {
                bar.set_length(n);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {wide_bar} {pos}/{len} rows  {per_sec}  eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
        },
        &|n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    if a.json {
        output::json(&done)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::ok(&format!(
        "copied {} row{} of {} into {} and checked the copy",
        done.rows,
        if done.rows == 1 { "" } else { "s" },
        fleet.dir().join(names::INVENTORY).display(),
        done.to
    ));
    println!(
        "  rows: {} in both; SHA-256 over every row: {}",
        done.rows, done.digest
    );
    for (key, value) in &done.meta {
        println!("  {key}: {value}");
    }
    println!("\nNext: run the fleet commands with --db {} (or DEVTLS_FLEET_DB); inventory.db is no longer used.", done.to);
    Ok(ExitCode::SUCCESS)
}

fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let fleet = open(&a.dir)?;
    let counts = fleet.db().counts()?;
    let next = fleet.db().next_expiries(5)?;
    let (weeks, later) = fleet.db().expiry_histogram(a.weeks)?;
    if a.json {
        #[derive(Serialize)]
        struct Status {
            counts: std::collections::BTreeMap<String, u64>,
            next_expiries: Vec<Row>,
            expiring_per_week: Vec<u64>,
            expiring_later: u64,
        }
        output::json(&Status {
            counts: counts.into_iter().collect(),
            next_expiries: next,
            expiring_per_week: weeks,
            expiring_later: later,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    output::heading(&format!("Fleet {}", fleet.dir().display()));
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    println!("  {total} certificates");
    for (status, n) in &counts {
        println!("  {status:<11} {n:>8}");
    }
    println!();
    output::heading("Next expiries:");
    if next.is_empty() {
        println!("  none");
    }
    for r in &next {
        println!("  {:<24} {}", r.device, date_time(r.not_after));
    }
    println!();
    output::heading("Active certificates expiring per week:");
    for line in histogram(&weeks, later, 40) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per week: `week 3  ████▌ 12`, bars scaled to `width` characters.
fn histogram(weeks: &[u64], later: u64, width: usize) -> Vec<String> {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let max = weeks
        .iter()
        .copied()
        .chain([later])
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = |n: u64| {
        let eighths = (n as u128 * width as u128 * 8 / max as u128) as usize;
        let mut s = "█".repeat(eighths / 8);
        s += EIGHTHS[eighths % 8];
        if n > 0 && s.is_empty() {
            s = "▏".into();
        }
        s
    };
    let mut lines: Vec<String> = weeks
        .iter()
        .enumerate()
        .map(|(i, &n)| format!("  week {:>3}  {:<w$} {n}", i + 1, bar(n), w = width))
        .collect();
    lines.push(format!("  later     {:<w$} {later}", bar(later), w = width));
    lines
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_scales_to_the_largest_week() {
        let lines = super::histogram(&[0, 4, 8], 2, 8);
        let blocks = |l: &str| l.matches('█').count();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines.iter().map(|l| blocks(l)).collect::<Vec<_>>(),
            [0, 4, 8, 2]
        );
        assert!(
            lines[2].ends_with(" 8") && lines[0].ends_with(" 0"),
            "{lines:?}"
        );
        assert!(lines[3].starts_with("  later"), "{lines:?}");
    }
}

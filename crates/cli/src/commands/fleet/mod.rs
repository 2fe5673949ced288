//! `devtls fleet`: a fleet CA with unique short-lived credentials per device,
//! an inventory, revocation, expiry and rotation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anstream::println;
use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use devtls_fleet::device_files::{self, RenewUrl};
use devtls_fleet::devices::{self, DeviceReq, Source};
use devtls_fleet::inventory::Row;
use devtls_fleet::issue::{self, BootPy, IssueOptions};
use devtls_fleet::{names, Db, Fleet, InitOptions};
use devtls_pki::issue::Role;
use devtls_pki::keys::KeyType;
use devtls_pki::sniff::Kind;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

mod token;

use crate::output::{self, Exit};
use crate::snippets::{self, DeviceFiles};
use token::TokenArgs;

mod crl;
mod export;
mod list;
mod migrate;
mod revoke;
mod serve;
mod status;

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
  devtls fleet status
  devtls fleet serve --name renew.example.lan --revoke-old")]
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
    List(list::ListArgs),
    Revoke(revoke::RevokeArgs),
    Crl(crl::CrlArgs),
    Rotate(RotateArgs),
    Export(export::ExportArgs),
    Status(status::StatusArgs),
    Serve(serve::ServeArgs),
    Migrate(migrate::MigrateArgs),
}

/// Create a fleet: a CA certificate and key, and an empty inventory.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet init
  devtls fleet init --dir /srv/fleet --name \"Acme cameras\" --key p384
  devtls fleet init --ca-key 'pkcs11:token=fleet;object=fleet-ca' --pin-file pin.txt
  devtls fleet init --ca-key 'pkcs11:token=fleet;object=fleet-ca' --db postgres://devtls@db/fleet

With --ca-key the CA key is made (or found) in a PKCS#11 token and never
exists in a file; see docs/fleet-hsm.md. With --db the inventory is a
PostgreSQL database other issuers share: they copy ca.der, ca.crt and
ca.key (or ca.key.uri) and use the same --db, without init; see
docs/fleet-postgres.md.")]
struct InitArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Keep the CA key in a PKCS#11 token: an RFC 7512 URI naming the token
    /// and the key object (created there non-extractable if it is not).
    #[arg(long, value_name = "PKCS11-URI")]
    ca_key: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
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
  devtls fleet issue --count 10 --prefix cam- --renew-url https://renew.lan:8443 --romfs
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
    #[command(flatten)]
    token: TokenArgs,
    /// The renewal service (`devtls fleet serve`) the devices renew at,
    /// https://HOST[:PORT]: each folder also gets renew.py, which boot.py
    /// runs. Remembered in the fleet (DIR/renew-url) for later issue and
    /// rotate runs. Client and both roles only.
    #[arg(long, value_name = "URL")]
    renew_url: Option<String>,
    /// Also write devices/ID/ID.romfs: the first credentials, ca.der,
    /// boot.py and renew.py as a ROMFS image for /rom. ROMFS is read-only:
    /// renewed credentials land on the writable file system, and boot.py
    /// prefers them.
    #[arg(long)]
    romfs: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar (it is only ever shown on a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// New keys and certificates for devices whose certificate expires soon.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet rotate --within 30d
  devtls fleet rotate --within 2w --revoke-old && devtls fleet crl")]
struct RotateArgs {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    token: TokenArgs,
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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        FleetCommand::Init(a) => init(a),
        FleetCommand::Issue(a) => issue(a),
        FleetCommand::List(a) => list::list(a),
        FleetCommand::Revoke(a) => revoke::revoke(a),
        FleetCommand::Crl(a) => crl::crl(a),
        FleetCommand::Rotate(a) => rotate(a),
        FleetCommand::Export(a) => export::export(a),
        FleetCommand::Status(a) => status::status(a),
        FleetCommand::Serve(a) => serve::run(a),
        FleetCommand::Migrate(a) => migrate::migrate(a),
    }
}

fn open(dir: &DirArg) -> anyhow::Result<Fleet> {
    Ok(Fleet::open_in(&dir.dir, &dir.db()?)?)
}

/// Opens a fleet that is about to sign: a CA key in a token is reached
/// with these options.
fn open_signing(dir: &DirArg, token: &TokenArgs) -> anyhow::Result<Fleet> {
    let mut fleet = open(dir)?;
    fleet.set_token_access(token.access());
    Ok(fleet)
}

fn init(a: InitArgs) -> anyhow::Result<ExitCode> {
    let opts = InitOptions {
        name: a.name.clone(),
        key: a.key,
        days: a.days,
    };
    // Parsed here, not by clap: clap would repeat a refused value, and a
    // URI with pin-value= must not be echoed.
    let uri: Option<devtls_pki::signer::pkcs11::Uri> = match &a.ca_key {
        Some(text) => Some(text.parse().map_err(|e| anyhow::anyhow!("--ca-key {e}"))?),
        None => None,
    };
    let db = a.dir.db()?;
    let (fleet, found) = match &uri {
        Some(uri) => {
            let (fleet, found) =
                Fleet::init_in_token(&a.dir.dir, &opts, uri, a.token.access(), &db)?;
            (fleet, Some(found))
        }
        None => (Fleet::init_in(&a.dir.dir, &opts, &db)?, None),
    };
    #[derive(Serialize)]
    struct Made {
        dir: String,
        name: String,
        key_type: KeyType,
        sha256: String,
        /// The PKCS#11 URI of the CA key, when it is in a token.
        #[serde(skip_serializing_if = "Option::is_none")]
        ca_key: Option<String>,
        /// Whether the token key was generated now (false: it was there).
        #[serde(skip_serializing_if = "Option::is_none")]
        ca_key_created: Option<bool>,
        files: Vec<String>,
    }
    let dir = fleet.dir();
    // An existing key in the token keeps its own curve, whatever --key says.
    let key_type = fleet.authority()?.key().key_type();
    let key_file = match found {
        Some(_) => names::CA_KEY_URI,
        None => names::CA_KEY,
    };
    let made = Made {
        dir: dir.display().to_string(),
        name: a.name,
        key_type,
        sha256: devtls_pki::fingerprint::sha256_colon(fleet.ca_der()),
        ca_key: fleet.ca_key_uri().map(|u| u.without_module().to_string()),
        ca_key_created: found.map(|f| f == devtls_pki::signer::pkcs11::Found::Created),
        // With PostgreSQL the inventory is in the database, not a file here.
        files: [names::CA_DER, names::CA_PEM, key_file, names::INVENTORY]
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
        key_type.describe(),
        made.dir
    ));
    println!("  SHA-256 {}", made.sha256);
    for f in &made.files {
        println!("  wrote {f}");
    }
    match (&made.ca_key, made.ca_key_created) {
        (Some(uri), Some(created)) => println!(
            "  The CA key is in the token ({uri}), {}; it is not in any file. \
             Signing commands ask for the PIN (--pin-file, DEVTLS_PKCS11_PIN or a prompt).",
            if created {
                "made there now, non-extractable"
            } else {
                "the key that was already there"
            }
        ),
        _ => println!(
            "  {} is the CA's private key (0600): keep it here and back it up offline.",
            dir.join(names::CA_KEY).display()
        ),
    }
    if fleet.db().backend() != "sqlite" {
        println!(
            "  The inventory is in the database. Another issuer joins with a copy of {}, {} \
             and {} in its fleet folder and the same --db (no `fleet init`).",
            names::CA_DER,
            names::CA_PEM,
            key_file
        );
    }
    println!();
    output::heading("Next:");
    println!(
        "devtls fleet issue --dir {} --count 10 --prefix cam-",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The renewal URL for this run: `--renew-url` (checked, then remembered
/// in the fleet), else the one the fleet remembers, else none.
fn renewal(fleet: &Fleet, given: Option<&str>, role: Role) -> anyhow::Result<Option<RenewUrl>> {
    let url = match given {
        Some(text) => {
            let url = RenewUrl::parse(text).context("--renew-url")?;
            if !device_files::role_can_renew(role) {
                bail!(
                    "--renew-url: a device renews by presenting its certificate as a TLS client, \
                     which a --role server certificate cannot; use --role both"
                );
            }
            device_files::store_url(fleet, &url)?;
            Some(url)
        }
        None => device_files::stored_url(fleet)?,
    };
    Ok(url.filter(|_| device_files::role_can_renew(role)))
}

/// The boot.py each device gets: the guide's MicroPython lines for its role,
/// loading its own files and the fleet CA as the one anchor. A renewing
/// device first runs renew.py and loads the pair `renew.pair()` names; with
/// `rom`, the files are read from /rom (read-only, so renewed ones come
/// from the writable file system).
fn boot_py(server_host: String, port: u16, renew: bool, rom: bool) -> BootPy {
    Arc::new(move |role: Role| {
        let (cert, key) = issue::device_file_names(role);
        let prefix = if rom { device_files::ROM_PREFIX } else { "" };
        let (cert, key, anchor) = (
            format!("{prefix}{cert}"),
            format!("{prefix}{key}"),
            format!("{prefix}{}", names::CA_DER),
        );
        let files = DeviceFiles {
            cert: Some(&cert),
            key: Some(&key),
            anchor: Some(&anchor),
        };
        let head = "# devtls fleet: this device's identity; the fleet CA is the one anchor.\n";
        if renew && device_files::role_can_renew(role) {
            let body = match role {
                Role::Client => snippets::client_with_pair_vars(&files, &server_host, port),
                _ => snippets::server_with_pair_vars(&files, port),
            };
            return format!("{head}{}{body}", device_files::boot_prelude(rom));
        }
        let body = match role {
            Role::Client => snippets::client(&files, &server_host, port),
            _ => snippets::server(&files, port),
        };
        format!("{head}{body}")
    })
}

/// What the device side needs said: where renewals go, how the main loop
/// keeps renewing, and that a ROMFS image is read-only.
fn print_device_side(fleet: &Fleet, report: &issue::Report, opts: &IssueOptions) {
    let Some(first) = &report.first else { return };
    let dir = fleet.device_dir(first);
    if let Some(url) = &opts.renew {
        println!();
        output::heading(&format!("The devices renew their certificates at {url}:"));
        println!(
            "  boot.py runs renew.py at every boot. Serve renewals with:\n  devtls fleet serve --dir {} --name {} --port {}",
            fleet.dir().display(),
            url.host,
            url.port
        );
        println!("  Call renew.tick() from the main loop (main.py) to check once a day.");
    }
    if opts.romfs {
        println!();
        output::heading("ROMFS images (devices/ID/ID.romfs; 0600, they hold the key):");
        println!(
            "mpremote romfs deploy {}",
            dir.join(device_files::romfs_name(first)).display()
        );
        println!("mpremote cp {} :", dir.join(names::BOOT_PY).display());
        println!(
            "  ROMFS is read-only: {}",
            if opts.renew.is_some() {
                "renewed certificates are written to the writable file system (where boot.py runs), and boot.py prefers them when they load."
            } else {
                "these credentials can only be replaced by deploying a new image (add --renew-url to renew them on the writable file system)."
            }
        );
    }
}

/// Progress for long work on stderr: drawn only on a terminal (indicatif
/// hides it otherwise), never with --quiet or for fewer than 100 `unit`s.
pub(super) fn progress_bar(len: Option<u64>, quiet: bool, unit: &str) -> ProgressBar {
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
    let mut fleet = open_signing(&a.dir, &a.token)?;
    let renew = renewal(&fleet, a.renew_url.as_deref(), a.role.into())?;
    let mut opts = IssueOptions::new(
        a.days,
        a.role.into(),
        a.key,
        boot_py(a.server_host.clone(), a.port, renew.is_some(), a.romfs),
    );
    if let Some(t) = a.threads {
        opts.threads = t.max(1);
    }
    opts.reissue = a.reissue;
    opts.romfs = a.romfs;
    opts.renew = renew;
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
        print_issued(&fleet, &report, a.role.into(), "issued", !a.romfs);
        print_device_side(&fleet, &report, &opts);
    }
    finish(report.failed_count)
}

/// `copy`: print the `mpremote cp` lines for a device's folder (not for a
/// ROMFS device, whose files go in its image: [`print_device_side`]).
fn print_issued(fleet: &Fleet, report: &issue::Report, role: Role, verb: &str, copy: bool) {
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
    if let Some(first) = report.first.as_ref().filter(|_| copy) {
        let dir = fleet.device_dir(first);
        let (cert, key) = issue::device_file_names(role);
        println!();
        output::heading(&format!(
            "Copy a device's folder to it, e.g. {}:",
            dir.display()
        ));
        let mut files = vec![cert, key, names::CA_DER.into(), names::BOOT_PY.into()];
        if dir.join(device_files::RENEW_PY).exists() {
            files.push(device_files::RENEW_PY.into());
        }
        print!(
            "{}",
            snippets::copy_commands(
                &files
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

fn date_time(t: time::OffsetDateTime) -> String {
    format!(
        "{} {:02}:{:02}Z",
        t.date(),
        t.time().hour(),
        t.time().minute()
    )
}

fn rotate(a: RotateArgs) -> anyhow::Result<ExitCode> {
    let mut fleet = open_signing(&a.dir, &a.token)?;
    // Rotated devices keep renewing where the fleet says (client role:
    // boot.py is rendered per row's role, renew.py for those that can).
    let mut opts = IssueOptions::new(
        a.days,
        Role::Client,
        KeyType::P256,
        boot_py(
            a.server_host.clone(),
            a.port,
            device_files::stored_url(&fleet)?.is_some(),
            false,
        ),
    );
    opts.renew = device_files::stored_url(&fleet)?;
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

//! `devtls doctor`: the device's verdict on a server (or on its own files),
//! in the words the device prints, with the fix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use devtls_net::doctor::{self, on_device, NamedFile};
use devtls_net::examine::Server;
use devtls_pki::rules::files::DeviceFile;
use devtls_pki::sniff::Sniffed;
use time::OffsetDateTime;

use super::anchor::target;
use crate::input;
use crate::output;

// `devtls doctor`: described on `Command::Doctor` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "devtls doctor <TARGET> --ca <FILE> [OPTIONS]   a server, as the device sees it
       devtls doctor --files <DIR> [OPTIONS]          the device's own files, offline"
)]
#[command(after_help = "Examples:
  devtls doctor api.example.com --ca ca.der
  devtls doctor api.example.com --ca ca.der --device-time 2000-01-01   # clock not set
  devtls doctor 192.168.1.50:8443 --ca server.der --hostname openmv
  devtls doctor broker.local:8883 --ca ca.der --cert client.der --key client.key.der
  devtls doctor --files ./device-files
  devtls doctor 127.0.0.1:8443 --ca ca.der --hostname localhost --micropython micropython
  devtls doctor 192.168.1.20:8443 --ca ca.der --hostname cam.local --mpremote /dev/ttyACM0
  devtls doctor 192.168.1.20:8443 --ca ca.der --mpremote --rom          # files already in /rom
  devtls doctor 192.168.1.20:8443 --ca ca.der --mpremote --print-script # the script it runs

On the device (--on-device, --micropython, --mpremote): after the prediction,
doctor makes the same handshake on a real MicroPython (the unix port in a
temporary folder, or a board over mpremote, which must reach the server),
prints prediction and outcome side by side and says loudly when they differ.

Exit status: 0 the device would succeed, 1 it would fail, 2 doctor could not
find out (server unreachable, no answer within --timeout, unusable arguments,
MicroPython not run). On the device: 0 or 1 as the device's handshake ended.")]
pub struct Args {
    /// The server, HOST or HOST:PORT (port 443 by default).
    #[arg(required_unless_present = "files")]
    target: Option<String>,
    /// The device's trust anchor (the DER file it loads with load_verify_locations).
    #[arg(long, value_name = "FILE", required_unless_present = "files")]
    ca: Option<PathBuf>,
    /// The server_hostname the device passes [default: HOST].
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// The device passes no server_hostname at all.
    #[arg(long, conflicts_with = "hostname")]
    no_hostname: bool,
    /// The device's clock: now, unset (after power-up), 2000-01-01, or 2027-03-01T12:00:00Z.
    #[arg(long, value_name = "TIME", default_value = "now")]
    device_time: String,
    /// Device profile.
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// The device's own certificate (DER), for servers that demand one (mTLS).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The device's own private key (DER).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The server speaks DTLS (UDP).
    #[arg(long)]
    dtls: bool,
    /// Check a device's files offline instead of a server: its certificate, key and anchor.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["target", "ca"])]
    files: Option<PathBuf>,
    /// Seconds the whole check may take (connecting, the handshake, retries).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Print the verdict as JSON (on the device: the prediction and the outcome).
    #[arg(long)]
    json: bool,
    /// Then make the handshake on a real MicroPython (the unix port from PATH
    /// unless --micropython or --mpremote says where).
    #[arg(long, conflicts_with_all = ["files", "dtls"])]
    on_device: bool,
    /// On the device: MicroPython's unix port, this program.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["files", "dtls", "mpremote"])]
    micropython: Option<PathBuf>,
    /// On the device: a board over mpremote (DEVICE as `mpremote connect` takes it; default auto).
    #[arg(long, value_name = "DEVICE", num_args = 0..=1, conflicts_with_all = ["files", "dtls"])]
    mpremote: Option<Option<String>>,
    /// With --mpremote: the files are already in /rom on the board (nothing is copied).
    #[arg(long, requires = "mpremote")]
    rom: bool,
    /// Print the script that runs on the device, and nothing else.
    #[arg(long, conflicts_with_all = ["files", "dtls", "json"])]
    print_script: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    let time = doctor::device_time(&args.device_time, profile, OffsetDateTime::now_utc())?;
    if let Some(dir) = &args.files {
        return files(dir, profile, time, args.json);
    }
    let (Some(text), Some(ca)) = (&args.target, &args.ca) else {
        bail!("give HOST[:PORT] and --ca FILE, or --files DIR");
    };
    let t = target(text, 443, None, args.timeout)?;
    let hostname: Option<String> = if args.no_hostname {
        None
    } else {
        Some(args.hostname.clone().unwrap_or_else(|| t.host.clone()))
    };
    let named = |p: &Path| -> anyhow::Result<(String, Sniffed)> {
        Ok((p.display().to_string(), input::sniff(p)?))
    };
    let anchor = named(ca)?;
    let identity = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some((named(c)?, named(k)?)),
        _ => None,
    };
    let plan = on_device::Plan {
        host: t.host.clone(),
        port: t.port,
        hostname: hostname.clone(),
        ca: on_device::DeviceFile::new(ca),
        identity: match (&args.cert, &args.key) {
            (Some(c), Some(k)) => {
                Some((on_device::DeviceFile::new(c), on_device::DeviceFile::new(k)))
            }
            _ => None,
        },
        timeout: args.timeout,
        rom: args.rom,
    };
    if args.print_script {
        print!("{}", on_device::script(&plan));
        return Ok(ExitCode::SUCCESS);
    }
    let report = doctor::doctor(&doctor::Request {
        server: Server {
            host: &t.host,
            port: t.port,
            dtls: args.dtls,
            profile,
            hostname: hostname.as_deref(),
            time,
            timeout: t.timeout,
        },
        anchor: file(&anchor),
        identity: identity.as_ref().map(|(c, k)| (file(c), file(k))),
    })?;
    let Some(target) = device_target(&args) else {
        if args.json {
            output::json(&report)?;
        } else {
            output::lines(&doctor::render(&report));
        }
        return Ok(exit(report.works));
    };
    if !args.json {
        output::lines(&doctor::render(&report));
    }
    if let Some(w) = on_device::warning(&target, &plan) {
        output::warn(&w);
    }
    // MicroPython's start-up, the files copied to a board, then the handshake.
    let limit = std::time::Duration::from_secs(args.timeout.saturating_add(30));
    let outcome = on_device::run(&target, &plan, limit)?;
    let compared = on_device::compare(&report, outcome, &target);
    if args.json {
        output::json(&serde_json::json!({ "prediction": report, "on_device": compared }))?;
    } else {
        output::lines(&on_device::render(&compared));
    }
    Ok(exit(compared.outcome.works))
}

/// Where `--on-device`, `--micropython` or `--mpremote` runs the handshake.
fn device_target(args: &Args) -> Option<on_device::Target> {
    if let Some(device) = &args.mpremote {
        return Some(on_device::Target::Mpremote {
            program: "mpremote".into(),
            device: device.clone(),
        });
    }
    match (&args.micropython, args.on_device) {
        (Some(p), _) => Some(on_device::Target::Unix(p.clone())),
        (None, true) => Some(on_device::Target::Unix("micropython".into())),
        (None, false) => None,
    }
}

fn file((name, sniffed): &(String, Sniffed)) -> NamedFile<'_> {
    NamedFile { name, sniffed }
}

fn exit(works: bool) -> ExitCode {
    if works {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `--files DIR`: the device's certificate, key and anchor, loaded as the device loads them.
fn files(
    dir: &Path,
    profile: &'static devtls_pki::profile::Profile,
    time: OffsetDateTime,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        bail!(
            "{}: not a folder; give the folder holding the device's files",
            dir.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot be listed", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Files, and links that lead nowhere (reported as unreadable); not
        // folders or pipes, which the device never loads.
        .filter(|p| p.is_file() || (p.is_symlink() && !p.exists()))
        .collect();
    entries.sort();
    let found: Vec<DeviceFile> = entries
        .iter()
        .map(|path| DeviceFile {
            name: path.display().to_string(),
            bytes: crate::input::read_maybe_empty(path).map_err(|e| e.to_string()),
        })
        .collect();
    let report = doctor::files(&dir.display().to_string(), &found, profile, time)?;
    if json {
        output::json(&report)?;
    } else {
        output::lines(&doctor::render_files(&report));
    }
    Ok(exit(report.verdict.works))
}

//! `devtls doctor`: the device's verdict on a server (or on its own files),
//! in the words the device prints, with the fix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use devtls_net::doctor::{self, NamedFile};
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

Exit status: 0 the device would succeed, 1 it would fail, 2 doctor could not
find out (server unreachable, no answer within --timeout, unusable arguments).")]
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
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
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
    if args.json {
        output::json(&report)?;
    } else {
        output::lines(&doctor::render(&report));
    }
    Ok(exit(report.works))
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

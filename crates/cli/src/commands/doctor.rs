//! `devtls doctor`: the device's verdict on a server (or on its own files),
//! in the words the device prints, with the fix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anstream::println;
use anyhow::{bail, Context};
use devtls_net::examine;
use devtls_net::hello::device::Identity;
use devtls_pki::chain::Cert;
use devtls_pki::device_error::{self, verify_text};
use devtls_pki::inspect;
use devtls_pki::profile::Profile;
use devtls_pki::rules::{self, files::DeviceFile, files::FilesVerdict};
use devtls_pki::sniff::{Encoding, Kind};
use devtls_pki::verify::{self, Failure, Verdict};
use serde::Serialize;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::anchor::{fmt_time, print_chain, target};
use crate::input;
use crate::output;

// `devtls doctor`: described on `Command::Doctor` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
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

#[derive(Serialize)]
struct Report<'a> {
    target: String,
    profile: &'a str,
    hostname: Option<&'a str>,
    #[serde(serialize_with = "rfc3339")]
    device_time: OffsetDateTime,
    anchor: Option<String>,
    handshake: &'a examine::Handshake,
    /// What a wider hello found the server needs, when it refused the device's.
    needs: Option<&'a devtls_net::diagnose::Needs>,
    presented: Vec<Cert>,
    works: bool,
    failures: Vec<Failure>,
    path: Vec<usize>,
    pinned_leaf: bool,
    notes: Vec<String>,
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&inspect::format_time(*t))
}

/// Parses `--device-time`.
fn device_time(text: &str, profile: &Profile) -> anyhow::Result<OffsetDateTime> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(OffsetDateTime::now_utc());
    }
    if t.eq_ignore_ascii_case("unset") {
        // The RTC starts at the port's epoch after power-up until ntptime.settime().
        if !profile.clock_starts_unset {
            return Ok(OffsetDateTime::now_utc());
        }
        let day = time::Date::from_calendar_date(profile.unset_clock_year, time::Month::January, 1)
            .context("the profile's unset clock year is out of range")?;
        return Ok(day.midnight().assume_utc());
    }
    if let Ok(v) = OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        return Ok(v);
    }
    if let Ok(v) = PrimitiveDateTime::parse(
        t,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    ) {
        return Ok(v.assume_utc());
    }
    if let Ok(v) = PrimitiveDateTime::parse(
        t,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ) {
        return Ok(v.assume_utc());
    }
    if let Ok(d) = time::Date::parse(t, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    bail!("--device-time '{text}': use now, unset, 2000-01-01 or 2027-03-01T12:00:00Z")
}

/// A failure the device reports for its own files, in its words.
fn file_failure(
    kind: verify::Kind,
    says: String,
    error: Option<device_error::DeviceError>,
    subject: &Path,
    why: String,
    fix: String,
) -> Failure {
    Failure::about_file(kind, says, error, &subject.display().to_string(), why, fix)
}

/// What the device does when it loads `path` as its anchor: the DER
/// certificate it would trust, or the failure it would print.
fn load_anchor(path: &Path, notes: &mut Vec<String>) -> anyhow::Result<Result<Vec<u8>, Failure>> {
    let sniffed = input::sniff(path)?;
    let Some(first) = sniffed.items.first() else {
        bail!("{}: nothing in it", path.display());
    };
    if first.kind != Kind::Certificate {
        bail!(
            "{}: holds a {}, not a certificate; --ca is the anchor the device trusts (e.g. from devtls anchor)",
            path.display(),
            first.kind.describe()
        );
    }
    if first.encoding == Encoding::Pem {
        return Ok(Err(file_failure(
            verify::Kind::AnchorUnloadable,
            format!("ValueError: {}", verify_text::INVALID_CERT),
            Some(device_error::INVALID_CERT_PEM),
            path,
            "the anchor is PEM; the device reads DER only".into(),
            format!(
                "convert it: openssl x509 -in {} -outform DER -out ca.der",
                path.display()
            ),
        )));
    }
    if sniffed.concatenated_der {
        notes.push(format!(
            "{} holds {} DER certificates back to back: the device loads only the first ({})",
            path.display(),
            sniffed.items.len(),
            Cert::parse(&first.der)
                .map(|c| c.subject().to_string())
                .unwrap_or_default()
        ));
    }
    Ok(Ok(first.der.clone()))
}

/// Reads the device's own certificate and key for mTLS, as the device would.
fn load_identity(
    cert: &Path,
    key: &Path,
    profile: &Profile,
) -> anyhow::Result<Result<Identity, Failure>> {
    let c = input::sniff(cert)?;
    let k = input::sniff(key)?;
    let (Some(ci), Some(ki)) = (c.certificates().next(), k.items.first()) else {
        bail!(
            "{} must hold a certificate and {} a private key",
            cert.display(),
            key.display()
        );
    };
    if ci.encoding == Encoding::Pem {
        return Ok(Err(file_failure(
            verify::Kind::AnchorUnloadable,
            format!("ValueError: {}", verify_text::INVALID_CERT),
            Some(device_error::INVALID_CERT_PEM),
            cert,
            "the device's certificate is PEM; the device reads DER only".into(),
            format!(
                "convert it: openssl x509 -in {} -outform DER -out client.der",
                cert.display()
            ),
        )));
    }
    if let Err(refusal) = rules::keys::load_key_item(profile, ki) {
        return Ok(Err(file_failure(
            verify::Kind::KeyUnloadable,
            refusal.device_says(),
            None,
            key,
            refusal.why(),
            refusal.fix(&key.display().to_string()),
        )));
    }
    Ok(Ok(Identity {
        cert: ci.der.clone(),
        key: ki.der.clone(),
    }))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    let time = device_time(&args.device_time, profile)?;
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
    let mut notes = Vec::new();
    let anchor = load_anchor(ca, &mut notes)?;
    let identity = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some(load_identity(c, k, profile)?),
        _ => None,
    };
    let mut failures: Vec<Failure> = Vec::new();
    if let Err(f) = &anchor {
        failures.push(f.clone());
    }
    let id = match identity {
        Some(Err(f)) => {
            failures.push(f);
            None
        }
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let exam = examine::examine(&examine::Request {
        host: &t.host,
        port: t.port,
        dtls: args.dtls,
        profile,
        anchor: anchor.as_ref().ok().map(Vec::as_slice),
        hostname: hostname.as_deref(),
        time,
        identity: id.as_ref(),
        timeout: t.timeout,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    failures.extend(exam.failures.iter().cloned());
    notes.extend(exam.notes.iter().cloned());
    let works = failures.is_empty() && exam.works;
    let presented: Vec<Cert> = exam
        .chain
        .iter()
        .filter_map(|d| Cert::parse(d).ok())
        .collect();
    let (path, pinned_leaf) = exam
        .verdict
        .as_ref()
        .map_or((Vec::new(), false), |v| (v.path.clone(), v.pinned_leaf));
    if args.json {
        output::json(&Report {
            target: exam.target.clone(),
            profile: profile.name,
            hostname: hostname.as_deref(),
            device_time: time,
            anchor: anchor
                .as_ref()
                .ok()
                .and_then(|d| Cert::parse(d).ok())
                .map(|c| c.subject().to_string()),
            handshake: &exam.handshake,
            needs: exam.needs.as_ref(),
            presented,
            works,
            failures,
            path,
            pinned_leaf,
            notes,
        })?;
    } else {
        if !presented.is_empty() {
            print_chain(
                &format!("Certificate chain ({})", exam.target),
                &presented,
                0,
            );
            println!();
        }
        output::heading("The device");
        println!("  profile          {}", profile.name);
        match &anchor {
            Ok(der) => println!(
                "  anchor           {} ({})",
                ca.display(),
                Cert::parse(der)
                    .map(|c| c.subject().to_string())
                    .unwrap_or_default()
            ),
            Err(_) => println!("  anchor           {} (does not load)", ca.display()),
        }
        println!(
            "  server_hostname  {}",
            hostname
                .as_deref()
                .map_or("(not passed)".to_string(), |h| format!("\"{h}\""))
        );
        println!("  clock            {}", fmt_time(time));
        let h = &exam.handshake;
        if let (Some(v), Some(s)) = (&h.version, &h.suite) {
            let kx = match (&h.group, &h.signature_algorithm) {
                (Some(g), Some(sa)) => format!(", {g}, signed {sa}"),
                _ => String::new(),
            };
            println!("  handshake        {v}, {s}{kx}");
        }
        if h.client_cert_requested {
            println!("  client cert      requested by the server");
        }
        println!();
        for n in &notes {
            output::warn(n);
        }
        let verdict = Verdict {
            works,
            failures: Vec::new(),
            path,
            pinned_leaf,
        };
        print_verdict(works, &failures, &verdict);
    }
    Ok(if works {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_verdict(works: bool, failures: &[Failure], verdict: &Verdict) {
    if works {
        let path: Vec<String> = verdict.path.iter().map(|i| i.to_string()).collect();
        output::ok(&format!(
            "the device would connect: {}",
            if verdict.pinned_leaf {
                "the anchor is the server's own self-signed certificate".to_string()
            } else {
                format!("path {} -> anchor", path.join(" -> "))
            }
        ));
        return;
    }
    output::heading("✗ the device would fail");
    for (i, f) in failures.iter().enumerate() {
        println!("  the device says  {}", f.device_says);
        if let Some(e) = f.error {
            println!("  mbedTLS          {} {} ({})", e.code, e.hex(), e.name);
        }
        println!("  why              {}", f.why);
        println!("  fix              {}", f.fix);
        if i + 1 < failures.len() {
            println!();
        }
    }
}

#[derive(Serialize)]
struct FilesReport<'a> {
    dir: String,
    profile: &'static str,
    #[serde(flatten)]
    verdict: &'a FilesVerdict,
}

/// `--files DIR`: the device's certificate, key and anchor, loaded as the device loads them.
fn files(
    dir: &Path,
    profile: &'static Profile,
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
    let verdict = rules::files::check(&found, profile, time);
    if verdict.files.is_empty() {
        bail!("{}: no certificate or key files in it", dir.display());
    }
    if json {
        output::json(&FilesReport {
            dir: dir.display().to_string(),
            profile: profile.name,
            verdict: &verdict,
        })?;
    } else {
        output::heading(&format!(
            "Device files in {} ({} profile, clock {})",
            dir.display(),
            profile.name,
            fmt_time(time)
        ));
        for r in &verdict.files {
            println!(
                "  {:<28} {}{}",
                r.file,
                r.role.words(),
                r.subject
                    .as_ref()
                    .map_or(String::new(), |s| format!(" ({s})"))
            );
        }
        println!();
        for n in &verdict.notes {
            output::warn(n);
        }
        if verdict.works {
            output::ok("the device loads these files");
        } else {
            print_verdict(
                false,
                &verdict.failures,
                &Verdict {
                    works: false,
                    failures: Vec::new(),
                    path: Vec::new(),
                    pinned_leaf: false,
                },
            );
        }
    }
    Ok(if verdict.works {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! `devtls quickstart`: the device guide on loopback in one go.
//!
//! Makes the guide's server and client files, then runs the guide's
//! exchanges in-process against a real server on 127.0.0.1 (the `net`
//! crate's, restricted to the device profile): a verified client, mutual
//! TLS, the same server refusing a client without a certificate, and DTLS
//! with its cookie. The table reports what each step really did; a step that
//! could not be run says so and never counts as working.

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anstream::println;
use anyhow::Context as _;
use comfy_table::{presets, Cell, Color, ContentArrangement, Table};
use devtls_pki::profile::{self, Profile};
use serde::Serialize;

use crate::output;
use crate::snippets::{self, DeviceFiles};

mod exchanges;
mod folder;

use exchanges::exchanges;
use folder::{file_steps, folder, make_files, reused, FilesFrom, Made};

// `devtls quickstart`: described on `Command::Quickstart` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls quickstart                 # again: reuses its files, or picks devtls-quickstart-2
  devtls quickstart --out /tmp/try --force
  devtls quickstart --json

Run again, quickstart reuses the files of an earlier run when they are its
own, still valid and lint-clean (keys are never overwritten without --force);
when the folder holds anything else it leaves it alone and writes into a
fresh one (devtls-quickstart-2, ...), or, with --out, stops and says why.")]
pub struct Args {
    /// Folder for the files (created if missing) [default: devtls-quickstart].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Make new files, overwriting those left by an earlier run.
    #[arg(long)]
    force: bool,
    /// Print the outcome as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The device's name in the client certificate.
const DEVICE_CN: &str = "device-01";
/// What the device sends, as in the guide.
const HELLO: &[u8] = b"hello\n";
/// Bound on every exchange and on waiting for the server's report of it.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The DTLS row's name.
const DTLS_STEP: &str = "DTLS with cookie";
/// The port the printed commands use, as in the guide.
const GUIDE_PORT: u16 = 8443;
/// Where the files go without --out.
const DEFAULT_OUT: &str = "devtls-quickstart";

mod reuse;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    Failed,
    NotRun,
}

/// What an exchange really did, seen from both ends.
#[derive(Debug, Default, Serialize)]
struct Seen {
    version: String,
    cipher_suite: String,
    /// What the client got back.
    reply: String,
    /// What the server got from the client.
    server_received: String,
    /// SHA-256 of the certificate the client was shown (and verified).
    server_cert_sha256: Option<String>,
    /// SHA-256 of the client certificate the server verified (mTLS).
    client_cert_sha256: Option<String>,
}

#[derive(Debug, Serialize)]
struct Step {
    step: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    seen: Option<Seen>,
}

impl Step {
    fn ok(step: &'static str, detail: String) -> Self {
        Step {
            step,
            status: Status::Ok,
            detail,
            seen: None,
        }
    }

    fn failed(step: &'static str, detail: String) -> Self {
        Step {
            step,
            status: Status::Failed,
            detail,
            seen: None,
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    out: String,
    profile: &'static str,
    files_from: FilesFrom,
    /// What quickstart did with an earlier run's files, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    files: Vec<String>,
    steps: &'a [Step],
    device: DeviceLines,
}

#[derive(Serialize)]
struct DeviceLines {
    /// The host name the device checks (an address of this PC, or localhost).
    host: String,
    copy: String,
    pc_server: String,
    micropython: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = profile::DEFAULT;
    let lan = lan_address();
    let (out, found, note) = folder(&args, lan, profile)?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create the folder", out.display()))?;
    let made = match found {
        Some(earlier) => reused(&out, *earlier),
        None => make_files(&out, args.force, lan, profile)?,
    };
    let mut steps = file_steps(&made);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    steps.extend(runtime.block_on(exchanges(&made, profile)));

    let ok = !steps.iter().any(|s| s.status == Status::Failed);
    let host = lan.map_or_else(|| "localhost".to_string(), |ip| ip.to_string());
    let device = device_lines(&out, &host);
    if args.json {
        output::json(&Report {
            ok,
            out: out.display().to_string(),
            profile: profile.name,
            files_from: made.from,
            note,
            files: made.written.clone(),
            steps: &steps,
            device,
        })?;
    } else {
        if let Some(note) = &note {
            match made.from {
                FilesFrom::Reused => output::ok(note),
                FilesFrom::New => output::warn(note),
            }
        }
        print_human(&out, &steps, &made, &device, lan.is_some(), profile);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// This PC's address on its outgoing interface, so the certificate also
/// names the address a device on the LAN uses. Connecting a UDP socket only
/// picks the route: nothing is sent.
fn lan_address() -> Option<IpAddr> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?; // TEST-NET-1 (RFC 5737): any routable address would do
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn device_lines(out: &Path, host: &str) -> DeviceLines {
    let path = |f: &str| out.join(f).display().to_string();
    let files = DeviceFiles {
        cert: Some("client.der"),
        key: Some("client.key.der"),
        anchor: Some("server.der"),
    };
    DeviceLines {
        host: host.to_string(),
        copy: snippets::copy_commands(&[
            path("client.der"),
            path("client.key.der"),
            path("server.der"),
        ]),
        pc_server: format!(
            "devtls serve --cert {} --key {} --ca {} --bind 0.0.0.0 --port {GUIDE_PORT}",
            path("server.der"),
            path("server.key.der"),
            path("client.der")
        ),
        micropython: snippets::client(&files, host, GUIDE_PORT),
    }
}

fn print_human(
    out: &Path,
    steps: &[Step],
    made: &Made,
    device: &DeviceLines,
    lan: bool,
    profile: &Profile,
) {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["step", "result", "what happened"]);
    // Piped output has no terminal width to wrap to.
    if table.width().is_none() {
        table.set_width(100);
    }
    for step in steps {
        let (word, color) = match step.status {
            Status::Ok => ("ok", Color::Green),
            Status::Failed => ("FAILED", Color::Red),
            Status::NotRun => ("not run", Color::Yellow),
        };
        table.add_row([
            Cell::new(step.step),
            Cell::new(word).fg(color),
            Cell::new(&step.detail),
        ]);
    }
    output::heading(&format!(
        "The device guide on loopback, as the {} device (files in {}):",
        profile.name,
        out.display()
    ));
    println!("{table}");
    let verb = match made.from {
        FilesFrom::New => "wrote",
        FilesFrom::Reused => "reused",
    };
    for file in &made.written {
        println!("  {verb} {file}");
    }
    println!();
    output::heading("Next, with the real device. On this PC, the server:");
    println!("{}", device.pc_server);
    println!();
    output::heading("Copy to the device (DER; the device cannot read PEM):");
    print!("{}", device.copy);
    println!();
    output::heading(&format!(
        "On the device, connect with mutual TLS and check the name {}:",
        device.host
    ));
    print!("{}", device.micropython);
    if !lan {
        println!();
        output::warn(
            "no LAN address found: the certificate names only localhost; for a device, \
             make one with `devtls new server --ip <this PC's address>`",
        );
    }
}

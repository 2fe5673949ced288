//! `devtls serve`: the guide's TLS server, answering every client with `hello`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anstream::println;
use devtls_net::config::{self, Identity, ServerSettings};
use devtls_net::diagnose::Reason;
use devtls_net::tls::server::{self, ClientReport, Outcome};
use devtls_pki::profile::Profile;

use crate::input;

// `devtls serve`: described on `Command::Serve` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls serve --cert server.der --key server.key.der
  devtls serve --cert server.der --key server.key.der --ca client.der      # mutual TLS
  devtls serve --cert server.der --key server.key.der --dtls --port 8444   # DTLS, cookies
  devtls serve --cert server.crt --key server.key --bind 0.0.0.0 --port 8443
  devtls serve --cert server.der --key server.key.der --port 0 --count 1 --json
  devtls serve --cert server.der --key server.key.der --ca fleet-ca.der --crl fleet.crl")]
pub struct Args {
    /// The server's certificate (DER or PEM; PEM may hold the chain).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The server's private key (DER or PEM, unencrypted).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Demand a client certificate signed by this CA or equal to this certificate (mutual TLS).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Refuse client certificates revoked in this CRL (needs --ca).
    #[arg(long, value_name = "FILE", requires = "ca")]
    crl: Option<PathBuf>,
    /// TCP port (0: any free port, printed on the first line).
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Address to listen on (0.0.0.0 to let a device on the network in).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Device profile the server behaves like (`modern` for TLS 1.3 and PC clients).
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// Exit after this many clients (see above).
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    /// What to answer every client.
    #[arg(long, value_name = "TEXT", default_value = "hello\n")]
    reply: String,
    /// Seconds a client may take for its handshake, and then to send its message.
    #[arg(long, value_name = "S", default_value_t = 10)]
    timeout: u64,
    /// Serve DTLS 1.2 over UDP (HelloVerifyRequest cookie bound to the client's address).
    #[arg(long)]
    dtls: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    let settings = settings(&args, profile)?;
    let addr = SocketAddr::new(args.bind, args.port);
    if args.dtls {
        serve_dtls(addr, settings, &args)
    } else {
        serve_tls(addr, settings, &args)
    }
}

fn serve_dtls(addr: SocketAddr, settings: ServerSettings, args: &Args) -> anyhow::Result<ExitCode> {
    let mut server = devtls_net::dtls::Server::bind(addr, settings)?;
    announce(server.local_addr()?, args.json, args);
    if !args.json {
        let hvr = devtls_pki::device_error::HELLO_VERIFY_REQUIRED;
        anstream::eprintln!(
            "DTLS 1.2 on UDP: each client's first ClientHello gets a cookie to send back (a device \
             serving DTLS does the same: its first wrap_socket raises {}, then it wraps again)",
            hvr.as_oserror()
        );
    }
    let mut failed = 0usize;
    server.serve(args.count, None, |report| {
        if report.outcome.failed() {
            failed += 1;
        }
        print_report(report, args.json);
    })?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads the files into server settings; any unusable file is exit 2 naming it.
fn settings(args: &Args, profile: &'static Profile) -> anyhow::Result<ServerSettings> {
    let cert = input::read(&args.cert)?;
    let key = input::read(&args.key)?;
    let identity = Identity::from_bytes(&cert, &key, profile)
        .map_err(|e| super::connect::identity_error(e, &cert, &args.cert, &args.key))?;
    let mut settings = ServerSettings::new(identity);
    settings.profile = profile;
    settings.handshake_timeout = Duration::from_secs(args.timeout.max(1));
    settings.reply = args.reply.clone().into_bytes();
    if let Some(ca) = &args.ca {
        let certs = config::certificates(&input::read(ca)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
        settings.client_ca = Some(certs);
    }
    if let Some(crl) = &args.crl {
        settings.crls = config::crls(&input::read(crl)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", crl.display()))?;
    }
    Ok(settings)
}

fn serve_tls(addr: SocketAddr, settings: ServerSettings, args: &Args) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let mut failed = 0usize;
    server::serve_blocking(
        addr,
        settings,
        args.count,
        |local| announce(local, json, args),
        |report| {
            if report.outcome.failed() {
                failed += 1;
            }
            print_report(report, json);
        },
    )?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The first line: where the server listens (tests and scripts parse it).
fn announce(local: SocketAddr, json: bool, args: &Args) {
    if json {
        println!(
            "{}",
            serde_json::json!({"listening": local.to_string(), "port": local.port()})
        );
    } else {
        println!("listening on {local}");
        if args.ca.is_some() {
            // On stderr: stdout is one line per client after the first.
            anstream::eprintln!("mutual TLS: clients must present a certificate from --ca");
        }
    }
}

/// One line per client (more for a failure: the fix and the device's words).
pub fn print_report(report: &ClientReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
        return;
    }
    match &report.outcome {
        Outcome::Served(s) => {
            let client = s
                .client_chain
                .first()
                .map_or("no client certificate".to_string(), |c| {
                    format!("client {}", c.subject)
                });
            println!(
                "{}  {}  {}  {}  received {:?}",
                report.peer, s.version, s.cipher_suite, client, s.received
            );
        }
        Outcome::Failed(rejected) => {
            let d = &rejected.diagnosis;
            let client = rejected
                .client_chain
                .first()
                .map(|c| format!(" (client {})", c.subject))
                .unwrap_or_default();
            if d.reason == Reason::Probe {
                println!("{}  probe{client}: {}", report.peer, d.what);
                return;
            }
            println!("{}  failed{client}: {}", report.peer, d.what);
            println!("    fix: {}", d.fix);
            if let Some(device) = &d.device {
                println!(
                    "    device as server: {}  ({} {})",
                    device.printed.replace('\n', "\n      "),
                    device.hex,
                    device.name
                );
            }
        }
    }
}

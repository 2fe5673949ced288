//! `devtls connect`: the guide's TLS client, verifying like the device.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anstream::println;
use devtls_net::config::{self, Anchors, ClientSettings, Identity, Verification};
use devtls_net::diagnose::Diagnosis;
use devtls_net::report::CertSummary;
use devtls_net::tls::client::{self, HandshakeFailure, SessionInfo};
use devtls_pki::profile::Profile;
use serde::Serialize;

use crate::input;
use crate::output::{self, Exit};

// `devtls connect`: described on `Command::Connect` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls connect 127.0.0.1:8443 --ca server.der --hostname openmv
  devtls connect 192.168.1.50:8443 --ca server.der --cert client.der --key client.key.der
  devtls connect example.com:443                      # Mozilla roots, device profile
  devtls connect example.com:443 --profile modern --json
  devtls connect 127.0.0.1:8443 --insecure            # no verification: testing only
  devtls connect 127.0.0.1:8444 --dtls --ca server.der --hostname openmv")]
pub struct Args {
    /// The server, as HOST:PORT (IPv6: [ADDR]:PORT).
    #[arg(value_name = "HOST:PORT")]
    target: String,
    /// Trust anchor: the server's own certificate or its CA (DER or PEM).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Name to send as SNI and check in the certificate [default: HOST].
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Client certificate for mutual TLS (DER or PEM).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (DER or PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Device profile the client behaves like (`modern` for a PC client with TLS 1.3).
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// What to send once connected.
    #[arg(long, value_name = "TEXT", default_value = "hello\n")]
    send: String,
    /// Do not verify the server at all. Anyone in the middle could be the peer.
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// Speak DTLS 1.2 over UDP (answers the server's HelloVerifyRequest cookie).
    #[arg(long)]
    dtls: bool,
    /// Seconds allowed for connecting, the handshake, and the reply, each.
    #[arg(long, value_name = "S", default_value_t = 10)]
    timeout: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Completed<'a> {
    ok: bool,
    server_name: &'a str,
    #[serde(flatten)]
    info: &'a SessionInfo,
    sent: &'a str,
    reply: String,
}

#[derive(Serialize)]
struct Failed<'a> {
    ok: bool,
    target: &'a str,
    server_name: &'a str,
    #[serde(flatten)]
    diagnosis: &'a Diagnosis,
    chain: &'a [CertSummary],
    probe: &'a Option<devtls_net::diagnose::Probe>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    let settings = settings(&args, profile)?;
    if args.insecure {
        output::warn(
            "--insecure: the server's certificate is NOT verified. Anyone in the middle could be \
             the peer and read or change everything. Use it only to look at a server; never ship \
             a device with verification off (ctx.verify_mode = ssl.CERT_NONE).",
        );
    }
    let result = if args.dtls {
        devtls_net::dtls::exchange(&args.target, &settings, args.send.as_bytes())
    } else {
        client::exchange_blocking(&args.target, &settings, args.send.as_bytes())
    };
    match result {
        Ok((info, reply)) => {
            report_success(&args, &settings, &info, &reply)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(client::Error::Config(e)) => Err(anyhow::anyhow!("{e}")),
        Err(client::Error::Handshake(failure)) => {
            report_failure(&args, &settings, &failure)?;
            Err(Exit {
                code: 1,
                message: String::new(),
            }
            .into())
        }
    }
}

fn settings(args: &Args, profile: &'static Profile) -> anyhow::Result<ClientSettings> {
    let server_name = match &args.hostname {
        Some(name) => name.clone(),
        None => host_of(&args.target)?,
    };
    let anchors = match &args.ca {
        Some(path) => {
            let certs = read_certs(path)?;
            if certs.len() > 1 && profile.single_anchor() {
                output::warn(&format!(
                    "{} holds {} certificates; the {} device loads only the first as its \
                     anchor, devtls uses all of them",
                    path.display(),
                    certs.len(),
                    profile.name
                ));
            }
            Anchors::Given(certs)
        }
        None => Anchors::Mozilla,
    };
    let mut settings = ClientSettings::new(server_name, anchors);
    settings.profile = profile;
    settings.timeout = Duration::from_secs(args.timeout.max(1));
    if args.insecure {
        settings.verification = Verification::None;
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        let cert_bytes = input::read(cert)?;
        let key_bytes = input::read(key)?;
        let identity = Identity::from_bytes(&cert_bytes, &key_bytes, profile)
            .map_err(|e| identity_error(e, &cert_bytes, cert, key))?;
        settings.identity = Some(identity);
    }
    Ok(settings)
}

/// An identity error naming the file at fault (both when they do not match).
pub(crate) fn identity_error(
    e: config::ConfigError,
    cert_bytes: &[u8],
    cert: &Path,
    key: &Path,
) -> anyhow::Error {
    match e {
        config::ConfigError::Certificate(_) => anyhow::anyhow!("{}: {e}", cert.display()),
        config::ConfigError::Input(_) if config::certificates(cert_bytes).is_err() => {
            anyhow::anyhow!("{}: {e}", cert.display())
        }
        config::ConfigError::Input(_) => anyhow::anyhow!("{}: {e}", key.display()),
        config::ConfigError::Mismatch(_) => {
            anyhow::anyhow!("{} and {}: {e}", cert.display(), key.display())
        }
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    config::certificates(&input::read(path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The HOST of HOST:PORT (brackets of an IPv6 literal removed).
fn host_of(target: &str) -> anyhow::Result<String> {
    let bad = || {
        anyhow::anyhow!(
            "'{target}': give the server as HOST:PORT, e.g. 192.168.1.50:8443 or example.com:443"
        )
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok(host.to_string())
}

fn report_success(
    args: &Args,
    settings: &ClientSettings,
    info: &SessionInfo,
    reply: &[u8],
) -> anyhow::Result<()> {
    let reply = String::from_utf8_lossy(reply).into_owned();
    if args.json {
        return output::json(&Completed {
            ok: true,
            server_name: &settings.server_name,
            info,
            sent: &args.send,
            reply,
        });
    }
    let how = if info.verified {
        format!("verified for '{}'", settings.server_name)
    } else {
        "NOT verified (--insecure)".to_string()
    };
    output::ok(&format!(
        "connected to {} with {}, {}; {how}",
        info.peer, info.version, info.cipher_suite
    ));
    println!("sent:  {:?}", args.send);
    if reply.is_empty() {
        println!(
            "reply: nothing (the server closed, or sent nothing within {} s)",
            args.timeout
        );
    } else {
        println!("reply: {reply:?}");
    }
    print_chain(&info.chain);
    Ok(())
}

fn report_failure(
    args: &Args,
    settings: &ClientSettings,
    failure: &HandshakeFailure,
) -> anyhow::Result<()> {
    let d = &failure.diagnosis;
    if args.json {
        return output::json(&Failed {
            ok: false,
            target: &args.target,
            server_name: &settings.server_name,
            diagnosis: d,
            chain: &failure.chain,
            probe: &failure.probe,
        });
    }
    let red = anstyle::Style::new()
        .fg_color(Some(anstyle::AnsiColor::Red.into()))
        .bold();
    println!("{red}✗{red:#} {} failed: {}", args.target, d.what);
    println!("  fix:    {}", d.fix);
    match &d.device {
        Some(device) => println!(
            "  device: {}  ({} {})",
            // One line per verify flag, as the device prints them.
            device.printed.replace('\n', "\n          "),
            device.hex,
            device.name
        ),
        None => println!("  device: no mbedTLS error of its own for this case"),
    }
    if let Some(o) = d.device.as_ref().and_then(|w| w.outcomes) {
        println!("  which:  {}", o.decided_by);
    }
    println!("  reason: {}  ({})", reason_word(d), d.detail);
    if let Some(probe) = &failure.probe {
        let key = probe
            .leaf
            .as_ref()
            .map(|l| format!(", certificate key {}", l.key))
            .unwrap_or_default();
        println!(
            "  without device limits the server answers {}{key}",
            probe.version
        );
    }
    print_chain(&failure.chain);
    Ok(())
}

fn reason_word(d: &Diagnosis) -> String {
    serde_json::to_value(d.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn print_chain(chain: &[CertSummary]) {
    if chain.is_empty() {
        return;
    }
    println!("server chain:");
    for (n, cert) in chain.iter().enumerate() {
        println!("  {n} subject: {}", cert.subject);
        println!("    issuer:  {}", cert.issuer);
        println!("    valid:   {} to {}", cert.not_before, cert.not_after);
        if cert.names.is_empty() {
            println!("    names:   (no SAN: the device matches the CN)");
        } else {
            println!("    names:   {}", cert.names.join(", "));
        }
        println!("    key:     {}", cert.key);
    }
}

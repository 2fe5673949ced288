//! `devtls new server|client`: a self-signed key and certificate, PEM and DER.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anstream::println;
use anyhow::{bail, Context};
use clap::ValueEnum;
use devtls_pki::files::{self, Output};
use devtls_pki::fingerprint;
use devtls_pki::issue::{self, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use serde::Serialize;

use crate::output;
use crate::snippets::{self, DeviceFiles};

// `devtls new`: described on `Command::New` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls new server --dns openmv --ip 192.168.1.50
  devtls new client --cn sensor-01
  devtls new server --key rsa2048 --days 90 --out certs/ --name camera")]
pub struct Args {
    /// Which side presents this certificate.
    #[arg(value_enum)]
    role: NewRole,
    /// A DNS name clients use to reach this host (repeatable): a host name
    /// or a left-most wildcard (*.example.com); an IDN becomes its xn-- form.
    #[arg(long, value_name = "NAME", value_parser = dns_name)]
    dns: Vec<String>,
    /// An IP address clients use to reach this host (repeatable).
    #[arg(long, value_name = "ADDR")]
    ip: Vec<IpAddr>,
    /// Subject common name [default: the first --dns, else the role's stem].
    #[arg(long)]
    cn: Option<String>,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
    /// Key type: p256 (recommended), p384 or rsa2048.
    #[arg(long, default_value = "p256")]
    key: KeyType,
    /// File name stem [default: server or client].
    #[arg(long, value_name = "STEM")]
    name: Option<String>,
    /// Folder to write into.
    #[arg(long, short, default_value = ".")]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    /// Device profile the files must suit.
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// Print what was written as JSON instead of instructions.
    #[arg(long)]
    json: bool,
}

/// `--dns`: checked and normalised by the one names module.
pub(super) fn dns_name(s: &str) -> Result<String, String> {
    devtls_pki::names::dns_name(s).map_err(|why| {
        format!(
            "'{}' {why}; a DNS name is letters, digits and hyphens in dot-separated labels",
            s.escape_default()
        )
    })
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NewRole {
    Server,
    Client,
}

#[derive(Serialize)]
struct Written {
    role: Role,
    key_type: KeyType,
    common_name: String,
    not_after: String,
    sha256: String,
    files: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    if let Some(why) = args.key.refused_by(profile) {
        bail!("--key {}: {why}", args.key);
    }
    let role = match args.role {
        NewRole::Server => Role::Server,
        NewRole::Client => Role::Client,
    };
    let stem = args.name.clone().unwrap_or_else(|| role.stem().to_string());
    if stem.is_empty() || stem.contains(['/', '\\']) {
        bail!(
            "--name '{stem}': give a plain file stem such as 'camera' (use --out for the folder)"
        );
    }
    let common_name = args
        .cn
        .clone()
        .or_else(|| args.dns.first().cloned())
        .or_else(|| args.ip.first().map(ToString::to_string))
        .unwrap_or_else(|| role.stem().to_string());
    let mut spec = CertSpec::new(common_name.clone(), role, args.days);
    spec.dns = args.dns.clone();
    spec.ips = args.ip.clone();

    let key = PrivateKey::generate(args.key)?;
    let cert = issue::self_signed(&spec, &key).context("could not make the certificate")?;

    let path = |suffix: &str| args.out.join(format!("{stem}{suffix}"));
    let outputs = [
        Output::secret(path(".key"), key.pkcs8_pem()),
        Output::public(path(".crt"), cert.pem()),
        Output::public(path(".der"), cert.der.clone()),
        Output::secret(path(".key.der"), key.pkcs8_der()),
    ];
    files::write_all(&outputs, args.force)?;

    let written = Written {
        role,
        key_type: args.key,
        common_name,
        not_after: spec.not_after.date().to_string(),
        sha256: fingerprint::sha256_colon(&cert.der),
        files: outputs
            .iter()
            .map(|o| o.path.display().to_string())
            .collect(),
    };
    if args.json {
        output::json(&written)?;
    } else {
        print_instructions(&args, &stem, &written);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_instructions(args: &Args, stem: &str, written: &Written) {
    output::ok(&format!(
        "{} certificate for CN={} ({}), valid until {}",
        role_word(args.role),
        written.common_name,
        args.key.describe(),
        written.not_after
    ));
    println!("  SHA-256 {}", written.sha256);
    for file in &written.files {
        println!("  wrote {file}");
    }
    let der = format!("{stem}.der");
    let key_der = format!("{stem}.key.der");
    println!();
    output::heading("Copy to the device (DER; the device cannot read PEM):");
    print!(
        "{}",
        snippets::copy_commands(&[der.clone(), key_der.clone()])
    );
    let host = args
        .dns
        .first()
        .cloned()
        .or_else(|| args.ip.first().map(ToString::to_string));
    let host = host.as_deref().unwrap_or("openmv");
    let own = DeviceFiles {
        cert: Some(&der),
        key: Some(&key_der),
        anchor: None,
    };
    match args.role {
        NewRole::Server => {
            println!();
            output::heading("On the device, as the TLS server:");
            print!("{}", snippets::server(&own, 8443));
            println!();
            output::heading("Or as a DTLS server (UDP; each client gets a cookie first):");
            print!("{}", snippets::dtls_server(&own, 8443));
            println!();
            output::heading(&format!(
                "On a client of the device, trust {der} and check the name:"
            ));
            let peer = DeviceFiles {
                cert: None,
                key: None,
                anchor: Some(&der),
            };
            print!("{}", snippets::client(&peer, host, 8443));
            println!();
            output::heading("The same client over DTLS:");
            print!("{}", snippets::dtls_client(&peer, host, 8443));
            println!();
            output::heading(
                "For mutual TLS, also make a client identity and load it on both sides:",
            );
            println!("devtls new client --cn sensor-01");
            let mtls = DeviceFiles {
                anchor: Some("client.der"),
                ..own
            };
            print!("{}", snippets::server(&mtls, 8443));
            println!();
            output::heading("Mutual TLS over DTLS:");
            print!("{}", snippets::dtls_server(&mtls, 8443));
        }
        NewRole::Client => {
            println!();
            output::heading(
                "On the device, as an mTLS client (the server's certificate is the anchor):",
            );
            let mtls = DeviceFiles {
                anchor: Some("server.der"),
                ..own
            };
            print!("{}", snippets::client(&mtls, host, 8443));
            println!();
            output::heading("The same client over DTLS:");
            print!("{}", snippets::dtls_client(&mtls, host, 8443));
            println!();
            output::heading(&format!(
                "On the server, demand and verify this client with {der}:"
            ));
            println!("devtls serve --cert server.der --key server.key.der --ca {der}");
            println!("devtls serve --cert server.der --key server.key.der --ca {der} --dtls");
        }
    }
}

fn role_word(role: NewRole) -> &'static str {
    match role {
        NewRole::Server => "Server",
        NewRole::Client => "Client",
    }
}

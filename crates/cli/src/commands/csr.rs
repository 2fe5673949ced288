//! `devtls csr`: a key and a certificate signing request for a public CA.

use std::path::PathBuf;
use std::process::ExitCode;

use anstream::println;
use anyhow::{bail, Context};
use devtls_pki::files::{self, Output};
use devtls_pki::issue::{self, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use serde::Serialize;

use crate::output;
use crate::snippets;

// `devtls csr`: described on `Command::Csr` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls csr --domain cam.example.com
  devtls csr --domain cam.example.com --domain www.cam.example.com --key p384 --out certs/")]
pub struct Args {
    /// A domain the certificate is for (repeatable; the first is also the CN).
    #[arg(long, value_name = "NAME", required = true, value_parser = super::new::dns_name)]
    domain: Vec<String>,
    /// Key type: p256 (recommended), p384 or rsa2048.
    #[arg(long, default_value = "p256")]
    key: KeyType,
    /// Folder to write into.
    #[arg(long, short, default_value = ".")]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    /// Device profile the key must suit.
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// Print what was written as JSON instead of instructions.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Written {
    key_type: KeyType,
    common_name: String,
    domains: Vec<String>,
    files: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    if let Some(why) = args.key.refused_by(profile) {
        bail!("--key {}: {why}", args.key);
    }
    let common_name = args.domain[0].clone();
    let mut spec = CertSpec::new(common_name.clone(), Role::Server, 1);
    spec.dns = args.domain.clone();

    let key = PrivateKey::generate(args.key)?;
    let request = issue::csr(&spec, &key).context("could not make the CSR")?;

    let path = |name: &str| args.out.join(name);
    let outputs = [
        Output::secret(path("domain.key"), key.pkcs8_pem()),
        Output::secret(path("domain.key.der"), key.pkcs8_der()),
        Output::public(path("domain.csr"), request.pem),
    ];
    files::write_all(&outputs, args.force)?;

    let written = Written {
        key_type: args.key,
        common_name,
        domains: args.domain.clone(),
        files: outputs
            .iter()
            .map(|o| o.path.display().to_string())
            .collect(),
    };
    if args.json {
        output::json(&written)?;
    } else {
        print_next_steps(&written, args.key);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_next_steps(written: &Written, key: KeyType) {
    output::ok(&format!(
        "CSR for {} ({}); the key stays on this machine",
        written.domains.join(", "),
        key.describe()
    ));
    for file in &written.files {
        println!("  wrote {file}");
    }
    println!();
    output::heading("Next:");
    println!("1. Paste domain.csr into your CA's order form, or give it to an ACME client");
    println!("   (e.g. certbot certonly --csr domain.csr). Never send domain.key anywhere.");
    println!("2. When the CA issues the certificate, split its full chain:");
    println!("   devtls split fullchain.pem");
    println!("3. Copy the leaf and the DER key to the device:");
    print!(
        "{}",
        snippets::copy_commands(&["leaf.der".into(), "domain.key.der".into()])
    );
    println!("   and load them with ctx.load_cert_chain(\"leaf.der\", \"domain.key.der\").");
    println!("4. Check the result the way the device will:");
    println!(
        "   devtls lint leaf.der domain.key.der --host {}",
        written.common_name
    );
}

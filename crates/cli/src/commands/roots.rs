//! `devtls roots`: the Mozilla root set bundled with devtls, and its date.

use std::process::ExitCode;

use anstream::println;
use devtls_pki::chain::Cert;
use devtls_pki::roots::{self, RootSet};
use serde::Serialize;

use crate::output;

// `devtls roots`: described on `Command::Roots` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  devtls roots\n  devtls roots --json | jq '.roots | length'")]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Root {
    subject: String,
    key: String,
    not_after: String,
    sha256: String,
}

#[derive(Serialize)]
struct Listing {
    source: String,
    crate_name: &'static str,
    crate_version: &'static str,
    date: &'static str,
    roots: Vec<Root>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let set = RootSet::bundled();
    let mut list: Vec<Root> = set
        .certs
        .iter()
        .filter_map(|der| Cert::parse(der).ok())
        .map(|c| Root {
            subject: c.subject().to_string(),
            key: c.info.public_key.description.clone(),
            not_after: c.not_after().date().to_string(),
            sha256: c.info.sha256.clone(),
        })
        .collect();
    list.sort_by_key(|r| r.subject.to_lowercase());
    let listing = Listing {
        source: set.source.clone(),
        crate_name: roots::BUNDLE_CRATE,
        crate_version: roots::BUNDLE_VERSION,
        date: roots::BUNDLE_DATE,
        roots: list,
    };
    if args.json {
        output::json(&listing)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::heading(&format!(
        "{} roots: Mozilla CA program, {} {} ({})",
        listing.roots.len(),
        listing.crate_name,
        listing.crate_version,
        listing.date
    ));
    for r in &listing.roots {
        println!("{}  {:<12} {}", r.not_after, r.key, r.subject);
    }
    println!();
    println!("Use your own set with: devtls anchor HOST --roots bundle.pem");
    Ok(ExitCode::SUCCESS)
}

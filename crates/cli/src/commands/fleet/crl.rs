//! `devtls fleet crl`: the DER CRL of every revoked certificate.

use std::path::PathBuf;
use std::process::ExitCode;

use anstream::println;
use devtls_fleet::names;
use devtls_pki::files::{self, Output};
use serde::Serialize;

use super::{open_signing, token::TokenArgs, DirArg};
use crate::output;

/// Write a DER CRL of every revoked certificate, signed by the fleet CA.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet crl
  devtls fleet crl -o /srv/gateway/crl.der --days 2
  devtls serve --ca fleet/ca.der --crl fleet/crl.der ...")]
pub(super) struct CrlArgs {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    token: TokenArgs,
    /// Where to write it [default: DIR/crl.der].
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Days until the next CRL is due (nextUpdate).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
    days: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn crl(a: CrlArgs) -> anyhow::Result<ExitCode> {
    let fleet = open_signing(&a.dir, &a.token)?;
    let out = a.out.unwrap_or_else(|| fleet.dir().join("crl.der"));
    // The CRL this one replaces: the file about to be overwritten.
    let previous = match out.exists() {
        true => Some(crate::input::read(&out)?),
        false => None,
    };
    let der = fleet.crl(a.days, previous.as_deref())?;
    files::write_all(&[Output::public(&out, der)], true)?;
    let revoked = fleet.db().revoked()?.len();
    #[derive(Serialize)]
    struct Written {
        file: String,
        revoked: usize,
        days: u32,
    }
    let written = Written {
        file: out.display().to_string(),
        revoked,
        days: a.days,
    };
    if a.json {
        output::json(&written)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::ok(&format!(
        "CRL with {revoked} revoked certificate{} written to {} (next update in {} days)",
        if revoked == 1 { "" } else { "s" },
        written.file,
        a.days
    ));
    println!(
        "  Servers refuse them with: devtls serve --ca {} --crl {}",
        fleet.dir().join(names::CA_DER).display(),
        written.file
    );
    Ok(ExitCode::SUCCESS)
}

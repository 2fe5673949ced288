//! `devtls fleet revoke`: a device or one certificate.

use std::process::ExitCode;

use anstream::println;
use devtls_pki::crl::Reason;

use super::{open, DirArg};
use crate::output;

/// Revoke a device (all its unrevoked certificates, a renewal waiting for
/// the device's confirmation included) or one certificate by serial.
///
/// Then publish the list with `devtls fleet crl` so servers refuse it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet revoke cam-17 --reason keyCompromise
  devtls fleet revoke 4a:1f:...:09")]
pub(super) struct RevokeArgs {
    #[command(flatten)]
    dir: DirArg,
    /// A device ID or a certificate serial (hex, colons allowed).
    #[arg(value_name = "ID|SERIAL")]
    target: String,
    /// Why: unspecified, keyCompromise, superseded, cessationOfOperation,
    /// affiliationChanged, privilegeWithdrawn.
    #[arg(long, default_value = "unspecified")]
    reason: Reason,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn revoke(a: RevokeArgs) -> anyhow::Result<ExitCode> {
    let mut fleet = open(&a.dir)?;
    let done = fleet.revoke(&a.target, a.reason)?;
    if a.json {
        output::json(&done)?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in &done.revoked {
        output::ok(&format!(
            "revoked {} serial {} ({})",
            r.device,
            r.serial,
            a.reason.name()
        ));
    }
    for r in &done.already {
        println!("  {} serial {} was already revoked", r.device, r.serial);
    }
    println!();
    output::heading("Publish the change so servers refuse it:");
    println!("devtls fleet crl --dir {}", fleet.dir().display());
    Ok(ExitCode::SUCCESS)
}

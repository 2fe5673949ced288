//! `devtls acme revoke CERT [--reason R]`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{fail, runtime};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls acme revoke acme/live/cam.example.com --reason keyCompromise
  devtls acme revoke old-cert.pem --server letsencrypt")]
pub struct Args {
    /// The certificate: cert.pem, cert.der, a fullchain, or a live/NAME folder.
    cert: PathBuf,
    /// Why (RFC 5280): unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation.
    #[arg(long, default_value = "unspecified")]
    reason: String,
    /// The ACME folder holding the account that ordered it.
    #[arg(long, default_value = "acme")]
    dir: PathBuf,
    /// The CA (letsencrypt, letsencrypt-staging or a directory URL) [default: the one that issued it].
    #[arg(long)]
    server: Option<String>,
    /// A PEM bundle to trust for the CA's own HTTPS (private CAs, test servers).
    #[arg(long, value_name = "FILE")]
    server_ca: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reason = devtls_acme::revoke::reason(&args.reason).map_err(fail)?;
    let server_ca = args
        .server_ca
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    let url = runtime()?
        .block_on(devtls_acme::revoke::revoke(
            &args.dir,
            &args.cert,
            Some(reason),
            args.server.as_deref(),
            server_ca,
        ))
        .map_err(fail)?;
    output::ok(&format!(
        "{} revoked by {url} (reason {})",
        args.cert.display(),
        args.reason
    ));
    Ok(ExitCode::SUCCESS)
}

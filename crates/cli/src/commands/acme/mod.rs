//! `devtls acme`: certificates from a public CA by ACME, made for the
//! device. One file per subcommand; the work is in devtls-acme.

use std::process::ExitCode;

use clap::Subcommand;

use crate::output::Exit;

mod account;
mod issue;
mod renew;
mod revoke;

// `devtls acme`: described on `Command::Acme` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls acme issue --domain cam.example.com --email me@example.com
  devtls acme issue --domain cam.example.com --challenge dns-01 --dns-hook ./dns-hook.sh
  devtls acme renew --deploy-hook 'systemctl reload gateway'
  devtls acme renew --print-timer
  devtls acme revoke acme/live/cam.example.com --reason keyCompromise
  devtls acme account")]
pub struct Args {
    #[command(subcommand)]
    command: AcmeCommand,
}

#[derive(Debug, Subcommand)]
enum AcmeCommand {
    /// Order a certificate and write it in certbot's layout plus the device's DER files.
    ///
    /// Writes DIR/live/NAME/ with privkey.pem, cert.pem, chain.pem and
    /// fullchain.pem (certbot's names, for existing tooling) and cert.der,
    /// privkey.der (0600, PKCS#8) and ca.der (the anchor the device needs,
    /// chosen as `devtls anchor` does), each linted against the device
    /// profile. Says first what the device can and cannot do with a public
    /// CA's certificate.
    Issue(issue::Args),
    /// Renew every certificate in DIR that is due, from cron or a timer.
    ///
    /// Due means inside the window the CA suggests (ACME Renewal Information)
    /// when it offers one, else after two thirds of the lifetime. The new order
    /// names the certificate it replaces. Exit status: 0 renewed or nothing
    /// due, 1 something due failed, 2 unusable input.
    Renew(renew::Args),
    /// Ask the CA to revoke a certificate.
    Revoke(revoke::Args),
    /// Show the ACME accounts stored in DIR.
    Account(account::Args),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        AcmeCommand::Issue(a) => issue::run(a),
        AcmeCommand::Renew(a) => renew::run(a),
        AcmeCommand::Revoke(a) => revoke::run(a),
        AcmeCommand::Account(a) => account::run(a),
    }
}

/// The runtime the ACME flows run on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The folder's lock (one `issue` or `renew` at a time), saying on stderr
/// that `this` waits for another run when it does.
fn take_lock(dir: &std::path::Path, this: &str) -> anyhow::Result<devtls_acme::lock::RenewLock> {
    devtls_acme::lock::take(dir, |path| {
        crate::output::warn(&format!(
            "another {this} is running on {}; waiting for it to finish ({})",
            dir.display(),
            path.display()
        ))
    })
    .map_err(fail)
}

/// An ACME error as the command's error: exit 2 for unusable input or an
/// unreachable CA, 1 when the CA or a challenge said no.
fn fail(e: devtls_acme::Error) -> anyhow::Error {
    Exit {
        code: e.exit_code(),
        message: e.to_string(),
    }
    .into()
}

//! `devtls acme renew`: renew what is due, for cron or a systemd timer.

use std::path::PathBuf;
use std::process::ExitCode;

use anstream::println;
use devtls_acme::renew::{self, Outcome};

use super::{fail, runtime};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls acme renew
  devtls acme renew --dir /etc/devtls/acme --deploy-hook 'systemctl reload gateway'
  devtls acme renew --dir /etc/devtls/acme --print-timer | less

The deploy hook runs with RENEWED_LINEAGE (the live/NAME folder) and
RENEWED_DOMAINS (space-separated) as certbot's do. Safe to run every hour:
a certificate is ordered only when due. One run at a time per folder: a
second run waits for the first (lock file DIR/renew.lock), says so on
stderr, then finds what the first renewed no longer due.

Exit status: 0 renewed or nothing due, 1 something due failed, 2 unusable input.")]
pub struct Args {
    /// The ACME folder.
    #[arg(long, default_value = "acme")]
    dir: PathBuf,
    /// A shell command to run after each renewal.
    #[arg(long, value_name = "CMD")]
    deploy_hook: Option<String>,
    /// Print a systemd service and timer that run this command hourly, and exit.
    #[arg(long)]
    print_timer: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.print_timer {
        let exe = std::env::current_exe()?;
        print!(
            "{}",
            renew::systemd_units(&exe, &args.dir, args.deploy_hook.as_deref()).map_err(fail)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let lock = super::take_lock(&args.dir, "`devtls acme renew`")?;
    let items = runtime()?
        .block_on(renew::renew_all(
            &args.dir,
            &lock,
            args.deploy_hook.as_deref(),
            time::OffsetDateTime::now_utc(),
        ))
        .map_err(fail)?;
    let failed = items
        .iter()
        .any(|i| matches!(i.outcome, Outcome::Failed { .. }));
    if args.json {
        output::json(&items)?;
    } else {
        for i in &items {
            match &i.outcome {
                Outcome::NotDue {
                    renew_at,
                    basis,
                    note,
                } => {
                    println!("{}: not due; renews at {renew_at} ({basis:?})", i.name);
                    if let Some(n) = note {
                        println!("  note: {n}");
                    }
                }
                Outcome::Renewed { basis, report } => output::ok(&format!(
                    "{}: renewed ({basis:?}{}), serial {}, valid until {}",
                    i.name,
                    if report.replaced {
                        ", the order named the certificate it replaces"
                    } else {
                        ""
                    },
                    report.serial,
                    report.not_after
                )),
                Outcome::Failed { error } => output::warn(&format!("{}: {error}", i.name)),
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

//! `devtls fleet migrate`: the fleet folder's inventory.db into PostgreSQL.

use std::process::ExitCode;

use anstream::println;
use anyhow::bail;
use devtls_fleet::{names, Db, Fleet};
use indicatif::ProgressStyle;

use super::{progress_bar, DirArg};
use crate::output;

/// Copy the fleet folder's inventory.db into an empty PostgreSQL database
/// and check the copy (row count and a SHA-256 over every row).
///
/// inventory.db is only read. Afterwards run every fleet command with
/// --db URL (or DEVTLS_FLEET_DB); see docs/fleet-postgres.md.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet migrate --to postgres://devtls@db.example/fleet
  devtls fleet migrate --dir /srv/fleet --to postgres://devtls@127.0.0.1:5432/fleet --json")]
pub(super) struct MigrateArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The empty PostgreSQL database: postgres://USER@HOST[:PORT]/DB.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar (it is only ever shown on a terminal).
    #[arg(long, short)]
    quiet: bool,
}

pub(super) fn migrate(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    if a.dir.db.is_some() {
        bail!("fleet migrate reads the fleet folder's inventory.db: name the database with --to, not --db");
    }
    let Db::Postgres(url) = Db::parse(Some(&a.to))? else {
        bail!("--to {}: write postgres://USER@HOST[:PORT]/DB", a.to);
    };
    let fleet = Fleet::open(&a.dir.dir)?;
    let bar = progress_bar(None, a.quiet, "rows");
    let done = devtls_fleet::migrate::migrate(
        &fleet,
        &url,
        &mut |n| {
            if n >= 100 && !a.quiet {
                bar.set_length(n);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {wide_bar} {pos}/{len} rows  {per_sec}  eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
        },
        &|n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    if a.json {
        output::json(&done)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::ok(&format!(
        "copied {} row{} of {} into {} and checked the copy",
        done.rows,
        if done.rows == 1 { "" } else { "s" },
        fleet.dir().join(names::INVENTORY).display(),
        done.to
    ));
    println!(
        "  rows: {} in both; SHA-256 over every row: {}",
        done.rows, done.digest
    );
    for (key, value) in &done.meta {
        println!("  {key}: {value}");
    }
    println!(
        "  pending renewals: {} in both (with the renewal service's counters)",
        done.renewals
    );
    println!("\nNext: run the fleet commands with --db {} (or DEVTLS_FLEET_DB); inventory.db is no longer used.", done.to);
    Ok(ExitCode::SUCCESS)
}

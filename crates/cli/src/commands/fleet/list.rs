//! `devtls fleet list`: the inventory, filtered, as a table or JSON.

use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;
use devtls_fleet::inventory::Filter;

use super::{date_time, open, DirArg, JsonRows};

/// List certificates in the inventory.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet list
  devtls fleet list --expiring 30d
  devtls fleet list --status revoked --json
  devtls fleet list --limit 1000 --json              # a page; each row has a cursor
  devtls fleet list --limit 1000 --after CURSOR      # the next page")]
pub(super) struct ListArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Only active certificates expiring within this span (e.g. 30d, 2w).
    #[arg(long, value_name = "SPAN", value_parser = devtls_fleet::parse_span)]
    expiring: Option<time::Duration>,
    /// Only certificates with this status.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// At most N rows (a page); each row then shows its cursor.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Continue after this cursor (the last row of the previous page).
    #[arg(long, value_name = "CURSOR")]
    after: Option<devtls_fleet::inventory::Cursor>,
    /// Print JSON (streamed: rows are written as they are read).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum StatusArg {
    Active,
    Revoked,
    Expired,
    Superseded,
}

pub(super) fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let fleet = open(&a.dir)?;
    let filter = Filter {
        status: a.status.map(|s| {
            s.to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        }),
        expiring_before: a.expiring.map(|span| devtls_fleet::now() + span),
        limit: a.limit,
        after: a.after,
    };
    let stdout = std::io::stdout().lock();
    if a.json {
        let mut rows = JsonRows::new(stdout)?;
        fleet.db().for_each(&filter, &mut |r| {
            rows.push(&r)
                .map_err(|e| devtls_fleet::Error::Invalid(e.to_string()))
        })?;
        rows.end()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::BufWriter::new(stdout);
    writeln!(
        out,
        "{:<24} {:<10} {:<8} {:<20} {:<32}",
        "DEVICE", "STATUS", "KEY", "NOT AFTER", "SERIAL"
    )?;
    let mut n = 0u64;
    let mut last = None;
    fleet.db().for_each(&filter, &mut |r| {
        n += 1;
        last = r.cursor.clone();
        writeln!(
            out,
            "{:<24} {:<10} {:<8} {:<20} {}",
            r.device,
            r.status,
            r.key_type,
            date_time(r.not_after),
            r.serial
        )
        .map_err(|e| devtls_fleet::Error::Invalid(e.to_string()))
    })?;
    writeln!(out, "{n} certificate{}", if n == 1 { "" } else { "s" })?;
    if let (Some(limit), Some(cursor)) = (a.limit, last) {
        if n == limit {
            writeln!(out, "next page: --limit {limit} --after {cursor}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `devtls fleet status`: counts, next expiries, the weekly histogram and
//! the renewal service's counters.

use std::process::ExitCode;

use anstream::println;
use devtls_fleet::inventory::Row;
use serde::Serialize;

use super::{date_time, open, DirArg};
use crate::output;

/// Summarise the fleet: counts by status, next expiries, weekly expiry histogram.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet status
  devtls fleet status --weeks 26 --json")]
pub(super) struct StatusArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Weeks shown in the histogram.
    #[arg(long, default_value_t = 13, value_parser = clap::value_parser!(u32).range(1..=520))]
    weeks: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let fleet = open(&a.dir)?;
    let counts = fleet.db().counts()?;
    let next = fleet.db().next_expiries(5)?;
    let (weeks, later) = fleet.db().expiry_histogram(a.weeks)?;
    let renewal = devtls_fleet::renewal::counts(&fleet)?;
    if a.json {
        #[derive(Serialize)]
        struct Status {
            counts: std::collections::BTreeMap<String, u64>,
            next_expiries: Vec<Row>,
            expiring_per_week: Vec<u64>,
            expiring_later: u64,
            renewal: devtls_fleet::renewal::Counts,
        }
        output::json(&Status {
            counts: counts.into_iter().collect(),
            next_expiries: next,
            expiring_per_week: weeks,
            expiring_later: later,
            renewal,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    output::heading(&format!("Fleet {}", fleet.dir().display()));
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    println!("  {total} certificates");
    for (status, n) in &counts {
        println!("  {status:<11} {n:>8}");
    }
    println!();
    output::heading("Next expiries:");
    if next.is_empty() {
        println!("  none");
    }
    for r in &next {
        println!("  {:<24} {}", r.device, date_time(r.not_after));
    }
    println!();
    output::heading("Active certificates expiring per week:");
    for line in histogram(&weeks, later, 40) {
        println!("{line}");
    }
    print_renewal(&renewal);
    Ok(ExitCode::SUCCESS)
}

/// The renewal service's counters (`fleet serve`): renewed, pending, refused by reason.
fn print_renewal(r: &devtls_fleet::renewal::Counts) {
    if r.outcomes.is_empty() && r.pending == 0 {
        return;
    }
    let n = |k: &str| r.outcomes.get(k).copied().unwrap_or(0);
    println!();
    output::heading("Renewal service:");
    println!("  renewed     {:>8}", n("renewed"));
    println!("  pending     {:>8}", r.pending);
    println!("  issued      {:>8}", n("issued"));
    println!("  resent      {:>8}", n("resent"));
    println!("  current     {:>8}", n("current"));
    for (k, v) in r.outcomes.iter().filter(|(k, _)| k.starts_with("refused-")) {
        println!("  {:<11} {v:>8}", k.replace("refused-", "refused: "));
    }
}

/// One line per week: `week 3  ████▌ 12`, bars scaled to `width` characters.
fn histogram(weeks: &[u64], later: u64, width: usize) -> Vec<String> {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let max = weeks
        .iter()
        .copied()
        .chain([later])
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = |n: u64| {
        let eighths = (n as u128 * width as u128 * 8 / max as u128) as usize;
        let mut s = "█".repeat(eighths / 8);
        s += EIGHTHS[eighths % 8];
        if n > 0 && s.is_empty() {
            s = "▏".into();
        }
        s
    };
    let mut lines: Vec<String> = weeks
        .iter()
        .enumerate()
        .map(|(i, &n)| format!("  week {:>3}  {:<w$} {n}", i + 1, bar(n), w = width))
        .collect();
    lines.push(format!("  later     {:<w$} {later}", bar(later), w = width));
    lines
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_scales_to_the_largest_week() {
        let lines = super::histogram(&[0, 4, 8], 2, 8);
        let blocks = |l: &str| l.matches('█').count();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines.iter().map(|l| blocks(l)).collect::<Vec<_>>(),
            [0, 4, 8, 2]
        );
        assert!(
            lines[2].ends_with(" 8") && lines[0].ends_with(" 0"),
            "{lines:?}"
        );
        assert!(lines[3].starts_with("  later"), "{lines:?}");
    }
}

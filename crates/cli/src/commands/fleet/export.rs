//! `devtls fleet export`: the whole inventory as CSV or JSON.

use std::io::Write;
use std::process::ExitCode;

use devtls_fleet::inventory::Filter;

use super::{open, progress_bar, DirArg, JsonRows};

/// Export the whole inventory as CSV or JSON (stdout).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet export --csv > inventory.csv
  devtls fleet export --json | jq '.[] | select(.status == \"revoked\")'")]
pub(super) struct ExportArgs {
    #[command(flatten)]
    dir: DirArg,
    /// CSV with a header line.
    #[arg(long, conflicts_with = "json", required_unless_present = "json")]
    csv: bool,
    /// A JSON array.
    #[arg(long)]
    json: bool,
    /// No progress bar (it is only ever shown on a terminal).
    #[arg(long, short)]
    quiet: bool,
}

pub(super) fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let fleet = open(&a.dir)?;
    let total: u64 = fleet.db().counts()?.iter().map(|(_, n)| n).sum();
    let bar = progress_bar(Some(total), a.quiet, "rows");
    let stdout = std::io::stdout().lock();
    let io = |e: std::io::Error| devtls_fleet::Error::Invalid(e.to_string());
    if a.json {
        let mut rows = JsonRows::new(stdout)?;
        fleet.db().for_each(&Filter::default(), &mut |r| {
            bar.inc(1);
            rows.push(&r)
                .map_err(|e| devtls_fleet::Error::Invalid(e.to_string()))
        })?;
        rows.end()?;
    } else {
        let mut out = std::io::BufWriter::new(stdout);
        writeln!(
            out,
            "device,serial,sha256,key_type,role,not_before,not_after,status,from_csr,revoked_at,reason"
        )?;
        let rfc = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        fleet.db().for_each(&Filter::default(), &mut |r| {
            bar.inc(1);
            // Every cell escaped: a spreadsheet shows a value, never evaluates it.
            let cells = [
                r.device,
                r.serial,
                r.sha256.unwrap_or_default(),
                r.key_type,
                r.role,
                rfc(r.not_before),
                rfc(r.not_after),
                r.status,
                r.from_csr.to_string(),
                r.revoked_at.map(rfc).unwrap_or_default(),
                r.reason.unwrap_or_default(),
            ];
            let line: Vec<String> = cells
                .iter()
                .map(|c| devtls_pki::names::csv_cell(c))
                .collect();
            writeln!(out, "{}", line.join(",")).map_err(io)
        })?;
        out.flush()?;
    }
    bar.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}

//! `devtls lint`: findings about key and certificate files, against a device profile.

use std::path::PathBuf;
use std::process::ExitCode;

use anstream::println;
use anstyle::{AnsiColor, Style};
use anyhow::bail;
use clap::ValueEnum;
use devtls_pki::lint::{self, AssumedRole, Finding, Input, Options, Severity};
use devtls_pki::sniff::Sniffed;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::{input, output};

// `devtls lint`: described on `Command::Lint` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls lint server.der server.key.der --host openmv
  devtls lint leaf.der domain.key.der --host cam.example.com --at 2027-01-01
  devtls lint client.der --role client --json
  devtls lint /etc/ssl/certs/ISRG_Root_X1.pem --role anchor
  devtls lint fullchain.der --role chain --host cam.example.com

Roles: anchor (what load_verify_locations loads: its own signature and names
are not checked), server (a server's certificate), client (the device's own
certificate), chain (a server's leaf and intermediates). Without --role each
file's role is guessed (a file named ca.*, or a self-signed CA certificate,
is an anchor) and lint says which it assumed.")]
pub struct Args {
    /// Files to check (PEM or DER: certificates, keys, bundles).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Device profile to check against.
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// The name the device checks (its `server_hostname`): DNS name or IP address.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Check validity at this time (RFC 3339 or YYYY-MM-DD) [default: now].
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<OffsetDateTime>,
    /// The role the certificates play for the device [default: guessed per file].
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// The device's trust anchor (load_verify_locations).
    Anchor,
    /// A server's certificate, verified by the device.
    Server,
    /// The device's own certificate (load_cert_chain).
    Client,
    /// A server's chain: leaf, then intermediates.
    Chain,
}

#[derive(Serialize)]
struct Report<'a> {
    profile: &'a str,
    files: Vec<String>,
    errors: usize,
    warnings: usize,
    notes: usize,
    roles: &'a [AssumedRole],
    findings: &'a [Finding],
}

/// `--at`: RFC 3339 (`2027-01-01T12:00:00Z`) or a date (`2027-01-01`, midnight UTC).
fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    Date::parse(s, format_description!("[year]-[month]-[day]"))
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            format!("'{s}' is not a time: use RFC 3339 (2027-01-01T12:00:00Z) or YYYY-MM-DD")
        })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    let names: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    let sniffed: Vec<Sniffed> = args
        .files
        .iter()
        .map(|p| input::sniff(p))
        .collect::<anyhow::Result<_>>()?;
    if let Some(host) = &args.host {
        if host.is_empty() || host.contains(char::is_whitespace) {
            bail!("--host '{host}': give the DNS name or IP address the device connects to");
        }
    }
    let options = Options {
        profile,
        host: args.host.as_deref(),
        at: args.at.unwrap_or_else(OffsetDateTime::now_utc),
        role: args.role.map(|r| match r {
            RoleArg::Anchor => lint::LintRole::Anchor,
            RoleArg::Server => lint::LintRole::Server,
            RoleArg::Client => lint::LintRole::Client,
            RoleArg::Chain => lint::LintRole::Chain,
        }),
    };
    let findings = lint_files(&names, &sniffed, &options);
    let inputs: Vec<Input<'_>> = names
        .iter()
        .zip(&sniffed)
        .map(|(file, sniffed)| Input { file, sniffed })
        .collect();
    let roles = lint::roles(&inputs, &options);
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let report = Report {
        profile: profile.name,
        files: names.clone(),
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
        notes: count(Severity::Note),
        roles: &roles,
        findings: &findings,
    };
    if args.json {
        output::json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(if lint::has_errors(&findings) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_human(report: &Report<'_>) {
    for f in report.findings {
        print_finding(f);
    }
    for r in report.roles {
        println!(
            "{}: checked as {} ({}{})",
            r.file,
            r.role.words(),
            r.because,
            if r.guessed { "; --role to change" } else { "" }
        );
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let summary = format!(
        "{}: {}, {}, {} for the {} profile",
        plural(report.files.len(), "file"),
        plural(report.errors, "error"),
        plural(report.warnings, "warning"),
        plural(report.notes, "note"),
        report.profile
    );
    if report.errors == 0 && report.warnings == 0 && report.notes == 0 {
        output::ok(&format!("{summary}: clean"));
    } else {
        output::heading(&summary);
    }
}

/// Lints files given together (a key is matched with its certificate), each
/// named as the findings should name it.
pub(crate) fn lint_files(
    names: &[String],
    sniffed: &[Sniffed],
    options: &Options<'_>,
) -> Vec<Finding> {
    let inputs: Vec<Input<'_>> = names
        .iter()
        .zip(sniffed)
        .map(|(file, sniffed)| Input { file, sniffed })
        .collect();
    lint::lint(&inputs, options)
}

/// One finding on one line: severity, id, file, what is wrong, the fix.
pub(crate) fn print_finding(f: &Finding) {
    let colour = match f.severity {
        Severity::Error => AnsiColor::Red,
        Severity::Warning => AnsiColor::Yellow,
        Severity::Note => AnsiColor::Cyan,
    };
    let style = Style::new().fg_color(Some(colour.into())).bold();
    println!(
        "{style}{}{style:#} [{}] {}: {}; fix: {}",
        f.severity.word(),
        f.id,
        f.file,
        f.message,
        f.fix
    );
}

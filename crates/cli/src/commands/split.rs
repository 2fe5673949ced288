//! `devtls split`: a certificate bundle into one DER file per certificate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anstream::println;
use anyhow::anyhow;
use devtls_pki::convert::{self, ChainPart, ChainRole};
use devtls_pki::files::{self, Output};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::{input, output};

// `devtls split`: described on `Command::Split` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls split /etc/letsencrypt/live/cam.example.com/fullchain.pem --out certs/
  devtls split cam_example_com.ca-bundle
  devtls split chain.pem --json")]
pub struct Args {
    /// The bundle to split (PEM or concatenated DER).
    input: PathBuf,
    /// Folder to write into.
    #[arg(long, short, default_value = ".")]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar (there is none unless stderr is a terminal anyway).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    input: String,
    parts: &'a [ChainPart],
    files: Vec<String>,
    /// Certificates that appear again later in the bundle: written once.
    duplicates: &'a [Duplicate],
    /// The issuer of the topmost certificate, when the file does not hold it.
    missing_issuer: Option<String>,
}

/// A certificate that is in the bundle more than once.
#[derive(Serialize)]
struct Duplicate {
    /// The file it was written to the first time.
    same_as: String,
    /// Its subject.
    subject: String,
    /// SHA-256 of its DER.
    sha256: String,
}

/// Bundles at least this large get a progress bar (on a terminal).
const PROGRESS_FROM: usize = 100;

/// Keeps the first of identical certificates; the others become duplicates.
fn unique(parts: Vec<ChainPart>) -> (Vec<ChainPart>, Vec<Duplicate>) {
    let mut first: HashMap<String, String> = HashMap::new();
    let mut kept = Vec::with_capacity(parts.len());
    let mut duplicates = Vec::new();
    for part in parts {
        match first.get(&part.info.sha256) {
            Some(file) => duplicates.push(Duplicate {
                same_as: file.clone(),
                subject: part.info.subject.clone(),
                sha256: part.info.sha256.clone(),
            }),
            None => {
                first.insert(part.info.sha256.clone(), part.file_name.clone());
                kept.push(part);
            }
        }
    }
    (kept, duplicates)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = &args.input;
    let sniffed = input::sniff(path)?;
    let parts = convert::split_chain(&sniffed, time::OffsetDateTime::now_utc())
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let (parts, duplicates) = unique(parts);
    let outputs: Vec<Output> = parts
        .iter()
        .map(|p| Output::public(args.out.join(&p.file_name), p.der.clone()))
        .collect();
    let bar = match outputs.len() >= PROGRESS_FROM && !args.quiet && !args.json {
        true => ProgressBar::new(outputs.len() as u64),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} certificates")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    files::write_all_with_progress(&outputs, args.force, &|n| bar.set_position(n as u64))?;
    bar.finish_and_clear();

    let top = parts
        .iter()
        .rfind(|p| !matches!(p.role, ChainRole::Extra(_)));
    let missing_issuer = top
        .filter(|p| !p.info.self_signed && p.signed_by.is_none())
        .map(|p| p.info.issuer.clone());
    let report = Report {
        input: path.display().to_string(),
        parts: &parts,
        files: outputs
            .iter()
            .map(|o| o.path.display().to_string())
            .collect(),
        duplicates: &duplicates,
        missing_issuer: missing_issuer.clone(),
    };
    if args.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }

    output::ok(&format!(
        "{} certificate{} from {}, leaf first:",
        parts.len(),
        if parts.len() == 1 { "" } else { "s" },
        report.input
    ));
    let width = parts.iter().map(|p| p.file_name.len()).max().unwrap_or(0);
    for part in &parts {
        println!(
            "  {:<width$}  {}  {}",
            part.file_name,
            role_words(part.role),
            part.info.subject
        );
        let signer = match &part.signed_by {
            Some(f) => format!("{} (signed by {f})", part.info.issuer),
            None if part.info.self_signed => "itself (self-signed: a trust anchor)".into(),
            None => format!("{} (not in this file)", part.info.issuer),
        };
        println!("  {:<width$}  issued by {signer}", "");
        println!(
            "  {:<width$}  valid until {}, SHA-256 {}",
            "",
            part.info.validity.not_after.date(),
            part.info.sha256
        );
    }
    for dup in &duplicates {
        output::warn(&format!(
            "{} is in the bundle again (SHA-256 {}): a duplicate, written once as {}",
            dup.subject, dup.sha256, dup.same_as
        ));
    }
    println!();
    let leaf = parts.iter().find(|p| p.role == ChainRole::Leaf);
    let first_intermediate = parts.iter().find(|p| p.role == ChainRole::Intermediate(1));
    match leaf {
        Some(leaf) => {
            output::heading(
                "For a device that presents this certificate (server, or mTLS client):",
            );
            println!(
                "  copy {} and its private key as DER (devtls convert privkey.pem -o {}).",
                leaf.file_name, "server.key.der"
            );
            if leaf.info.self_signed {
                println!("  It is self-signed: its peers trust it by loading it as their anchor.");
            } else {
                println!(
                    "  The device presents exactly one certificate, the leaf; it cannot send {}.",
                    first_intermediate
                        .map(|p| p.file_name.as_str())
                        .unwrap_or("the intermediates")
                );
                println!(
                    "  Clients that already have the CA's intermediate (browsers, most HTTPS libraries) connect;"
                );
                println!("  clients that rely on the server to send it fail the handshake.");
            }
        }
        None => {
            output::heading(
                "No leaf in this file: it is a CA bundle (certbot's chain.pem, a .ca-bundle).",
            );
        }
    }
    println!();
    output::heading("For a device that verifies a server using this chain (one trust anchor):");
    if let Some(leaf) = leaf.filter(|l| l.info.self_signed) {
        println!(
            "  copy {} itself as ca.der: a self-signed certificate is its own trust anchor.",
            leaf.file_name
        );
    } else if let Some(root) = parts.iter().find(|p| p.role == ChainRole::Root) {
        println!(
            "  copy {} as ca.der: the root rarely changes; the server must send its intermediate.",
            root.file_name
        );
    } else if let Some(issuer) = &missing_issuer {
        println!("  the root ({issuer}) is not in this file, as usual: servers never send it.");
        println!("  get it from the CA, or let devtls pick it: devtls anchor HOST");
    }
    if let Some(int) = first_intermediate {
        println!(
            "  or trust {} itself: works even when the server omits it, but CAs rotate intermediates often.",
            int.file_name
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn role_words(role: ChainRole) -> String {
    match role {
        ChainRole::Leaf => "leaf".into(),
        ChainRole::Intermediate(n) => format!("intermediate {n}"),
        ChainRole::Root => "root".into(),
        ChainRole::Extra(_) => "unrelated (does not chain to the others)".into(),
    }
}

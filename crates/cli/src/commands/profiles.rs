//! `devtls profiles`: the device profiles and what each accepts.

use std::process::ExitCode;

use anstream::println;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use devtls_pki::profile::{self, Profile};

use crate::output;

// `devtls profiles`: described on `Command::Profiles` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  devtls profiles\n  devtls profiles openmv --json")]
pub struct Args {
    /// Show one profile in full.
    name: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let selected: Vec<&Profile> = match &args.name {
        Some(name) => vec![super::profile(name)?],
        None => profile::ALL.to_vec(),
    };
    if args.json {
        output::json(&selected)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.name.is_none() {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_header(["profile", "", "describes"]);
        for p in &selected {
            let marker = if p.name == profile::DEFAULT.name {
                "default"
            } else {
                ""
            };
            table.add_row([p.name, marker, p.summary]);
        }
        println!("{table}");
        println!("`devtls profiles NAME` shows one in full.");
        return Ok(ExitCode::SUCCESS);
    }
    let p = selected[0];
    output::heading(&format!("{}: {}", p.name, p.summary));
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let rows: Vec<(&str, String)> = vec![
        (
            "files",
            if p.loads_pem {
                "PEM or DER".into()
            } else {
                "DER only".into()
            },
        ),
        ("encrypted keys", yes_no(p.loads_encrypted_keys).into()),
        (
            "trust anchors per context",
            p.anchors_per_context
                .map_or("any number".into(), |n| n.to_string()),
        ),
        ("certificates presented", p.presented_chain_len.to_string()),
        ("own chain must fit", format!("{} bytes", p.output_buffer)),
        (
            "peer Certificate message limit",
            format!("{} bytes", p.input_buffer),
        ),
        ("versions", format!("{:?}", p.versions)),
        ("groups", format!("{:?}", p.groups)),
        ("key curves", format!("{:?}", p.key_curves)),
        ("RSA minimum", format!("{} bits", p.min_rsa_bits)),
        ("signature hashes", format!("{:?}", p.signature_hashes)),
        ("RSA-PSS", yes_no(p.rsa_pss).into()),
        ("Ed25519", yes_no(p.ed25519).into()),
        ("CN checked when no SAN", yes_no(p.cn_fallback).into()),
        ("EKU enforced", yes_no(p.enforces_eku).into()),
        ("clock unset at boot", yes_no(p.clock_starts_unset).into()),
    ];
    for (label, value) in rows {
        println!("  {label:<32} {value}");
    }
    println!("  cipher suites (offer order):");
    for suite in p.cipher_suites {
        println!("    {:04X} {}", suite.code, suite.name);
    }
    Ok(ExitCode::SUCCESS)
}

//! `devtls acme account`: the accounts stored in DIR (never their keys).

use std::path::PathBuf;
use std::process::ExitCode;

use anstream::println;
use serde::Serialize;

use super::fail;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls acme account
  devtls acme account --dir /etc/devtls/acme --json")]
pub struct Args {
    /// The ACME folder.
    #[arg(long, default_value = "acme")]
    dir: PathBuf,
    /// Print the accounts as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Shown {
    server: String,
    id: String,
    email: Option<String>,
    created: String,
    file: String,
    mode: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let accounts = devtls_acme::account::list(&args.dir).map_err(fail)?;
    let shown: Vec<Shown> = accounts
        .into_iter()
        .map(|(file, s)| Shown {
            mode: mode(&file),
            file: file.display().to_string(),
            server: s.server,
            id: s.id,
            email: s.email,
            created: s.created,
        })
        .collect();
    if args.json {
        output::json(&shown)?;
        return Ok(ExitCode::SUCCESS);
    }
    if shown.is_empty() {
        println!(
            "no ACME account in {} yet: `devtls acme issue --dir {}` creates one",
            args.dir.display(),
            args.dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for a in &shown {
        output::heading(&a.server);
        println!("  account  {}", a.id);
        println!("  e-mail   {}", a.email.as_deref().unwrap_or("(none)"));
        println!("  created  {}", a.created);
        println!(
            "  file     {} ({}, holds the account key)",
            a.file,
            a.mode.as_deref().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn mode(path: &std::path::Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        Some(format!("{m:04o}"))
    }
    #[cfg(not(unix))]
    {
        devtls_pki::files::is_owner_only(path)
            .ok()
            .map(|owner_only| match owner_only {
                true => "owner-only".to_string(),
                false => "readable by others".to_string(),
            })
    }
}

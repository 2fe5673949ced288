//! `devtls man`: the manual page (roff), for packagers and `man -l`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

// `devtls man`: described on `Command::Man` in mod.rs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls man | man -l -
  devtls man > /usr/local/share/man/man1/devtls.1
  devtls man --out /usr/local/share/man/man1     # devtls.1 and devtls-SUBCOMMAND.1 for each command")]
pub struct Args {
    /// Write devtls.1 and one page per subcommand (devtls-fleet.1,
    /// devtls-fleet-issue.1, ...) into this folder instead of printing devtls.1.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cli = super::Cli::command();
    cli.build();
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: could not create the folder", dir.display()))?;
            clap_mangen::generate_to(cli, &dir)
                .with_context(|| format!("{}: could not write the manual pages", dir.display()))?;
            anstream::println!("wrote the manual pages into {}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cli).render(&mut page)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page)
                .and_then(|()| out.flush())
                .context("could not write the manual page to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

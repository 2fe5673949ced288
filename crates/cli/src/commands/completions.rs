//! `devtls completions SHELL`: the shell completion script, for packagers
//! and for a user's shell start-up file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

// `devtls completions`: described on `Command::Completions` in mod.rs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls completions bash > /etc/bash_completion.d/devtls     # or: source <(devtls completions bash)
  devtls completions zsh > \"${fpath[1]}/_devtls\"
  devtls completions fish > ~/.config/fish/completions/devtls.fish
  devtls completions powershell >> $PROFILE")]
pub struct Args {
    /// The shell: bash, zsh, fish, powershell (or elvish).
    shell: Shell,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut super::Cli::command(),
        "devtls",
        &mut script,
    );
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("could not write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

//! `devtls`: make TLS work on small devices the first time.
//!
//! One file per command under `commands/`; shared plumbing in `input`
//! (reading user files with clear errors), `output` (human and JSON output)
//! and `snippets` (the MicroPython lines printed after writing device files).

mod commands;
mod input;
mod output;
mod snippets;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            output::error(&err);
            ExitCode::from(output::exit_code(&err))
        }
    }
}

//! The command tree: one file per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod connect;
mod fleet;
mod new;
mod profiles;
mod serve;

/// Make TLS work on small devices (OpenMV Cam, MicroPython on mbedTLS) the first time.
///
/// devtls creates the keys and certificates a device accepts, writing the DER
/// files it loads beside the PEM files the PC uses, and checks everything the
/// way the device will.
#[derive(Debug, Parser)]
#[command(
    name = "devtls",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "Start with:  devtls new server --dns openmv --ip 192.168.1.50")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Fleet(fleet::Args),
    New(new::Args),
    Profiles(profiles::Args),
    Serve(serve::Args),
    Connect(connect::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fleet(args) => fleet::run(args),
        Command::New(args) => new::run(args),
        Command::Profiles(args) => profiles::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Connect(args) => connect::run(args),
    }
}

/// Looks up `--profile NAME`, with the list of names when it is unknown.
pub fn profile(name: &str) -> anyhow::Result<&'static devtls_pki::profile::Profile> {
    devtls_pki::profile::by_name(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown profile '{name}'; known profiles: {} (see `devtls profiles`)",
            devtls_pki::profile::names().join(", ")
        )
    })
}

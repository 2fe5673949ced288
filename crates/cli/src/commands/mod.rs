//! The command tree: one file per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod anchor;
mod connect;
mod convert;
mod csr;
mod doctor;
mod fleet;
mod inspect;
mod lint;
mod new;
mod profiles;
mod quickstart;
mod romfs;
mod roots;
mod serve;
mod split;

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
    Convert(convert::Args),
    Split(split::Args),
    Inspect(inspect::Args),
    Csr(csr::Args),
    Lint(lint::Args),
    Profiles(profiles::Args),
    Anchor(anchor::Args),
    Roots(roots::Args),
    Doctor(doctor::Args),
    Serve(serve::Args),
    Connect(connect::Args),
    Romfs(romfs::Args),
    Quickstart(quickstart::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fleet(args) => fleet::run(args),
        Command::New(args) => new::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Split(args) => split::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Csr(args) => csr::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Profiles(args) => profiles::run(args),
        Command::Anchor(args) => anchor::run(args),
        Command::Roots(args) => roots::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Connect(args) => connect::run(args),
        Command::Romfs(args) => romfs::run(args),
        Command::Quickstart(args) => quickstart::run(args),
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

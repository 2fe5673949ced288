//! The command tree: one file per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod acme;
mod anchor;
mod completions;
mod connect;
mod convert;
mod csr;
mod doctor;
mod fleet;
mod gateway;
mod inspect;
mod lint;
mod man;
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
#[command(
    before_help = "Where to start (the device guide's path; the first hour with a board: docs/first-hour.md):
  1. devtls quickstart          the whole guide on loopback, files in ./devtls-quickstart
  2. devtls new server|client   your own key and certificate: DER for the device, PEM for the PC
  3. devtls serve / connect     the guide's server and client, checking as the device does
  4. devtls doctor              why a device will (not) connect: to a server, or --files DIR
  5. devtls fleet               many devices: a CA, one key and certificate each, renewal"
)]
#[command(after_help = "Start with:  devtls quickstart")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands. Their descriptions live here, on the variants, so that
/// `devtls --help` lists them while only the command that runs is built
/// (`defer`): building every subcommand's arguments touched code pages
/// worth ~0.2 ms of page faults in each run (bench/new.sh).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum Command {
    /// Manage a fleet: a CA, one unique key and certificate per device, an
    /// inventory, revocation (CRL), expiry and rotation.
    ///
    /// A fleet is a folder (default ./fleet) holding the CA (ca.der, ca.crt and
    /// the 0600 ca.key, which never leaves it), an SQLite inventory and one
    /// folder per device under devices/ with exactly what that device loads.
    Fleet(fleet::Args),
    /// Certificates from a public CA by ACME (Let's Encrypt), made for the device.
    ///
    /// `issue` orders one (http-01, dns-01 or tls-alpn-01) and writes certbot's
    /// live/NAME/ layout plus cert.der, privkey.der and ca.der for the device;
    /// `renew` renews what is due (ARI, else two thirds of the lifetime);
    /// `revoke` revokes; `account` shows the stored account.
    Acme(acme::Args),
    /// Create a self-signed key and certificate for a server or a client.
    ///
    /// Writes STEM.key and STEM.crt (PEM, for the PC) and STEM.der and
    /// STEM.key.der (DER, for the device), where STEM is `server` or `client`
    /// as in the device guide. The key is written 0600 and never overwritten
    /// without --force.
    New(new::Args),
    /// Convert a certificate, private key, CSR or CRL between PEM and DER.
    ///
    /// The input format is detected. Without --to, PEM becomes DER (what the
    /// device loads) and DER becomes PEM. Without -o, the output name follows the
    /// device guide: server.crt -> server.der, server.key -> server.key.der.
    /// Encrypted keys are decrypted (the device cannot load them): give
    /// --password-file, or run in a terminal to be asked. Keys are written 0600,
    /// keep their structure (PKCS#8, SEC1 or PKCS#1) and lose any trailing bytes.
    /// A file with several certificates is refused: use `devtls split`.
    Convert(convert::Args),
    /// Split a certificate bundle into leaf.der, intermediate-1.der, ... root.der.
    ///
    /// Reads certbot's fullchain.pem (leaf + intermediates) or chain.pem
    /// (intermediates), a commercial CA's .ca-bundle, or concatenated DER, in any
    /// order, and names each certificate by its place in the chain: the leaf is
    /// the certificate your server (or the device) presents, intermediate-1
    /// signed it, intermediate-2 signed intermediate-1, and a self-signed CA
    /// certificate, if the file has one, is the root (the trust anchor).
    Split(split::Args),
    /// Show what certificate, key, CSR or CRL files hold.
    ///
    /// For every item in every file (bundles too): kind, subject, issuer,
    /// serial, SANs, validity with days left or days since expiry, key type and
    /// size or curve, signature algorithm, basic constraints, key usage, EKU,
    /// SHA-256 fingerprint (the colon form `openssl x509 -fingerprint -sha256`
    /// prints) and DER size. Private keys are described, never printed.
    Inspect(inspect::Args),
    /// Create a private key and a certificate signing request (CSR) for a public CA.
    ///
    /// Writes domain.key (PEM PKCS#8, for the PC), domain.key.der (DER, for the
    /// device) and domain.csr (PEM, what the CA's web form or an ACME client
    /// takes). The CSR carries every --domain as a subjectAltName and the first
    /// as the common name. The key never leaves this machine: only the CSR goes
    /// to the CA.
    Csr(csr::Args),
    /// Check key and certificate files the way the device will.
    ///
    /// Each finding has a severity (error: the device refuses it; warning: it
    /// works but will bite; note: worth knowing), a stable id, the file, what is
    /// wrong and the fix. Give a key and its certificate together to check that
    /// they match. Exit status: 0 no errors, 1 errors found, 2 a file could not
    /// be read.
    Lint(lint::Args),
    /// Show the device profiles devtls checks against.
    ///
    /// A profile is what one kind of device's TLS stack accepts: file formats,
    /// key types, protocol versions, cipher suites, buffer sizes, trust anchors.
    Profiles(profiles::Args),
    /// Find the trust anchor a device needs for a server and write it as DER.
    ///
    /// Connects, keeps the chain the server presents, prints it the way
    /// `openssl s_client -showcerts` reads, builds the path to a root in the
    /// Mozilla root set bundled with devtls (see `devtls roots`), and writes the
    /// chosen anchor (ca.der). The root is the default; the intermediate when the
    /// server does not send it; the leaf only on request (pinning).
    Anchor(anchor::Args),
    /// List the root certificates `devtls anchor` builds paths to.
    ///
    /// The set is the Mozilla CA program's server-authentication roots, bundled
    /// at build time; `devtls anchor --roots FILE` replaces it with a PEM bundle.
    Roots(roots::Args),
    /// Say whether the device will connect to a server, and if not, what it will
    /// print and how to fix it.
    ///
    /// Runs a handshake restricted to the device profile, then verifies the
    /// chain the server presents exactly as the device does: one anchor (--ca),
    /// the device's clock (--device-time), its X.509 profile, host name rules
    /// (SAN, then CN when there is no SAN), EKU, and a path built only from
    /// what the server sends. With --files DIR it checks a device's own files
    /// (certificate, key, anchor) offline.
    Doctor(doctor::Args),
    /// Run the guide's TLS server: answer every client with `hello`, show who came.
    ///
    /// Prints `listening on ADDR:PORT` first (with --port 0, the port the system
    /// picked), then one line per client: address, protocol version, cipher
    /// suite, client certificate subject (with --ca) and what it sent, or why its
    /// handshake failed, the fix, and what the device would print. Clients are
    /// served concurrently; one that stalls is dropped after --timeout seconds.
    ///
    /// --dtls serves DTLS 1.2 over UDP instead, like the guide's DTLS server:
    /// each address's first ClientHello gets a HelloVerifyRequest whose cookie is
    /// bound to that address and port, and only a client that answers it gets a
    /// handshake (and any state at all). Same lines, same --ca for mutual TLS.
    ///
    /// --count N exits after N clients: connections accepted over TCP whose
    /// handshake and exchange then ended, served or failed (with --dtls: clients
    /// that answered the cookie; it then keeps answering them for a moment, in
    /// case its reply was lost). The exit status is 0 if all of them were
    /// served, 1 if any failed. Without --count it serves until interrupted.
    ///
    /// A probe is not a failure: `devtls doctor` reads the server's hello and
    /// certificate and ends the handshake on purpose (user_canceled, or with
    /// --cert a Finished made to be refused); its line says `probe`.
    ///
    /// With --json, each line is one JSON object: first {"listening": ...}, then
    /// one per client.
    Serve(serve::Args),
    /// Connect to a TLS server like the device: verify it, send `hello`, show the reply.
    ///
    /// Verifies by default: against --ca (the one anchor the device would load),
    /// or the bundled Mozilla roots without --ca. The name checked (and sent as
    /// SNI) is --hostname, else the HOST part. Prints the reply, the protocol
    /// version, cipher suite and the server's chain. When the handshake fails it
    /// says what failed, the fix, and what the device prints for the same failure.
    ///
    /// --dtls speaks DTLS 1.2 over UDP instead, answering the server's
    /// HelloVerifyRequest from the same address and port and retransmitting lost
    /// flights; the message is sent again until the reply comes (DTLS does not
    /// resend data).
    ///
    /// Exit status: 0 the exchange completed, 1 the connection, handshake or
    /// verification failed, 2 unusable arguments or files.
    Connect(connect::Args),
    /// Pack device files into a ROMFS image, or list what an image holds.
    ///
    /// A ROMFS image is the read-only file system MicroPython (1.25 and later)
    /// mounts at /rom: deploy it once with `mpremote romfs deploy` and the
    /// board reads /rom/ca.der and the rest without copying files one by one.
    Romfs(romfs::Args),
    /// Run the whole device guide on this machine: certificates, a server, a
    /// verified client, mutual TLS and DTLS, and show what worked.
    ///
    /// Writes the guide's files (server.* and client.*, PEM for the PC and DER
    /// for the device) into --out, runs every exchange against a real server on
    /// 127.0.0.1 restricted to the device profile, prints a table of the
    /// outcomes and the MicroPython lines for the device. Exit status 1 if any
    /// step failed.
    Quickstart(quickstart::Args),
    /// Put a TLS gateway in front of devices (or in front of public servers, for devices).
    ///
    /// Inbound routes (public -> device): any client gets the full chain over
    /// TLS 1.2 or 1.3; the route is chosen by SNI, and the device is reached
    /// the way it expects: TLS 1.2 with its suites, its own certificate or
    /// fleet CA as the one anchor (--device-ca), its name (--device-name) and,
    /// when it demands mTLS, the gateway's client certificate. Outbound routes
    /// (device -> public): devices trust the gateway's certificate (or its CA)
    /// and the gateway verifies the public server with the Mozilla roots.
    /// Bytes pass as they are (HTTPS, MQTT over TLS, anything on TCP).
    ///
    /// Certificate files are re-read when they change (a renewal needs no
    /// restart); a new file that cannot be used is refused with a message and
    /// the one in use is kept. One line per connection: client, SNI, route,
    /// outcome (with the device's words when the device side fails), bytes,
    /// duration; --json for JSON lines.
    Gateway(gateway::Args),
    /// Print the shell completion script for bash, zsh, fish or powershell.
    ///
    /// Load it in the shell's start-up file, or install it where the shell
    /// looks for completions (see the examples).
    Completions(completions::Args),
    /// Print the manual page (roff), or write one page per command with --out.
    Man(man::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fleet(args) => fleet::run(args),
        Command::Acme(args) => acme::run(args),
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
        Command::Gateway(args) => gateway::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_is_described_and_the_tree_is_consistent() {
        let mut cli = Cli::command();
        cli.build();
        cli.clone().debug_assert();
        for command in cli.get_subcommands().filter(|c| c.get_name() != "help") {
            let about = command.get_about().map(ToString::to_string);
            assert!(
                about.is_some_and(|a| !a.is_empty()),
                "`devtls --help` lists {} without a description",
                command.get_name()
            );
            assert!(
                command.get_after_help().is_some() || command.has_subcommands(),
                "{} has no examples",
                command.get_name()
            );
        }
    }
}

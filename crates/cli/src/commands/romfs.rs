//! `devtls romfs build|ls`: device files as a ROMFS image, the read-only
//! file system a MicroPython board mounts at `/rom`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anstream::println;
use anyhow::bail;
use devtls_pki::files::{self, Output};
use devtls_pki::lint::{self, Finding, Options};
use devtls_pki::sniff::{self, Sniffed};
use devtls_romfs::{Entry, Tree};

use crate::snippets;
use serde::Serialize;
use time::OffsetDateTime;

use crate::{input, output};

// `devtls romfs`: described on `Command::Romfs` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls romfs build certs
  devtls romfs build certs -o certs.romfs --force
  devtls romfs ls certs.romfs --json")]
pub struct Args {
    #[command(subcommand)]
    command: RomfsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RomfsCommand {
    Build(BuildArgs),
    Ls(LsArgs),
}

/// Build a ROMFS image from a folder, byte for byte as `mpremote romfs build --no-mpy` does.
///
/// Every file and folder in DIR goes into the image, sorted by name; on the
/// board DIR/ca.der becomes /rom/ca.der. Certificates and keys in it are
/// first checked against the device profile (as `devtls lint` does): the
/// image is written either way, and the exit status is 1 if the device
/// would refuse one of them.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls romfs build certs                        # writes certs.romfs
  devtls romfs build certs -o device.romfs --force
  mpremote romfs deploy certs.romfs               # then, on the board: /rom/...")]
pub struct BuildArgs {
    /// The folder to pack.
    dir: PathBuf,
    /// The image to write [default: DIR.romfs, as mpremote names it].
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Overwrite an existing image.
    #[arg(long)]
    force: bool,
    /// Device profile the certificates and keys are checked against.
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

/// List the files and folders a ROMFS image holds, with their /rom paths.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls romfs ls certs.romfs
  devtls romfs ls certs.romfs --json")]
pub struct LsArgs {
    /// The image.
    image: PathBuf,
    /// Print the listing as JSON.
    #[arg(long)]
    json: bool,
}

/// Where the board mounts the image.
const MOUNT: &str = "/rom";

#[derive(Serialize)]
struct Built<'a> {
    image: String,
    size: usize,
    mount: &'static str,
    entries: &'a [Entry],
    findings: &'a [Finding],
}

#[derive(Serialize)]
struct Listed<'a> {
    image: String,
    size: usize,
    mount: &'static str,
    entries: &'a [Entry],
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        RomfsCommand::Build(args) => build(args),
        RomfsCommand::Ls(args) => ls(args),
    }
}

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    if !args.dir.is_dir() {
        bail!(
            "{}: {}; give the folder whose files go to /rom",
            args.dir.display(),
            match args.dir.exists() {
                true => "not a folder",
                false => "no such folder",
            }
        );
    }
    let tree = Tree::from_dir(&args.dir)?;
    let entries = tree.entries();
    if !entries.iter().any(|e| e.size.is_some()) {
        bail!(
            "{}: holds no files; put the device's files (e.g. ca.der, client.der, client.key.der) in it",
            args.dir.display()
        );
    }
    let findings = check(&args.dir, &tree, profile);
    let image = tree.image();
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.dir));
    files::write_all(&[Output::public(&out, image.clone())], args.force)?;
    let built = Built {
        image: out.display().to_string(),
        size: image.len(),
        mount: MOUNT,
        entries: &entries,
        findings: &findings,
    };
    if args.json {
        output::json(&built)?;
    } else {
        print_built(&built, &out);
    }
    Ok(if lint::has_errors(&findings) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let image = input::read(&args.image)?;
    let entries = devtls_romfs::list(&image).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; build one with `devtls romfs build DIR`",
            args.image.display()
        )
    })?;
    let listed = Listed {
        image: args.image.display().to_string(),
        size: image.len(),
        mount: MOUNT,
        entries: &entries,
    };
    if args.json {
        output::json(&listed)?;
    } else {
        output::heading(&format!(
            "{}: {} bytes, mounted at {MOUNT}:",
            listed.image, listed.size
        ));
        print_entries(&entries);
    }
    Ok(ExitCode::SUCCESS)
}

/// `DIR.romfs` beside DIR, as `mpremote romfs build DIR` writes it; for
/// `.` or `..`, named after the folder they are.
fn default_output(dir: &Path) -> PathBuf {
    let trimmed = dir.components().as_path();
    let real_name = || dir.canonicalize().ok()?.file_name().map(|n| n.to_owned());
    let (beside, mut name) = match (trimmed.file_name(), real_name()) {
        (Some(_), _) | (None, None) => (PathBuf::new(), trimmed.as_os_str().to_owned()),
        (None, Some(name)) if trimmed.as_os_str() == "." => (PathBuf::from(".."), name),
        (None, Some(name)) => (trimmed.join(".."), name),
    };
    name.push(".romfs");
    beside.join(name)
}

/// Lints the certificates, keys, CSRs and CRLs going into the image
/// together (a key is matched with its certificate), as the device will
/// load them; files are named by their path under DIR.
fn check(dir: &Path, tree: &Tree, profile: &'static devtls_pki::profile::Profile) -> Vec<Finding> {
    let mut names = Vec::new();
    let mut sniffed: Vec<Sniffed> = Vec::new();
    for (path, bytes) in tree.files() {
        // Scripts and other files are not for lint: only what sniffs as PKI material.
        if let Ok(found) = sniff::sniff(bytes) {
            names.push(dir.join(path).display().to_string());
            sniffed.push(found);
        }
    }
    let options = Options {
        profile,
        host: None,
        at: OffsetDateTime::now_utc(),
        role: None,
    };
    super::lint::lint_files(&names, &sniffed, &options)
}

fn print_built(built: &Built<'_>, out: &Path) {
    let files = built.entries.iter().filter(|e| e.size.is_some()).count();
    output::ok(&format!(
        "{}: {files} file{}, {} bytes, for {MOUNT} on the board",
        built.image,
        if files == 1 { "" } else { "s" },
        built.size
    ));
    print_entries(built.entries);
    for finding in built.findings {
        super::lint::print_finding(finding);
    }
    println!();
    output::heading("Put it on the board (replaces its ROMFS partition):");
    println!("mpremote romfs deploy {}", out.display());
    let example = load_example(built.entries);
    if !example.is_empty() {
        println!();
        output::heading(&format!("On the device, load the files from {MOUNT}:"));
        print!("{example}");
    }
}

fn print_entries(entries: &[Entry]) {
    let width = entries
        .iter()
        .map(|e| e.path.len() + MOUNT.len() + 2)
        .max()
        .unwrap_or(0);
    for e in entries {
        match e.size {
            Some(size) => println!("  {:width$} {size} bytes", format!("{MOUNT}/{}", e.path)),
            None => println!("  {:width$} folder", format!("{MOUNT}/{}/", e.path)),
        }
    }
}

/// The MicroPython lines for what the image holds: the guide's own-identity
/// pair (`STEM.der` + `STEM.key.der`: a `client` verifies its server, a
/// `server` its clients when it has an anchor) and an anchor (`ca.der`, or
/// `server.der` for a client that trusts a self-signed server). Nothing
/// when the image holds neither.
fn load_example(entries: &[Entry]) -> String {
    let has = |path: &str| entries.iter().any(|e| e.path == path && e.size.is_some());
    let rom = |path: &str| format!("{MOUNT}/{path}");
    let pair = ["client", "server"].into_iter().find_map(|stem| {
        let (cert, key) = (format!("{stem}.der"), format!("{stem}.key.der"));
        (has(&cert) && has(&key)).then(|| (stem, rom(&cert), rom(&key)))
    });
    let anchor = ["ca.der", "server.der"]
        .into_iter()
        .map(rom)
        .find(|a| has(&a[MOUNT.len() + 1..]) && pair.as_ref().is_none_or(|(_, c, _)| c != a));
    if pair.is_none() && anchor.is_none() {
        return String::new();
    }
    snippets::rom_loading(
        pair.as_ref().map(|(_, c, k)| (c.as_str(), k.as_str())),
        pair.as_ref().is_some_and(|(stem, _, _)| *stem == "server"),
        anchor.as_deref(),
    )
}

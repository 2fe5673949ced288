//! `devtls convert`: PEM <-> DER for certificates, keys, CSRs and CRLs.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::ValueEnum;
use devtls_pki::convert;
use devtls_pki::files::{self, Output};
use devtls_pki::sniff::Encoding;
use serde::Serialize;

use crate::{input, output};

// `devtls convert`: described on `Command::Convert` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls convert server.crt                  # -> server.der
  devtls convert server.key                  # -> server.key.der
  devtls convert privkey.pem -o device.key.der
  devtls convert enc.key --password-file pw.txt
  devtls convert server.der --to pem         # -> server.crt")]
pub struct Args {
    /// The file to convert.
    input: PathBuf,
    /// Where to write [default: the input name with the extension swapped].
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Output encoding [default: the other one].
    #[arg(long, value_enum)]
    to: Option<Format>,
    /// A file whose first line is the password of an encrypted key.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Overwrite the output file.
    #[arg(long)]
    force: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Der,
    Pem,
}

#[derive(Serialize)]
struct Written {
    input: String,
    output: String,
    kind: &'static str,
    from: Encoding,
    to: Encoding,
    decrypted: bool,
    dropped_trailing_bytes: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = &args.input;
    let raw = input::read(path)?;
    let sniffed = input::sniff_bytes(path, &raw)?;
    let item = convert::single_item(&sniffed).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let from = item.encoding;
    let to = match args.to {
        Some(Format::Der) => Encoding::Der,
        Some(Format::Pem) => Encoding::Pem,
        None if from == Encoding::Pem => Encoding::Der,
        None => Encoding::Pem,
    };
    let password = if convert::needs_password(&sniffed) {
        Some(password(path, args.password_file.as_deref())?)
    } else {
        None
    };
    let converted = convert::convert(&raw, &sniffed, to, password.as_deref().map(str::as_bytes))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let out = match &args.output {
        Some(o) => o.clone(),
        None => convert::output_path(path, converted.kind, to),
    };
    if same_file(path, &out) {
        bail!(
            "{}: the output would overwrite the input; give another name with -o",
            out.display()
        );
    }
    let file = if converted.secret {
        Output::secret(&out, converted.bytes.clone())
    } else {
        Output::public(&out, converted.bytes.clone())
    };
    files::write_all(&[file], args.force)?;

    let written = Written {
        input: path.display().to_string(),
        output: out.display().to_string(),
        kind: converted.kind.describe(),
        from,
        to,
        decrypted: converted.decrypted,
        dropped_trailing_bytes: converted.dropped_trailing_bytes,
    };
    if args.json {
        output::json(&written)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::ok(&format!(
        "{} {} -> {} ({}{})",
        written.kind,
        written.input,
        written.output,
        encoding_name(to),
        if converted.secret { ", mode 0600" } else { "" }
    ));
    if converted.decrypted {
        output::warn(&format!(
            "{} holds the key unencrypted (the device cannot load encrypted keys); keep it private",
            written.output
        ));
    }
    if converted.dropped_trailing_bytes > 0 {
        println!(
            "  left out {} trailing byte(s) after the structure (canonical DER; the device loads either)",
            converted.dropped_trailing_bytes
        );
    }
    // A key written for the device: say now if the device will not load it.
    if converted.secret && to == Encoding::Der {
        let profile = devtls_pki::profile::DEFAULT;
        if let Ok(out_sniffed) = devtls_pki::sniff::sniff(&converted.bytes) {
            if let Err(refusal) = devtls_pki::rules::keys::load_key(profile, &out_sniffed) {
                output::warn(&format!(
                    "the {} device will not load {} ({}): {}",
                    profile.name,
                    written.output,
                    refusal.device_says(),
                    refusal.why()
                ));
            }
        }
    }
    if to == Encoding::Der {
        println!("  copy to the device: mpremote cp {} :", written.output);
    }
    Ok(ExitCode::SUCCESS)
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Der => "DER",
        Encoding::Pem => "PEM",
    }
}

/// The password: the first line of --password-file, else a prompt on a terminal.
fn password(path: &Path, file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(file) = file {
        let bytes = input::read(file)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            anyhow!(
                "{}: the password file is not text; put the password on its first line",
                file.display()
            )
        })?;
        return Ok(text.lines().next().unwrap_or("").to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "{}: is an encrypted private key and there is no terminal to ask for its password; \
             pass --password-file FILE (the password on its first line)",
            path.display()
        );
    }
    rpassword::prompt_password(format!("Password for {}: ", path.display()))
        .map_err(|e| anyhow!("{}: could not read the password: {e}", path.display()))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

//! `devtls anchor HOST[:PORT]`: the one certificate a device must trust to
//! reach a server, chosen and explained as the guide does, written as DER.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anstream::println;
use anyhow::{bail, Context};
use clap::ValueEnum;
use devtls_net::fetch::{self, Target};
use devtls_pki::chain::{Cert, Chain, Choice, Origin, Trust};
use devtls_pki::device_error::flags;
use devtls_pki::files::{self, Output};
use devtls_pki::profile::Profile;
use devtls_pki::roots::RootSet;
use devtls_pki::verify;
use serde::Serialize;
use time::OffsetDateTime;

use crate::input;
use crate::output::{self, Exit};
use crate::snippets::{self, DeviceFiles};

// `devtls anchor`: described on `Command::Anchor` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls anchor api.example.com
  devtls anchor mqtt.example.com:8883 -o mqtt-ca.der
  devtls anchor api.example.com --trust intermediate
  devtls anchor --chain fullchain.pem --roots my-roots.pem --json

Exit status: 0 an anchor that works with this server was written, 1 none
could be written or the one written will not work, 2 unusable input or
the server could not be reached.")]
pub struct Args {
    /// The server, HOST or HOST:PORT (port 443 by default).
    #[arg(required_unless_present = "chain")]
    target: Option<String>,
    /// Name to send as SNI [default: HOST].
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Which certificate to trust [default: root, or intermediate when the server does not send it].
    #[arg(long, value_enum)]
    trust: Option<TrustArg>,
    /// Where to write the anchor (DER).
    #[arg(short = 'o', long = "out", default_value = "ca.der")]
    out: PathBuf,
    /// A PEM bundle of roots to use instead of the bundled Mozilla set.
    #[arg(long, value_name = "FILE")]
    roots: Option<PathBuf>,
    /// Read the chain from a saved chain or fullchain file instead of connecting.
    #[arg(long, value_name = "FILE", conflicts_with = "target")]
    chain: Option<PathBuf>,
    /// Warn when the anchor expires within this many years of service.
    #[arg(long, default_value_t = 10, value_name = "YEARS")]
    service_years: u32,
    /// Device profile the chain is checked against.
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// Seconds to wait for the server.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// The server speaks DTLS (UDP).
    #[arg(long)]
    dtls: bool,
    /// Overwrite the output file.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TrustArg {
    Root,
    Intermediate,
    Leaf,
}

impl From<TrustArg> for Trust {
    fn from(t: TrustArg) -> Self {
        match t {
            TrustArg::Root => Trust::Root,
            TrustArg::Intermediate => Trust::Intermediate,
            TrustArg::Leaf => Trust::Leaf,
        }
    }
}

#[derive(Serialize)]
struct Written {
    trust: Trust,
    file: String,
    subject: String,
    sha256: String,
    not_after: String,
    works: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    source: String,
    roots: &'a str,
    chain: &'a Chain,
    choices: &'a [Choice],
    anchor: Option<Written>,
    warnings: &'a [String],
}

/// Parses `HOST[:PORT]` (IPv6 in brackets) with a default port.
pub fn target(
    text: &str,
    default_port: u16,
    sni: Option<String>,
    timeout: u64,
) -> anyhow::Result<Target> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .with_context(|| format!("'{text}': an IPv6 address needs its closing ']'"))?;
        (h.to_string(), p.strip_prefix(':'))
    } else if text.matches(':').count() == 1 {
        let (h, p) = text.split_once(':').unwrap_or((text, ""));
        (h.to_string(), Some(p))
    } else {
        (text.to_string(), None)
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("'{text}': the port must be a number from 1 to 65535"))?,
        None => default_port,
    };
    if host.is_empty() {
        bail!("'{text}': give a host name or address, e.g. api.example.com:443");
    }
    Ok(Target {
        host,
        port,
        sni,
        timeout: Duration::from_secs(timeout.max(1)),
    })
}

/// Loads `--roots FILE` or the bundled set.
pub fn root_set(path: Option<&Path>) -> anyhow::Result<RootSet> {
    match path {
        None => Ok(RootSet::bundled()),
        Some(p) => {
            let bytes = input::read(p)?;
            RootSet::from_bundle(&bytes, &format!("roots file {}", p.display())).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}; give a PEM bundle of root certificates",
                    p.display()
                )
            })
        }
    }
}

/// Prints a chain the way the guide reads `openssl s_client -showcerts`:
/// index, subject (s:), issuer (i:), key type (a:), validity (v:).
pub fn print_chain(title: &str, certs: &[Cert], first_index: usize) {
    output::lines(&devtls_net::doctor::chain_lines(title, certs, first_index));
}

fn origin_words(chain: &Chain, o: Origin, roots: &RootSet) -> String {
    match o {
        Origin::Presented(i) => format!("{i} (sent by the server)"),
        Origin::Fetched(i) => format!(
            "\"{}\" (not sent by the server; downloaded from its issuer URL)",
            chain.fetched[i].short_name()
        ),
        Origin::Root => format!(
            "\"{}\" (from the {})",
            chain.cert(o).short_name(),
            roots.source
        ),
    }
}

/// What makes the device fail on this server's chain with `anchor` as its
/// trust anchor: the device's own verdict (pki's rules, without the host
/// name, which `anchor` does not know), each naming the certificate and the
/// rule. Path failures are left to the anchor choices, which explain them.
pub fn profile_warnings(profile: &Profile, chain: &Chain, anchor: &Cert) -> Vec<String> {
    let presented: Vec<Vec<u8>> = chain.presented.iter().map(|c| c.der.clone()).collect();
    let now = OffsetDateTime::now_utc();
    let verdict = verify::verify_without_name(&verify::Input {
        profile,
        presented: &presented,
        anchor: &anchor.der,
        hostname: None,
        time: now,
        now,
        peer: verify::PeerRole::Server,
        target: None,
    });
    verdict
        .failures
        .iter()
        .filter(|f| f.kind != verify::Kind::NotTrusted)
        .map(|f| {
            let who = f.subject.as_deref().unwrap_or("the server's chain");
            format!(
                "{}{}; the {} device fails on this path ({})",
                if f.why.contains(who) {
                    String::new()
                } else {
                    format!("{who}: ")
                },
                f.why,
                profile.name,
                f.device_says.replace('\n', " ")
            )
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile(&args.profile)?;
    let roots = root_set(args.roots.as_deref())?;
    let (source, presented, target) = match (&args.chain, &args.target) {
        (Some(path), _) => {
            let sniffed = input::sniff(path)?;
            let certs: Vec<Vec<u8>> = sniffed.certificates().map(|i| i.der.clone()).collect();
            if certs.is_empty() {
                bail!(
                    "{}: holds no certificate; give the server's chain or fullchain file",
                    path.display()
                );
            }
            (path.display().to_string(), certs, None)
        }
        (None, Some(text)) => {
            let t = target(text, 443, args.sni.clone(), args.timeout)?;
            let chain = if args.dtls {
                fetch::fetch_chain_dtls(&t)
            } else {
                fetch::fetch_chain(&t)
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            (t.display(), chain, Some(t))
        }
        (None, None) => bail!("give HOST[:PORT] or --chain FILE"),
    };
    let mut chain =
        Chain::build(&presented, &[], &roots).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    // The server did not send an issuer: download it from the caIssuers URL, as browsers do.
    let mut fetched = Vec::new();
    let mut fetch_errors = Vec::new();
    if target.is_some() {
        for _ in 0..3 {
            let Some(top) = chain.missing_issuer() else {
                break;
            };
            let Some(url) = top.ca_issuers.first().cloned() else {
                break;
            };
            match fetch::fetch_issuer(&url, Duration::from_secs(args.timeout.max(1))) {
                Ok(der) if !fetched.contains(&der) => fetched.push(der),
                Ok(_) => break,
                Err(e) => {
                    fetch_errors.push(e);
                    break;
                }
            }
            chain = Chain::build(&presented, &fetched, &roots)
                .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        }
    }

    let choices = chain.choices();
    let mut warnings: Vec<String> = Vec::new();
    let host_hint = target.as_ref().map_or("HOST".to_string(), |t| t.display());

    let wanted: Option<Trust> = args.trust.map(Into::into);
    let chosen: Option<&Choice> = match wanted {
        Some(t) => choices.iter().find(|c| c.trust == t),
        None => choices.iter().find(|c| c.works),
    };
    if !chain.anchored {
        if chain.self_signed_leaf {
            warnings.push(format!(
                "the server's certificate is self-signed and not in the {}: trust it only if you control the server (or check its fingerprint out of band)",
                roots.source
            ));
        } else {
            let top = chain.cert(chain.path[chain.path.len() - 1]);
            warnings.push(format!(
                "no root in the {} anchors this chain (its top issuer is \"{}\"): check the anchor's fingerprint with the CA before shipping it",
                roots.source,
                top.issuer()
            ));
        }
    }
    if chain.server_omits_intermediate() && !chain.self_signed_leaf {
        warnings.push(format!(
            "the server does not send its intermediate: with the root as anchor the device will fail \
             ({}); trust the intermediate, or configure the server to send its full chain",
            flags::value_error(flags::NOT_TRUSTED).replace('\n', " ")
        ));
    }
    for e in &fetch_errors {
        warnings.push(format!("could not download the missing issuer: {e}"));
    }
    if let Some(choice) = chosen {
        warnings.extend(profile_warnings(profile, &chain, chain.cert(choice.origin)));
    }

    let mut written = None;
    let mut failed: Option<String> = None;
    match chosen {
        None => {
            failed = Some(match (wanted, chain.missing_issuer()) {
                (Some(t), _) => format!(
                    "there is no {} to trust in this chain ({})",
                    t.name(),
                    choices.iter().map(|c| c.trust.name()).collect::<Vec<_>>().join(", ")
                ),
                (None, Some(top)) => format!(
                    "the server does not send the issuer of \"{}\" (\"{}\") and it could not be downloaded: \
                     get that intermediate from the CA's site and check it with `devtls anchor --chain`, \
                     or configure the server to send its full chain",
                    top.short_name(),
                    top.issuer()
                ),
                (None, None) => "no certificate in this chain works as the device's anchor".into(),
            })
        }
        Some(choice) => {
            let cert = chain.cert(choice.origin).clone();
            if !choice.works && choice.trust == Trust::Leaf {
                failed = Some(choice.reason.clone());
            } else {
                if !choice.works {
                    warnings.push(format!("the device will fail with this anchor: {}", choice.reason));
                }
                match choice.trust {
                    Trust::Intermediate => warnings.push(
                        "an intermediate is rotated by its CA far more often than a root: refresh ca.der when it changes".into(),
                    ),
                    Trust::Leaf => warnings.push(
                        "a pinned leaf changes on every renewal (roughly every 90 days for Let's Encrypt): \
                         push the new one to every device in lockstep".into(),
                    ),
                    Trust::Root => {}
                }
                let horizon = OffsetDateTime::now_utc() + time::Duration::days(365 * args.service_years as i64 + args.service_years as i64 / 4);
                if cert.not_after() < horizon {
                    warnings.push(format!(
                        "the anchor expires on {}, within the {}-year service life: devices still in the field then will fail \
                         ({}); plan to update ca.der before that",
                        cert.not_after().date(),
                        args.service_years,
                        flags::text(flags::EXPIRED)
                    ));
                }
                files::write_all(&[Output::public(&args.out, cert.der.clone())], args.force)?;
                written = Some(Written {
                    trust: choice.trust,
                    file: args.out.display().to_string(),
                    subject: cert.subject().to_string(),
                    sha256: cert.info.sha256.clone(),
                    not_after: devtls_net::doctor::fmt_time(cert.not_after()),
                    works: choice.works,
                });
            }
        }
    }

    let works = written.as_ref().is_some_and(|w| w.works);
    if args.json {
        output::json(&Report {
            source,
            roots: &roots.source,
            chain: &chain,
            choices: &choices,
            anchor: written,
            warnings: &warnings,
        })?;
    } else {
        print_chain(
            &format!("Certificate chain ({source})"),
            &chain.presented,
            0,
        );
        println!();
        let path: Vec<String> = chain
            .path
            .iter()
            .map(|o| origin_words(&chain, *o, &roots))
            .collect();
        output::heading("Path to a trust anchor");
        println!("  {}", path.join("\n  -> "));
        if !chain.anchored {
            println!("  (no root of the {} at the top)", roots.source);
        }
        for i in &chain.unused {
            println!("  ({i} is on no path from the leaf: the server sends it needlessly)");
        }
        println!();
        output::heading("Which certificate the device can trust");
        for c in &choices {
            println!(
                "  {:<12} {}  {}",
                c.trust.name(),
                if c.works { "works " } else { "FAILS " },
                c.reason
            );
        }
        println!();
        for w in &warnings {
            output::warn(w);
        }
        if let Some(w) = &written {
            output::ok(&format!(
                "wrote {} ({} as the anchor, DER)",
                w.file,
                w.trust.name()
            ));
            println!("  subject  {}", w.subject);
            println!("  SHA-256  {}", w.sha256);
            println!("  expires  {}", w.not_after);
            println!();
            output::heading("Copy it to the device and load it as the one trust anchor:");
            print!("{}", snippets::copy_commands(std::slice::from_ref(&w.file)));
            let host = target.as_ref().map_or("api.example.com".to_string(), |t| {
                t.sni.clone().unwrap_or(t.host.clone())
            });
            let port = target.as_ref().map_or(443, |t| t.port);
            let anchor_name = Path::new(&w.file)
                .file_name()
                .map_or(w.file.clone(), |n| n.to_string_lossy().into_owned());
            print!(
                "{}",
                snippets::client(
                    &DeviceFiles {
                        cert: None,
                        key: None,
                        anchor: Some(&anchor_name)
                    },
                    &host,
                    port
                )
            );
            println!();
            println!(
                "Check it as the device would: devtls doctor {host_hint} --ca {}",
                w.file
            );
        }
    }
    if let Some(why) = failed {
        return Err(Exit {
            code: 1,
            message: format!("no anchor written: {why}"),
        }
        .into());
    }
    Ok(if works {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn targets_parse_with_default_port_and_ipv6() {
        let t = target("api.example.com", 443, None, 5).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("api.example.com", 443));
        let t = target("[::1]:8883", 443, None, 5).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8883));
        assert_eq!(t.display(), "[::1]:8883");
        assert!(target("host:0", 443, None, 5).is_err());
        assert!(target(":443", 443, None, 5).is_err());
    }
}

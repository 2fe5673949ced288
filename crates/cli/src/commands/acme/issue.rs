//! `devtls acme issue`: order a certificate for the device and write it in
//! certbot's layout plus the device's DER files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anstream::println;
use clap::ValueEnum;
use devtls_acme::account::{self, NewAccountOptions};
use devtls_acme::challenge::Method;
use devtls_acme::device::{self, Level, Note};
use devtls_acme::issue::Report;
use devtls_acme::lineage::{self, Config};
use devtls_pki::lint::Severity;
use serde::Serialize;

use super::{fail, runtime};
use crate::output::{self, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls acme issue --domain cam.example.com --email me@example.com
  devtls acme issue --domain cam.example.com --webroot /var/www/html
  devtls acme issue --domain cam.example.com --challenge dns-01 --dns-hook ./dns-hook.sh
  devtls acme issue --domain cam.example.com --challenge dns-01 --manual
  devtls acme issue --domain cam.example.com --anchor isrg-root-x2.der --key p384
  devtls acme issue --domain cam.example.com --server letsencrypt-staging

The dns-01 hook is run as `sh -c 'CMD \"$@\"' - add NAME VALUE` and later
`... remove NAME VALUE` (NAME is _acme-challenge.DOMAIN); it must exit 0 once
the TXT record is published.

Exit status: 0 written and the device accepts the files, 1 the CA refused or
a challenge failed (one line saying why and what to do), or the device would
refuse a file; 2 unusable input.")]
pub struct Args {
    /// A DNS name for the certificate (repeat for more; the first names the lineage).
    #[arg(long = "domain", value_name = "NAME")]
    domains: Vec<String>,
    /// An IP address for the certificate (needs --profile shortlived at Let's Encrypt).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,
    /// The key to make (it never leaves this machine).
    #[arg(long, value_enum, default_value = "p256")]
    key: KeyArg,
    /// The CA: letsencrypt, letsencrypt-staging or an ACME directory URL (https://).
    #[arg(long, default_value = "letsencrypt")]
    server: String,
    /// A PEM bundle to trust for the CA's own HTTPS (private CAs, test servers).
    #[arg(long, value_name = "FILE")]
    server_ca: Option<PathBuf>,
    /// Contact e-mail for the account (expiry and policy notices).
    #[arg(long, value_name = "E")]
    email: Option<String>,
    /// External Account Binding key id (CAs that require one, e.g. ZeroSSL).
    #[arg(long, value_name = "K", requires = "eab_hmac")]
    eab_kid: Option<String>,
    /// External Account Binding HMAC key (base64url).
    #[arg(long, value_name = "H", requires = "eab_kid")]
    eab_hmac: Option<String>,
    /// The CA's certificate profile.
    #[arg(long, value_enum)]
    profile: Option<CaProfile>,
    /// How to prove control of the names.
    #[arg(long, value_enum, default_value = "http-01")]
    challenge: ChallengeArg,
    /// http-01: the port devtls's own listener uses (the CA connects to 80).
    #[arg(long, default_value_t = 80, value_name = "PORT")]
    http_port: u16,
    /// tls-alpn-01: the port devtls's own listener uses (the CA connects to 443).
    #[arg(long, default_value_t = 443, value_name = "PORT")]
    tls_port: u16,
    /// The address devtls's challenge listeners bind.
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDR")]
    bind: IpAddr,
    /// http-01: write the answers under this web root instead of listening.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["dns_hook", "manual"])]
    webroot: Option<PathBuf>,
    /// dns-01: the command that adds and removes the TXT record.
    #[arg(long, value_name = "CMD", conflicts_with = "manual")]
    dns_hook: Option<String>,
    /// dns-01: print the TXT record and wait for Enter.
    #[arg(long)]
    manual: bool,
    /// The root the devices already carry: write the CA's chain that ends there, and it as ca.der.
    #[arg(long, value_name = "FILE")]
    anchor: Option<PathBuf>,
    /// The folder for accounts, live/, archive/ and renewal/.
    #[arg(long, default_value = "acme")]
    dir: PathBuf,
    /// The device profile the files are checked against.
    #[arg(long, default_value = "openmv", value_name = "NAME")]
    device_profile: String,
    /// Order a new certificate even though DIR already has this one.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyArg {
    P256,
    P384,
    Rsa2048,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CaProfile {
    Classic,
    Tlsserver,
    Shortlived,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ChallengeArg {
    #[value(name = "http-01")]
    Http01,
    #[value(name = "dns-01")]
    Dns01,
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
}

#[derive(Serialize)]
struct Json<'a> {
    account: &'a str,
    account_created: bool,
    before_ordering: &'a [Note],
    #[serde(flatten)]
    report: &'a Report,
}

fn method(args: &Args) -> anyhow::Result<Method> {
    let bad = |m: &str| -> anyhow::Error {
        Exit {
            code: 2,
            message: m.to_string(),
        }
        .into()
    };
    Ok(match args.challenge {
        ChallengeArg::Http01 => {
            if args.dns_hook.is_some() || args.manual {
                return Err(bad("--dns-hook and --manual go with --challenge dns-01"));
            }
            match &args.webroot {
                Some(dir) => Method::Webroot(std::path::absolute(dir)?),
                None => Method::Http01 {
                    bind: args.bind,
                    port: args.http_port,
                },
            }
        }
        ChallengeArg::Dns01 => match (&args.dns_hook, args.manual) {
            (Some(cmd), false) => Method::DnsHook(cmd.clone()),
            (None, true) => Method::DnsManual,
            _ => {
                return Err(bad(
                    "--challenge dns-01 needs --dns-hook CMD (called with add/remove NAME VALUE) or --manual",
                ))
            }
        },
        ChallengeArg::TlsAlpn01 => {
            if args.webroot.is_some() || args.dns_hook.is_some() || args.manual {
                return Err(bad(
                    "tls-alpn-01 uses devtls's own listener (--tls-port): leave out --webroot, --dns-hook and --manual",
                ));
            }
            Method::TlsAlpn01 {
                bind: args.bind,
                port: args.tls_port,
            }
        }
    })
}

fn absolute(p: &Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    Ok(p.as_deref().map(std::path::absolute).transpose()?)
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::super::profile(&args.device_profile)?;
    // pki's one rule for DNS names (an IDN becomes its A-labels); the
    // refusal shows the name escaped, never raw (here, not in clap, whose
    // message would echo it raw).
    args.domains = args
        .domains
        .iter()
        .map(|d| {
            super::super::new::dns_name(d).map_err(|why| Exit {
                code: 2,
                message: format!("--domain {why}"),
            })
        })
        .collect::<Result<_, _>>()?;
    let first = match (args.domains.first(), args.ips.first()) {
        (Some(d), _) => d.clone(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => {
            return Err(Exit {
                code: 2,
                message: "give at least one --domain NAME (or --ip ADDR)".into(),
            }
            .into())
        }
    };
    let name = lineage::name_for(&first).map_err(fail)?;
    // One writer at a time per folder: a second issue (or a renew) waits,
    // so two runs never both create an account or both swap live/.
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot be created ({e})", args.dir.display()))?;
    let _lock = super::take_lock(&args.dir, "`devtls acme issue` or `renew`")?;
    if lineage::config_path(&args.dir, &name).exists() && !args.force {
        return Err(Exit {
            code: 2,
            message: format!(
                "{} already holds {name}: `devtls acme renew --dir {}` renews it when due; --force orders a new one now",
                args.dir.display(),
                args.dir.display()
            ),
        }
        .into());
    }
    let url = devtls_acme::server::directory_url(&args.server).map_err(fail)?;
    let config = Config {
        name,
        server: url.clone(),
        server_ca: absolute(&args.server_ca)?,
        domains: args
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        ips: args.ips.clone(),
        key: format!("{:?}", args.key).to_ascii_lowercase(),
        profile: args.profile.map(|p| format!("{p:?}").to_ascii_lowercase()),
        challenge: (&method(&args)?).into(),
        anchor: absolute(&args.anchor)?,
        device_profile: profile.name.to_string(),
    };
    if let Some(a) = &config.anchor {
        devtls_acme::issue::anchor_set(a).map_err(fail)?;
    }
    let new = NewAccountOptions {
        email: args.email.clone(),
        eab: args.eab_kid.clone().zip(args.eab_hmac.clone()),
    };
    let rt = runtime()?;
    let session = rt
        .block_on(account::open(
            &args.dir,
            &url,
            config.server_ca.as_deref(),
            &new,
        ))
        .map_err(fail)?;
    let notes = device::before_ordering(
        profile,
        &config.ips,
        config.profile.as_deref(),
        &session.directory.profiles,
    );
    if !args.json {
        output::heading(&format!(
            "Before ordering: what the {} device can do with this certificate",
            profile.name
        ));
        for n in &notes {
            println!(
                "  {} {}",
                if n.level == Level::Refuse {
                    "REFUSED"
                } else {
                    "-"
                },
                n.text
            );
        }
        println!();
    }
    if let Some(refused) = notes.iter().find(|n| n.level == Level::Refuse) {
        return Err(Exit {
            code: 2,
            message: format!("not ordered: {}", refused.text),
        }
        .into());
    }
    let report = rt
        .block_on(devtls_acme::issue::run(&session, &args.dir, &config, None))
        .map_err(fail)?;
    let device_refuses = report
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error);
    if args.json {
        output::json(&Json {
            account: &session.stored.id,
            account_created: session.created,
            before_ordering: &notes,
            report: &report,
        })?;
    } else {
        print_report(&session, &report, &args.dir);
    }
    Ok(if device_refuses {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(session: &account::Session, r: &Report, dir: &Path) {
    println!(
        "account  {} ({}, {})",
        session.stored.id,
        if session.created { "created" } else { "reused" },
        session.file.display()
    );
    if r.bad_nonces > 0 {
        println!(
            "the CA refused {} nonce(s); each request was sent again",
            r.bad_nonces
        );
    }
    for c in &r.cleanup {
        output::warn(&format!("cleaning up a challenge: {c}"));
    }
    output::ok(&format!(
        "certificate {} (serial {}), valid until {}",
        r.name, r.serial, r.not_after
    ));
    if r.chains_offered > 1 {
        println!(
            "  the CA offered {} chains; wrote {} ({})",
            r.chains_offered,
            r.chain_written,
            if r.chain_written == 0 {
                "its default"
            } else {
                "the one ending at --anchor"
            }
        );
    }
    println!("  {}/", r.live.display());
    println!("    privkey.pem cert.pem chain.pem fullchain.pem   (certbot's layout, for servers and tools)");
    println!(
        "    cert.der privkey.der ca.der                     (for the device; privkey.der is 0600)"
    );
    println!(
        "  ca.der is the {} \"{}\": {}",
        r.anchor.trust.name(),
        r.anchor.subject,
        r.anchor.reason
    );
    if !r.anchor.anchored {
        output::warn("the chain ends at no root of the bundled Mozilla set (a private or test CA): check ca.der's fingerprint with the CA, or give --anchor");
    }
    for f in &r.findings {
        let line = format!("{}: {} [{}]; {}", f.file, f.message, f.id, f.fix);
        match f.severity {
            Severity::Error => output::warn(&format!("the device will refuse {line}")),
            Severity::Warning => output::warn(&line),
            Severity::Note => println!("  note: {line}"),
        }
    }
    println!();
    println!(
        "Renew from a timer: devtls acme renew --dir {} --print-timer",
        dir.display()
    );
}

//! `devtls fleet serve`: the renewal service (devtls-renewal) on a socket.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use devtls_net::config::Identity;
use devtls_renewal::decide::Policy;
use devtls_renewal::identity;
use devtls_renewal::own_cert::{self, OwnCert};
use devtls_renewal::server::{self, Options, Served};
use devtls_renewal::service::Service;

use super::{token::TokenArgs, DirArg};

/// Serve renewals: devices renew their own certificates over mutual TLS.
///
/// HTTPS (TLS 1.2, the device profile's suites) on EST's endpoints
/// (/.well-known/est/cacerts, serverkeygen, simplereenroll). A device
/// presents its current fleet certificate; inside its renewal window it gets
/// a new key and certificate (recorded pending), and its first connection
/// with the new certificate confirms it (the old one is then superseded, or
/// revoked with --revoke-old). The service's own certificate is issued by the
/// fleet CA on first start (fleet/service/) and issued again, while serving,
/// when two thirds of its lifetime have passed. Protocol: docs/renewal.md.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls fleet serve --name renew.example.lan
  devtls fleet serve --bind 192.168.1.10 --port 8443 --revoke-old --grace 7d
  devtls fleet serve --cert server.der --key server.key.der --json
  devtls fleet serve --bind 127.0.0.1 --proxy 127.0.0.1   (behind nginx stream on this machine)")]
pub struct ServeArgs {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    token: TokenArgs,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// The port (0: any free one).
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// A DNS name or IP address devices reach the service by (repeatable):
    /// goes into the service's certificate made on first start [default:
    /// the --bind address, or localhost and 127.0.0.1 for 0.0.0.0].
    #[arg(long, value_name = "HOST")]
    name: Vec<String>,
    /// The service's certificate instead of one issued by the fleet CA
    /// (devices must be able to verify it with ca.der).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The key of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// When a certificate may be renewed, counted from its start (e.g. 60d)
    /// [default: after two thirds of its lifetime].
    #[arg(long, value_name = "SPAN", value_parser = span)]
    renew_after: Option<i64>,
    /// Let a certificate that expired less than SPAN ago still renew (e.g. 7d).
    #[arg(long, value_name = "SPAN", value_parser = span)]
    grace: Option<i64>,
    /// Revoke (not only supersede) the old certificate once the device
    /// confirms its new one; it is in the next `fleet crl`.
    #[arg(long)]
    revoke_old: bool,
    /// Days new certificates are valid [default: as long as the old one].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: Option<u32>,
    /// The device profile the TLS side is restricted to (always TLS 1.2).
    #[arg(long, default_value = "openmv")]
    profile: String,
    /// Connections open at once; when full, the oldest connection that has
    /// not finished its handshake is closed to make room (lowered to what
    /// the open-files limit allows).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Connections at once from one IP address that have not finished their
    /// handshake (one more closes the address's oldest), and connections at
    /// once of one device certificate (more get 503). Raise it for many
    /// devices behind one NAT address renewing at the same moment.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_per_address: u32,
    /// The address of a TCP proxy in front (nginx `stream`, HAProxy in TCP
    /// mode), which brings every device from its one address: its
    /// connections are exempt from the per-address bounds (unfinished
    /// connections, failed-handshake budget); bound each device address at
    /// the proxy instead. Repeat for several.
    #[arg(long, value_name = "IP")]
    proxy: Vec<IpAddr>,
    /// One JSON line per request instead of text.
    #[arg(long)]
    json: bool,
}

/// Raises the soft open-files limit toward `want` connections (plus 64
/// for the inventory, logs and the like; the hard limit caps it) and
/// returns how many connections fit, saying so when fewer than `want`.
fn connections_allowed(want: usize) -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write `lim`.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return want;
        }
        let needed = (want as libc::rlim_t).saturating_add(64);
        if lim.rlim_cur < needed {
            let raised = libc::rlimit {
                rlim_cur: needed.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = raised.rlim_cur;
            }
        }
        let fit = (lim.rlim_cur.saturating_sub(64) as usize).clamp(1, want);
        if fit < want {
            eprintln!(
                "note: the open-files limit ({}) allows {fit} connections, not {want}; raise it (ulimit -n) for more",
                lim.rlim_cur
            );
        }
        fit
    }
    #[cfg(not(unix))]
    want
}

fn span(s: &str) -> Result<i64, String> {
    devtls_fleet::parse_span(s).map(|d| d.whole_seconds())
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let profile = super::super::profile(&a.profile)?;
    let fleet = super::open_signing(&a.dir, &a.token)?;
    let dir = fleet.dir().to_path_buf();
    let policy = Policy {
        renew_after: a.renew_after,
        grace: a.grace,
        revoke_old: a.revoke_old,
        lifetime: a.days.map(|d| i64::from(d) * 86400),
    };
    let service = Arc::new(Service::new(fleet, policy, profile)?);
    // Only a certificate the service made itself is renewed by it.
    let mut renew_own = false;
    let identity = match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => {
            let c = std::fs::read(cert).with_context(|| format!("{}", cert.display()))?;
            let k = std::fs::read(key).with_context(|| format!("{}", key.display()))?;
            Identity::from_bytes(&c, &k, profile)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?
        }
        _ => {
            let mut names = a.name.clone();
            if names.is_empty() {
                if a.bind.is_unspecified() {
                    names = vec!["localhost".into(), "127.0.0.1".into()];
                } else {
                    names = vec![a.bind.to_string()];
                }
            }
            let hosts = identity::hosts(&names)?;
            let made = identity::load_or_make(&dir, service.authority(), &hosts, profile)?;
            let verb = if made.created { "made" } else { "using" };
            eprintln!(
                "{verb} {} (issued by the fleet CA for {})",
                made.cert_path.display(),
                made.names.join(", ")
            );
            renew_own = true;
            made.identity
        }
    };
    let opts = Options {
        profile,
        grace: a.grace,
        timeout: Duration::from_secs(10),
        max_connections: connections_allowed(a.max_connections as usize),
        per_address: a.max_per_address as usize,
        proxies: a.proxy.clone(),
    };
    let own = OwnCert::new(&identity);
    let config = server::tls_config_resolving(&identity, service.ca_der(), &opts, own.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    let json = a.json;
    let addr = SocketAddr::new(a.bind, a.port);
    runtime.block_on(async move {
        let listener = server::bind(addr).await?;
        let local = listener.local_addr().context("the bound address")?;
        eprintln!(
            "renewal service listening on {local} (fleet {})",
            dir.display()
        );
        if renew_own {
            let report = Arc::new(move |e: own_cert::Event| own_cert_line(&e));
            let (dir, ca) = (dir.clone(), service.authority().clone());
            tokio::spawn(own_cert::keep_alive(own, dir, ca, profile, report));
        }
        let log: Arc<dyn Fn(&Served) + Send + Sync> = Arc::new(move |s| log_line(s, json));
        server::serve(listener, config, service, opts, log).await;
        Ok::<(), anyhow::Error>(())
    })?;
    bail!("the renewal service stopped")
}

/// The renewal of the service's own certificate, on stderr.
fn own_cert_line(event: &own_cert::Event) {
    match event {
        own_cert::Event::Renewed { serial, not_after } => eprintln!(
            "renewed the service's certificate ({}/{}): serial {serial}, valid until {}",
            identity::DIR,
            identity::CERT,
            devtls_renewal::service::date(*not_after)
        ),
        own_cert::Event::Failed(why) => eprintln!(
            "error: cannot renew the service's certificate ({why}); trying again in a minute"
        ),
    }
}

/// One line per connection, on stdout (queued: devtls_net::log_out). Every field that comes from a peer
/// (a CSR's names, an error's text) is escaped with `log_field`, in JSON too
/// (JSON escapes control characters but not bidi overrides or U+2028).
fn log_line(served: &Served, json: bool) {
    use devtls_pki::names::log_field;
    let esc = |s: &str| log_field(s).into_owned();
    let line = match (served, json) {
        (Served::Answered(peer, e), true) => {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            v["peer"] = serde_json::Value::String(peer.to_string());
            for field in ["device", "detail", "outcome", "serial"] {
                if let Some(text) = v[field].as_str().map(esc) {
                    v[field] = serde_json::Value::String(text);
                }
            }
            v.to_string()
        }
        (Served::Answered(peer, e), false) => format!(
            "{peer} {} {} {} {} {}{}",
            esc(e.device.as_deref().unwrap_or("-")),
            if e.serial.is_empty() {
                "-".into()
            } else {
                esc(&e.serial)
            },
            e.endpoint.name(),
            esc(&e.outcome),
            e.status,
            e.detail
                .as_deref()
                .map(|d| format!(" ({})", esc(d)))
                .unwrap_or_default()
        ),
        (Served::Failed(peer, why, refused), true) => serde_json::json!({
            "peer": peer.to_string(),
            "outcome": if *refused { "refused-tls" } else { "failed" },
            "detail": esc(why)
        })
        .to_string(),
        (Served::Failed(peer, why, refused), false) => format!(
            "{peer} - - - {} ({})",
            if *refused { "refused-tls" } else { "failed" },
            esc(why)
        ),
    };
    // Queued, never waited for: a reader that stops reading cannot stop
    // the service (devtls_net::log_out).
    devtls_net::log_out::stdout().line(line);
}

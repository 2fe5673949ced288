//! `devtls gateway`: the guide's gateway in front of devices (and in front of
//! public servers, for devices). Parses, calls devtls-gateway, prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use devtls_gateway::config::{Direction, GatewayConfig, RouteSpec};
use devtls_gateway::print_config::{self, Target};
use devtls_gateway::Logger;

// `devtls gateway`: described on `Command::Gateway` in mod.rs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls gateway --listen 0.0.0.0:443 --cert live/cam/fullchain.pem --key live/cam/privkey.pem \\
      --to 192.168.1.50:8443 --device-ca server.der --device-name openmv
  devtls gateway --listen 0.0.0.0:443 --acme live/cam --to 192.168.1.50:8443 \\
      --device-ca fleet/ca.der --device-name cam-1 --client-cert gw.der --client-key gw.key.der
  devtls gateway --outbound --listen 0.0.0.0:8883 --cert gw.der --key gw.key.der \\
      --to broker.example.com:8883 --client-ca fleet/ca.der
  devtls gateway --config gateway.toml --json
  devtls gateway --config gateway.toml --print-config nginx > nginx-stream.conf

gateway.toml (paths relative to the file):
  [[route]]                       # public -> device, one per SNI name
  listen = \"0.0.0.0:443\"
  sni = \"cam1.example.com\"        # omit: the default route of this address
  acme = \"live/cam1\"              # or cert = \"fullchain.pem\", key = \"privkey.pem\"
  to = \"192.168.1.50:8443\"
  device_ca = \"cam1/server.der\"   # the device's certificate, or its fleet CA
  device_name = \"openmv\"
  # client_cert/client_key (device demands mTLS), profile = \"openmv\",
  # connect_timeout = 10, idle_timeout = 300, max_connections = 10000

  [[outbound]]                    # device -> public
  listen = \"0.0.0.0:8883\"
  cert = \"gw.der\"                 # what the devices trust (or its CA)
  key = \"gw.key.der\"
  client_ca = \"fleet/ca.der\"      # optional: devices prove themselves
  client_crl = \"fleet/crl.der\"    # optional: and are refused when revoked
  to = \"broker.example.com:8883\"  # verified with the Mozilla roots (public_ca = FILE to replace)

  reload_interval_secs = 2        # every file above is checked this often; a changed
                                  # one is reloaded (a bad one refused, the old kept)")]
pub struct Args {
    /// Routes from a TOML file (see below) instead of the one-route options.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "to"])]
    config: Option<PathBuf>,
    /// Where clients connect (one-route form).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// The SNI name the route answers (default: every name).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Certificate chain clients see (fullchain.pem).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (privkey.pem).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// A certbot/acme live/NAME folder (fullchain.pem + privkey.pem) instead of --cert/--key.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cert", "key"])]
    acme: Option<PathBuf>,
    /// HOST:PORT to forward to: the device, or with --outbound the public server.
    #[arg(long, value_name = "HOST:PORT")]
    to: Option<String>,
    /// The device's own certificate (pinned) or its fleet CA: the one anchor.
    #[arg(long, value_name = "FILE")]
    device_ca: Option<PathBuf>,
    /// The name in the device's certificate (checked, and sent as SNI).
    #[arg(long, value_name = "NAME")]
    device_name: Option<String>,
    /// The gateway's client certificate, for a device that demands mTLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Key of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The device profile of the device side.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Devices connect here and the gateway forwards to the public server --to.
    #[arg(long)]
    outbound: bool,
    /// With --outbound: anchors for the public server instead of the Mozilla roots.
    #[arg(long, value_name = "FILE", requires = "outbound")]
    public_ca: Option<PathBuf>,
    /// With --outbound: the public server's name (default: the host of --to).
    #[arg(long, value_name = "NAME", requires = "outbound")]
    public_name: Option<String>,
    /// With --outbound: devices must present a certificate from this CA.
    #[arg(long, value_name = "FILE", requires = "outbound")]
    client_ca: Option<PathBuf>,
    /// With --client-ca: device certificates on this CRL are refused (`devtls fleet crl`;
    /// reloaded when it changes).
    #[arg(long, value_name = "FILE", requires = "client_ca")]
    client_crl: Option<PathBuf>,
    /// Seconds for each of: the client's handshake, connecting to the other side.
    #[arg(long, value_name = "S")]
    connect_timeout: Option<f64>,
    /// Seconds without a byte either way before a connection is closed.
    #[arg(long, value_name = "S")]
    idle_timeout: Option<f64>,
    /// Connections at once on the route; more are closed at once.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Worker threads (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// Log only failures, not every relayed connection.
    #[arg(long)]
    quiet: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Print the same routes as nginx, haproxy, caddy or mosquitto configuration and exit.
    #[arg(long, value_name = "SERVER")]
    print_config: Option<Target>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    if let Some(target) = args.print_config {
        print!("{}", print_config::render(&config, target)?);
        return Ok(ExitCode::SUCCESS);
    }
    let logger = Logger {
        json: args.json,
        quiet: args.quiet,
    };
    devtls_gateway::run_blocking(&config, logger, args.workers, |bound| {
        for (addr, routes) in bound {
            logger.event(
                "listening",
                &format!("listening on {addr} for {}", routes.join(", ")),
                serde_json::json!({"listen": addr.to_string(), "port": addr.port(), "routes": routes}),
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn config(args: &Args) -> anyhow::Result<GatewayConfig> {
    if let Some(path) = &args.config {
        let text = crate::input::read(path)?;
        let text = String::from_utf8(text).map_err(|_| {
            anyhow::anyhow!("{}: is not UTF-8 text; give a TOML file", path.display())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        return GatewayConfig::from_toml(&text, &path.display().to_string(), base)
            .context("the gateway configuration cannot be used");
    }
    if args.listen.is_none() || args.to.is_none() {
        anyhow::bail!(
            "give --config gateway.toml, or one route: --listen ADDR:PORT --to HOST:PORT with \
             --cert/--key (or --acme) and, for a device, --device-ca and --device-name"
        );
    }
    let spec = RouteSpec {
        listen: args.listen.clone(),
        sni: args.sni.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        acme: args.acme.clone(),
        to: args.to.clone(),
        device_ca: args.device_ca.clone(),
        device_name: args.device_name.clone(),
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
        profile: args.profile.clone(),
        client_ca: args.client_ca.clone(),
        client_crl: args.client_crl.clone(),
        public_name: args.public_name.clone(),
        public_ca: args.public_ca.clone(),
        connect_timeout: args.connect_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
    };
    let direction = if args.outbound {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    Ok(GatewayConfig::single(spec, direction)?)
}

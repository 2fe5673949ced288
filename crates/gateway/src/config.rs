//! Routes: what the gateway listens on, which certificate it shows, where it
//! forwards and how it talks to the other side. Read from a TOML file
//! (`[[route]]` for public -> device, `[[outbound]]` for device -> public) or
//! built from the one-route command line. Pure: no files are opened here
//! (paths are resolved against the config file's folder and read later).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use devtls_pki::profile::{self, Profile};
use serde::Deserialize;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML does not parse or holds unknown keys.
    #[error("{file}: {message}")]
    Syntax {
        /// The config file.
        file: String,
        /// The parser's words.
        message: String,
    },
    /// A route is incomplete or contradicts itself or another route.
    #[error("{route}: {message}")]
    Route {
        /// Which route (e.g. `route 2 (cam2.example.com)`).
        route: String,
        /// What is wrong and the fix.
        message: String,
    },
}

/// Which way a route carries traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Public clients to a device: the device's own TLS on the device side.
    Inbound,
    /// Devices to a public server: the public server verified with public roots.
    Outbound,
}

/// Where the gateway's own certificate and key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// Certificate chain (leaf first), PEM or DER.
    pub cert: PathBuf,
    /// Private key, PEM or DER, unencrypted.
    pub key: PathBuf,
}

/// The anchors the upstream side is verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTrust {
    /// The bundled Mozilla roots (public servers).
    Mozilla,
    /// The certificates in this file: the device's own certificate (pinned),
    /// its fleet CA, or a test root.
    File(PathBuf),
}

/// How the gateway connects to the other side of a route.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` to connect to.
    pub addr: String,
    /// The name sent as SNI and checked in the certificate.
    pub server_name: String,
    /// What the certificate must chain to.
    pub trust: UpstreamTrust,
    /// The gateway's client certificate, when the other side demands mTLS.
    pub client_identity: Option<CertFiles>,
    /// The profile the connection is restricted to (the device's, or `modern`).
    pub profile: &'static Profile,
}

/// Per-route limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connecting to the upstream (TCP and TLS), and the client's own handshake.
    pub connect_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections beyond this many at once are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
        }
    }
}

/// One route: a listener address and SNI name to one upstream.
#[derive(Debug, Clone)]
pub struct Route {
    /// A label for logs: the SNI name, else `route N`.
    pub name: String,
    /// Which way it carries traffic.
    pub direction: Direction,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The SNI name this route answers (`*.example.com` matches one label);
    /// `None`: every name no other route on the listener claims, and clients
    /// that send none.
    pub sni: Option<String>,
    /// The certificate shown to clients.
    pub cert: CertFiles,
    /// Client certificates must chain to this (devices proving themselves
    /// with their fleet certificate on an outbound route).
    pub client_ca: Option<PathBuf>,
    /// Client certificates on this CRL are refused (reloaded when it changes).
    pub client_crl: Option<PathBuf>,
    /// The other side.
    pub upstream: Upstream,
    /// Timeouts and the connection cap.
    pub limits: Limits,
}

/// A whole gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Every route, inbound and outbound.
    pub routes: Vec<Route>,
    /// How often certificate files are checked for changes.
    pub reload_interval: Duration,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    reload_interval_secs: Option<f64>,
    #[serde(default, rename = "route")]
    routes: Vec<RouteSpec>,
    #[serde(default)]
    outbound: Vec<RouteSpec>,
}

/// A route as written in the file or on the command line; checked by
/// [`RouteSpec::build`].
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// `ADDR:PORT` to listen on.
    pub listen: Option<String>,
    /// SNI name this route answers.
    pub sni: Option<String>,
    /// Certificate chain file (fullchain.pem).
    pub cert: Option<PathBuf>,
    /// Private key file (privkey.pem).
    pub key: Option<PathBuf>,
    /// A certbot/acme `live/NAME` folder holding fullchain.pem and privkey.pem.
    pub acme: Option<PathBuf>,
    /// `host:port` of the device (inbound) or public server (outbound).
    pub to: Option<String>,
    /// Inbound: the device's certificate (pinned) or its fleet CA.
    pub device_ca: Option<PathBuf>,
    /// Inbound: the name in the device's certificate.
    pub device_name: Option<String>,
    /// Inbound: the gateway's client certificate for devices that demand mTLS.
    pub client_cert: Option<PathBuf>,
    /// Key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Inbound: the device profile (default `openmv`).
    pub profile: Option<String>,
    /// Outbound: devices must present a certificate from this CA.
    pub client_ca: Option<PathBuf>,
    /// Outbound: device certificates on this CRL are refused (`devtls fleet crl`).
    pub client_crl: Option<PathBuf>,
    /// Outbound: the public server's name (default: the host of `to`).
    pub public_name: Option<String>,
    /// Outbound: anchors for the public server instead of the Mozilla roots.
    pub public_ca: Option<PathBuf>,
    /// Seconds (default 10).
    pub connect_timeout: Option<f64>,
    /// Seconds (default 300).
    pub idle_timeout: Option<f64>,
    /// Default 10000.
    pub max_connections: Option<usize>,
}

impl GatewayConfig {
    /// Parses a TOML configuration; relative paths are taken from `base` (the
    /// config file's folder). `file` names the file in errors.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<Self, ConfigError> {
        let parsed: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            message: format!("{}; see `devtls gateway --help` for the keys", e.message()),
        })?;
        let mut routes = Vec::new();
        let specs = parsed
            .routes
            .iter()
            .map(|s| (s, Direction::Inbound))
            .chain(parsed.outbound.iter().map(|s| (s, Direction::Outbound)));
        for (n, (spec, direction)) in specs.enumerate() {
            let mut spec = spec.clone();
            spec.resolve_paths(base);
            routes.push(spec.build(n + 1, direction)?);
        }
        let interval = parsed.reload_interval_secs.unwrap_or(2.0);
        let config = GatewayConfig {
            routes,
            reload_interval: secs("reload_interval_secs", interval, file)?,
        };
        config.check()?;
        Ok(config)
    }

    /// One route from the command line.
    pub fn single(spec: RouteSpec, direction: Direction) -> Result<Self, ConfigError> {
        let config = GatewayConfig {
            routes: vec![spec.build(1, direction)?],
            reload_interval: Duration::from_secs(2),
        };
        config.check()?;
        Ok(config)
    }

    /// Routes sharing a listener must not claim the same name, and at most
    /// one per listener may be the default.
    fn check(&self) -> Result<(), ConfigError> {
        if self.routes.is_empty() {
            return Err(ConfigError::Route {
                route: "configuration".into(),
                message: "has no routes; add a [[route]] (public -> device) or an [[outbound]] \
                          (device -> public) table"
                    .into(),
            });
        }
        for (i, a) in self.routes.iter().enumerate() {
            for b in &self.routes[..i] {
                if a.listen != b.listen {
                    continue;
                }
                if a.sni == b.sni {
                    let what = a.sni.as_deref().map_or_else(
                        || "both are the default (no sni)".to_string(),
                        |s| format!("both answer sni '{s}'"),
                    );
                    return Err(ConfigError::Route {
                        route: a.name.clone(),
                        message: format!(
                            "{} and {} listen on {} and {what}; give each a different sni",
                            b.name, a.name, a.listen
                        ),
                    });
                }
                if a.direction != b.direction {
                    return Err(ConfigError::Route {
                        route: a.name.clone(),
                        message: format!(
                            "shares {} with {}, which carries traffic the other way; give \
                             outbound routes their own listen address",
                            a.listen, b.name
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

fn secs(key: &str, value: f64, route: &str) -> Result<Duration, ConfigError> {
    if !(value.is_finite() && value > 0.0 && value < 1e9) {
        return Err(ConfigError::Route {
            route: route.to_string(),
            message: format!("{key} = {value}: give a number of seconds above 0"),
        });
    }
    Ok(Duration::from_secs_f64(value))
}

impl RouteSpec {
    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.cert,
            &mut self.key,
            &mut self.acme,
            &mut self.device_ca,
            &mut self.client_cert,
            &mut self.client_key,
            &mut self.client_ca,
            &mut self.client_crl,
            &mut self.public_ca,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Checks the spec and makes the route (`n` numbers it in messages).
    pub fn build(&self, n: usize, direction: Direction) -> Result<Route, ConfigError> {
        let name = match (&self.sni, &direction) {
            (Some(sni), _) => sni.clone(),
            (None, Direction::Inbound) => format!("route {n}"),
            (None, Direction::Outbound) => format!("outbound {n}"),
        };
        let err = |message: String| ConfigError::Route {
            route: name.clone(),
            message,
        };
        let listen_text = self
            .listen
            .as_deref()
            .ok_or_else(|| err("has no listen address; add listen = \"0.0.0.0:443\"".into()))?;
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            err(format!(
                "listen = '{listen_text}' is not ADDR:PORT; write e.g. 0.0.0.0:443"
            ))
        })?;
        if let Some(sni) = &self.sni {
            check_sni(sni).map_err(err)?;
        }
        let cert = self.cert_files().map_err(err)?;
        let to = self.to.clone().ok_or_else(|| {
            err("has no `to`; give the host:port to forward to (e.g. 192.168.1.50:8443)".into())
        })?;
        let host = split_host_port(&to).map_err(err)?;
        let client_identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(err(
                    "client_cert and client_key go together; give both".into()
                ))
            }
        };
        let upstream = match direction {
            Direction::Inbound => {
                for (key, set) in [
                    ("public_ca", self.public_ca.is_some()),
                    ("public_name", self.public_name.is_some()),
                    ("client_ca", self.client_ca.is_some()),
                    ("client_crl", self.client_crl.is_some()),
                ] {
                    if set {
                        return Err(err(format!(
                            "{key} belongs to outbound routes (device -> public); remove it or \
                             make this an [[outbound]]"
                        )));
                    }
                }
                let device_ca = self.device_ca.clone().ok_or_else(|| {
                    err(
                        "has no device_ca; give the device's own certificate (server.der) or \
                         its fleet CA (ca.der): the gateway verifies the device with it"
                            .into(),
                    )
                })?;
                let device_name = self.device_name.clone().ok_or_else(|| {
                    err(
                        "has no device_name; give the name in the device's certificate \
                         (e.g. openmv): the gateway checks it like any TLS client"
                            .into(),
                    )
                })?;
                let profile_name = self.profile.as_deref().unwrap_or(profile::DEFAULT.name);
                let profile = profile::by_name(profile_name).ok_or_else(|| {
                    err(format!(
                        "unknown profile '{profile_name}'; known profiles: {}",
                        profile::names().join(", ")
                    ))
                })?;
                Upstream {
                    addr: to,
                    server_name: device_name,
                    trust: UpstreamTrust::File(device_ca),
                    client_identity,
                    profile,
                }
            }
            Direction::Outbound => {
                if self.client_crl.is_some() && self.client_ca.is_none() {
                    return Err(err(
                        "client_crl needs client_ca: a CRL applies to the device certificates \
                         client_ca checks"
                            .into(),
                    ));
                }
                if client_identity.is_some() && self.client_ca.is_none() {
                    return Err(err(
                        "client_cert without client_ca would lend the gateway's client \
                         certificate to anyone who reaches this listener; add client_ca (the \
                         fleet's ca.der) so only your devices get through with it \
                         (docs/gateway.md, \"Devices proving themselves\")"
                            .into(),
                    ));
                }
                for (key, set) in [
                    ("device_ca", self.device_ca.is_some()),
                    ("device_name", self.device_name.is_some()),
                ] {
                    if set {
                        return Err(err(format!(
                            "{key} belongs to inbound routes (public -> device); an outbound \
                             route verifies the public server with public_ca or the Mozilla roots"
                        )));
                    }
                }
                Upstream {
                    addr: to,
                    server_name: self.public_name.clone().unwrap_or(host),
                    trust: self
                        .public_ca
                        .clone()
                        .map_or(UpstreamTrust::Mozilla, UpstreamTrust::File),
                    client_identity,
                    profile: &profile::MODERN,
                }
            }
        };
        let defaults = Limits::default();
        let limits = Limits {
            connect_timeout: match self.connect_timeout {
                Some(s) => secs("connect_timeout", s, &name)?,
                None => defaults.connect_timeout,
            },
            idle_timeout: match self.idle_timeout {
                Some(s) => secs("idle_timeout", s, &name)?,
                None => defaults.idle_timeout,
            },
            max_connections: match self.max_connections {
                Some(0) => return Err(err("max_connections = 0 would refuse everyone".into())),
                Some(n) => n,
                None => defaults.max_connections,
            },
        };
        Ok(Route {
            name,
            direction,
            listen,
            sni: self.sni.as_ref().map(|s| s.to_ascii_lowercase()),
            cert,
            client_ca: self.client_ca.clone(),
            client_crl: self.client_crl.clone(),
            upstream,
            limits,
        })
    }

    fn cert_files(&self) -> Result<CertFiles, String> {
        match (&self.acme, &self.cert, &self.key) {
            (Some(dir), None, None) => Ok(CertFiles {
                cert: dir.join("fullchain.pem"),
                key: dir.join("privkey.pem"),
            }),
            (None, Some(cert), Some(key)) => Ok(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), _, _) => {
                Err("give either acme (a live/NAME folder) or cert and key, not both".into())
            }
            _ => Err(
                "needs the certificate clients see: cert and key (fullchain.pem, privkey.pem) \
                 or acme = \"live/NAME\""
                    .into(),
            ),
        }
    }
}

/// A DNS name or `*.` wildcard of one; no spaces, quotes or other characters
/// that would break a generated configuration.
fn check_sni(sni: &str) -> Result<(), String> {
    let body = sni.strip_prefix("*.").unwrap_or(sni);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sni = '{sni}' is not a DNS name; write e.g. cam1.example.com or *.example.com"
        ))
    }
}

/// The host of `host:port` (brackets removed from an IPv6 literal).
fn split_host_port(to: &str) -> Result<String, String> {
    let bad = || format!("to = '{to}' is not HOST:PORT; write e.g. 192.168.1.50:8443");
    let (host, port) = to.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let safe = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if !safe {
        return Err(bad());
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/etc/gw";

    fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_toml(text, "gateway.toml", Path::new(BASE))
    }

    const TWO: &str = r#"
        [[route]]
        listen = "0.0.0.0:443"
        sni = "Cam1.example.com"
        acme = "live/cam1"
        to = "192.168.1.50:8443"
        device_ca = "cam1.der"
        device_name = "openmv"
        idle_timeout = 30

        [[route]]
        listen = "0.0.0.0:443"
        cert = "/abs/full.pem"
        key = "k.pem"
        to = "192.168.1.51:8443"
        device_ca = "fleet/ca.der"
        device_name = "cam2"
        client_cert = "gw.der"
        client_key = "gw.key.der"

        [[outbound]]
        listen = "0.0.0.0:8883"
        cert = "gw.der"
        key = "gw.key.der"
        client_ca = "fleet/ca.der"
        to = "broker.example.com:8883"
    "#;

    #[test]
    fn routes_parse_with_paths_from_the_config_folder() {
        let c = parse(TWO).unwrap();
        assert_eq!(c.routes.len(), 3);
        let r = &c.routes[0];
        assert_eq!(r.sni.as_deref(), Some("cam1.example.com"));
        assert_eq!(r.cert.cert, Path::new("/etc/gw/live/cam1/fullchain.pem"));
        assert_eq!(r.cert.key, Path::new("/etc/gw/live/cam1/privkey.pem"));
        assert_eq!(r.limits.idle_timeout, Duration::from_secs(30));
        assert_eq!(r.upstream.profile.name, "openmv");
        assert_eq!(
            r.upstream.trust,
            UpstreamTrust::File("/etc/gw/cam1.der".into())
        );
        let r = &c.routes[1];
        assert_eq!(r.name, "route 2");
        assert_eq!(r.cert.cert, Path::new("/abs/full.pem"));
        assert!(r.upstream.client_identity.is_some());
        let o = &c.routes[2];
        assert_eq!(o.direction, Direction::Outbound);
        assert_eq!(o.upstream.server_name, "broker.example.com");
        assert_eq!(o.upstream.trust, UpstreamTrust::Mozilla);
        assert_eq!(
            o.client_ca.as_deref(),
            Some(Path::new("/etc/gw/fleet/ca.der"))
        );
    }

    #[test]
    fn mistakes_name_the_route_and_the_fix() {
        let dup = TWO.replace(
            "cert = \"/abs/full.pem\"",
            "sni = \"cam1.example.com\"\ncert = \"/abs/full.pem\"",
        );
        let e = parse(&dup).unwrap_err().to_string();
        assert!(e.contains("both answer sni 'cam1.example.com'"), "{e}");

        let e = parse(
            "[[route]]\nlisten = \"0.0.0.0:443\"\nacme = \"l\"\nto = \"h:1\"\ndevice_name = \"x\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("route 1: has no device_ca"), "{e}");

        let e = parse("[[route]]\nlisten = \"443\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not ADDR:PORT"), "{e}");

        let e = parse("[[route]]\nlisten = \"0.0.0.0:1\"\nsni = \"a b\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a DNS name"), "{e}");

        let e = parse("[[route]]\nlistn = 1").unwrap_err().to_string();
        assert!(e.starts_with("gateway.toml: unknown field `listn`"), "{e}");

        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("has no routes"), "{e}");

        let out = "[[outbound]]\nlisten = \"0.0.0.0:8883\"\ncert = \"c\"\nkey = \"k\"\n\
                   to = \"b.example.com:8883\"\nclient_crl = \"crl.der\"";
        let e = parse(out).unwrap_err().to_string();
        assert!(e.contains("client_crl needs client_ca"), "{e}");
        let lent = "[[outbound]]\nlisten = \"0.0.0.0:8883\"\ncert = \"c\"\nkey = \"k\"\n\
                    to = \"b.example.com:8883\"\nclient_cert = \"gw.der\"\nclient_key = \"gw.key\"";
        let e = parse(lent).unwrap_err().to_string();
        assert!(
            e.contains(": client_cert without client_ca would lend"),
            "{e}"
        );
        parse(&format!("{lent}\nclient_ca = \"ca.der\"")).expect("with client_ca it is fine");
        let with_ca = format!("{out}\nclient_ca = \"ca.der\"");
        let c = parse(&with_ca).unwrap();
        assert!(c.routes[0].client_crl.as_ref().unwrap().is_absolute());

        let e = parse(&TWO.replace("0.0.0.0:8883", "0.0.0.0:443"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("carries traffic the other way") || e.contains("both are the default"),
            "{e}"
        );
    }

    #[test]
    fn host_port_is_checked() {
        assert_eq!(split_host_port("[::1]:8443").unwrap(), "::1");
        assert_eq!(split_host_port("cam.local:1").unwrap(), "cam.local");
        assert!(split_host_port("cam.local").is_err());
        assert!(split_host_port("a;b:1").is_err());
    }
}

//! Challenge solvers: proving to the CA that this machine controls a name.
//!
//! - http-01: devtls's own listener ([`http01`]) or files in a web root.
//! - dns-01: a hook command that adds and removes the TXT record, or manual.
//! - tls-alpn-01: devtls's own TLS listener answering `acme-tls/1` ([`tls_alpn01`]).

pub mod dns01;
pub mod http01;
pub mod tls_alpn01;

use std::net::IpAddr;
use std::path::PathBuf;

use instant_acme::{ChallengeType, Identifier, KeyAuthorization};

use crate::Error;

/// How to answer the CA's challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// http-01 on devtls's own listener.
    Http01 {
        /// Address to listen on (the CA connects to port 80 of the name's address).
        bind: IpAddr,
        /// Port to listen on (80 unless a proxy forwards).
        port: u16,
    },
    /// http-01 by files under a web server's root.
    Webroot(PathBuf),
    /// dns-01 through a hook command: `CMD add NAME VALUE`, later `CMD remove NAME VALUE`.
    DnsHook(String),
    /// dns-01 by hand: the record is printed and devtls waits for Enter.
    DnsManual,
    /// tls-alpn-01 on devtls's own TLS listener.
    TlsAlpn01 {
        /// Address to listen on.
        bind: IpAddr,
        /// Port to listen on (the CA connects to 443).
        port: u16,
    },
}

impl Method {
    /// The ACME challenge type this method answers.
    pub fn challenge_type(&self) -> ChallengeType {
        match self {
            Method::Http01 { .. } | Method::Webroot(_) => ChallengeType::Http01,
            Method::DnsHook(_) | Method::DnsManual => ChallengeType::Dns01,
            Method::TlsAlpn01 { .. } => ChallengeType::TlsAlpn01,
        }
    }

    /// The challenge's name as the CA spells it.
    pub fn name(&self) -> &'static str {
        match self.challenge_type() {
            ChallengeType::Http01 => "http-01",
            ChallengeType::Dns01 => "dns-01",
            _ => "tls-alpn-01",
        }
    }

    /// What to check when the CA says this challenge failed.
    pub fn hint(&self) -> String {
        match self {
            Method::Http01 { port, .. } => format!(
                "the CA must reach http://NAME/.well-known/acme-challenge/ on port 80 of the name's public address (devtls listened on port {port}): check DNS, the firewall and port forwarding, or use --webroot or --challenge dns-01"
            ),
            Method::Webroot(dir) => format!(
                "the web server must serve {}/.well-known/acme-challenge/ as http://NAME/.well-known/acme-challenge/: check its root and that it answers on port 80",
                dir.display()
            ),
            Method::DnsHook(_) | Method::DnsManual => "the CA must find the TXT record at _acme-challenge.NAME: check the hook (or the record you added) and wait for DNS to propagate".into(),
            Method::TlsAlpn01 { port, .. } => format!(
                "the CA must reach port 443 of the name's public address with ALPN acme-tls/1 (devtls listened on port {port}): check the firewall and port forwarding"
            ),
        }
    }
}

/// A running solver: listeners started, records and files it must remove.
pub struct Solver {
    method: Method,
    http: Option<http01::Server>,
    alpn: Option<tls_alpn01::Server>,
    cleanup: Vec<Cleanup>,
}

enum Cleanup {
    File(PathBuf),
    Txt { name: String, value: String },
}

impl Solver {
    /// Starts what the method needs (a listener binds here, so a busy port
    /// is reported before anything is ordered).
    pub async fn start(method: &Method) -> Result<Solver, Error> {
        let mut solver = Solver {
            method: method.clone(),
            http: None,
            alpn: None,
            cleanup: Vec::new(),
        };
        match method {
            Method::Http01 { bind, port } => {
                solver.http = Some(http01::Server::start(*bind, *port).await?)
            }
            Method::TlsAlpn01 { bind, port } => {
                solver.alpn = Some(tls_alpn01::Server::start(*bind, *port).await?)
            }
            Method::Webroot(dir) if !dir.is_dir() => {
                return Err(Error::Input(format!(
                    "--webroot {}: no such folder; give the web server's document root",
                    dir.display()
                )))
            }
            _ => {}
        }
        Ok(solver)
    }

    /// The method this solver answers with.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Makes the answer to one challenge available.
    pub async fn present(
        &mut self,
        identifier: &Identifier,
        token: &str,
        key_auth: &KeyAuthorization,
    ) -> Result<(), Error> {
        match &self.method {
            Method::Http01 { .. } => {
                if let Some(s) = &self.http {
                    s.insert(token, key_auth.as_str());
                }
            }
            Method::Webroot(dir) => {
                let path = http01::webroot_file(dir, token)?;
                devtls_pki::files::write_atomic(
                    &path,
                    key_auth.as_str().as_bytes(),
                    devtls_pki::files::Secrecy::Public,
                )?;
                self.cleanup.push(Cleanup::File(path));
            }
            Method::DnsHook(cmd) => {
                let name = dns01::record_name(identifier)?;
                let value = key_auth.dns_value();
                dns01::run_hook(cmd, "add", &name, &value).await?;
                self.cleanup.push(Cleanup::Txt { name, value });
            }
            Method::DnsManual => {
                let name = dns01::record_name(identifier)?;
                dns01::manual(&name, &key_auth.dns_value()).await?;
            }
            Method::TlsAlpn01 { .. } => {
                let name = match identifier {
                    Identifier::Dns(name) => name.clone(),
                    Identifier::Ip(ip) => tls_alpn01::reverse_name(*ip),
                    _ => {
                        return Err(Error::Unsupported(
                            "tls-alpn-01 answers DNS names and IP addresses only".into(),
                        ))
                    }
                };
                if let Some(s) = &self.alpn {
                    s.insert(&name, identifier, key_auth.digest().as_ref())?;
                }
            }
        }
        Ok(())
    }

    /// Removes files and records this solver added (best effort: a failure
    /// is returned as text to show, never stops the flow).
    pub async fn finish(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Method::DnsHook(cmd) = &self.method {
            for c in &self.cleanup {
                if let Cleanup::Txt { name, value } = c {
                    if let Err(e) = dns01::run_hook(cmd, "remove", name, value).await {
                        problems.push(e.to_string());
                    }
                }
            }
        }
        for c in self.cleanup.drain(..) {
            if let Cleanup::File(path) = c {
                if let Err(e) = std::fs::remove_file(&path) {
                    problems.push(format!("{}: {e}", path.display()));
                }
            }
        }
        problems
    }
}

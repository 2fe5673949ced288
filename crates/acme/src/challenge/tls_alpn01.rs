//! tls-alpn-01 (RFC 8737): a TLS listener that, for a ClientHello offering
//! ALPN `acme-tls/1` with the name as SNI, presents a self-signed
//! certificate carrying the critical acmeIdentifier extension (the SHA-256
//! of the key authorization).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::Identifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;

use crate::Error;

/// The ALPN protocol the CA offers.
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";

#[derive(Debug, Default)]
struct Resolver {
    certs: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut a| a.any(|p| p == ACME_TLS_1));
        let name = hello.server_name()?.to_ascii_lowercase();
        acme.then(|| self.certs.lock().ok()?.get(&name).cloned())
            .flatten()
    }
}

/// A running tls-alpn-01 listener; it stops when dropped.
pub struct Server {
    resolver: Arc<Resolver>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `bind:port` and starts answering.
    pub async fn start(bind: IpAddr, port: u16) -> Result<Server, Error> {
        let addr = SocketAddr::new(bind, port);
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Solver(format!(
                "tls-alpn-01: cannot listen on {addr}: {e}; free the port (stop the web server), run with the rights to bind it, or use --challenge http-01 or dns-01"
            ))
        })?;
        let resolver = Arc::new(Resolver::default());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|e| Error::Solver(format!("tls-alpn-01: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![ACME_TLS_1.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The CA only looks at the certificate; close after the handshake.
                    if let Ok(Ok(mut tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                    {
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                    }
                });
            }
        });
        Ok(Server { resolver, task })
    }

    /// Presents the validation certificate for `name` (the SNI the CA sends)
    /// carrying `digest` (SHA-256 of the key authorization).
    pub fn insert(&self, name: &str, identifier: &Identifier, digest: &[u8]) -> Result<(), Error> {
        let key = rcgen::KeyPair::generate()
            .map_err(|e| Error::Solver(format!("tls-alpn-01 key: {e}")))?;
        let san = match identifier {
            Identifier::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            _ => rcgen::SanType::DnsName(
                name.try_into()
                    .map_err(|_| Error::Input(format!("'{name}' is not a DNS name")))?,
            ),
        };
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![san];
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::Solver(format!("tls-alpn-01 certificate: {e}")))?;
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
            .map_err(|e| Error::Solver(format!("tls-alpn-01 key: {e}")))?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        if let Ok(mut certs) = self.resolver.certs.lock() {
            certs.insert(name.to_ascii_lowercase(), Arc::new(certified));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SNI for an IP identifier (RFC 8738 §6): the reverse-DNS name.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut out = String::new();
            for b in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            out + "ip6.arpa"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_follow_rfc_8738() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa"
        );
        assert!(reverse_name("2001:db8::1".parse().unwrap()).starts_with("1.0.0.0.0.0.0.0."));
        assert!(reverse_name("2001:db8::1".parse().unwrap()).ends_with("8.b.d.0.1.0.0.2.ip6.arpa"));
    }
}

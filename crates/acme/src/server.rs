//! The CA: its directory URL, the HTTPS transport to it, and the requests
//! instant-acme does not make itself.
//!
//! The transport is instant-acme's hyper client with our own roots (the
//! `--server-ca` bundle, else the bundled Mozilla roots) and a log beside it:
//! every response's `Link: rel="alternate"` URLs (the CA's alternate chains)
//! and how many `badNonce` refusals came back.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use serde_json::Value;

use crate::Error;

/// Let's Encrypt's production directory.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous limits).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `--server letsencrypt|letsencrypt-staging|URL` to a directory URL. Only
/// `https://` URLs are accepted: the account key signs everything, but the
/// certificates and the directory itself travel in the answers.
pub fn directory_url(server: &str) -> Result<String, Error> {
    match server {
        "letsencrypt" | "le" => Ok(LETSENCRYPT.into()),
        "letsencrypt-staging" | "le-staging" | "staging" => Ok(LETSENCRYPT_STAGING.into()),
        url if url.starts_with("https://") && url.len() > "https://".len() => Ok(url.into()),
        other => Err(Error::Input(format!(
            "--server '{other}': give letsencrypt, letsencrypt-staging or the https:// URL of an ACME directory"
        ))),
    }
}

/// A short, file-name-safe label for a directory URL (host and port), used
/// to keep one account per CA under `DIR/accounts/`.
pub fn label(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split('/').next().unwrap_or(rest);
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

type Inner = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// What the transport saw, for the order flow.
#[derive(Debug, Default)]
struct Log {
    /// URL -> alternate URLs from its `Link` headers.
    alternates: HashMap<String, Vec<String>>,
    /// `badNonce` refusals seen.
    bad_nonces: usize,
}

/// The HTTPS client to one CA.
#[derive(Clone)]
pub struct Transport {
    inner: Inner,
    log: Arc<Mutex<Log>>,
}

impl Transport {
    /// A client trusting the certificates in `server_ca` (a PEM bundle), or
    /// the bundled Mozilla roots without it.
    pub fn new(server_ca: Option<&Path>) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        match server_ca {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                let sniffed = devtls_pki::sniff::sniff(&bytes).map_err(|e| {
                    Error::Input(format!(
                        "{}: {e}; give a PEM bundle of CA certificates",
                        path.display()
                    ))
                })?;
                for item in sniffed.certificates() {
                    roots
                        .add(item.der.clone().into())
                        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(Error::Input(format!(
                        "{}: holds no certificate; give the PEM certificate of the CA that signed the ACME server's HTTPS certificate",
                        path.display()
                    )));
                }
            }
            None => {
                roots.add_parsable_certificates(
                    webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned(),
                );
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Protocol(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Transport {
            inner: HyperClient::builder(TokioExecutor::new()).build(connector),
            log: Arc::default(),
        })
    }

    /// The alternate chain URLs the CA linked from `url`'s response.
    pub fn alternates(&self, url: &str) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.alternates.get(url).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// How many `badNonce` refusals came back so far (each was retried).
    pub fn bad_nonces(&self) -> usize {
        self.log.lock().map(|l| l.bad_nonces).unwrap_or(0)
    }

    async fn send(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Result<(http::response::Parts, Bytes), String> {
        let url = req.uri().to_string();
        let rsp = tokio::time::timeout(Duration::from_secs(30), self.inner.request(req))
            .await
            .map_err(|_| "no answer within 30 s".to_string())?
            .map_err(|e| crate::error::chain(&e))?;
        let (parts, body) = rsp.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        self.observe(&url, &parts, &bytes);
        Ok((parts, bytes))
    }

    fn observe(&self, url: &str, parts: &http::response::Parts, body: &[u8]) {
        let Ok(mut log) = self.log.lock() else { return };
        let links: Vec<String> = parts
            .headers
            .get_all(http::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(alternate_links)
            .collect();
        if !links.is_empty() {
            log.alternates.insert(url.to_string(), links);
        }
        if parts.status == http::StatusCode::BAD_REQUEST
            && String::from_utf8_lossy(body).contains("urn:ietf:params:acme:error:badNonce")
        {
            log.bad_nonces += 1;
        }
    }

    /// GETs a URL (the directory), with the reason on failure.
    pub async fn get(&self, url: &str) -> Result<(http::StatusCode, Bytes), String> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(http::header::USER_AGENT, user_agent())
            .body(BodyWrapper::default())
            .map_err(|e| e.to_string())?;
        let (parts, body) = self.send(req).await?;
        Ok((parts.status, body))
    }

    /// Reads the directory first, so an unreachable CA or a URL that is not
    /// an ACME directory is one clear error before anything else happens.
    pub async fn directory(&self, url: &str) -> Result<Directory, Error> {
        let unreachable = |detail: String| Error::Unreachable {
            url: url.to_string(),
            detail,
        };
        let (status, body) = self.get(url).await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(unreachable(format!("HTTP {status}")));
        }
        let json: Value = serde_json::from_slice(&body)
            .map_err(|_| unreachable("the answer is not an ACME directory (not JSON)".into()))?;
        let field = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(new_nonce), Some(_)) = (field("newNonce"), field("newOrder")) else {
            return Err(unreachable(
                "the answer is not an ACME directory (no newNonce/newOrder)".into(),
            ));
        };
        let profiles = json
            .pointer("/meta/profiles")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        Ok(Directory {
            url: url.to_string(),
            new_nonce,
            renewal_info: field("renewalInfo"),
            profiles,
            terms: json
                .pointer("/meta/termsOfService")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// POST-as-GET (RFC 8555 §6.3) signed by the account: for alternate
    /// chains, which instant-acme does not fetch. `badNonce` is retried.
    pub async fn post_as_get(
        &self,
        dir: &Directory,
        signer: &AccountSigner,
        url: &str,
    ) -> Result<Bytes, Error> {
        let mut last = String::new();
        for _ in 0..crate::order::NONCE_ATTEMPTS {
            let nonce = self.nonce(dir).await?;
            let body = signer.jws(&nonce, url)?;
            let req = Request::builder()
                .method(Method::POST)
                .uri(url)
                .header(http::header::USER_AGENT, user_agent())
                .header(http::header::CONTENT_TYPE, "application/jose+json")
                .body(BodyWrapper::from(body))
                .map_err(|e| Error::Protocol(e.to_string()))?;
            let (parts, bytes) = self
                .send(req)
                .await
                .map_err(|e| Error::Protocol(format!("{url}: {e}")))?;
            if parts.status.is_success() {
                return Ok(bytes);
            }
            let problem: Option<instant_acme::Problem> = serde_json::from_slice(&bytes).ok();
            match problem {
                Some(p) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce") => {
                    last = crate::error::problem_detail(&p);
                }
                Some(p) => return Err(Error::from_problem(&p)),
                None => return Err(Error::Protocol(format!("{url}: HTTP {}", parts.status))),
            }
        }
        Err(Error::BadNonce {
            attempts: crate::order::NONCE_ATTEMPTS,
            detail: last,
        })
    }

    async fn nonce(&self, dir: &Directory) -> Result<String, Error> {
        let req = Request::builder()
            .method(Method::HEAD)
            .uri(&dir.new_nonce)
            .header(http::header::USER_AGENT, user_agent())
            .body(BodyWrapper::default())
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let (parts, _) = self
            .send(req)
            .await
            .map_err(|e| Error::Protocol(format!("newNonce: {e}")))?;
        parts
            .headers
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol("the CA's newNonce answer has no Replay-Nonce".into()))
    }
}

impl HttpClient for Transport {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = this
                .send(req)
                .await
                .map_err(|e| instant_acme::Error::Other(e.into()))?;
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

fn user_agent() -> String {
    format!("devtls/{} (instant-acme)", env!("CARGO_PKG_VERSION"))
}

/// The `rel="alternate"` targets in one `Link` header value.
pub fn alternate_links(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter_map(|part| {
            let (target, params) = part.split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let alternate = params.split(';').any(|p| {
                matches!(
                    p.trim().replace(' ', "").as_str(),
                    "rel=\"alternate\"" | "rel=alternate"
                )
            });
            alternate.then(|| target.to_string())
        })
        .collect()
}

/// What devtls reads from the CA's directory itself.
#[derive(Debug, Clone)]
pub struct Directory {
    /// The directory URL.
    pub url: String,
    /// Where fresh nonces come from.
    pub new_nonce: String,
    /// The ACME Renewal Information endpoint, when the CA offers ARI.
    pub renewal_info: Option<String>,
    /// Certificate profiles the CA offers (`classic`, `tlsserver`, `shortlived`...).
    pub profiles: Vec<String>,
    /// The terms of service URL.
    pub terms: Option<String>,
}

/// Signs POST-as-GET requests with the account key (ES256, as instant-acme's accounts use).
pub struct AccountSigner {
    kid: String,
    key: aws_lc_rs::signature::EcdsaKeyPair,
}

impl AccountSigner {
    /// The signer for an account: its URL and its PKCS#8 P-256 key.
    pub fn new(kid: &str, pkcs8: &[u8]) -> Result<Self, Error> {
        let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
        )
        .map_err(|_| Error::Input("the stored account key is not a P-256 PKCS#8 key".into()))?;
        Ok(AccountSigner {
            kid: kid.to_string(),
            key,
        })
    }

    fn jws(&self, nonce: &str, url: &str) -> Result<Vec<u8>, Error> {
        let protected =
            serde_json::json!({"alg": "ES256", "kid": self.kid, "nonce": nonce, "url": url});
        let protected = BASE64_URL_SAFE_NO_PAD.encode(protected.to_string());
        let signing_input = format!("{protected}.");
        let sig = self
            .key
            .sign(
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
            )
            .map_err(|_| Error::Protocol("signing with the account key failed".into()))?;
        let body = serde_json::json!({
            "protected": protected,
            "payload": "",
            "signature": BASE64_URL_SAFE_NO_PAD.encode(sig.as_ref()),
        });
        Ok(body.to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_resolve_and_only_https_is_accepted() {
        assert_eq!(directory_url("letsencrypt").unwrap(), LETSENCRYPT);
        assert_eq!(
            directory_url("letsencrypt-staging").unwrap(),
            LETSENCRYPT_STAGING
        );
        assert!(directory_url("http://127.0.0.1:14000/dir").is_err());
        assert_eq!(label("https://127.0.0.1:14000/dir"), "127.0.0.1_14000");
    }

    #[test]
    fn link_headers_give_only_alternates() {
        let v = r#"<https://ca/certZ/1/1>;rel="alternate", <https://ca/dir>;rel="index",<https://ca/certZ/1/2>; rel="alternate""#;
        assert_eq!(
            alternate_links(v),
            ["https://ca/certZ/1/1", "https://ca/certZ/1/2"]
        );
    }
}

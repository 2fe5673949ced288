//! http-01: a small HTTP listener answering
//! `GET /.well-known/acme-challenge/TOKEN` with the key authorization, or
//! the same answer as a file under a web root. HTTP/1.1 is hyper's (one
//! request per connection, head at most 8 KiB read within 10 s, no body
//! read); at most [`MAX_CONNECTIONS`] connections at once, more are closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::Error;

/// The path prefix the CA asks for.
pub const PREFIX: &str = "/.well-known/acme-challenge/";
/// Connections served at once (a CA validates from a few addresses).
pub const MAX_CONNECTIONS: usize = 64;
/// Time for a connection: its request head and the answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// A running http-01 listener; it stops when dropped.
pub struct Server {
    tokens: Tokens,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `bind:port` and starts answering.
    pub async fn start(bind: IpAddr, port: u16) -> Result<Server, Error> {
        let addr = SocketAddr::new(bind, port);
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Solver(format!(
                "http-01: cannot listen on {addr}: {e}; free the port (stop the web server), run with the rights to bind it, or use --webroot DIR"
            ))
        })?;
        let tokens: Tokens = Arc::default();
        let served = tokens.clone();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Full: closed at once rather than queued.
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let tokens = served.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(TIMEOUT, answer(stream, tokens)).await;
                    drop(permit);
                });
            }
        });
        Ok(Server { tokens, task })
    }

    /// Answers `token` with `key_auth` from now on.
    pub fn insert(&self, token: &str, key_auth: &str) {
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(token.to_string(), key_auth.to_string());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(stream: TcpStream, tokens: Tokens) -> Result<(), hyper::Error> {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let body = match (req.method(), req.uri().path().strip_prefix(PREFIX)) {
            (&http::Method::GET, Some(token)) => {
                tokens.lock().ok().and_then(|t| t.get(token).cloned())
            }
            _ => None,
        };
        let response = match body {
            Some(b) => hyper::Response::builder()
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
                .body(Full::new(Bytes::from(b))),
            None => hyper::Response::builder()
                .status(http::StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::new())),
        };
        async move { Ok::<_, Infallible>(response.unwrap_or_default()) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(TIMEOUT)
        .keep_alive(false)
        .max_headers(32)
        .max_header_size(8 * 1024)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .await
}

/// The file under a web root that answers `token`. Tokens are base64url
/// (RFC 8555 §8.1); anything else is refused so it cannot name another path.
pub fn webroot_file(root: &Path, token: &str) -> Result<PathBuf, Error> {
    if token.is_empty()
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Protocol(format!(
            "the CA sent a challenge token that is not base64url: {token:?}"
        )));
    }
    Ok(root.join(".well-known").join("acme-challenge").join(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webroot_tokens_cannot_escape_the_root() {
        let root = Path::new("/srv/www");
        assert_eq!(
            webroot_file(root, "abc-_9").unwrap(),
            root.join(".well-known/acme-challenge/abc-_9")
        );
        assert!(webroot_file(root, "../../etc/passwd").is_err());
        assert!(webroot_file(root, "").is_err());
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener on a free port answering `tok` with `tok.thumb`.
    async fn listener() -> (Server, u16) {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let server = Server::start("127.0.0.1".parse().unwrap(), port)
            .await
            .unwrap();
        server.insert("tok", "tok.thumb");
        (server, port)
    }

    /// Sends `raw` on one connection; what came back before it closed.
    async fn send(port: u16, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap_or_default();
        out
    }

    #[tokio::test]
    async fn the_listener_answers_known_tokens_only() {
        let (_server, port) = listener().await;
        let get = |path: &'static str| async move {
            send(
                port,
                format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            )
            .await
        };
        let hit = get("/.well-known/acme-challenge/tok").await;
        assert!(
            hit.starts_with("HTTP/1.1 200") && hit.ends_with("\r\n\r\ntok.thumb"),
            "{hit}"
        );
        assert!(get("/.well-known/acme-challenge/other")
            .await
            .starts_with("HTTP/1.1 404"));
        assert!(get("/").await.starts_with("HTTP/1.1 404"));
    }

    /// What the hand-written reader answered (it read the request line
    /// only) is now refused by hyper: conflicting lengths, a request line
    /// that is not HTTP/1.x.
    #[tokio::test]
    async fn malformed_requests_are_refused_not_answered() {
        let (_server, port) = listener().await;
        let send = |raw: &'static [u8]| send(port, raw);
        let twice = send(b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab").await;
        assert!(twice.starts_with("HTTP/1.1 400"), "{twice}");
        let odd = send(b"GET /.well-known/acme-challenge/tok HTTP/7.0 x\r\nHost: x\r\n\r\n").await;
        assert!(!odd.contains("tok.thumb"), "{odd}");
    }
}

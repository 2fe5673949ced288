//! http-01: a small HTTP listener answering
//! `GET /.well-known/acme-challenge/TOKEN` with the key authorization, or
//! the same answer as a file under a web root.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Error;

/// The path prefix the CA asks for.
pub const PREFIX: &str = "/.well-known/acme-challenge/";

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
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tokens = served.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), answer(stream, tokens)).await;
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

async fn answer(mut stream: TcpStream, tokens: Tokens) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&buf);
    let line = request.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let body = match (method, target.strip_prefix(PREFIX)) {
        ("GET", Some(token)) => tokens.lock().ok().and_then(|t| t.get(token).cloned()),
        _ => None,
    };
    let response = match body {
        Some(b) => format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len()),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
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

    #[tokio::test]
    async fn the_listener_answers_known_tokens_only() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let server = Server::start("127.0.0.1".parse().unwrap(), port)
            .await
            .unwrap();
        server.insert("tok", "tok.thumb");
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
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
}

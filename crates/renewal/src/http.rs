//! HTTP/1.1 for the service, spoken by hyper (HTTP/1 only, one request per
//! connection, `Connection: close`): the head at most 8 KiB and 32 headers,
//! read within a time limit; a body at most 16 KiB (`Content-Length` or
//! chunked), read within a time limit. Conflicting `Content-Length`s,
//! malformed heads and pipelined requests are hyper's to refuse
//! (docs/hardening.md, "fleet serve").

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines in a request.
pub const MAX_HEADERS: usize = 32;
/// Largest request body.
pub const MAX_BODY: usize = 16 * 1024;

/// A parsed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without a query string.
    pub path: String,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `Accept` names this media type.
    pub fn accepts(&self, media: &str) -> bool {
        self.header("accept").is_some_and(|a| {
            a.split(',').any(|m| {
                m.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(media)
            })
        })
    }
}

/// Why a request could not be read (hyper refuses a malformed head itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is larger than [`MAX_BODY`].
    #[error("request body larger than 16 KiB")]
    BodyTooLarge,
    /// The body did not arrive within the time limit.
    #[error("the request body did not arrive in time")]
    Timeout,
    /// The connection ended or broke before the body did.
    #[error("the request body was cut short or malformed")]
    Truncated,
}

impl RequestError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BodyTooLarge => 413,
            RequestError::Timeout => 408,
            RequestError::Truncated => 400,
        }
    }
}

/// Time limits of the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the request head, from the start of the connection's HTTP.
    pub head: Duration,
    /// For the body, after the head.
    pub body: Duration,
}

/// Serves the one request of `io` with hyper: `handle` gets the request
/// (or why its body could not be read) and returns the answer. Returns
/// hyper's error for a head it refused (it answered 400 or 431 itself) or
/// one that did not arrive in time.
pub async fn serve_one<I, H, F>(io: I, timeouts: Timeouts, handle: H) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Result<Request, RequestError>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let handle = handle.clone();
        async move {
            let request = read(req, timeouts.body).await;
            Ok::<_, Infallible>(handle(request).await.into_hyper())
        }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.head)
        .keep_alive(false)
        .title_case_headers(true)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_HEAD.max(8192) + MAX_BODY)
        .serve_connection(TokioIo::new(io), service)
        .await
}

async fn read(req: hyper::Request<Incoming>, limit: Duration) -> Result<Request, RequestError> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(RequestError::BodyTooLarge);
    }
    let body = match tokio::time::timeout(limit, Limited::new(body, MAX_BODY).collect()).await {
        Err(_) => return Err(RequestError::Timeout),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(RequestError::BodyTooLarge)
        }
        Ok(Err(_)) => return Err(RequestError::Truncated),
        Ok(Ok(b)) => b.to_bytes().to_vec(),
    };
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
            (n.as_str().to_ascii_lowercase(), value)
        })
        .collect();
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        headers,
        body,
    })
}

/// A response: status, extra headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a content type.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The answer as hyper sends it (`Content-Length` and `Connection:
    /// close` added). A header that is not valid HTTP is left out.
    pub fn into_hyper(self) -> hyper::Response<Full<Bytes>> {
        let mut out = hyper::Response::new(Full::new(Bytes::from(self.body)));
        *out.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = out.headers_mut();
        for (n, v) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                headers.append(n, v);
            }
        }
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `raw` to [`serve_one`] over an in-memory pipe; returns the
    /// answer's bytes and the requests the handler saw.
    async fn exchange(raw: &[u8]) -> (String, Vec<Result<Request, RequestError>>) {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let timeouts = Timeouts {
            head: Duration::from_secs(5),
            body: Duration::from_secs(5),
        };
        let task = tokio::spawn(serve_one(server, timeouts, move |r| {
            let log = log.clone();
            async move {
                let body = match &r {
                    Ok(req) => format!("{} {} {}", req.method, req.path, req.body.len()),
                    Err(e) => e.to_string(),
                };
                let status = r.as_ref().map_or_else(|e| e.status(), |_| 200);
                log.lock().unwrap().push(r);
                Response::new(status, "text/plain", body.into_bytes())
                    .with("X-Devtls-Status", "test")
            }
        }));
        client.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let _ = task.await;
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        (String::from_utf8_lossy(&out).into_owned(), seen)
    }

    #[tokio::test]
    async fn reads_a_post_with_a_body_and_answers_once() {
        let (out, seen) = exchange(b"POST /.well-known/est/simplereenroll?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain, application/x-devtls-renew\r\nContent-Length: 3\r\n\r\nabc").await;
        let r = seen[0].as_ref().unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.body.as_slice()),
            ("POST", "/.well-known/est/simplereenroll", &b"abc"[..])
        );
        assert!(r.accepts("application/x-devtls-renew") && !r.accepts("application/pkcs10"));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("X-Devtls-Status: test\r\n") && out.contains("Connection: close\r\n"));
        assert!(
            out.ends_with("\r\n\r\nPOST /.well-known/est/simplereenroll 3"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn conflicting_content_lengths_are_refused_not_first_wins() {
        let (out, seen) =
            exchange(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 9\r\n\r\nabc").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(seen.is_empty(), "the handler never saw it");
    }

    #[tokio::test]
    async fn chunked_bodies_are_read_and_pipelined_requests_get_one_answer() {
        let (out, seen) = exchange(
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        )
        .await;
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].as_ref().unwrap().body, b"abc");
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
    }

    #[tokio::test]
    async fn what_is_too_big_or_not_http_is_refused() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(vec![b'a'; MAX_HEAD + 10]);
        big.extend_from_slice(b"\r\n\r\n");
        assert!(exchange(&big).await.0.starts_with("HTTP/1.1 431"));
        let body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let (out, seen) = exchange(body.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        assert_eq!(seen, vec![Err(RequestError::BodyTooLarge)]);
        let mut chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..20 {
            chunked.extend_from_slice(b"400\r\n");
            chunked.extend(vec![b'a'; 0x400]);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        assert!(exchange(&chunked).await.0.starts_with("HTTP/1.1 413"));
        assert!(exchange(b"hello\r\n\r\n")
            .await
            .0
            .starts_with("HTTP/1.1 400"));
    }

    /// A head that never ends is cut off at the header-read timeout; the
    /// handler never runs.
    #[tokio::test]
    async fn a_slow_head_is_cut_off() {
        let (mut client, server) = tokio::io::duplex(1024);
        let timeouts = Timeouts {
            head: Duration::from_millis(200),
            body: Duration::from_secs(5),
        };
        let task = tokio::spawn(serve_one(server, timeouts, |_| async {
            panic!("no request was complete")
        }));
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let served = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert!(served.is_err(), "hyper gave up on the head");
    }
}

//! The little HTTP/1.1 the service speaks: one request per connection
//! (`Connection: close`), headers at most 8 KiB, a body at most 16 KiB with
//! a `Content-Length`, no chunked encoding. What a MicroPython script sends.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
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

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The head is larger than [`MAX_HEAD`].
    #[error("request headers larger than 8 KiB")]
    HeadTooLarge,
    /// The body is larger than [`MAX_BODY`].
    #[error("request body larger than 16 KiB")]
    BodyTooLarge,
    /// Not HTTP/1.x as this service reads it.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The connection ended before the request did.
    #[error("connection closed mid-request")]
    Truncated,
    /// A chunked body (`Content-Length` is required).
    #[error("chunked bodies are not accepted; send Content-Length")]
    LengthRequired,
}

impl RequestError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::HeadTooLarge => 431,
            RequestError::BodyTooLarge => 413,
            RequestError::LengthRequired => 411,
            _ => 400,
        }
    }
}

/// Parses a request head (everything before the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, RequestError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| RequestError::Malformed("headers are not text".into()))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed(format!(
            "request line '{}'",
            first.escape_debug()
        )));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(RequestError::Malformed(format!(
            "request line '{}'",
            first.escape_debug()
        )));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            RequestError::Malformed(format!("header line '{}'", line.escape_debug()))
        })?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        headers,
        body: Vec::new(),
    })
}

/// Reads one request from `stream` within the size limits (the caller bounds the time).
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, RequestError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(RequestError::HeadTooLarge);
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| RequestError::Truncated)?;
        if n == 0 {
            return Err(RequestError::Truncated);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > MAX_HEAD {
        return Err(RequestError::HeadTooLarge);
    }
    let mut request = parse_head(&buf[..head_end])?;
    if request
        .header("transfer-encoding")
        .is_some_and(|t| !t.eq_ignore_ascii_case("identity"))
    {
        return Err(RequestError::LengthRequired);
    }
    let length = match request.header("content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| RequestError::Malformed(format!("Content-Length '{v}'")))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(RequestError::BodyTooLarge);
    }
    let mut body = buf[head_end + 4..].to_vec();
    if body.len() > length {
        return Err(RequestError::Malformed(
            "more bytes than Content-Length".into(),
        ));
    }
    while body.len() < length {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| RequestError::Truncated)?;
        if n == 0 {
            return Err(RequestError::Truncated);
        }
        body.extend_from_slice(&chunk[..n]);
        if body.len() > length {
            return Err(RequestError::Malformed(
                "more bytes than Content-Length".into(),
            ));
        }
    }
    request.body = body;
    Ok(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, RequestError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut input = bytes;
        rt.block_on(read_request(&mut input))
    }

    #[test]
    fn reads_a_post_with_a_body() {
        let r = read(b"POST /.well-known/est/simplereenroll?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain, application/x-devtls-renew\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/.well-known/est/simplereenroll")
        );
        assert_eq!(r.body, b"abc");
        assert!(r.accepts("application/x-devtls-renew") && !r.accepts("application/pkcs10"));
    }

    #[test]
    fn refuses_what_is_too_big_or_not_http() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(vec![b'a'; MAX_HEAD + 10]);
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(read(&big), Err(RequestError::HeadTooLarge));
        let body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(read(body.as_bytes()), Err(RequestError::BodyTooLarge));
        assert_eq!(
            read(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(RequestError::LengthRequired)
        );
        assert!(matches!(
            read(b"hello\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"),
            Err(RequestError::Truncated)
        );
    }

    #[test]
    fn responses_close_the_connection() {
        let wire = Response::new(403, "text/plain", b"refused: revoked\n".to_vec())
            .with("X-Devtls-Status", "revoked")
            .to_bytes();
        let text = String::from_utf8(wire).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(
            text.contains("X-Devtls-Status: revoked\r\n") && text.contains("Connection: close\r\n")
        );
        assert!(text.ends_with("\r\n\r\nrefused: revoked\n"));
    }
}

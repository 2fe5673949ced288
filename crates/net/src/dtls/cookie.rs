//! Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1).
//!
//! The server answers a ClientHello without a valid cookie with a
//! HelloVerifyRequest and keeps no state at all, so spoofed source addresses
//! cost it one small datagram each and no memory. The cookie is an HMAC of
//! the client's address and port under a per-process secret, with a time
//! window so a cookie does not stay valid for ever; a ClientHello that
//! carries a cookie made for its own address proves the client can receive
//! at that address, and only then is a handshake started.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;

/// Length of a cookie. rtc-dtls keeps its own cookies at this length, and the
/// server hands ours to it (see `server.rs`), so the two must agree.
pub(crate) const COOKIE_LEN: usize = 20;

/// How long one cookie secret window lasts; a cookie from the current or the
/// previous window is accepted.
const WINDOW: Duration = Duration::from_secs(60);

const RECORD_HEADER: usize = 13;
const HANDSHAKE_HEADER: usize = 12;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const HELLO_VERIFY_REQUEST: u8 = 3;
/// DTLS 1.0's version number: RFC 6347 asks servers to put it in the
/// HelloVerifyRequest whatever version they will negotiate.
const DTLS10: [u8; 2] = [0xfe, 0xff];

/// Makes and checks cookies with a secret drawn when the server starts.
pub(crate) struct CookieJar {
    key: hmac::Key,
}

impl CookieJar {
    /// A jar with a fresh random secret.
    pub(crate) fn new() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key =
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system random source works");
        CookieJar { key }
    }

    fn cookie_for(&self, peer: SocketAddr, window: u64) -> [u8; COOKIE_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&window.to_be_bytes());
        match peer.ip() {
            IpAddr::V4(ip) => ctx.update(&ip.octets()),
            IpAddr::V6(ip) => ctx.update(&ip.octets()),
        }
        ctx.update(&peer.port().to_be_bytes());
        let tag = ctx.sign();
        let mut cookie = [0u8; COOKIE_LEN];
        cookie.copy_from_slice(&tag.as_ref()[..COOKIE_LEN]);
        cookie
    }

    fn window_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() / WINDOW.as_secs())
            .unwrap_or(0)
    }

    /// The cookie to send `peer` now.
    pub(crate) fn issue(&self, peer: SocketAddr) -> [u8; COOKIE_LEN] {
        self.cookie_for(peer, Self::window_now())
    }

    /// Whether `cookie` was issued to `peer` in this window or the last one.
    pub(crate) fn check(&self, peer: SocketAddr, cookie: &[u8]) -> bool {
        let now = Self::window_now();
        [now, now.saturating_sub(1)].iter().any(|w| {
            let expected = self.cookie_for(peer, *w);
            cookie.len() == COOKIE_LEN
                && aws_lc_rs::constant_time::verify_slices_are_equal(cookie, &expected).is_ok()
        })
    }
}

/// The parts of a datagram's first record that matter for the cookie
/// exchange, when that record is a whole, unfragmented ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientHello {
    /// The record sequence number (48 bits).
    pub record_seq: u64,
    /// The handshake message_seq.
    pub message_seq: u16,
    /// The cookie field (empty on a first ClientHello).
    pub cookie: Vec<u8>,
    /// Length of the first record, header included.
    pub record_len: usize,
}

/// Reads the first record of `datagram` as an epoch-0 ClientHello; `None` for
/// anything else (garbage, other messages, fragments).
pub(crate) fn parse_client_hello(datagram: &[u8]) -> Option<ClientHello> {
    let header = datagram.get(..RECORD_HEADER)?;
    if header[0] != CONTENT_HANDSHAKE || header[1] != 0xfe || header[3..5] != [0, 0] {
        return None;
    }
    let record_seq = u64::from_be_bytes([
        0, 0, header[5], header[6], header[7], header[8], header[9], header[10],
    ]);
    let length = usize::from(u16::from_be_bytes([header[11], header[12]]));
    let body = datagram.get(RECORD_HEADER..RECORD_HEADER + length)?;
    let hs = body.get(..HANDSHAKE_HEADER)?;
    if hs[0] != CLIENT_HELLO {
        return None;
    }
    let msg_len = u24(&hs[1..4]);
    let message_seq = u16::from_be_bytes([hs[4], hs[5]]);
    let frag_offset = u24(&hs[6..9]);
    let frag_len = u24(&hs[9..12]);
    if frag_offset != 0 || frag_len != msg_len || body.len() < HANDSHAKE_HEADER + msg_len {
        return None;
    }
    let hello = &body[HANDSHAKE_HEADER..HANDSHAKE_HEADER + msg_len];
    // client_version(2) random(32) session_id<0..32> cookie<0..255>
    let sid_len = usize::from(*hello.get(34)?);
    let cookie_at = 35 + sid_len;
    let cookie_len = usize::from(*hello.get(cookie_at)?);
    let cookie = hello
        .get(cookie_at + 1..cookie_at + 1 + cookie_len)?
        .to_vec();
    Some(ClientHello {
        record_seq,
        message_seq,
        cookie,
        record_len: RECORD_HEADER + length,
    })
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A HelloVerifyRequest answering `hello` with `cookie`. It reuses the
/// ClientHello's record sequence number and message_seq, as RFC 6347 asks of
/// a stateless server.
pub(crate) fn hello_verify_request(hello: &ClientHello, cookie: &[u8]) -> Vec<u8> {
    let body_len = 2 + 1 + cookie.len();
    let mut out = Vec::with_capacity(RECORD_HEADER + HANDSHAKE_HEADER + body_len);
    out.push(CONTENT_HANDSHAKE);
    out.extend_from_slice(&DTLS10);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&hello.record_seq.to_be_bytes()[2..]);
    out.extend_from_slice(&((HANDSHAKE_HEADER + body_len) as u16).to_be_bytes());
    out.push(HELLO_VERIFY_REQUEST);
    out.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&hello.message_seq.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&DTLS10);
    out.push(cookie.len() as u8);
    out.extend_from_slice(cookie);
    out
}

/// The first ClientHello as the client sent it before our HelloVerifyRequest,
/// rebuilt from the second one: message_seq 0 and the previous record number.
///
/// rtc-dtls's server insists on running the cookie exchange itself; feeding it
/// this record first (while its random source hands out our cookie) lets it
/// accept the real second ClientHello without a second round trip. The record
/// number must differ from the real one or its replay window drops the real
/// one, so a second ClientHello with record number 0 cannot be used (no
/// client sends one: record numbers count up from the first ClientHello).
pub(crate) fn first_hello_from_second(datagram: &[u8], hello: &ClientHello) -> Option<Vec<u8>> {
    let prev = hello.record_seq.checked_sub(1)?;
    let mut record = datagram.get(..hello.record_len)?.to_vec();
    record[5..11].copy_from_slice(&prev.to_be_bytes()[2..]);
    record[RECORD_HEADER + 4..RECORD_HEADER + 6].copy_from_slice(&[0, 0]);
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal DTLS 1.2 ClientHello record with the given cookie.
    fn hello_record(record_seq: u8, message_seq: u8, cookie: &[u8]) -> Vec<u8> {
        let mut hello = vec![0xfe, 0xfd];
        hello.extend_from_slice(&[7u8; 32]);
        hello.push(0); // session id
        hello.push(cookie.len() as u8);
        hello.extend_from_slice(cookie);
        hello.extend_from_slice(&[0, 2, 0xc0, 0x2b, 1, 0]);
        let len = hello.len() as u8;
        let mut hs = vec![CLIENT_HELLO, 0, 0, len, 0, message_seq, 0, 0, 0, 0, 0, len];
        hs.extend_from_slice(&hello);
        let mut rec = vec![
            22,
            0xfe,
            0xfd,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            record_seq,
            0,
            hs.len() as u8,
        ];
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn cookies_are_bound_to_address_and_port() {
        let jar = CookieJar::new();
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let cookie = jar.issue(a);
        assert!(jar.check(a, &cookie));
        assert!(!jar.check(b, &cookie));
        assert!(!jar.check(a, &cookie[..10]));
        // Another process (another secret) does not accept it.
        assert!(!CookieJar::new().check(a, &cookie));
    }

    #[test]
    fn parses_hello_and_answers_with_a_hello_verify_request() {
        let rec = hello_record(0, 0, &[]);
        let hello = parse_client_hello(&rec).unwrap();
        assert_eq!((hello.record_seq, hello.message_seq), (0, 0));
        assert!(hello.cookie.is_empty());
        let hvr = hello_verify_request(&hello, &[9; COOKIE_LEN]);
        assert_eq!(&hvr[..3], &[22, 0xfe, 0xff]);
        assert_eq!(hvr[RECORD_HEADER], HELLO_VERIFY_REQUEST);
        assert_eq!(hvr.len(), RECORD_HEADER + HANDSHAKE_HEADER + 3 + COOKIE_LEN);
        assert_eq!(&hvr[hvr.len() - COOKIE_LEN..], &[9; COOKIE_LEN]);

        let second = hello_record(1, 1, &[9; COOKIE_LEN]);
        let hello2 = parse_client_hello(&second).unwrap();
        assert_eq!(hello2.cookie, vec![9; COOKIE_LEN]);
        let first = first_hello_from_second(&second, &hello2).unwrap();
        let rebuilt = parse_client_hello(&first).unwrap();
        assert_eq!((rebuilt.record_seq, rebuilt.message_seq), (0, 0));
    }

    #[test]
    fn garbage_is_not_a_hello() {
        assert!(parse_client_hello(b"hello\n").is_none());
        assert!(
            parse_client_hello(&[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).is_none()
        );
        let mut rec = hello_record(0, 0, &[]);
        rec.truncate(40);
        assert!(parse_client_hello(&rec).is_none());
    }
}

//! Records and handshake messages on the wire, TLS 1.2 (RFC 5246) and
//! DTLS 1.2 (RFC 6347): framing out, reassembly in. Plaintext only: the
//! part of a handshake that comes before ChangeCipherSpec.

use std::collections::BTreeMap;

/// Record content types.
pub mod content {
    /// change_cipher_spec.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// alert.
    pub const ALERT: u8 = 21;
    /// handshake.
    pub const HANDSHAKE: u8 = 22;
    /// application_data.
    pub const APPLICATION_DATA: u8 = 23;
}

/// Handshake message types.
pub mod hs {
    /// ClientHello.
    pub const CLIENT_HELLO: u8 = 1;
    /// ServerHello.
    pub const SERVER_HELLO: u8 = 2;
    /// HelloVerifyRequest (DTLS).
    pub const HELLO_VERIFY_REQUEST: u8 = 3;
    /// Certificate.
    pub const CERTIFICATE: u8 = 11;
    /// ServerKeyExchange.
    pub const SERVER_KEY_EXCHANGE: u8 = 12;
    /// CertificateRequest.
    pub const CERTIFICATE_REQUEST: u8 = 13;
    /// ServerHelloDone.
    pub const SERVER_HELLO_DONE: u8 = 14;
    /// CertificateVerify.
    pub const CERTIFICATE_VERIFY: u8 = 15;
    /// ClientKeyExchange.
    pub const CLIENT_KEY_EXCHANGE: u8 = 16;
    /// Finished.
    pub const FINISHED: u8 = 20;
}

/// The TLS 1.2 version on the wire.
pub const TLS12: u16 = 0x0303;
/// The DTLS 1.2 version on the wire.
pub const DTLS12: u16 = 0xFEFD;

/// Largest record payload accepted from a peer (2^14 plus expansion room).
const MAX_RECORD: usize = 16384 + 2048;
/// Largest handshake message reassembled (a Certificate message of a long chain).
pub const MAX_MESSAGE: usize = 1 << 18;

/// Stream (TLS over TCP) or datagram (DTLS over UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS 1.2 over TCP.
    Tls,
    /// DTLS 1.2 over UDP.
    Dtls,
}

impl Transport {
    /// The protocol version on the wire.
    pub fn version(self) -> u16 {
        match self {
            Transport::Tls => TLS12,
            Transport::Dtls => DTLS12,
        }
    }

    fn handshake_header_len(self) -> usize {
        match self {
            Transport::Tls => 4,
            Transport::Dtls => 12,
        }
    }
}

/// Writes records and handshake messages, keeping DTLS sequence numbers.
#[derive(Debug, Clone)]
pub struct Writer {
    transport: Transport,
    record_seq: u64,
    message_seq: u16,
    epoch: u16,
}

impl Writer {
    /// A writer at the start of a connection.
    pub fn new(transport: Transport) -> Self {
        Writer {
            transport,
            record_seq: 0,
            message_seq: 0,
            epoch: 0,
        }
    }

    /// A handshake message as it enters the transcript (header + body; for
    /// DTLS the unfragmented 12-byte header).
    pub fn handshake_message(&mut self, msg_type: u8, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(body.len() + 12);
        m.push(msg_type);
        put_u24(&mut m, body.len());
        if self.transport == Transport::Dtls {
            m.extend_from_slice(&self.message_seq.to_be_bytes());
            self.message_seq = self.message_seq.wrapping_add(1);
            put_u24(&mut m, 0);
            put_u24(&mut m, body.len());
        }
        m.extend_from_slice(body);
        m
    }

    /// One record holding `payload`.
    pub fn record(&mut self, content_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut r = Vec::with_capacity(payload.len() + 13);
        r.push(content_type);
        r.extend_from_slice(&self.transport.version().to_be_bytes());
        if self.transport == Transport::Dtls {
            r.extend_from_slice(&self.epoch.to_be_bytes());
            r.extend_from_slice(&self.record_seq.to_be_bytes()[2..]);
            self.record_seq += 1;
        }
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(payload);
        r
    }

    /// The epoch and sequence number of the next record, consumed (for a
    /// record sealed elsewhere).
    pub fn take_seq(&mut self) -> (u16, u64) {
        let at = (self.epoch, self.record_seq);
        self.record_seq += 1;
        at
    }

    /// After ChangeCipherSpec: DTLS records move to epoch 1, sequence 0.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
        self.record_seq = 0;
    }
}

/// Something the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete handshake message: type, body, and its transcript bytes.
    Handshake {
        /// The message type ([`hs`]).
        msg_type: u8,
        /// The message body.
        body: Vec<u8>,
        /// Header and body as they enter the transcript.
        transcript: Vec<u8>,
    },
    /// An alert.
    Alert {
        /// 1 warning, 2 fatal.
        level: u8,
        /// The alert description (RFC 5246 section 7.2).
        description: u8,
    },
    /// ChangeCipherSpec.
    ChangeCipherSpec,
    /// A record of another type (e.g. encrypted data).
    Other(u8),
}

/// What the peer sent cannot be TLS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes are not a TLS record (e.g. plain HTTP).
    #[error("not a TLS record (first bytes {0})")]
    NotTls(String),
    /// A record or message is malformed or oversized.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Reassembles records and handshake messages from the peer.
#[derive(Debug)]
pub struct Reader {
    transport: Transport,
    buf: Vec<u8>,
    handshake: Vec<u8>,
    /// DTLS: fragments by message_seq.
    fragments: BTreeMap<u16, Reassembly>,
    /// DTLS: the next message_seq to deliver (`None`: the first ServerHello's).
    next_seq: Option<u16>,
    ready: std::collections::VecDeque<Incoming>,
    /// Records seen so far (a peer that sent any is speaking TLS).
    pub records: usize,
}

#[derive(Debug)]
struct Reassembly {
    msg_type: u8,
    body: Vec<u8>,
    have: Vec<bool>,
}

impl Reader {
    /// A reader at the start of a connection.
    pub fn new(transport: Transport) -> Self {
        Reader {
            transport,
            buf: Vec::new(),
            handshake: Vec::new(),
            fragments: BTreeMap::new(),
            next_seq: Some(0),
            ready: Default::default(),
            records: 0,
        }
    }

    /// DTLS: after a HelloVerifyRequest the server starts again; its next
    /// flight begins with a ServerHello whatever its message_seq.
    pub fn restart(&mut self) {
        self.fragments.clear();
        self.next_seq = None;
    }

    /// Adds bytes (TLS) or one datagram (DTLS).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        match self.transport {
            Transport::Tls => {
                self.buf.extend_from_slice(bytes);
                self.tls_records()
            }
            Transport::Dtls => self.dtls_records(bytes),
        }
    }

    /// The next complete thing the peer sent, if any.
    pub fn next_incoming(&mut self) -> Option<Incoming> {
        self.ready.pop_front()
    }

    fn tls_records(&mut self) -> Result<(), WireError> {
        loop {
            if self.buf.len() < 5 {
                if self.records == 0 && !self.buf.is_empty() {
                    check_header(&self.buf)?;
                }
                return Ok(());
            }
            check_header(&self.buf)?;
            let len = u16::from_be_bytes([self.buf[3], self.buf[4]]) as usize;
            if len > MAX_RECORD {
                return Err(WireError::Malformed("record (too long)"));
            }
            if self.buf.len() < 5 + len {
                return Ok(());
            }
            let content_type = self.buf[0];
            let payload: Vec<u8> = self.buf[5..5 + len].to_vec();
            self.buf.drain(..5 + len);
            self.records += 1;
            self.tls_payload(content_type, &payload)?;
        }
    }

    fn tls_payload(&mut self, content_type: u8, payload: &[u8]) -> Result<(), WireError> {
        match content_type {
            content::HANDSHAKE => {
                self.handshake.extend_from_slice(payload);
                while self.handshake.len() >= 4 {
                    let len = get_u24(&self.handshake[1..4]);
                    if len > MAX_MESSAGE {
                        return Err(WireError::Malformed("handshake message (too long)"));
                    }
                    if self.handshake.len() < 4 + len {
                        break;
                    }
                    let transcript: Vec<u8> = self.handshake.drain(..4 + len).collect();
                    self.ready.push_back(Incoming::Handshake {
                        msg_type: transcript[0],
                        body: transcript[4..].to_vec(),
                        transcript,
                    });
                }
            }
            other => self.non_handshake(other, payload)?,
        }
        Ok(())
    }

    fn non_handshake(&mut self, content_type: u8, payload: &[u8]) -> Result<(), WireError> {
        match content_type {
            content::ALERT => {
                if payload.len() < 2 {
                    return Err(WireError::Malformed("alert"));
                }
                self.ready.push_back(Incoming::Alert {
                    level: payload[0],
                    description: payload[1],
                });
            }
            content::CHANGE_CIPHER_SPEC => self.ready.push_back(Incoming::ChangeCipherSpec),
            other => self.ready.push_back(Incoming::Other(other)),
        }
        Ok(())
    }

    fn dtls_records(&mut self, datagram: &[u8]) -> Result<(), WireError> {
        let mut rest = datagram;
        while !rest.is_empty() {
            if rest.len() < 13 {
                if self.records == 0 {
                    check_header(rest)?;
                }
                return Err(WireError::Malformed("DTLS record header"));
            }
            check_header(rest)?;
            let epoch = u16::from_be_bytes([rest[3], rest[4]]);
            let len = u16::from_be_bytes([rest[11], rest[12]]) as usize;
            if rest.len() < 13 + len {
                return Err(WireError::Malformed("DTLS record (truncated)"));
            }
            let content_type = rest[0];
            let payload = rest[13..13 + len].to_vec();
            rest = &rest[13 + len..];
            self.records += 1;
            if epoch != 0 {
                // Encrypted: only its arrival matters.
                self.ready.push_back(Incoming::Other(content_type));
                continue;
            }
            if content_type == content::HANDSHAKE {
                self.dtls_fragments(&payload)?;
            } else {
                self.non_handshake(content_type, &payload)?;
            }
        }
        Ok(())
    }

    fn dtls_fragments(&mut self, mut payload: &[u8]) -> Result<(), WireError> {
        while payload.len() >= 12 {
            let msg_type = payload[0];
            let len = get_u24(&payload[1..4]);
            let seq = u16::from_be_bytes([payload[4], payload[5]]);
            let off = get_u24(&payload[6..9]);
            let frag_len = get_u24(&payload[9..12]);
            if len > MAX_MESSAGE || off + frag_len > len || payload.len() < 12 + frag_len {
                return Err(WireError::Malformed("DTLS handshake fragment"));
            }
            let data = &payload[12..12 + frag_len];
            payload = &payload[12 + frag_len..];
            if msg_type == hs::HELLO_VERIFY_REQUEST {
                // Stateless on the server: never part of the sequence.
                self.deliver(msg_type, data.to_vec(), seq);
                continue;
            }
            if self.next_seq.is_none() && msg_type == hs::SERVER_HELLO {
                self.next_seq = Some(seq);
            }
            if self.next_seq.is_some_and(|n| seq < n) {
                continue; // a retransmission of something delivered
            }
            let entry = self.fragments.entry(seq).or_insert_with(|| Reassembly {
                msg_type,
                body: vec![0; len],
                have: vec![false; len],
            });
            if entry.body.len() != len || entry.msg_type != msg_type {
                return Err(WireError::Malformed("DTLS fragments disagree"));
            }
            entry.body[off..off + frag_len].copy_from_slice(data);
            entry.have[off..off + frag_len]
                .iter_mut()
                .for_each(|h| *h = true);
        }
        while let Some(n) = self.next_seq {
            let complete = self
                .fragments
                .get(&n)
                .is_some_and(|r| r.have.iter().all(|h| *h));
            if !complete {
                break;
            }
            let r = self.fragments.remove(&n).expect("checked above");
            self.deliver(r.msg_type, r.body, n);
            self.next_seq = Some(n.wrapping_add(1));
        }
        Ok(())
    }

    fn deliver(&mut self, msg_type: u8, body: Vec<u8>, seq: u16) {
        let mut transcript = Vec::with_capacity(body.len() + 12);
        transcript.push(msg_type);
        put_u24(&mut transcript, body.len());
        transcript.extend_from_slice(&seq.to_be_bytes());
        put_u24(&mut transcript, 0);
        put_u24(&mut transcript, body.len());
        transcript.extend_from_slice(&body);
        debug_assert_eq!(self.transport.handshake_header_len(), 12);
        self.ready.push_back(Incoming::Handshake {
            msg_type,
            body,
            transcript,
        });
    }
}

// A record starts with a content type 20..=23 and a version 3.x or 254.x.
fn check_header(b: &[u8]) -> Result<(), WireError> {
    let bad = !(20..=24).contains(&b[0]) || (b.len() > 1 && b[1] != 3 && b[1] != 0xFE);
    if bad {
        let shown: String = b
            .iter()
            .take(8)
            .map(|c| format!("{c:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(WireError::NotTls(shown));
    }
    Ok(())
}

/// Appends a 24-bit big-endian length.
pub fn put_u24(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes()[1..]);
}

fn get_u24(b: &[u8]) -> usize {
    ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize
}

/// A cursor over a message body, for the parsers.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over `bytes`, naming `what` in errors.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Cursor { rest: bytes, what }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Malformed(self.what));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u24.
    pub fn u24(&mut self) -> Result<usize, WireError> {
        Ok(get_u24(self.take(3)?))
    }

    /// A vector with a 1-byte length.
    pub fn vec8(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    /// A vector with a 2-byte length.
    pub fn vec16(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// A vector with a 3-byte length.
    pub fn vec24(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u24()?;
        self.take(n)
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Nothing is left.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_messages_split_and_joined_across_records_are_reassembled() {
        let mut w = Writer::new(Transport::Tls);
        let a = w.handshake_message(hs::SERVER_HELLO, &[1, 2, 3]);
        let b = w.handshake_message(hs::SERVER_HELLO_DONE, &[]);
        let joined: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let (x, y) = joined.split_at(5);
        let mut bytes = w.record(content::HANDSHAKE, x);
        bytes.extend(w.record(content::HANDSHAKE, y));
        let mut r = Reader::new(Transport::Tls);
        // One byte at a time, as a slow server sends it.
        for byte in &bytes {
            r.push(std::slice::from_ref(byte)).unwrap();
        }
        assert_eq!(
            r.next_incoming(),
            Some(Incoming::Handshake {
                msg_type: hs::SERVER_HELLO,
                body: vec![1, 2, 3],
                transcript: a
            })
        );
        assert!(matches!(
            r.next_incoming(),
            Some(Incoming::Handshake {
                msg_type: hs::SERVER_HELLO_DONE,
                ..
            })
        ));
        assert_eq!(r.next_incoming(), None);
    }

    #[test]
    fn http_is_not_tls() {
        let mut r = Reader::new(Transport::Tls);
        assert!(matches!(r.push(b"HTTP/1.1 400"), Err(WireError::NotTls(_))));
    }

    #[test]
    fn dtls_fragments_out_of_order_and_retransmitted_are_reassembled_once() {
        let body: Vec<u8> = (0..10).collect();
        let frag = |seq: u16, off: usize, len: usize| {
            let mut f = vec![hs::CERTIFICATE];
            put_u24(&mut f, body.len());
            f.extend_from_slice(&seq.to_be_bytes());
            put_u24(&mut f, off);
            put_u24(&mut f, len);
            f.extend_from_slice(&body[off..off + len]);
            let mut w = Writer::new(Transport::Dtls);
            w.record(content::HANDSHAKE, &f)
        };
        let mut r = Reader::new(Transport::Dtls);
        r.push(&frag(0, 6, 4)).unwrap();
        assert_eq!(r.next_incoming(), None);
        r.push(&frag(0, 0, 6)).unwrap();
        r.push(&frag(0, 0, 10)).unwrap(); // retransmitted whole
        match r.next_incoming() {
            Some(Incoming::Handshake {
                body: b,
                transcript,
                ..
            }) => {
                assert_eq!(b, body);
                assert_eq!(transcript.len(), 12 + 10);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.next_incoming(), None);
    }
}

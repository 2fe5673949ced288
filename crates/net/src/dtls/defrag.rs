//! Reassembly of fragmented plaintext handshake messages before rtc-dtls
//! sees them.
//!
//! rtc-dtls joins fragments only when their offsets chain exactly. OpenSSL
//! shrinks its MTU after retransmission timeouts, so the fragments of one
//! message from two transmissions overlap at different offsets; with a lost
//! fragment in each, rtc-dtls never completes the message although every
//! byte arrived. Here fragments are merged by byte range and the whole
//! message is handed on, unfragmented, in place of the fragment that
//! completed it.
//!
//! A message handed on once is not handed on again: rtc-dtls, waiting for
//! the peer's next flight, clears its retransmission timer when a repeat of
//! the peer's previous flight arrives and never sets it again, so our lost
//! flight would never be resent. Without the repeat its timer fires and it
//! resends, which is what the peer's repeat asks for. (Epoch-1 records, the
//! Finished messages, are never touched, so a completed endpoint still
//! answers a repeated final flight.)

use std::collections::{HashMap, HashSet};

const RECORD_HEADER: usize = 13;
const HANDSHAKE_HEADER: usize = 12;
const CONTENT_HANDSHAKE: u8 = 22;
/// More than any handshake message of ours or a peer's should need; a
/// message claiming more is passed through untouched.
const MAX_MESSAGE: usize = 64 * 1024;

/// Per-peer reassembly state.
#[derive(Default)]
pub(crate) struct Defrag {
    partial: HashMap<u16, Partial>,
    delivered: HashSet<u16>,
}

struct Partial {
    header: [u8; HANDSHAKE_HEADER],
    body: Vec<u8>,
    have: Vec<bool>,
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

impl Defrag {
    /// The datagram with every fragmented epoch-0 handshake message replaced
    /// by the whole message once all its bytes arrived (fragments of
    /// unfinished messages are held back). Anything it does not understand
    /// is passed through unchanged.
    pub(crate) fn process(&mut self, datagram: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(datagram.len());
        let mut rest = datagram;
        while rest.len() >= RECORD_HEADER {
            let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
            let Some(body) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
                break;
            };
            let header = &rest[..RECORD_HEADER];
            if header[0] == CONTENT_HANDSHAKE && header[3..5] == [0, 0] {
                match self.handshake_record(body) {
                    Some(messages) if !messages.is_empty() => {
                        out.extend_from_slice(&header[..11]);
                        out.extend_from_slice(&(messages.len() as u16).to_be_bytes());
                        out.extend_from_slice(&messages);
                    }
                    Some(_) => {}
                    None => out.extend_from_slice(&rest[..RECORD_HEADER + len]),
                }
            } else {
                out.extend_from_slice(&rest[..RECORD_HEADER + len]);
            }
            rest = &rest[RECORD_HEADER + len..];
        }
        out.extend_from_slice(rest);
        out
    }

    /// The record's messages after reassembly, or `None` to pass it as is.
    fn handshake_record(&mut self, mut body: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        while !body.is_empty() {
            let h = body.get(..HANDSHAKE_HEADER)?;
            let total = u24(&h[1..4]);
            let seq = u16::from_be_bytes([h[4], h[5]]);
            let offset = u24(&h[6..9]);
            let frag_len = u24(&h[9..12]);
            let frag = body.get(HANDSHAKE_HEADER..HANDSHAKE_HEADER + frag_len)?;
            if offset + frag_len > total || total > MAX_MESSAGE {
                return None;
            }
            if self.delivered.contains(&seq) {
                // A repeat: see the module comment.
            } else if offset == 0 && frag_len == total {
                out.extend_from_slice(&body[..HANDSHAKE_HEADER + frag_len]);
                self.delivered.insert(seq);
            } else {
                let partial = self.partial.entry(seq).or_insert_with(|| {
                    let mut header = [0u8; HANDSHAKE_HEADER];
                    header.copy_from_slice(h);
                    header[6..9].copy_from_slice(&[0, 0, 0]);
                    header[9..12].copy_from_slice(&h[1..4]);
                    Partial {
                        header,
                        body: vec![0; total],
                        have: vec![false; total],
                    }
                });
                if partial.body.len() != total {
                    return None;
                }
                partial.body[offset..offset + frag_len].copy_from_slice(frag);
                partial.have[offset..offset + frag_len].fill(true);
                if partial.have.iter().all(|b| *b) {
                    let p = self.partial.remove(&seq).expect("present");
                    let mut whole = p.header.to_vec();
                    whole.extend_from_slice(&p.body);
                    out.extend_from_slice(&whole);
                    self.delivered.insert(seq);
                }
            }
            body = &body[HANDSHAKE_HEADER + frag_len..];
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u8, msgs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = msgs.concat();
        let mut r = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, seq];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(&body);
        r
    }

    fn fragment(msg_seq: u8, whole: &[u8], offset: usize, len: usize) -> Vec<u8> {
        let t = whole.len();
        let mut m = vec![11, 0, (t >> 8) as u8, t as u8, 0, msg_seq];
        m.extend_from_slice(&[
            0,
            (offset >> 8) as u8,
            offset as u8,
            0,
            (len >> 8) as u8,
            len as u8,
        ]);
        m.extend_from_slice(&whole[offset..offset + len]);
        m
    }

    #[test]
    fn overlapping_fragments_from_two_transmissions_make_one_message() {
        let whole: Vec<u8> = (0..=255u8).cycle().take(600).collect();
        let mut d = Defrag::default();
        // First transmission: 0..300 arrives, 300..600 is lost.
        assert!(d
            .process(&record(1, &[fragment(2, &whole, 0, 300)]))
            .is_empty());
        // Second, smaller fragments: 0..200 lost, 200..400 and 400..600 arrive.
        assert!(d
            .process(&record(2, &[fragment(2, &whole, 200, 200)]))
            .is_empty());
        let out = d.process(&record(3, &[fragment(2, &whole, 400, 200)]));
        assert_eq!(&out[13 + 12..], &whole[..]);
        assert_eq!(u24(&out[13 + 9..13 + 12]), 600, "sent unfragmented");
        assert_eq!(out[10], 3, "under the record number that completed it");
        // Unfragmented messages and other records pass unchanged, once.
        let plain = record(4, &[fragment(3, &whole[..10], 0, 10)]);
        assert_eq!(d.process(&plain), plain);
        assert!(d.process(&plain).is_empty(), "a repeat is not handed on");
        assert!(d
            .process(&record(5, &[fragment(2, &whole, 0, 300)]))
            .is_empty());
        assert_eq!(d.process(b"garbage"), b"garbage");
    }
}

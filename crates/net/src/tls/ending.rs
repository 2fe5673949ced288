//! How a client ended a handshake it did not finish, read off the records
//! it sends as they pass into rustls (which drops warning alerts without a
//! word during a TLS 1.2 handshake). Only record headers and the two bytes
//! of a plaintext alert are looked at; nothing is buffered, so a hostile
//! client costs a few bytes of state. The explanation lives with every
//! other in [`crate::diagnose`] ([`ClientEnding`], `Failure::seen_with`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::diagnose::ClientEnding;

const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const CHANGE_CIPHER_SPEC: u8 = 20;
/// A warning `user_canceled` alert (RFC 5246 7.2).
const USER_CANCELED: [u8; 2] = [1, 90];
/// The length of `devtls doctor`'s stand-in Finished record (crates/net/src/hello/device.rs).
const STAND_IN_FINISHED_LEN: usize = 40;

const SEEN_CANCELED: u8 = 1;
const SEEN_STAND_IN: u8 = 2;

/// What the watched client sent, readable after the stream is gone.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<AtomicU8>);

impl Seen {
    /// How the client ended, if it said so.
    pub fn ending(&self) -> Option<ClientEnding> {
        let bits = self.0.load(Ordering::Relaxed);
        if bits & SEEN_STAND_IN != 0 {
            Some(ClientEnding::StandInFinished)
        } else if bits & SEEN_CANCELED != 0 {
            Some(ClientEnding::Canceled)
        } else {
            None
        }
    }
}

/// A stream whose incoming TLS records are watched for a client's ending.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    seen: Seen,
    header: [u8; 5],
    header_len: usize,
    content_type: u8,
    remaining: usize,
    body_len: usize,
    alert: [u8; 2],
    all_zero: bool,
    after_ccs: bool,
    done: bool,
}

/// Wraps `inner`; the [`Seen`] tells, once the handshake failed, how the client ended it.
pub fn watch<S>(inner: S) -> (Watched<S>, Seen) {
    let seen = Seen::default();
    let watched = Watched {
        inner,
        seen: seen.clone(),
        header: [0; 5],
        header_len: 0,
        content_type: 0,
        remaining: 0,
        body_len: 0,
        alert: [0; 2],
        all_zero: true,
        after_ccs: false,
        done: false,
    };
    (watched, seen)
}

impl<S> Watched<S> {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done {
                return;
            }
            if self.remaining == 0 {
                self.header[self.header_len] = b;
                self.header_len += 1;
                if self.header_len == self.header.len() {
                    self.header_len = 0;
                    self.content_type = self.header[0];
                    self.remaining =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    self.body_len = self.remaining;
                    self.all_zero = true;
                    if self.remaining == 0 {
                        self.record_ended();
                    }
                }
                continue;
            }
            let at = self.body_len - self.remaining;
            if at < 2 {
                self.alert[at] = b;
            }
            self.all_zero &= b == 0;
            self.remaining -= 1;
            if self.remaining == 0 {
                self.record_ended();
            }
        }
    }

    fn record_ended(&mut self) {
        let mark = |bit: u8, seen: &Seen| seen.0.fetch_or(bit, Ordering::Relaxed);
        match self.content_type {
            CHANGE_CIPHER_SPEC => self.after_ccs = true,
            ALERT if !self.after_ccs && self.body_len == 2 && self.alert == USER_CANCELED => {
                mark(SEEN_CANCELED, &self.seen);
            }
            HANDSHAKE if self.after_ccs => {
                if self.body_len == STAND_IN_FINISHED_LEN && self.all_zero {
                    mark(SEEN_STAND_IN, &self.seen);
                }
                // The first record after ChangeCipherSpec is the Finished:
                // what follows is application data, not watched.
                self.done = true;
            }
            _ => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 3, 3];
        r.extend((body.len() as u16).to_be_bytes());
        r.extend(body);
        r
    }

    fn ending_of(bytes: &[u8], chunk: usize) -> Option<ClientEnding> {
        let (mut w, seen) = watch(());
        for c in bytes.chunks(chunk) {
            w.feed(c);
        }
        seen.ending()
    }

    #[test]
    fn a_user_canceled_alert_and_a_stand_in_finished_are_told_apart_from_other_records() {
        let hello = record(HANDSHAKE, &[1, 0, 0, 3, 3, 3, 0]);
        let mut canceled = hello.clone();
        canceled.extend(record(ALERT, &USER_CANCELED));
        canceled.extend(record(ALERT, &[1, 0]));
        let mut stand_in = hello.clone();
        stand_in.extend(record(HANDSHAKE, &[16, 0, 0, 1, 7]));
        stand_in.extend(record(CHANGE_CIPHER_SPEC, &[1]));
        stand_in.extend(record(HANDSHAKE, &[0; STAND_IN_FINISHED_LEN]));
        let mut real_finished = stand_in.clone();
        let n = real_finished.len();
        real_finished[n - 1] = 0x5a;
        let mut fatal = hello.clone();
        fatal.extend(record(ALERT, &[2, 90]));
        for chunk in [1, 3, 4096] {
            assert_eq!(ending_of(&canceled, chunk), Some(ClientEnding::Canceled));
            assert_eq!(
                ending_of(&stand_in, chunk),
                Some(ClientEnding::StandInFinished)
            );
            assert_eq!(ending_of(&real_finished, chunk), None);
            assert_eq!(ending_of(&fatal, chunk), None);
            assert_eq!(ending_of(&hello, chunk), None);
        }
    }
}

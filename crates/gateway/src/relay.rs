//! Moving bytes between the two TLS streams until the upstream is done or
//! nothing moved for the idle timeout, counting what went each way.
//!
//! One task polls both directions (no split, no locks), like tokio's
//! `copy_bidirectional`, but ends when the upstream has finished rather
//! than waiting for both sides. It gathers what its reader has before
//! writing, and flushes only when the reader has nothing more for the
//! moment, so several TLS records leave in one write.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// The upstream finished (and the client had its answer).
    Done,
    /// Nothing moved for the idle timeout.
    Idle,
    /// One side failed before either had finished.
    Error(io::Error),
}

/// Which side of a relay is the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSide {
    /// The client (an outbound route: device -> public server).
    Client,
    /// The upstream (an inbound route: public client -> device).
    Upstream,
}

const BUF: usize = 64 * 1024;

/// One direction: a buffer between a reader and a writer. The buffer is
/// allocated (not zeroed) when bytes come and released when the reader has
/// nothing more, so an idle connection holds none.
struct Dir {
    /// Bytes read; `pos..` not yet written. Capacity `BUF` while in use.
    buf: Vec<u8>,
    pos: usize,
    read_done: bool,
    /// A read error met after some bytes were gathered: returned once they are written.
    read_error: Option<io::Error>,
    need_flush: bool,
    done: bool,
    bytes: u64,
    /// The reader is the device: its TCP close without close_notify ends
    /// the direction like a close_notify would.
    reader_is_device: bool,
}

impl Dir {
    fn new(reader_is_device: bool) -> Self {
        Dir {
            reader_is_device,
            buf: Vec::new(),
            pos: 0,
            read_done: false,
            read_error: None,
            need_flush: false,
            done: false,
            bytes: 0,
        }
    }

    /// Copies until `from` ends (then shuts `to` down) or nothing can move.
    /// Sets `moved` when bytes were read.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut from: Pin<&mut R>,
        mut to: Pin<&mut W>,
        moved: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.pos == self.buf.len() {
                self.pos = 0;
                self.buf.clear();
                if let Some(e) = self.read_error.take() {
                    return Poll::Ready(Err(e));
                }
            }
            // Gather what the reader has now (a TLS reader hands out one
            // record, at most 16 KiB, per read) so one write encrypts
            // several records and sends them in one vectored write.
            while !self.read_done && self.read_error.is_none() && self.buf.len() < BUF {
                if self.buf.capacity() < BUF {
                    self.buf.reserve_exact(BUF - self.buf.len());
                }
                let len = self.buf.len();
                let mut rb = ReadBuf::uninit(&mut self.buf.spare_capacity_mut()[..BUF - len]);
                let polled = from.as_mut().poll_read(cx, &mut rb);
                let n = rb.filled().len();
                // SAFETY: the reader initialized the n bytes ReadBuf reports
                // filled, right after the initialized `len`, within capacity.
                unsafe { self.buf.set_len(len + n) };
                // MicroPython's `close()` sends no close_notify
                // (docs/device-behaviour.md): from the device that is its
                // ordinary end, not a truncation.
                let polled = match polled {
                    Poll::Ready(Err(e))
                        if self.reader_is_device && e.kind() == io::ErrorKind::UnexpectedEof =>
                    {
                        Poll::Ready(Ok(()))
                    }
                    other => other,
                };
                match polled {
                    Poll::Pending => {
                        if self.pos < self.buf.len() {
                            break;
                        }
                        // Nothing to write: an idle direction holds no buffer.
                        self.buf = Vec::new();
                        self.pos = 0;
                        if self.need_flush {
                            ready!(to.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) if self.pos == self.buf.len() => {
                        return Poll::Ready(Err(e))
                    }
                    Poll::Ready(Err(e)) => {
                        // What was read before the error still goes out first
                        // (a peer that resets right after its last message).
                        self.read_error = Some(e);
                        break;
                    }
                    Poll::Ready(Ok(())) => {
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            self.bytes += n as u64;
                            *moved = true;
                        }
                    }
                }
            }
            while self.pos < self.buf.len() {
                let n = ready!(to.as_mut().poll_write(cx, &self.buf[self.pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.need_flush = true;
            }
            if self.read_done {
                ready!(to.as_mut().poll_flush(cx))?;
                ready!(to.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Copies both ways between `client` and `upstream`; returns how it ended
/// and the bytes (client to upstream, upstream to client).
///
/// The connection ends when the upstream has finished (its end is passed
/// on as close_notify); a client that finishes first (half-close) still
/// gets the rest of the upstream's answer. Once one direction has finished
/// cleanly, the other side breaking off (a reset, no close_notify) is an
/// ordinary end: the conversation was over. After an idle timeout or an
/// error both sides are shut down (close_notify) briefly. The `device`
/// side may end without close_notify (MicroPython sends none): that is a
/// clean end of what it sends.
pub async fn relay<A, B>(
    mut client: A,
    mut upstream: B,
    idle: Duration,
    device: DeviceSide,
) -> (End, u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Dir::new(device == DeviceSide::Client);
    let mut down = Dir::new(device == DeviceSide::Upstream);
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let end = poll_fn(|cx| {
        let mut moved = false;
        if !up.done {
            match up.poll_copy(
                cx,
                Pin::new(&mut client),
                Pin::new(&mut upstream),
                &mut moved,
            ) {
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(if down.done { End::Done } else { End::Error(e) })
                }
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        if !down.done {
            match down.poll_copy(
                cx,
                Pin::new(&mut upstream),
                Pin::new(&mut client),
                &mut moved,
            ) {
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(if up.done { End::Done } else { End::Error(e) })
                }
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        if down.done {
            return Poll::Ready(End::Done);
        }
        if moved {
            sleep.as_mut().reset(Instant::now() + idle);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(End::Idle),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    if !matches!(end, End::Done) {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), upstream.shutdown()).await;
    }
    (end, up.bytes, down.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn copies_both_ways_and_counts() {
        let (mut a, mut a_far) = tokio::io::duplex(64);
        let (mut b, mut b_far) = tokio::io::duplex(64);
        let relay = tokio::spawn(async move {
            relay(
                &mut a_far,
                &mut b_far,
                Duration::from_secs(30),
                DeviceSide::Upstream,
            )
            .await
        });
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong!").await.unwrap();
        let mut buf = [0u8; 5];
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong!");
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
        let (end, up, down) = relay.await.unwrap();
        assert!(matches!(end, End::Done), "{end:?}");
        assert_eq!((up, down), (4, 5));
    }

    /// Yields its message, then a reset, in consecutive reads.
    struct ThenReset(Option<&'static [u8]>);

    impl AsyncRead for ThenReset {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.take() {
                Some(msg) => {
                    buf.put_slice(msg);
                    Poll::Ready(Ok(()))
                }
                None => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            }
        }
    }

    impl AsyncWrite for ThenReset {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_last_message_before_a_reset_still_reaches_the_client() {
        let (mut a, a_far) = tokio::io::duplex(64);
        let upstream = ThenReset(Some(b"last words\n"));
        let relay = tokio::spawn(relay(
            a_far,
            upstream,
            Duration::from_secs(30),
            DeviceSide::Client,
        ));
        let mut got = Vec::new();
        let _ = a.read_to_end(&mut got).await;
        assert_eq!(got, b"last words\n");
        let (end, _, down) = relay.await.unwrap();
        assert!(matches!(end, End::Error(_)), "{end:?}");
        assert_eq!(down, 11);
    }

    // Real time, a short timeout: tokio's paused clock (feature test-util)
    // would give tokio a second feature set, and every crate above it a
    // second compile, in test builds only (docs/testing.md).
    #[tokio::test]
    async fn nothing_moving_ends_at_the_idle_timeout() {
        let (_a, a_far) = tokio::io::duplex(64);
        let (_b, b_far) = tokio::io::duplex(64);
        let (end, up, down) = relay(
            a_far,
            b_far,
            Duration::from_millis(50),
            DeviceSide::Upstream,
        )
        .await;
        assert!(matches!(end, End::Idle), "{end:?}");
        assert_eq!((up, down), (0, 0));
    }
}

//! Fewer read system calls under a TLS stream. rustls asks its socket for
//! at most 4 KiB at a time, so a 16 KiB record costs four or five `recv`
//! calls; this adapter reads up to 64 KiB in one call and hands it out in
//! the small pieces rustls asks for. The buffer is kept while data flows
//! and released when the socket has nothing more (an idle connection keeps
//! none). Writes, vectored ones
//! included, go straight through.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read ahead in one call.
pub const READ_AHEAD: usize = 64 * 1024;

/// A stream whose small reads are served from one larger read.
#[derive(Debug)]
pub struct ReadAhead<S> {
    io: S,
    /// Empty, or `READ_AHEAD` bytes of which `pos..end` are unread.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    /// Wraps `io`.
    pub fn new(io: S) -> Self {
        ReadAhead {
            io,
            buf: Vec::new(),
            pos: 0,
            end: 0,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.end {
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            if this.buf.is_empty() {
                this.buf = vec![0u8; READ_AHEAD];
            }
            let mut rb = ReadBuf::new(&mut this.buf);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    // Nothing more for now: an idle connection holds no buffer.
                    this.buf = Vec::new();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            this.end = rb.filled().len();
            this.pos = 0;
        }
        let n = out.remaining().min(this.end - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Polls one small read once.
    async fn futures_poll<S: AsyncRead + Unpin>(r: &mut ReadAhead<S>) -> Poll<io::Result<()>> {
        let mut small = [0u8; 16];
        std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut small);
            Poll::Ready(Pin::new(&mut *r).poll_read(cx, &mut rb))
        })
        .await
    }

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order() {
        let (mut a, b) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.shutdown().await.unwrap();
        });
        let mut r = ReadAhead::new(b);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = r.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, data);
        // Nothing pending: a further read would release the buffer.
        let (_keep, quiet) = tokio::io::duplex(64);
        let mut q = ReadAhead::new(quiet);
        let poll = futures_poll(&mut q).await;
        assert!(
            poll.is_pending() && q.buf.is_empty(),
            "an idle stream holds no buffer"
        );
    }
}

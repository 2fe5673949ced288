//! Moving bytes between the two TLS streams until both sides are done or
//! nothing moved for the idle timeout, counting what went each way.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// Both sides closed.
    Done,
    /// Nothing moved for the idle timeout.
    Idle,
    /// One side failed.
    Error(io::Error),
}

/// Bytes read from one side and when anything last moved.
#[derive(Debug)]
struct Meter {
    start: Instant,
    last_ms: AtomicU64,
}

impl Meter {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that counts what is read from it and marks activity.
struct Counted<'a, S> {
    inner: &'a mut S,
    read: Arc<AtomicU64>,
    meter: Arc<Meter>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            self.meter.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Copies both ways between `client` and `upstream`; returns how it ended
/// and the bytes (client to upstream, upstream to client). After an idle
/// timeout or an error both sides are shut down (close_notify) briefly.
pub async fn relay<A, B>(client: &mut A, upstream: &mut B, idle: Duration) -> (End, u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let meter = Arc::new(Meter {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    let end = {
        let mut a = Counted {
            inner: client,
            read: up.clone(),
            meter: meter.clone(),
        };
        let mut b = Counted {
            inner: upstream,
            read: down.clone(),
            meter: meter.clone(),
        };
        let copy = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, 16 * 1024, 16 * 1024);
        let watchdog = async {
            loop {
                let due = meter.last() + idle;
                if Instant::now() >= due {
                    return;
                }
                tokio::time::sleep_until(due).await;
            }
        };
        tokio::select! {
            r = copy => match r {
                Ok(_) => End::Done,
                Err(e) => End::Error(e),
            },
            () = watchdog => End::Idle,
        }
    };
    if !matches!(end, End::Done) {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), upstream.shutdown()).await;
    }
    (
        end,
        up.load(Ordering::Relaxed),
        down.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn copies_both_ways_and_counts() {
        let (mut a, mut a_far) = tokio::io::duplex(64);
        let (mut b, mut b_far) = tokio::io::duplex(64);
        let relay =
            tokio::spawn(
                async move { relay(&mut a_far, &mut b_far, Duration::from_secs(30)).await },
            );
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

    #[tokio::test(start_paused = true)]
    async fn nothing_moving_ends_at_the_idle_timeout() {
        let (_a, mut a_far) = tokio::io::duplex(64);
        let (_b, mut b_far) = tokio::io::duplex(64);
        let (end, up, down) = relay(&mut a_far, &mut b_far, Duration::from_secs(5)).await;
        assert!(matches!(end, End::Idle), "{end:?}");
        assert_eq!((up, down), (0, 0));
    }
}

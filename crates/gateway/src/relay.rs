//! Moving bytes between the two TLS streams until both sides are done or
//! nothing moved for the idle timeout, counting what went each way.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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

/// Copies `from` to `to` until `from` ends, then shuts `to` down.
async fn pipe<R, W>(from: &mut R, to: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}

/// Copies both ways between `client` and `upstream`; returns how it ended
/// and the bytes (client to upstream, upstream to client).
///
/// The connection ends when the upstream has finished (its end is passed
/// on as close_notify); a client that finishes first (half-close) still
/// gets the rest of the upstream's answer. Once one direction has finished
/// cleanly, the other side breaking off (a reset, no close_notify) is an
/// ordinary end: the conversation was over. A failure before that is `End::Error`. After an idle timeout or
/// an error both sides are shut down (close_notify) briefly.
pub async fn relay<A, B>(client: A, upstream: B, idle: Duration) -> (End, u64, u64)
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
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut upstream_r, mut upstream_w) = tokio::io::split(upstream);
    let end = {
        let mut from_client = Counted {
            inner: &mut client_r,
            read: up.clone(),
            meter: meter.clone(),
        };
        let mut from_upstream = Counted {
            inner: &mut upstream_r,
            read: down.clone(),
            meter: meter.clone(),
        };
        let a = pipe(&mut from_client, &mut upstream_w);
        let b = pipe(&mut from_upstream, &mut client_w);
        let watchdog = async {
            loop {
                let due = meter.last() + idle;
                if Instant::now() >= due {
                    return;
                }
                tokio::time::sleep_until(due).await;
            }
        };
        tokio::pin!(a, b, watchdog);
        let (mut a_ok, mut b_ok) = (false, false);
        loop {
            let result = tokio::select! {
                r = &mut a, if !a_ok => r.map(|()| a_ok = true),
                r = &mut b, if !b_ok => r.map(|()| b_ok = true),
                () = &mut watchdog => break End::Idle,
            };
            match result {
                Err(_) if a_ok || b_ok => break End::Done,
                Err(e) => break End::Error(e),
                // The upstream has said all it will: the client got it
                // and close_notify; waiting for the client to hang up
                // too would keep a finished connection until the idle
                // timeout.
                Ok(()) if b_ok => break End::Done,
                Ok(()) => {}
            }
        }
    };
    if !matches!(end, End::Done) {
        let _ = tokio::time::timeout(Duration::from_secs(1), client_w.shutdown()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), upstream_w.shutdown()).await;
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
        let (_a, a_far) = tokio::io::duplex(64);
        let (_b, b_far) = tokio::io::duplex(64);
        let (end, up, down) = relay(a_far, b_far, Duration::from_secs(5)).await;
        assert!(matches!(end, End::Idle), "{end:?}");
        assert_eq!((up, down), (0, 0));
    }
}

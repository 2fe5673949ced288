//! Log lines out of a network service without ever waiting for their reader.
//!
//! `fleet serve` and `gateway` write one line per connection on standard
//! output. Written from the tasks that serve connections, a reader that
//! stops reading (a paused pager, a full pipe, a stalled log shipper) would
//! block those writes and with them every connection: an attacker who makes
//! log lines faster than they are read would hold the service. So lines go
//! into a bounded queue ([`QUEUE_LINES`] lines, [`QUEUE_BYTES`] bytes) that
//! one thread writes out; when the queue is full a line is dropped and
//! counted, and the count is said on standard error once the writer gets
//! going again (standard output stays one record per line, `--json` too).
//! Serving never waits for the log (docs/hardening.md, "Logs").

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};

/// Lines waiting to be written, at most.
pub const QUEUE_LINES: usize = 16_384;

/// Bytes waiting to be written, at most (lines are bounded by what the
/// services log, a few hundred bytes; this bounds the queue's memory).
pub const QUEUE_BYTES: usize = 4 << 20;

/// A queue of lines and the thread that writes them to `out`.
pub struct LineOut {
    tx: SyncSender<String>,
    state: Arc<State>,
}

struct State {
    /// Bytes in the queue.
    queued: AtomicUsize,
    /// Lines dropped since the last notice.
    dropped: AtomicU64,
}

impl LineOut {
    /// Starts the writer thread: lines to `out`, the dropped-lines notice to `notice`.
    pub fn start(out: Box<dyn Write + Send>, notice: Box<dyn Write + Send>) -> LineOut {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let state = Arc::new(State {
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        });
        let writer = state.clone();
        std::thread::Builder::new()
            .name("log-out".into())
            .spawn(move || write_out(rx, &writer, out, notice))
            .expect("a thread for the log");
        LineOut { tx, state }
    }

    /// Queues `line` (without its newline); never blocks. Returns false when
    /// it was dropped (queue full).
    pub fn line(&self, line: String) -> bool {
        let size = line.len() + 1;
        let before = self.state.queued.fetch_add(size, Ordering::Relaxed);
        if before + size > QUEUE_BYTES {
            self.state.queued.fetch_sub(size, Ordering::Relaxed);
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.state.queued.fetch_sub(size, Ordering::Relaxed);
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

fn write_out(
    rx: Receiver<String>,
    state: &State,
    mut out: Box<dyn Write + Send>,
    mut notice: Box<dyn Write + Send>,
) {
    loop {
        let line = match rx.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Disconnected) => return,
            // Idle: what was written reaches the reader now.
            Err(TryRecvError::Empty) => {
                let _ = out.flush();
                match rx.recv() {
                    Ok(line) => line,
                    Err(_) => return,
                }
            }
        };
        let dropped = state.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                notice,
                "warning: {dropped} log line{} dropped: standard output was not read fast enough",
                if dropped == 1 { "" } else { "s" }
            );
        }
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        state.queued.fetch_sub(line.len() + 1, Ordering::Relaxed);
    }
}

/// The process's standard output as a [`LineOut`], started on first use.
pub fn stdout() -> &'static LineOut {
    static OUT: OnceLock<LineOut> = OnceLock::new();
    OUT.get_or_init(|| LineOut::start(Box::new(std::io::stdout()), Box::new(std::io::stderr())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Mutex};
    use std::time::{Duration, Instant};

    /// Waits (at most 20 s) until `got` holds `lines` lines.
    fn written(got: &Mutex<Vec<u8>>, lines: usize) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
            if text.lines().count() >= lines || Instant::now() > end {
                return text;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A writer that blocks until told to go on, then records what it got.
    struct Gate {
        go: mpsc::Receiver<()>,
        open: bool,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if !self.open {
                let _ = self.go.recv();
                self.open = true;
            }
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_does_not_read_never_blocks_a_line_and_drops_are_told() {
        let (go, wait) = mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let notice = Sink::default();
        let out = LineOut::start(
            Box::new(Gate {
                go: wait,
                open: false,
                got: got.clone(),
            }),
            Box::new(notice.clone()),
        );
        // The writer is stuck on the first line: the queue fills, then
        // lines are dropped, and no call waits.
        let total = QUEUE_LINES + 1000;
        let kept = (0..total).filter(|i| out.line(format!("line {i}"))).count();
        assert!(kept <= QUEUE_LINES + 1, "{kept}");
        assert!(kept >= QUEUE_LINES, "{kept}");
        go.send(()).unwrap();
        let text = written(&got, kept);
        assert_eq!(text.lines().count(), kept);
        assert!(text.starts_with("line 0\nline 1\n"), "{}", &text[..40]);
        out.line("after".into());
        written(&got, kept + 1);
        // The writer may take line 0 after some drops and say those before it
        // blocks, the rest after: the notices add up to every dropped line.
        let said = String::from_utf8(notice.0.lock().unwrap().clone()).unwrap();
        let told: usize = said
            .lines()
            .map(|l| {
                let n = l
                    .strip_prefix("warning: ")
                    .and_then(|l| l.split(' ').next());
                n.and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("not a drop notice: {l}"))
            })
            .sum();
        assert_eq!(told, total - kept, "{said}");
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let (go, wait) = mpsc::channel();
        let out = LineOut::start(
            Box::new(Gate {
                go: wait,
                open: false,
                got: Arc::default(),
            }),
            Box::new(Sink::default()),
        );
        let big = "x".repeat(64 * 1024);
        let kept = (0..200).filter(|_| out.line(big.clone())).count();
        assert!(
            kept * (big.len() + 1) <= QUEUE_BYTES + big.len() + 1,
            "{kept}"
        );
        assert!(kept < 200);
        go.send(()).unwrap();
    }
}

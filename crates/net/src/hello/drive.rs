//! Thin drivers that move a [`Conversation`]'s bytes over TCP or UDP, all
//! bounded by one deadline for the whole operation (a server that answers
//! one byte a second does not extend it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::device::{Conversation, Device, Outcome};
use super::wire::Transport;

/// Why a conversation could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    /// The host name does not resolve.
    #[error("{target}: cannot resolve: {detail}")]
    Resolve {
        /// `HOST:PORT`.
        target: String,
        /// The resolver's words.
        detail: String,
    },
    /// No TCP connection (or, over UDP, the port is closed).
    #[error("{target}: cannot connect: {detail}")]
    Connect {
        /// `HOST:PORT`.
        target: String,
        /// The system's words.
        detail: String,
    },
    /// The deadline passed before the server finished answering.
    #[error("no answer from {target} within {secs} s")]
    NoAnswer {
        /// `HOST:PORT`.
        target: String,
        /// The whole operation's time limit.
        secs: u64,
    },
}

/// The whole operation's time limit.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The error for a server that did not answer in time.
    pub fn no_answer(&self, target: &str) -> DriveError {
        DriveError::NoAnswer {
            target: target.to_string(),
            secs: self.limit.as_secs().max(1),
        }
    }
}

/// `host:port` as typed (IPv6 in brackets).
pub fn display(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves `host:port` within the deadline's spirit (resolution itself is
/// the system's).
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, DriveError> {
    let target = display(host, port);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| DriveError::Resolve {
            target: target.clone(),
            detail: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(DriveError::Resolve {
            target,
            detail: "no address".into(),
        });
    }
    Ok(addrs)
}

/// Opens a TCP connection within the deadline.
pub fn connect_tcp(host: &str, port: u16, deadline: &Deadline) -> Result<TcpStream, DriveError> {
    let target = display(host, port);
    let mut last = String::from("no address");
    for addr in resolve(host, port)? {
        let left = deadline.remaining();
        if left.is_zero() {
            return Err(deadline.no_answer(&target));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(deadline.no_answer(&target))
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(DriveError::Connect {
        target,
        detail: last,
    })
}

/// Has the conversation over TCP (TLS) or UDP (DTLS) with `host:port`.
pub fn converse(
    host: &str,
    port: u16,
    device: Device<'_>,
    deadline: &Deadline,
) -> Result<Outcome, DriveError> {
    match device.offer.transport {
        Transport::Tls => {
            let sock = connect_tcp(host, port, deadline)?;
            over_tcp(sock, &display(host, port), device, deadline)
        }
        Transport::Dtls => {
            let peer = resolve(host, port)?[0];
            over_udp(peer, &display(host, port), device, deadline)
        }
    }
}

/// Has the conversation over a connected TCP stream.
pub fn over_tcp(
    mut sock: TcpStream,
    target: &str,
    device: Device<'_>,
    deadline: &Deadline,
) -> Result<Outcome, DriveError> {
    let (mut conv, first) = Conversation::start(device);
    if send_tcp(&mut sock, &first, deadline).is_err() {
        return Ok(conv.closed());
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let left = deadline.remaining();
        if left.is_zero() {
            return Err(deadline.no_answer(target));
        }
        let _ = sock.set_read_timeout(Some(left));
        match sock.read(&mut buf) {
            Ok(0) => return Ok(conv.closed()),
            Ok(n) => {
                let p = conv.receive(&buf[..n]);
                if !p.send.is_empty() && send_tcp(&mut sock, &p.send, deadline).is_err() {
                    return Ok(p.done.unwrap_or_else(|| conv.closed()));
                }
                if let Some(done) = p.done {
                    if let Some(bye) = conv.farewell() {
                        let _ = send_tcp(&mut sock, &[bye], deadline);
                    }
                    return Ok(done);
                }
            }
            Err(e) if is_timeout(&e) => return Err(deadline.no_answer(target)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(conv.closed()),
        }
    }
}

fn send_tcp(sock: &mut TcpStream, runs: &[Vec<u8>], deadline: &Deadline) -> std::io::Result<()> {
    let _ = sock.set_write_timeout(Some(deadline.remaining().max(Duration::from_millis(1))));
    for run in runs {
        sock.write_all(run)?;
    }
    sock.flush()
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The device's first DTLS retransmission timer (mbedTLS's default minimum).
const RETRANSMIT: Duration = Duration::from_secs(1);
/// How long silence after the device's certificate flight means acceptance.
const QUIET: Duration = Duration::from_secs(1);

/// Has the conversation over UDP (DTLS), retransmitting as the device does.
pub fn over_udp(
    peer: SocketAddr,
    target: &str,
    device: Device<'_>,
    deadline: &Deadline,
) -> Result<Outcome, DriveError> {
    let local: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let connect_error = |e: std::io::Error| DriveError::Connect {
        target: target.to_string(),
        detail: format!("nothing answers on this UDP port ({e})"),
    };
    let sock = UdpSocket::bind(local).map_err(connect_error)?;
    sock.connect(peer).map_err(connect_error)?;
    let (mut conv, first) = Conversation::start(device);
    for d in &first {
        sock.send(d).map_err(connect_error)?;
    }
    let mut timer = RETRANSMIT;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.remaining();
        if left.is_zero() {
            return Err(deadline.no_answer(target));
        }
        let wait = if conv.silence_accepts() { QUIET } else { timer };
        let _ = sock.set_read_timeout(Some(wait.min(left)));
        match sock.recv(&mut buf) {
            Ok(n) => {
                let p = conv.receive(&buf[..n]);
                for d in &p.send {
                    let _ = sock.send(d);
                }
                if let Some(done) = p.done {
                    if let Some(bye) = conv.farewell() {
                        let _ = sock.send(&bye);
                    }
                    return Ok(done);
                }
            }
            Err(e) if is_timeout(&e) => {
                if let Some(done) = conv.silence(deadline.passed()) {
                    if let Some(bye) = conv.farewell() {
                        let _ = sock.send(&bye);
                    }
                    return Ok(done);
                }
                if deadline.passed() {
                    return Err(deadline.no_answer(target));
                }
                for d in conv.retransmit() {
                    let _ = sock.send(&d);
                }
                timer = (timer * 2).min(Duration::from_secs(8));
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                if conv.answered() {
                    return Ok(conv.closed());
                }
                return Err(connect_error(e));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(connect_error(e)),
        }
    }
}

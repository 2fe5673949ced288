//! The same drivers as [`super::drive`] on tokio, for callers that already
//! run a runtime: one deadline for the whole operation, DTLS retransmission
//! on the device's timer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use super::device::{Conversation, Device, Outcome};
use super::drive::{display, DriveError};
use super::wire::Transport;

/// Has the conversation with `host:port` within `limit`, over TCP (TLS) or
/// UDP (DTLS) as the offer says.
pub async fn converse(
    host: &str,
    port: u16,
    device: Device<'_>,
    limit: Duration,
) -> Result<Outcome, DriveError> {
    let target = display(host, port);
    let deadline = Instant::now() + limit;
    let no_answer = || DriveError::NoAnswer {
        target: target.clone(),
        secs: limit.as_secs().max(1),
    };
    let addr: SocketAddr = timeout_at(deadline, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| no_answer())?
        .map_err(|e| DriveError::Resolve {
            target: target.clone(),
            detail: e.to_string(),
        })?
        .next()
        .ok_or_else(|| DriveError::Resolve {
            target: target.clone(),
            detail: "no address".into(),
        })?;
    let connect_error = |e: std::io::Error| DriveError::Connect {
        target: target.clone(),
        detail: e.to_string(),
    };
    match device.offer.transport {
        Transport::Tls => {
            let mut sock = timeout_at(deadline, TcpStream::connect(addr))
                .await
                .map_err(|_| no_answer())?
                .map_err(connect_error)?;
            let (mut conv, first) = Conversation::start(device);
            if sock.write_all(&first.concat()).await.is_err() {
                return Ok(conv.closed());
            }
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match timeout_at(deadline, sock.read(&mut buf)).await {
                    Err(_) => return Err(no_answer()),
                    Ok(Ok(0)) | Ok(Err(_)) => return Ok(conv.closed()),
                    Ok(Ok(n)) => n,
                };
                let p = conv.receive(&buf[..n]);
                if !p.send.is_empty() && sock.write_all(&p.send.concat()).await.is_err() {
                    return Ok(p.done.unwrap_or_else(|| conv.closed()));
                }
                if let Some(done) = p.done {
                    if let Some(bye) = conv.farewell() {
                        let _ = sock.write_all(&bye).await;
                    }
                    return Ok(done);
                }
            }
        }
        Transport::Dtls => {
            let local: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let sock = UdpSocket::bind(local).await.map_err(connect_error)?;
            sock.connect(addr).await.map_err(connect_error)?;
            let (mut conv, first) = Conversation::start(device);
            for d in &first {
                sock.send(d).await.map_err(connect_error)?;
            }
            let mut timer = Duration::from_secs(1);
            let mut buf = vec![0u8; 65536];
            loop {
                let wait = if conv.silence_accepts() {
                    Duration::from_secs(1)
                } else {
                    timer
                };
                let wake = (Instant::now() + wait).min(deadline);
                match timeout_at(wake, sock.recv(&mut buf)).await {
                    Ok(Ok(n)) => {
                        let p = conv.receive(&buf[..n]);
                        for d in &p.send {
                            let _ = sock.send(d).await;
                        }
                        if let Some(done) = p.done {
                            if let Some(bye) = conv.farewell() {
                                let _ = sock.send(&bye).await;
                            }
                            return Ok(done);
                        }
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        if conv.answered() {
                            return Ok(conv.closed());
                        }
                        return Err(connect_error(e));
                    }
                    Ok(Err(e)) => return Err(connect_error(e)),
                    Err(_) => {
                        if let Some(done) = conv.silence(Instant::now() >= deadline) {
                            if let Some(bye) = conv.farewell() {
                                let _ = sock.send(&bye).await;
                            }
                            return Ok(done);
                        }
                        if Instant::now() >= deadline {
                            return Err(no_answer());
                        }
                        for d in conv.retransmit() {
                            let _ = sock.send(&d).await;
                        }
                        timer = (timer * 2).min(Duration::from_secs(8));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hello::client_hello::Offer;
    use crate::hello::device::End;
    use devtls_pki::profile::OPENMV;
    use std::io::{Read, Write};

    fn device(transport: Transport) -> Device<'static> {
        Device {
            profile: &OPENMV,
            offer: Offer::device(&OPENMV, transport).unwrap(),
            server_name: Some("localhost"),
            check: None,
            identity: None,
        }
    }

    // A TCP server that reads the hello and answers a fatal handshake_failure.
    fn refusing_tcp_server() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for _ in 0..2 {
                let Ok((mut s, _)) = l.accept() else { return };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&[21, 3, 3, 0, 2, 2, 40]);
            }
        });
        port
    }

    #[test]
    fn blocking_and_tokio_drivers_see_the_same_refusal() {
        let port = refusing_tcp_server();
        let limit = Duration::from_secs(5);
        let blocking = super::super::drive::converse(
            "127.0.0.1",
            port,
            device(Transport::Tls),
            &super::super::drive::Deadline::after(limit),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tokio = rt
            .block_on(converse("127.0.0.1", port, device(Transport::Tls), limit))
            .unwrap();
        for outcome in [blocking, tokio] {
            assert!(
                matches!(outcome.end, End::ServerAlert { alert: 40, .. }),
                "{:?}",
                outcome.end
            );
        }
    }

    #[test]
    fn a_silent_dtls_server_is_no_answer_within_the_limit() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(converse(
            "127.0.0.1",
            port,
            device(Transport::Dtls),
            Duration::from_secs(2),
        ));
        assert_eq!(
            got.unwrap_err(),
            DriveError::NoAnswer {
                target: format!("127.0.0.1:{port}"),
                secs: 2
            }
        );
        // The device retransmitted its hello while waiting.
        silent
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut hellos = 0;
        while silent.recv(&mut buf).is_ok() {
            hellos += 1;
        }
        assert!(hellos >= 2, "{hellos} hellos");
    }
}

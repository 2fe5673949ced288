//! `devtls serve --dtls` under load: 200 concurrent verified DTLS clients (one
//! tokio task each, on the library's async client) all get their `hello`
//! while 50 others stall after the cookie exchange, send garbage or vanish
//! after their first ClientHello; stalled handshakes are dropped by the
//! server's timeout, and the server still serves afterwards.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use devtls_net::config::{self, Anchors, ClientSettings};
use devtls_net::dtls;
use support::net::Serve;
use support::{ok_in, words};
use tokio::net::UdpSocket;

const GOOD: usize = 200;
const STALLED: usize = 20;
const GARBAGE: usize = 20;
const VANISHED: usize = 10;
/// Bound on the whole burst of good clients (generous for 2 shared cores).
const BURST_DEADLINE: Duration = Duration::from_secs(60);
/// The server's handshake timeout (`serve --timeout`), short so the test is.
const HANDSHAKE_TIMEOUT_S: u64 = 5;

fn client_settings(anchor: &[u8], timeout: Duration) -> ClientSettings {
    let mut settings = ClientSettings::new(
        "localhost",
        Anchors::Given(config::certificates(anchor).unwrap()),
    );
    settings.timeout = timeout;
    settings
}

/// Whether a datagram is a DTLS ClientHello that carries a cookie (the
/// client's answer to the server's HelloVerifyRequest): record header (13
/// bytes), handshake header (12), then version (2), random (32), session id
/// (1 + n) and the cookie's length byte.
fn is_cookie_hello(datagram: &[u8]) -> bool {
    const BODY: usize = 13 + 12;
    if datagram.first() != Some(&22) || datagram.get(13) != Some(&1) {
        return false;
    }
    let Some(&session_id) = datagram.get(BODY + 34) else {
        return false;
    };
    datagram
        .get(BODY + 35 + usize::from(session_id))
        .is_some_and(|&cookie| cookie > 0)
}

/// A client that stops half-way: its datagrams pass a gate until the
/// ClientHello with the cookie has gone through (a ClientHello the client
/// resent because the server was slow to answer passes too), and none
/// after it, so the server holds a handshake whose second flight never
/// comes. Returns whether the client, as it should, failed.
async fn stalled_client(server: SocketAddr, settings: ClientSettings) -> bool {
    let gate = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let gate_addr = gate.local_addr().unwrap().to_string();
    let end = tokio::time::Instant::now() + settings.timeout + Duration::from_secs(1);
    let client =
        tokio::spawn(
            async move { dtls::exchange_async(&gate_addr, &settings, b"stalled\n").await },
        );
    let mut buf = vec![0u8; 65_535];
    let (mut client_addr, mut cookie_sent) = (None, false);
    while let Ok(Ok((n, from))) = tokio::time::timeout_at(end, gate.recv_from(&mut buf)).await {
        if from == server {
            if let Some(c) = client_addr {
                let _ = gate.send_to(&buf[..n], c).await;
            }
        } else {
            client_addr = Some(from);
            if !cookie_sent {
                cookie_sent = is_cookie_hello(&buf[..n]);
                let _ = gate.send_to(&buf[..n], server).await;
            }
        }
    }
    client.await.unwrap().is_err()
}

/// Reads the server's JSON reports until `n` match `wanted`, within `timeout`.
fn wait_reports(
    server: &Serve,
    n: usize,
    timeout: Duration,
    mut wanted: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    let mut matched = Vec::new();
    while matched.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {n} expected reports within {timeout:?}",
            matched.len()
        );
        let report = server.report(left);
        if wanted(&report) {
            matched.push(report);
        }
    }
    matched
}

#[test]
fn dtls_serves_200_concurrent_clients_while_others_stall_or_send_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns localhost --ip 127.0.0.1"));
    let anchor = std::fs::read(d.join("server.der")).unwrap();
    let timeout = HANDSHAKE_TIMEOUT_S.to_string();
    let server = Serve::guide(d, &["--dtls", "--json", "--timeout", &timeout]);
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let (stalled, burst, good) = runtime.block_on(async {
        // Bad clients first, so they are all in progress while the good ones come.
        let stalled: Vec<_> = (0..STALLED)
            .map(|_| {
                let settings = client_settings(&anchor, Duration::from_secs(3));
                tokio::spawn(stalled_client(addr, settings))
            })
            .collect();
        let mut bad_sockets = Vec::new();
        for i in 0..GARBAGE {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let junk: Vec<u8> = if i % 2 == 0 {
                b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()
            } else {
                (0..1000u32).map(|b| (b * 7919 % 251) as u8).collect()
            };
            s.send_to(&junk, addr).await.unwrap();
            bad_sockets.push(s);
        }
        for _ in 0..VANISHED {
            // A real first ClientHello, then silence: the client is gone
            // before it answers the cookie.
            let settings = client_settings(&anchor, Duration::from_millis(150));
            let _ = dtls::exchange_async(&addr.to_string(), &settings, b"gone\n").await;
        }

        // The good clients, all at once.
        let start = Instant::now();
        let good: Vec<_> = (0..GOOD)
            .map(|i| {
                let settings = client_settings(&anchor, Duration::from_secs(30));
                tokio::spawn(async move {
                    let text = format!("client {i}\n");
                    (
                        i,
                        dtls::exchange_async(&addr.to_string(), &settings, text.as_bytes()).await,
                    )
                })
            })
            .collect();
        let mut failures = Vec::new();
        for task in good {
            let left = BURST_DEADLINE.saturating_sub(start.elapsed());
            let (i, result) = tokio::time::timeout(left, task)
                .await
                .unwrap_or_else(|_| panic!("good clients still running after {BURST_DEADLINE:?}"))
                .unwrap();
            match result {
                Ok((_, reply)) if reply == b"hello\n" => {}
                Ok((_, reply)) => failures.push(format!(
                    "client {i}: reply {:?}",
                    String::from_utf8_lossy(&reply)
                )),
                Err(e) => failures.push(format!("client {i}: {e}")),
            }
        }
        let burst = start.elapsed();
        // Garbage got no answer at all.
        for s in &bad_sockets {
            let mut buf = [0u8; 512];
            let answer = tokio::time::timeout(Duration::from_millis(20), s.recv_from(&mut buf));
            assert!(answer.await.is_err(), "the server answered garbage");
        }
        let mut stalled_failed = 0;
        for task in stalled {
            stalled_failed += usize::from(task.await.unwrap());
        }
        assert_eq!(
            stalled_failed, STALLED,
            "every stalled client failed on its side"
        );
        (stalled_failed, burst, failures)
    });
    assert!(
        good.is_empty(),
        "{} of {GOOD} good clients failed:\n{}",
        good.len(),
        good.join("\n")
    );

    // The server reports each good client with what it sent, and drops each
    // stalled handshake by its timeout with a report of its own.
    let mut served = 0;
    let mut timed_out = 0;
    wait_reports(&server, GOOD + stalled, Duration::from_secs(30), |r| {
        if r["result"] == "served" && r["received"].as_str().unwrap_or("").starts_with("client ") {
            served += 1;
            true
        } else if r["result"] == "failed" && r["reason"] == "timeout" {
            timed_out += 1;
            true
        } else {
            false
        }
    });
    assert_eq!((served, timed_out), (GOOD, STALLED));

    // And it is still serving.
    let settings = client_settings(&anchor, Duration::from_secs(10));
    let (_, reply) = runtime
        .block_on(dtls::exchange_async(
            &addr.to_string(),
            &settings,
            b"after\n",
        ))
        .expect("the server stopped serving");
    assert_eq!(reply, b"hello\n");
    wait_reports(&server, 1, Duration::from_secs(5), |r| {
        r["received"] == "after\n"
    });
    eprintln!("{GOOD} DTLS clients in {burst:?} beside {STALLED} stalled, {GARBAGE} garbage, {VANISHED} vanished");
}

//! The load for `bench/fleet_serve_attack.sh`: legitimate devices renew at
//! a steady RATE per second for SECONDS through a running `devtls fleet
//! serve --renew-after 0`, from 127.0.0.1; with `attack`, at the same time:
//! - 5,000 connections that send nothing, from 50 addresses 127.0.1.1-50
//!   (each reopened 1 s after the service closes it);
//! - up to 1,000 TLS handshakes per second without a client certificate
//!   (refused, or closed at accept once 127.0.0.3's budget of failed
//!   handshakes is spent), from 127.0.0.3;
//! - one enrolled device (the fleet's first) asking for renewals on 8
//!   connections at once, without pause, from 127.0.0.4.
//!
//! One renewal is the device's two connections (ask, then confirm with the
//! new certificate); its latency counts from when it was due, so waiting in
//! the accept queue is included.
//!
//! Usage: serve_attack FLEET_DIR PORT SECONDS RATE [attack]
//! Prints one line: `renewals failed seconds p50_ms p99_ms handshakes_refused hammer_answers`

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

const ASK: &[u8] = b"POST /.well-known/est/serverkeygen HTTP/1.1\r\nHost: x\r\nAccept: application/x-devtls-renew\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone)]
struct Creds {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn config(ca: &[u8], creds: Option<&Creds>) -> Arc<rustls::ClientConfig> {
    let profile = devtls_pki::profile::by_name("openmv").expect("openmv profile");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.to_vec()))
        .expect("anchor");
    let builder =
        rustls::ClientConfig::builder_with_provider(devtls_net::restrict::provider(profile))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2")
            .with_root_certificates(roots);
    Arc::new(match creds {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(c.cert.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone())),
            )
            .expect("client credentials"),
        None => builder.with_no_client_auth(),
    })
}

async fn connect(from: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// One request; the status and the body.
async fn ask(
    from: IpAddr,
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> Result<(u16, Vec<u8>), String> {
    let work = async {
        let tcp = connect(from, port).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(ASK).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e.to_string()),
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no HTTP head")?;
        let status = std::str::from_utf8(raw.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("no status")?;
        Ok((status, raw[split + 4..].to_vec()))
    };
    tokio::time::timeout(LIMIT, work)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// A device's renewal: ask, then confirm with the new certificate.
async fn renew(port: u16, ca: &[u8], device: &Creds) -> Result<(), String> {
    let local = IpAddr::from([127, 0, 0, 1]);
    let (status, body) = ask(local, port, config(ca, Some(device))).await?;
    let (cert, key, _) = devtls_renewal::encode::parse_devtls(&body)
        .ok_or(format!("status {status}, not the devtls format"))?;
    match ask(local, port, config(ca, Some(&Creds { cert, key }))).await? {
        (204, _) => Ok(()),
        (other, _) => Err(format!("confirmation answered {other}")),
    }
}

fn load(dir: &std::path::Path) -> Vec<Creds> {
    let mut ids: Vec<PathBuf> = std::fs::read_dir(dir.join("devices"))
        .expect("devices/")
        .map(|e| e.expect("entry").path())
        .collect();
    ids.sort();
    ids.iter()
        .map(|p| Creds {
            cert: std::fs::read(p.join("client.der")).expect("client.der"),
            key: std::fs::read(p.join("client.key.der")).expect("client.key.der"),
        })
        .collect()
}

fn attack(
    port: u16,
    ca: Vec<u8>,
    hammer: Creds,
    until: Instant,
    refused: Arc<AtomicU64>,
    hammered: Arc<AtomicU64>,
) {
    // Idle holders.
    for i in 0..5000u32 {
        let from = IpAddr::from([127, 0, 1, (i % 50 + 1) as u8]);
        tokio::spawn(async move {
            while Instant::now() < until {
                if let Ok(mut s) = connect(from, port).await {
                    let rest = until.saturating_duration_since(Instant::now());
                    let _ = tokio::time::timeout(rest, s.read(&mut [0u8; 16])).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    // Refused handshakes, at most 1,000 a second.
    let anonymous = config(&ca, None);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(1));
        let busy = Arc::new(tokio::sync::Semaphore::new(256));
        while Instant::now() < until {
            every.tick().await;
            let Ok(permit) = busy.clone().try_acquire_owned() else {
                continue;
            };
            let (config, refused) = (anonymous.clone(), refused.clone());
            tokio::spawn(async move {
                let _ = ask(IpAddr::from([127, 0, 0, 3]), port, config).await;
                refused.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    });
    // The enrolled device asking without pause.
    let hammer = config(&ca, Some(&hammer));
    for _ in 0..8 {
        let (config, hammered) = (hammer.clone(), hammered.clone());
        tokio::spawn(async move {
            while Instant::now() < until {
                if ask(IpAddr::from([127, 0, 0, 4]), port, config.clone())
                    .await
                    .is_ok()
                {
                    hammered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(&args[0]);
    let port: u16 = args[1].parse().expect("PORT");
    let seconds: u64 = args[2].parse().expect("SECONDS");
    let rate: f64 = args[3].parse().expect("RATE");
    let attacked = args.get(4).is_some_and(|a| a == "attack");
    let ca = std::fs::read(dir.join("ca.der")).expect("ca.der");
    let mut devices = load(&dir);
    let hammer = devices.remove(0);
    let refused = Arc::new(AtomicU64::new(0));
    let hammered = Arc::new(AtomicU64::new(0));
    if attacked {
        // The attack is in place 2 s before the first device comes, and
        // lasts until the last renewal had LIMIT to finish.
        let end = Instant::now() + Duration::from_secs(seconds + 2) + LIMIT;
        let counters = (refused.clone(), hammered.clone());
        attack(port, ca.clone(), hammer, end, counters.0, counters.1);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let begin = Instant::now();
    let until = begin + Duration::from_secs(seconds);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut tasks = Vec::new();
    while Instant::now() < until {
        every.tick().await;
        let Some(device) = devices.pop() else { break };
        let due = Instant::now();
        let (ca, latencies, failed) = (ca.clone(), latencies.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            match renew(port, &ca, &device).await {
                Ok(()) => latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(due.elapsed().as_secs_f64() * 1000.0),
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("legitimate renewal failed: {e}");
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    let mut l = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    l.sort_by(f64::total_cmp);
    println!(
        "{} {} {:.3} {:.1} {:.1} {} {}",
        l.len(),
        failed.load(Ordering::Relaxed),
        elapsed,
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        refused.load(Ordering::Relaxed),
        hammered.load(Ordering::Relaxed)
    );
}

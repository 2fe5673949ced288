//! Load generator for bench/gateway.sh (not part of devtls).
//!
//! - `gwload echo PORT CERT KEY`: a TLS 1.2 echo server standing in for the
//!   device (everything read is written back); it lets clients resume
//!   sessions unless DEVICE_RESUME=0, and prints its full and resumed
//!   handshake counts.
//! - `gwload load PORT ROOT NAME SIZE CONNS SECS`: CONNS workers, each in a
//!   loop: a new TLS connection (no resumption) verified against ROOT, SIZE
//!   bytes sent and the same SIZE read back, close (P-256 key exchange). Prints one JSON line:
//!   connections per second and MB/s relayed (both directions), and its
//!   own CPU seconds, and p50/p99 latency of a connection. With
//!   LOAD_RATE=R the connections are due at a steady R per second in all
//!   (the workers take them in turn) and a latency counts from when its
//!   connection was due, so a server that falls behind shows it.
//! - `gwload idle PORT ROOT NAME CONNS SECS`: opens CONNS connections, does
//!   one small exchange on each, holds them SECS seconds, then closes.
//! - `gwload attack PORT NAME IDLE RATE SECS`: from ATTACK_FROM (default
//!   127.0.0.2, so per-address limits tell it from the legitimate load on
//!   127.0.0.1): opens IDLE TCP connections that never send a byte and
//!   holds them; from ATTACK_HS_FROM (default 127.0.0.3: an attacker with
//!   two addresses, so the idle ones do not use up the handshakes' places)
//!   starts RATE TLS handshakes a second that fail (the client trusts no
//!   root, so it aborts after the gateway has done its key exchange and
//!   signature), for SECS seconds. Prints one JSON line:
//!   idle connections opened and closed by the gateway meanwhile, failing
//!   handshakes started per second, and how many the gateway refused
//!   before answering.
//! - `gwload crypto SECS`: one core's AEAD throughput (seal then open of
//!   16 KiB records, MB/s of plaintext) for AES-128-GCM, AES-256-GCM and
//!   ChaCha20-Poly1305 with aws-lc-rs (rustls's provider here),
//!   and P-256 handshake operations per second with aws-lc-rs (ECDHE =
//!   key generation + agreement, ECDSA sign, ECDSA verify). Prints one
//!   JSON line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The public leg's version and suite, as the first connection negotiated it.
static PUBLIC_LEG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("echo") => rt.block_on(echo(&args[1..])),
        Some("load") => rt.block_on(load(&args[1..])),
        Some("idle") => rt.block_on(idle(&args[1..])),
        Some("attack") => rt.block_on(attack(&args[1..])),
        Some("crypto") => crypto(&args[1..]),
        _ => Err("usage: gwload echo|load|idle|attack|crypto ...".into()),
    }
}

async fn echo(a: &[String]) -> Result<()> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&a[1])?.collect::<std::result::Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&a[2])?;
    // The device picks the suite (as mbedTLS does with its own order), so
    // both proxies' device legs run the same one: DEVICE_SUITE first.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let want = std::env::var("DEVICE_SUITE")
        .unwrap_or_else(|_| "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into());
    provider
        .cipher_suites
        .sort_by_key(|s| format!("{:?}", s.suite()) != want);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.ignore_client_order = true;
    // DEVICE_RESUME=0: a device that keeps no sessions (no session cache,
    // no tickets), so every device-leg handshake is a full one, for both
    // proxies alike.
    if std::env::var("DEVICE_RESUME").as_deref() == Ok("0") {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let suite = Arc::new(std::sync::Mutex::new(String::new()));
    // Full and resumed (abbreviated) handshakes so far: a proxy that
    // resumes its device-leg sessions skips the key exchange and the
    // certificate there. Printed when they change (at most every 100 ms).
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    {
        let (suite, counts) = (suite.clone(), counts.clone());
        tokio::spawn(async move {
            let mut shown = String::new();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let line = format!(
                    "device leg: {} full {} resumed {}",
                    suite.lock().unwrap(),
                    counts[0].load(Ordering::Relaxed),
                    counts[1].load(Ordering::Relaxed)
                );
                if line != shown {
                    println!("{line}");
                    shown = line;
                }
            }
        });
    }
    let listener = TcpListener::bind(format!("127.0.0.1:{}", a[0])).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let (suite, counts) = (suite.clone(), counts.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let conn = tls.get_ref().1;
            let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            counts[usize::from(resumed)].fetch_add(1, Ordering::Relaxed);
            let name = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default();
            {
                let mut suite = suite.lock().unwrap();
                if *suite != name {
                    *suite = name;
                }
            }
            let (mut r, mut w) = tokio::io::split(tls);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

fn client_config(root: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(root)? {
        roots.add(c?)?;
    }
    // The same key exchange against both proxies: P-256 (the device's
    // group), not the post-quantum hybrid rustls would offer first.
    // And one suite (PUBLIC_SUITE, default TLS 1.3 AES-128-GCM), so both
    // proxies' public legs encrypt alike.
    let want = std::env::var("PUBLIC_SUITE").unwrap_or_else(|_| "TLS13_AES_128_GCM_SHA256".into());
    let base = rustls::crypto::aws_lc_rs::default_provider();
    let cipher_suites: Vec<_> = base
        .cipher_suites
        .iter()
        .filter(|s| format!("{:?}", s.suite()) == want)
        .copied()
        .collect();
    if cipher_suites.is_empty() {
        return Err(format!("PUBLIC_SUITE={want}: not a suite rustls knows").into());
    }
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::SECP256R1],
        cipher_suites,
        ..base
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

async fn one(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    size: usize,
) -> Result<u64> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let tls = connector
        .connect(ServerName::try_from(name.to_string())?, tcp)
        .await?;
    PUBLIC_LEG.get_or_init(|| {
        let c = tls.get_ref().1;
        format!(
            "{:?} {:?}",
            c.protocol_version()
                .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
            c.negotiated_cipher_suite().map(|s| s.suite())
        )
    });
    let (mut r, mut w) = tokio::io::split(tls);
    let writer = async {
        let chunk = vec![b'x'; 16 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).await?;
            left -= n;
        }
        w.flush().await?;
        Ok::<_, std::io::Error>(w)
    };
    let reader = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        while got < size {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed early"));
            }
            got += n;
        }
        Ok(got)
    };
    let (w, got) = tokio::try_join!(writer, reader)?;
    let mut w = w;
    let _ = w.shutdown().await;
    Ok(got as u64 * 2)
}

async fn load(a: &[String]) -> Result<()> {
    let port: u16 = a[0].parse()?;
    let config = client_config(&a[1])?;
    let name = a[2].clone();
    let size: usize = a[3].parse()?;
    let conns: usize = a[4].parse()?;
    let secs: f64 = a[5].parse()?;
    // LOAD_RATE=R: connections are due at a steady R per second in all
    // (CONNS workers take them in turn); unset: each worker goes flat out.
    let rate: Option<f64> = match std::env::var("LOAD_RATE") {
        Ok(r) => Some(
            r.parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0)
                .ok_or("LOAD_RATE: a positive number")?,
        ),
        Err(_) => None,
    };
    let done = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (config, name, done, bytes, failed, next, latencies) = (
            config.clone(),
            name.clone(),
            done.clone(),
            bytes.clone(),
            failed.clone(),
            next.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                // A connection's latency counts from when it was due: a
                // late start (every worker busy) is the server's delay too.
                let due = match rate {
                    Some(r) => {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_secs_f64(i as f64 / r);
                        if due >= end {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None if Instant::now() < end => Instant::now(),
                    None => break,
                };
                match one(port, &config, &name, size).await {
                    Ok(b) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(b, Ordering::Relaxed);
                        mine.push(due.elapsed().as_secs_f64() * 1e3);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut ms = std::mem::take(&mut *latencies.lock().unwrap());
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "{{\"conns_per_s\":{:.1},\"mb_per_s\":{:.2},\"done\":{},\"failed\":{},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\"cpu_s\":{:.2},\"public_leg\":\"{}\"}}",
        done.load(Ordering::Relaxed) as f64 / elapsed,
        bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        at(0.5),
        at(0.99),
        cpu_seconds(),
        PUBLIC_LEG.get().map_or("", String::as_str)
    );
    Ok(())
}

/// A TCP connection to 127.0.0.1:PORT from `from` (any port).
async fn connect_from(from: std::net::IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(([127, 0, 0, 1], port).into()).await
}

async fn attack(a: &[String]) -> Result<()> {
    let port: u16 = a[0].parse()?;
    let name = ServerName::try_from(a[1].clone())?;
    let idle: usize = a[2].parse()?;
    let rate: u64 = a[3].parse()?;
    let secs: f64 = a[4].parse()?;
    let from: std::net::IpAddr = std::env::var("ATTACK_FROM")
        .unwrap_or_else(|_| "127.0.0.2".into())
        .parse()?;
    let hs_from: std::net::IpAddr = std::env::var("ATTACK_HS_FROM")
        .unwrap_or_else(|_| "127.0.0.3".into())
        .parse()?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    // Idle: open them all, then watch each for the gateway's close.
    let closed = Arc::new(AtomicU64::new(0));
    let mut opened = 0u64;
    let mut holders = Vec::new();
    for _ in 0..idle {
        let Ok(mut tcp) = connect_from(from, port).await else {
            continue;
        };
        opened += 1;
        let closed = closed.clone();
        holders.push(tokio::spawn(async move {
            let mut b = [0u8; 1];
            let left = end.saturating_duration_since(Instant::now());
            // Any end of the read before the time is up: closed or reset.
            if tokio::time::timeout(left, tcp.read(&mut b)).await.is_ok() {
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Failing handshakes: a client that trusts no root.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    );
    let started = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let (config, name) = (config.clone(), name.clone());
        let (started, answered, refused) = (started.clone(), answered.clone(), refused.clone());
        tasks.spawn(async move {
            started.fetch_add(1, Ordering::Relaxed);
            let Ok(tcp) = connect_from(hs_from, port).await else {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let connector = tokio_rustls::TlsConnector::from(config);
            match tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await {
                // The certificate came (and was refused): the gateway did the work.
                Ok(Err(e)) if e.to_string().contains("certificate") => {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    let attack_secs = t0.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    for h in holders {
        let _ = h.await;
    }
    println!(
        "{{\"idle_opened\":{opened},\"idle_closed_by_gateway\":{},\"handshakes_per_s\":{:.0},\"handshakes_answered\":{},\"handshakes_refused\":{}}}",
        closed.load(Ordering::Relaxed),
        started.load(Ordering::Relaxed) as f64 / attack_secs,
        answered.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    Ok(())
}

/// User + system CPU seconds this process has used (to show whether the
/// load generator itself is the bound).
#[cfg(unix)]
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills a plain struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Not measured off Unix (no `getrusage`): -1, which the JSON can carry.
#[cfg(not(unix))]
fn cpu_seconds() -> f64 {
    -1.0
}

async fn idle(a: &[String]) -> Result<()> {
    let port: u16 = a[0].parse()?;
    let config = client_config(&a[1])?;
    let name = ServerName::try_from(a[2].clone())?;
    let conns: usize = a[3].parse()?;
    let secs: f64 = a[4].parse()?;
    let mut held = Vec::new();
    for _ in 0..conns {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let mut tls = connector.connect(name.clone(), tcp).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        held.push(tls);
    }
    println!("{{\"held\":{}}}", held.len());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    Ok(())
}

/// MB/s of plaintext sealed and opened again in 16 KiB records for `secs`.
fn aead_rate(secs: f64, mut seal_open: impl FnMut(&mut Vec<u8>, u64)) -> f64 {
    let mut record = vec![0x5au8; 16 * 1024];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        seal_open(&mut record, n);
        n += 1;
    }
    // Each record is both encrypted and decrypted: count both passes.
    (n * 2 * 16 * 1024) as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// The seal-and-open loop of [`aead_rate`] for one AEAD of aws-lc-rs.
fn aws_lc(alg: &'static aws_lc_rs::aead::Algorithm, secs: f64) -> f64 {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(alg, &vec![7u8; alg.key_len()]).unwrap());
    aead_rate(secs, |record, n| {
        let nonce = |n: u64| {
            let mut b = [0u8; 12];
            b[4..].copy_from_slice(&n.to_be_bytes());
            Nonce::assume_unique_for_key(b)
        };
        let tag = key
            .seal_in_place_separate_tag(nonce(n), Aad::empty(), record)
            .unwrap();
        record.extend_from_slice(tag.as_ref());
        let len = key
            .open_in_place(nonce(n), Aad::empty(), record)
            .unwrap()
            .len();
        record.truncate(len);
    })
}

/// Operations per second for `secs` of `op`.
fn ops_rate(secs: f64, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        op();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// One core's P-256 handshake operations with aws-lc-rs: an ECDHE (key
/// generation + agreement), an ECDSA signature, an ECDSA verification.
fn p256(secs: f64) -> (f64, f64, f64) {
    use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
    let rng = SystemRandom::new();
    let peer = EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
    let peer_pub = peer.compute_public_key().unwrap();
    let ecdhe = ops_rate(secs, || {
        let k = EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let _ = k.compute_public_key().unwrap();
        agreement::agree_ephemeral(
            k,
            UnparsedPublicKey::new(&agreement::ECDH_P256, peer_pub.as_ref()),
            (),
            |_| Ok(()),
        )
        .unwrap();
    });
    let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let msg = [0x5au8; 64];
    let sig = key.sign(&rng, &msg).unwrap();
    let sign = ops_rate(secs, || {
        let _ = key.sign(&rng, &msg).unwrap();
    });
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    let verify = ops_rate(secs, || public.verify(&msg, sig.as_ref()).unwrap());
    (ecdhe, sign, verify)
}

fn crypto(a: &[String]) -> Result<()> {
    let secs: f64 = a.first().map_or(Ok(0.5), |s| s.parse())?;
    let (ecdhe, sign, verify) = p256(secs);
    println!(
        "{{\"p256\":{{\"ecdhe\":{ecdhe:.0},\"sign\":{sign:.0},\"verify\":{verify:.0}}},\"aws_lc_rs\":{{\"aes128gcm\":{:.0},\"aes256gcm\":{:.0},\"chacha20poly1305\":{:.0}}}}}",
        aws_lc(&aws_lc_rs::aead::AES_128_GCM, secs),
        aws_lc(&aws_lc_rs::aead::AES_256_GCM, secs),
        aws_lc(&aws_lc_rs::aead::CHACHA20_POLY1305, secs),
    );
    Ok(())
}

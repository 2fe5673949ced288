//! The load for `bench/fleet_serve.sh`: CONCURRENCY device threads renew the
//! devices of a fleet through a running `devtls fleet serve --renew-after 0`
//! for SECONDS seconds. Each renewal is the device's two connections: ask with
//! its current certificate (new key and certificate back, devtls format),
//! then confirm by connecting with the new one (204). The devices are rustls
//! clients restricted to the `openmv` profile (TLS 1.2, full handshakes).
//!
//! Usage: renew_load FLEET_DIR PORT CONCURRENCY SECONDS [anchor]
//! Prints: `renewals SECONDS_ELAPSED errors`
//!
//!        renew_load pair DEVICE_DIR OUT
//! Writes the device's pair (client.der, client.key.der) to OUT in the
//! devtls format, as the anchor hands it out.
//!
//! `anchor`: the same two connections against the benchmark's anchor, nginx
//! answering the ask from a static file (one pre-made pair for every
//! device, so the request is a GET) and the confirmation with 204; a device
//! keeps its own pair for its next round, since every device is handed the
//! same one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

#[derive(Clone)]
struct Device {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn exchange(
    port: u16,
    roots: &rustls::RootCertStore,
    d: &Device,
    method: &str,
) -> Result<(u16, Vec<u8>), String> {
    let profile = devtls_pki::profile::by_name("openmv").ok_or("no openmv profile")?;
    let config =
        rustls::ClientConfig::builder_with_provider(devtls_net::restrict::provider(profile))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(
                vec![CertificateDer::from(d.cert.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(d.key.clone())),
            )
            .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let body = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    tls.write_all(
        format!("{method} /.well-known/est/serverkeygen HTTP/1.1\r\nHost: x\r\nAccept: application/x-devtls-renew\r\n{body}\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.to_string()),
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no head")?;
    let status = std::str::from_utf8(&raw[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, raw[split + 4..].to_vec()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("pair") {
        let dir = PathBuf::from(&args[1]);
        let cert = std::fs::read(dir.join("client.der")).expect("client.der");
        let key = std::fs::read(dir.join("client.key.der")).expect("client.key.der");
        std::fs::write(
            &args[2],
            devtls_renewal::encode::devtls(&cert, Some(&key), 0),
        )
        .expect("OUT");
        return;
    }
    let dir = PathBuf::from(&args[0]);
    let port: u16 = args[1].parse().expect("PORT");
    let concurrency: usize = args[2].parse().expect("CONCURRENCY");
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let anchor = args.get(4).map(String::as_str) == Some("anchor");
    let method = if anchor { "GET" } else { "POST" };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            std::fs::read(dir.join("ca.der")).expect("ca.der"),
        ))
        .expect("anchor");
    let mut devices = Vec::new();
    for entry in std::fs::read_dir(dir.join("devices")).expect("devices/") {
        let p = entry.expect("entry").path();
        devices.push(Device {
            cert: std::fs::read(p.join("client.der")).expect("client.der"),
            key: std::fs::read(p.join("client.key.der")).expect("client.key.der"),
        });
    }
    let queue = Arc::new(Mutex::new(devices));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            let (queue, done, errors, roots) = (&queue, &done, &errors, &roots);
            s.spawn(move || {
                while Instant::now() < deadline {
                    let Some(device) = queue.lock().unwrap().pop() else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let renewed =
                        exchange(port, roots, &device, method).and_then(|(status, body)| {
                            let (cert, key, _) = devtls_renewal::encode::parse_devtls(&body)
                                .ok_or(format!("status {status}, not the devtls format"))?;
                            let new = Device { cert, key };
                            match exchange(port, roots, &new, method)? {
                                (204, _) if anchor => Ok(device.clone()),
                                (204, _) => Ok(new),
                                (other, _) => Err(format!("confirmation answered {other}")),
                            }
                        });
                    match renewed {
                        Ok(new) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            queue.lock().unwrap().insert(0, new);
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("renewal failed: {e}");
                            }
                            queue.lock().unwrap().insert(0, device);
                        }
                    }
                }
            });
        }
    });
    println!(
        "{} {:.3} {}",
        done.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
}

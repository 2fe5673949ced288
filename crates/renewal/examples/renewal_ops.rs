//! The public-key bound for `bench/fleet_serve.sh`: the rate of each P-256
//! operation a renewal costs, on THREADS threads, with the library the
//! service and the load generator use (aws-lc-rs, through rustls and rcgen),
//! and from them the renewals per second the machine could do if it did
//! nothing else. What one renewal costs is in docs/renewal.md ("Renewals per
//! second"): two mutual-TLS 1.2 handshakes (ECDHE-ECDSA, P-256) and one
//! serverkeygen issue.
//!
//! Usage: renewal_ops THREADS [MILLISECONDS per operation, default 1000]
//! Prints one line per operation (`op NAME RATE_PER_S SERVICE_COUNT
//! DEVICES_COUNT CPU_US`: the counts per renewal, the CPU time of one), the
//! CPU microseconds of one renewal's operations on each side (`side
//! service|devices US`), the bound if the cores were this process's alone
//! (`cpubound RENEWALS_PER_S`, from CPU time) and a last line `bound
//! RENEWALS_PER_S` (from the rates measured, on cores shared with whatever
//! else runs).

use std::time::{Duration, Instant};

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, ECDH_P256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
};

/// One operation: its name, how many one renewal costs (service side,
/// device side), and one run of it.
struct Op {
    name: &'static str,
    service: u32,
    devices: u32,
    run: fn(&Fixture),
}

struct Fixture {
    rng: SystemRandom,
    key: EcdsaKeyPair,
    peer: Vec<u8>,
    msg: Vec<u8>,
    sig: Vec<u8>,
}

/// Per handshake, each side makes an ephemeral P-256 key and agrees with the
/// peer's (ECDHE).
fn ecdhe(f: &Fixture) {
    let mine = EphemeralPrivateKey::generate(&ECDH_P256, &f.rng).expect("ephemeral key");
    let public = mine.compute_public_key().expect("public key");
    let peer = agreement::UnparsedPublicKey::new(&ECDH_P256, &f.peer);
    let n = agreement::agree_ephemeral(mine, peer, (), |s| Ok(s.len())).expect("agreement");
    std::hint::black_box((public.as_ref().len(), n));
}

/// Per handshake, the service signs its ServerKeyExchange and the device its
/// CertificateVerify; the service signs the new certificate.
fn sign(f: &Fixture) {
    let sig = f.key.sign(&f.rng, &f.msg).expect("signature");
    std::hint::black_box(sig);
}

/// Per handshake, the service verifies the device's certificate (CA
/// signature) and its CertificateVerify; the device verifies the service's
/// certificate and its ServerKeyExchange.
fn verify(f: &Fixture) {
    let public = signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, f.key.public_key());
    public.verify(&f.msg, &f.sig).expect("verification");
}

/// The device's new key (serverkeygen), PKCS#8.
fn keygen(f: &Fixture) {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &f.rng).expect("key");
    std::hint::black_box(doc);
}

const OPS: [Op; 4] = [
    Op {
        name: "ecdhe-p256",
        service: 2,
        devices: 2,
        run: ecdhe,
    },
    Op {
        name: "ecdsa-p256-sign",
        service: 3,
        devices: 2,
        run: sign,
    },
    Op {
        name: "ecdsa-p256-verify",
        service: 4,
        devices: 4,
        run: verify,
    },
    Op {
        name: "p256-keygen",
        service: 1,
        devices: 0,
        run: keygen,
    },
];

/// CPU seconds this process has used (user + system; Linux's
/// /proc/self/stat, in clock ticks of 1/100 s), or `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Operations per second of `op` on `threads` threads for `span`, and the
/// CPU microseconds one took (from the process's CPU time, so other
/// processes sharing the cores do not inflate it; without it, wall time
/// times threads).
fn rate(f: &Fixture, op: fn(&Fixture), threads: usize, span: Duration) -> (f64, f64) {
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < span {
                        for _ in 0..8 {
                            op(f);
                        }
                        n += 8;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall * threads as f64,
    };
    (total as f64 / wall, 1e6 * cpu / total as f64)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let millis: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).expect("key");
    let peer = EphemeralPrivateKey::generate(&ECDH_P256, &rng)
        .and_then(|k| k.compute_public_key())
        .expect("peer key")
        .as_ref()
        .to_vec();
    // About the size of a certificate's to-be-signed part.
    let msg = vec![0x5au8; 300];
    let sig = key.sign(&rng, &msg).expect("signature").as_ref().to_vec();
    let f = Fixture {
        rng,
        key,
        peer,
        msg,
        sig,
    };
    // Seconds of the whole machine's time the operations of one renewal need.
    let mut seconds = 0.0;
    // CPU microseconds per renewal on each side.
    let (mut service, mut devices) = (0.0, 0.0);
    for op in &OPS {
        let (r, cpu_us) = rate(&f, op.run, threads, Duration::from_millis(millis));
        seconds += f64::from(op.service + op.devices) / r;
        service += f64::from(op.service) * cpu_us;
        devices += f64::from(op.devices) * cpu_us;
        println!(
            "op {} {:.0} {} {} {:.1}",
            op.name, r, op.service, op.devices, cpu_us
        );
    }
    println!("side service {service:.0}");
    println!("side devices {devices:.0}");
    // The same on idle cores: THREADS cores' worth of CPU per second.
    println!("cpubound {:.0}", 1e6 * threads as f64 / (service + devices));
    println!("bound {:.0}", 1.0 / seconds);
}

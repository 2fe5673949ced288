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
//! DEVICES_COUNT`, the counts per renewal), the CPU microseconds of one
//! renewal's operations on each side (`side service|devices US`) and a last
//! line `bound RENEWALS_PER_S`.

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

/// Operations per second of `op` on `threads` threads for `span`.
fn rate(f: &Fixture, op: fn(&Fixture), threads: usize, span: Duration) -> f64 {
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
    total as f64 / start.elapsed().as_secs_f64()
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
    // CPU microseconds per renewal on each side (one operation takes
    // THREADS / rate seconds of one core).
    let (mut service, mut devices) = (0.0, 0.0);
    for op in &OPS {
        let r = rate(&f, op.run, threads, Duration::from_millis(millis));
        seconds += f64::from(op.service + op.devices) / r;
        let core_us = 1e6 * threads as f64 / r;
        service += f64::from(op.service) * core_us;
        devices += f64::from(op.devices) * core_us;
        println!("op {} {:.0} {} {}", op.name, r, op.service, op.devices);
    }
    println!("side service {service:.0}");
    println!("side devices {devices:.0}");
    println!("bound {:.0}", 1.0 / seconds);
}

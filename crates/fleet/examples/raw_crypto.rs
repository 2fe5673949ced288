//! The raw crypto bound for `bench/fleet.sh`: per device one P-256 key
//! generation and one ECDSA P-256 signature by a CA key, in a tight loop, with
//! the same library devtls issues with (rcgen on aws-lc-rs), on THREADS threads.
//!
//! Usage: raw_crypto DEVICES THREADS   (prints devices per second)

use std::time::Instant;

use rcgen::{KeyPair, SigningKey, PKCS_ECDSA_P256_SHA256};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let ca = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
    // About the size of a device certificate's to-be-signed part.
    let tbs = vec![0x5au8; 300];
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ca, tbs) = (&ca, &tbs);
            s.spawn(move || {
                let mine = n / threads + usize::from(t < n % threads);
                for _ in 0..mine {
                    let device = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
                    let sig = ca.sign(tbs).expect("signature");
                    std::hint::black_box((device, sig));
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!("{:.0}", n as f64 / secs);
}

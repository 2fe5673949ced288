//! Property-based fuzzing of every parser entry point behind inspect,
//! convert, split and lint: sniff -> inspect -> convert -> split_chain, fed
//! arbitrary bytes and valid PEM/DER (devtls-made and OpenSSL/GnuTLS-made)
//! with bit flips, truncation and splices. Nothing may panic; whatever
//! converts must read back as the same kind.
//!
//! Cases per property: `DEVTLS_FUZZ_CASES` (default 64, CI-fast). A long run:
//! `DEVTLS_FUZZ_CASES=200000 cargo test -p devtls-pki --test pki --release -- fuzz::`
//! (see docs/fuzzing.md).

use devtls_pki::convert;
use devtls_pki::inspect::{self, Details};
use devtls_pki::issue::{self, Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::sniff::{self, Encoding};
use proptest::prelude::*;
use std::sync::OnceLock;
use time::OffsetDateTime;

/// The password of the encrypted fixtures under tests/data.
const PASSWORD: &[u8] = b"secret";

fn cases() -> u32 {
    std::env::var("DEVTLS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Valid inputs of every kind and encoding the commands read.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds: Vec<Vec<u8>> = vec![
            include_bytes!("../data/crl.pem").to_vec(),
            include_bytes!("../data/rsa.csr").to_vec(),
            include_bytes!("../data/ec-encrypted-secret.p8").to_vec(),
            include_bytes!("../data/ec-legacy-des3-secret.key").to_vec(),
            include_bytes!("../data/ed25519.crt").to_vec(),
            include_bytes!("../data/ed25519.key").to_vec(),
            include_bytes!("../data/secp256k1.crt").to_vec(),
            include_bytes!("../data/secp256k1.key").to_vec(),
            include_bytes!("../data/rsa-pss.crt").to_vec(),
            include_bytes!("../data/rsa1024-sha1.crt").to_vec(),
            include_bytes!("../data/constrained-p521.crt").to_vec(),
            include_bytes!("../data/anypolicy.crt").to_vec(),
        ];
        for seed in seeds.clone() {
            let sniffed = sniff::sniff(&seed).expect("fixture sniffs");
            // A legacy encrypted key's body is still encrypted: it has no DER form.
            if sniffed.items[0].kind != sniff::Kind::LegacyEncryptedKey {
                seeds.push(sniffed.items[0].der.clone());
            }
        }
        let root_key = PrivateKey::generate(KeyType::P256).unwrap();
        let root = issue::self_signed_ca(&CertSpec::new("Root", Role::Ca, 30), &root_key).unwrap();
        let ca = Authority::load(&root.der, root_key).unwrap();
        for key_type in [KeyType::P256, KeyType::P384, KeyType::Rsa2048] {
            let key = PrivateKey::generate(key_type).unwrap();
            let mut spec = CertSpec::new("openmv", Role::Server, 30);
            spec.dns = vec!["openmv".into()];
            spec.ips = vec!["192.168.1.50".parse().unwrap()];
            let leaf = ca.sign(&spec, &key).unwrap();
            let csr = issue::csr(&spec, &key).unwrap();
            seeds.push(format!("{}{}", leaf.pem(), root.pem()).into_bytes());
            seeds.push([leaf.der.clone(), root.der.clone()].concat());
            seeds.push(leaf.der);
            seeds.push(key.pkcs8_der());
            seeds.push(key.pkcs8_pem().into_bytes());
            seeds.push(csr.der);
        }
        seeds
    })
}

/// The whole read pipeline; panics only if an invariant breaks.
fn pipeline(bytes: &[u8]) {
    let at = OffsetDateTime::now_utc();
    let Ok(sniffed) = sniff::sniff(bytes) else {
        return;
    };
    assert!(!sniffed.items.is_empty());
    for item in inspect::inspect(&sniffed, at) {
        if let Details::Unreadable { reason } = &item.details {
            assert!(!reason.is_empty());
        }
        serde_json::to_string(&item).unwrap();
    }
    for to in [Encoding::Der, Encoding::Pem] {
        for password in [None, Some(PASSWORD), Some(&b"wrong"[..])] {
            match convert::convert(bytes, &sniffed, to, password) {
                Ok(out) => {
                    let again = sniff::sniff(&out.bytes).expect("converted output reads back");
                    assert_eq!(again.items.len(), 1);
                    assert_eq!(again.items[0].kind, out.kind);
                    assert_eq!(again.items[0].trailing_bytes, 0);
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
    if let Ok(parts) = convert::split_chain(&sniffed, at) {
        assert_eq!(parts.len(), sniffed.items.len());
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Splice {
        at: usize,
        from: usize,
        start: usize,
        len: usize,
    },
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), any::<usize>(), any::<usize>(), 0usize..200)
            .prop_map(|(at, from, start, len)| Mutation::Splice { at, from, start, len }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    let seeds = seeds();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, bit) => {
                if !bytes.is_empty() {
                    let i = i % len;
                    bytes[i] ^= 1 << bit;
                }
            }
            Mutation::Truncate(n) => bytes.truncate(n % len),
            Mutation::Splice {
                at,
                from,
                start,
                len: n,
            } => {
                let other = &seeds[from % seeds.len()];
                let start = start % other.len().max(1);
                let end = (start + n).min(other.len());
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, other[start..end].iter().copied());
            }
            Mutation::Insert(i, v) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, v.iter().copied());
            }
            Mutation::Remove(i, n) => {
                if !bytes.is_empty() {
                    let at = i % bytes.len();
                    let end = (at + n).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
        }
    }
    bytes
}

#[test]
fn every_seed_reads_and_converts() {
    for seed in seeds() {
        let sniffed = sniff::sniff(seed).expect("seed sniffs");
        pipeline(seed);
        for item in inspect::inspect(&sniffed, OffsetDateTime::now_utc()) {
            assert!(
                !matches!(item.details, Details::Unreadable { .. }),
                "seed item unreadable: {item:?}"
            );
        }
    }
}

/// Regression for the first long run: one flipped bit in an encrypted key's
/// parameters decrypted (with the right password) to a SEC1 key that was
/// reported as PKCS#8. Every single-bit flip must now fail or round-trip.
#[test]
fn every_single_bit_flip_of_an_encrypted_key_fails_or_round_trips() {
    // The exact case the long run found (seed 2, the PEM, one flipped bit).
    let pem = include_bytes!("../data/ec-encrypted-secret.p8").to_vec();
    pipeline(&apply(
        pem.clone(),
        &[Mutation::Flip(14211292155870813088, 0)],
    ));
    let sniffed = sniff::sniff(&pem).unwrap();
    let der = &sniffed.items[0].der;
    for i in 0..der.len() * 8 {
        let mut bytes = der.clone();
        bytes[i / 8] ^= 1 << (i % 8);
        pipeline(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        pipeline(&bytes);
    }

    #[test]
    fn arbitrary_pem_text_never_panics(
        label in prop::sample::select(vec!["CERTIFICATE", "PRIVATE KEY", "EC PRIVATE KEY",
            "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "X509 CRL", "CERTIFICATE REQUEST", "PUBLIC KEY"]),
        body in proptest::collection::vec(any::<u8>(), 0..600),
        legacy in any::<bool>(),
    ) {
        let headers = if legacy { "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n" } else { "" };
        let text = format!(
            "-----BEGIN {label}-----\n{headers}{}\n-----END {label}-----\n",
            pem_base64(&body)
        );
        pipeline(text.as_bytes());
    }

    #[test]
    fn mutated_valid_input_never_panics(
        seed in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let bytes = apply(seeds[seed.index(seeds.len())].clone(), &mutations);
        pipeline(&bytes);
    }
}

/// Base64 with 64-column lines, written here so the test does not trust the
/// encoder under test.
fn pem_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(64)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

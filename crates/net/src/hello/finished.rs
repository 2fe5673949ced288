//! The device's ChangeCipherSpec and Finished over DTLS 1.2, for every suite
//! the device offers: the TLS 1.2 PRF (RFC 5246 5), the master secret and
//! the client's write keys (6.3), the Finished's verify_data (7.4.9), and an
//! epoch-1 record (RFC 6347 4.1.2.1) sealed with AES-GCM (RFC 5288 3) or
//! with AES-CBC and HMAC, MAC then encrypt (RFC 5246 6.2.3.2; the device
//! does not offer encrypt-then-MAC).
//!
//! With a real Finished the server's reaction decides: its own
//! ChangeCipherSpec means it accepted everything the device sent (the
//! device's certificate included), an alert or silence means it refused
//! (docs/device-behaviour.md, "DTLS and the device's certificate").

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::{aead, digest, hmac, rand};

/// How a suite protects records.
#[derive(Clone, Copy)]
enum Mode {
    /// AES-GCM with a key of this many bytes.
    Gcm(usize),
    /// AES-CBC with a key of this many bytes, then HMAC with this algorithm.
    Cbc(usize, hmac::Algorithm),
}

/// The suites the device offers: how records are protected, and whether the
/// PRF hash is SHA-384 (the suites whose names end in _SHA384).
fn suite_mode(suite: u16) -> Option<(Mode, bool)> {
    use hmac::{HMAC_SHA1_FOR_LEGACY_USE_ONLY as SHA1, HMAC_SHA256, HMAC_SHA384};
    Some(match suite {
        // ECDHE_ECDSA, ECDHE_RSA, RSA
        0xC02B | 0xC02F | 0x009C => (Mode::Gcm(16), false),
        0xC02C | 0xC030 | 0x009D => (Mode::Gcm(32), true),
        0xC009 | 0xC013 | 0x002F => (Mode::Cbc(16, SHA1), false),
        0xC00A | 0xC014 | 0x0035 => (Mode::Cbc(32, SHA1), false),
        0xC023 | 0xC027 | 0x003C => (Mode::Cbc(16, HMAC_SHA256), false),
        0x003D => (Mode::Cbc(32, HMAC_SHA256), false),
        0xC024 | 0xC028 => (Mode::Cbc(32, HMAC_SHA384), true),
        _ => return None,
    })
}

/// P_hash of RFC 5246 5: HMAC-SHA-256 or HMAC-SHA-384 over label and seed.
fn prf(sha384: bool, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let alg = if sha384 {
        hmac::HMAC_SHA384
    } else {
        hmac::HMAC_SHA256
    };
    let key = hmac::Key::new(alg, secret);
    let label_seed = [label, seed].concat();
    let mut out = Vec::with_capacity(len);
    let mut a = hmac::sign(&key, &label_seed).as_ref().to_vec();
    while out.len() < len {
        out.extend_from_slice(hmac::sign(&key, &[&a[..], &label_seed].concat()).as_ref());
        a = hmac::sign(&key, &a).as_ref().to_vec();
    }
    out.truncate(len);
    out
}

/// The client's record protection.
enum Protection {
    Gcm {
        key: Box<aead::LessSafeKey>,
        iv: [u8; 4],
    },
    Cbc {
        key: Box<EncryptingKey>,
        mac: Box<hmac::Key>,
    },
}

/// The device's side of the keys, from the premaster secret on.
pub struct ClientKeys {
    master: Vec<u8>,
    sha384: bool,
    protection: Protection,
}

impl std::fmt::Debug for ClientKeys {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKeys(..)")
    }
}

impl ClientKeys {
    /// The keys for `suite`, or `None` when it is not one the device offers.
    pub fn derive(
        suite: u16,
        premaster: &[u8],
        client_random: &[u8],
        server_random: &[u8],
    ) -> Option<ClientKeys> {
        let (mode, sha384) = suite_mode(suite)?;
        let master = prf(
            sha384,
            premaster,
            b"master secret",
            &[client_random, server_random].concat(),
            48,
        );
        // client_write_MAC_key, server_write_MAC_key (CBC only),
        // client_write_key, server_write_key, client_write_IV (GCM: 4 bytes).
        let (mac_len, key_len) = match mode {
            Mode::Gcm(k) => (0, k),
            Mode::Cbc(k, mac) => (mac.digest_algorithm().output_len(), k),
        };
        let block = prf(
            sha384,
            &master,
            b"key expansion",
            &[server_random, client_random].concat(),
            2 * mac_len + 2 * key_len + 8,
        );
        let key_bytes = &block[2 * mac_len..2 * mac_len + key_len];
        let protection = match mode {
            Mode::Gcm(_) => {
                let alg = if key_len == 16 {
                    &aead::AES_128_GCM
                } else {
                    &aead::AES_256_GCM
                };
                let at = 2 * mac_len + 2 * key_len;
                let mut iv = [0u8; 4];
                iv.copy_from_slice(&block[at..at + 4]);
                Protection::Gcm {
                    key: Box::new(aead::LessSafeKey::new(
                        aead::UnboundKey::new(alg, key_bytes).ok()?,
                    )),
                    iv,
                }
            }
            Mode::Cbc(_, mac) => {
                let alg = if key_len == 16 { &AES_128 } else { &AES_256 };
                Protection::Cbc {
                    key: Box::new(
                        EncryptingKey::cbc(UnboundCipherKey::new(alg, key_bytes).ok()?).ok()?,
                    ),
                    mac: Box::new(hmac::Key::new(mac, &block[..mac_len])),
                }
            }
        };
        Some(ClientKeys {
            master,
            sha384,
            protection,
        })
    }

    /// The client Finished's verify_data over the handshake so far.
    pub fn verify_data(&self, transcript: &[u8]) -> Vec<u8> {
        let alg = if self.sha384 {
            &digest::SHA384
        } else {
            &digest::SHA256
        };
        let hash = digest::digest(alg, transcript);
        prf(
            self.sha384,
            &self.master,
            b"client finished",
            hash.as_ref(),
            12,
        )
    }

    /// A DTLS record of `content_type` at `epoch` and `seq`, protected with
    /// the client's write keys.
    pub fn seal(
        &self,
        content_type: u8,
        version: u16,
        epoch: u16,
        seq: u64,
        plaintext: &[u8],
    ) -> Vec<u8> {
        // The DTLS sequence number: epoch and 48-bit sequence.
        let mut seq_num = [0u8; 8];
        seq_num[..2].copy_from_slice(&epoch.to_be_bytes());
        seq_num[2..].copy_from_slice(&seq.to_be_bytes()[2..]);
        let mut header = seq_num.to_vec();
        header.push(content_type);
        header.extend_from_slice(&version.to_be_bytes());
        header.extend_from_slice(&(plaintext.len() as u16).to_be_bytes());
        let fragment = match &self.protection {
            Protection::Gcm { key, iv } => {
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(iv);
                nonce[4..].copy_from_slice(&seq_num);
                let mut sealed = plaintext.to_vec();
                // A fresh sequence number per record makes each nonce unique;
                // sealing a buffer this small does not fail.
                let _ = key.seal_in_place_append_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(header),
                    &mut sealed,
                );
                [&seq_num[..], &sealed].concat()
            }
            Protection::Cbc { key, mac } => {
                let tag = hmac::sign(mac, &[&header[..], plaintext].concat());
                let mut data = [plaintext, tag.as_ref()].concat();
                let pad = 15 - data.len() % 16;
                data.extend(std::iter::repeat_n(pad as u8, pad + 1));
                let mut iv = [0u8; 16];
                let _ = rand::fill(&mut iv);
                let _ = key
                    .less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)));
                [&iv[..], &data].concat()
            }
        };
        let mut record = vec![content_type];
        record.extend_from_slice(&version.to_be_bytes());
        record.extend_from_slice(&seq_num);
        record.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
        record.extend_from_slice(&fragment);
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 5246's PRF with SHA-256: the test vector published with the
    // TLS working group's PRF test vectors (secret, "test label", seed).
    #[test]
    fn prf_sha256_matches_the_published_vector() {
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let out = prf(false, &secret, b"test label", &seed, 100);
        assert_eq!(
            out[..16],
            hex("e3f229ba727be17b8d122620557cd453")[..],
            "{out:02x?}"
        );
    }

    #[test]
    fn the_devices_suites_get_keys_and_records_carry_the_epoch() {
        let r = [7u8; 32];
        assert!(
            ClientKeys::derive(0xCCA9, &[1; 32], &r, &r).is_none(),
            "ChaCha20"
        );
        // AES-128-CBC with HMAC-SHA256: explicit IV 16, then 4 + 32 of MAC
        // padded to 48.
        let cbc = ClientKeys::derive(0xC023, &[1; 32], &r, &r).unwrap();
        let rec = cbc.seal(22, 0xFEFD, 1, 0, &[20, 0, 0, 12]);
        assert_eq!(rec[3..5], [0, 1], "epoch 1");
        assert_eq!(rec.len(), 13 + 16 + 48);
        let k = ClientKeys::derive(0xC02B, &[1; 32], &r, &r).unwrap();
        assert_eq!(k.verify_data(b"transcript").len(), 12);
        let rec = k.seal(22, 0xFEFD, 1, 0, &[20, 0, 0, 12]);
        assert_eq!(rec[..3], [22, 0xFE, 0xFD]);
        assert_eq!(rec[3..5], [0, 1], "epoch 1");
        // header 13 + explicit nonce 8 + plaintext 4 + tag 16
        assert_eq!(rec.len(), 13 + 8 + 4 + 16);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}

//! The device's ChangeCipherSpec and Finished over DTLS 1.2, for the
//! AES-GCM suites: the TLS 1.2 PRF (RFC 5246 5), the master secret and the
//! client's write key and IV (6.3), the Finished's verify_data (7.4.9), and
//! an epoch-1 record sealed as RFC 5288 3 and RFC 6347 4.1.2.1 say.
//!
//! With a real Finished the server's reaction decides: its own
//! ChangeCipherSpec means it accepted everything the device sent (the
//! device's certificate included), an alert or silence means it refused
//! (docs/device-behaviour.md, "DTLS and the device's certificate").
//! The CBC suites are not sealed here: for them the device's flight stops
//! before its Finished, as before.

use aws_lc_rs::{aead, digest, hmac};

/// The AES-GCM suites the device offers: key length and whether the PRF hash is SHA-384.
fn gcm_suite(suite: u16) -> Option<(usize, bool)> {
    match suite {
        // ECDHE_ECDSA, ECDHE_RSA, RSA with AES_128_GCM_SHA256
        0xC02B | 0xC02F | 0x009C => Some((16, false)),
        // ... with AES_256_GCM_SHA384
        0xC02C | 0xC030 | 0x009D => Some((32, true)),
        _ => None,
    }
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

/// The device's side of the keys, from the premaster secret on.
pub struct ClientKeys {
    master: Vec<u8>,
    sha384: bool,
    key: aead::LessSafeKey,
    iv: [u8; 4],
}

impl std::fmt::Debug for ClientKeys {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKeys(..)")
    }
}

impl ClientKeys {
    /// The keys for `suite`, or `None` when it is not an AES-GCM suite.
    pub fn derive(
        suite: u16,
        premaster: &[u8],
        client_random: &[u8],
        server_random: &[u8],
    ) -> Option<ClientKeys> {
        let (key_len, sha384) = gcm_suite(suite)?;
        let master = prf(
            sha384,
            premaster,
            b"master secret",
            &[client_random, server_random].concat(),
            48,
        );
        // client_write_key, server_write_key, client_write_IV, server_write_IV
        // (GCM has no MAC keys).
        let block = prf(
            sha384,
            &master,
            b"key expansion",
            &[server_random, client_random].concat(),
            2 * key_len + 8,
        );
        let alg = if key_len == 16 {
            &aead::AES_128_GCM
        } else {
            &aead::AES_256_GCM
        };
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &block[..key_len]).ok()?);
        let mut iv = [0u8; 4];
        iv.copy_from_slice(&block[2 * key_len..2 * key_len + 4]);
        Some(ClientKeys {
            master,
            sha384,
            key,
            iv,
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

    /// A DTLS record of `content_type` at `epoch` and `seq`, sealed with
    /// the client's write key: the explicit nonce is the epoch and sequence.
    pub fn seal(
        &self,
        content_type: u8,
        version: u16,
        epoch: u16,
        seq: u64,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let mut explicit = [0u8; 8];
        explicit[..2].copy_from_slice(&epoch.to_be_bytes());
        explicit[2..].copy_from_slice(&seq.to_be_bytes()[2..]);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.iv);
        nonce[4..].copy_from_slice(&explicit);
        let mut aad = explicit.to_vec();
        aad.push(content_type);
        aad.extend_from_slice(&version.to_be_bytes());
        aad.extend_from_slice(&(plaintext.len() as u16).to_be_bytes());
        let mut sealed = plaintext.to_vec();
        // A fresh sequence number per record makes each nonce unique.
        let sealed_ok = self.key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut sealed,
        );
        debug_assert!(sealed_ok.is_ok());
        let mut record = vec![content_type];
        record.extend_from_slice(&version.to_be_bytes());
        record.extend_from_slice(&explicit);
        record.extend_from_slice(&((explicit.len() + sealed.len()) as u16).to_be_bytes());
        record.extend_from_slice(&explicit);
        record.extend_from_slice(&sealed);
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
    fn only_gcm_suites_get_keys_and_records_carry_the_epoch() {
        let r = [7u8; 32];
        assert!(ClientKeys::derive(0xC023, &[1; 32], &r, &r).is_none());
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

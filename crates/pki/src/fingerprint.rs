//! Fingerprints in the forms users compare by eye.

use sha2::{Digest, Sha256};

/// SHA-256 of `der` in the colon form `openssl x509 -fingerprint -sha256` prints
/// (`AB:CD:...`, upper case).
pub fn sha256_colon(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 of `der` as plain lower-case hex (for JSON and file names).
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

#[cfg(test)]
mod tests {
    #[test]
    fn colon_form_matches_openssl_spelling() {
        let fp = super::sha256_colon(b"abc");
        assert!(fp.starts_with("BA:78:16:BF:8F:01:CF:EA"));
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_eq!(super::sha256_hex(b"abc").len(), 64);
    }
}

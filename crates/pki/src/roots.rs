//! Root certificate sets: the Mozilla roots bundled with devtls, or a PEM bundle.
//!
//! A device has no trust store, so devtls needs one to tell the user which
//! root anchors a server's chain. The bundled set is the Mozilla CA program's
//! server-authentication roots as shipped in the `webpki-root-certs` crate
//! (whole DER certificates, so the chosen root can be written out as the
//! device's `ca.der`).

use crate::sniff::{self, Kind};
use crate::Error;

/// The crate the bundled roots come from.
pub const BUNDLE_CRATE: &str = "webpki-root-certs";
/// Its version, as locked in Cargo.lock (a unit test keeps the two equal).
pub const BUNDLE_VERSION: &str = "1.0.11";
/// The day that version was published on crates.io: the snapshot date of the
/// Mozilla (CCADB) root list it was generated from.
pub const BUNDLE_DATE: &str = "2026-10-23";

/// A set of root certificates to build paths to.
#[derive(Debug, Clone)]
pub struct RootSet {
    /// Where the set came from (`bundled Mozilla roots (...)` or a file name).
    pub source: String,
    /// The DER certificates.
    pub certs: Vec<Vec<u8>>,
}

impl RootSet {
    /// The Mozilla roots bundled with devtls.
    pub fn bundled() -> Self {
        RootSet {
            source: format!(
                "bundled Mozilla roots ({BUNDLE_CRATE} {BUNDLE_VERSION}, {BUNDLE_DATE})"
            ),
            certs: webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect(),
        }
    }

    /// A replacement set read from a PEM bundle (or concatenated DER); `source`
    /// names it in messages. Anything that is not a certificate is an error, so
    /// a key pasted into a bundle by mistake is noticed.
    pub fn from_bundle(bytes: &[u8], source: &str) -> Result<Self, Error> {
        let sniffed = sniff::sniff(bytes)?;
        if let Some(other) = sniffed.items.iter().find(|i| i.kind != Kind::Certificate) {
            return Err(Error::Malformed(format!(
                "a root bundle holds certificates only, but this one holds a {}",
                other.kind.describe()
            )));
        }
        Ok(RootSet {
            source: source.to_string(),
            certs: sniffed.items.into_iter().map(|i| i.der).collect(),
        })
    }

    /// How many roots the set holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Whether this exact certificate is in the set.
    pub fn contains(&self, der: &[u8]) -> bool {
        self.certs.iter().any(|c| c == der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_version_is_the_locked_crate_version() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .unwrap();
        let entry = lock
            .split("[[package]]")
            .find(|p| p.contains(&format!("name = \"{BUNDLE_CRATE}\"")))
            .unwrap();
        assert!(
            entry.contains(&format!("version = \"{BUNDLE_VERSION}\"")),
            "update BUNDLE_VERSION and BUNDLE_DATE in roots.rs: {entry}"
        );
    }

    #[test]
    fn bundled_set_holds_parseable_roots_and_bundles_refuse_keys() {
        let set = RootSet::bundled();
        assert!(set.len() > 100, "{}", set.len());
        for der in &set.certs {
            assert_eq!(sniff::classify(der), Some(Kind::Certificate));
        }
        let key = crate::keys::PrivateKey::generate(crate::keys::KeyType::P256).unwrap();
        assert!(RootSet::from_bundle(key.pkcs8_pem().as_bytes(), "k.pem").is_err());
    }
}

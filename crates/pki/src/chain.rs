//! Path building: from the chain a server presents to a root in a set, and
//! which certificate a device should trust.
//!
//! A server sends its leaf first and usually its intermediates, in any order,
//! sometimes with the root, sometimes without the intermediate. The device
//! trusts exactly one certificate, so the question the guide asks in
//! "Which certificate you trust is a trade-off" has three answers (root,
//! intermediate, leaf); [`Chain::choices`] gives each with the reason it
//! works or does not on the device.

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::inspect::{self, CertInfo};
use crate::roots::RootSet;
use crate::Error;

/// One certificate as read by [`crate::inspect`], plus what path building
/// needs beyond it: the raw names and key, and where its issuer can be downloaded.
#[derive(Debug, Clone, Serialize)]
pub struct Cert {
    /// The DER encoding.
    #[serde(skip)]
    pub der: Vec<u8>,
    /// Everything inspection reads (subject, issuer, key, signature, SAN, EKU, validity...).
    #[serde(flatten)]
    pub info: CertInfo,
    #[serde(skip)]
    subject_raw: Vec<u8>,
    #[serde(skip)]
    issuer_raw: Vec<u8>,
    #[serde(skip)]
    spki: Vec<u8>,
    /// authorityInfoAccess caIssuers URLs (where the issuer can be downloaded).
    pub ca_issuers: Vec<String>,
    /// OIDs of the extensions marked critical, in the certificate's order.
    #[serde(skip)]
    pub critical_extensions: Vec<String>,
    /// The certificate has a subjectAltName extension (whatever it holds).
    #[serde(skip)]
    pub has_san: bool,
    /// uniformResourceIdentifier SAN entries, as written.
    #[serde(skip)]
    pub san_uris: Vec<String>,
}

const OID_CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";

impl Cert {
    /// Reads one DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, Error> {
        let (_, x) = X509Certificate::from_der(der)
            .map_err(|e| Error::Malformed(format!("not a certificate that parses: {e}")))?;
        let mut ca_issuers = Vec::new();
        let mut critical_extensions = Vec::new();
        let mut has_san = false;
        let mut san_uris = Vec::new();
        for ext in x.extensions() {
            if ext.critical {
                critical_extensions.push(ext.oid.to_id_string());
            }
            if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
                has_san = true;
                for name in &san.general_names {
                    if let GeneralName::URI(uri) = name {
                        san_uris.push(uri.to_string());
                    }
                }
            }
            if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
                for desc in &aia.accessdescs {
                    if desc.access_method.to_id_string() == OID_CA_ISSUERS {
                        if let GeneralName::URI(uri) = desc.access_location {
                            ca_issuers.push(uri.to_string());
                        }
                    }
                }
            }
        }
        Ok(Cert {
            der: der.to_vec(),
            info: inspect::certificate(der, OffsetDateTime::now_utc())?,
            subject_raw: x.subject().as_raw().to_vec(),
            issuer_raw: x.issuer().as_raw().to_vec(),
            spki: x.public_key().raw.to_vec(),
            ca_issuers,
            critical_extensions,
            has_san,
            san_uris,
        })
    }

    /// Subject as OpenSSL's `s:` line prints it (`C=US, O=..., CN=...`).
    pub fn subject(&self) -> &str {
        &self.info.subject
    }

    /// Issuer as OpenSSL's `i:` line prints it.
    pub fn issuer(&self) -> &str {
        &self.info.issuer
    }

    /// Start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.info.validity.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.info.validity.not_after
    }

    /// Subject and issuer are the same name (a root, or a self-signed leaf).
    pub fn self_issued(&self) -> bool {
        names_equal(
            &self.subject_raw,
            self.subject(),
            &self.issuer_raw,
            self.issuer(),
        )
    }

    /// `parent`'s subject is this certificate's issuer.
    pub fn named_by(&self, parent: &Cert) -> bool {
        names_equal(
            &self.issuer_raw,
            self.issuer(),
            &parent.subject_raw,
            parent.subject(),
        )
    }

    /// `parent`'s key made this certificate's signature. `None` when the
    /// algorithm cannot be checked here (it is then judged by name only).
    pub fn signed_by(&self, parent: &Cert) -> Option<bool> {
        inspect::signature_checks(&self.der, &parent.der)
    }

    /// Self-issued and its signature checks with its own key.
    pub fn self_signed(&self) -> bool {
        self.self_issued() && self.signed_by(self) != Some(false)
    }

    /// `parent` issued this certificate: name match and a signature that checks.
    pub fn issued_by(&self, parent: &Cert) -> bool {
        self.named_by(parent) && self.signed_by(parent) != Some(false)
    }

    /// Whether the two hold the same subject and key (a re-issued or cross-signed copy).
    pub fn same_entity(&self, other: &Cert) -> bool {
        self.subject_raw == other.subject_raw && self.spki == other.spki
    }

    /// Valid at `time` (notBefore <= time <= notAfter).
    pub fn valid_at(&self, time: OffsetDateTime) -> bool {
        self.not_before() <= time && time <= self.not_after()
    }

    /// The subject's last common name, else the whole subject, for short messages.
    pub fn short_name(&self) -> &str {
        self.info
            .common_names
            .last()
            .map(String::as_str)
            .unwrap_or(self.subject())
    }
}

// mbedTLS compares names attribute by attribute, ignoring case and string
// type; the printed form captures that closely enough for path building.
fn names_equal(a_raw: &[u8], a: &str, b_raw: &[u8], b: &str) -> bool {
    a_raw == b_raw || a.eq_ignore_ascii_case(b)
}

/// Where a certificate on a path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "from", content = "index")]
pub enum Origin {
    /// Sent by the server, at this index of its chain.
    Presented(usize),
    /// Not sent: downloaded from an issuer URL (authorityInfoAccess).
    Fetched(usize),
    /// The root of the set the path reached ([`Chain::root`]).
    Root,
}

/// A server's chain and the path devtls built from it.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    /// What the server presented, in its order (index 0 is the leaf).
    pub presented: Vec<Cert>,
    /// Issuers downloaded because the server did not send them.
    pub fetched: Vec<Cert>,
    /// The path, leaf first, each step with where it came from.
    pub path: Vec<Origin>,
    /// The path ends at a root of the set.
    pub anchored: bool,
    /// That root.
    pub root: Option<Cert>,
    /// The server's own certificate is self-signed (no CA involved).
    pub self_signed_leaf: bool,
    /// Presented certificates that are on no path from the leaf.
    pub unused: Vec<usize>,
}

/// Which certificate to make the device's anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// The root at the top of the path.
    Root,
    /// The intermediate just below the root.
    Intermediate,
    /// The server's own certificate (pinning).
    Leaf,
}

impl Trust {
    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            Trust::Root => "root",
            Trust::Intermediate => "intermediate",
            Trust::Leaf => "leaf",
        }
    }
}

/// One possible anchor, whether the device would accept it with this server, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// Which one.
    pub trust: Trust,
    /// Where on the path it is.
    pub origin: Origin,
    /// The device's verification succeeds with this anchor and what the server sends.
    pub works: bool,
    /// Why (and what it costs), in the guide's words.
    pub reason: String,
}

impl Chain {
    /// Builds the path from `presented` (leaf first, the rest in any order)
    /// through `fetched` extras to a root in `roots`, preferring at each step
    /// a root of the set (the shortest path), then a presented certificate,
    /// then a fetched one.
    pub fn build(
        presented: &[Vec<u8>],
        fetched: &[Vec<u8>],
        roots: &RootSet,
    ) -> Result<Chain, Error> {
        let presented: Vec<Cert> = presented
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Cert::parse(d).map_err(|e| Error::Malformed(format!("certificate {i}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        if presented.is_empty() {
            return Err(Error::Malformed("no certificate in the chain".into()));
        }
        let fetched: Vec<Cert> = fetched.iter().filter_map(|d| Cert::parse(d).ok()).collect();
        let root_certs: Vec<Cert> = roots
            .certs
            .iter()
            .filter_map(|d| Cert::parse(d).ok())
            .collect();
        let self_signed_leaf = presented[0].self_signed();
        let mut path = vec![Origin::Presented(0)];
        let mut root = None;
        while path.len() <= 16 {
            let current = match path[path.len() - 1] {
                Origin::Presented(i) => &presented[i],
                Origin::Fetched(i) => &fetched[i],
                Origin::Root => break,
            };
            // The server sent a root of the set itself: the path ends there.
            if path.len() > 1 {
                if let Some(r) = root_certs.iter().find(|r| r.der == current.der) {
                    root = Some(r.clone());
                    break;
                }
            }
            if current.self_signed() {
                break;
            }
            if let Some(r) = root_certs.iter().find(|r| current.issued_by(r)) {
                root = Some(r.clone());
                path.push(Origin::Root);
                break;
            }
            let next = (0..presented.len())
                .find(|&i| {
                    !path.contains(&Origin::Presented(i)) && current.issued_by(&presented[i])
                })
                .map(Origin::Presented)
                .or_else(|| {
                    (0..fetched.len())
                        .find(|&i| {
                            !path.contains(&Origin::Fetched(i)) && current.issued_by(&fetched[i])
                        })
                        .map(Origin::Fetched)
                });
            match next {
                Some(o) => path.push(o),
                None => break,
            }
        }
        let unused = (0..presented.len())
            .filter(|i| !path.contains(&Origin::Presented(*i)))
            .collect();
        Ok(Chain {
            presented,
            fetched,
            path,
            anchored: root.is_some(),
            root,
            self_signed_leaf,
            unused,
        })
    }

    /// The certificate at a path position's origin.
    pub fn cert(&self, origin: Origin) -> &Cert {
        match origin {
            Origin::Presented(i) => &self.presented[i],
            Origin::Fetched(i) => &self.fetched[i],
            Origin::Root => self.root.as_ref().unwrap_or(&self.presented[0]),
        }
    }

    /// The leaf (what the server presented first).
    pub fn leaf(&self) -> &Cert {
        &self.presented[0]
    }

    /// The path is broken above this certificate: its issuer was neither sent
    /// nor found (the issuer's name and any download URLs).
    pub fn missing_issuer(&self) -> Option<&Cert> {
        let top = self.cert(*self.path.last()?);
        (!self.anchored && !top.self_signed()).then_some(top)
    }

    /// Intermediates on the path the server did not send (downloaded instead).
    pub fn server_omits_intermediate(&self) -> bool {
        self.path.iter().any(|o| matches!(o, Origin::Fetched(_))) || self.missing_issuer().is_some()
    }

    /// The three anchor choices of the guide, each with whether the device
    /// accepts it against what this server sends, and why. Pinning a leaf
    /// follows mbedTLS as measured (docs/device-behaviour.md): only a
    /// self-signed leaf is accepted as its own anchor.
    pub fn choices(&self) -> Vec<Choice> {
        let mut out = Vec::new();
        let omits = self.server_omits_intermediate();
        if self.self_signed_leaf {
            out.push(Choice {
                trust: Trust::Leaf,
                origin: self.path[0],
                works: self.device_reaches(self.leaf()),
                reason:
                    "the server's certificate is self-signed: it is its own anchor (the guide's \
                         self-signed flow); it changes whenever the server's certificate is renewed"
                        .into(),
            });
            return out;
        }
        let top = self.path[self.path.len() - 1];
        // A self-signed top the server sent is a root too, just not one of the set.
        let top_is_root = self.anchored || (self.path.len() > 1 && self.cert(top).self_signed());
        if top_is_root {
            let outside = if self.anchored {
                ""
            } else {
                " (it is not in the root set: compare its fingerprint with the one the CA publishes)"
            };
            out.push(Choice {
                trust: Trust::Root,
                origin: top,
                works: self.device_reaches(self.cert(top)),
                reason: if omits {
                    "the server does not send its intermediate, so the device cannot build \
                     leaf -> intermediate -> root: with the root as anchor it fails"
                        .into()
                } else {
                    format!(
                        "recommended: roots live for decades, so ca.der rarely changes; it works \
                         because the server sends its intermediate{outside}"
                    )
                },
            });
        }
        let below_top = if top_is_root {
            self.path.len().saturating_sub(2)
        } else {
            self.path.len() - 1
        };
        if below_top >= 1 {
            let origin = self.path[below_top];
            out.push(Choice {
                trust: Trust::Intermediate,
                origin,
                works: self.device_reaches(self.cert(origin)),
                reason: if omits {
                    "the server does not send its intermediate, so the device needs it as its anchor; \
                     intermediates are rotated far more often than roots: refresh ca.der when the CA rotates it"
                        .into()
                } else {
                    "works, and keeps working if the server stops sending its intermediate, but \
                     intermediates are rotated far more often than roots: refresh ca.der when the CA rotates it"
                        .into()
                },
            });
        }
        out.push(Choice {
            trust: Trust::Leaf,
            origin: Origin::Presented(0),
            works: self.device_reaches(self.leaf()),
            reason: "the device's mbedTLS accepts a pinned leaf only when it is self-signed; this leaf \
                     is issued by a CA, so verification fails (and a leaf changes on every renewal, \
                     roughly every 90 days)"
                .into(),
        });
        out
    }

    /// The choice made when the user names none: the root when the device can
    /// use it, else the intermediate, else the self-signed leaf.
    pub fn recommended(&self) -> Option<&'static str> {
        let choices = self.choices();
        choices.iter().find(|c| c.works).map(|c| c.trust.name())
    }

    /// Size of the TLS Certificate handshake message carrying the presented
    /// chain: 4 bytes of header, 3 of list length, 3 per certificate.
    pub fn certificate_message_len(&self) -> usize {
        crate::rules::sizes::certificate_message_len(self.presented.iter().map(|c| c.der.len()))
    }

    /// Whether the device builds a path from what the server presents to
    /// `anchor` (the device's path rules: names, CA bit, keyCertSign,
    /// pathLen, signatures, a pinned leaf only when self-issued). Dates,
    /// hashes and keys are left to the verdict ([`crate::verify`]).
    pub fn device_reaches(&self, anchor: &Cert) -> bool {
        use crate::device_error::flags;
        let outcome = crate::rules::path::verify_chain(
            crate::profile::DEFAULT,
            anchor,
            &self.presented,
            None,
            OffsetDateTime::now_utc(),
        );
        !outcome.fatal && outcome.flags() & flags::NOT_TRUSTED == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{self, Authority, CertSpec, Role};
    use crate::keys::{KeyType, PrivateKey};

    struct Pki {
        root: Vec<u8>,
        inter: Vec<u8>,
        leaf: Vec<u8>,
    }

    fn pki() -> Pki {
        let root_key = PrivateKey::generate(KeyType::P256).unwrap();
        let root =
            issue::self_signed_root(&CertSpec::new("T Root", Role::Ca, 3650), &root_key).unwrap();
        let int_key = PrivateKey::generate(KeyType::P256).unwrap();
        let ca = Authority::load(&root.der, root_key).unwrap();
        let inter = ca
            .sign(&CertSpec::new("T Int", Role::Ca, 365), &int_key)
            .unwrap();
        let ica = Authority::load(&inter.der, int_key).unwrap();
        let leaf_key = PrivateKey::generate(KeyType::P256).unwrap();
        let leaf = ica
            .sign(&CertSpec::new("localhost", Role::Server, 90), &leaf_key)
            .unwrap();
        Pki {
            root: root.der,
            inter: inter.der,
            leaf: leaf.der,
        }
    }

    fn set(der: &[u8]) -> RootSet {
        RootSet {
            source: "test".into(),
            certs: vec![der.to_vec()],
        }
    }

    #[test]
    fn unordered_chain_with_root_builds_to_the_set_and_recommends_the_root() {
        let p = pki();
        let chain = Chain::build(
            &[p.leaf.clone(), p.root.clone(), p.inter.clone()],
            &[],
            &set(&p.root),
        )
        .unwrap();
        assert!(chain.anchored);
        assert_eq!(chain.path.len(), 3);
        assert_eq!(chain.path[1], Origin::Presented(2));
        assert_eq!(chain.root.as_ref().unwrap().der, p.root);
        assert_eq!(chain.recommended(), Some("root"));
        assert_eq!(
            chain.unused,
            vec![1],
            "the root the server sent is not needed"
        );
    }

    #[test]
    fn leaf_only_needs_the_intermediate_and_pinning_a_ca_leaf_fails() {
        let p = pki();
        let chain = Chain::build(std::slice::from_ref(&p.leaf), &[], &set(&p.root)).unwrap();
        assert!(!chain.anchored);
        assert!(chain.missing_issuer().is_some());
        assert_eq!(chain.recommended(), None);
        let fetched = Chain::build(
            std::slice::from_ref(&p.leaf),
            std::slice::from_ref(&p.inter),
            &set(&p.root),
        )
        .unwrap();
        assert!(fetched.anchored && fetched.server_omits_intermediate());
        assert_eq!(fetched.recommended(), Some("intermediate"));
        let leaf = fetched
            .choices()
            .into_iter()
            .find(|c| c.trust == Trust::Leaf)
            .unwrap();
        assert!(!leaf.works);
    }

    #[test]
    fn chain_outside_the_set_is_not_anchored() {
        let p = pki();
        let other = pki();
        let chain = Chain::build(&[p.leaf, p.inter], &[], &set(&other.root)).unwrap();
        assert!(!chain.anchored);
        assert_eq!(chain.path.len(), 2);
    }
}

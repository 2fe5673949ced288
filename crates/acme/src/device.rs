//! What the device can do with a public CA's certificate, which anchor it
//! needs (`ca.der`, chosen as `devtls anchor` chooses it) and whether it
//! would load the files (devtls-pki's lint against the device profile).
//! Every device fact here is read from devtls-pki's profile data.

use std::net::IpAddr;

use devtls_pki::chain::{Chain, Trust};
use devtls_pki::lint::LintRole;
use devtls_pki::lint::{self, Finding};
use devtls_pki::profile::Profile;
use devtls_pki::roots::RootSet;
use devtls_pki::sniff;
use serde::Serialize;

use crate::Error;

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth knowing before ordering.
    Note,
    /// Ordering would give a certificate this device cannot use: refused.
    Refuse,
}

/// One thing said before ordering.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// How much it matters.
    pub level: Level,
    /// What to know, and what to do.
    pub text: String,
}

/// What the device can and cannot do with the certificate about to be
/// ordered. `offered` are the CA's certificate profiles (empty: none).
pub fn before_ordering(
    profile: &Profile,
    ips: &[IpAddr],
    ca_profile: Option<&str>,
    offered: &[String],
) -> Vec<Note> {
    let mut notes = Vec::new();
    if profile.presented_chain_len == 1 {
        notes.push(Note {
            level: Level::Note,
            text: format!(
                "as a TLS server the {} device presents only its own certificate (cert.der), not the CA's intermediate: \
                 clients that do not already hold the intermediate fail to verify it; give them the intermediate \
                 (`devtls split live/NAME/fullchain.pem`) or put a gateway that sends fullchain.pem in front of the device",
                profile.name
            ),
        });
    }
    notes.push(Note {
        level: Level::Note,
        text: "a public CA's certificate serves the device's server role only: public CAs no longer include the clientAuth \
               usage, so it cannot be the device's mTLS client certificate; for that, run your own CA: `devtls fleet init` \
               then `devtls fleet issue`"
            .into(),
    });
    if !ips.is_empty() {
        if !profile.ip_san {
            notes.push(Note {
                level: Level::Refuse,
                text: format!(
                    "the {} device does not match IP-address SANs, so a certificate for {} would fail its host name check: \
                     order for a DNS name instead",
                    profile.name,
                    ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let shortlived = ca_profile == Some("shortlived");
        if !shortlived && offered.iter().any(|p| p == "shortlived") {
            notes.push(Note {
                level: Level::Refuse,
                text: "this CA issues IP-address certificates only with --profile shortlived (about 6 days): add it, and renew \
                       from a timer (`devtls acme renew --print-timer`)"
                    .into(),
            });
        } else if !shortlived {
            notes.push(Note {
                level: Level::Note,
                text: "public CAs issue IP-address certificates only as short-lived ones (Let's Encrypt: --profile shortlived, \
                       about 6 days): renew from a timer (`devtls acme renew --print-timer`)"
                    .into(),
            });
        }
    }
    notes
}

/// Among the chains the CA offers (leaf first each), the first that ends
/// at one of `anchors`. The error lists where each chain ends.
pub fn choose_chain(chains: &[Vec<Vec<u8>>], anchors: &RootSet) -> Result<usize, Error> {
    let mut tops = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        let built = Chain::build(chain, &[], anchors)?;
        if built.anchored {
            return Ok(i);
        }
        let top = built.cert(built.path[built.path.len() - 1]);
        tops.push(format!("\"{}\"", top.issuer()));
    }
    Err(Error::Input(format!(
        "none of the CA's {} chain(s) ends at the anchor in {} (they end at {}); give the root your devices carry, or leave --anchor out",
        chains.len(),
        anchors.source,
        tops.join(", ")
    )))
}

/// The device's anchor for a chain, chosen as `devtls anchor` does.
#[derive(Debug, Clone, Serialize)]
pub struct Anchor {
    /// Root, intermediate or (self-signed) leaf.
    pub trust: Trust,
    /// Its DER bytes.
    #[serde(skip)]
    pub der: Vec<u8>,
    /// Its subject.
    pub subject: String,
    /// Why it was chosen (devtls-pki's words).
    pub reason: String,
    /// The chain ends at a root of the set (the bundled Mozilla roots, or `--anchor`).
    pub anchored: bool,
}

/// Chooses `ca.der` for `chain` against `roots` (the bundled set or `--anchor`).
pub fn anchor(chain: &[Vec<u8>], roots: &RootSet) -> Result<Anchor, Error> {
    let built = Chain::build(chain, &[], roots)?;
    let choice = built
        .choices()
        .into_iter()
        .find(|c| c.works)
        .ok_or_else(|| {
            Error::Protocol("no certificate of the CA's chain works as the device's anchor".into())
        })?;
    let cert = built.cert(choice.origin);
    // devtls-pki reads a chain whose root it does not know as one whose
    // server left out a certificate; here the CA's root is simply in no set.
    let reason = if built.anchored || built.self_signed_leaf {
        choice.reason
    } else {
        format!(
            "the chain ends at \"{}\", whose issuer is in no root set devtls knows (a private or test CA): \
             the intermediate is the anchor; give --anchor ROOT to make the CA's root the device's anchor",
            cert.short_name()
        )
    };
    Ok(Anchor {
        trust: choice.trust,
        der: cert.der.clone(),
        subject: cert.subject().to_string(),
        reason,
        anchored: built.anchored,
    })
}

/// Lints the device's files: its certificate and key together, as a
/// server's, against `host` (the name the device's peers check), and the
/// anchor on its own, as a CA's.
pub fn lint_device(
    cert: &[u8],
    key: &[u8],
    ca: &[u8],
    profile: &Profile,
    host: Option<&str>,
) -> Result<Vec<Finding>, Error> {
    let mut findings = lint_files(
        &[("cert.der", cert), ("privkey.der", key)],
        profile,
        host,
        Some(LintRole::Server),
    )?;
    findings.extend(lint_files(
        &[("ca.der", ca)],
        profile,
        None,
        Some(LintRole::Anchor),
    )?);
    Ok(findings)
}

/// Lints files (name, bytes) together against the profile.
pub fn lint_files(
    files: &[(&str, &[u8])],
    profile: &Profile,
    host: Option<&str>,
    role: Option<LintRole>,
) -> Result<Vec<Finding>, Error> {
    let sniffed: Vec<(&str, sniff::Sniffed)> = files
        .iter()
        .map(|(n, b)| sniff::sniff(b).map(|s| (*n, s)))
        .collect::<Result<_, _>>()?;
    let inputs: Vec<lint::Input<'_>> = sniffed
        .iter()
        .map(|(file, s)| lint::Input { file, sniffed: s })
        .collect();
    Ok(lint::lint(
        &inputs,
        &lint::Options {
            profile,
            host,
            at: time::OffsetDateTime::now_utc(),
            role,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_certificates_need_shortlived_and_a_device_that_matches_ip_sans() {
        let openmv = devtls_pki::profile::by_name("openmv").unwrap();
        let ip: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap()];
        let offered = vec!["classic".to_string(), "shortlived".to_string()];
        let refused = |n: &[Note]| n.iter().filter(|n| n.level == Level::Refuse).count();
        assert_eq!(
            refused(&before_ordering(openmv, &ip, None, &offered)),
            1 + usize::from(!openmv.ip_san)
        );
        assert_eq!(
            refused(&before_ordering(openmv, &ip, Some("shortlived"), &offered)),
            usize::from(!openmv.ip_san)
        );
        let names_only = before_ordering(openmv, &[], None, &offered);
        assert_eq!(refused(&names_only), 0);
        assert!(names_only
            .iter()
            .any(|n| n.text.contains("clientAuth") && n.text.contains("devtls fleet")));
        assert_eq!(
            names_only
                .iter()
                .any(|n| n.text.contains("only its own certificate")),
            openmv.presented_chain_len == 1
        );
    }
}

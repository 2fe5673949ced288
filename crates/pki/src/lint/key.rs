//! Rules on keys: what the device can load, and each private key against
//! the certificate given with it.

use super::*;

pub(super) const NEW_KEY_FIX: &str =
    "make a new P-256 key (devtls new server|client, or devtls csr for a public CA)";

pub(super) fn key_problem_finding(
    problem: &KeyProblem,
    k: &KeyInfo,
    what: &str,
    file: &str,
    p: &Profile,
    severity: Severity,
    out: &mut Vec<Finding>,
) {
    let (id, message) = match problem {
        KeyProblem::RsaTooSmall { min, .. } => (
            "key-rsa-small",
            format!(
                "the {what} is {}; the {} profile needs RSA of at least {min} bits \
                 (the device says '{}')",
                k.description,
                p.name,
                flags::text(flags::BAD_KEY)
            ),
        ),
        KeyProblem::Curve { curve, secp256k1 } => (
            if *secp256k1 {
                "key-secp256k1"
            } else {
                "key-curve"
            },
            format!(
                "the {what} is on {curve}; the {} profile accepts {} only (the device says '{}')",
                p.name,
                p.key_curves
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                flags::text(flags::BAD_KEY)
            ),
        ),
        KeyProblem::Algorithm { .. } => (
            match k.algorithm {
                KeyAlgorithm::Ed25519 => "key-ed25519",
                KeyAlgorithm::RsaPss => "key-rsa-pss",
                _ => "key-algorithm",
            },
            format!(
                "the {what} is {}: not accepted by the {} profile (the device says '{}' or \
                 fails the chain with {})",
                k.description,
                p.name,
                verify_text::INVALID_KEY,
                device_error::UNKNOWN_PK_ALG.hex()
            ),
        ),
    };
    out.push(finding(severity, id, file, message, NEW_KEY_FIX.into()));
}

/// A key the device's parser refuses, as a finding.
pub(super) fn key_parse_finding(
    r: &ParseRefusal,
    k: &KeyInfo,
    what: &str,
    file: &str,
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    let id = match r {
        ParseRefusal::Curve { .. } => "key-curve",
        _ => match k.algorithm {
            KeyAlgorithm::Ed25519 => "key-ed25519",
            KeyAlgorithm::RsaPss => "key-rsa-pss",
            _ => "key-algorithm",
        },
    };
    out.push(finding(
        Severity::Error,
        id,
        file,
        format!(
            "the {what} is {}: {} (the device says '{}' or fails the chain with {})",
            k.description,
            r.why(),
            verify_text::INVALID_KEY,
            r.error().hex()
        ),
        format!("{} (the {} profile)", NEW_KEY_FIX, p.name),
    ));
}

/// A key in a CSR or a bare public key: what the device will meet in the
/// certificate made from it.
pub(super) fn key_rule(k: &KeyInfo, what: &str, file: &str, p: &Profile, out: &mut Vec<Finding>) {
    if let Some(r) = certs::key_parse_refusal(p, k) {
        key_parse_finding(&r, k, what, file, p, out);
    } else if let Some(problem) = certs::key_problem(p, k) {
        key_problem_finding(&problem, k, what, file, p, Severity::Error, out);
    }
}

/// A private key file: an error when the device cannot load it; a warning
/// when it loads but a peer with the device's profile refuses its certificate.
pub(super) fn key_file_rule(k: &KeyInfo, file: &str, p: &Profile, out: &mut Vec<Finding>) {
    if let Some(r) = certs::key_parse_refusal(p, k) {
        key_parse_finding(&r, k, "private key", file, p, out);
    } else if let Some(problem) = certs::key_problem(p, k) {
        key_problem_finding(&problem, k, "private key", file, p, Severity::Warning, out);
    }
}

/// Each private key must belong to the certificate given with it: the one
/// of the same stem (`server.key.der` with `server.der`, `ca.key` with
/// `ca.der`), else an end-entity certificate holding its public key.
pub(super) fn match_keys(files: &[Inspection<'_>], out: &mut Vec<Finding>) {
    let certs: Vec<(&str, &CertInfo)> = files
        .iter()
        .filter_map(|f| f.certificates().next().map(|c| (f.input.file, c)))
        .collect();
    if certs.is_empty() {
        return;
    }
    let candidates: Vec<Candidate<'_>> = certs
        .iter()
        .map(|(f, c)| Candidate {
            stem: stem(f),
            public_key_sha256: &c.public_key_sha256,
            is_ca: c.is_ca(),
        })
        .collect();
    for file in files {
        for item in file.items {
            let Details::PrivateKey(key) = &item.details else {
                continue;
            };
            let Some(spki) = &key.public_key_sha256 else {
                continue;
            };
            let mismatched: Vec<&str> =
                match keys::pair(stem(file.input.file), Some(spki), &candidates) {
                    Pairing::Matches(_) => continue,
                    Pairing::Mismatch(i) => vec![certs[i].0],
                    // A CA given beside a device key is there as the anchor,
                    // not as its certificate: only leaves are compared.
                    Pairing::Unpaired => candidates
                        .iter()
                        .zip(&certs)
                        .filter(|(c, _)| !c.is_ca)
                        .map(|(_, (f, _))| *f)
                        .collect(),
                };
            if mismatched.is_empty() {
                continue;
            }
            // The rule and its words are written once (rules::files).
            let rule = crate::rules::files::key_mismatch(file.input.file, &mismatched.join(", "));
            out.push(finding(
                Severity::Error,
                "key-cert-mismatch",
                file.input.file,
                format!(
                    "{} (a handshake fails with {})",
                    rule.why,
                    device_error::KEY_MISMATCH.printed()
                ),
                rule.fix,
            ));
        }
    }
}

//! Which role a file's certificates are checked in: `--role`, else a guess
//! from the file name, the certificates and what signs what.

use super::*;

pub(super) fn roles_of(files: &[Inspection<'_>], options: &Options<'_>) -> Vec<AssumedRole> {
    files
        .iter()
        .filter(|f| f.certificates().next().is_some())
        .map(|f| {
            let (role, because) = role_of(f, files, options);
            AssumedRole {
                file: f.input.file.to_string(),
                role,
                guessed: options.role.is_none(),
                because,
            }
        })
        .collect()
}

/// `--role`, else a guess: a file named `ca`, or a self-signed CA
/// certificate, is an anchor; `server`/`client` in the name, or an EKU
/// allowing one role, say which end entity; several certificates are a chain.
pub(super) fn role_of(
    file: &Inspection<'_>,
    all: &[Inspection<'_>],
    o: &Options<'_>,
) -> (LintRole, &'static str) {
    if let Some(role) = o.role {
        return (role, "given with --role");
    }
    let certs: Vec<&CertInfo> = file.certificates().collect();
    let stem = stem(file.input.file).to_ascii_lowercase();
    if stem == "ca" || stem.ends_with("-ca") || stem.ends_with("_ca") {
        return (LintRole::Anchor, "the file is named as the device's CA");
    }
    let named = match (stem.contains("server"), stem.contains("client")) {
        (true, false) => Some(LintRole::Server),
        (false, true) => Some(LintRole::Client),
        _ => None,
    };
    if certs.len() > 1 {
        return (LintRole::Chain, "the file holds several certificates");
    }
    let Some(c) = certs.first() else {
        return (LintRole::Server, "no certificate");
    };
    if o.host.is_some() && named.is_none() && !signs_another(c, all) {
        return (
            LintRole::Server,
            "--host names the server it is checked for",
        );
    }
    if c.self_issued && c.is_ca() && (named.is_none() || signs_another(c, all)) {
        return (LintRole::Anchor, "a self-signed CA certificate");
    }
    if let Some(role) = named {
        return (role, "from the file name");
    }
    if c.is_ca() {
        return if signs_another(c, all) || !c.self_issued {
            (LintRole::Chain, "a CA certificate below a root")
        } else {
            (LintRole::Anchor, "a self-signed CA certificate")
        };
    }
    match role_from_eku(c) {
        Some(LintRole::Client) => (LintRole::Client, "its extendedKeyUsage is clientAuth only"),
        _ => (LintRole::Server, "an end-entity certificate"),
    }
}

/// The role an EKU allows, when it allows exactly one TLS role.
pub(super) fn role_from_eku(c: &CertInfo) -> Option<LintRole> {
    let eku = c.extended_key_usage.as_ref()?;
    match (eku.server_auth, eku.client_auth) {
        (true, false) => Some(LintRole::Server),
        (false, true) => Some(LintRole::Client),
        _ => None,
    }
}

/// Whether a peer may present `c` as its own certificate: not a CA, or a
/// self-signed one that signs nothing else given (`openssl req -x509` marks
/// its self-signed server certificates CA:TRUE).
pub(super) fn is_end_entity(c: &CertInfo, all: &[Inspection<'_>]) -> bool {
    !c.is_ca() || c.self_issued && !signs_another(c, all)
}

/// Whether another certificate given names `c` as its issuer.
pub(super) fn signs_another(c: &CertInfo, all: &[Inspection<'_>]) -> bool {
    all.iter()
        .flat_map(|f| f.certificates())
        .any(|other| !other.self_issued && other.issuer == c.subject)
}

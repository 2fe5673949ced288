//! One order, from identifiers to certificate chains: new order (naming
//! the certificate it replaces when the CA offers ARI), every
//! authorization answered by the solver, finalize with a CSR for a key made
//! here (it never leaves the machine), the chain and the CA's alternates.

use std::time::Duration;

use devtls_pki::issue::{self, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use instant_acme::{
    AuthorizationStatus, CertificateIdentifier, ChallengeStatus, Identifier, NewOrder, OrderStatus,
    RetryPolicy,
};

use crate::account::Session;
use crate::challenge::Solver;
use crate::Error;

/// How many times a request refused with `badNonce` is sent again.
pub const NONCE_ATTEMPTS: usize = 5;

/// How long the CA may take to validate and to issue.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether an instant-acme error is the CA refusing a nonce.
pub fn is_bad_nonce(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(p) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce"))
}

/// What to order.
#[derive(Debug, Clone)]
pub struct Request {
    /// DNS names and IP addresses, the first one the certificate's name.
    pub identifiers: Vec<Identifier>,
    /// The key type to make.
    pub key: KeyType,
    /// The CA's certificate profile (`classic`, `tlsserver`, `shortlived`).
    pub profile: Option<String>,
    /// The certificate this order replaces (sent only when the CA offers ARI).
    pub replaces: Option<CertificateIdentifier<'static>>,
}

/// What the CA issued.
pub struct Issued {
    /// Every chain the CA offers, DER, leaf first; the default first.
    pub chains: Vec<Vec<Vec<u8>>>,
    /// The new private key.
    pub key: PrivateKey,
    /// The certificate URL.
    pub cert_url: String,
    /// The order named the certificate it replaces (ARI).
    pub replaced: bool,
    /// `badNonce` refusals the CA sent and devtls retried.
    pub bad_nonces: usize,
    /// Problems removing challenge files or records (shown, not fatal).
    pub cleanup: Vec<String>,
}

/// Places one order and waits for the certificate.
pub async fn issue(session: &Session, mut solver: Solver, req: &Request) -> Result<Issued, Error> {
    let result = run(session, &mut solver, req).await;
    let cleanup = solver.finish().await;
    let (chains, key, cert_url, replaced) = result?;
    Ok(Issued {
        chains,
        key,
        cert_url,
        replaced,
        bad_nonces: session.transport.bad_nonces(),
        cleanup,
    })
}

type Outcome = (Vec<Vec<Vec<u8>>>, PrivateKey, String, bool);

async fn run(session: &Session, solver: &mut Solver, req: &Request) -> Result<Outcome, Error> {
    let dir = &session.directory;
    if let Some(p) = &req.profile {
        if !dir.profiles.iter().any(|o| o == p) {
            return Err(Error::Unsupported(if dir.profiles.is_empty() {
                format!(
                    "--profile {p}: this CA offers no certificate profiles; leave --profile out"
                )
            } else {
                format!("--profile {p}: this CA offers {}", dir.profiles.join(", "))
            }));
        }
    }
    let replaces = req.replaces.clone().filter(|_| dir.renewal_info.is_some());
    let mut new_order = NewOrder::new(&req.identifiers);
    if let Some(p) = &req.profile {
        new_order = new_order.profile(p);
    }
    if let Some(r) = &replaces {
        new_order = new_order.replaces(r.clone());
    }
    let mut order = nonce_retry!(session.account.new_order(&new_order))?;
    // instant-acme checked that the CA reflected `replaces`; later states may not repeat it.
    let replaced = order.state().replaces.is_some();

    let kind = solver.method().challenge_type();
    let name = solver.method().name();
    // Fetching an authorization is a request too: a refused nonce there walks
    // the authorizations again (fetched ones are kept, handled ones skipped).
    let mut handled = std::collections::HashSet::new();
    let mut attempt = 1;
    'walk: loop {
        let mut authorizations = order.authorizations();
        while let Some(next) = authorizations.next().await {
            let mut authz = match next {
                Ok(authz) => authz,
                Err(e) if is_bad_nonce(&e) && attempt < NONCE_ATTEMPTS => {
                    attempt += 1;
                    continue 'walk;
                }
                Err(e) => return Err(Error::from_acme(e)),
            };
            if !handled.insert(authz.url().to_string()) {
                continue;
            }
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(Error::Ca {
                        kind: "authorization".into(),
                        detail: format!(
                            "the authorization for {} is {other:?}",
                            authz.identifier()
                        ),
                        hint: "run the command again for a fresh order".into(),
                    })
                }
            }
            let identifier = authz.identifier().identifier.clone();
            let offered: Vec<String> = authz
                .challenges
                .iter()
                .map(|c| format!("{:?}", c.r#type))
                .collect();
            let Some(mut challenge) = authz.challenge(kind.clone()) else {
                return Err(Error::Unsupported(format!(
                    "the CA does not offer {name} for {} (it offers {}); choose another --challenge",
                    display(&identifier),
                    offered.join(", ")
                )));
            };
            let key_auth = challenge.key_authorization();
            let token = challenge.token.clone();
            solver.present(&identifier, &token, &key_auth).await?;
            nonce_retry!(challenge.set_ready())?;
        }
        break;
    }
    let policy = RetryPolicy::new().timeout(POLL_TIMEOUT);
    let status = nonce_retry!(order.poll_ready(&policy));
    match status {
        Ok(OrderStatus::Ready) => {}
        Ok(_) | Err(Error::Ca { .. }) => {
            return Err(challenge_failure(&mut order, solver, name).await)
        }
        Err(e) => return Err(e),
    }

    let key = PrivateKey::generate(req.key)?;
    let mut spec = CertSpec::new(display(&req.identifiers[0]), Role::Server, 90);
    for id in &req.identifiers {
        match id {
            Identifier::Dns(d) => spec.dns.push(d.clone()),
            Identifier::Ip(ip) => spec.ips.push(*ip),
            _ => {}
        }
    }
    let csr = issue::csr(&spec, &key)?;
    nonce_retry!(order.finalize_csr(&csr.der))?;
    let pem = nonce_retry!(order.poll_certificate(&policy))?;
    let cert_url = order.state().certificate.clone().unwrap_or_default();
    let mut chains = vec![pem_chain(pem.as_bytes())?];
    let alternates = session.transport.alternates(&cert_url);
    if !alternates.is_empty() {
        let signer = session.signer()?;
        for url in alternates {
            let body = session.transport.post_as_get(dir, &signer, &url).await?;
            chains.push(pem_chain(&body)?);
        }
    }
    Ok((chains, key, cert_url, replaced))
}

/// The CA's reason a challenge failed, from the authorizations.
async fn challenge_failure(order: &mut instant_acme::Order, solver: &Solver, name: &str) -> Error {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        for c in &state.challenges {
            if c.status == ChallengeStatus::Invalid {
                let detail = c
                    .error
                    .as_ref()
                    .map(crate::error::problem_detail)
                    .unwrap_or_else(|| "no detail given".into());
                return Error::ChallengeFailed {
                    identifier: state.identifier().to_string(),
                    challenge: name.into(),
                    detail,
                    hint: solver.method().hint(),
                };
            }
        }
    }
    Error::ChallengeFailed {
        identifier: "the order".into(),
        challenge: name.into(),
        detail: "the order became invalid without a challenge error".into(),
        hint: solver.method().hint(),
    }
}

/// An identifier as people write it.
pub fn display(id: &Identifier) -> String {
    match id {
        Identifier::Dns(d) => d.clone(),
        Identifier::Ip(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

/// The certificates of a PEM chain, in order.
pub fn pem_chain(pem: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let sniffed = devtls_pki::sniff::sniff(pem)
        .map_err(|e| Error::Protocol(format!("the CA's certificate chain: {e}")))?;
    let certs: Vec<Vec<u8>> = sniffed.certificates().map(|i| i.der.clone()).collect();
    if certs.is_empty() {
        return Err(Error::Protocol(
            "the CA's certificate chain holds no certificate".into(),
        ));
    }
    Ok(certs)
}

/// The ARI identifier of a certificate (RFC 9773 §4.1): base64url of its
/// authorityKeyIdentifier's keyIdentifier, a dot, base64url of its serial's
/// DER content octets.
pub fn cert_id(der: &[u8]) -> Option<CertificateIdentifier<'static>> {
    use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
    use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    Some(CertificateIdentifier {
        authority_key_identifier: BASE64_URL_SAFE_NO_PAD.encode(aki).into(),
        serial: BASE64_URL_SAFE_NO_PAD.encode(cert.raw_serial()).into(),
    })
}

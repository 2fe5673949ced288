//! Server certificate verification as the device does it, keeping what the
//! peer presented for diagnosis.
//!
//! rustls-webpki checks the chain, validity and SAN names with real
//! signature checks; the device's verdict (`devtls_pki::verify`, pki's
//! device rules) then decides. Where webpki refuses what the device accepts
//! (a certificate without SAN matched by its CN, a self-signed CA-flagged
//! leaf pinned as the anchor), the device's rules decide alone; where webpki
//! accepts what the device refuses (a pinned CA-issued leaf, SHA-1 in the
//! chain, a key or curve outside the profile), the device's refusal wins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use devtls_pki::chain::Cert;
use devtls_pki::profile::Profile;
use devtls_pki::verify::{self, name_matches, PeerRole};

use crate::record::PresentedChain;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::DistinguishedName;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use time::OffsetDateTime;

/// Verifies a server like the device and records the presented chain.
#[derive(Debug)]
pub struct DeviceVerifier {
    /// The chain check; `None` accepts any chain (`Verification::None`).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The device whose host-name rules apply where webpki's differ.
    profile: &'static Profile,
    /// The anchors, to recognise a leaf that is itself an anchor.
    anchors: Vec<CertificateDer<'static>>,
    presented: PresentedChain,
}

impl DeviceVerifier {
    /// A verifier for `profile` with the `anchors` webpki was built from;
    /// `webpki` is `None` to skip verification.
    pub fn new(
        webpki: Option<Arc<WebPkiServerVerifier>>,
        anchors: Vec<CertificateDer<'static>>,
        profile: &'static Profile,
    ) -> Self {
        DeviceVerifier {
            webpki,
            algorithms: crate::restrict::provider(profile).signature_verification_algorithms,
            profile,
            anchors,
            presented: PresentedChain::default(),
        }
    }

    /// A verifier that only records the chain and accepts it, with every
    /// signature scheme of `algorithms` (`fetch`: reading what a server
    /// presents to an unrestricted client).
    pub fn recorder(algorithms: WebPkiSupportedAlgorithms) -> Self {
        DeviceVerifier {
            webpki: None,
            algorithms,
            // Unused without a chain check: names are never matched.
            profile: &devtls_pki::profile::MODERN,
            anchors: Vec::new(),
            presented: PresentedChain::default(),
        }
    }

    /// mbedTLS trusts a leaf that is byte-for-byte one of its anchors even
    /// when it carries the CA flag (what `openssl req -x509` makes by
    /// default); webpki refuses a CA as end entity. For such a leaf the
    /// signature check is moot, so validity and name are checked here.
    fn locally_trusted(
        &self,
        end_entity: &CertificateDer<'_>,
    ) -> Option<Result<ServerCertVerified, Error>> {
        is_anchor(&self.anchors, end_entity).then(|| Ok(ServerCertVerified::assertion()))
    }

    /// The device's verdict on the chain with each anchor that could be its
    /// one anchor: accepted when one of them works, else refused with the
    /// closest rustls error.
    fn device_verdict(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let presented: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        let host = server_name.to_str();
        let result = device_verdict(
            self.profile,
            &self.anchors,
            &presented,
            Some(&host),
            PeerRole::Server,
            now,
        );
        result.map(|()| ServerCertVerified::assertion())
    }

    /// The device's host-name check (pki's one rule: SAN names, IP SANs as
    /// the profile says, the CN only without any SAN and only if the profile
    /// falls back to it).
    fn name_matches(&self, leaf: &CertificateDer<'_>, server_name: &ServerName<'_>) -> bool {
        Cert::parse(leaf).is_ok_and(|cert| name_matches(self.profile, &cert, &server_name.to_str()))
    }

    /// The chain the server presented (leaf first), even if verification failed;
    /// empty if the handshake never got that far.
    pub fn presented(&self) -> Vec<CertificateDer<'static>> {
        self.presented.get()
    }
}

impl ServerCertVerifier for DeviceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.presented.record(end_entity, intermediates);
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        let webpki_says = match webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.name_matches(end_entity, server_name) => Ok(ServerCertVerified::assertion()),
            Err(Error::InvalidCertificate(CertificateError::Other(other)))
                if is_ca_used_as_end_entity(&other) =>
            {
                self.locally_trusted(end_entity)
                    .unwrap_or(Err(Error::InvalidCertificate(CertificateError::Other(
                        other,
                    ))))
            }
            other => other,
        };
        // webpki's refusal stands (its signature checks are the real ones);
        // its acceptance must also be the device's.
        webpki_says?;
        self.device_verdict(end_entity, intermediates, server_name, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Presents the client identity, if any, and records whether the server
/// asked for one (to tell "mTLS demanded, no certificate" from other refusals).
#[derive(Debug)]
pub struct ClientCertRecorder {
    identity: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl ClientCertRecorder {
    /// A resolver presenting `identity` (or nothing).
    pub fn new(identity: Option<Arc<CertifiedKey>>) -> Self {
        ClientCertRecorder {
            identity,
            asked: AtomicBool::new(false),
        }
    }

    /// Whether the server sent a CertificateRequest.
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}

impl ResolvesClientCert for ClientCertRecorder {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.identity.is_some()
    }
}

tokio::task_local! {
    /// The chain the client of the current connection presented. The server
    /// verifier is shared by all connections, but rustls calls it inside the
    /// task handling one connection, so a task-local slot keeps chains apart.
    pub static PRESENTED_BY_CLIENT: std::cell::RefCell<Vec<CertificateDer<'static>>>;
}

/// Verifies client certificates with webpki, plus the device's acceptance
/// of a client certificate that is itself one of the anchors even when it
/// carries the CA flag (the device guide's `openssl req -x509` certificates).
#[derive(Debug)]
pub struct DeviceClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    anchors: Vec<CertificateDer<'static>>,
}

impl DeviceClientVerifier {
    /// Wraps `webpki`, built from `anchors`.
    pub fn new(webpki: Arc<dyn ClientCertVerifier>, anchors: Vec<CertificateDer<'static>>) -> Self {
        DeviceClientVerifier { webpki, anchors }
    }
}

impl ClientCertVerifier for DeviceClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Kept for the report of this connection, whatever the verdict.
        let _ = PRESENTED_BY_CLIENT.try_with(|slot| {
            *slot.borrow_mut() = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        });
        let webpki_says = match self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(Error::InvalidCertificate(CertificateError::Other(other)))
                if is_ca_used_as_end_entity(&other) && is_anchor(&self.anchors, end_entity) =>
            {
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        };
        webpki_says?;
        // The device's rules on what the client presented (no host name: a
        // server does not check one), with the loosest profile's parser so
        // only the path, dates and usage rules decide here.
        let presented: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        device_verdict(
            &devtls_pki::profile::MODERN,
            &self.anchors,
            &presented,
            None,
            PeerRole::Client,
            now,
        )
        .map(|()| ClientCertVerified::assertion())
    }

    // The chain was accepted before this is called: a signature that does
    // not verify here is the client's CertificateVerify, made with a key
    // that is not its certificate's (not a chain signature), so it is named
    // as such for the diagnosis.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki
            .verify_tls12_signature(message, cert, dss)
            .map_err(handshake_signature_error)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki
            .verify_tls13_signature(message, cert, dss)
            .map_err(handshake_signature_error)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The client's CertificateVerify does not verify with its certificate's
/// key: the client holds another key than the one its certificate names.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client's CertificateVerify does not verify with its certificate's key")]
pub struct CertificateVerifyFailed;

fn handshake_signature_error(e: Error) -> Error {
    match e {
        Error::InvalidCertificate(CertificateError::BadSignature) => Error::InvalidCertificate(
            CertificateError::Other(rustls::OtherError(Arc::new(CertificateVerifyFailed))),
        ),
        other => other,
    }
}

/// Whether a certificate error is [`CertificateVerifyFailed`].
pub fn is_certificate_verify_failure(e: &CertificateError) -> bool {
    matches!(e, CertificateError::Other(o) if o.0.downcast_ref::<CertificateVerifyFailed>().is_some())
}

/// The certificate is byte-for-byte one of the anchors.
fn is_anchor(anchors: &[CertificateDer<'static>], cert: &CertificateDer<'_>) -> bool {
    anchors.iter().any(|a| a.as_ref() == cert.as_ref())
}

fn is_ca_used_as_end_entity(other: &rustls::OtherError) -> bool {
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

/// The device's verdict (pki's rules) on `presented` with each anchor the
/// chain could reach; `Ok` when one of them works.
fn device_verdict(
    profile: &Profile,
    anchors: &[CertificateDer<'static>],
    presented: &[Vec<u8>],
    hostname: Option<&str>,
    peer: PeerRole,
    now: UnixTime,
) -> Result<(), Error> {
    let time = OffsetDateTime::from_unix_timestamp(now.as_secs() as i64)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let chain: Vec<Cert> = presented
        .iter()
        .filter_map(|d| Cert::parse(d).ok())
        .collect();
    let mut refusal = None;
    for anchor in anchors {
        let Ok(a) = Cert::parse(anchor) else { continue };
        // Only an anchor some presented certificate names as issuer (or that
        // is the leaf itself) can be the device's one anchor for this chain.
        if !chain.iter().any(|c| c.named_by(&a) || c.der == a.der) {
            continue;
        }
        let input = verify::Input {
            profile,
            presented,
            anchor: anchor.as_ref(),
            hostname,
            time,
            now: time,
            peer,
            target: None,
        };
        let verdict = match hostname {
            Some(_) => verify::verify(&input),
            None => verify::verify_without_name(&input),
        };
        if verdict.works {
            return Ok(());
        }
        refusal.get_or_insert(verdict);
    }
    let kind = refusal
        .as_ref()
        .and_then(|v| v.failures.first())
        .map(|f| f.kind);
    Err(match kind {
        Some(verify::Kind::Expired) => CertificateError::Expired.into(),
        Some(verify::Kind::NotYetValid) => CertificateError::NotValidYet.into(),
        Some(verify::Kind::NameMismatch) => CertificateError::NotValidForName.into(),
        Some(verify::Kind::Usage) => CertificateError::InvalidPurpose.into(),
        Some(verify::Kind::BadHash | verify::Kind::BadKey | verify::Kind::Unparseable) => {
            CertificateError::ApplicationVerificationFailure.into()
        }
        _ => CertificateError::UnknownIssuer.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::issue::{self, Authority, CertSpec, Role};
    use devtls_pki::keys::{KeyType, PrivateKey};
    use devtls_pki::profile::OPENMV;

    fn verifier(anchor: &[u8]) -> DeviceVerifier {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(anchor.to_vec())).unwrap();
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::restrict::provider(&OPENMV),
        )
        .build()
        .unwrap();
        DeviceVerifier::new(
            Some(webpki),
            vec![CertificateDer::from(anchor.to_vec())],
            &OPENMV,
        )
    }

    fn check(v: &DeviceVerifier, chain: &[&[u8]]) -> Result<ServerCertVerified, Error> {
        let leaf = CertificateDer::from(chain[0].to_vec());
        let rest: Vec<CertificateDer<'_>> = chain[1..]
            .iter()
            .map(|c| CertificateDer::from(c.to_vec()))
            .collect();
        v.verify_server_cert(
            &leaf,
            &rest,
            &ServerName::try_from("localhost").unwrap(),
            &[],
            UnixTime::now(),
        )
    }

    /// A CA-flagged leaf (what `openssl req -x509` makes) pinned as the
    /// anchor: the device trusts it only when it is self-issued, so the
    /// device verifier must too (it used to accept the CA-issued one).
    #[test]
    fn a_pinned_leaf_is_trusted_only_when_self_signed() {
        let root_key = PrivateKey::generate(KeyType::P256).unwrap();
        let root =
            issue::self_signed_root(&CertSpec::new("Pin Root", Role::Ca, 365), &root_key).unwrap();
        let leaf_key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new("localhost", Role::Ca, 30);
        spec.dns = vec!["localhost".into()];
        let issued = Authority::load(&root.der, root_key)
            .unwrap()
            .sign(&spec, &leaf_key)
            .unwrap();
        let refused = check(&verifier(&issued.der), &[&issued.der, &root.der]);
        assert!(refused.is_err(), "a pinned CA-issued leaf must be refused");
        let own = issue::self_signed_ca(&spec, &leaf_key).unwrap();
        let accepted = check(&verifier(&own.der), &[&own.der]);
        assert!(accepted.is_ok(), "{accepted:?}");
    }
}

//! Endpoint configuration shared by TLS (and later DTLS): trust anchors,
//! verification, the server name, the endpoint's own identity, the device
//! profile it is restricted to, mTLS and revocation.
//!
//! Everything here is bytes in, so the CLI reads files and the tests build
//! certificates in memory; the file name is the caller's to add to errors.

use std::sync::Arc;
use std::time::Duration;

use devtls_pki::profile::{self, Profile};
use devtls_pki::sniff::{self, KeyFormat, Kind};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs1KeyDer,
    PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

/// A configuration input that cannot be used, with what is wrong and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file does not hold what it should (the caller adds the file name).
    #[error("{0}")]
    Input(String),
    /// The certificate of an identity cannot be used (the key may be fine).
    #[error("{0}")]
    Certificate(String),
    /// The inputs are usable one by one but not together (or not with the profile).
    #[error("{0}")]
    Mismatch(String),
}

/// Whether the peer's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Chain to an anchor, validity, name (with the device's CN fallback): the default.
    #[default]
    Required,
    /// Accept any certificate. Only when the user asks (`--insecure`): anyone
    /// in the middle could be the peer.
    None,
}

/// Certificates from PEM or DER bytes (one or several, in file order).
pub fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let sniffed = sniff::sniff(bytes).map_err(|e| ConfigError::Input(e.to_string()))?;
    let certs: Vec<_> = sniffed
        .certificates()
        .map(|i| CertificateDer::from(i.der.clone()))
        .collect();
    if certs.is_empty() {
        let found = sniffed
            .items
            .first()
            .map_or("nothing usable", |i| i.kind.describe());
        return Err(ConfigError::Input(format!(
            "holds a {found}, not a certificate; give the certificate file (.der or .crt)"
        )));
    }
    Ok(certs)
}

/// Certificate revocation lists from PEM or DER bytes.
pub fn crls(bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, ConfigError> {
    let sniffed = sniff::sniff(bytes).map_err(|e| ConfigError::Input(e.to_string()))?;
    let crls: Vec<_> = sniffed
        .of_kind(Kind::Crl)
        .map(|i| CertificateRevocationListDer::from(i.der.clone()))
        .collect();
    if crls.is_empty() {
        return Err(ConfigError::Input(
            "holds no certificate revocation list; give the CRL file (e.g. from `devtls fleet crl`)"
                .into(),
        ));
    }
    Ok(crls)
}

/// An unencrypted private key from PEM or DER bytes (PKCS#8, SEC1 or PKCS#1).
pub fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let sniffed = sniff::sniff(bytes).map_err(|e| ConfigError::Input(e.to_string()))?;
    let Some(item) = sniffed.items.iter().find(|i| i.kind.is_secret()) else {
        let found = sniffed
            .items
            .first()
            .map_or("nothing usable", |i| i.kind.describe());
        return Err(ConfigError::Input(format!(
            "holds a {found}, not a private key; give the key file (.key.der or .key)"
        )));
    };
    match item.kind {
        Kind::PrivateKey(KeyFormat::Pkcs8) => Ok(PrivatePkcs8KeyDer::from(item.der.clone()).into()),
        Kind::PrivateKey(KeyFormat::Sec1) => Ok(PrivateSec1KeyDer::from(item.der.clone()).into()),
        Kind::PrivateKey(KeyFormat::Pkcs1) => Ok(PrivatePkcs1KeyDer::from(item.der.clone()).into()),
        _ => Err(ConfigError::Input(
            "is an encrypted private key; decrypt it first (openssl pkey -in KEY -out plain.key)"
                .into(),
        )),
    }
}

/// An endpoint's own certificate chain and key, checked to belong together
/// and to suit the profile.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The rustls form: chain plus signing key.
    pub certified: Arc<CertifiedKey>,
}

impl Identity {
    /// Builds an identity from certificate and key bytes (PEM or DER each).
    ///
    /// Refuses a key the profile cannot use (e.g. Ed25519 for `openmv`)
    /// because every handshake would fail with nothing in common.
    pub fn from_bytes(cert: &[u8], key: &[u8], profile: &Profile) -> Result<Self, ConfigError> {
        let chain = certificates(cert)?;
        let key = private_key(key)?;
        let provider = crate::restrict::provider(profile);
        let signing = provider.key_provider.load_private_key(key).map_err(|e| {
            ConfigError::Input(format!(
                "is a private key rustls cannot use ({e}); use a P-256, P-384 or RSA key"
            ))
        })?;
        if let Some(leaf) = chain.first() {
            refuse_v1(leaf)?;
        }
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                ConfigError::Mismatch(
                    "the key does not belong to the certificate; give the key made with it \
                     (server.der goes with server.key.der)"
                        .into(),
                )
            }
            other => ConfigError::Certificate(format!(
                "is a certificate devtls cannot use with a key ({other})"
            )),
        })?;
        let scheme_ok = provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .any(|(scheme, _)| certified.key.choose_scheme(&[*scheme]).is_some());
        if !scheme_ok {
            return Err(ConfigError::Mismatch(format!(
                "the {} profile cannot sign with this key ({:?}): the device has no such \
                 algorithm; make a P-256 certificate (devtls new ... --key p256) or pass \
                 --profile modern",
                profile.name,
                certified.key.algorithm()
            )));
        }
        Ok(Identity {
            certified: Arc::new(certified),
        })
    }

    /// The certificate chain this identity presents.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }
}

/// rustls-webpki only handles X.509 v3 certificates; the device also takes
/// v1 (what `openssl x509 -req` makes without an extensions file). Say so
/// instead of failing later with a misleading error.
fn refuse_v1(leaf: &CertificateDer<'_>) -> Result<(), ConfigError> {
    use x509_parser::prelude::{FromDer, X509Certificate, X509Version};
    match X509Certificate::from_der(leaf) {
        Ok((_, cert)) if cert.version() != X509Version::V3 => Err(ConfigError::Certificate(
            "is an X.509 v1 certificate (no extensions): the device accepts it but devtls's \
             verifier (rustls-webpki) cannot use it; re-issue it with extensions \
             (openssl x509 -req ... -extfile ext.cnf, or devtls new)"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// Where a client's trust anchors come from.
#[derive(Debug, Clone)]
pub enum Anchors {
    /// The Mozilla root programme, bundled (webpki-root-certs): for public servers.
    Mozilla,
    /// The given certificates (the device's `load_verify_locations`).
    Given(Vec<CertificateDer<'static>>),
}

impl Anchors {
    /// The anchors as certificates.
    pub fn certificates(&self) -> Vec<CertificateDer<'static>> {
        match self {
            Anchors::Mozilla => webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec(),
            Anchors::Given(certs) => certs.clone(),
        }
    }

    /// A rustls root store holding the anchors; a certificate webpki cannot
    /// use as an anchor is an error naming it rather than silently dropped.
    pub fn root_store(&self) -> Result<rustls::RootCertStore, ConfigError> {
        let mut store = rustls::RootCertStore::empty();
        match self {
            Anchors::Mozilla => {
                store.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec());
            }
            Anchors::Given(certs) => {
                for (n, cert) in certs.iter().enumerate() {
                    store.add(cert.clone()).map_err(|e| {
                        ConfigError::Input(format!(
                            "certificate {} cannot be a trust anchor ({e})",
                            n + 1
                        ))
                    })?;
                }
            }
        }
        Ok(store)
    }
}

/// How a client endpoint connects, verifies and presents itself.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The name sent as SNI and checked against the certificate (DNS name or IP literal).
    pub server_name: String,
    /// Trust anchors for the server's chain.
    pub anchors: Anchors,
    /// Whether the server's certificate is checked.
    pub verification: Verification,
    /// A client certificate for mTLS.
    pub identity: Option<Identity>,
    /// The device profile the client behaves like.
    pub profile: &'static Profile,
    /// Limit for connecting, the handshake and waiting for the reply, each.
    pub timeout: Duration,
}

impl ClientSettings {
    /// Verifying settings for `server_name` against `anchors`, default profile, 10 s timeout.
    pub fn new(server_name: impl Into<String>, anchors: Anchors) -> Self {
        ClientSettings {
            server_name: server_name.into(),
            anchors,
            verification: Verification::Required,
            identity: None,
            profile: profile::DEFAULT,
            timeout: Duration::from_secs(10),
        }
    }
}

/// How a server endpoint presents itself and which clients it accepts.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The server's certificate and key.
    pub identity: Identity,
    /// Anchors for client certificates: when set, every client must present
    /// one that chains to them (mTLS).
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
    /// Revocation lists for client certificates (only with `client_ca`).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// The device profile the server behaves like.
    pub profile: &'static Profile,
    /// A client that has not finished its handshake in this time is dropped.
    pub handshake_timeout: Duration,
    /// What the server answers every client (the guide's `hello\n`).
    pub reply: Vec<u8>,
}

impl ServerSettings {
    /// Settings for `identity` without client authentication, default profile,
    /// 10 s handshake timeout, replying `hello\n`.
    pub fn new(identity: Identity) -> Self {
        ServerSettings {
            identity,
            client_ca: None,
            crls: Vec::new(),
            profile: profile::DEFAULT,
            handshake_timeout: Duration::from_secs(10),
            reply: b"hello\n".to_vec(),
        }
    }
}

//! The device's certificate, verified once. A route reaches one device,
//! which presents the same chain on every connection; verifying it is a
//! chain check by webpki (a signature verification) plus the device's
//! rules (pki parses every certificate again and checks signatures again),
//! and it was the largest per-connection cost of the device leg after the
//! key exchange (docs/gateway.md, "Performance").
//!
//! [`CachedVerifier`] remembers the last chain the inner verifier accepted,
//! byte for byte, with the server name it was accepted for. The same chain
//! for the same name is accepted again without re-verifying while the
//! current time is inside every certificate's validity (the only input of
//! the verdict that changes by itself) and for at most [`FRESH`]. Anything
//! else — another chain, a refusal, another name — goes to the inner
//! verifier, and refusals are never remembered. The handshake signature
//! (the proof that the peer holds the certificate's key) is verified on
//! every connection, as before. A reload of the device side's files builds
//! a new verifier, so the remembered verdict goes with the old files.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devtls_pki::chain::Cert;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::Error;

/// How long an accepted chain is accepted again without re-verifying.
pub const FRESH: Duration = Duration::from_secs(60);

/// A chain the inner verifier accepted.
#[derive(Debug)]
struct Accepted {
    chain: Vec<CertificateDer<'static>>,
    server_name: ServerName<'static>,
    ocsp: Vec<u8>,
    /// The latest notBefore and earliest notAfter in the chain (seconds
    /// since the Unix epoch).
    valid_from: u64,
    valid_until: u64,
    /// When it must be verified again regardless.
    expires: Instant,
}

impl Accepted {
    fn matches(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> bool {
        let secs = now.as_secs();
        Instant::now() < self.expires
            && self.valid_from <= secs
            && secs <= self.valid_until
            && self.chain.len() == intermediates.len() + 1
            && self.chain[0].as_ref() == end_entity.as_ref()
            && self.chain[1..]
                .iter()
                .zip(intermediates)
                .all(|(a, b)| a.as_ref() == b.as_ref())
            && &self.server_name == server_name
            && self.ocsp == ocsp
    }

    /// `None` when a certificate cannot be parsed (then nothing is
    /// remembered and every connection is verified in full).
    fn new(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
    ) -> Option<Self> {
        let chain: Vec<CertificateDer<'static>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        let (mut valid_from, mut valid_until) = (0u64, u64::MAX);
        for der in &chain {
            let cert = Cert::parse(der).ok()?;
            let from = u64::try_from(cert.not_before().unix_timestamp()).unwrap_or(0);
            let until = u64::try_from(cert.not_after().unix_timestamp()).ok()?;
            valid_from = valid_from.max(from);
            valid_until = valid_until.min(until);
        }
        Some(Accepted {
            chain,
            server_name: server_name.to_owned(),
            ocsp: ocsp.to_vec(),
            valid_from,
            valid_until,
            expires: Instant::now() + FRESH,
        })
    }
}

/// Decides as `inner` does, remembering its last acceptance.
#[derive(Debug)]
pub struct CachedVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    last: Mutex<Option<Accepted>>,
}

impl CachedVerifier {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> Self {
        CachedVerifier {
            inner,
            last: Mutex::new(None),
        }
    }
}

impl ServerCertVerifier for CachedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let hit = self.last.lock().is_ok_and(|last| {
            last.as_ref().is_some_and(|a| {
                a.matches(end_entity, intermediates, server_name, ocsp_response, now)
            })
        });
        if hit {
            return Ok(ServerCertVerified::assertion());
        }
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Some(accepted) = Accepted::new(end_entity, intermediates, server_name, ocsp_response)
        {
            if let Ok(mut last) = self.last.lock() {
                *last = Some(accepted);
            }
        }
        Ok(verdict)
    }

    devtls_net::delegate_signature_checks!(inner, raw_public_keys);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::HandshakeSignatureValid;
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The verifier being wrapped: accepts or refuses, counting the calls.
    #[derive(Debug)]
    struct Counting {
        calls: AtomicUsize,
        accept: bool,
    }

    impl ServerCertVerifier for Counting {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.accept {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer,
                ))
            }
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ECDSA_NISTP256_SHA256]
        }
    }

    fn cert(name: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn wrapped(accept: bool) -> (Arc<Counting>, CachedVerifier) {
        let inner = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            accept,
        });
        (inner.clone(), CachedVerifier::new(inner))
    }

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn the_same_chain_for_the_same_name_is_verified_once() {
        let (inner, v) = wrapped(true);
        let leaf = cert("openmv");
        let now = UnixTime::now();
        for _ in 0..3 {
            v.verify_server_cert(&leaf, &[], &name("openmv"), &[], now)
                .unwrap();
        }
        assert_eq!(inner.calls.load(Ordering::Relaxed), 1);
        // Another name, or other bytes: verified again.
        v.verify_server_cert(&leaf, &[], &name("other"), &[], now)
            .unwrap();
        assert_eq!(inner.calls.load(Ordering::Relaxed), 2);
        v.verify_server_cert(&cert("openmv"), &[], &name("openmv"), &[], now)
            .unwrap();
        assert_eq!(inner.calls.load(Ordering::Relaxed), 3);
        // An intermediate added to the remembered leaf is another chain.
        let leaf2 = cert("openmv");
        v.verify_server_cert(&leaf2, &[], &name("openmv"), &[], now)
            .unwrap();
        v.verify_server_cert(
            &leaf2,
            std::slice::from_ref(&leaf),
            &name("openmv"),
            &[],
            now,
        )
        .unwrap();
        assert_eq!(inner.calls.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_refusal_is_never_remembered() {
        let (inner, v) = wrapped(false);
        let leaf = cert("openmv");
        for _ in 0..2 {
            assert!(v
                .verify_server_cert(&leaf, &[], &name("openmv"), &[], UnixTime::now())
                .is_err());
        }
        assert_eq!(inner.calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn outside_the_validity_the_inner_verifier_decides_again() {
        let (inner, v) = wrapped(true);
        let leaf = cert("openmv");
        v.verify_server_cert(&leaf, &[], &name("openmv"), &[], UnixTime::now())
            .unwrap();
        // rcgen's default validity ends in 4096; a clock past it (and one
        // before 1975, its start) is not inside it.
        let late = UnixTime::since_unix_epoch(Duration::from_secs(420_000_000_000));
        let early = UnixTime::since_unix_epoch(Duration::from_secs(0));
        v.verify_server_cert(&leaf, &[], &name("openmv"), &[], late)
            .unwrap();
        v.verify_server_cert(&leaf, &[], &name("openmv"), &[], early)
            .unwrap();
        assert_eq!(inner.calls.load(Ordering::Relaxed), 3);
    }
}

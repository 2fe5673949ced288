//! Per-connection recorders around a shared verifier or resolver. A
//! rustls configuration built once (e.g. per gateway route) is used by many
//! connections at once, so what one connection's peer presented, or whether
//! it asked for a client certificate, must be kept apart: clone the
//! configuration per connection and put these wrappers in it. They delegate
//! every decision unchanged and only record; the diagnosis
//! ([`crate::diagnose`]) reads what they kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, Error, SignatureScheme};

/// The chain one connection's peer presented (leaf first), kept whatever
/// the verdict: the slot every recording verifier writes into.
#[derive(Debug, Default)]
pub struct PresentedChain(Mutex<Vec<CertificateDer<'static>>>);

impl PresentedChain {
    /// Keeps `end_entity` and `intermediates`, replacing what was kept.
    pub fn record(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        if let Ok(mut p) = self.0.lock() {
            *p = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
    }

    /// The chain kept; empty if the handshake never got that far.
    pub fn get(&self) -> Vec<CertificateDer<'static>> {
        self.0.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// A server-certificate verifier that keeps the chain this connection's
/// server presented (leaf first), whatever the verdict.
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    presented: PresentedChain,
}

impl RecordingVerifier {
    /// Records for one connection, deciding as `inner` does.
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> Self {
        RecordingVerifier {
            inner,
            presented: PresentedChain::default(),
        }
    }

    /// The chain presented; empty if the handshake never got that far.
    pub fn presented(&self) -> Vec<CertificateDer<'static>> {
        self.presented.get()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.presented.record(end_entity, intermediates);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

/// A client-certificate resolver that notes whether this connection's
/// server asked for a certificate (a CertificateRequest).
#[derive(Debug)]
pub struct AskRecorder {
    inner: Arc<dyn ResolvesClientCert>,
    asked: AtomicBool,
}

impl AskRecorder {
    /// Records for one connection, answering as `inner` does.
    pub fn new(inner: Arc<dyn ResolvesClientCert>) -> Self {
        AskRecorder {
            inner,
            asked: AtomicBool::new(false),
        }
    }

    /// Whether the server asked for a client certificate.
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}

impl ResolvesClientCert for AskRecorder {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

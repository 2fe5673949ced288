//! Per-connection recorders around a shared verifier or resolver. A
//! rustls configuration built once (e.g. per gateway route) is used by many
//! connections at once, so what one connection's peer presented, or whether
//! it asked for a client certificate, must be kept apart. The wrappers
//! write into a task-local slot ([`Seen`], set by [`recording`] around one
//! connection's handshake): rustls calls them from the task driving that
//! handshake. The configuration itself stays one shared value, which keeps
//! TLS session resumption working (rustls resumes a session only with the
//! very verifier and resolver that made it). They delegate every decision
//! unchanged and only record; the diagnosis ([`crate::diagnose`]) reads
//! what they kept.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{Error, SignatureScheme};

/// The chain a peer presented (leaf first), kept whatever the verdict: the
/// slot of a verifier used for one connection (net's own `DeviceVerifier`).
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

/// What one connection's server showed: the chain it presented (leaf
/// first; empty if the handshake never got that far, or when a session was
/// resumed) and whether it asked for a client certificate.
#[derive(Debug, Default)]
pub struct Seen {
    presented: RefCell<Vec<CertificateDer<'static>>>,
    asked: Cell<bool>,
}

impl Seen {
    /// The chain presented.
    pub fn presented(&self) -> Vec<CertificateDer<'static>> {
        self.presented.borrow().clone()
    }

    /// Whether the server asked for a client certificate.
    pub fn asked(&self) -> bool {
        self.asked.get()
    }
}

tokio::task_local! {
    static SEEN: Seen;
}

/// Runs `handshake` with a fresh [`Seen`] slot that [`RecordingVerifier`]
/// and [`AskRecorder`] fill, and returns it with the result.
pub async fn recording<F: Future>(handshake: F) -> (F::Output, Seen) {
    SEEN.scope(Seen::default(), async {
        let out = handshake.await;
        let seen = SEEN.with(|s| Seen {
            presented: RefCell::new(s.presented.take()),
            asked: Cell::new(s.asked.get()),
        });
        (out, seen)
    })
    .await
}

/// A server-certificate verifier that keeps the chain the current
/// connection's server presented (leaf first), whatever the verdict, in
/// the slot of [`recording`] (nothing is kept outside one).
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
}

impl RecordingVerifier {
    /// Records, deciding as `inner` does.
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> Self {
        RecordingVerifier { inner }
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
        let _ = SEEN.try_with(|s| {
            *s.presented.borrow_mut() = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        });
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    crate::delegate_signature_checks!(inner, raw_public_keys);
}

/// A client-certificate resolver that notes, in the slot of [`recording`],
/// whether the current connection's server asked for a certificate (a
/// CertificateRequest).
#[derive(Debug)]
pub struct AskRecorder {
    inner: Arc<dyn ResolvesClientCert>,
}

impl AskRecorder {
    /// Records, answering as `inner` does.
    pub fn new(inner: Arc<dyn ResolvesClientCert>) -> Self {
        AskRecorder { inner }
    }
}

impl ResolvesClientCert for AskRecorder {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let _ = SEEN.try_with(|s| s.asked.set(true));
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

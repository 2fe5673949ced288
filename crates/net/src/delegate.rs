//! The handshake-signature half of a rustls certificate verifier, passed
//! through to the verifier a wrapper holds.
//!
//! devtls wraps rustls verifiers to add a decision about the certificate
//! (the device's rules, a remembered verdict, a record of what was
//! presented) while the handshake's own signature checks stay the wrapped
//! verifier's. `ServerCertVerifier` and `ClientCertVerifier` name those
//! checks the same way, so one macro writes them for either trait.

/// Writes `verify_tls12_signature`, `verify_tls13_signature` and
/// `supported_verify_schemes` inside an `impl ServerCertVerifier` or
/// `impl ClientCertVerifier`, each calling the same method on
/// `self.$inner`. With `, raw_public_keys` it also passes
/// `requires_raw_public_keys` through (a server verifier only).
#[macro_export]
macro_rules! delegate_signature_checks {
    ($inner:ident) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &$crate::delegate::rustls::pki_types::CertificateDer<'_>,
            dss: &$crate::delegate::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<
            $crate::delegate::rustls::client::danger::HandshakeSignatureValid,
            $crate::delegate::rustls::Error,
        > {
            self.$inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &$crate::delegate::rustls::pki_types::CertificateDer<'_>,
            dss: &$crate::delegate::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<
            $crate::delegate::rustls::client::danger::HandshakeSignatureValid,
            $crate::delegate::rustls::Error,
        > {
            self.$inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(
            &self,
        ) -> ::std::vec::Vec<$crate::delegate::rustls::SignatureScheme> {
            self.$inner.supported_verify_schemes()
        }
    };
    ($inner:ident, raw_public_keys) => {
        $crate::delegate_signature_checks!($inner);

        fn requires_raw_public_keys(&self) -> bool {
            self.$inner.requires_raw_public_keys()
        }
    };
}

#[doc(hidden)]
pub use rustls;

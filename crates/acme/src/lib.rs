//! # devtls-acme
//!
//! Certificates from a public CA by ACME (RFC 8555), made for small TLS
//! devices. The protocol is instant-acme's; this crate adds what a device
//! needs around it:
//!
//! - [`server`]: which CA (`letsencrypt`, `letsencrypt-staging` or a URL),
//!   the HTTPS transport trusting `--server-ca` or the bundled roots, and the
//!   two requests instant-acme does not make (the directory read first, so an
//!   unreachable CA is one clear line; alternate chains by POST-as-GET).
//! - [`account`]: the account store, created once, 0600, reused.
//! - [`challenge`]: solvers for http-01 (own listener or webroot), dns-01
//!   (hook command or manual) and tls-alpn-01 (own listener).
//! - [`order`]: one order from identifiers to a certificate chain.
//! - [`lineage`]: certbot's `live/NAME/` layout plus the device's DER files,
//!   written beside and swapped in.
//! - [`device`]: what the device can and cannot do with a public certificate,
//!   the device's anchor (`ca.der`) and lint, all read from devtls-pki.
//! - [`window`]: renewal windows as pure functions (ARI, else two thirds).
//! - [`issue`], [`renew`], [`revoke`]: the three flows the CLI runs;
//!   [`lock`]: one `renew` at a time per folder (a second one waits).
//! - [`error`]: errors callers branch on, each one line with what to do.

/// Awaits an instant-acme call, again while the CA answers `badNonce` (up
/// to [`order::NONCE_ATTEMPTS`] times; instant-acme itself already retries
/// each request a few times), and maps the error.
macro_rules! nonce_retry {
    ($call:expr) => {{
        let mut attempt = 1;
        loop {
            match $call.await {
                Ok(v) => break Ok(v),
                Err(e)
                    if crate::order::is_bad_nonce(&e) && attempt < crate::order::NONCE_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => break Err(crate::Error::from_acme(e)),
            }
        }
    }};
}

pub mod account;
pub mod challenge;
pub mod device;
pub mod error;
pub mod issue;
pub mod lineage;
pub mod lock;
pub mod order;
pub mod renew;
pub mod revoke;
pub mod server;
pub mod window;

pub use error::Error;

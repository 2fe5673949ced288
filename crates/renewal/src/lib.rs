//! # devtls-renewal
//!
//! The renewal service of a devtls fleet (`devtls fleet serve`): a device
//! proves itself with the certificate it has (mutual TLS, the fleet CA as the
//! one anchor) and receives a new key and certificate, or has its CSR
//! signed, over EST-named endpoints (RFC 7030). The protocol, status codes
//! and crash safety are in docs/renewal.md.
//!
//! - [`decide`]: the socket-free decision from (presented certificate's
//!   inventory row, time, policy): refuse, confirm, current or renew.
//! - [`service`]: the answer to one request, using the fleet inventory
//!   ([`devtls_fleet::renewal`]) and the CA; no sockets.
//! - [`server`]: TLS 1.2 restricted to the device profile, mTLS, one
//!   request per connection, bounded in size and time.
//! - [`admit`]: the bounds on connections before any TLS work (slots,
//!   eviction, handshakes per address).
//! - [`http`]: HTTP/1.1 by hyper, one request per connection, with limits.
//! - [`encode`]: EST's certs-only CMS and multipart bodies, and the devtls format.
//! - [`csr`]: the checks on a device's CSR.
//! - [`identity`]: the service's own certificate, issued by the fleet CA.
//! - [`own_cert`]: that certificate issued again before it expires and
//!   presented from the next handshake on.

pub mod admit;
pub mod csr;
pub mod decide;
pub mod encode;
pub mod http;
pub mod identity;
pub mod own_cert;
pub mod server;
pub mod service;

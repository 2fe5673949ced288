//! # devtls-net
//!
//! TLS and DTLS endpoints that can be restricted to a device profile, so a
//! PC can stand in for the device, test a server before the device tries it,
//! and explain in plain words why a handshake fails.
//!
//! - [`restrict`]: a device profile turned into a rustls crypto provider.
//! - [`probe`]: a device-restricted handshake that records the chain and names failures.

pub mod probe;
pub mod restrict;

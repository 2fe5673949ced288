//! # devtls-net
//!
//! TLS (and later DTLS) endpoints that can be restricted to a device profile,
//! so a PC can stand in for the device, test a server before the device
//! tries it, and explain in plain words why a handshake fails.
//!
//! Layered like rustls:
//! - [`restrict`]: a device profile turned into a rustls crypto provider.
//! - [`config`]: anchors, verification, server name, identity, mTLS, CRLs
//!   (shared by every transport).
//! - [`verify`]: server verification as the device does it (CN fallback),
//!   recording the presented chain even when it fails.
//! - [`tls`]: the TCP client and server, async (tokio) with a blocking wrapper.
//! - [`diagnose`]: a failure in plain words, the fix, and the device's words.
//! - [`report`]: certificates and sessions in readable form.
//!
//! ## What cannot be emulated
//!
//! rustls implements ECDHE with AES-GCM and ChaCha20 only. Of the suites the
//! `openmv` device offers, the AES-CBC suites (`C024 C028 C00A C014 C023
//! C027 C009 C013 003D 0035 003C 002F`) and the RSA key exchange suites
//! (`009D 009C` and the CBC ones) have no rustls implementation, so a
//! device-restricted devtls endpoint negotiates only the device's ECDHE
//! AES-GCM suites (`C02C C030 C02B C02F`). The exact list for any profile
//! is [`restrict::unemulated_suites`]. A server that only speaks CBC or RSA
//! key exchange works with the device but fails against devtls; say so
//! rather than trust the verdict. Two more differences: rustls sends no SNI
//! for an IP literal (the device does), and it offers the extended master
//! secret extension (the device does not).

pub mod config;
pub mod diagnose;
pub mod report;
pub mod restrict;
pub mod tls;
pub mod verify;

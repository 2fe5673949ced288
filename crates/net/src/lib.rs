//! # devtls-net
//!
//! TLS and DTLS endpoints that can be restricted to a device profile,
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
//! - [`dtls`]: the UDP (DTLS 1.2) client and server on rtc-dtls, with
//!   address-bound HelloVerifyRequest cookies; each a socket-free state
//!   machine with a blocking driver and an async (tokio) one.
//! - [`diagnose`]: a failure in plain words, the fix, and the device's words
//!   (the one diagnosis path: connect, serve and doctor name failures here).
//! - [`report`]: certificates and sessions in readable form.
//! - [`hello`]: the device's own handshake without a TLS library: its
//!   ClientHello byte for byte, the server's first flight parsed, and a
//!   socket-free state machine deciding what the device does.
//! - [`examine`]: the device's verdict on a server (doctor), on [`hello`].
//! - [`fetch`]: a server's chain and issuer certificates (anchor).
//! - [`failures`]: the per-address budget of failed handshakes the
//!   network services (`gateway`, `fleet serve`) share.
//!
//! ## Adding a transport
//!
//! `tls` is one transport. Another (DTLS) takes the same
//! [`config::ClientSettings`]/[`config::ServerSettings`], reports with the
//! same [`report::SessionInfo`], [`report::ClientReport`] and
//! [`report::ConnectError`], and explains failures through
//! [`diagnose::diagnose`], so `devtls serve`/`connect` print and exit the
//! same way whatever the transport.
//!
//! ## What cannot be emulated
//!
//! rustls implements ECDHE with AES-GCM and ChaCha20 only: no AES-CBC and no
//! RSA key exchange. Of the 18 suites the `openmv` device offers, a
//! device-restricted devtls endpoint therefore negotiates only the four
//! ECDHE AES-GCM ones (`C02C C030 C02B C02F`); the eight ECDHE AES-CBC
//! suites and the six RSA key exchange suites (GCM and CBC) cannot be
//! emulated by these endpoints. (doctor is not limited by this: [`hello`]
//! offers and reads all 18 without a TLS library.) The list
//! for any profile is [`restrict::unemulated_suites`]; for `openmv`:
//!
//! ```
//! use devtls_pki::profile::OPENMV;
//! let codes: Vec<u16> = devtls_net::restrict::unemulated_suites(&OPENMV)
//!     .iter()
//!     .map(|s| s.code)
//!     .collect();
//! assert_eq!(
//!     codes,
//!     [
//!         0xC024, 0xC028, 0xC00A, 0xC014, 0xC023, 0xC027, 0xC009, 0xC013, // ECDHE AES-CBC
//!         0x009D, 0x003D, 0x0035, 0x009C, 0x003C, 0x002F, // RSA key exchange
//!     ]
//! );
//! ```
//!
//! Two more differences: rustls sends no SNI for an IP literal (the device
//! does), and it offers the extended master secret extension (the device
//! does not).
//!
//! Over DTLS the subset is different, because rtc-dtls implements other
//! suites: of `openmv`'s 18 it negotiates `C00A C014 C02B C02F` (ECDHE with
//! AES-256-CBC-SHA or AES-128-GCM), not the AES-256-GCM, the other CBC or
//! any RSA key exchange suite, and not the P-521 group
//! ([`dtls::crypto::unemulated_suites`], [`dtls::crypto::unemulated_groups`]):
//!
//! ```
//! use devtls_pki::profile::OPENMV;
//! let codes: Vec<u16> = devtls_net::dtls::crypto::suites(&OPENMV)
//!     .iter()
//!     .map(|s| *s as u16)
//!     .collect();
//! assert_eq!(codes, [0xC00A, 0xC014, 0xC02B, 0xC02F]);
//! ```
//!
//! The DTLS endpoints do send the IP literal as SNI, like the device, and
//! also offer the extended master secret.

pub mod config;
pub mod delegate;
pub mod diagnose;
pub mod doctor;
pub mod dtls;
pub mod examine;
pub mod failures;
pub mod fetch;
pub mod hello;
pub mod log_out;
pub mod record;
pub mod report;
pub mod restrict;
pub mod tls;
pub mod verify;

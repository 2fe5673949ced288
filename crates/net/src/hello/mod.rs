//! The device's own handshake, without a TLS library: its ClientHello
//! written byte for byte from the profile's data ([`client_hello`]), the
//! server's first flight parsed ([`server_flight`]), and a socket-free
//! state machine ([`device`]) that decides what the device does with the
//! server's answer, driven over TCP or UDP by [`drive`].
//!
//! rustls cannot offer what the device offers (RSA key exchange, AES-CBC
//! suites, P-521 handshakes), so a rustls handshake can only guess what the
//! device would do. This speaks as the device: random values and key
//! shares are real (aws-lc-rs), everything else is what mbedTLS 3.6 with
//! MicroPython's configuration sends (docs/device-behaviour.md).
//!
//! ```
//! use devtls_net::hello::client_hello::{ClientHelloFields, Offer};
//! use devtls_net::hello::wire::Transport;
//! let offer = Offer::device(&devtls_pki::profile::OPENMV, Transport::Tls).unwrap();
//! let body = offer.client_hello(Some("example.com"), &offer.random(), &[]);
//! let hello = ClientHelloFields::parse_body(Transport::Tls, &body).unwrap();
//! assert_eq!(hello.groups(), [23, 24, 25]); // P-256, P-384, P-521
//! assert_eq!(hello.extension_order(), [0, 10, 13, 11]);
//! ```

pub mod client_hello;
pub mod device;
pub mod drive;
pub mod drive_async;
pub mod finished;
pub mod keys;
pub mod server_flight;
pub mod wire;

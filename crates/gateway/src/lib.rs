//! # devtls-gateway
//!
//! The device guide's gateway, built in: public clients get the full chain
//! and any TLS they speak (1.2 or 1.3); the device is reached the way it
//! expects (TLS 1.2, its suites, its own certificate or fleet CA as the one
//! anchor, its name, the gateway's client certificate when it demands
//! mTLS). The other way round, devices trust one anchor you control and the
//! gateway verifies public servers with the Mozilla roots, so a public root
//! change does not strand devices. Bytes are relayed as they are: HTTPS,
//! MQTT over TLS and anything else on TCP.
//!
//! - [`admission`]: how many handshakes at once, in all and per address.
//! - [`config`]: routes from TOML or the one-route command line (pure).
//! - [`routing`]: which route a connection takes, by listener and SNI (pure).
//! - [`watch`]: anything built from files, rebuilt when they change (a bad
//!   new file refused, the old value kept).
//! - [`certs`]: certificates from files, reloaded when the files change.
//! - [`clientauth`]: devices proving themselves on an outbound route: client
//!   CA and CRL, a revocation explained with serial and reason.
//! - [`upstream`]: net's profile-restricted client toward the device (or the
//!   public server), with net's diagnosis when it fails.
//! - [`verdicts`]: the device's chain, once accepted, accepted again
//!   without re-verifying (same bytes, same name, still valid).
//! - [`readahead`]: one large socket read served as the small reads rustls makes.
//! - [`relay`]: bytes both ways with an idle timeout, counted.
//! - [`gateway`]: listeners, connections, limits, reloading.
//! - [`log`]: one line per connection, text or JSON.
//! - [`print_config`]: the same routes as nginx, HAProxy, Caddy or Mosquitto configuration.

pub mod admission;
pub mod certs;
pub mod clientauth;
pub mod config;
pub mod gateway;
pub mod log;
pub mod print_config;
pub mod readahead;
pub mod relay;
pub mod routing;
pub mod upstream;
pub mod verdicts;
pub mod watch;

pub use config::{Direction, GatewayConfig, Route, RouteSpec};
pub use gateway::{run_blocking, Gateway, GatewayError, Stats};
pub use log::Logger;

//! The net library's integration tests, one binary (docs/testing.md):
//! TLS endpoints and DTLS end to end on loopback.

// The workspace's one table of test peers and how to install them.
#[path = "../../../cli/tests/cli/support/require.rs"]
mod require;
// Ports for peers told their port before they bind it, shared with the CLI's tests.
#[path = "../../../cli/tests/cli/support/ports.rs"]
mod ports;

mod dtls;
mod endpoints;

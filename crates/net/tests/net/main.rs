//! The net library's integration tests, one binary (docs/testing.md):
//! TLS endpoints and DTLS end to end on loopback.

// The workspace's one table of test peers and how to install them.
#[path = "../../../cli/tests/cli/support/require.rs"]
mod require;

mod dtls;
mod endpoints;

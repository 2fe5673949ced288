//! The pki library's integration tests, one binary (docs/testing.md): the
//! parsers fuzzed, and the PKCS#11 signer against SoftHSM2.

// The workspace's one table of test peers and how to install them.
#[path = "../../../cli/tests/cli/support/require.rs"]
mod require;

mod fuzz;
mod pkcs11_signer;

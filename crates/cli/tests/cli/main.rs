//! The `devtls` integration tests: one test binary for the whole CLI crate.
//!
//! Each file beside this one is a module that tests one command or concern
//! against real peers (OpenSSL, GnuTLS, nginx, Pebble, PostgreSQL,
//! SoftHSM2, the mbedTLS 3.6 device peer, MicroPython); `support/` holds
//! what they share. They live in one binary because every integration-test
//! binary links the whole workspace: one per file cost minutes of linking
//! and gigabytes of `target/` for nothing (docs/testing.md).
//!
//! Run one module with a filter on its path, e.g.
//! `cargo test --workspace --test cli -- fleet_serve::`.

mod acme_support;
mod gateway_support;
mod support;

mod acme;
mod acme_hardening;
mod anchor;
mod completions_man;
mod csr;
mod device_hello;
mod device_peer;
mod device_x509;
mod doctor;
mod fidelity;
mod first_hour;
mod fleet;
mod fleet_hardening;
mod fleet_pkcs11;
mod fleet_postgres;
mod fleet_progress;
mod fleet_renew_device;
mod fleet_renew_retry;
mod fleet_serve;
mod fleet_storm;
mod gateway;
mod hostile_input;
mod install;
mod lint;
mod lint_anchors;
mod lint_device;
mod mbedtls_peer;
mod micropython_fleet;
mod micropython_romfs;
mod micropython_snippets;
mod mpy_findings;
mod net_device_words;
mod net_dtls;
mod net_failures;
mod net_hello;
mod net_interop;
mod net_load;
mod net_load_dtls;
mod net_slow;
mod net_tls;
mod new;
mod new_handshake;
mod peer_missing;
mod pkiread;
mod quickstart;
mod romfs;
mod rules_differential;
mod split_hardening;

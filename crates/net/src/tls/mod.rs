//! TLS 1.2 and 1.3 over TCP: a client ([`client`]) and a server ([`server`])
//! built on rustls and tokio, restricted to a device profile.

pub mod client;
mod ending;
pub mod server;

use rustls::{CommonState, ProtocolVersion};

/// The negotiated version in OpenSSL's spelling (`TLSv1.2`, `TLSv1.3`).
pub(crate) fn version_name(state: &CommonState) -> String {
    match state.protocol_version() {
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
        Some(other) => format!("{other:?}"),
        None => "none".into(),
    }
}

/// The negotiated cipher suite's IANA name.
pub(crate) fn suite_name(state: &CommonState) -> String {
    state
        .negotiated_cipher_suite()
        .map(|s| {
            s.suite()
                .as_str()
                .map_or_else(|| format!("{:?}", s.suite()), str::to_string)
        })
        .unwrap_or_else(|| "none".into())
}

//! libFuzzer target over every parser entry point behind inspect, convert,
//! split and lint: sniff -> inspect -> convert (both encodings, with and
//! without a password) -> split_chain. A panic is a bug; so is converted
//! output that does not read back as the same kind.
#![no_main]

use devtls_pki::{convert, inspect, sniff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let Ok(sniffed) = sniff::sniff(bytes) else {
        return;
    };
    let _ = inspect::inspect(&sniffed, at);
    for to in [sniff::Encoding::Der, sniff::Encoding::Pem] {
        for password in [None, Some(&b"secret"[..])] {
            if let Ok(out) = convert::convert(bytes, &sniffed, to, password) {
                let again = sniff::sniff(&out.bytes).expect("converted output reads back");
                assert_eq!(again.items[0].kind, out.kind);
            }
        }
    }
    let _ = convert::split_chain(&sniffed, at);
});

//! Property tests over the device CSV reader (`fleet issue --from`), beside
//! the libFuzzer target `read_csv` (docs/fuzzing.md): whatever the file
//! holds, no panic, and every row accepted has a valid device ID, DNS names
//! already in their checked form, and no ID twice.
//!
//! Cases per property: `DEVTLS_FUZZ_CASES` (default 64).

use std::collections::HashSet;
use std::path::Path;

use devtls_fleet::devices::Source;
use devtls_pki::names;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("DEVTLS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn check(bytes: Vec<u8>) {
    let source = Source::csv(Path::new("devices.csv"), std::io::Cursor::new(bytes));
    let mut ids = HashSet::new();
    for row in source {
        let Ok(req) = row else { continue };
        assert!(names::device_id(&req.id).is_ok(), "{:?}", req.id);
        assert!(ids.insert(req.id.clone()), "{} accepted twice", req.id);
        for dns in &req.dns {
            assert_eq!(names::dns_name(dns).as_deref(), Ok(dns.as_str()));
        }
    }
}

/// A cell made of what CSV, spreadsheets, shells and DNS treat specially.
fn cell() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("cam-1".to_string()),
            Just("=".to_string()),
            Just("@".to_string()),
            Just("+".to_string()),
            Just("-".to_string()),
            Just(";".to_string()),
            Just(".".to_string()),
            Just("*".to_string()),
            Just("\"".to_string()),
            Just("\t".to_string()),
            Just("\r".to_string()),
            Just("xn--".to_string()),
            Just("::1".to_string()),
            Just("10.0.0.1".to_string()),
            Just("é".to_string()),
            "[a-zA-Z0-9]{1,8}",
            "\\PC{0,4}",
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(bytes);
    }

    #[test]
    fn csv_shaped_text_never_panics_and_accepts_only_valid_rows(
        rows in prop::collection::vec(prop::collection::vec(cell(), 1..5), 0..20)
    ) {
        let text: String = rows.iter().map(|r| r.join(",") + "\n").collect();
        check(text.into_bytes());
    }
}

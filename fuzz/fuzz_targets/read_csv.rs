//! libFuzzer target over the fleet's device CSV reader (`fleet issue
//! --from`): no panic, and every row it accepts has a valid device ID, DNS
//! names already in their checked form and no ID twice.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use devtls_fleet::devices::Source;
use devtls_pki::names;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let source = Source::csv(Path::new("devices.csv"), std::io::Cursor::new(bytes.to_vec()));
    let mut ids = HashSet::new();
    for row in source.take(10_000) {
        let Ok(req) = row else { continue };
        names::device_id(&req.id).expect("an accepted ID is valid");
        assert!(ids.insert(req.id.clone()), "{} accepted twice", req.id);
        for dns in &req.dns {
            assert_eq!(names::dns_name(dns).as_deref(), Ok(dns.as_str()));
        }
    }
});

//! libFuzzer target over the ROMFS reader behind `devtls romfs ls`. A panic
//! is a bug; so is a listing whose paths are not ASCII or whose folders
//! come after their children.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(entries) = devtls_romfs::list(bytes) else {
        return;
    };
    for (i, entry) in entries.iter().enumerate() {
        assert!(entry.path.is_ascii());
        if let Some((parent, _)) = entry.path.rsplit_once('/') {
            assert!(entries[..i].iter().any(|e| e.path == parent && e.size.is_none()));
        }
    }
});

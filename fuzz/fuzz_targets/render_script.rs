//! libFuzzer target over the generated-script renderer (the MicroPython a
//! fleet device's boot.py and every printed snippet hold) and the one
//! escaping function it uses: whatever host or file name goes in, each
//! literal reads back as exactly that value and the script keeps its shape
//! (no value adds a line or ends its string early).
#![no_main]

use devtls_pki::names::{self, py_str, py_unquote};
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/cli/src/snippets.rs"]
#[allow(dead_code)]
mod snippets;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let mut parts = text.splitn(3, '\u{0}');
    let host = parts.next().unwrap_or_default();
    let cert = parts.next().unwrap_or("client.der");
    let anchor = parts.next().unwrap_or("ca.der");
    let lit = py_str(host);
    assert!(lit.is_ascii(), "{lit}");
    assert_eq!(py_unquote(&lit).as_deref(), Some(host));
    let files = snippets::DeviceFiles {
        cert: Some(cert),
        key: Some("client.key.der"),
        anchor: Some(anchor),
    };
    let plain = snippets::DeviceFiles {
        cert: Some("c"),
        key: Some("client.key.der"),
        anchor: Some("a"),
    };
    let script = snippets::client(&files, host, 8443);
    let shape = snippets::client(&plain, "h", 8443);
    assert_eq!(script.lines().count(), shape.lines().count());
    assert!(script.contains(&format!("server_hostname={lit})")));
    let server = snippets::server(&files, 8443);
    assert_eq!(
        server.lines().count(),
        snippets::server(&plain, 8443).lines().count()
    );
    // What the names module accepts is already in its final form.
    if let Ok(h) = names::host(host) {
        assert_eq!(names::host(&h.to_string()), Ok(h));
    }
});

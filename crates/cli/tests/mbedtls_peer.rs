//! The mbedTLS test peer is faithful to the `openmv` profile it stands in for:
//! what it offers on the wire is the profile's suite list, in order.

mod support;

use std::collections::HashMap;
use std::process::Command;

use devtls_pki::profile::OPENMV;
use support::peers::{mbedtls_client, openssl_server, WAIT};
use support::{ok_in, openssl_ok, words};

/// IANA name -> OpenSSL name, from `openssl ciphers -stdname`.
fn openssl_names() -> HashMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let out = openssl_ok(dir.path(), &["ciphers", "-stdname", "ALL:@SECLEVEL=0"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let iana = words.next()?;
            let _dash = words.next()?;
            Some((iana.to_string(), words.next()?.to_string()))
        })
        .collect()
}

#[test]
fn mbedtls_peer_offers_the_openmv_suites_in_the_device_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns openmv --ip 127.0.0.1"));
    let mut server = openssl_server(d, &["-cert", "server.crt", "-key", "server.key", "-rev"]);
    let run = mbedtls_client(d, server.port, &["--send", "olleh\n"]);
    assert!(run.single().ok, "{}", run.transcript);
    let line = server.wait_line(WAIT, |l| l.text.starts_with("Client cipher list: "));
    let offered: Vec<&str> = line
        .text
        .trim_start_matches("Client cipher list: ")
        .split(':')
        .filter(|s| *s != "TLS_EMPTY_RENEGOTIATION_INFO_SCSV")
        .collect();
    let names = openssl_names();
    let expected: Vec<&str> = OPENMV
        .cipher_suites
        .iter()
        .map(|s| {
            names
                .get(s.name)
                .unwrap_or_else(|| panic!("openssl does not know {}", s.name))
                .as_str()
        })
        .collect();
    assert_eq!(offered, expected);
}

#[test]
fn mbedtls_peer_lists_the_suites_it_offers() {
    let out = Command::new("python3")
        .arg(support::peer_script("mbedtls_peer.py"))
        .arg("suites")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::text(&out));
    let listed: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let profile: Vec<&str> = OPENMV.cipher_suites.iter().map(|s| s.name).collect();
    assert_eq!(listed, profile);
}

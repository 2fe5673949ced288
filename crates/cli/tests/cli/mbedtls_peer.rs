//! The device peers are faithful to the `openmv` profile they stand in for:
//! what they offer on the wire is the profile's suite list, in order. The
//! mbedTLS 3.6 device peer is the device's own build, so this also proves the
//! profile's list against the device.

use crate::support;

use std::collections::HashMap;

use devtls_pki::profile::OPENMV;
use support::peers::{openssl_server, peer_client, PeerProgram, WAIT};
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

const PEERS: [PeerProgram; 2] = [PeerProgram::Device36, PeerProgram::Python228];

#[test]
fn mbedtls_peers_offer_the_openmv_suites_in_the_device_order() {
    for program in PEERS {
        offers_the_openmv_suites(program);
    }
}

fn offers_the_openmv_suites(program: PeerProgram) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_in(d, &words("new server --dns openmv --ip 127.0.0.1"));
    let mut server = openssl_server(d, &["-cert", "server.crt", "-key", "server.key", "-rev"]);
    let run = peer_client(program, d, server.port, &["--send", "olleh\n"]);
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
    assert_eq!(offered, expected, "{}", program.name());
}

#[test]
fn mbedtls_peers_list_the_suites_they_offer() {
    for program in PEERS {
        let out = program.command().arg("suites").output().unwrap();
        assert!(out.status.success(), "{}", support::text(&out));
        let listed: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        let profile: Vec<&str> = OPENMV.cipher_suites.iter().map(|s| s.name).collect();
        assert_eq!(listed, profile, "{}", program.name());
    }
}

use super::der::{encode, oid_string, tlv};
use super::key::{rsa_modulus_bits, OID_EC_PUBLIC_KEY, OID_ED25519};
use super::*;
use crate::fingerprint;
use crate::issue::{self, CertSpec, Role};
use crate::keys::{KeyType, PrivateKey};
use crate::sniff::sniff;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[test]
fn devtls_server_certificate_reads_back_completely() {
    for key_type in [KeyType::P256, KeyType::P384, KeyType::Rsa2048] {
        let key = PrivateKey::generate(key_type).unwrap();
        let mut spec = CertSpec::new("openmv", Role::Server, 30);
        spec.dns = vec!["openmv".into()];
        spec.ips = vec!["192.168.1.50".parse().unwrap()];
        let cert = issue::self_signed(&spec, &key).unwrap();
        let info = certificate(&cert.der, now()).unwrap();
        assert_eq!(info.subject, "CN=openmv");
        assert_eq!(info.common_name(), Some("openmv"));
        assert_eq!(info.sans.dns, vec!["openmv"]);
        assert_eq!(info.sans.ip, vec!["192.168.1.50"]);
        assert_eq!(info.version, 3);
        assert!(info.self_signed && info.self_issued);
        assert_eq!(info.validity.status, ValidityStatus::Valid);
        assert!((29..=30).contains(&info.validity.days_left), "{info:?}");
        let eku = info.extended_key_usage.as_ref().unwrap();
        assert!(eku.server_auth && !eku.client_auth);
        assert!(info.key_usage.as_ref().unwrap().has("digitalSignature"));
        assert_eq!(info.sha256, fingerprint::sha256_colon(&cert.der));
        assert_eq!(info.der_size, cert.der.len());
        assert_eq!(info.serial.len() % 2, 0);
        let (algorithm, desc) = match key_type {
            KeyType::P256 => (KeyAlgorithm::Ec, "ECDSA P-256"),
            KeyType::P384 => (KeyAlgorithm::Ec, "ECDSA P-384"),
            _ => (KeyAlgorithm::Rsa, "RSA 2048"),
        };
        assert_eq!(info.public_key.algorithm, algorithm);
        assert_eq!(info.public_key.description, desc);
        let expected_hash = match key_type {
            KeyType::P384 => HashAlgorithm::Sha384,
            _ => HashAlgorithm::Sha256,
        };
        assert_eq!(info.signature.hash, Some(expected_hash));
        assert!(!info.signature.pss);
        // The key's derived public key matches the certificate's.
        let k = private_key(&key.pkcs8_der(), KeyFormat::Pkcs8).unwrap();
        assert_eq!(k.public_key_der.as_deref(), Some(&key.public_key_der()[..]));
        assert_eq!(
            k.public_key_sha256.as_deref(),
            Some(&info.public_key_sha256[..])
        );
        assert_eq!(k.key.unwrap(), info.public_key);
    }
}

#[test]
fn expiry_and_not_yet_valid_are_counted_in_days() {
    let key = PrivateKey::generate(KeyType::P256).unwrap();
    let spec = CertSpec::new("x", Role::Client, 10);
    let cert = issue::self_signed(&spec, &key).unwrap();
    let later = now() + time::Duration::days(15);
    let info = certificate(&cert.der, later).unwrap();
    assert_eq!(info.validity.status, ValidityStatus::Expired);
    assert_eq!(info.validity.days_since_expiry, Some(5));
    assert!(info.validity.days_left < 0);
    let earlier = now() - time::Duration::days(3);
    let info = certificate(&cert.der, earlier).unwrap();
    assert_eq!(info.validity.status, ValidityStatus::NotYetValid);
    assert_eq!(info.validity.days_until_valid, Some(2));
    assert!(info
        .extended_key_usage
        .as_ref()
        .is_some_and(|e| e.client_auth));
}

#[test]
fn ca_and_issued_certificates_relate() {
    let ca_key = PrivateKey::generate(KeyType::P256).unwrap();
    let ca = issue::self_signed_ca(&CertSpec::new("Test CA", Role::Ca, 30), &ca_key).unwrap();
    let authority = issue::Authority::load(&ca.der, ca_key).unwrap();
    let leaf_key = PrivateKey::generate(KeyType::P384).unwrap();
    let leaf = authority
        .sign(&CertSpec::new("leaf", Role::Server, 30), &leaf_key)
        .unwrap();
    let ca_info = certificate(&ca.der, now()).unwrap();
    assert!(ca_info.is_ca() && ca_info.self_signed);
    assert!(ca_info.key_usage.unwrap().has("keyCertSign"));
    let leaf_info = certificate(&leaf.der, now()).unwrap();
    assert!(!leaf_info.is_ca() && !leaf_info.self_signed && !leaf_info.self_issued);
    assert_eq!(leaf_info.issuer, "CN=Test CA");
    assert!(signs(&ca.der, &leaf.der));
    assert!(!signs(&leaf.der, &ca.der));
    assert!(!signs(&leaf.der, b"junk"));
}

#[test]
fn key_formats_derive_the_same_public_key() {
    // SEC1 and PKCS#1 built by hand from the PKCS#8 devtls writes.
    for key_type in [KeyType::P256, KeyType::Rsa2048] {
        let key = PrivateKey::generate(key_type).unwrap();
        let pkcs8 = key.pkcs8_der();
        let (seq, _) = tlv(&pkcs8).unwrap();
        let (_, rest) = tlv(seq.content).unwrap();
        let (_, rest) = tlv(rest).unwrap();
        let (inner, _) = tlv(rest).unwrap();
        let format = match key_type {
            KeyType::P256 => KeyFormat::Sec1,
            _ => KeyFormat::Pkcs1,
        };
        let info = private_key(inner.content, format).unwrap();
        if format == KeyFormat::Pkcs1 {
            assert_eq!(info.public_key_der.unwrap(), key.public_key_der());
            assert_eq!(info.key.unwrap().bits, Some(2048));
        } else {
            // rcgen's PKCS#8 embeds a SEC1 key without the curve: fall back to the library.
            assert!(info.key.is_some());
        }
    }
}

#[test]
fn inspect_covers_every_item_of_a_bundle_and_never_panics_on_damage() {
    let mut pem = String::new();
    for cn in ["a", "b"] {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        pem += &issue::self_signed(&CertSpec::new(cn, Role::Server, 5), &key)
            .unwrap()
            .pem();
    }
    let sniffed = sniff(pem.as_bytes()).unwrap();
    let items = inspect(&sniffed, now());
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].index, 2);
    match &items[1].details {
        Details::Certificate(c) => assert_eq!(c.subject, "CN=b"),
        other => panic!("{other:?}"),
    }
    let json = serde_json::to_value(&items).unwrap();
    assert_eq!(json[0]["details"]["subject"], "CN=a");
    assert!(json[0]["details"]["validity"]["not_after"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // A key whose structure is garbage inside a valid frame is Unreadable, not a panic.
    let item = Item {
        kind: Kind::PrivateKey(KeyFormat::Sec1),
        encoding: Encoding::Der,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        trailing_bytes: 0,
    };
    assert!(matches!(
        inspect_item(1, &item, now()).details,
        Details::Unreadable { .. }
    ));
}

/// Reads the one item of a fixture made by OpenSSL under tests/data.
fn fixture(pem: &str) -> Details {
    let sniffed = sniff(pem.as_bytes()).unwrap();
    inspect(&sniffed, now()).remove(0).details
}

fn cert_fixture(pem: &str) -> CertInfo {
    match fixture(pem) {
        Details::Certificate(c) => *c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_the_device_rejects_is_recorded_as_facts() {
    let ed = cert_fixture(include_str!("../../tests/data/ed25519.crt"));
    assert_eq!(ed.public_key.algorithm, KeyAlgorithm::Ed25519);
    assert_eq!(ed.signature.family, SignatureFamily::Ed25519);
    assert_eq!(ed.signature.hash, None);
    match fixture(include_str!("../../tests/data/ed25519.key")) {
        Details::PrivateKey(k) => {
            assert_eq!(k.key.unwrap().algorithm, KeyAlgorithm::Ed25519);
            assert_eq!(k.public_key_sha256.unwrap(), ed.public_key_sha256);
        }
        other => panic!("{other:?}"),
    }

    let k1 = cert_fixture(include_str!("../../tests/data/secp256k1.crt"));
    assert_eq!(k1.public_key.curve, Some(Curve::Secp256k1));
    match fixture(include_str!("../../tests/data/secp256k1.key")) {
        Details::PrivateKey(k) => {
            assert_eq!(k.format, Some(KeyFormat::Sec1));
            assert_eq!(k.public_key_sha256.unwrap(), k1.public_key_sha256);
        }
        other => panic!("{other:?}"),
    }

    let pss = cert_fixture(include_str!("../../tests/data/rsa-pss.crt"));
    assert_eq!(pss.public_key.algorithm, KeyAlgorithm::RsaPss);
    assert_eq!(pss.public_key.bits, Some(2048));
    assert!(pss.signature.pss);
    assert_eq!(pss.signature.hash, Some(HashAlgorithm::Sha256));

    let weak = cert_fixture(include_str!("../../tests/data/rsa1024-sha1.crt"));
    assert_eq!(weak.public_key.bits, Some(1024));
    assert_eq!(weak.signature.hash, Some(HashAlgorithm::Sha1));
    assert_eq!(weak.signature.name, "sha1WithRSAEncryption");

    let c = cert_fixture(include_str!("../../tests/data/constrained-p521.crt"));
    assert!(c.self_signed, "P-521 with SHA-512 verifies too");
    assert_eq!(c.public_key.curve, Some(Curve::P521));
    assert_eq!(c.signature.hash, Some(HashAlgorithm::Sha512));
    assert_eq!(c.name_constraints, Some(Present { critical: true }));
    let policies = c.policies.unwrap();
    assert!(policies.critical && !policies.only_any_policy);
    assert_eq!(policies.oids, vec!["2.23.140.1.2.1"]);
    let bc = c.basic_constraints.unwrap();
    assert!(bc.ca && bc.critical);
    assert_eq!(bc.path_len, Some(2));
    let eku = c.extended_key_usage.unwrap();
    assert!(eku.client_auth && !eku.server_auth);
    assert_eq!(eku.other, vec!["codeSigning"]);

    // Self-signed is recognised for weak or unusual algorithms too. (Not for
    // this RSA-PSS one: OpenSSL used the maximum salt length, which aws-lc-rs
    // does not verify; the device rejects RSA-PSS anyway.)
    assert!(!pss.self_signed && pss.self_issued);
    for cert in [&ed, &k1, &weak] {
        assert!(cert.self_signed, "{}", cert.subject);
    }

    let any = cert_fixture(include_str!("../../tests/data/anypolicy.crt"));
    let policies = any.policies.unwrap();
    assert!(policies.critical && policies.only_any_policy);
    assert_eq!(any.public_key.description, "ECDSA P-384");
}

#[test]
fn oid_and_der_helpers() {
    assert_eq!(
        oid_string(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]).unwrap(),
        OID_EC_PUBLIC_KEY
    );
    assert_eq!(oid_string(&[0x2b, 0x65, 0x70]).unwrap(), OID_ED25519);
    assert!(oid_string(&[0x86]).is_none());
    assert!(oid_string(&[]).is_none());
    let long = encode(0x04, &[7; 300]);
    let (t, rest) = tlv(&long).unwrap();
    assert_eq!((t.tag, t.content.len(), rest.len()), (0x04, 300, 0));
    assert_eq!(
        rsa_modulus_bits(&[0x30, 0x04, 0x02, 0x02, 0x00, 0x81]),
        Some(8)
    );
}

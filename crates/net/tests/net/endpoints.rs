//! The net library end to end on loopback: async server, blocking client,
//! mTLS with a CA and a CRL, the kept chain, and configuration refusals.

use std::time::Duration;

use devtls_net::config::{self, Anchors, ClientSettings, ConfigError, Identity, ServerSettings};
use devtls_net::diagnose::Reason;
use devtls_net::tls::client::{self, Error};
use devtls_net::tls::server::{ClientReport, Outcome, Server};
use devtls_pki::issue::{self, Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::profile;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

struct Made {
    cert: Vec<u8>,
    pem: String,
    key: PrivateKey,
}

fn self_signed(cn: &str, role: Role, key_type: KeyType) -> Made {
    let key = PrivateKey::generate(key_type).unwrap();
    let mut spec = CertSpec::new(cn, role, 30);
    spec.dns = vec!["localhost".into()];
    let cert = issue::self_signed(&spec, &key).unwrap();
    Made {
        pem: cert.pem(),
        cert: cert.der,
        key,
    }
}

fn identity(made: &Made, profile: &'static profile::Profile) -> Identity {
    Identity::from_bytes(&made.cert, &made.key.pkcs8_der(), profile).unwrap()
}

/// Starts a server for `count` clients on a background runtime; the reports
/// arrive on the returned channel.
fn start(
    settings: ServerSettings,
    count: usize,
) -> (
    String,
    std::sync::mpsc::Receiver<ClientReport>,
    tokio::runtime::Runtime,
) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(Server::bind("127.0.0.1:0".parse().unwrap(), settings))
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(server.serve(Some(count), move |r| {
        let _ = tx.send(r.clone());
    }));
    (addr, rx, runtime)
}

fn client_settings(anchor: &[u8]) -> ClientSettings {
    let mut s = ClientSettings::new(
        "localhost",
        Anchors::Given(config::certificates(anchor).unwrap()),
    );
    s.timeout = Duration::from_secs(10);
    s
}

#[test]
fn blocking_client_and_async_server_exchange_hello() {
    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let (addr, reports, _rt) = start(ServerSettings::new(identity(&server, &profile::OPENMV)), 1);
    // PEM anchors work as well as DER.
    let settings = client_settings(server.pem.as_bytes());
    let (info, reply) = client::exchange_blocking(&addr, &settings, b"hi\n").unwrap();
    assert_eq!(reply, b"hello\n");
    assert_eq!(info.version, "TLSv1.2");
    assert!(info.cipher_suite.contains("GCM"), "{}", info.cipher_suite);
    let report = reports.recv_timeout(Duration::from_secs(10)).unwrap();
    match report.outcome {
        Outcome::Served(s) => assert_eq!(s.received, "hi\n"),
        Outcome::Failed(d) => panic!("{d:?}"),
    }
}

#[test]
fn presented_chain_is_kept_when_verification_fails() {
    let server = self_signed("the-server", Role::Server, KeyType::P384);
    let other = self_signed("someone-else", Role::Server, KeyType::P256);
    let (addr, _reports, _rt) = start(ServerSettings::new(identity(&server, &profile::OPENMV)), 1);
    let Err(Error::Handshake(failure)) =
        client::exchange_blocking(&addr, &client_settings(&other.cert), b"x")
    else {
        panic!("an unknown server must not verify");
    };
    assert_eq!(failure.diagnosis.reason, Reason::UnknownCa);
    assert_eq!(failure.chain[0].subject, "CN=the-server");
    assert_eq!(failure.chain[0].key, "EC P-384");
}

#[test]
fn crl_revokes_one_client_certificate_of_a_ca() {
    let ca_key = PrivateKey::generate(KeyType::P256).unwrap();
    let ca = issue::self_signed_ca(&CertSpec::new("fleet CA", Role::Ca, 30), &ca_key).unwrap();
    let ca_key_copy = PrivateKey::from_der(&ca_key.pkcs8_der()).unwrap();
    let authority = Authority::load(&ca.der, ca_key).unwrap();
    let device = |cn: &str| {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let cert = authority
            .sign(&CertSpec::new(cn, Role::Client, 30), &key)
            .unwrap();
        Made {
            pem: cert.pem(),
            cert: cert.der,
            key,
        }
    };
    let good = device("device-1");
    let revoked = device("device-2");
    let serial = X509Certificate::from_der(&revoked.cert)
        .unwrap()
        .1
        .raw_serial()
        .to_vec();
    let now = time::OffsetDateTime::now_utc();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(1),
        next_update: now + time::Duration::days(7),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&serial),
            revocation_time: now - time::Duration::minutes(1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&rcgen::Issuer::from_ca_cert_der(&ca.der.clone().into(), ca_key_copy).unwrap())
    .unwrap();

    let server = self_signed("localhost", Role::Server, KeyType::P256);
    let mut settings = ServerSettings::new(identity(&server, &profile::OPENMV));
    settings.client_ca = Some(vec![CertificateDer::from(ca.der.clone())]);
    settings.crls = config::crls(crl.der()).unwrap();
    let (addr, reports, _rt) = start(settings, 2);

    let mut ok = client_settings(&server.cert);
    ok.identity = Some(identity(&good, &profile::OPENMV));
    let (_, reply) =
        client::exchange_blocking(&addr, &ok, b"hello\n").expect("an unrevoked device is served");
    assert_eq!(reply, b"hello\n");
    let mut bad = client_settings(&server.cert);
    bad.identity = Some(identity(&revoked, &profile::OPENMV));
    let Err(Error::Handshake(failure)) = client::exchange_blocking(&addr, &bad, b"hello\n") else {
        panic!("a revoked device must be refused");
    };
    assert_eq!(failure.diagnosis.reason, Reason::ClientCertRejected);

    let mut outcomes: Vec<String> = (0..2)
        .map(|_| {
            match reports
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .outcome
            {
                Outcome::Served(s) => format!("served {}", s.client_chain[0].subject),
                Outcome::Failed(r) => {
                    format!("{:?} {}", r.diagnosis.reason, r.client_chain[0].subject)
                }
            }
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["Revoked CN=device-2", "served CN=device-1"]);
}

#[test]
fn identity_refuses_a_foreign_key_and_keys_the_profile_cannot_use() {
    let a = self_signed("a", Role::Server, KeyType::P256);
    let b = self_signed("b", Role::Server, KeyType::P256);
    let err = Identity::from_bytes(&a.cert, &b.key.pkcs8_der(), &profile::OPENMV).unwrap_err();
    assert!(
        matches!(err, ConfigError::Mismatch(ref m) if m.contains("does not belong")),
        "{err}"
    );

    let ed = self_signed("ed", Role::Server, KeyType::Ed25519);
    let err = Identity::from_bytes(&ed.cert, &ed.key.pkcs8_der(), &profile::OPENMV).unwrap_err();
    assert!(
        err.to_string().contains("openmv profile cannot sign"),
        "{err}"
    );
    assert!(Identity::from_bytes(&ed.cert, &ed.key.pkcs8_der(), &profile::MODERN).is_ok());

    // Key and certificate given the wrong way round: named for what they are.
    let err = Identity::from_bytes(&a.key.pkcs8_der(), &a.cert, &profile::OPENMV).unwrap_err();
    assert!(err.to_string().contains("not a certificate"), "{err}");
}

#[test]
fn pem_and_der_give_the_same_anchor() {
    let made = self_signed("x", Role::Server, KeyType::Rsa2048);
    assert_eq!(
        config::certificates(made.pem.as_bytes()).unwrap(),
        config::certificates(&made.cert).unwrap()
    );
    assert!(config::certificates(b"garbage").is_err());
}

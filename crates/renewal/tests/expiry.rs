//! Expired certificates and `--grace`: the TLS verifier lets an expired
//! fleet certificate through only within the grace, and the service then
//! renews it (and only within the grace). Dates are set in the certificates
//! and the inventory, so nothing waits for a clock.

use std::sync::Arc;

use devtls_fleet::devices::Source;
use devtls_fleet::issue::{self, IssueOptions};
use devtls_fleet::{Fleet, InitOptions};
use devtls_net::config::Identity;
use devtls_pki::issue::{Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::profile::OPENMV;
use devtls_renewal::decide::Policy;
use devtls_renewal::http::Request;
use devtls_renewal::server::{client_verifier, tls_config, Options};
use devtls_renewal::service::Service;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use time::Duration;

const DAY: i64 = 86400;

fn fleet(dir: &std::path::Path) -> Fleet {
    let mut fleet = Fleet::init(
        &dir.join("fleet"),
        &InitOptions {
            name: "expiry".into(),
            key: KeyType::P256,
            days: 365,
        },
    )
    .unwrap();
    let boot: issue::BootPy = Arc::new(|_| String::new());
    let opts = IssueOptions::new(30, Role::Client, KeyType::P256, boot);
    issue::issue(
        &mut fleet,
        Source::list(vec!["cam-1".into()]),
        &opts,
        &|_| {},
    )
    .unwrap();
    fleet
}

/// A CA made 90 days ago (as a fleet's is, long before its devices expire).
fn old_ca() -> Authority {
    let key = PrivateKey::generate(KeyType::P256).unwrap();
    let mut spec = CertSpec::new("old CA", Role::Ca, 365);
    spec.not_before -= Duration::days(90);
    let cert = devtls_pki::issue::self_signed_ca(&spec, &key).unwrap();
    Authority::load(&cert.der, key).unwrap()
}

/// The client verifier of a server with `grace` for `ca`, checking `leaf` now.
fn verify(ca: &Authority, leaf: &[u8], grace: Option<i64>) -> Result<(), rustls::Error> {
    let key = PrivateKey::generate(KeyType::P256).unwrap();
    let mut spec = CertSpec::new("svc", Role::Server, 30);
    spec.ips.push("127.0.0.1".parse().unwrap());
    let cert = ca.sign(&spec, &key).unwrap();
    let identity = Identity::from_bytes(&cert.der, &key.pkcs8_der(), &OPENMV).unwrap();
    let opts = Options {
        profile: &OPENMV,
        grace,
        timeout: std::time::Duration::from_secs(5),
        max_connections: 1,
        per_address: 1,
        proxies: Vec::new(),
    };
    assert!(tls_config(&identity, &ca.cert_der, &opts).is_ok());
    client_verifier(&identity, &ca.cert_der, &opts)
        .unwrap()
        .verify_client_cert(&CertificateDer::from(leaf.to_vec()), &[], UnixTime::now())
        .map(|_| ())
}

/// A device certificate of `ca` that expired `ago` seconds ago.
fn expired_cert(ca: &Authority, ago: i64) -> Vec<u8> {
    let now = devtls_fleet::now();
    let mut spec = CertSpec::new("cam-1", Role::Client, 30);
    spec.not_after = now - Duration::seconds(ago);
    spec.not_before = spec.not_after - Duration::days(30);
    let key = PrivateKey::generate(KeyType::P256).unwrap();
    ca.sign(&spec, &key).unwrap().der
}

#[test]
fn the_tls_layer_passes_an_expired_certificate_only_within_the_grace() {
    let ca = old_ca();
    let day_old = expired_cert(&ca, DAY);
    assert!(verify(&ca, &day_old, None).is_err(), "no grace: refused");
    assert!(
        verify(&ca, &day_old, Some(7 * DAY)).is_ok(),
        "within 7 days of grace"
    );
    let week_old = expired_cert(&ca, 8 * DAY);
    assert!(
        verify(&ca, &week_old, Some(7 * DAY)).is_err(),
        "past the grace"
    );
    // The grace never lets another CA's certificate through.
    let foreign = expired_cert(&old_ca(), DAY);
    assert!(verify(&ca, &foreign, Some(7 * DAY)).is_err());
}

fn keygen() -> Request {
    Request {
        method: "POST".into(),
        path: "/.well-known/est/serverkeygen".into(),
        headers: vec![("accept".into(), "application/x-devtls-renew".into())],
        body: Vec::new(),
    }
}

/// The device's certificate, with its inventory row moved to have expired
/// a day ago (the service decides from the inventory's dates).
fn expired_device(dir: &std::path::Path) -> (Fleet, Vec<u8>) {
    let fleet = fleet(dir);
    let now = devtls_fleet::now().unix_timestamp();
    // A second connection to the inventory, as another process would have.
    let db = rusqlite::Connection::open(dir.join("fleet/inventory.db")).unwrap();
    db.execute(
        "UPDATE certs SET not_before = ?, not_after = ? WHERE device = 'cam-1'",
        [now - 31 * DAY, now - DAY],
    )
    .unwrap();
    let leaf = std::fs::read(dir.join("fleet/devices/cam-1/client.der")).unwrap();
    (fleet, leaf)
}

#[test]
fn an_expired_device_renews_within_the_grace_and_is_refused_after() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, leaf) = expired_device(dir.path());
    let service = Service::new(fleet, Policy::default(), &OPENMV).unwrap();
    let (refused, event) = service.respond(&leaf, &keygen());
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("X-Devtls-Status"), Some("expired"));
    assert_eq!(event.outcome, "refused-expired");

    let dir = tempfile::tempdir().unwrap();
    let (fleet, leaf) = expired_device(dir.path());
    let grace = Policy {
        grace: Some(7 * DAY),
        ..Policy::default()
    };
    let service = Service::new(fleet, grace, &OPENMV).unwrap();
    let (renewed, event) = service.respond(&leaf, &keygen());
    assert_eq!(
        renewed.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&renewed.body)
    );
    assert_eq!(event.outcome, "issued");
    let (cert, key, not_after) = devtls_renewal::encode::parse_devtls(&renewed.body).unwrap();
    assert!(!cert.is_empty() && !key.is_empty());
    // The new certificate is as long as the old one was (30 days) from now.
    let now = devtls_fleet::now().unix_timestamp() as u64;
    assert!(not_after > now + 29 * DAY as u64 && not_after <= now + 30 * DAY as u64);
}

/// The grace is for renewal only: an expired certificate the TLS layer let
/// through (within `--grace`) is refused on cacerts (docs/renewal.md).
#[test]
fn the_grace_does_not_open_cacerts() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, leaf) = expired_device(dir.path());
    let grace = Policy {
        grace: Some(7 * DAY),
        ..Policy::default()
    };
    let service = Service::new(fleet, grace, &OPENMV).unwrap();
    let cacerts = Request {
        method: "GET".into(),
        path: "/.well-known/est/cacerts".into(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let (refused, event) = service.respond(&leaf, &cacerts);
    assert_eq!(
        (refused.status, refused.header("X-Devtls-Status")),
        (403, Some("expired"))
    );
    assert_eq!(event.outcome, "refused-expired");
    // The same certificate still renews.
    let (renewed, _) = service.respond(&leaf, &keygen());
    assert_eq!(renewed.status, 200);
}

//! DTLS 1.2 end to end on loopback: devtls against itself, against OpenSSL
//! both ways, mTLS, failures diagnosed, and a lossy relay the exchange must
//! survive. Every wait is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use devtls_net::config::{self, Anchors, ClientSettings, Identity, ServerSettings};
use devtls_net::diagnose::Reason;
use devtls_net::dtls::{self, ClientOptions};
use devtls_net::report::{ClientReport, ConnectError, Outcome};
use devtls_pki::issue::{self, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::profile;

struct Made {
    cert: Vec<u8>,
    pem: String,
    key: PrivateKey,
}

fn self_signed(cn: &str, role: Role, key_type: KeyType) -> Made {
    let key = PrivateKey::generate(key_type).unwrap();
    let mut spec = CertSpec::new(cn, role, 30);
    spec.dns = vec!["localhost".into()];
    spec.ips = vec!["127.0.0.1".parse().unwrap()];
    let cert = issue::self_signed(&spec, &key).unwrap();
    Made {
        cert: cert.der,
        pem: cert.pem,
        key,
    }
}

fn identity(made: &Made) -> Identity {
    Identity::from_bytes(&made.cert, &made.key.pkcs8_der(), &profile::OPENMV).unwrap()
}

fn client_settings(anchor: &Made) -> ClientSettings {
    let mut s = ClientSettings::new(
        "localhost",
        Anchors::Given(config::certificates(&anchor.cert).unwrap()),
    );
    s.timeout = Duration::from_secs(10);
    s
}

/// Starts a devtls DTLS server for `count` clients on a thread; reports come
/// on the channel. The server gives up after 60 s whatever happens.
fn start(settings: ServerSettings, count: usize) -> (SocketAddr, mpsc::Receiver<ClientReport>) {
    let mut server = dtls::Server::bind("127.0.0.1:0".parse().unwrap(), settings).unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = server.serve(Some(count), Some(Duration::from_secs(60)), |r| {
            let _ = tx.send(r.clone());
        });
    });
    (addr, rx)
}

fn report(rx: &mpsc::Receiver<ClientReport>) -> ClientReport {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the server reported the client")
}

#[test]
fn devtls_client_and_server_exchange_hello_with_each_key_type() {
    for (key_type, suite_part) in [
        (KeyType::P256, "ECDHE_ECDSA"),
        (KeyType::P384, "ECDHE_ECDSA"),
        (KeyType::Rsa2048, "ECDHE_RSA"),
    ] {
        let server = self_signed("localhost", Role::Server, key_type);
        let (addr, reports) = start(ServerSettings::new(identity(&server)), 1);
        let (info, reply) =
            dtls::exchange(&addr.to_string(), &client_settings(&server), b"hi\n").unwrap();
        assert_eq!(reply, b"hello\n", "{key_type:?}");
        assert_eq!(info.version, "DTLSv1.2");
        assert!(info.cipher_suite.contains(suite_part), "{key_type:?}: {}", info.cipher_suite);
        assert_eq!(info.chain[0].common_name(), "localhost");
        match report(&reports).outcome {
            Outcome::Served(s) => {
                assert_eq!(s.received, "hi\n");
                assert_eq!(s.version, "DTLSv1.2");
                assert!(s.client_chain.is_empty());
            }
            Outcome::Failed(d) => panic!("{key_type:?}: server failed: {}", d.what),
        }
    }
}

use super::*;
use devtls_pki::profile::OPENMV;

fn ctx(side: Side) -> Context<'static> {
    Context {
        side,
        profile: &OPENMV,
        server_name: "openmv",
        anchors: "--ca: openmv",
        presented: &[],
        asked_for_cert: false,
        sent_cert: false,
        probe: None,
    }
}

#[test]
fn io_errors_from_tokio_rustls_are_classified() {
    let wrapped = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
    assert!(matches!(
        Failure::from_io(wrapped),
        Failure::Tls(rustls::Error::DecryptError)
    ));
    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
    assert!(matches!(Failure::from_io(eof), Failure::Closed));
}

#[test]
fn the_device_as_server_names_a_missing_client_certificate() {
    let d = diagnose(
        &Failure::Tls(rustls::Error::NoCertificatesPresented),
        &ctx(Side::Server),
    );
    assert_eq!(d.reason, Reason::ClientCertMissing);
    assert_eq!(
        d.device.unwrap().code,
        device_error::NO_CLIENT_CERTIFICATE.code
    );
}

#[test]
fn nothing_in_common_lists_the_profiles_offer() {
    let alert = Failure::Tls(rustls::Error::AlertReceived(
        AlertDescription::HandshakeFailure,
    ));
    let d = diagnose(&alert, &ctx(Side::Client));
    assert_eq!(d.reason, Reason::NothingInCommon);
    // Read from the profile, not restated: every emulated suite is named.
    for suite in crate::restrict::provider(&OPENMV).cipher_suites.iter() {
        let name = suite.suite().as_str().unwrap();
        assert!(d.what.contains(name), "{name} missing from {}", d.what);
    }
    assert_eq!(d.device.unwrap().code, device_error::FATAL_ALERT.code);
}

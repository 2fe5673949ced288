//! The PKCS#11 signer against SoftHSM2: a key made in a token of the test's
//! own signs from several threads at once, one session per thread after a
//! single login, and every signature verifies against the key's public key
//! (aws-lc-rs, not the token).
//!
//! One test only: a PKCS#11 library is initialised once per process, with
//! the SOFTHSM2_CONF of that moment.

use crate::require;

use std::path::PathBuf;
use std::process::Command;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use devtls_pki::keys::KeyType;
use devtls_pki::signer::pkcs11::{module_path, Found, Pin, TokenKey, Uri};

#[test]
fn a_token_key_signs_from_four_threads_on_four_sessions_and_every_signature_verifies() {
    require::require("softhsm2-util");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "t",
            "--pin",
            "1111",
            "--so-pin",
            "2222",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let uri: Uri = "pkcs11:token=t;object=ca".parse().unwrap();
    let module: PathBuf = module_path(None, &uri).unwrap_or_else(|e| require::fail(&e.to_string()));
    let (key, found) =
        TokenKey::create_or_open(&module, &uri, &Pin::new("1111".into()), KeyType::P256).unwrap();
    assert_eq!(found, Found::Created);
    assert!(!key.is_extractable().unwrap());
    let point = rcgen::PublicKeyData::der_bytes(&key).to_vec();
    assert_eq!(point.len(), 65);
    let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point);
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let (key, public, barrier) = (&key, &public, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..25u8 {
                    let msg = [t, i, 0x5a, 0xa5];
                    let sig = key.sign_message(&msg).unwrap();
                    public
                        .verify(&msg, &sig)
                        .unwrap_or_else(|_| panic!("thread {t} signature {i} does not verify"));
                }
            });
        }
    });
    // One session per concurrent signer at most (the login session plus at
    // most one more per thread), never one per signature.
    let opened = key.sessions_opened();
    assert!(
        opened <= 5,
        "{opened} sessions for 4 threads x 25 signatures"
    );
    // The key made above is found again by its URI.
    let again = TokenKey::open(&module, &uri, &Pin::new("1111".into())).unwrap();
    assert_eq!(
        rcgen::PublicKeyData::der_bytes(&again),
        rcgen::PublicKeyData::der_bytes(&key)
    );
}

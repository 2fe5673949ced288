//! `devtls fleet` with the CA key in a PKCS#11 token (SoftHSM2): init,
//! issue, crl and rotate sign through the token; OpenSSL and the device's
//! mbedTLS verify what it signed; no file in the fleet holds the CA key; the
//! key object is non-extractable; bad PINs, tokens and libraries are one
//! line and exit 2.
//!
//! Each test initialises its own token in a temporary folder
//! (`SOFTHSM2_CONF` points SoftHSM2 at it), so nothing outside is touched.
//! The inventory is the backend `DEVTLS_TEST_BACKEND` names (scripts/test.sh
//! runs this file on both); `..._on_postgres` tests always use PostgreSQL:
//! a token CA whose inventory several issuers share.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use support::device::{self, VerifyCase};
use support::{openssl_ok, require, text, tool};

const PIN: &str = "4711-pin";
const SO_PIN: &str = "so-0815";
const TOKEN: &str = "fleet-token";

/// Where SoftHSM2's library is (Debian puts it in one of these).
fn softhsm_module() -> PathBuf {
    require("softhsm2-util");
    devtls_pki_paths()
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            support::require::fail(
                "missing test peer softhsm2: its library libsofthsm2.so was not found; \
                 install it with `sudo apt-get install softhsm2`",
            )
        })
}

fn devtls_pki_paths() -> Vec<PathBuf> {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib64/pkcs11/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// A SoftHSM2 token of its own in a temporary folder, and a work folder.
struct Hsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
}

impl Hsm {
    fn new() -> Hsm {
        let module = softhsm_module();
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let out = tool("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", TOKEN])
            .args(["--pin", PIN, "--so-pin", SO_PIN])
            .output()
            .unwrap();
        assert!(out.status.success(), "softhsm2-util:\n{}", text(&out));
        fs::write(dir.path().join("pin.txt"), format!("{PIN}\n")).unwrap();
        Hsm { dir, conf, module }
    }

    fn work(&self) -> &Path {
        self.dir.path()
    }

    /// A copy of this test's token (the CA key included) in a folder of its
    /// own, and the SoftHSM2 configuration that sees only the copy: another
    /// machine's HSM holding a replica of the key. (Several processes at once
    /// on one SoftHSM2 token folder sometimes read it mid-write: "tokens
    /// present: none" or CKR_GENERAL_ERROR.)
    fn replica(&self, name: &str) -> PathBuf {
        let tokens = self.work().join(format!("{name}-tokens"));
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(self.work().join("tokens"))
            .arg(&tokens)
            .output()
            .unwrap();
        assert!(out.status.success(), "cp -a tokens:\n{}", text(&out));
        let conf = self.work().join(format!("{name}-softhsm2.conf"));
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        conf
    }

    fn fleet(&self) -> PathBuf {
        self.work().join("fleet")
    }

    /// devtls in the work folder, seeing only this test's token, with no PIN
    /// in the environment (each call says where its PIN comes from).
    fn devtls(&self, args: &[&str]) -> Output {
        support::devtls()
            .args(args)
            .current_dir(self.work())
            .env("SOFTHSM2_CONF", &self.conf)
            .env("DEVTLS_PKCS11_MODULE", &self.module)
            .env_remove("DEVTLS_PKCS11_PIN")
            .output()
            .expect("devtls runs")
    }

    /// `fleet init --ca-key CA_URI --pin-file pin.txt --json`: its report,
    /// which must name the key's URI.
    fn init_token_ca(&self) -> serde_json::Value {
        let out = self.ok(&[
            "fleet",
            "init",
            "--ca-key",
            CA_URI,
            "--pin-file",
            "pin.txt",
            "--json",
        ]);
        let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(made["ca_key"], CA_URI, "{}", text(&out));
        made
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.devtls(args);
        assert!(
            out.status.success(),
            "devtls {args:?} failed:\n{}",
            text(&out)
        );
        out
    }

    /// A logged-in cryptoki session on this test's token, opened here,
    /// independently of devtls.
    fn session(&self) -> Session {
        // SoftHSM2 reads SOFTHSM2_CONF when it is initialised: set it first
        // (only one test does this; see its comment).
        std::env::set_var("SOFTHSM2_CONF", &self.conf);
        let ctx = Pkcs11::new(&self.module).unwrap();
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = ctx
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
            .expect("the test's token");
        let session = ctx.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::from(PIN.to_string())))
            .unwrap();
        session
    }
}

/// The uncompressed EC point of the CA certificate's public key.
fn ca_point(ca_der: &[u8]) -> Vec<u8> {
    // The BIT STRING of the SPKI: the only 0x03 0x42 0x00 0x04 (P-256) or
    // 0x03 0x62 0x00 0x04 (P-384) in a certificate with an EC key.
    for (len, size) in [(0x42u8, 65usize), (0x62, 97)] {
        if let Some(at) = ca_der.windows(4).position(|w| w == [0x03, len, 0x00, 0x04]) {
            return ca_der[at + 3..at + 3 + size].to_vec();
        }
    }
    panic!("ca.der has no EC public key");
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The public point of a private key encoded in `der` (PKCS#8 or SEC1,
/// P-256 or P-384), if it is one.
fn private_key_point(der: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
    };
    for alg in [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
    ] {
        let pair = EcdsaKeyPair::from_pkcs8(alg, der)
            .or_else(|_| EcdsaKeyPair::from_private_key_der(alg, der));
        if let Ok(pair) = pair {
            return Some(pair.public_key().as_ref().to_vec());
        }
    }
    None
}

/// Where `file` holds the private key of `point` (the CA's public point):
/// as a PKCS#8 or SEC1 key, DER at any offset or inside PEM, or as the
/// bare scalar at any offset. `None` when it does not.
fn holds_private_key_of(file: &Path, point: &[u8]) -> Option<String> {
    let bytes = fs::read(file).unwrap();
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    // PEM blocks, whatever their label.
    if let Ok(text) = std::str::from_utf8(&bytes) {
        for block in text.split("-----BEGIN ").skip(1) {
            let body: String = block
                .lines()
                .skip(1)
                .take_while(|l| !l.starts_with("-----END"))
                .collect();
            if let Some(der) = base64_decode(&body) {
                candidates.push(der);
            }
        }
    }
    // DER at every offset that starts a SEQUENCE (keys inside a database).
    for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == 0x30) {
        let end = (at + 300).min(bytes.len());
        for len in 2..=end - at {
            if private_key_point(&bytes[at..at + len]).as_deref() == Some(point) {
                return Some(format!("a DER private key at byte {at}"));
            }
        }
    }
    for der in candidates {
        if private_key_point(&der).as_deref() == Some(point) {
            return Some("a PEM private key".into());
        }
    }
    // The bare scalar at any offset.
    let (curve, size) = match point.len() {
        65 => (&aws_lc_rs::agreement::ECDH_P256, 32),
        _ => (&aws_lc_rs::agreement::ECDH_P384, 48),
    };
    for at in 0..bytes.len().saturating_sub(size - 1) {
        let Ok(key) =
            aws_lc_rs::agreement::PrivateKey::from_private_key(curve, &bytes[at..at + size])
        else {
            continue;
        };
        if key.compute_public_key().unwrap().as_ref() == point {
            return Some(format!("the raw private scalar at byte {at}"));
        }
    }
    None
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Every file of the fleet that holds the CA's private key.
fn files_holding_the_ca_key(fleet: &Path) -> Vec<String> {
    let point = ca_point(&fs::read(fleet.join("ca.der")).unwrap());
    files(fleet)
        .iter()
        .filter_map(|f| {
            holds_private_key_of(f, &point).map(|how| format!("{}: {how}", f.display()))
        })
        .collect()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The mbedTLS 3.6 device peer's verdict on each device certificate, with
/// the fleet's ca.der as the one anchor: the verify flags (0 = trusted).
fn device_flags(fleet: &Path, devices: &[&str]) -> Vec<Option<u32>> {
    let anchor = fs::read(fleet.join("ca.der")).unwrap();
    let cases: Vec<VerifyCase> = devices
        .iter()
        .map(|id| VerifyCase {
            id: id.to_string(),
            anchor: anchor.clone(),
            chain: vec![fs::read(fleet.join("devices").join(id).join("client.der")).unwrap()],
            hostname: None,
            time: now(),
        })
        .collect();
    device::verify(&cases)
        .into_iter()
        .map(|v| v.flags)
        .collect()
}

/// `openssl verify` of device certificates against the fleet CA: how many are OK.
fn openssl_verified(work: &Path, devices: &[&str]) -> usize {
    let certs: Vec<String> = devices
        .iter()
        .map(|id| format!("fleet/devices/{id}/client.der"))
        .collect();
    let mut args = vec!["verify", "-CAfile", "fleet/ca.crt"];
    args.extend(certs.iter().map(String::as_str));
    let out = openssl_ok(work, &args);
    String::from_utf8_lossy(&out.stdout).matches(": OK").count()
}

const CA_URI: &str = "pkcs11:token=fleet-token;object=fleet-ca";

#[test]
fn init_issue_crl_and_rotate_sign_in_the_token_and_openssl_and_the_device_verify() {
    let backend = support::postgres::backend();
    let hsm = Hsm::new();
    let work = hsm.work();
    let fleet = hsm.fleet();
    support::postgres::fresh_database();
    let made = hsm.init_token_ca();
    assert_eq!(made["ca_key_created"], true);
    assert!(
        !fleet.join("ca.key").exists(),
        "no key file beside a token key"
    );
    let recorded = fs::read_to_string(fleet.join("ca.key.uri")).unwrap();
    assert!(recorded.starts_with(CA_URI), "{recorded}");
    assert!(!recorded.contains(PIN), "the PIN is never recorded");

    // Issue, with the PIN from the environment this time, on two workers.
    let out = support::devtls()
        .args([
            "fleet",
            "issue",
            "--count",
            "8",
            "--prefix",
            "cam-",
            "--threads",
            "2",
            "-q",
        ])
        .current_dir(work)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("DEVTLS_PKCS11_MODULE", &hsm.module)
        .env("DEVTLS_PKCS11_PIN", PIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cams: Vec<String> = (1..=8).map(|i| format!("cam-{i}")).collect();
    let cams: Vec<&str> = cams.iter().map(String::as_str).collect();
    assert_eq!(openssl_verified(work, &cams), 8);
    assert_eq!(
        device_flags(&fleet, &cams),
        vec![Some(0); 8],
        "the device's mbedTLS trusts every certificate the token signed"
    );

    // Revoke one and publish a CRL signed in the token.
    hsm.ok(&["fleet", "revoke", "cam-2"]);
    hsm.ok(&["fleet", "crl", "--pin-file", "pin.txt"]);
    support::fleet::crl_verified(work, "fleet/crl.der");
    let check = |cert: &str| support::fleet::crl_check(work, "fleet/crl.der", cert);
    let revoked = check("fleet/devices/cam-2/client.der");
    assert!(!revoked.status.success(), "{}", text(&revoked));
    assert!(
        String::from_utf8_lossy(&revoked.stdout).contains("revoked")
            || String::from_utf8_lossy(&revoked.stderr).contains("revoked")
    );
    assert!(check("fleet/devices/cam-1/client.der").status.success());

    // Rotate every device (all expire within 100 days): new certificates
    // signed in the token, verified again.
    let before = fs::read(fleet.join("devices/cam-1/client.der")).unwrap();
    let out = hsm.ok(&[
        "fleet",
        "rotate",
        "--within",
        "100d",
        "--pin-file",
        "pin.txt",
        "--json",
    ]);
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["issued"], 7, "{}", text(&out));
    assert_ne!(
        fs::read(fleet.join("devices/cam-1/client.der")).unwrap(),
        before
    );
    let live: Vec<&str> = cams.iter().copied().filter(|c| *c != "cam-2").collect();
    assert_eq!(openssl_verified(work, &live), 7);
    assert_eq!(device_flags(&fleet, &live), vec![Some(0); 7]);

    // After all that signing, no file in the fleet holds the CA key.
    assert_eq!(files_holding_the_ca_key(&fleet), Vec::<String>::new());
    // 8 issued and 7 rotated, on the backend under test.
    backend.assert_inventory(&fleet, 15);
}

#[test]
fn the_scan_finds_a_ca_key_kept_in_a_file() {
    let _backend = support::postgres::backend();
    // The scan of the test above, on a fleet whose key IS in a file: it
    // must find ca.key, else finding nothing above proves nothing.
    let dir = tempfile::tempdir().unwrap();
    support::postgres::fresh_database();
    support::ok_in(dir.path(), &["fleet", "init"]);
    let fleet = dir.path().join("fleet");
    let found = files_holding_the_ca_key(&fleet);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("ca.key: a PEM private key"), "{found:?}");
    // And the bare scalar is found too: the key's 32 bytes in a file.
    let pem = fs::read_to_string(fleet.join("ca.key")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&body).unwrap();
    let point = ca_point(&fs::read(fleet.join("ca.der")).unwrap());
    // PKCS#8 P-256 (RFC 5915 inside): the scalar follows 04 20 in the SEC1 part.
    let at = der.windows(2).position(|w| w == [0x04, 0x20]).unwrap() + 2;
    let stray = dir.path().join("stray.bin");
    fs::write(
        &stray,
        [&b"junk"[..], &der[at..at + 32], &b"more"[..]].concat(),
    )
    .unwrap();
    assert_eq!(
        holds_private_key_of(&stray, &point).as_deref(),
        Some("the raw private scalar at byte 4")
    );
}

/// The one test that loads SoftHSM2 into this process: a library is
/// initialised once per process, with the SOFTHSM2_CONF of that moment.
#[test]
fn the_token_key_is_never_extractable_an_existing_key_is_used_an_extractable_one_refused() {
    let _backend = support::postgres::backend();
    let hsm = Hsm::new();
    let session = hsm.session();
    make_key(&session, "made-elsewhere", false);
    make_key(&session, "copyable", true);
    support::postgres::fresh_database();
    hsm.ok(&["fleet", "init", "--ca-key", CA_URI, "--pin-file", "pin.txt"]);
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"fleet-ca".to_vec()),
        ])
        .unwrap();
    assert_eq!(keys.len(), 1);
    let attrs = session
        .get_attributes(
            keys[0],
            &[
                AttributeType::Extractable,
                AttributeType::Sensitive,
                AttributeType::Token,
                AttributeType::NeverExtractable,
            ],
        )
        .unwrap();
    for want in [
        Attribute::Extractable(false),
        Attribute::Sensitive(true),
        Attribute::Token(true),
        Attribute::NeverExtractable(true),
    ] {
        assert!(
            attrs
                .iter()
                .any(|a| format!("{a:?}") == format!("{want:?}")),
            "{want:?} not in {attrs:?}"
        );
    }
    // The token refuses to hand out the private value.
    let value = session
        .get_attributes(keys[0], &[AttributeType::Value])
        .unwrap();
    assert!(
        !value.iter().any(|a| matches!(a, Attribute::Value(_))),
        "CKA_VALUE was readable: {value:?}"
    );
    drop(session);
    existing_key_is_used_and_an_extractable_one_refused(&hsm);
}

/// Makes a P-384 key pair in the token with cryptoki, `extractable` or not.
fn make_key(session: &Session, label: &str, extractable: bool) {
    let p384 = vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let id = label.as_bytes().to_vec();
    session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::EcParams(p384),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(!extractable),
                Attribute::Extractable(extractable),
                Attribute::Sign(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id),
            ],
        )
        .unwrap();
}

fn existing_key_is_used_and_an_extractable_one_refused(hsm: &Hsm) {
    // The existing P-384 key is used (its curve, not --key's default).
    support::postgres::fresh_database();
    let out = hsm.ok(&[
        "fleet",
        "init",
        "--dir",
        "existing",
        "--ca-key",
        "pkcs11:token=fleet-token;object=made-elsewhere",
        "--pin-file",
        "pin.txt",
        "--json",
    ]);
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["ca_key_created"], false, "{}", text(&out));
    assert_eq!(made["key_type"], "p384", "{}", text(&out));
    hsm.ok(&[
        "fleet",
        "issue",
        "--dir",
        "existing",
        "a",
        "b",
        "--pin-file",
        "pin.txt",
    ]);
    let out = openssl_ok(
        hsm.work(),
        &[
            "verify",
            "-CAfile",
            "existing/ca.crt",
            "existing/devices/a/client.der",
            "existing/devices/b/client.der",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches(": OK").count(),
        2
    );
    let sig = openssl_ok(
        hsm.work(),
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "existing/devices/a/client.der",
            "-noout",
            "-text",
        ],
    );
    assert!(String::from_utf8_lossy(&sig.stdout).contains("ecdsa-with-SHA384"));

    // An extractable key is refused, before any file is written.
    support::postgres::fresh_database();
    let out = hsm.devtls(&[
        "fleet",
        "init",
        "--dir",
        "other",
        "--ca-key",
        "pkcs11:token=fleet-token;object=copyable",
        "--pin-file",
        "pin.txt",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CKA_EXTRACTABLE true"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!hsm.work().join("other/ca.der").exists());
}

#[test]
fn wrong_pin_missing_token_object_or_library_are_one_line_and_exit_2() {
    let _backend = support::postgres::backend();
    let hsm = Hsm::new();
    fs::write(hsm.work().join("bad-pin.txt"), "0000\n").unwrap();
    support::postgres::fresh_database();
    hsm.ok(&["fleet", "init", "--ca-key", CA_URI, "--pin-file", "pin.txt"]);
    let one_line = |out: &Output, says: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", text(out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{says:?} not in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(
            !err.contains(PIN) && !err.contains("0000"),
            "no PIN in: {err}"
        );
    };
    one_line(
        &hsm.devtls(&["fleet", "issue", "x", "--pin-file", "bad-pin.txt"]),
        "refused the PIN",
    );
    assert!(!hsm.fleet().join("devices/x").exists());
    support::postgres::fresh_database();
    one_line(
        &hsm.devtls(&[
            "fleet",
            "init",
            "--dir",
            "f2",
            "--ca-key",
            "pkcs11:token=nope;object=k",
            "--pin-file",
            "pin.txt",
        ]),
        "no token matches pkcs11:token=nope;object=k (tokens present: 'fleet-token')",
    );
    // The fleet's recorded URI names an object the token does not have.
    fs::write(
        hsm.fleet().join("ca.key.uri"),
        "pkcs11:token=fleet-token;object=gone\n",
    )
    .unwrap();
    one_line(
        &hsm.devtls(&["fleet", "crl", "--pin-file", "pin.txt"]),
        "has no private key object 'gone'",
    );
    support::postgres::fresh_database();
    one_line(
        &hsm.devtls(&[
            "fleet", "init", "--dir", "f3", "--ca-key", CA_URI, "--pin-file", "pin.txt",
            "--pkcs11-module", "/nonexistent/libnothing.so",
        ]),
        "/nonexistent/libnothing.so: no PKCS#11 library there; install the token's library (SoftHSM2: `apt install softhsm2`)",
    );
    // A PIN on the command line is not accepted in any form.
    for args in [
        vec![
            "fleet", "init", "--dir", "f4", "--ca-key", CA_URI, "--pin", PIN,
        ],
        vec![
            "fleet",
            "init",
            "--dir",
            "f4",
            "--ca-key",
            &format!("{CA_URI};pin-value={PIN}"),
        ],
    ] {
        let out = hsm.devtls(&args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains(PIN),
            "{}",
            text(&out)
        );
        assert!(!hsm.work().join("f4").exists());
    }
}

#[test]
fn a_signing_command_without_a_pin_or_terminal_says_how_to_give_one() {
    let _backend = support::postgres::backend();
    let hsm = Hsm::new();
    support::postgres::fresh_database();
    hsm.ok(&["fleet", "init", "--ca-key", CA_URI, "--pin-file", "pin.txt"]);
    // Status and list need no PIN: the token is opened only to sign.
    hsm.ok(&["fleet", "status"]);
    let out = hsm.devtls(&["fleet", "issue", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no terminal to ask for its PIN; pass --pin-file FILE")
            && err.contains("DEVTLS_PKCS11_PIN"),
        "{err}"
    );
}

/// Issuers of a token CA on one PostgreSQL database: the first machine's
/// `init` made the key in the token and the schema in the database; each
/// other machine's fleet folder is a copy of ca.der, ca.crt and ca.key.uri
/// (its `fleet init` is refused and says so). Three issuer processes sign
/// with the token key into the database at once; a CRL signed in the token
/// by another issuer revokes one device of each; OpenSSL verifies all of
/// it against the CA, and no file in any folder holds the CA key.
#[test]
fn three_issuers_sign_with_the_token_key_into_one_database_on_postgres() {
    let pg = support::postgres::postgres();
    let hsm = Hsm::new();
    let work = hsm.work();
    hsm.init_token_ca();
    assert!(
        !hsm.fleet().join("inventory.db").exists() && !hsm.fleet().join("ca.key").exists(),
        "the inventory is in the database, the key in the token"
    );
    let ca_sha256 =
        devtls_pki::fingerprint::sha256_hex(&fs::read(hsm.fleet().join("ca.der")).unwrap());
    assert_eq!(
        pg.psql("SELECT value FROM meta WHERE key = 'ca_sha256'"),
        ca_sha256,
        "the database belongs to the token CA"
    );

    // A second machine does not `init` against a database that has a fleet:
    // refused in one line saying what to copy, nothing written there.
    let out = hsm.devtls(&[
        "fleet",
        "init",
        "--dir",
        "line2",
        "--ca-key",
        CA_URI,
        "--pin-file",
        "pin.txt",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already holds a fleet's inventory") && err.contains("ca.key.uri"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!work.join("line2/ca.der").exists());
    for line in ["line2", "line3"] {
        fs::create_dir_all(work.join(line)).unwrap();
        for f in ["ca.der", "ca.crt", "ca.key.uri"] {
            fs::copy(hsm.fleet().join(f), work.join(line).join(f)).unwrap();
        }
    }

    // Three issuers at once, each with its PIN from its own source and its
    // own replica of the token.
    const N: usize = 150;
    let issuers: Vec<std::process::Child> = ["fleet", "line2", "line3"]
        .iter()
        .map(|dir| {
            let conf = hsm.replica(dir);
            let mut cmd = support::devtls();
            cmd.args(["fleet", "issue", "--dir", dir, "--prefix"])
                .arg(format!("{dir}-"))
                .args(["--count", &N.to_string(), "--json", "-q"])
                .current_dir(work)
                .env("SOFTHSM2_CONF", &conf)
                .env("DEVTLS_PKCS11_MODULE", &hsm.module)
                .env_remove("DEVTLS_PKCS11_PIN")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            if *dir == "line2" {
                cmd.env("DEVTLS_PKCS11_PIN", PIN);
            } else {
                cmd.args(["--pin-file", "pin.txt"]);
            }
            cmd.spawn().unwrap()
        })
        .collect();
    for child in issuers {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["issued"], N, "{}", text(&out));
    }
    assert_eq!(
        pg.psql(
            "SELECT count(DISTINCT serial) || ' ' || count(*) FROM certs WHERE status = 'active'"
        ),
        format!("{} {}", 3 * N, 3 * N),
        "one active row per device, every serial unique"
    );
    let rows = support::fleet::export(work, "line3");
    assert_eq!(rows.len(), 3 * N);
    for dir in ["fleet", "line2", "line3"] {
        support::fleet::folders_complete(work, dir, &format!("{dir}-"), N, &rows);
        let ids: Vec<String> = (1..=N).map(|i| format!("{dir}-{i}")).collect();
        let certs: Vec<String> = ids
            .iter()
            .map(|id| format!("{dir}/devices/{id}/client.der"))
            .collect();
        let mut args = vec!["verify", "-CAfile", "fleet/ca.crt"];
        args.extend(certs.iter().map(String::as_str));
        let out = openssl_ok(work, &args);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).matches(": OK").count(),
            N,
            "{dir}: OpenSSL verifies every certificate the token signed"
        );
    }

    // Revoke one device of each issuer (no PIN needed), then CRLs signed
    // in the token by two issuers: numbers increase, OpenSSL verifies the
    // CRL and refuses exactly the revoked devices.
    for id in ["fleet-7", "line2-8", "line3-9"] {
        hsm.ok(&["fleet", "revoke", "--dir", "line2", id]);
    }
    hsm.ok(&["fleet", "crl", "--dir", "fleet", "--pin-file", "pin.txt"]);
    hsm.ok(&["fleet", "crl", "--dir", "line3", "--pin-file", "pin.txt"]);
    let first = support::fleet::crl_number(work, "fleet/crl.der");
    let second = support::fleet::crl_number(work, "line3/crl.der");
    assert!(second > first, "CRL numbers {first} then {second}");
    support::fleet::crl_verified(work, "line3/crl.der");
    for (cert, revoked) in [
        ("fleet/devices/fleet-7/client.der", true),
        ("line2/devices/line2-8/client.der", true),
        ("line3/devices/line3-9/client.der", true),
        ("line2/devices/line2-1/client.der", false),
    ] {
        let out = support::fleet::crl_check(work, "line3/crl.der", cert);
        assert_eq!(!out.status.success(), revoked, "{cert}: {}", text(&out));
    }

    // After all that signing, no file in any issuer's folder holds the CA key.
    for dir in ["fleet", "line2", "line3"] {
        assert_eq!(
            files_holding_the_ca_key(&work.join(dir)),
            Vec::<String>::new()
        );
    }
}

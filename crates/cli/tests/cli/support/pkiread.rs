//! Material made by OpenSSL and GnuTLS `certtool`, for the pkiread tests:
//! devtls must read what other tools write.

use std::path::Path;

use super::{openssl_ok, text};

/// The key types devtls makes, with the OpenSSL `genpkey` options for each.
pub const KEY_TYPES: [(&str, &[&str]); 3] = [
    (
        "p256",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ),
    (
        "p384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    ),
    (
        "rsa2048",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    ),
];

/// What devtls inspect should call each key type.
pub fn description(key_type: &str) -> &'static str {
    match key_type {
        "p256" => "ECDSA P-256",
        "p384" => "ECDSA P-384",
        _ => "RSA 2048",
    }
}

/// Writes `NAME.p8.pem` (PKCS#8 PEM) with OpenSSL, plus the same key as
/// `NAME.p8.der`, and `NAME.trad.pem` / `NAME.trad.der` in the traditional
/// structure (SEC1 for EC, PKCS#1 for RSA). Returns the traditional label.
pub fn openssl_keys(dir: &Path, name: &str, key_type: &str) -> &'static str {
    let (_, opts) = KEY_TYPES.iter().find(|(k, _)| *k == key_type).unwrap();
    let p8 = format!("{name}.p8.pem");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(opts);
    args.extend(["-out", &p8]);
    openssl_ok(dir, &args);
    openssl_ok(
        dir,
        &[
            // `openssl pkey -outform DER` writes SEC1 for EC keys; pkcs8 -topk8 keeps PKCS#8.
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &p8,
            "-outform",
            "DER",
            "-out",
            &format!("{name}.p8.der"),
        ],
    );
    let tool = if key_type == "rsa2048" { "rsa" } else { "ec" };
    for (form, ext) in [("PEM", "pem"), ("DER", "der")] {
        let out = format!("{name}.trad.{ext}");
        let mut args = vec![tool, "-in", &p8, "-outform", form, "-out", &out];
        // `openssl ec` writes SEC1 already; `openssl rsa` needs -traditional for PKCS#1.
        if tool == "rsa" {
            args.push("-traditional");
        }
        openssl_ok(dir, &args);
    }
    if tool == "rsa" {
        "RSA PRIVATE KEY"
    } else {
        "EC PRIVATE KEY"
    }
}

/// A self-signed OpenSSL certificate `NAME.crt` for key `KEY` with a SAN.
pub fn openssl_cert(dir: &Path, key: &str, name: &str) {
    openssl_ok(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            key,
            "-out",
            name,
            "-days",
            "30",
            "-subj",
            "/CN=openmv",
            "-addext",
            "subjectAltName=DNS:openmv,IP:192.168.1.50",
        ],
    );
}

/// The public key of any key file OpenSSL reads, as PEM: two files hold the same key iff equal.
pub fn openssl_pubkey(dir: &Path, key: &str, inform: &str) -> String {
    let out = openssl_ok(dir, &["pkey", "-inform", inform, "-in", key, "-pubout"]);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `certtool` in `dir` and panics with its output unless it exits 0.
pub fn certtool_ok(dir: &Path, args: &[&str]) {
    let out = super::tool("certtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("certtool runs");
    assert!(
        out.status.success(),
        "certtool {args:?} failed:\n{}",
        text(&out)
    );
}

/// A GnuTLS key `NAME.key` and self-signed server certificate `NAME.crt`.
pub fn certtool_pair(dir: &Path, name: &str, key_type: &str) {
    let key = format!("{name}.key");
    let mut args = vec!["--generate-privkey", "--outfile", &key];
    match key_type {
        "p256" => args.extend(["--key-type", "ecdsa", "--curve", "secp256r1"]),
        "p384" => args.extend(["--key-type", "ecdsa", "--curve", "secp384r1"]),
        _ => args.extend(["--key-type", "rsa", "--bits", "2048"]),
    }
    certtool_ok(dir, &args);
    std::fs::write(
        dir.join("cert.tmpl"),
        "cn = openmv\ndns_name = openmv\nip_address = 192.168.1.50\nexpiration_days = 30\ntls_www_server\nsigning_key\nencryption_key\n",
    )
    .unwrap();
    certtool_ok(
        dir,
        &[
            "--generate-self-signed",
            "--load-privkey",
            &key,
            "--template",
            "cert.tmpl",
            "--outfile",
            &format!("{name}.crt"),
        ],
    );
}

/// A CA (`ca.key`, `ca.crt`) made with OpenSSL, an intermediate (`int.*`) it
/// signed and a server leaf (`leaf.*`) the intermediate signed, like a
/// public CA's chain.
pub fn openssl_chain(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut root = vec!["req", "-x509"];
    root.extend(ec);
    root.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "60",
        "-subj",
        "/CN=Test Root X1",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl_ok(dir, &root);
    std::fs::write(
        dir.join("ext.cnf"),
        "[ca]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         [leaf]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:cam.example.com\n",
    )
    .unwrap();
    for (name, subj, signer, section) in [
        ("int", "/CN=Test Intermediate E8", "ca", "ca"),
        ("leaf", "/CN=cam.example.com", "int", "leaf"),
    ] {
        let mut req = vec!["req", "-new"];
        req.extend(ec);
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        req.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
        openssl_ok(dir, &req);
        let (ca_crt, ca_key) = (format!("{signer}.crt"), format!("{signer}.key"));
        openssl_ok(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                "ext.cnf",
                "-extensions",
                section,
                "-out",
                &crt,
            ],
        );
    }
}

/// Loads DER files as the device does (`load_cert_chain` on the device
/// peer, mbedTLS 3.6 with the device's configuration) and checks each key
/// matches the certificate. Panics with mbedTLS's error otherwise.
pub fn mbedtls_loads(dir: &Path, cert: &str, keys: &[String]) {
    for key in keys {
        let out = super::device::run(dir, &["loadchain", cert, key], b"");
        assert!(
            out.status.success(),
            "the device refused {cert} {key}:\n{}",
            text(&out)
        );
    }
}

/// Encrypts a key as PKCS#8 PBES2 AES-256-CBC (`openssl pkcs8 -topk8 -v2 aes-256-cbc`).
pub fn openssl_encrypt(dir: &Path, input: &str, out: &str, password: &str) {
    let pass = format!("pass:{password}");
    openssl_ok(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            input,
            "-out",
            out,
            "-passout",
            &pass,
        ],
    );
}

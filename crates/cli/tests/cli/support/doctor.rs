//! Test PKIs for `anchor` and `doctor`: a root, an intermediate and leaves
//! built with devtls-pki (openssl for what it cannot make: RSA-PSS and
//! Ed25519 leaves, AIA extensions), written as the PEM/DER files servers and
//! the mbedTLS peer load, and servers that present them.

use std::path::{Path, PathBuf};

use devtls_pki::issue::{self, Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use time::{Duration, OffsetDateTime};

use super::openssl_ok;
use super::peers::{openssl_server, LineServer};

/// PEM text of a DER certificate.
pub fn pem(der: &[u8]) -> String {
    let body = base64(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A test CA hierarchy in a folder: `NAME-root.{pem,der,key}`, `NAME-int.{pem,der,key}`.
pub struct Pki {
    /// The folder everything is written to.
    pub dir: PathBuf,
    /// File stem prefix.
    pub name: String,
    /// Root certificate DER.
    pub root: Vec<u8>,
    /// Intermediate certificate DER.
    pub int: Vec<u8>,
    int_key: PrivateKey,
}

/// A validity window relative to now, in days (negative: in the past).
pub fn window(from_days: i64, to_days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    (
        now + Duration::days(from_days),
        now + Duration::days(to_days),
    )
}

impl Pki {
    /// A root valid for `root_days`, an intermediate valid over `int_window`.
    pub fn new(dir: &Path, name: &str, root_days: i64, int_window: (i64, i64)) -> Pki {
        let root_key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new(format!("{name} Test Root"), Role::Ca, 1);
        (spec.not_before, spec.not_after) = window(-1, root_days);
        let root = issue::self_signed_root(&spec, &root_key).unwrap();
        std::fs::write(dir.join(format!("{name}-root.key")), root_key.pkcs8_pem()).unwrap();
        let int_key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new(format!("{name} Test Int"), Role::Ca, 1);
        (spec.not_before, spec.not_after) = window(int_window.0, int_window.1);
        let int = Authority::load(&root.der, root_key)
            .unwrap()
            .sign(&spec, &int_key)
            .unwrap();
        let pki = Pki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            root: root.der,
            int: int.der,
            int_key,
        };
        pki.write(&format!("{name}-root.der"), &pki.root);
        pki.write(&format!("{name}-root.pem"), pem(&pki.root).as_bytes());
        pki.write(&format!("{name}-int.der"), &pki.int);
        pki.write(&format!("{name}-int.pem"), pem(&pki.int).as_bytes());
        pki.write(
            &format!("{name}-int.key"),
            pki.int_key.pkcs8_pem().as_bytes(),
        );
        pki
    }

    /// Writes a file into the folder.
    pub fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A server leaf signed by the intermediate: `STEM.pem`, `STEM.key`
    /// (PEM, for openssl) and `STEM.der`. `dns` empty: no SAN (CN only).
    pub fn leaf(&self, stem: &str, cn: &str, dns: &[&str], days: (i64, i64)) -> Vec<u8> {
        self.issue(stem, cn, dns, days, Role::Server)
    }

    /// A device (client) certificate signed by the intermediate, for mTLS:
    /// `STEM.der` and `STEM.key.der` as the device loads them.
    pub fn client(&self, stem: &str, cn: &str) -> Vec<u8> {
        self.client_valid(stem, cn, (-1, 90))
    }

    /// A client certificate valid over `days` (relative to today).
    pub fn client_valid(&self, stem: &str, cn: &str, days: (i64, i64)) -> Vec<u8> {
        self.issue(stem, cn, &[], days, Role::Client)
    }

    fn issue(&self, stem: &str, cn: &str, dns: &[&str], days: (i64, i64), role: Role) -> Vec<u8> {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new(cn, role, 1);
        spec.dns = dns.iter().map(|d| d.to_string()).collect();
        (spec.not_before, spec.not_after) = window(days.0, days.1);
        let cert = Authority::load(
            &self.int,
            PrivateKey::from_der(&self.int_key.pkcs8_der()).unwrap(),
        )
        .unwrap()
        .sign(&spec, &key)
        .unwrap();
        self.write(&format!("{stem}.pem"), cert.pem().as_bytes());
        self.write(&format!("{stem}.key"), key.pkcs8_pem().as_bytes());
        self.write(&format!("{stem}.der"), &cert.der);
        self.write(&format!("{stem}.key.der"), &key.pkcs8_der());
        cert.der
    }

    /// A leaf made by openssl and signed by the intermediate: `keyalg` is an
    /// `openssl genpkey -algorithm` value, `sigopts` extra `openssl x509 -req`
    /// options (e.g. RSA-PSS padding), `ext` extra extension lines.
    pub fn openssl_leaf(
        &self,
        stem: &str,
        keyalg: &[&str],
        issuer: (&str, &str),
        sigopts: &[&str],
        ext: &str,
    ) -> Vec<u8> {
        let d = &self.dir;
        let key = format!("{stem}.key");
        let mut genpkey = vec!["genpkey", "-out", &key];
        genpkey.extend_from_slice(keyalg);
        openssl_ok(d, &genpkey);
        let csr = format!("{stem}.csr");
        openssl_ok(
            d,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                "/CN=localhost",
                "-out",
                &csr,
            ],
        );
        let extfile = format!("{stem}.ext");
        self.write(
            &extfile,
            format!("subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n{ext}").as_bytes(),
        );
        let pem = format!("{stem}.pem");
        let mut x509 = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            issuer.0,
            "-CAkey",
            issuer.1,
            "-days",
            "90",
            "-set_serial",
            "4242",
            "-extfile",
            &extfile,
            "-out",
            &pem,
        ];
        x509.extend_from_slice(sigopts);
        openssl_ok(d, &x509);
        let der = format!("{stem}.der");
        openssl_ok(d, &["x509", "-in", &pem, "-outform", "DER", "-out", &der]);
        std::fs::read(d.join(der)).unwrap()
    }

    /// `clients-ca.pem`: the intermediate and the root, the CAs a server
    /// demanding a client certificate from this PKI trusts.
    pub fn clients_ca(&self) -> &'static str {
        let both = [self.int.as_slice(), self.root.as_slice()]
            .map(pem)
            .concat();
        self.write("clients-ca.pem", both.as_bytes());
        "clients-ca.pem"
    }

    /// `NAME-int.pem` / `NAME-int.key`, for [`Pki::openssl_leaf`].
    pub fn int_files(&self) -> (String, String) {
        (
            format!("{}-int.pem", self.name),
            format!("{}-int.key", self.name),
        )
    }
}

/// `openssl s_server` presenting `STEM.pem` (+ `chain` as -cert_chain), with
/// `extra` options; it answers each line reversed (-rev) so the mbedTLS
/// peer's request gets a reply.
pub fn serve(dir: &Path, stem: &str, chain: Option<&str>, extra: &[&str]) -> LineServer {
    let cert = format!("{stem}.pem");
    let key = format!("{stem}.key");
    let mut args = vec!["-cert", cert.as_str(), "-key", key.as_str(), "-rev"];
    if let Some(c) = chain {
        args.extend(["-cert_chain", c]);
    }
    args.extend_from_slice(extra);
    openssl_server(dir, &args)
}

/// A self-signed server certificate for `localhost` valid over `days`
/// (relative to now): `STEM.pem`, `STEM.key`, `STEM.der`.
pub fn self_signed(dir: &Path, stem: &str, days: (i64, i64)) -> Vec<u8> {
    let key = PrivateKey::generate(KeyType::P256).unwrap();
    let mut spec = CertSpec::new("localhost", Role::Server, 1);
    spec.dns = vec!["localhost".into()];
    (spec.not_before, spec.not_after) = window(days.0, days.1);
    let cert = issue::self_signed(&spec, &key).unwrap();
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem().as_bytes()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.pkcs8_pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.der")), &cert.der).unwrap();
    cert.der
}

/// An intermediate made by openssl under `NAME-root` with extra extension
/// lines (e.g. a critical nameConstraints): `STEM.pem`, `STEM.key`.
pub fn openssl_int(dir: &Path, root: &str, stem: &str, ext: &str) {
    let key = format!("{stem}.key");
    openssl_ok(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    let csr = format!("{stem}.csr");
    let subj = format!("/CN={stem}");
    openssl_ok(
        dir,
        &["req", "-new", "-key", &key, "-subj", &subj, "-out", &csr],
    );
    let extfile = format!("{stem}.ext");
    std::fs::write(
        dir.join(&extfile),
        format!("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n{ext}"),
    )
    .unwrap();
    let (ca, ca_key, out) = (
        format!("{root}-root.pem"),
        format!("{root}-root.key"),
        format!("{stem}.pem"),
    );
    openssl_ok(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-days",
            "365",
            "-set_serial",
            "77",
            "-extfile",
            &extfile,
            "-out",
            &out,
        ],
    );
}

/// A self-signed RSA-2048 CA made by openssl (an RSA-PSS-signed leaf needs
/// an RSA issuer): `rsa-ca.pem`, `rsa-ca.key`, `rsa-ca.der`.
pub fn rsa_ca(dir: &Path) {
    openssl_ok(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rsa-ca.key",
            "-out",
            "rsa-ca.pem",
            "-subj",
            "/CN=RSA Test Root",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl_ok(
        dir,
        &[
            "x509",
            "-in",
            "rsa-ca.pem",
            "-outform",
            "DER",
            "-out",
            "rsa-ca.der",
        ],
    );
}

/// The test PKI `t` (root valid 20 years, intermediate a year) with the
/// leaves the agreement tables share: `leaf` (SAN localhost), `cnonly` (no
/// SAN), `future` (valid from in 2 days); `old` (an expired intermediate)
/// with `oldleaf`; `other` (an unrelated CA).
pub fn table_pki(dir: &Path) -> Pki {
    let pki = Pki::new(dir, "t", 20 * 365, (-1, 365));
    pki.leaf("leaf", "localhost", &["localhost"], (-1, 90));
    pki.leaf("cnonly", "localhost", &[], (-1, 90));
    pki.leaf("future", "localhost", &["localhost"], (2, 90));
    let old = Pki::new(dir, "old", 20 * 365, (-400, -1));
    old.leaf("oldleaf", "localhost", &["localhost"], (-1, 90));
    Pki::new(dir, "other", 20 * 365, (-1, 365));
    pki
}

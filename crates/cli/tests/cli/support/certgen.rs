//! A seeded generator of certificate chains for the differential test of
//! pki's device rules against the mbedTLS 3.6 device peer. Certificates are
//! built as DER by hand (so every field can vary: version, signature
//! algorithm and its parameters, critical and unknown extensions, curves
//! no PC stack signs with) and signed with aws-lc-rs from small key pools.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---- DER ------------------------------------------------------------------

fn len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        let mut v = vec![0x80 | bytes.len() as u8];
        v.extend(bytes);
        v
    }
}

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(len(content.len()));
    v.extend_from_slice(content);
    v
}

pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut chunk = vec![(a & 0x7f) as u8];
        let mut rest = a >> 7;
        while rest > 0 {
            chunk.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    }
    tlv(0x06, &body)
}

fn int(n: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = n
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.is_empty() || bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

fn bits(content: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(content);
    tlv(0x03, &v)
}

fn time(unix: i64) -> Vec<u8> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    if (1950..2050).contains(&t.year()) {
        let s = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            t.year() % 100,
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        tlv(0x17, s.as_bytes())
    } else {
        let s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        tlv(0x18, s.as_bytes())
    }
}

pub fn name(cn: &str) -> Vec<u8> {
    seq(&[tlv(0x31, &seq(&[oid("2.5.4.3"), tlv(0x0c, cn.as_bytes())]))])
}

// ---- keys -----------------------------------------------------------------

/// Key types the generator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    P521,
    K256,
    Rsa1024,
    Rsa2048,
    Rsa4096,
    Ed25519,
    /// A brainpoolP256r1 public key (a P-256 point under the Brainpool OID):
    /// the device's build cannot parse it, so it never signs.
    Brainpool,
}

pub enum Signer {
    Ec(EcdsaKeyPair, &'static sig::EcdsaSigningAlgorithm),
    Rsa(sig::RsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub struct Key {
    pub kind: KeyKind,
    pub spki: Vec<u8>,
    pub signer: Option<Signer>,
}

fn ec_spki(curve_oid: &str, point: &[u8]) -> Vec<u8> {
    seq(&[
        seq(&[oid("1.2.840.10045.2.1"), oid(curve_oid)]),
        bits(point),
    ])
}

pub fn make_key(kind: KeyKind) -> Key {
    let rng = SystemRandom::new();
    let ec = |alg: &'static sig::EcdsaSigningAlgorithm, curve: &str| {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let spki = ec_spki(curve, kp.public_key().as_ref());
        (kp, spki)
    };
    match kind {
        KeyKind::P256 | KeyKind::P384 | KeyKind::P521 | KeyKind::K256 => {
            let (alg, curve) = match kind {
                KeyKind::P256 => (&sig::ECDSA_P256_SHA256_ASN1_SIGNING, "1.2.840.10045.3.1.7"),
                KeyKind::P384 => (&sig::ECDSA_P384_SHA384_ASN1_SIGNING, "1.3.132.0.34"),
                KeyKind::P521 => (&sig::ECDSA_P521_SHA512_ASN1_SIGNING, "1.3.132.0.35"),
                _ => (&sig::ECDSA_P256K1_SHA256_ASN1_SIGNING, "1.3.132.0.10"),
            };
            let (kp, spki) = ec(alg, curve);
            Key {
                kind,
                spki,
                signer: Some(Signer::Ec(kp, alg)),
            }
        }
        KeyKind::Brainpool => {
            let (_, spki) = ec(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, "1.3.36.3.3.2.8.1.1.7");
            Key {
                kind,
                spki,
                signer: None,
            }
        }
        // aws-lc-rs will not sign with RSA-1024: its public key is enough
        // for a leaf (the device refuses it before any signature matters).
        KeyKind::Rsa1024 => Key {
            kind,
            spki: rsa1024_spki(),
            signer: None,
        },
        KeyKind::Rsa2048 | KeyKind::Rsa4096 => {
            let size = if kind == KeyKind::Rsa2048 {
                KeySize::Rsa2048
            } else {
                KeySize::Rsa4096
            };
            let kp = sig::RsaKeyPair::generate(size).unwrap();
            let spki = seq(&[
                seq(&[oid("1.2.840.113549.1.1.1"), tlv(0x05, &[])]),
                bits(kp.public_key().as_ref()),
            ]);
            // RSA-4096 signs slowly: it is only ever a leaf key here.
            Key {
                kind,
                spki,
                signer: (kind == KeyKind::Rsa2048).then_some(Signer::Rsa(kp)),
            }
        }
        KeyKind::Ed25519 => {
            let kp = Ed25519KeyPair::generate().unwrap();
            let spki = seq(&[seq(&[oid("1.3.101.112")]), bits(kp.public_key().as_ref())]);
            Key {
                kind,
                spki,
                signer: Some(Signer::Ed(kp)),
            }
        }
    }
}

/// An RSA-1024 SubjectPublicKeyInfo, from openssl.
fn rsa1024_spki() -> Vec<u8> {
    let key = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ])
        .output()
        .expect("openssl genpkey");
    let mut child = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl pkey");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&key.stdout).unwrap();
    child.wait_with_output().unwrap().stdout
}

// ---- signatures -----------------------------------------------------------

/// How the issuer signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    EcdsaSha1,
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
    RsaSha1,
    RsaSha256,
    RsaSha384,
    RsaSha512,
    RsaPssSha256,
    Ed25519,
}

impl SigAlg {
    pub fn algorithm_identifier(self) -> Vec<u8> {
        let null = tlv(0x05, &[]);
        match self {
            SigAlg::EcdsaSha1 => seq(&[oid("1.2.840.10045.4.1")]),
            SigAlg::EcdsaSha256 => seq(&[oid("1.2.840.10045.4.3.2")]),
            SigAlg::EcdsaSha384 => seq(&[oid("1.2.840.10045.4.3.3")]),
            SigAlg::EcdsaSha512 => seq(&[oid("1.2.840.10045.4.3.4")]),
            SigAlg::RsaSha1 => seq(&[oid("1.2.840.113549.1.1.5"), null]),
            SigAlg::RsaSha256 => seq(&[oid("1.2.840.113549.1.1.11"), null]),
            SigAlg::RsaSha384 => seq(&[oid("1.2.840.113549.1.1.12"), null]),
            SigAlg::RsaSha512 => seq(&[oid("1.2.840.113549.1.1.13"), null]),
            SigAlg::RsaPssSha256 => {
                let sha256 = seq(&[oid("2.16.840.1.101.3.4.2.1"), null.clone()]);
                seq(&[
                    oid("1.2.840.113549.1.1.10"),
                    seq(&[
                        tlv(0xa0, &sha256),
                        tlv(0xa1, &seq(&[oid("1.2.840.113549.1.1.8"), sha256.clone()])),
                        tlv(0xa2, &int(32)),
                    ]),
                ])
            }
            SigAlg::Ed25519 => seq(&[oid("1.3.101.112")]),
        }
    }

    /// The algorithms `signer` can make.
    pub fn choices(signer: &Signer) -> &'static [SigAlg] {
        match signer {
            Signer::Ec(..) => &[
                SigAlg::EcdsaSha256,
                SigAlg::EcdsaSha256,
                SigAlg::EcdsaSha256,
                SigAlg::EcdsaSha384,
                SigAlg::EcdsaSha512,
                SigAlg::EcdsaSha1,
            ],
            Signer::Rsa(_) => &[
                SigAlg::RsaSha256,
                SigAlg::RsaSha256,
                SigAlg::RsaSha384,
                SigAlg::RsaSha512,
                SigAlg::RsaPssSha256,
                SigAlg::RsaSha1,
            ],
            Signer::Ed(_) => &[SigAlg::Ed25519],
        }
    }
}

fn ecdsa_digest(alg: SigAlg, tbs: &[u8], key_digest: &'static digest::Algorithm) -> digest::Digest {
    let h: Vec<u8> = match alg {
        SigAlg::EcdsaSha1 => digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, tbs)
            .as_ref()
            .to_vec(),
        SigAlg::EcdsaSha256 => digest::digest(&digest::SHA256, tbs).as_ref().to_vec(),
        SigAlg::EcdsaSha384 => digest::digest(&digest::SHA384, tbs).as_ref().to_vec(),
        _ => digest::digest(&digest::SHA512, tbs).as_ref().to_vec(),
    };
    // ECDSA uses the hash's leftmost bits up to the key's size: a shorter
    // hash is the same number with zeros in front.
    let n = key_digest.output_len;
    let fitted: Vec<u8> = if h.len() >= n {
        h[..n].to_vec()
    } else {
        let mut v = vec![0; n - h.len()];
        v.extend(h);
        v
    };
    digest::Digest::import_less_safe(&fitted, key_digest).unwrap()
}

/// Signs `tbs`; an algorithm the signer cannot make exactly (RSA with SHA-1)
/// gives random bytes, a signature that does not verify.
pub fn sign(signer: &Signer, alg: SigAlg, tbs: &[u8], rng: &mut Rng) -> Vec<u8> {
    let sys = SystemRandom::new();
    match signer {
        Signer::Ec(kp, kalg) => {
            let key_digest = if std::ptr::eq(*kalg, &sig::ECDSA_P384_SHA384_ASN1_SIGNING) {
                &digest::SHA384
            } else if std::ptr::eq(*kalg, &sig::ECDSA_P521_SHA512_ASN1_SIGNING) {
                &digest::SHA512
            } else {
                &digest::SHA256
            };
            kp.sign_digest(&ecdsa_digest(alg, tbs, key_digest))
                .unwrap()
                .as_ref()
                .to_vec()
        }
        Signer::Rsa(kp) => {
            let mut out = vec![0; kp.public_modulus_len()];
            let enc: &'static dyn sig::RsaEncoding = match alg {
                SigAlg::RsaSha256 => &sig::RSA_PKCS1_SHA256,
                SigAlg::RsaSha384 => &sig::RSA_PKCS1_SHA384,
                SigAlg::RsaSha512 => &sig::RSA_PKCS1_SHA512,
                SigAlg::RsaPssSha256 => &sig::RSA_PSS_SHA256,
                _ => {
                    return (0..out.len()).map(|_| rng.next() as u8).collect();
                }
            };
            kp.sign(enc, &sys, tbs, &mut out).unwrap();
            out
        }
        Signer::Ed(kp) => kp.sign(tbs).as_ref().to_vec(),
    }
}

// ---- certificates ---------------------------------------------------------

/// One extension: OID, critical, DER value.
pub type Ext = (String, bool, Vec<u8>);

pub struct CertSpec {
    pub version: u8,
    pub serial: u64,
    pub issuer: String,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub extensions: Vec<Ext>,
}

pub fn basic_constraints(ca: bool, path_len: Option<u64>) -> Vec<u8> {
    let mut parts = Vec::new();
    if ca {
        parts.push(tlv(0x01, &[0xff]));
    }
    if let Some(n) = path_len {
        parts.push(int(n));
    }
    seq(&parts)
}

/// keyUsage bits: digitalSignature 0, keyEncipherment 2, keyCertSign 5, cRLSign 6.
pub fn key_usage(bits_set: &[u8]) -> Vec<u8> {
    let mut byte = 0u8;
    for b in bits_set {
        byte |= 0x80 >> b;
    }
    let unused = byte.trailing_zeros().min(7) as u8;
    tlv(0x03, &[unused, byte])
}

pub fn eku(oids: &[&str]) -> Vec<u8> {
    seq(&oids.iter().map(|o| oid(o)).collect::<Vec<_>>())
}

/// SAN entries: ("dns"|"ip"|"uri", value).
pub fn san(entries: &[(&str, String)]) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = entries
        .iter()
        .map(|(kind, v)| match *kind {
            "dns" => tlv(0x82, v.as_bytes()),
            "uri" => tlv(0x86, v.as_bytes()),
            _ => {
                let ip: std::net::IpAddr = v.parse().unwrap();
                match ip {
                    std::net::IpAddr::V4(a) => tlv(0x87, &a.octets()),
                    std::net::IpAddr::V6(a) => tlv(0x87, &a.octets()),
                }
            }
        })
        .collect();
    seq(&parts)
}

pub fn policies(oids: &[&str]) -> Vec<u8> {
    seq(&oids.iter().map(|o| seq(&[oid(o)])).collect::<Vec<_>>())
}

/// Builds and signs a certificate.
pub fn certificate(
    spec: &CertSpec,
    subject_key: &Key,
    issuer: &Signer,
    alg: SigAlg,
    rng: &mut Rng,
) -> Vec<u8> {
    let sig_alg = alg.algorithm_identifier();
    let mut tbs_parts = Vec::new();
    if spec.version > 1 {
        tbs_parts.push(tlv(0xa0, &int(spec.version as u64 - 1)));
    }
    tbs_parts.push(int(spec.serial));
    tbs_parts.push(sig_alg.clone());
    tbs_parts.push(name(&spec.issuer));
    tbs_parts.push(seq(&[time(spec.not_before), time(spec.not_after)]));
    tbs_parts.push(name(&spec.subject));
    tbs_parts.push(subject_key.spki.clone());
    if spec.version == 3 && !spec.extensions.is_empty() {
        let exts: Vec<Vec<u8>> = spec
            .extensions
            .iter()
            .map(|(o, critical, value)| {
                let mut parts = vec![oid(o)];
                if *critical {
                    parts.push(tlv(0x01, &[0xff]));
                }
                parts.push(tlv(0x04, value));
                seq(&parts)
            })
            .collect();
        tbs_parts.push(tlv(0xa3, &seq(&exts)));
    }
    let tbs = seq(&tbs_parts);
    let signature = sign(issuer, alg, &tbs, rng);
    seq(&[tbs, sig_alg, bits(&signature)])
}

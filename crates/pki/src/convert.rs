//! PEM <-> DER conversion and chain splitting, as pure functions.
//!
//! `devtls convert` and `devtls split` are thin shells around these: the CLI
//! reads files, asks for passwords and writes results; everything that
//! decides what the bytes become lives here, where the fuzz tests reach it.

use serde::Serialize;
use time::OffsetDateTime;

use crate::inspect::{self, CertInfo};
use crate::sniff::{self, Encoding, KeyFormat, Kind, Sniffed};
use crate::Error;

/// The name `devtls convert` writes to without `-o`, as the device guide
/// names its files: server.crt -> server.der, server.key -> server.key.der,
/// domain.csr -> domain.csr.der, and back (server.der -> server.crt).
pub fn output_path(input: &std::path::Path, kind: Kind, to: Encoding) -> std::path::PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), e.to_ascii_lowercase()),
        _ => (name.clone(), String::new()),
    };
    let new_name = match to {
        Encoding::Der => match ext.as_str() {
            "key" | "csr" | "req" | "crl" => format!("{name}.der"),
            "crt" | "cer" | "pem" => format!("{stem}.der"),
            _ => format!("{name}.der"),
        },
        Encoding::Pem => {
            let pem_ext = match kind {
                Kind::Certificate => "crt",
                Kind::Csr => "csr",
                Kind::Crl => "crl",
                Kind::PublicKey => "pub.pem",
                _ => "key",
            };
            if ext == "der" || ext == "cer" {
                // server.key.der -> server.key; server.der -> server.crt.
                match stem.rsplit_once('.') {
                    Some((_, inner)) if inner.eq_ignore_ascii_case(pem_ext) => stem,
                    _ => format!("{stem}.{pem_ext}"),
                }
            } else {
                format!("{name}.{pem_ext}")
            }
        }
    };
    input.with_file_name(new_name)
}

/// The result of converting one item.
#[derive(Clone, Serialize)]
pub struct Converted {
    /// What was converted (an encrypted key comes out as the plain key it holds).
    pub kind: Kind,
    /// The encoding written.
    pub encoding: Encoding,
    /// The bytes to write.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// A private key: write it 0600.
    pub secret: bool,
    /// The input was an encrypted key that was decrypted.
    pub decrypted: bool,
    /// Bytes after the structure in the input that were left out (mbedTLS refuses keys with them).
    pub dropped_trailing_bytes: usize,
}

impl std::fmt::Debug for Converted {
    // The bytes may be a private key: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converted")
            .field("kind", &self.kind)
            .field("encoding", &self.encoding)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Whether converting this file needs a password (an encrypted key).
pub fn needs_password(sniffed: &Sniffed) -> bool {
    sniffed
        .items
        .iter()
        .any(|i| matches!(i.kind, Kind::EncryptedPrivateKey | Kind::LegacyEncryptedKey))
}

/// The one item a conversion works on, or why there is not exactly one.
pub fn single_item(sniffed: &Sniffed) -> Result<&sniff::Item, Error> {
    match sniffed.items.as_slice() {
        [one] => Ok(one),
        items if items.iter().all(|i| i.kind == Kind::Certificate) => Err(Error::Unsupported(format!(
            "holds {} certificates (a chain or bundle); converting would keep only the first, so run \
             `devtls split` on it to get one DER file per certificate",
            items.len()
        ))),
        items => Err(Error::Unsupported(format!(
            "holds {} items ({}); convert works on a file with one item: save each PEM block to its \
             own file (certificates only: `devtls split`)",
            items.len(),
            items
                .iter()
                .map(|i| i.kind.describe())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Converts the one item in `raw` (already sniffed as `sniffed`) to `to`.
///
/// Encrypted keys are decrypted with `password` (PKCS#8 PBES2, and legacy
/// OpenSSL `Proc-Type: 4,ENCRYPTED` PEM with DES-EDE3-CBC, DES-CBC or
/// AES-CBC) because no device loads an encrypted key. Keys keep their
/// structure (PKCS#8, SEC1 or PKCS#1 all load on the device) and lose any
/// trailing bytes.
pub fn convert(
    raw: &[u8],
    sniffed: &Sniffed,
    to: Encoding,
    password: Option<&[u8]>,
) -> Result<Converted, Error> {
    let item = single_item(sniffed)?;
    let need_password = || {
        Error::Password(
            "is an encrypted private key; give its password (--password-file FILE, or run in a terminal to be asked)"
                .into(),
        )
    };
    let (kind, der, decrypted) = match item.kind {
        Kind::EncryptedPrivateKey => {
            let password = password.ok_or_else(need_password)?;
            (
                Kind::PrivateKey(KeyFormat::Pkcs8),
                decrypt_pkcs8(&item.der, password)?,
                true,
            )
        }
        Kind::LegacyEncryptedKey => {
            let password = password.ok_or_else(need_password)?;
            let (format, der) = decrypt_legacy_pem(raw, password)?;
            (Kind::PrivateKey(format), der, true)
        }
        kind => (kind, item.der.clone(), false),
    };
    let bytes = match to {
        Encoding::Der => der,
        Encoding::Pem => pem_encode(kind.pem_label(), der).into_bytes(),
    };
    Ok(Converted {
        kind,
        encoding: to,
        bytes,
        secret: kind.is_secret(),
        decrypted,
        dropped_trailing_bytes: item.trailing_bytes,
    })
}

/// Decrypts a DER EncryptedPrivateKeyInfo into PKCS#8 DER.
pub fn decrypt_pkcs8(der: &[u8], password: &[u8]) -> Result<Vec<u8>, Error> {
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der)
        .map_err(|e| Error::Malformed(format!("a damaged encrypted private key ({e})")))?;
    let plain = info.decrypt(password).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::UnsupportedAlgorithm { oid }) => {
            Error::Unsupported(format!(
                "an encrypted private key with an encryption scheme devtls cannot decrypt ({oid}); \
                 re-encrypt it with PBES2/AES (`openssl pkcs8 -topk8 -v2 aes-256-cbc`) or decrypt it where it was made"
            ))
        }
        _ => wrong_password(),
    })?;
    let plain = plain.as_bytes();
    // A wrong password can by chance yield valid padding; the result must be a key.
    // (A damaged IV or salt can also decrypt to a different structure: PKCS#8 only.)
    match sniff::classify(plain) {
        Some(Kind::PrivateKey(KeyFormat::Pkcs8))
            if crate::der::element_len(plain) == Some(plain.len()) =>
        {
            Ok(plain.to_vec())
        }
        _ => Err(wrong_password()),
    }
}

fn wrong_password() -> Error {
    Error::Password(
        "the password does not decrypt this private key; check the password (a password file's \
         first line is used, without its line ending)"
            .into(),
    )
}

/// Decrypts a legacy OpenSSL encrypted PEM key (`Proc-Type: 4,ENCRYPTED` with
/// `DEK-Info`), returning its inner format and DER.
pub fn decrypt_legacy_pem(raw: &[u8], password: &[u8]) -> Result<(KeyFormat, Vec<u8>), Error> {
    use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};

    let blocks = pem::parse_many(raw)
        .map_err(|e| Error::Malformed(format!("PEM text that does not decode ({e})")))?;
    let block = blocks
        .iter()
        .find(|b| {
            b.headers()
                .get("Proc-Type")
                .is_some_and(|v| v.contains("ENCRYPTED"))
        })
        .ok_or_else(|| Error::Malformed("no Proc-Type: 4,ENCRYPTED block".into()))?;
    let format = match block.tag() {
        "RSA PRIVATE KEY" => KeyFormat::Pkcs1,
        "EC PRIVATE KEY" => KeyFormat::Sec1,
        _ => KeyFormat::Pkcs8,
    };
    let dek = block.headers().get("DEK-Info").ok_or_else(|| {
        Error::Malformed(
            "a legacy encrypted key without its DEK-Info line; the file was edited".into(),
        )
    })?;
    let (cipher, iv_hex) = dek
        .split_once(',')
        .ok_or_else(|| Error::Malformed(format!("a DEK-Info line devtls cannot read ('{dek}')")))?;
    let iv = hex::decode(iv_hex.trim())
        .map_err(|_| Error::Malformed(format!("a DEK-Info IV that is not hex ('{dek}')")))?;
    let cipher = cipher.trim().to_ascii_uppercase();
    let (key_len, iv_len) = match cipher.as_str() {
        "AES-128-CBC" => (16, 16),
        "AES-192-CBC" => (24, 16),
        "AES-256-CBC" => (32, 16),
        "DES-EDE3-CBC" => (24, 8),
        "DES-CBC" => (8, 8),
        other => {
            return Err(Error::Unsupported(format!(
                "a legacy encrypted key using {other}, which devtls cannot decrypt; decrypt it with the \
                 tool that made it, or re-encrypt it as PKCS#8 with AES"
            )))
        }
    };
    if iv.len() != iv_len {
        return Err(Error::Malformed(format!(
            "a DEK-Info IV of {} bytes where {cipher} needs {iv_len}",
            iv.len()
        )));
    }
    let key = evp_bytes_to_key(password, &iv[..8], key_len);
    let data = block.contents();
    // Every legacy cipher is CBC with PKCS#7 padding; a wrong password mostly fails the padding.
    macro_rules! cbc_decrypt {
        ($cipher:ty) => {
            cbc::Decryptor::<$cipher>::new_from_slices(&key, &iv)
                .map_err(|_| wrong_password())?
                .decrypt_padded_vec::<Pkcs7>(data)
                .map_err(|_| wrong_password())?
        };
    }
    let plain = match cipher.as_str() {
        "AES-128-CBC" => cbc_decrypt!(aes::Aes128),
        "AES-192-CBC" => cbc_decrypt!(aes::Aes192),
        "AES-256-CBC" => cbc_decrypt!(aes::Aes256),
        "DES-EDE3-CBC" => cbc_decrypt!(des::TdesEde3),
        _ => cbc_decrypt!(des::Des),
    };
    // The plaintext must be a complete key of the structure the PEM label names.
    match sniff::classify(&plain) {
        Some(Kind::PrivateKey(found))
            if found == format && crate::der::element_len(&plain) == Some(plain.len()) =>
        {
            Ok((found, plain))
        }
        _ => Err(wrong_password()),
    }
}

/// OpenSSL's EVP_BytesToKey with MD5 and one iteration: the legacy PEM key derivation.
fn evp_bytes_to_key(password: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut out = Vec::with_capacity(len + 16);
    let mut previous: Vec<u8> = Vec::new();
    while out.len() < len {
        let mut h = Md5::new();
        h.update(&previous);
        h.update(password);
        h.update(salt);
        previous = h.finalize().to_vec();
        out.extend_from_slice(&previous);
    }
    out.truncate(len);
    out
}

/// The place of a certificate in a chain, as `split` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainRole {
    /// The end-entity certificate a server or client presents.
    Leaf,
    /// A CA between the leaf and the root; 1 is the one that signed the leaf.
    Intermediate(usize),
    /// A self-signed CA certificate: the trust anchor.
    Root,
    /// A certificate that does not chain to the others in the file.
    Extra(usize),
}

impl ChainRole {
    /// The file name `split` writes it to.
    pub fn file_name(self) -> String {
        match self {
            ChainRole::Leaf => "leaf.der".into(),
            ChainRole::Intermediate(n) => format!("intermediate-{n}.der"),
            ChainRole::Root => "root.der".into(),
            ChainRole::Extra(n) => format!("extra-{n}.der"),
        }
    }
}

/// One certificate of a split chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainPart {
    /// Its role, which also gives its file name.
    pub role: ChainRole,
    /// The file name to write.
    pub file_name: String,
    /// Its position in the input file, from 1.
    pub position: usize,
    /// The certificate, inspected.
    pub info: CertInfo,
    /// The file name of the part that signed it, when that is in the input.
    pub signed_by: Option<String>,
    /// The DER bytes.
    #[serde(skip)]
    pub der: Vec<u8>,
}

/// PEM with `\n` line endings, as OpenSSL writes it on every platform.
pub(crate) fn pem_encode(label: &str, der: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Orders the certificates of a bundle (certbot's fullchain.pem or chain.pem,
/// a commercial CA's .ca-bundle, concatenated DER) from the leaf up, naming
/// each by its role. Works with whatever subset of the chain the file holds.
pub fn split_chain(sniffed: &Sniffed, at: OffsetDateTime) -> Result<Vec<ChainPart>, Error> {
    if let Some(other) = sniffed.items.iter().find(|i| i.kind != Kind::Certificate) {
        let has_certs = sniffed.items.iter().any(|i| i.kind == Kind::Certificate);
        return Err(Error::Unsupported(format!(
            "holds a {}{}; split works on certificate bundles only (use `devtls convert` for {})",
            other.kind.describe(),
            if has_certs {
                " besides certificates"
            } else {
                ", not certificates"
            },
            if other.kind.is_secret() {
                "keys"
            } else {
                "single items"
            },
        )));
    }
    let certs: Vec<&[u8]> = sniffed.items.iter().map(|i| i.der.as_slice()).collect();
    let infos = certs
        .iter()
        .enumerate()
        .map(|(i, der)| {
            inspect::certificate(der, at)
                .map_err(|e| Error::Malformed(format!("certificate {} does not parse: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = certs.len();
    // parent[i] = the certificate in the file that signed certificate i.
    let parent: Vec<Option<usize>> = (0..n)
        .map(|i| {
            if infos[i].self_signed {
                return None;
            }
            let by_signature = (0..n).find(|&j| j != i && inspect::signs(certs[j], certs[i]));
            // Fall back to names for signature algorithms the verifier lacks (e.g. P-521).
            by_signature.or_else(|| {
                (0..n).find(|&j| j != i && infos[j].subject == infos[i].issuer && infos[j].is_ca())
            })
        })
        .collect();
    let mut placed = vec![false; n];
    let mut order: Vec<(usize, ChainRole)> = Vec::new();
    let mut extra = 0;
    // Walk up from each bottom certificate (one nobody else names as parent), file order first.
    let mut main_chain_done = false;
    let bottoms: Vec<usize> = (0..n).filter(|&i| !parent.contains(&Some(i))).collect();
    let starts = bottoms.iter().copied().chain(0..n);
    for start in starts {
        if placed[start] {
            continue;
        }
        let mut walk = vec![start];
        let mut cur = start;
        while let Some(p) = parent[cur] {
            if walk.contains(&p) || placed[p] {
                break;
            }
            walk.push(p);
            cur = p;
        }
        let mut intermediate = 0;
        for (step, &i) in walk.iter().enumerate() {
            placed[i] = true;
            let role = if main_chain_done {
                extra += 1;
                ChainRole::Extra(extra)
            } else if infos[i].self_signed && (infos[i].is_ca() || step > 0) {
                ChainRole::Root
            } else if step == 0 && !infos[i].is_ca() {
                ChainRole::Leaf
            } else {
                intermediate += 1;
                ChainRole::Intermediate(intermediate)
            };
            order.push((i, role));
        }
        main_chain_done = true;
    }
    let name_of = |i: usize| {
        order
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, r)| r.file_name())
    };
    Ok(order
        .iter()
        .map(|&(i, role)| ChainPart {
            role,
            file_name: role.file_name(),
            position: i + 1,
            info: infos[i].clone(),
            signed_by: parent[i].and_then(name_of),
            der: certs[i].to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_names_follow_the_guide() {
        use std::path::Path;
        let key = Kind::PrivateKey(KeyFormat::Pkcs8);
        let cases = [
            ("server.crt", Kind::Certificate, Encoding::Der, "server.der"),
            ("server.key", key, Encoding::Der, "server.key.der"),
            ("privkey.pem", key, Encoding::Der, "privkey.der"),
            ("domain.csr", Kind::Csr, Encoding::Der, "domain.csr.der"),
            ("server.der", Kind::Certificate, Encoding::Pem, "server.crt"),
            ("server.key.der", key, Encoding::Pem, "server.key"),
            ("domain.csr.der", Kind::Csr, Encoding::Pem, "domain.csr"),
            ("dir/ca.crl", Kind::Crl, Encoding::Der, "dir/ca.crl.der"),
        ];
        for (input, kind, to, want) in cases {
            assert_eq!(
                output_path(Path::new(input), kind, to),
                Path::new(want),
                "{input}"
            );
        }
    }

    use super::*;
    use crate::issue::{self, Authority, CertSpec, Role};
    use crate::keys::{KeyType, PrivateKey};
    use crate::sniff::sniff;

    #[test]
    fn evp_bytes_to_key_matches_openssl() {
        // `openssl enc -aes-128-cbc -k password -S 0102030405060708 -md md5 -P`
        let key = evp_bytes_to_key(b"password", &[1, 2, 3, 4, 5, 6, 7, 8], 16);
        assert_eq!(hex::encode_upper(key), "E7B0971E52CA5CC8D0539FB3412F6316");
    }

    #[test]
    fn certificates_and_keys_round_trip_between_pem_and_der() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let cert = issue::self_signed(&CertSpec::new("x", Role::Server, 5), &key).unwrap();
        let sniffed = sniff(cert.pem().as_bytes()).unwrap();
        let der = convert(cert.pem().as_bytes(), &sniffed, Encoding::Der, None).unwrap();
        assert_eq!(der.bytes, cert.der);
        assert!(!der.secret);
        let back = convert(&der.bytes, &sniff(&der.bytes).unwrap(), Encoding::Pem, None).unwrap();
        assert_eq!(String::from_utf8(back.bytes).unwrap(), cert.pem());

        let mut key_der = key.pkcs8_der();
        key_der.extend([0, 0, 0]);
        let out = convert(&key_der, &sniff(&key_der).unwrap(), Encoding::Der, None).unwrap();
        assert_eq!(out.bytes, key.pkcs8_der(), "trailing bytes dropped");
        assert_eq!(out.dropped_trailing_bytes, 3);
        assert!(out.secret);
    }

    #[test]
    fn a_chain_is_refused_by_convert_and_ordered_by_split() {
        let root_key = PrivateKey::generate(KeyType::P256).unwrap();
        let root = issue::self_signed_ca(&CertSpec::new("Root", Role::Ca, 30), &root_key).unwrap();
        let root_ca = Authority::load(&root.der, root_key).unwrap();
        let int_key = PrivateKey::generate(KeyType::P256).unwrap();
        let int = root_ca
            .sign(&CertSpec::new("Intermediate", Role::Ca, 30), &int_key)
            .unwrap();
        let int_ca = Authority::load(&int.der, int_key).unwrap();
        let leaf_key = PrivateKey::generate(KeyType::P256).unwrap();
        let leaf = int_ca
            .sign(&CertSpec::new("leaf", Role::Server, 30), &leaf_key)
            .unwrap();
        // Out of order on purpose, root included.
        let bundle = format!("{}{}{}", int.pem(), leaf.pem(), root.pem());
        let sniffed = sniff(bundle.as_bytes()).unwrap();
        let err = convert(bundle.as_bytes(), &sniffed, Encoding::Der, None).unwrap_err();
        assert!(err.to_string().contains("devtls split"), "{err}");
        let parts = split_chain(&sniffed, OffsetDateTime::now_utc()).unwrap();
        let names: Vec<_> = parts.iter().map(|p| p.file_name.as_str()).collect();
        assert_eq!(names, ["leaf.der", "intermediate-1.der", "root.der"]);
        assert_eq!(parts[0].der, leaf.der);
        assert_eq!(parts[0].signed_by.as_deref(), Some("intermediate-1.der"));
        assert_eq!(parts[1].signed_by.as_deref(), Some("root.der"));
        assert_eq!(parts[2].signed_by, None);
        // A .ca-bundle: intermediates only, no leaf.
        let sniffed = sniff(int.pem().as_bytes()).unwrap();
        let parts = split_chain(&sniffed, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(parts[0].role, ChainRole::Intermediate(1));
    }
}

//! The device's own files (`doctor --files`): every file is either loaded as
//! the device loads it or reported in the device's words. Keys go through
//! [`keys::load_key`], certificates through the parser rules of
//! [`certs`]; a certificate is the device's own when a key is meant for it
//! (same stem, or the same public key), else a trust anchor. A PEM file
//! whose DER twin is beside it (`server.crt` next to `server.der`, as
//! `devtls new` and `quickstart` write them) is the PC's copy: the device
//! loads the twin, so the PEM file is listed, never judged.

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;

use super::keys::{self, Candidate, KeyRefusal, LoadedKey, Pairing};
use super::{certs, sizes};
use crate::chain::Cert;
use crate::device_error::{self, flags, verify_text};
use crate::profile::Profile;
use crate::sniff::{self, Encoding, Kind, Sniffed};
use crate::verify::{Failure, Kind as FailureKind};

/// One file as read by the caller: its name and its bytes, or why it could not be read.
#[derive(Debug, Clone)]
pub struct DeviceFile {
    /// The name to report it under.
    pub name: String,
    /// Its bytes, or the read error in words.
    pub bytes: Result<Vec<u8>, String>,
}

/// What a file is to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FileUse {
    /// A private key (`load_cert_chain`'s key).
    #[serde(rename = "private key")]
    PrivateKey,
    /// The device's own certificate (`load_cert_chain`'s certificate).
    #[serde(rename = "the device's certificate")]
    OwnCertificate,
    /// A trust anchor (`load_verify_locations`).
    #[serde(rename = "trust anchor")]
    TrustAnchor,
    /// Something the device cannot load (reported as a failure).
    #[serde(rename = "does not load")]
    Unloadable,
    /// A PEM copy, for the PC, of a DER file beside it that the device loads.
    #[serde(rename = "the PC's copy")]
    PcCopy,
}

impl FileUse {
    /// In words, for the listing.
    pub fn words(self) -> &'static str {
        match self {
            FileUse::PrivateKey => "private key",
            FileUse::OwnCertificate => "the device's certificate",
            FileUse::TrustAnchor => "trust anchor",
            FileUse::Unloadable => "does not load",
            FileUse::PcCopy => "the PC's copy (PEM) of",
        }
    }
}

/// One file and what it is.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// The file's name.
    pub file: String,
    /// What it is to the device.
    pub role: FileUse,
    /// The certificate's subject, for certificates.
    pub subject: Option<String>,
    /// For the PC's PEM copy: the DER file the device loads instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<String>,
}

/// The verdict on a set of device files.
#[derive(Debug, Clone, Serialize)]
pub struct FilesVerdict {
    /// Every file loads and nothing stops a handshake.
    pub works: bool,
    /// The files, each with its role.
    pub files: Vec<FileEntry>,
    /// What the device would print, with the cause and the fix.
    pub failures: Vec<Failure>,
    /// Things worth knowing that do not fail.
    pub notes: Vec<String>,
}

/// Whether a file that does not parse was meant for the device: its name
/// says key or certificate (boot.py and README beside them are not).
fn meant_for_device(name: &str) -> Option<bool> {
    let lower = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    let key = lower.contains("key");
    let pki = [".der", ".pem", ".crt", ".cer", ".key"]
        .iter()
        .any(|ext| lower.ends_with(ext));
    (key || pki).then_some(key)
}

fn failure(
    kind: FailureKind,
    says: String,
    err: Option<device_error::DeviceError>,
    file: &str,
    why: String,
    fix: String,
) -> Failure {
    Failure::about_file(kind, says, err, file, why, fix)
}

/// The device's key `key_file` does not belong to its certificate
/// `cert_file`. `load_cert_chain` takes the pair without a word (measured);
/// the handshake fails once the server checks the CertificateVerify signed
/// with the wrong key, with one of [`device_error::KEY_MISMATCH`]'s
/// outcomes (docs/device-behaviour.md).
pub fn key_mismatch(key_file: &str, cert_file: &str) -> Failure {
    failure(
        FailureKind::KeyMismatch,
        String::new(),
        None,
        key_file,
        format!(
            "this key does not belong to {cert_file} (another public key): load_cert_chain takes \
             them, and the server refuses the handshake signed with the wrong key"
        ),
        format!("copy the key made with {cert_file} (or issue a new certificate for this key)"),
    )
    .with_outcomes(device_error::KEY_MISMATCH)
}

/// Whether a key (its public key's SHA-256, when known) belongs to a
/// certificate (its public key's SHA-256).
pub fn key_belongs(key_spki: Option<&str>, cert_spki: &str) -> bool {
    key_spki.is_none_or(|k| k == cert_spki)
}

fn key_failure(file: &str, refusal: &KeyRefusal) -> Failure {
    failure(
        FailureKind::KeyUnloadable,
        refusal.device_says(),
        None,
        file,
        refusal.why(),
        refusal.fix(file),
    )
}

fn cert_failure(
    file: &str,
    why: String,
    fix: String,
    err: Option<device_error::DeviceError>,
) -> Failure {
    failure(
        FailureKind::CertUnloadable,
        format!("ValueError: {}", verify_text::INVALID_CERT),
        err,
        file,
        why,
        fix,
    )
}

/// A certificate file as the device loads it (`load_verify_locations` or
/// `load_cert_chain`): the certificate it keeps, and notes on what it left.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// The first certificate of the file, parsed as the device parses it.
    pub cert: Cert,
    /// What the device silently leaves out (certificates after the first).
    pub notes: Vec<String>,
}

/// Loads the certificate file `name` (sniffed: its first item is a
/// certificate) as the device does: an encoding it reads, only the first of
/// back-to-back DER certificates, and the X.509 parser's refusals. A file the
/// device does not load is a [`Failure`] of `kind` in the device's words.
pub fn load_certificate(
    profile: &Profile,
    name: &str,
    sniffed: &Sniffed,
    kind: FailureKind,
) -> Result<LoadedCert, Box<Failure>> {
    let unloadable = |why: String, fix: String, err: Option<device_error::DeviceError>| {
        let mut f = cert_failure(name, why, fix, err);
        f.kind = kind;
        Box::new(f)
    };
    let Some(first) = sniffed.items.first() else {
        return Err(unloadable(
            "nothing in it".into(),
            "replace it with an intact DER copy".into(),
            None,
        ));
    };
    if !super::loads_encoding(profile, first.encoding) {
        return Err(unloadable(
            "PEM; the device reads DER only".into(),
            format!("convert it: devtls convert {name} --to der"),
            Some(device_error::INVALID_CERT_PEM),
        ));
    }
    let mut notes = Vec::new();
    if sniffed.concatenated_der {
        notes.push(format!(
            "{name}: several DER certificates back to back; the device loads only the first"
        ));
    }
    match super::path::load_anchor(profile, &first.der) {
        Ok(cert) => Ok(LoadedCert { cert, notes }),
        Err(super::path::AnchorRefusal::Refused(_, refusal)) => Err(unloadable(
            refusal.why(),
            refusal.fix(),
            Some(refusal.error()),
        )),
        Err(super::path::AnchorRefusal::NotDer(e)) => Err(unloadable(
            format!("it is not a certificate the device can parse: {e}"),
            "replace it with an intact DER copy".into(),
            None,
        )),
    }
}

/// Checks the device's files as the device loads them.
pub fn check(files: &[DeviceFile], profile: &Profile, time: OffsetDateTime) -> FilesVerdict {
    let mut entries = Vec::new();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut loaded_keys: Vec<(&str, LoadedKey)> = Vec::new();
    let mut certs: Vec<(&str, Cert)> = Vec::new();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let sniffs: Vec<Result<Sniffed, String>> = files
        .iter()
        .map(|f| match &f.bytes {
            Err(e) => Err(format!("the file cannot be read: {e}")),
            Ok(b) => sniff::sniff(b).map_err(|e| e.to_string()),
        })
        .collect();
    for (f, sniffed) in files.iter().zip(&sniffs) {
        let name = f.name.as_str();
        let unloadable = |entries: &mut Vec<FileEntry>| {
            entries.push(FileEntry {
                file: name.to_string(),
                role: FileUse::Unloadable,
                subject: None,
                copy_of: None,
            })
        };
        let sniffed = match sniffed {
            Ok(s) if !s.items.is_empty() => s,
            Ok(_) | Err(_) => {
                let reason = sniffed
                    .clone()
                    .err()
                    .unwrap_or_else(|| "nothing in it".into());
                match meant_for_device(name) {
                    Some(true) => {
                        failures.push(key_failure(name, &KeyRefusal::Unparseable { reason }));
                        unloadable(&mut entries);
                    }
                    Some(false) => {
                        failures.push(cert_failure(
                            name,
                            format!("it is not a certificate the device can parse: {reason}"),
                            "replace it with an intact DER copy (devtls anchor HOST -o ca.der for an anchor)".into(),
                            None,
                        ));
                        unloadable(&mut entries);
                    }
                    None => notes.push(format!("{name}: not a key or certificate; left alone")),
                }
                continue;
            }
        };
        let first = &sniffed.items[0];
        if let Some(twin) = der_twin(first, &names, &sniffs) {
            entries.push(FileEntry {
                file: name.to_string(),
                role: FileUse::PcCopy,
                subject: None,
                copy_of: Some(twin.to_string()),
            });
            continue;
        }
        if first.kind.is_secret() {
            match keys::load_key(profile, sniffed) {
                Ok(key) => {
                    if key.trailing_bytes > 0 {
                        notes.push(format!(
                            "{name}: {} bytes after the key structure; the device loads it, but it is not canonical DER ({} rewrites it)",
                            key.trailing_bytes,
                            convert_command(name, first.kind, &names)
                        ));
                    }
                    entries.push(FileEntry {
                        file: name.to_string(),
                        role: FileUse::PrivateKey,
                        subject: None,
                        copy_of: None,
                    });
                    loaded_keys.push((name, key));
                }
                Err(refusal) => {
                    let mut f = key_failure(name, &refusal);
                    if matches!(
                        refusal,
                        KeyRefusal::Pem | KeyRefusal::Encrypted | KeyRefusal::TrailingBytes { .. }
                    ) {
                        f.fix = format!(
                            "write it as plain DER: {}",
                            convert_command(name, first.kind, &names)
                        );
                    }
                    failures.push(f);
                    unloadable(&mut entries);
                }
            }
            continue;
        }
        if first.kind != Kind::Certificate {
            notes.push(format!(
                "{name}: a {}, which the device does not load",
                first.kind.describe()
            ));
            continue;
        }
        match load_certificate(profile, name, sniffed, FailureKind::CertUnloadable) {
            Ok(loaded) => {
                notes.extend(loaded.notes);
                certs.push((name, loaded.cert));
            }
            Err(mut f) => {
                if !super::loads_encoding(profile, first.encoding) {
                    f.fix = format!("convert it: {}", convert_command(name, first.kind, &names));
                }
                failures.push(*f);
                unloadable(&mut entries);
            }
        }
    }
    if files.is_empty() || (entries.is_empty() && failures.is_empty()) {
        notes.push("no certificate or key files".into());
    }

    // Pair keys with certificates; a certificate a key is meant for is the device's own.
    let candidates: Vec<Candidate<'_>> = certs
        .iter()
        .map(|(name, c)| Candidate {
            stem: keys::stem(name),
            public_key_sha256: &c.info.public_key_sha256,
            is_ca: c.info.is_ca(),
        })
        .collect();
    let mut own = vec![false; certs.len()];
    for (name, key) in &loaded_keys {
        match keys::pair(
            keys::stem(name),
            key.public_key_sha256.as_deref(),
            &candidates,
        ) {
            Pairing::Matches(i) => own[i] = true,
            Pairing::Mismatch(i) => {
                own[i] = true;
                failures.push(key_mismatch(name, certs[i].0));
            }
            Pairing::Unpaired => failures.push(failure(
                FailureKind::KeyMismatch,
                device_error::FATAL_ALERT.as_oserror(),
                Some(device_error::FATAL_ALERT),
                name,
                "no certificate here goes with this key".into(),
                "copy the certificate made with this key (e.g. client.der beside client.key.der)"
                    .into(),
            )),
        }
    }
    for ((name, c), own) in certs.iter().zip(own) {
        entries.push(FileEntry {
            file: name.to_string(),
            role: if own {
                FileUse::OwnCertificate
            } else {
                FileUse::TrustAnchor
            },
            subject: Some(c.subject().to_string()),
            copy_of: None,
        });
        if own {
            own_rules(name, c, profile, time, &mut failures);
        } else {
            anchor_rules(name, c, profile, time, &mut failures);
        }
    }
    FilesVerdict {
        works: failures.is_empty(),
        files: entries,
        failures,
        notes,
    }
}

/// The DER file among `names` holding what the PEM item `item` holds: then
/// `item`'s file is the PC's copy of it. `None` for DER items and for PEM
/// without a twin.
fn der_twin<'a>(
    item: &sniff::Item,
    names: &[&'a str],
    sniffs: &[Result<Sniffed, String>],
) -> Option<&'a str> {
    if item.encoding != Encoding::Pem {
        return None;
    }
    names.iter().zip(sniffs).find_map(|(name, s)| {
        let other = s.as_ref().ok()?.items.first()?;
        (other.encoding == Encoding::Der && other.der == item.der).then_some(*name)
    })
}

/// The `devtls convert` command that writes `name` as DER and works when
/// pasted: to the name convert picks itself, or, when a file of that name is
/// already among `names` (convert never overwrites), to a free one with `-o`.
pub fn convert_command(name: &str, kind: Kind, names: &[&str]) -> String {
    let default = crate::convert::output_path(Path::new(name), kind, Encoding::Der);
    let taken = |p: &Path| names.iter().any(|n| Path::new(n) == p);
    if !taken(&default) {
        return format!("devtls convert {name} --to der");
    }
    let file = default
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, rest) = file.split_once('.').unwrap_or((&file, "der"));
    let free = (2..)
        .map(|n| default.with_file_name(format!("{stem}-{n}.{rest}")))
        .find(|p| !taken(p))
        .expect("names are finite");
    format!("devtls convert {name} --to der -o {}", free.display())
}

/// The device's own certificate: the peer checks its dates; the device must fit it in its output buffer.
fn own_rules(name: &str, c: &Cert, p: &Profile, time: OffsetDateTime, out: &mut Vec<Failure>) {
    let (expired, future) = certs::validity(c, time);
    if expired || future {
        out.push(failure(
            if expired { FailureKind::Expired } else { FailureKind::NotYetValid },
            device_error::FATAL_ALERT.as_oserror(),
            Some(device_error::FATAL_ALERT),
            name,
            format!(
                "the device's certificate is valid {} {} and the clock reads {}: the server refuses it",
                if expired { "until" } else { "from" },
                if expired { c.not_after().date() } else { c.not_before().date() },
                time.date()
            ),
            if expired {
                "issue the device a new certificate".into()
            } else {
                "set the device's clock (ntptime.settime()), or reissue with an earlier notBefore".into()
            },
        ));
    }
    let len = sizes::certificate_message_len([c.der.len()]);
    if !sizes::fits_output(p, len) {
        out.push(failure(
            FailureKind::MessageTooLarge,
            device_error::BUFFER_TOO_SMALL.as_oserror(),
            Some(device_error::BUFFER_TOO_SMALL),
            name,
            format!(
                "sent by the device, it makes a {len}-byte Certificate message, over its {}-byte output buffer",
                p.output_buffer
            ),
            "reissue it smaller: an ECDSA P-256 key and few names".into(),
        ));
    }
}

/// A trust anchor: its key, its dates, and that it can anchor anything.
fn anchor_rules(name: &str, c: &Cert, p: &Profile, time: OffsetDateTime, out: &mut Vec<Failure>) {
    for problem in certs::anchor_problems(p, c, time) {
        let says = flags::value_error(problem.flag());
        let (kind, why, fix) = match &problem {
            certs::AnchorProblem::Key(k) => (
                FailureKind::BadKey,
                format!("the anchor holds {}", k.why()),
                "choose an anchor with an ECDSA P-256/P-384 key or RSA of at least 2048 bits".to_string(),
            ),
            certs::AnchorProblem::Expired => (
                FailureKind::Expired,
                format!("the anchor expired on {}", c.not_after().date()),
                "fetch a current anchor: devtls anchor HOST".into(),
            ),
            certs::AnchorProblem::NotYetValid => (
                FailureKind::NotYetValid,
                format!("the anchor is valid from {}, after the device's clock", c.not_before().date()),
                "set the device's clock with ntptime.settime() before connecting".into(),
            ),
            certs::AnchorProblem::CannotIssue => (
                FailureKind::NotTrusted,
                "the anchor is a CA-issued end-entity certificate; the device trusts a pinned leaf only when it is self-signed".into(),
                "use the CA certificate as the anchor: devtls anchor HOST".into(),
            ),
        };
        out.push(failure(
            kind,
            says,
            Some(device_error::CERT_VERIFY_FAILED),
            name,
            why,
            fix,
        ));
    }
}

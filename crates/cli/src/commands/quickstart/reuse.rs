//! What an earlier `devtls quickstart` left in the folder: its own files,
//! still usable (then the run reuses them, so the README's first command
//! can be run again), or something it must not touch (then the run picks a
//! fresh folder, or asks for --force when the user named the folder).
//! Keys are never overwritten without --force.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use devtls_pki::chain::Cert;
use devtls_pki::lint::{self, Input, LintRole, Options, Severity};
use devtls_pki::profile::Profile;
use devtls_pki::sniff::{Encoding, Kind, Sniffed};
use time::OffsetDateTime;

/// The files quickstart writes, PEM (for the PC) beside its DER twin (for the device).
pub const FILES: [&str; 8] = [
    "server.key",
    "server.crt",
    "server.der",
    "server.key.der",
    "client.key",
    "client.crt",
    "client.der",
    "client.key.der",
];

/// The device's files of a usable earlier run.
pub struct Reusable {
    pub server_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
    pub client_der: Vec<u8>,
    pub client_key_der: Vec<u8>,
    /// The earlier of the two certificates' notAfter.
    pub valid_until: OffsetDateTime,
}

/// What the folder holds.
pub enum Found {
    /// None of quickstart's files: write them.
    Nothing,
    /// quickstart's own files, valid and lint-clean: use them as they are.
    Reusable(Box<Reusable>),
    /// Files quickstart will not use, and why; they are left as they are.
    Unusable(String),
}

/// Looks at `dir`: the server certificate must name localhost, 127.0.0.1 and
/// `lan`, the client be quickstart's device, every PEM file the twin of its
/// DER file, and lint (the device profile, at `now`) find no error or
/// warning in either pair.
pub fn examine(dir: &Path, lan: Option<IpAddr>, profile: &Profile, now: OffsetDateTime) -> Found {
    let present: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| dir.join(f).symlink_metadata().is_ok())
        .collect();
    if present.is_empty() {
        return Found::Nothing;
    }
    if present.len() < FILES.len() {
        let missing: Vec<&str> = FILES
            .iter()
            .copied()
            .filter(|f| !present.contains(f))
            .collect();
        return Found::Unusable(format!(
            "some of its files are missing ({})",
            missing.join(", ")
        ));
    }
    match load(dir, lan, profile, now) {
        Ok(r) => Found::Reusable(Box::new(r)),
        Err(why) => Found::Unusable(why),
    }
}

fn load(
    dir: &Path,
    lan: Option<IpAddr>,
    profile: &Profile,
    now: OffsetDateTime,
) -> Result<Reusable, String> {
    let read = |name: &str| -> Result<(Vec<u8>, Sniffed), String> {
        let path = dir.join(name);
        let bytes = crate::input::read(&path).map_err(|e| format!("{e:#}"))?;
        let sniffed = crate::input::sniff_bytes(&path, &bytes).map_err(|e| format!("{e:#}"))?;
        Ok((bytes, sniffed))
    };
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    hosts.extend(lan.map(|ip| ip.to_string()));
    let (server_der, server_key_der) = pair(&read, "server", "CN=localhost", &hosts, profile, now)?;
    let (client_der, client_key_der) = pair(
        &read,
        "client",
        &format!("CN={}", super::DEVICE_CN),
        &[],
        profile,
        now,
    )?;
    let until = |der: &[u8]| Cert::parse(der).map(|c| c.not_after());
    let valid_until = until(&server_der)
        .and_then(|s| until(&client_der).map(|c| s.min(c)))
        .map_err(|e| e.to_string())?;
    Ok(Reusable {
        server_der,
        server_key_der,
        client_der,
        client_key_der,
        valid_until,
    })
}

type Reader<'a> = dyn Fn(&str) -> Result<(Vec<u8>, Sniffed), String> + 'a;

/// One identity, `STEM.der` + `STEM.key.der` and their PEM twins: the DER
/// bytes of the certificate and the key, or why they are not quickstart's.
fn pair(
    read: &Reader<'_>,
    stem: &str,
    subject: &str,
    hosts: &[String],
    profile: &Profile,
    now: OffsetDateTime,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let cert_name = format!("{stem}.der");
    let key_name = format!("{stem}.key.der");
    let (cert, cert_sniffed) = read(&cert_name)?;
    let (key, key_sniffed) = read(&key_name)?;
    let first = |s: &Sniffed| s.items.first().map(|i| (i.kind, i.encoding, i.der.clone()));
    match first(&cert_sniffed) {
        Some((Kind::Certificate, Encoding::Der, der)) if der == cert => {}
        _ => return Err(format!("{cert_name} is not one DER certificate")),
    }
    match first(&key_sniffed) {
        Some((Kind::PrivateKey(_), Encoding::Der, der)) if der == key => {}
        _ => return Err(format!("{key_name} is not one DER private key")),
    }
    for (pem, der) in [
        (format!("{stem}.crt"), &cert),
        (format!("{stem}.key"), &key),
    ] {
        let (_, sniffed) = read(&pem)?;
        match first(&sniffed) {
            Some((_, Encoding::Pem, d)) if &d == der => {}
            _ => return Err(format!("{pem} is not the PEM copy of its DER file")),
        }
    }
    let parsed = Cert::parse(&cert).map_err(|e| format!("{cert_name}: {e}"))?;
    if parsed.subject() != subject || !parsed.self_signed() {
        return Err(format!(
            "{cert_name} is not quickstart's ({}, not a self-signed {subject})",
            parsed.subject()
        ));
    }
    let inputs = [
        Input {
            file: &cert_name,
            sniffed: &cert_sniffed,
        },
        Input {
            file: &key_name,
            sniffed: &key_sniffed,
        },
    ];
    let role = if hosts.is_empty() {
        LintRole::Client
    } else {
        LintRole::Server
    };
    let hosts: Vec<Option<&str>> = if hosts.is_empty() {
        vec![None]
    } else {
        hosts.iter().map(|h| Some(h.as_str())).collect()
    };
    for host in hosts {
        let options = Options {
            profile,
            host,
            at: now,
            role: Some(role),
        };
        if let Some(f) = lint::lint(&inputs, &options)
            .into_iter()
            .find(|f| f.severity >= Severity::Warning)
        {
            return Err(format!("{}: {} ({})", f.file, f.message, f.id));
        }
    }
    Ok((cert, key))
}

/// The first of `DIR-2`, `DIR-3`, ... that does not exist yet.
pub fn fresh_folder(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "devtls-quickstart".into());
    (2u32..)
        .map(|n| dir.with_file_name(format!("{name}-{n}")))
        .find(|p| p.symlink_metadata().is_err())
        .expect("a free name")
}

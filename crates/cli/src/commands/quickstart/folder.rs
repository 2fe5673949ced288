//! quickstart's files: the folder (reusing an earlier run's own files, or
//! a fresh folder), the two identities the guide makes, and their rows in
//! the table.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use devtls_pki::chain::Cert;
use devtls_pki::files::{self, Output};
use devtls_pki::fingerprint;
use devtls_pki::issue::{self, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::profile::Profile;
use serde::Serialize;

use super::{reuse, Args, Step, DEFAULT_OUT, DEVICE_CN};

/// Where this run's files came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum FilesFrom {
    /// Made by this run.
    New,
    /// quickstart's own files from an earlier run, valid and lint-clean.
    Reused,
}

/// The files the guide names, made for this run.
pub(super) struct Made {
    pub(super) server_der: Vec<u8>,
    pub(super) server_key_der: Vec<u8>,
    pub(super) client_der: Vec<u8>,
    pub(super) client_key_der: Vec<u8>,
    /// The files, as paths.
    pub(super) written: Vec<String>,
    pub(super) from: FilesFrom,
}

/// The folder to use and what an earlier run left there (files to reuse),
/// with what was decided in words: without --force, quickstart's own valid
/// files are reused; anything else is left alone, and the run moves to a
/// fresh folder, or stops when the user named this one.
pub(super) fn folder(
    args: &Args,
    lan: Option<IpAddr>,
    profile: &Profile,
) -> anyhow::Result<(PathBuf, Option<Box<reuse::Reusable>>, Option<String>)> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    if args.force {
        return Ok((out, None, None));
    }
    let now = time::OffsetDateTime::now_utc();
    Ok(match reuse::examine(&out, lan, profile, now) {
        reuse::Found::Nothing => (out, None, None),
        reuse::Found::Reusable(earlier) => {
            let note = format!(
                "reusing the files of an earlier run in {} (quickstart's own, valid until {}, \
                 lint-clean); `devtls quickstart --force` makes new ones",
                out.display(),
                earlier.valid_until.date()
            );
            (out, Some(earlier), Some(note))
        }
        reuse::Found::Unusable(why) if args.out.is_some() => anyhow::bail!(
            "{}: {why}; quickstart leaves these files as they are: pass --force to replace \
             them, or choose another --out",
            out.display()
        ),
        reuse::Found::Unusable(why) => {
            let fresh = reuse::fresh_folder(&out);
            let note = format!(
                "{} holds files quickstart will not reuse ({why}); they are left as they are \
                 and the new files go to {} (`devtls quickstart --force` would replace them)",
                out.display(),
                fresh.display()
            );
            (fresh, None, Some(note))
        }
    })
}

/// An earlier run's files, as this run's.
pub(super) fn reused(out: &Path, earlier: reuse::Reusable) -> Made {
    Made {
        server_der: earlier.server_der,
        server_key_der: earlier.server_key_der,
        client_der: earlier.client_der,
        client_key_der: earlier.client_key_der,
        written: reuse::FILES
            .iter()
            .map(|f| out.join(f).display().to_string())
            .collect(),
        from: FilesFrom::Reused,
    }
}

/// Makes both identities first and writes all eight files in one step, so
/// an existing file stops the run before anything is written.
pub(super) fn make_files(
    out: &Path,
    force: bool,
    lan: Option<IpAddr>,
    profile: &Profile,
) -> anyhow::Result<Made> {
    let key_type = KeyType::P256;
    if let Some(why) = key_type.refused_by(profile) {
        anyhow::bail!("the {} profile refuses {key_type}: {why}", profile.name);
    }
    let mut server_spec = CertSpec::new("localhost", Role::Server, 365);
    server_spec.dns = vec!["localhost".into()];
    server_spec.ips = std::iter::once(IpAddr::from([127, 0, 0, 1]))
        .chain(lan)
        .collect();
    let server_key = PrivateKey::generate(key_type)?;
    let server = issue::self_signed(&server_spec, &server_key)
        .context("could not make the server certificate")?;
    let client_spec = CertSpec::new(DEVICE_CN, Role::Client, 365);
    let client_key = PrivateKey::generate(key_type)?;
    let client = issue::self_signed(&client_spec, &client_key)
        .context("could not make the client certificate")?;

    let outputs = [
        Output::secret(out.join("server.key"), server_key.pkcs8_pem()),
        Output::public(out.join("server.crt"), server.pem()),
        Output::public(out.join("server.der"), server.der.clone()),
        Output::secret(out.join("server.key.der"), server_key.pkcs8_der()),
        Output::secret(out.join("client.key"), client_key.pkcs8_pem()),
        Output::public(out.join("client.crt"), client.pem()),
        Output::public(out.join("client.der"), client.der.clone()),
        Output::secret(out.join("client.key.der"), client_key.pkcs8_der()),
    ];
    files::write_all(&outputs, force)?;
    Ok(Made {
        server_der: server.der,
        server_key_der: server_key.pkcs8_der(),
        client_der: client.der,
        client_key_der: client_key.pkcs8_der(),
        written: outputs
            .iter()
            .map(|o| o.path.display().to_string())
            .collect(),
        from: FilesFrom::New,
    })
}

/// The two certificate rows: what each certificate is, read from the files.
pub(super) fn file_steps(made: &Made) -> Vec<Step> {
    let how = match made.from {
        FilesFrom::New => "",
        FilesFrom::Reused => "reused from an earlier run: ",
    };
    let row = |step: &'static str, stem: &str, der: &[u8]| match Cert::parse(der) {
        Ok(c) => {
            let names: Vec<String> = c
                .info
                .sans
                .dns
                .iter()
                .chain(&c.info.sans.ip)
                .cloned()
                .collect();
            let about = if names.is_empty() {
                c.subject().to_string()
            } else {
                format!("for {}", names.join(", "))
            };
            Step::ok(
                step,
                format!(
                    "{how}{stem}.der + {stem}.key.der (DER) and {stem}.crt + {stem}.key (PEM): \
                     {}, {about}, SHA-256 {}",
                    c.info.public_key.description,
                    short(&fingerprint::sha256_hex(der))
                ),
            )
        }
        Err(e) => Step::failed(step, format!("{stem}.der: {e}")),
    };
    vec![
        row("server certificate", "server", &made.server_der),
        row("client certificate", "client", &made.client_der),
    ]
}

fn short(hex: &str) -> String {
    hex.chars().take(16).collect::<String>() + "…"
}

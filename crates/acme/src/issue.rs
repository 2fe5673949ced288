//! Issuing a lineage: order, choose the chain (`--anchor`), choose the
//! device's anchor, lint the device's files, publish, remember how.

use std::path::{Path, PathBuf};

use devtls_pki::keys::KeyType;
use devtls_pki::lint::Finding;
use devtls_pki::roots::RootSet;
use instant_acme::{CertificateIdentifier, Identifier};
use serde::Serialize;

use crate::account::Session;
use crate::challenge::{Method, Solver};
use crate::device::{self, Anchor};
use crate::lineage::{self, Config, Files};
use crate::order::{self, Request};
use crate::Error;

/// What an issue (or a renewal) produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The lineage name.
    pub name: String,
    /// `DIR/live/NAME`.
    pub live: PathBuf,
    /// The certificate's serial (hex).
    pub serial: String,
    /// Its notAfter.
    pub not_after: String,
    /// How many chains the CA offered (1 + alternates).
    pub chains_offered: usize,
    /// Which one was written (0: the CA's default).
    pub chain_written: usize,
    /// The device's anchor written as ca.der.
    pub anchor: Anchor,
    /// Lint findings on cert.der, privkey.der and ca.der.
    pub findings: Vec<Finding>,
    /// The order named the certificate it replaces (ARI).
    pub replaced: bool,
    /// `badNonce` refusals retried.
    pub bad_nonces: usize,
    /// Problems cleaning up challenge files or records.
    pub cleanup: Vec<String>,
}

/// The key type named in a lineage's settings.
pub fn key_type(name: &str) -> Result<KeyType, Error> {
    match name {
        "p256" => Ok(KeyType::P256),
        "p384" => Ok(KeyType::P384),
        "rsa2048" => Ok(KeyType::Rsa2048),
        other => Err(Error::Input(format!(
            "key type '{other}': use p256, p384 or rsa2048"
        ))),
    }
}

/// The identifiers of a lineage, names first.
pub fn identifiers(config: &Config) -> Vec<Identifier> {
    config
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .chain(config.ips.iter().map(|ip| Identifier::Ip(*ip)))
        .collect()
}

/// Reads `--anchor FILE` as the set the chain must end at.
pub fn anchor_set(path: &Path) -> Result<RootSet, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    RootSet::from_bundle(&bytes, &path.display().to_string()).map_err(|e| {
        Error::Input(format!(
            "--anchor {}: {e}; give the DER or PEM root your devices carry",
            path.display()
        ))
    })
}

/// Orders a certificate for `config` and publishes it under `dir`.
pub async fn run(
    session: &Session,
    dir: &Path,
    config: &Config,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Report, Error> {
    let profile = devtls_pki::profile::by_name(&config.device_profile).ok_or_else(|| {
        Error::Input(format!(
            "unknown device profile '{}'",
            config.device_profile
        ))
    })?;
    let anchors = config.anchor.as_deref().map(anchor_set).transpose()?;
    let method = Method::from(&config.challenge);
    let solver = Solver::start(&method).await?;
    let request = Request {
        identifiers: identifiers(config),
        key: key_type(&config.key)?,
        profile: config.profile.clone(),
        replaces,
    };
    let issued = order::issue(session, solver, &request).await?;
    let chain_written = match &anchors {
        Some(set) => device::choose_chain(&issued.chains, set)?,
        None => 0,
    };
    let chain = &issued.chains[chain_written];
    let roots = anchors.unwrap_or_else(RootSet::bundled);
    let anchor = device::anchor(chain, &roots)?;
    let files = Files::new(chain, &issued.key, anchor.der.clone());
    let host = config
        .domains
        .first()
        .cloned()
        .or_else(|| config.ips.first().map(ToString::to_string));
    let findings = device::lint_device(
        &files.cert_der,
        &files.privkey_der,
        &files.ca_der,
        profile,
        host.as_deref(),
    )?;
    let live = lineage::publish(dir, &config.name, &files)?;
    lineage::write_config(dir, config)?;
    let leaf = devtls_pki::chain::Cert::parse(&chain[0])?;
    Ok(Report {
        name: config.name.clone(),
        live,
        serial: leaf.info.serial.clone(),
        not_after: leaf.not_after().to_string(),
        chains_offered: issued.chains.len(),
        chain_written,
        anchor,
        findings,
        replaced: issued.replaced,
        bad_nonces: issued.bad_nonces,
        cleanup: issued.cleanup,
    })
}

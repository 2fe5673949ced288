//! `renew`: every lineage under DIR that is due (see [`crate::window`]) is
//! ordered again, naming the certificate it replaces when the CA offers
//! ARI; then the deploy hook runs with certbot's `RENEWED_LINEAGE` and
//! `RENEWED_DOMAINS`. One run at a time per folder: the caller holds the
//! folder's [`RenewLock`].

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::account::{self, NewAccountOptions};
use crate::issue::{self, Report};
use crate::lineage;
use crate::lock::RenewLock;
use crate::order;
use crate::window::{self, Basis, Suggested, Validity};
use crate::Error;

/// What happened to one lineage.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Not due yet.
    NotDue {
        /// When it will be.
        renew_at: String,
        /// ARI or two thirds.
        basis: Basis,
        /// Why ARI was not used although asked for, if so.
        note: Option<String>,
    },
    /// Renewed (and the hook, if any, succeeded).
    Renewed {
        /// ARI or two thirds.
        basis: Basis,
        /// The new certificate.
        report: Box<Report>,
    },
    /// Due, and ordering (or the deploy hook) failed.
    Failed {
        /// One line.
        error: String,
    },
}

/// One lineage's result.
#[derive(Debug, Serialize)]
pub struct Item {
    /// The lineage name.
    pub name: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Renews what is due under `dir` at `now`, holding `dir`'s lock (so a
/// concurrent run cannot order the same certificates again).
pub async fn renew_all(
    dir: &Path,
    _held: &RenewLock,
    deploy_hook: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<Item>, Error> {
    let configs = lineage::configs(dir)?;
    if configs.is_empty() {
        return Err(Error::Input(format!(
            "{}: no certificates to renew (no renewal/*.json); issue one with `devtls acme issue --dir {}`",
            dir.display(),
            dir.display()
        )));
    }
    let mut items = Vec::new();
    for path in configs {
        let config = lineage::read_config(&path)?;
        let outcome = match renew_one(dir, &config, deploy_hook, now).await {
            Ok(o) => o,
            Err(e) if e.is_input() => return Err(e),
            Err(e) => Outcome::Failed {
                error: e.to_string(),
            },
        };
        items.push(Item {
            name: config.name.clone(),
            outcome,
        });
    }
    Ok(items)
}

async fn renew_one(
    dir: &Path,
    config: &lineage::Config,
    deploy_hook: Option<&str>,
    now: OffsetDateTime,
) -> Result<Outcome, Error> {
    let cert = lineage::current_cert(dir, &config.name)?;
    let validity = cert.as_deref().and_then(validity_of);
    let session = account::open(
        dir,
        &config.server,
        config.server_ca.as_deref(),
        &NewAccountOptions::default(),
    )
    .await;
    let (ari, note) = match (&session, &cert) {
        (Ok(s), Some(der)) if s.directory.renewal_info.is_some() => match order::cert_id(der) {
            Some(id) => match s.account.renewal_info(&id).await {
                Ok((info, _)) => (
                    Some(Suggested {
                        start: info.suggested_window.start,
                        end: info.suggested_window.end,
                    }),
                    None,
                ),
                Err(e) => (
                    None,
                    Some(format!(
                        "the CA's renewal information failed ({}); used two thirds of the lifetime",
                        Error::from_acme(e)
                    )),
                ),
            },
            None => (
                None,
                Some("the certificate has no authority key identifier for ARI".into()),
            ),
        },
        (Err(e), _) => (None, Some(e.to_string())),
        _ => (None, None),
    };
    if let (Some(v), Some(der)) = (validity, &cert) {
        let plan = window::plan(v, ari, window::spread_of(der));
        if !window::due(&plan, now) {
            return Ok(Outcome::NotDue {
                renew_at: plan.renew_at.to_string(),
                basis: plan.basis,
                note,
            });
        }
    }
    let basis = if ari.is_some() {
        Basis::Ari
    } else {
        Basis::TwoThirds
    };
    let session = session?;
    let replaces = cert.as_deref().and_then(order::cert_id);
    let report = issue::run(&session, dir, config, replaces).await?;
    if let Some(cmd) = deploy_hook {
        deploy(cmd, &report.live, config).await?;
    }
    Ok(Outcome::Renewed {
        basis,
        report: Box::new(report),
    })
}

fn validity_of(der: &[u8]) -> Option<Validity> {
    let cert = devtls_pki::chain::Cert::parse(der).ok()?;
    Some(Validity {
        not_before: cert.not_before(),
        not_after: cert.not_after(),
    })
}

/// Runs the deploy hook as certbot does: `sh -c CMD` with `RENEWED_LINEAGE`
/// (the live folder) and `RENEWED_DOMAINS` (space-separated) set.
pub async fn deploy(cmd: &str, live: &Path, config: &lineage::Config) -> Result<(), Error> {
    let lineage_path: PathBuf = std::path::absolute(live).unwrap_or_else(|_| live.to_path_buf());
    let domains: Vec<String> = config
        .domains
        .iter()
        .cloned()
        .chain(config.ips.iter().map(ToString::to_string))
        .collect();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("RENEWED_LINEAGE", &lineage_path)
        .env("RENEWED_DOMAINS", domains.join(" "))
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| Error::Solver(format!("--deploy-hook '{cmd}': cannot run it: {e}")))?;
    if !status.success() {
        return Err(Error::Solver(format!(
            "--deploy-hook '{cmd}' failed ({status}) for {}; the new certificate is in place, run the hook again by hand",
            config.name
        )));
    }
    Ok(())
}

/// A systemd service and timer that run `devtls acme renew` hourly.
pub fn systemd_units(
    devtls: &Path,
    dir: &Path,
    deploy_hook: Option<&str>,
) -> Result<String, Error> {
    let quote = |s: &str| -> Result<String, Error> {
        if s.chars().any(|c| c.is_control()) {
            return Err(Error::Input(
                "a path or hook with control characters cannot go into a unit file".into(),
            ));
        }
        // systemd's own quoting: double quotes, backslash and dollar escaped, % doubled.
        Ok(format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "$$")
                .replace('%', "%%")
        ))
    };
    let dir = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let mut exec = format!(
        "{} acme renew --dir {}",
        quote(&devtls.display().to_string())?,
        quote(&dir.display().to_string())?
    );
    if let Some(h) = deploy_hook {
        exec.push_str(&format!(" --deploy-hook {}", quote(h)?));
    }
    Ok(format!(
        "# /etc/systemd/system/devtls-acme-renew.service\n\
         [Unit]\n\
         Description=Renew ACME certificates for devices (devtls acme renew)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         \n\
         # /etc/systemd/system/devtls-acme-renew.timer\n\
         [Unit]\n\
         Description=Run devtls acme renew every hour\n\
         \n\
         [Timer]\n\
         OnCalendar=hourly\n\
         RandomizedDelaySec=30min\n\
         Persistent=true\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n\
         \n\
         # then: systemctl daemon-reload && systemctl enable --now devtls-acme-renew.timer\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_quote_paths_and_hooks() {
        let u = systemd_units(
            Path::new("/usr/bin/devtls"),
            Path::new("/etc/devtls acme"),
            Some("systemctl reload x; echo $HOME 100%"),
        )
        .unwrap();
        assert!(u.contains("ExecStart=\"/usr/bin/devtls\" acme renew --dir \"/etc/devtls acme\" --deploy-hook \"systemctl reload x; echo $$HOME 100%%\""), "{u}");
        assert!(u.contains("OnCalendar=hourly"));
        assert!(systemd_units(Path::new("/d"), Path::new("/x"), Some("a\nb")).is_err());
    }
}

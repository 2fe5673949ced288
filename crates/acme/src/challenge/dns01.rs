//! dns-01: the TXT record `_acme-challenge.NAME` through a hook command, or
//! by hand.
//!
//! The hook is run by `sh -c` as `CMD add NAME VALUE` and later
//! `CMD remove NAME VALUE` (NAME without the final dot), with the same three
//! values in `DEVTLS_ACME_ACTION`, `DEVTLS_ACME_NAME` and `DEVTLS_ACME_VALUE`.
//! It must exit 0 once the record is published.

use std::time::Duration;

use instant_acme::Identifier;
use tokio::io::AsyncBufReadExt;

use crate::Error;

/// How long a hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// The TXT record name for an identifier.
pub fn record_name(identifier: &Identifier) -> Result<String, Error> {
    match identifier {
        Identifier::Dns(name) => Ok(format!("_acme-challenge.{}", name.trim_start_matches("*."))),
        _ => Err(Error::Unsupported(
            "dns-01 proves DNS names only; an IP address needs --challenge http-01 or tls-alpn-01"
                .into(),
        )),
    }
}

/// Runs the hook for one record.
pub async fn run_hook(cmd: &str, action: &str, name: &str, value: &str) -> Result<(), Error> {
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(format!("{cmd} \"$@\""))
        .arg("devtls-dns-hook")
        .args([action, name, value])
        .env("DEVTLS_ACME_ACTION", action)
        .env("DEVTLS_ACME_NAME", name)
        .env("DEVTLS_ACME_VALUE", value)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(HOOK_TIMEOUT, child.output())
        .await
        .map_err(|_| {
            Error::Solver(format!(
                "--dns-hook '{cmd}' did not finish '{action} {name}' within {} s",
                HOOK_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Error::Solver(format!("--dns-hook '{cmd}': cannot run it: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim();
        return Err(Error::Solver(format!(
            "--dns-hook '{cmd}' failed to {action} the TXT record {name} ({}){}; fix the hook and run again",
            out.status,
            if last.is_empty() { String::new() } else { format!(": {last}") }
        )));
    }
    Ok(())
}

/// Prints the record to add and waits for Enter on standard input.
pub async fn manual(name: &str, value: &str) -> Result<(), Error> {
    eprintln!("Add this DNS record, wait until it is published, then press Enter:\n\n  {name}. 300 IN TXT \"{value}\"\n");
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let n = stdin
        .read_line(&mut line)
        .await
        .map_err(|e| Error::Solver(format!("--manual: reading Enter from the terminal: {e}")))?;
    if n == 0 {
        return Err(Error::Input("--manual needs a terminal to press Enter in (standard input is closed); use --dns-hook CMD in scripts".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_drop_the_wildcard_and_refuse_addresses() {
        assert_eq!(
            record_name(&Identifier::Dns("*.example.com".into())).unwrap(),
            "_acme-challenge.example.com"
        );
        assert!(record_name(&Identifier::Ip("192.0.2.1".parse().unwrap())).is_err());
    }

    #[tokio::test]
    async fn hooks_get_action_name_value_and_a_failure_names_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let cmd = format!("echo >>{} ", log.display());
        run_hook(&cmd, "add", "_acme-challenge.a.test", "v1")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "add _acme-challenge.a.test v1\n"
        );
        let err = run_hook("exit 3; ", "remove", "n", "v")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("failed to remove the TXT record n"), "{err}");
    }
}

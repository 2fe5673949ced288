//! Helpers for the lint tests: run `devtls lint --json` and make bad material with OpenSSL.

use std::path::Path;

use super::{openssl_ok, run_in, text};

/// What one `devtls lint --json` run reported.
pub struct Linted {
    /// The exit status.
    pub code: i32,
    /// The finding ids, in order.
    pub ids: Vec<String>,
    /// The whole JSON report.
    pub json: serde_json::Value,
    /// The human-readable transcript, for assertion messages.
    pub transcript: String,
}

impl Linted {
    /// Whether a finding with this id was reported.
    pub fn has(&self, id: &str) -> bool {
        self.ids.iter().any(|i| i == id)
    }

    /// Asserts the exit status and exactly these finding ids, in order.
    pub fn expect(&self, code: i32, ids: &[&str]) {
        assert_eq!(
            (self.code, &self.ids),
            (code, &ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()),
            "{}",
            self.transcript
        );
    }

    /// Asserts that finding `id`'s message quotes each line the device's
    /// verify step printed (`verify`, from the mbedTLS peer), word for word.
    pub fn quotes_device(&self, id: &str, verify: &[String]) {
        let message = self.finding(id)["message"].as_str().unwrap_or_default();
        assert!(!verify.is_empty(), "the device printed no verify line");
        for line in verify {
            assert!(
                message.contains(line.as_str()),
                "{id} does not quote the device's '{line}':\n{}",
                self.transcript
            );
        }
    }

    /// The finding with this id (panics with the transcript if missing).
    pub fn finding(&self, id: &str) -> &serde_json::Value {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no {id} finding:\n{}", self.transcript))
    }
}

/// Runs `devtls lint --json ARGS` in `dir`.
pub fn lint(dir: &Path, args: &[&str]) -> Linted {
    let mut all = vec!["lint", "--json"];
    all.extend_from_slice(args);
    let out = run_in(dir, &all);
    let transcript = text(&out);
    let code = out.status.code().expect("devtls exited");
    let json: serde_json::Value = if code == 2 {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("lint --json is not JSON ({e}):\n{transcript}"))
    };
    let ids = json["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    Linted {
        code,
        ids,
        json,
        transcript,
    }
}

/// A self-signed certificate made by `openssl req -x509` in DER, with extra arguments
/// (key options, -sha1, -sigopt, -addext...). It names `NAME` in its subjectAltName
/// unless `extra` sets one. Writes `NAME.der` and returns its name.
pub fn openssl_cert(dir: &Path, name: &str, key_args: &[&str], extra: &[&str]) -> String {
    let der = format!("{name}.der");
    let mut args = vec!["req", "-x509", "-nodes", "-days", "30", "-subj"];
    let subject = format!("/CN={name}");
    args.push(&subject);
    let san = format!("subjectAltName=DNS:{name}");
    if !extra.iter().any(|a| a.starts_with("subjectAltName")) {
        args.extend_from_slice(&["-addext", &san]);
    }
    args.extend_from_slice(key_args);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-outform", "DER", "-out", &der]);
    openssl_ok(dir, &args);
    der
}

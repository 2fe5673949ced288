//! `devtls inspect`: what a certificate, key, CSR or CRL file holds.

use std::path::PathBuf;
use std::process::ExitCode;

use anstream::println;
use devtls_pki::inspect::{
    self, CertInfo, CrlInfo, CsrInfo, Details, Inspected, KeyInfo, PrivateKeyInfo, Sans, Validity,
    ValidityStatus,
};
use devtls_pki::sniff::Encoding;
use serde::Serialize;

use crate::{input, output};

// `devtls inspect`: described on `Command::Inspect` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls inspect server.der server.key.der
  devtls inspect fullchain.pem --json
  devtls inspect server.crt --at 2027-06-01")]
pub struct Args {
    /// Files to inspect (PEM or DER).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Judge validity at this time instead of now (2027-01-01 or RFC 3339).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

#[derive(Serialize)]
struct FileReport {
    file: String,
    concatenated_der: bool,
    skipped_blocks: Vec<String>,
    items: Vec<Inspected>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let at = match &args.at {
        Some(t) => input::instant(t)?,
        None => time::OffsetDateTime::now_utc(),
    };
    // Read everything first: one bad file is an error before any output.
    let mut reports = Vec::new();
    for path in &args.files {
        let sniffed = input::sniff(path)?;
        reports.push(FileReport {
            file: path.display().to_string(),
            concatenated_der: sniffed.concatenated_der,
            skipped_blocks: sniffed.skipped_blocks.clone(),
            items: inspect::inspect(&sniffed, at),
        });
    }
    if args.json {
        output::json(&reports)?;
        return Ok(ExitCode::SUCCESS);
    }
    for (n, report) in reports.iter().enumerate() {
        if n > 0 {
            println!();
        }
        let count = report.items.len();
        output::heading(&format!(
            "{}: {}",
            report.file,
            if count == 1 {
                report.items[0].kind_name.to_string()
            } else {
                format!("{count} items")
            }
        ));
        if report.concatenated_der {
            println!(
                "  (concatenated DER: a device loading this file sees only the first certificate)"
            );
        }
        for item in &report.items {
            if count > 1 {
                println!("  [{}] {}", item.index, item.kind_name);
            }
            let mut f = Fields::default();
            f.add("encoding", encoding(item.encoding));
            f.add("DER size", format!("{} bytes", item.der_size));
            if item.trailing_bytes > 0 {
                f.add(
                    "trailing",
                    format!("{} byte(s) after the structure", item.trailing_bytes),
                );
            }
            match &item.details {
                Details::Certificate(c) => cert_fields(&mut f, c),
                Details::PrivateKey(k) => key_fields(&mut f, k),
                Details::Csr(c) => csr_fields(&mut f, c),
                Details::Crl(c) => crl_fields(&mut f, c),
                Details::PublicKey(k) => f.add("key", key_text(k)),
                Details::Unreadable { reason } => f.add("unreadable", reason.clone()),
            }
            f.print(if count > 1 { "      " } else { "  " });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Label/value lines printed with the values aligned.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn add(&mut self, label: &str, value: impl Into<String>) {
        self.0.push((label.to_string(), value.into()));
    }

    fn print(&self, indent: &str) {
        let width = self.0.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, value) in &self.0 {
            println!("{indent}{label:<width$}  {value}");
        }
    }
}

fn encoding(e: Encoding) -> &'static str {
    match e {
        Encoding::Pem => "PEM (the device needs DER)",
        Encoding::Der => "DER",
    }
}

fn key_text(k: &KeyInfo) -> String {
    k.description.clone()
}

fn cert_fields(f: &mut Fields, c: &CertInfo) {
    f.add("subject", &c.subject);
    f.add("issuer", &c.issuer);
    f.add("serial", &c.serial);
    f.add("version", c.version.to_string());
    f.add(
        "SANs",
        sans_text(&c.sans, "(none: only the CN names the host)"),
    );
    validity_fields(f, &c.validity);
    f.add("key", key_text(&c.public_key));
    f.add("signature", &c.signature.name);
    f.add(
        "CA",
        match &c.basic_constraints {
            Some(b) if b.ca => format!(
                "yes{}{}",
                b.path_len
                    .map(|n| format!(", path length {n}"))
                    .unwrap_or_default(),
                critical(b.critical)
            ),
            Some(_) => "no".into(),
            None => "no (no basicConstraints)".into(),
        },
    );
    if let Some(k) = &c.key_usage {
        f.add(
            "key usage",
            format!("{}{}", k.usages.join(", "), critical(k.critical)),
        );
    }
    if let Some(e) = &c.extended_key_usage {
        let mut names = Vec::new();
        if e.server_auth {
            names.push("serverAuth".to_string());
        }
        if e.client_auth {
            names.push("clientAuth".to_string());
        }
        if e.any {
            names.push("anyExtendedKeyUsage".to_string());
        }
        names.extend(e.other.iter().cloned());
        f.add("EKU", names.join(", "));
    }
    if let Some(n) = &c.name_constraints {
        f.add(
            "name constraints",
            format!("present{}", critical(n.critical)),
        );
    }
    if let Some(p) = &c.policies {
        f.add(
            "policies",
            format!("{}{}", p.oids.join(", "), critical(p.critical)),
        );
    }
    f.add(
        "self-signed",
        if c.self_signed {
            "yes"
        } else if c.self_issued {
            "self-issued, signature does not verify with its own key"
        } else {
            "no"
        },
    );
    f.add("SHA-256", &c.sha256);
    for p in &c.problems {
        f.add("problem", p);
    }
}

/// The suffix marking a critical extension (the device rejects some of them).
fn critical(flag: bool) -> &'static str {
    if flag {
        " (critical)"
    } else {
        ""
    }
}

/// SANs the way OpenSSL prints them (`DNS:openmv, IP:192.168.1.50`).
fn sans_text(sans: &Sans, none: &str) -> String {
    let mut all: Vec<String> = sans.dns.iter().map(|d| format!("DNS:{d}")).collect();
    all.extend(sans.ip.iter().map(|i| format!("IP:{i}")));
    all.extend(sans.other.iter().cloned());
    if all.is_empty() {
        none.to_string()
    } else {
        all.join(", ")
    }
}

fn validity_fields(f: &mut Fields, v: &Validity) {
    f.add("not before", inspect::format_time(v.not_before));
    f.add("not after", inspect::format_time(v.not_after));
    let status = match v.status {
        ValidityStatus::Valid => format!("valid, {} day(s) left", v.days_left),
        ValidityStatus::Expired => format!(
            "EXPIRED {} day(s) ago",
            v.days_since_expiry.unwrap_or_default()
        ),
        ValidityStatus::NotYetValid => format!(
            "NOT YET VALID, starts in {} day(s)",
            v.days_until_valid.unwrap_or_default()
        ),
    };
    f.add(
        "status",
        format!("{status} (at {})", inspect::format_time(v.at)),
    );
}

fn key_fields(f: &mut Fields, k: &PrivateKeyInfo) {
    if let Some(format) = k.format {
        f.add(
            "format",
            format!("{format:?}")
                .to_uppercase()
                .replace("PKCS", "PKCS#"),
        );
    }
    match &k.key {
        Some(key) => f.add("key", key_text(key)),
        None if k.encrypted => f.add("key", "(encrypted: decrypt with devtls convert to see it)"),
        None => f.add("key", "(algorithm not readable)"),
    }
    f.add(
        "encrypted",
        match &k.encryption {
            Some(e) => format!("yes, {e} (the device cannot load encrypted keys)"),
            None => "no".into(),
        },
    );
    if let Some(fp) = &k.public_key_sha256 {
        f.add("public key SHA-256", fp);
    }
}

fn csr_fields(f: &mut Fields, c: &CsrInfo) {
    f.add("subject", &c.subject);
    f.add("SANs", sans_text(&c.sans, "(none)"));
    f.add("key", key_text(&c.public_key));
    f.add("signature", &c.signature.name);
    f.add(
        "self-signature",
        if c.signature_valid {
            "verifies"
        } else {
            "DOES NOT VERIFY"
        },
    );
}

fn crl_fields(f: &mut Fields, c: &CrlInfo) {
    f.add("issuer", &c.issuer);
    f.add("this update", inspect::format_time(c.this_update));
    f.add(
        "next update",
        match c.next_update {
            Some(t) => format!(
                "{}{}",
                inspect::format_time(t),
                if c.stale { " (STALE)" } else { "" }
            ),
            None => "(none)".into(),
        },
    );
    if let Some(n) = &c.crl_number {
        f.add("CRL number", n);
    }
    f.add("signature", &c.signature.name);
    f.add("revoked", c.revoked.len().to_string());
    for r in &c.revoked {
        f.add(
            "  serial",
            format!("{} at {}", r.serial, inspect::format_time(r.date)),
        );
    }
}

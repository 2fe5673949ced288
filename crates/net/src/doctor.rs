//! `doctor`'s verdict, put together: the device's clock, its anchor and its
//! own certificate and key loaded as the device loads them (pki's rules,
//! `rules::files::load_certificate` and `rules::keys::load_key_item`), the
//! server examined with the device's hello ([`crate::examine`]), and the
//! report in words. The command only parses its arguments, calls [`doctor`]
//! or [`files`] and prints the [`Line`]s or the JSON.

use serde::Serialize;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use devtls_pki::chain::Cert;
use devtls_pki::inspect;
use devtls_pki::profile::Profile;
use devtls_pki::rules::files::{self, DeviceFile, FilesVerdict};
use devtls_pki::rules::keys;
use devtls_pki::sniff::{Kind, Sniffed};
use devtls_pki::verify::{Failure, Kind as FailureKind};

use crate::diagnose::Needs;
use crate::examine::{self, ExamineError, Handshake};
use crate::hello::device::Identity;

pub mod on_device;

/// Why doctor has no verdict (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoctorError {
    /// `--device-time` did not parse.
    #[error("--device-time '{0}': use now, unset, 2000-01-01 or 2027-03-01T12:00:00Z")]
    DeviceTime(String),
    /// The profile's unset-clock year is not a date.
    #[error("the profile's unset clock year is out of range")]
    UnsetYear,
    /// A file holds nothing devtls reads.
    #[error("{0}: nothing in it")]
    Empty(String),
    /// The anchor file holds something else than a certificate.
    #[error("{file}: holds a {found}, not a certificate; --ca is the anchor the device trusts (e.g. from devtls anchor)")]
    AnchorNotACertificate {
        /// The file.
        file: String,
        /// What it holds, in words.
        found: &'static str,
    },
    /// `--cert`/`--key` do not hold a certificate and a key.
    #[error("{cert} must hold a certificate and {key} a private key")]
    Identity {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// The server was not examined.
    #[error(transparent)]
    Examine(#[from] ExamineError),
    /// `--files` found nothing to check.
    #[error("{0}: no certificate or key files in it")]
    NoFiles(String),
}

/// A file given on the command line: its name and what was sniffed in it.
#[derive(Debug, Clone, Copy)]
pub struct NamedFile<'a> {
    /// The name to report it under.
    pub name: &'a str,
    /// Its items.
    pub sniffed: &'a Sniffed,
}

/// The device's clock from `--device-time`: `now`, `unset` (the port's
/// epoch after power-up), an RFC 3339 time, `YYYY-MM-DD[ HH:MM:SS]`.
pub fn device_time(
    text: &str,
    profile: &Profile,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, DoctorError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if t.eq_ignore_ascii_case("unset") {
        if !profile.clock_starts_unset {
            return Ok(now);
        }
        let day = time::Date::from_calendar_date(profile.unset_clock_year, time::Month::January, 1)
            .map_err(|_| DoctorError::UnsetYear)?;
        return Ok(day.midnight().assume_utc());
    }
    if let Ok(v) = OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        return Ok(v);
    }
    for format in [
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ] {
        if let Ok(v) = PrimitiveDateTime::parse(t, format) {
            return Ok(v.assume_utc());
        }
    }
    if let Ok(d) = time::Date::parse(t, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    Err(DoctorError::DeviceTime(text.to_string()))
}

/// What `load_verify_locations` does with the anchor file: the DER it
/// trusts, or the failure it prints; notes on what it leaves out.
pub fn load_anchor(
    profile: &Profile,
    file: NamedFile<'_>,
    notes: &mut Vec<String>,
) -> Result<Result<Vec<u8>, Failure>, DoctorError> {
    let Some(first) = file.sniffed.items.first() else {
        return Err(DoctorError::Empty(file.name.to_string()));
    };
    if first.kind != Kind::Certificate {
        return Err(DoctorError::AnchorNotACertificate {
            file: file.name.to_string(),
            found: first.kind.describe(),
        });
    }
    Ok(
        match files::load_certificate(
            profile,
            file.name,
            file.sniffed,
            FailureKind::AnchorUnloadable,
        ) {
            Ok(loaded) => {
                notes.extend(loaded.notes);
                Ok(loaded.cert.der)
            }
            Err(f) => Err(*f),
        },
    )
}

/// What `load_cert_chain` does with the device's certificate and key: the
/// identity it loads (with the failure the handshake will meet when the
/// key does not belong to the certificate, which `load_cert_chain` does
/// not check), or the failure it raises.
pub fn load_identity(
    profile: &Profile,
    cert: NamedFile<'_>,
    key: NamedFile<'_>,
    notes: &mut Vec<String>,
) -> Result<Result<(Identity, Option<Failure>), Failure>, DoctorError> {
    let first_is_cert = cert
        .sniffed
        .items
        .first()
        .is_some_and(|i| i.kind == Kind::Certificate);
    let (true, Some(ki)) = (first_is_cert, key.sniffed.items.first()) else {
        return Err(DoctorError::Identity {
            cert: cert.name.to_string(),
            key: key.name.to_string(),
        });
    };
    let own = match files::load_certificate(
        profile,
        cert.name,
        cert.sniffed,
        FailureKind::CertUnloadable,
    ) {
        Ok(loaded) => {
            notes.extend(loaded.notes);
            loaded.cert
        }
        Err(f) => return Ok(Err(*f)),
    };
    let loaded = match keys::load_key_item(profile, ki) {
        Ok(loaded) => loaded,
        Err(refusal) => {
            return Ok(Err(Failure::about_file(
                FailureKind::KeyUnloadable,
                refusal.device_says(),
                None,
                key.name,
                refusal.why(),
                refusal.fix(key.name),
            )))
        }
    };
    let identity = Identity {
        cert: own.der.clone(),
        key: ki.der.clone(),
    };
    if !files::key_belongs(
        loaded.public_key_sha256.as_deref(),
        &own.info.public_key_sha256,
    ) {
        return Ok(Ok((
            identity,
            Some(files::key_mismatch(key.name, cert.name)),
        )));
    }
    Ok(Ok((identity, None)))
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The server and the device.
    pub server: examine::Server<'a>,
    /// The anchor file (`--ca`).
    pub anchor: NamedFile<'a>,
    /// The device's certificate and key (`--cert`, `--key`).
    pub identity: Option<(NamedFile<'a>, NamedFile<'a>)>,
}

/// The device's verdict on a server, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `HOST:PORT`.
    pub target: String,
    /// The profile's name.
    pub profile: &'static str,
    /// `server_hostname`.
    pub hostname: Option<String>,
    /// The device's clock.
    #[serde(serialize_with = "rfc3339")]
    pub device_time: OffsetDateTime,
    /// The anchor file, as given.
    #[serde(skip)]
    pub anchor_file: String,
    /// The anchor's subject, when it loads.
    pub anchor: Option<String>,
    /// What the handshake got to.
    pub handshake: Handshake,
    /// What a wider hello found the server needs, when it refused the device's.
    pub needs: Option<Needs>,
    /// The chain the server presented.
    pub presented: Vec<Cert>,
    /// The device would connect.
    pub works: bool,
    /// Why not, in the device's words.
    pub failures: Vec<Failure>,
    /// The presented certificates on the path, leaf first.
    pub path: Vec<usize>,
    /// The anchor is the server's own self-signed certificate.
    pub pinned_leaf: bool,
    /// Remarks.
    pub notes: Vec<String>,
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&inspect::format_time(*t))
}

/// Loads the device's files and examines the server as the device would.
pub fn doctor(req: &Request<'_>) -> Result<Report, DoctorError> {
    let mut notes = Vec::new();
    let anchor = load_anchor(req.server.profile, req.anchor, &mut notes)?;
    let identity = match req.identity {
        Some((c, k)) => Some(load_identity(req.server.profile, c, k, &mut notes)?),
        None => None,
    };
    let mut failures: Vec<Failure> = Vec::new();
    if let Err(f) = &anchor {
        failures.push(f.clone());
    }
    let id = match identity {
        Some(Err(f)) => {
            failures.push(f);
            None
        }
        Some(Ok((id, mismatch))) => {
            failures.extend(mismatch);
            Some(id)
        }
        None => None,
    };
    let exam = examine::examine(&examine::Request {
        server: req.server,
        anchor: anchor.as_ref().ok().map(Vec::as_slice),
        identity: id.as_ref(),
    })?;
    failures.extend(exam.failures.iter().cloned());
    notes.extend(exam.notes.iter().cloned());
    let (path, pinned_leaf) = exam
        .verdict
        .as_ref()
        .map_or((Vec::new(), false), |v| (v.path.clone(), v.pinned_leaf));
    Ok(Report {
        works: failures.is_empty() && exam.works,
        target: exam.target,
        profile: req.server.profile.name,
        hostname: req.server.hostname.map(str::to_string),
        device_time: req.server.time,
        anchor_file: req.anchor.name.to_string(),
        anchor: anchor
            .as_ref()
            .ok()
            .and_then(|d| Cert::parse(d).ok())
            .map(|c| c.subject().to_string()),
        handshake: exam.handshake,
        needs: exam.needs,
        presented: exam
            .chain
            .iter()
            .filter_map(|d| Cert::parse(d).ok())
            .collect(),
        failures,
        path,
        pinned_leaf,
        notes,
    })
}

/// The verdict on the device's own files (`--files DIR`), as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct FilesReport {
    /// The folder.
    pub dir: String,
    /// The profile's name.
    pub profile: &'static str,
    /// The device's clock.
    #[serde(skip)]
    pub device_time: OffsetDateTime,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: FilesVerdict,
}

/// Loads the files of `dir` (already read) as the device loads them.
pub fn files(
    dir: &str,
    found: &[DeviceFile],
    profile: &'static Profile,
    time: OffsetDateTime,
) -> Result<FilesReport, DoctorError> {
    let verdict = files::check(found, profile, time);
    if verdict.files.is_empty() {
        return Err(DoctorError::NoFiles(dir.to_string()));
    }
    Ok(FilesReport {
        dir: dir.to_string(),
        profile: profile.name,
        device_time: time,
        verdict,
    })
}

/// One line of the text report; the command styles each kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A section heading.
    Heading(String),
    /// Plain text.
    Text(String),
    /// A warning.
    Warn(String),
    /// Success.
    Ok(String),
    /// An empty line.
    Blank,
}

/// A date and time as people read them, UTC.
pub fn fmt_time(t: OffsetDateTime) -> String {
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        t.date(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A chain as `openssl s_client -showcerts` lists it, numbered from `first_index`.
pub fn chain_lines(title: &str, certs: &[Cert], first_index: usize) -> Vec<Line> {
    let mut out = vec![Line::Heading(title.to_string())];
    for (i, c) in certs.iter().enumerate() {
        out.push(Line::Text(format!(
            "{:>2} s:{}",
            i + first_index,
            c.subject()
        )));
        out.push(Line::Text(format!("   i:{}", c.issuer())));
        out.push(Line::Text(format!(
            "   a:PKEY: {}; sigalg: {}",
            c.info.public_key.description, c.info.signature.name
        )));
        out.push(Line::Text(format!(
            "   v:NotBefore: {}; NotAfter: {}",
            fmt_time(c.not_before()),
            fmt_time(c.not_after())
        )));
    }
    out
}

/// The text report on a server.
pub fn render(r: &Report) -> Vec<Line> {
    let mut out = Vec::new();
    if !r.presented.is_empty() {
        out.extend(chain_lines(
            &format!("Certificate chain ({})", r.target),
            &r.presented,
            0,
        ));
        out.push(Line::Blank);
    }
    out.push(Line::Heading("The device".into()));
    out.push(Line::Text(format!("  profile          {}", r.profile)));
    out.push(Line::Text(match &r.anchor {
        Some(subject) => format!("  anchor           {} ({subject})", r.anchor_file),
        None => format!("  anchor           {} (does not load)", r.anchor_file),
    }));
    out.push(Line::Text(format!(
        "  server_hostname  {}",
        r.hostname
            .as_deref()
            .map_or("(not passed)".to_string(), |h| format!("\"{h}\""))
    )));
    out.push(Line::Text(format!(
        "  clock            {}",
        fmt_time(r.device_time)
    )));
    let h = &r.handshake;
    if let (Some(v), Some(s)) = (&h.version, &h.suite) {
        let kx = match (&h.group, &h.signature_algorithm) {
            (Some(g), Some(sa)) => format!(", {g}, signed {sa}"),
            _ => String::new(),
        };
        out.push(Line::Text(format!("  handshake        {v}, {s}{kx}")));
    }
    if h.client_cert_requested {
        out.push(Line::Text(
            "  client cert      requested by the server".into(),
        ));
    }
    out.push(Line::Blank);
    out.extend(r.notes.iter().cloned().map(Line::Warn));
    if r.works {
        out.push(Line::Ok(format!(
            "the device would connect: {}",
            if r.pinned_leaf {
                "the anchor is the server's own self-signed certificate".to_string()
            } else {
                let path: Vec<String> = r.path.iter().map(|i| i.to_string()).collect();
                format!("path {} -> anchor", path.join(" -> "))
            }
        )));
    } else {
        out.extend(failure_lines(&r.failures));
    }
    out
}

/// The text report on the device's files.
pub fn render_files(r: &FilesReport) -> Vec<Line> {
    let v = &r.verdict;
    let mut out = vec![Line::Heading(format!(
        "Device files in {} ({} profile, clock {})",
        r.dir,
        r.profile,
        fmt_time(r.device_time)
    ))];
    for f in &v.files {
        let about = match (&f.copy_of, &f.subject) {
            (Some(twin), _) => format!(" {twin}, which the device loads"),
            (None, Some(s)) => format!(" ({s})"),
            (None, None) => String::new(),
        };
        out.push(Line::Text(format!(
            "  {:<28} {}{about}",
            f.file,
            f.role.words()
        )));
    }
    out.push(Line::Blank);
    out.extend(v.notes.iter().cloned().map(Line::Warn));
    if v.works {
        out.push(Line::Ok("the device loads these files".into()));
    } else {
        out.extend(failure_lines(&v.failures));
    }
    out
}

/// The device fails: what it says, mbedTLS's error, why, the fix, for each failure.
fn failure_lines(failures: &[Failure]) -> Vec<Line> {
    let mut out = vec![Line::Heading("✗ the device would fail".into())];
    for (i, f) in failures.iter().enumerate() {
        out.push(Line::Text(format!("  the device says  {}", f.device_says)));
        if let Some(o) = &f.outcomes {
            out.push(Line::Text(format!("  which one        {}", o.decided_by)));
        }
        if let Some(e) = f.error {
            out.push(Line::Text(format!(
                "  mbedTLS          {} {} ({})",
                e.code,
                e.hex(),
                e.name
            )));
        }
        out.push(Line::Text(format!("  why              {}", f.why)));
        out.push(Line::Text(format!("  fix              {}", f.fix)));
        if i + 1 < failures.len() {
            out.push(Line::Blank);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::issue::{self, CertSpec, Role};
    use devtls_pki::keys::{KeyType, PrivateKey};
    use devtls_pki::profile::{MICROPYTHON_PEM, OPENMV};
    use devtls_pki::sniff;

    #[test]
    fn the_anchor_loads_as_the_profiles_firmware_loads_it() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let ca =
            issue::self_signed_root(&CertSpec::new("Doctor Root", Role::Ca, 30), &key).unwrap();
        let pem = sniff::sniff(ca.pem().as_bytes()).unwrap();
        let der = sniff::sniff(&ca.der).unwrap();
        let file = |sniffed| NamedFile {
            name: "ca.pem",
            sniffed,
        };
        let mut notes = Vec::new();
        // openmv firmware reads DER only: the PEM anchor fails in its words.
        let f = load_anchor(&OPENMV, file(&pem), &mut notes)
            .unwrap()
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::AnchorUnloadable);
        assert_eq!(f.device_says, "ValueError: invalid cert");
        assert!(f.fix.contains("--to der"), "{}", f.fix);
        // Firmware with the PEM parser loads it; both load the DER.
        let loaded = |profile, sniffed| {
            load_anchor(profile, file(sniffed), &mut Vec::new())
                .unwrap()
                .unwrap()
        };
        assert_eq!(loaded(&MICROPYTHON_PEM, &pem), ca.der);
        assert_eq!(loaded(&OPENMV, &der), ca.der);
        // A key given as the anchor is not doctor's to judge: exit 2.
        let k = sniff::sniff(&key.pkcs8_der()).unwrap();
        assert!(matches!(
            load_anchor(&OPENMV, file(&k), &mut notes),
            Err(DoctorError::AnchorNotACertificate { .. })
        ));
    }

    #[test]
    fn device_time_reads_the_forms_doctor_documents() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(device_time("now", &OPENMV, now).unwrap(), now);
        assert_eq!(
            device_time("unset", &OPENMV, now).unwrap().year(),
            OPENMV.unset_clock_year
        );
        let t = device_time("2027-03-01T12:00:00Z", &OPENMV, now).unwrap();
        assert_eq!((t.year(), t.hour()), (2027, 12));
        assert_eq!(device_time("2027-03-01 12:00:00", &OPENMV, now).unwrap(), t);
        assert_eq!(
            device_time("2000-01-01", &OPENMV, now).unwrap().year(),
            2000
        );
        assert_eq!(
            device_time("yesterday", &OPENMV, now),
            Err(DoctorError::DeviceTime("yesterday".into()))
        );
    }
}

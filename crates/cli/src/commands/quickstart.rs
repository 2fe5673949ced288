//! `devtls quickstart`: the device guide on loopback in one go.
//!
//! Makes the guide's server and client files, then runs the guide's
//! exchanges in-process against a real server on 127.0.0.1 (the `net`
//! crate's, restricted to the device profile): a verified client, mutual
//! TLS, the same server refusing a client without a certificate, and DTLS
//! with its cookie. The table reports what each step really did; a step that
//! could not be run says so and never counts as working.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anstream::println;
use anyhow::Context as _;
use comfy_table::{presets, Cell, Color, ContentArrangement, Table};
use devtls_net::config::{Anchors, ClientSettings, Identity, ServerSettings};
use devtls_net::dtls;
use devtls_net::tls::client::{self, Error as ClientError, SessionInfo};
use devtls_net::tls::server::{ClientReport, Outcome, Server};
use devtls_pki::chain::Cert;
use devtls_pki::files::{self, Output};
use devtls_pki::fingerprint;
use devtls_pki::issue::{self, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::profile::{self, Profile, TlsVersion};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::output;
use crate::snippets::{self, DeviceFiles};

// `devtls quickstart`: described on `Command::Quickstart` in mod.rs, where `devtls --help`
// lists it without building these arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  devtls quickstart                 # again: reuses its files, or picks devtls-quickstart-2
  devtls quickstart --out /tmp/try --force
  devtls quickstart --json

Run again, quickstart reuses the files of an earlier run when they are its
own, still valid and lint-clean (keys are never overwritten without --force);
when the folder holds anything else it leaves it alone and writes into a
fresh one (devtls-quickstart-2, ...), or, with --out, stops and says why.")]
pub struct Args {
    /// Folder for the files (created if missing) [default: devtls-quickstart].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Make new files, overwriting those left by an earlier run.
    #[arg(long)]
    force: bool,
    /// Print the outcome as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The device's name in the client certificate.
const DEVICE_CN: &str = "device-01";
/// What the device sends, as in the guide.
const HELLO: &[u8] = b"hello\n";
/// Bound on every exchange and on waiting for the server's report of it.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The DTLS row's name.
const DTLS_STEP: &str = "DTLS with cookie";
/// The port the printed commands use, as in the guide.
const GUIDE_PORT: u16 = 8443;
/// Where the files go without --out.
const DEFAULT_OUT: &str = "devtls-quickstart";

mod reuse;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    Failed,
    NotRun,
}

/// What an exchange really did, seen from both ends.
#[derive(Debug, Default, Serialize)]
struct Seen {
    version: String,
    cipher_suite: String,
    /// What the client got back.
    reply: String,
    /// What the server got from the client.
    server_received: String,
    /// SHA-256 of the certificate the client was shown (and verified).
    server_cert_sha256: Option<String>,
    /// SHA-256 of the client certificate the server verified (mTLS).
    client_cert_sha256: Option<String>,
}

#[derive(Debug, Serialize)]
struct Step {
    step: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    seen: Option<Seen>,
}

impl Step {
    fn ok(step: &'static str, detail: String) -> Self {
        Step {
            step,
            status: Status::Ok,
            detail,
            seen: None,
        }
    }

    fn failed(step: &'static str, detail: String) -> Self {
        Step {
            step,
            status: Status::Failed,
            detail,
            seen: None,
        }
    }
}

/// Where this run's files came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum FilesFrom {
    /// Made by this run.
    New,
    /// quickstart's own files from an earlier run, valid and lint-clean.
    Reused,
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    out: String,
    profile: &'static str,
    files_from: FilesFrom,
    /// What quickstart did with an earlier run's files, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    files: Vec<String>,
    steps: &'a [Step],
    device: DeviceLines,
}

#[derive(Serialize)]
struct DeviceLines {
    /// The host name the device checks (an address of this PC, or localhost).
    host: String,
    copy: String,
    pc_server: String,
    micropython: String,
}

/// The files the guide names, made for this run.
struct Made {
    server_der: Vec<u8>,
    server_key_der: Vec<u8>,
    client_der: Vec<u8>,
    client_key_der: Vec<u8>,
    /// The files, as paths.
    written: Vec<String>,
    from: FilesFrom,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = profile::DEFAULT;
    let lan = lan_address();
    let (out, found, note) = folder(&args, lan, profile)?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create the folder", out.display()))?;
    let made = match found {
        Some(earlier) => reused(&out, *earlier),
        None => make_files(&out, args.force, lan, profile)?,
    };
    let mut steps = file_steps(&made);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    steps.extend(runtime.block_on(exchanges(&made, profile)));

    let ok = !steps.iter().any(|s| s.status == Status::Failed);
    let host = lan.map_or_else(|| "localhost".to_string(), |ip| ip.to_string());
    let device = device_lines(&out, &host);
    if args.json {
        output::json(&Report {
            ok,
            out: out.display().to_string(),
            profile: profile.name,
            files_from: made.from,
            note,
            files: made.written.clone(),
            steps: &steps,
            device,
        })?;
    } else {
        if let Some(note) = &note {
            match made.from {
                FilesFrom::Reused => output::ok(note),
                FilesFrom::New => output::warn(note),
            }
        }
        print_human(&out, &steps, &made, &device, lan.is_some(), profile);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The folder to use and what an earlier run left there (files to reuse),
/// with what was decided in words: without --force, quickstart's own valid
/// files are reused; anything else is left alone, and the run moves to a
/// fresh folder, or stops when the user named this one.
fn folder(
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
fn reused(out: &Path, earlier: reuse::Reusable) -> Made {
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
fn make_files(
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
fn file_steps(made: &Made) -> Vec<Step> {
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

/// `AB:CD:...` (how the net crate reports fingerprints) as `abcd...` (ours in JSON).
fn plain_hex(colon: &str) -> String {
    colon.replace(':', "").to_lowercase()
}

fn short(hex: &str) -> String {
    hex.chars().take(16).collect::<String>() + "…"
}

/// A server running in this process, and the reports of its clients.
struct Running {
    addr: SocketAddr,
    reports: mpsc::UnboundedReceiver<ClientReport>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(settings: ServerSettings) -> Result<Running, String> {
        let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), settings)
            .await
            .map_err(|e| e.to_string())?;
        let addr = server.local_addr().map_err(|e| e.to_string())?;
        let (tx, reports) = mpsc::unbounded_channel();
        let task = tokio::spawn(server.serve(None, move |r| {
            let _ = tx.send(r.clone());
        }));
        Ok(Running {
            addr,
            reports,
            task,
        })
    }

    /// The server's report of the client that just finished.
    async fn next_report(&mut self) -> Option<ClientReport> {
        tokio::time::timeout(STEP_TIMEOUT, self.reports.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn exchanges(made: &Made, profile: &'static Profile) -> Vec<Step> {
    let mut steps = Vec::new();
    let identity = |cert: &[u8], key: &[u8]| Identity::from_bytes(cert, key, profile);
    let (server_id, client_id) = match (
        identity(&made.server_der, &made.server_key_der),
        identity(&made.client_der, &made.client_key_der),
    ) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => {
            steps.push(Step::failed(
                "TLS server",
                format!("the new files do not load: {e}"),
            ));
            return steps;
        }
    };
    let server_sha256 = fingerprint::sha256_hex(&made.server_der);
    let anchors = Anchors::Given(vec![made.server_der.clone().into()]);
    let client_settings = |identity: Option<Identity>| ClientSettings {
        identity,
        profile,
        timeout: STEP_TIMEOUT,
        ..ClientSettings::new("localhost", anchors.clone())
    };
    let server_settings = |client_ca: Option<Vec<u8>>| ServerSettings {
        client_ca: client_ca.map(|der| vec![der.into()]),
        profile,
        ..ServerSettings::new(server_id.clone())
    };

    // The guide's server, and a client that verifies it.
    match Running::start(server_settings(None)).await {
        Err(e) => steps.push(Step::failed("TLS server", e)),
        Ok(mut server) => {
            steps.push(Step::ok(
                "TLS server",
                format!(
                    "listening on {} as the {} device would ({})",
                    server.addr,
                    profile.name,
                    versions(profile)
                ),
            ));
            let step = exchange(
                "verified client",
                &mut server,
                &client_settings(None),
                &server_sha256,
                None,
            )
            .await;
            steps.push(step);
        }
    }

    // The same with the server demanding the device's certificate.
    match Running::start(server_settings(Some(made.client_der.clone()))).await {
        Err(e) => steps.push(Step::failed("mutual TLS", format!("no server: {e}"))),
        Ok(mut server) => {
            let step = exchange(
                "mutual TLS",
                &mut server,
                &client_settings(Some(client_id.clone())),
                &server_sha256,
                Some(&fingerprint::sha256_hex(&made.client_der)),
            )
            .await;
            steps.push(step);
            steps.push(refused_without_certificate(&mut server, &client_settings(None)).await);
        }
    }

    // DTLS with its cookie, when the device speaks DTLS.
    if profile.speaks(TlsVersion::Dtls12) {
        let (server, client) = (server_settings(None), client_settings(None));
        let step = tokio::task::spawn_blocking(move || {
            let expected = Expected {
                server_sha256: &server_sha256,
                client_sha256: None,
            };
            dtls_step(server, &client, &expected)
        })
        .await
        .unwrap_or_else(|e| Step::failed(DTLS_STEP, format!("the DTLS step stopped: {e}")));
        steps.push(step);
    } else {
        steps.push(Step {
            step: DTLS_STEP,
            status: Status::NotRun,
            detail: format!("not run: the {} profile has no DTLS", profile.name),
            seen: None,
        });
    }
    steps
}

fn versions(profile: &Profile) -> String {
    devtls_net::restrict::tls_versions(profile)
        .iter()
        .map(|v| format!("{:?}", v.version).replace('_', "."))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One verified exchange: the client must get `hello` back and the server
/// must have received the client's `hello`.
/// The fingerprints are of the files just written: the exchange must have
/// shown exactly those certificates.
async fn exchange(
    step: &'static str,
    server: &mut Running,
    settings: &ClientSettings,
    server_sha256: &str,
    client_sha256: Option<&str>,
) -> Step {
    let addr = server.addr.to_string();
    let mut session = match client::connect(&addr, settings).await {
        Ok(session) => session,
        Err(e) => return Step::failed(step, failure_words(&e)),
    };
    let reply = session.exchange(HELLO).await;
    let info = session.info.clone();
    session.close().await;
    let report = server.next_report().await;
    let expected = Expected {
        server_sha256,
        client_sha256,
    };
    judge(step, &info, reply, report, &expected, String::new())
}

/// The certificates an exchange must have shown: the files just written.
struct Expected<'a> {
    server_sha256: &'a str,
    client_sha256: Option<&'a str>,
}

/// The verdict on one exchange, from both ends: the client verified the
/// written server certificate and got `hello` back, the server received the
/// client's `hello` (and verified the written client certificate under mTLS).
fn judge(
    step: &'static str,
    info: &SessionInfo,
    reply: std::io::Result<Vec<u8>>,
    report: Option<ClientReport>,
    expected: &Expected,
    how: String,
) -> Step {
    let mut seen = Seen {
        version: info.version.clone(),
        cipher_suite: info.cipher_suite.clone(),
        reply: reply
            .as_ref()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .unwrap_or_default(),
        server_cert_sha256: info.chain.first().map(|c| plain_hex(&c.sha256)),
        ..Seen::default()
    };
    let server_side = match report.map(|r| r.outcome) {
        Some(Outcome::Served(served)) => {
            seen.server_received = served.received.clone();
            seen.client_cert_sha256 = served.client_chain.first().map(|c| plain_hex(&c.sha256));
            Ok(served)
        }
        Some(Outcome::Failed(d)) => Err(format!("the server failed: {}", d.diagnosis.what)),
        None => Err(format!(
            "the server reported nothing within {STEP_TIMEOUT:?}"
        )),
    };
    let problem = match (&reply, &server_side) {
        (Err(e), _) => Some(format!("no reply: {e}")),
        (_, Err(e)) => Some(e.clone()),
        _ if !info.verified => Some("the server's certificate was not verified".into()),
        _ if seen.server_cert_sha256.as_deref() != Some(expected.server_sha256) => {
            Some("the server presented another certificate than server.der".into())
        }
        _ if seen.client_cert_sha256.as_deref() != expected.client_sha256 => Some(format!(
            "the server verified {:?} as the client certificate, not client.der",
            seen.client_cert_sha256
        )),
        _ if seen.reply.as_bytes() != HELLO => Some(format!("the reply was {:?}", seen.reply)),
        _ if seen.server_received.as_bytes() != HELLO => {
            Some(format!("the server received {:?}", seen.server_received))
        }
        _ => None,
    };
    let mut detail = format!(
        "{} {}; {how}server.der verified for localhost; sent hello, got {:?}",
        info.version,
        info.cipher_suite,
        seen.reply.trim_end()
    );
    if let Ok(served) = &server_side {
        if let Some(cert) = served.client_chain.first() {
            detail += &format!("; the server verified the client {}", cert.subject);
        }
    }
    Step {
        step,
        status: if problem.is_none() {
            Status::Ok
        } else {
            Status::Failed
        },
        detail: problem.unwrap_or(detail),
        seen: Some(seen),
    }
}

/// DTLS as the device's DTLS server does it: the first ClientHello gets a
/// HelloVerifyRequest cookie bound to the client's address, and only a
/// ClientHello that returns it starts a handshake. Blocking (the DTLS
/// endpoints are), so it runs on its own threads.
fn dtls_step(settings: ServerSettings, client: &ClientSettings, expected: &Expected) -> Step {
    let mut server = match dtls::Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), settings) {
        Ok(server) => server,
        Err(e) => return Step::failed(DTLS_STEP, format!("no DTLS server: {e}")),
    };
    let addr = match server.local_addr() {
        Ok(addr) => addr,
        Err(e) => return Step::failed(DTLS_STEP, format!("no DTLS server: {e}")),
    };
    let serving = std::thread::spawn(move || {
        let mut reports = Vec::new();
        let served = server.serve(Some(1), Some(STEP_TIMEOUT * 2), |r| reports.push(r.clone()));
        (server.stats(), reports, served)
    });
    let exchanged = dtls::exchange(&addr.to_string(), client, HELLO);
    let Ok((stats, reports, served)) = serving.join() else {
        return Step::failed(DTLS_STEP, "the DTLS server stopped unexpectedly".into());
    };
    let (info, reply) = match exchanged {
        Ok(done) => done,
        Err(e) => return Step::failed(DTLS_STEP, failure_words(&e)),
    };
    if let Err(e) = served {
        return Step::failed(DTLS_STEP, format!("the DTLS server failed: {e}"));
    }
    // The cookie round trip, from the server's own counters.
    if stats.hello_verify_requests == 0 || stats.handshakes == 0 {
        return Step::failed(
            DTLS_STEP,
            format!(
                "no cookie exchange: {} HelloVerifyRequest(s) sent, {} handshake(s) after a valid cookie",
                stats.hello_verify_requests, stats.handshakes
            ),
        );
    }
    let how = format!(
        "HelloVerifyRequest cookie sent, the client came back with it ({} handshake after a valid cookie); ",
        stats.handshakes
    );
    judge(
        DTLS_STEP,
        &info,
        Ok(reply),
        reports.into_iter().next(),
        expected,
        how,
    )
}

/// A client failure in plain words, with what the device would print.
fn failure_words(e: &ClientError) -> String {
    match e {
        ClientError::Handshake(f) => {
            let words = f
                .diagnosis
                .device
                .as_ref()
                .map(|d| format!(" (the device: {})", d.printed))
                .unwrap_or_default();
            format!("{}{words}; {}", f.diagnosis.what, f.diagnosis.fix)
        }
        other => other.to_string(),
    }
}

/// The mTLS server must refuse a client that has no certificate, and say why.
async fn refused_without_certificate(server: &mut Running, settings: &ClientSettings) -> Step {
    const STEP: &str = "mTLS, no client certificate";
    let addr = server.addr.to_string();
    let client_side = match client::connect(&addr, settings).await {
        Ok(mut session) => {
            // Under TLS 1.3 the refusal arrives after the client's handshake ends.
            let reply = session.exchange(HELLO).await;
            session.close().await;
            match reply {
                Ok(r) if r == HELLO => {
                    return Step::failed(
                        STEP,
                        "the server answered a client without a certificate".into(),
                    )
                }
                _ => "the connection was closed".to_string(),
            }
        }
        Err(ClientError::Handshake(f)) => f.diagnosis.what.clone(),
        Err(e) => return Step::failed(STEP, e.to_string()),
    };
    match server.next_report().await.map(|r| r.outcome) {
        Some(Outcome::Failed(d)) => Step::ok(
            STEP,
            format!(
                "refused, as it must be; server: {}; client: {client_side}",
                d.diagnosis.what
            ),
        ),
        Some(Outcome::Served(_)) => Step::failed(
            STEP,
            "the server served a client without a certificate".into(),
        ),
        None => Step::failed(
            STEP,
            format!("the server reported nothing within {STEP_TIMEOUT:?}"),
        ),
    }
}

/// This PC's address on its outgoing interface, so the certificate also
/// names the address a device on the LAN uses. Connecting a UDP socket only
/// picks the route: nothing is sent.
fn lan_address() -> Option<IpAddr> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?; // TEST-NET-1 (RFC 5737): any routable address would do
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn device_lines(out: &Path, host: &str) -> DeviceLines {
    let path = |f: &str| out.join(f).display().to_string();
    let files = DeviceFiles {
        cert: Some("client.der"),
        key: Some("client.key.der"),
        anchor: Some("server.der"),
    };
    DeviceLines {
        host: host.to_string(),
        copy: snippets::copy_commands(&[
            path("client.der"),
            path("client.key.der"),
            path("server.der"),
        ]),
        pc_server: format!(
            "devtls serve --cert {} --key {} --ca {} --bind 0.0.0.0 --port {GUIDE_PORT}",
            path("server.der"),
            path("server.key.der"),
            path("client.der")
        ),
        micropython: snippets::client(&files, host, GUIDE_PORT),
    }
}

fn print_human(
    out: &Path,
    steps: &[Step],
    made: &Made,
    device: &DeviceLines,
    lan: bool,
    profile: &Profile,
) {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["step", "result", "what happened"]);
    // Piped output has no terminal width to wrap to.
    if table.width().is_none() {
        table.set_width(100);
    }
    for step in steps {
        let (word, color) = match step.status {
            Status::Ok => ("ok", Color::Green),
            Status::Failed => ("FAILED", Color::Red),
            Status::NotRun => ("not run", Color::Yellow),
        };
        table.add_row([
            Cell::new(step.step),
            Cell::new(word).fg(color),
            Cell::new(&step.detail),
        ]);
    }
    output::heading(&format!(
        "The device guide on loopback, as the {} device (files in {}):",
        profile.name,
        out.display()
    ));
    println!("{table}");
    let verb = match made.from {
        FilesFrom::New => "wrote",
        FilesFrom::Reused => "reused",
    };
    for file in &made.written {
        println!("  {verb} {file}");
    }
    println!();
    output::heading("Next, with the real device. On this PC, the server:");
    println!("{}", device.pc_server);
    println!();
    output::heading("Copy to the device (DER; the device cannot read PEM):");
    print!("{}", device.copy);
    println!();
    output::heading(&format!(
        "On the device, connect with mutual TLS and check the name {}:",
        device.host
    ));
    print!("{}", device.micropython);
    if !lan {
        println!();
        output::warn(
            "no LAN address found: the certificate names only localhost; for a device, \
             make one with `devtls new server --ip <this PC's address>`",
        );
    }
}

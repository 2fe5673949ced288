//! quickstart's exchanges: the guide's server in this process, a verified
//! client, mutual TLS, the refusal of a client without a certificate and
//! DTLS with its cookie, each judged from both ends.

use std::net::SocketAddr;

use devtls_net::config::{Anchors, ClientSettings, Identity, ServerSettings};
use devtls_net::dtls;
use devtls_net::tls::client::{self, Error as ClientError, SessionInfo};
use devtls_net::tls::server::{ClientReport, Outcome, Server};
use devtls_pki::fingerprint;
use devtls_pki::profile::{Profile, TlsVersion};
use tokio::sync::mpsc;

use super::folder::Made;
use super::{Seen, Status, Step, DTLS_STEP, HELLO, STEP_TIMEOUT};

/// `AB:CD:...` (how the net crate reports fingerprints) as `abcd...` (ours in JSON).
fn plain_hex(colon: &str) -> String {
    colon.replace(':', "").to_lowercase()
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

/// The guide's exchanges on loopback, a row of the table each.
pub(super) async fn exchanges(made: &Made, profile: &'static Profile) -> Vec<Step> {
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

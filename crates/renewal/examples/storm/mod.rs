//! A renewal storm: every device of a fleet renews exactly once through
//! `devtls fleet serve` (one address, e.g. nginx's stream proxy in front of
//! several services), with bounded concurrency, retries with backoff and
//! jitter as `renew.py` does, and 503 `Retry-After` honoured; then the
//! inventory (PostgreSQL, read with `psql`) and the CRL (`devtls fleet crl`,
//! read with `openssl crl`) are checked against what the devices hold.
//!
//! Shared by `bench/fleet_storm.sh` (through the `fleet_storm` example) and
//! the CLI test `fleet_storm` (which includes this file), so both run the
//! same load and the same checks. docs/renewal.md ("A renewal storm").

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

const KEYGEN: &str = "POST /.well-known/est/serverkeygen HTTP/1.1\r\nHost: fleet\r\n\
    Accept: application/x-devtls-renew\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// The confirmation: any request with the pending certificate confirms it;
/// `cacerts` asked again with the then active certificate makes nothing new
/// (the storm's services run with `--renew-after 0`, where a `serverkeygen`
/// repeated after a lost confirmation would rightly renew again).
const CACERTS: &str = "GET /.well-known/est/cacerts HTTP/1.1\r\nHost: fleet\r\n\
    Accept: application/pkix-cert\r\nConnection: close\r\n\r\n";

/// A device: its ID and its current certificate and PKCS#8 key (DER).
#[derive(Clone)]
pub struct Device {
    pub id: String,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// The devices of a fleet folder: `devices/ID/client.der` and `client.key.der`.
pub fn load_devices(fleet: &Path) -> std::io::Result<Vec<Device>> {
    let mut devices = Vec::new();
    for entry in std::fs::read_dir(fleet.join("devices"))? {
        let p = entry?.path();
        devices.push(Device {
            id: p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            cert: std::fs::read(p.join("client.der"))?,
            key: std::fs::read(p.join("client.key.der"))?,
        });
    }
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(devices)
}

/// Where and how the devices connect.
pub struct Config {
    /// The one address in front of the services.
    pub addr: SocketAddr,
    /// The name the devices check in the service's certificate.
    pub server_name: String,
    /// The fleet CA, DER: the devices' one anchor.
    pub ca: Vec<u8>,
    /// Devices renewing at once.
    pub concurrency: usize,
    /// Tries per request before the device gives up (the check then fails).
    pub tries: u32,
}

/// Counters the caller may watch during the storm (to kill a service mid-way).
#[derive(Default)]
pub struct Progress {
    /// Devices whose renewal is confirmed.
    pub renewed: AtomicU64,
    /// Requests sent (first tries and retries).
    pub requests: AtomicU64,
    /// Requests that repeated one that failed, was refused busy (503) or pending (409).
    pub retried: AtomicU64,
}

/// One device's end: its old certificate and the new one, or why it failed.
pub struct Outcome {
    pub id: String,
    pub old: Vec<u8>,
    pub new: Result<Vec<u8>, String>,
    /// Ask to confirmation, retries included.
    pub took: Duration,
}

/// What the storm did.
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// Every request's time (TCP connect to the answer's end).
    pub request_times: Vec<Duration>,
    pub requests: u64,
    pub retried: u64,
    /// Why requests were retried: `503`, `409`, or the I/O error's kind.
    pub retry_causes: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

/// What a request's answer means for the device.
enum Next<T> {
    Done(T),
    /// Try again after this long (503: the server's Retry-After), with this cause.
    Again(Option<u64>, String),
    Fail(String),
}

struct Client {
    addr: SocketAddr,
    name: ServerName<'static>,
    roots: Arc<rustls::RootCertStore>,
}

impl Client {
    fn exchange(&self, d: &Device, request: &str) -> Result<Answer, std::io::Error> {
        let err = |e: String| std::io::Error::other(e);
        let profile =
            devtls_pki::profile::by_name("openmv").ok_or_else(|| err("no profile".into()))?;
        let config =
            rustls::ClientConfig::builder_with_provider(devtls_net::restrict::provider(profile))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .map_err(|e| err(e.to_string()))?
                .with_root_certificates(self.roots.clone())
                .with_client_auth_cert(
                    vec![CertificateDer::from(d.cert.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(d.key.clone())),
                )
                .map_err(|e| err(e.to_string()))?;
        let mut conn = rustls::ClientConnection::new(Arc::new(config), self.name.clone())
            .map_err(|e| err(e.to_string()))?;
        let mut tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw) {
            Ok(_) => {}
            // The service closes without close_notify after `Connection: close`.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e),
        }
        let (status, headers, body) = split_answer(&raw).map_err(err)?;
        let retry_after = headers
            .iter()
            .find(|(n, _)| n == "retry-after")
            .and_then(|(_, v)| v.parse().ok());
        Ok(Answer {
            status,
            retry_after,
            body: body.to_vec(),
        })
    }

    /// Sends `request` as `d` until `judge` is done with an answer, at most
    /// `tries` times: after a failure 2, 4, 8... s (at most 60), or the 503's
    /// Retry-After, plus up to as much again of jitter (renew.py's rule).
    fn until<T>(
        &self,
        d: &Device,
        request: &str,
        tries: u32,
        watch: &Watch<'_>,
        judge: impl Fn(Answer) -> Next<T>,
    ) -> Result<T, String> {
        let mut last = String::new();
        for i in 0..tries {
            if i > 0 {
                watch.progress.retried.fetch_add(1, Ordering::Relaxed);
            }
            watch.progress.requests.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let got = self.exchange(d, request);
            watch.times.lock().unwrap().push(t0.elapsed());
            let (wait, cause) = match got.map(&judge) {
                Ok(Next::Done(t)) => return Ok(t),
                Ok(Next::Fail(why)) => return Err(why),
                Ok(Next::Again(after, cause)) => (after, cause),
                Err(e) => (None, format!("{:?}", e.kind())),
            };
            *watch
                .causes
                .lock()
                .unwrap()
                .entry(cause.clone())
                .or_default() += 1;
            last = cause;
            let base = wait.unwrap_or(2u64 << i.min(5)).min(60) as f64;
            std::thread::sleep(Duration::from_secs_f64(base * (1.0 + jitter())));
        }
        Err(format!("gave up after {tries} tries (last: {last})"))
    }
}

/// An answer's headers: names in lower case, values trimmed.
pub type Headers = Vec<(String, String)>;

/// An HTTP/1.1 answer's status, headers and body.
pub fn split_answer(raw: &[u8]) -> Result<(u16, Headers, &[u8]), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, &raw[split + 4..]))
}

struct Watch<'a> {
    progress: &'a Progress,
    times: Mutex<Vec<Duration>>,
    causes: Mutex<BTreeMap<String, u64>>,
}

/// A number in [0, 1) from the OS's randomness (each device its own jitter).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let h = std::collections::hash_map::RandomState::new().build_hasher();
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn renew_one(
    client: &Client,
    cfg: &Config,
    d: &Device,
    watch: &Watch<'_>,
) -> Result<Vec<u8>, String> {
    let new = client.until(d, KEYGEN, cfg.tries, watch, |a| match a.status {
        200 => match devtls_renewal::encode::parse_devtls(&a.body) {
            Some((cert, key, _)) => Next::Done(Device {
                id: d.id.clone(),
                cert,
                key,
            }),
            None => Next::Fail("200 without the devtls format".into()),
        },
        503 => Next::Again(a.retry_after, "503".into()),
        // The pending key is at another service (its own fleet folder).
        409 => Next::Again(None, "409".into()),
        s => Next::Fail(format!(
            "ask answered {s}: {}",
            String::from_utf8_lossy(&a.body)
        )),
    })?;
    client.until(&new, CACERTS, cfg.tries, watch, |a| match a.status {
        200 if a.body == cfg.ca => Next::Done(()),
        503 => Next::Again(a.retry_after, "503".into()),
        s => Next::Fail(format!(
            "confirmation answered {s}: {}",
            String::from_utf8_lossy(&a.body)
        )),
    })?;
    Ok(new.cert)
}

/// Renews every device once, `cfg.concurrency` at a time.
pub fn run(cfg: &Config, devices: Vec<Device>, progress: &Progress) -> Report {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cfg.ca.clone()))
        .expect("the fleet CA");
    let client = Client {
        addr: cfg.addr,
        name: ServerName::try_from(cfg.server_name.clone()).expect("a server name"),
        roots: Arc::new(roots),
    };
    let watch = Watch {
        progress,
        times: Mutex::new(Vec::with_capacity(devices.len() * 2)),
        causes: Mutex::new(BTreeMap::new()),
    };
    let queue = Mutex::new(devices.into_iter());
    let outcomes = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cfg.concurrency {
            s.spawn(|| loop {
                let Some(d) = queue.lock().unwrap().next() else {
                    return;
                };
                let t0 = Instant::now();
                let new = renew_one(&client, cfg, &d, &watch);
                if new.is_ok() {
                    progress.renewed.fetch_add(1, Ordering::Relaxed);
                }
                outcomes.lock().unwrap().push(Outcome {
                    id: d.id,
                    old: d.cert,
                    new,
                    took: t0.elapsed(),
                });
            });
        }
    });
    Report {
        outcomes: outcomes.into_inner().unwrap(),
        request_times: watch.times.into_inner().unwrap(),
        requests: progress.requests.load(Ordering::Relaxed),
        retried: progress.retried.load(Ordering::Relaxed),
        retry_causes: watch.causes.into_inner().unwrap(),
        elapsed: start.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

impl Report {
    /// Devices renewed.
    pub fn renewed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.new.is_ok()).count()
    }

    /// The figures, one per line.
    pub fn summary(&self) -> String {
        let mut req = self.request_times.clone();
        req.sort();
        let mut ren: Vec<Duration> = self
            .outcomes
            .iter()
            .filter(|o| o.new.is_ok())
            .map(|o| o.took)
            .collect();
        ren.sort();
        let secs = self.elapsed.as_secs_f64();
        let causes: Vec<String> = self
            .retry_causes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        format!(
            "devices renewed          {} of {} in {secs:.1} s: {:.0} renewals/s\n\
             request latency          p50 {:.0} ms, p99 {:.0} ms ({} requests)\n\
             renewal latency          p50 {:.0} ms, p99 {:.0} ms (ask to confirmation, retries included)\n\
             retried requests         {} of {} ({:.2}%; causes: {})\n",
            self.renewed(),
            self.outcomes.len(),
            self.renewed() as f64 / secs.max(1e-9),
            percentile(&req, 0.5),
            percentile(&req, 0.99),
            self.requests,
            percentile(&ren, 0.5),
            percentile(&ren, 0.99),
            self.retried,
            self.requests,
            100.0 * self.retried as f64 / (self.requests.max(1) as f64),
            if causes.is_empty() { "none".into() } else { causes.join(", ") },
        )
    }
}

/// The inventory's certificate rows, `device|sha256|serial|status`, and the
/// renewals per device, read with `psql` from the database at `url`.
pub struct Inventory {
    pub rows: Vec<[String; 4]>,
    pub renewals: BTreeMap<String, u64>,
}

impl Inventory {
    pub fn read(psql: &Path, url: &str) -> Result<Inventory, String> {
        let query = |sql: &str| -> Result<String, String> {
            let out = Command::new(psql)
                .args([
                    "-X",
                    "-q",
                    "-t",
                    "-A",
                    "-v",
                    "ON_ERROR_STOP=1",
                    url,
                    "-c",
                    sql,
                ])
                .output()
                .map_err(|e| format!("{}: {e}", psql.display()))?;
            if !out.status.success() {
                return Err(format!("psql: {}", String::from_utf8_lossy(&out.stderr)));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let rows = query("SELECT device, sha256, serial, status FROM certs ORDER BY id")?
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() == 4).then(|| [f[0], f[1], f[2], f[3]].map(str::to_string))
            })
            .collect();
        let renewals = query("SELECT device, COUNT(*) FROM renewals GROUP BY device")?
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(d, n)| (d.to_string(), n.trim().parse().unwrap_or(0)))
            .collect();
        Ok(Inventory { rows, renewals })
    }
}

/// The serials a DER CRL lists (lower-case hex, no leading zeros), read by `openssl crl`.
pub fn crl_serials(crl: &Path) -> Result<BTreeSet<String>, String> {
    let out = Command::new("openssl")
        .args(["crl", "-inform", "der", "-noout", "-text", "-in"])
        .arg(crl)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl crl: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number:"))
        .map(|s| norm_serial(s.trim()))
        .collect())
}

fn norm_serial(s: &str) -> String {
    let s = s.trim_start_matches('0').to_ascii_lowercase();
    if s.is_empty() {
        "0".into()
    } else {
        s
    }
}

/// Checks the storm's end against the inventory and the CRL: every device
/// renewed; in the inventory each has exactly two certificates, the old one
/// `revoked` (the services run `--revoke-old`) and the new one it holds
/// `active`, and exactly one renewal (none issued twice, none lost); no
/// other rows; the CRL lists exactly the inventory's revoked serials.
/// Returns one line per check, and whether all passed.
pub fn check(report: &Report, inv: &Inventory, crl: &BTreeSet<String>) -> (String, bool) {
    let mut failures: Vec<String> = Vec::new();
    let mut fail = |what: String| {
        if failures.len() < 20 {
            failures.push(what);
        }
    };
    let mut by_device: BTreeMap<&str, Vec<&[String; 4]>> = BTreeMap::new();
    for r in &inv.rows {
        by_device.entry(&r[0]).or_default().push(r);
    }
    let mut lost = 0;
    let mut wrong = 0;
    let mut twice = 0;
    for o in &report.outcomes {
        let Ok(new) = &o.new else {
            lost += 1;
            fail(format!(
                "{}: not renewed: {}",
                o.id,
                o.new.as_ref().err().unwrap()
            ));
            continue;
        };
        let (old_h, new_h) = (
            devtls_pki::fingerprint::sha256_hex(&o.old),
            devtls_pki::fingerprint::sha256_hex(new),
        );
        let rows = by_device.remove(o.id.as_str()).unwrap_or_default();
        let status_of = |h: &str| rows.iter().find(|r| r[1] == h).map(|r| r[3].as_str());
        let active = rows.iter().filter(|r| r[3] == "active").count();
        if rows.len() != 2
            || active != 1
            || status_of(&new_h) != Some("active")
            || status_of(&old_h) != Some("revoked")
        {
            wrong += 1;
            let got: Vec<String> = rows.iter().map(|r| format!("{} {}", r[2], r[3])).collect();
            fail(format!(
                "{}: inventory rows {got:?}, want the old revoked and the new active",
                o.id
            ));
        }
        let n = inv.renewals.get(&o.id).copied().unwrap_or(0);
        if n != 1 {
            twice += 1;
            fail(format!("{}: {n} renewals recorded, want 1", o.id));
        }
    }
    let strays = by_device.len();
    for d in by_device.keys().take(5) {
        fail(format!("{d}: in the inventory but not in the storm"));
    }
    let revoked: BTreeSet<String> = inv
        .rows
        .iter()
        .filter(|r| r[3] == "revoked")
        .map(|r| norm_serial(&r[2]))
        .collect();
    let crl_ok = &revoked == crl;
    if !crl_ok {
        fail(format!(
            "CRL: {} serials, inventory revoked {}; {} revoked not listed, {} listed not revoked",
            crl.len(),
            revoked.len(),
            revoked.difference(crl).count(),
            crl.difference(&revoked).count()
        ));
    }
    let n = report.outcomes.len();
    let mark = |bad: usize| if bad == 0 { "ok" } else { "FAILED" };
    let mut text = format!(
        "check: every device renewed                       {} ({lost} of {n} not)\n\
         check: one active certificate each, the new one   {} ({wrong} wrong)\n\
         check: exactly one renewal each (none twice)      {} ({twice} wrong)\n\
         check: no inventory rows outside the storm        {} ({strays} devices)\n\
         check: CRL = the inventory's revoked serials      {} ({} listed, {} revoked)\n",
        mark(lost),
        mark(wrong),
        mark(twice),
        mark(strays),
        mark(usize::from(!crl_ok)),
        crl.len(),
        revoked.len(),
    );
    for f in &failures {
        text.push_str(&format!("  {f}\n"));
    }
    (
        text,
        failures.is_empty() && lost + wrong + twice + strays == 0 && crl_ok,
    )
}

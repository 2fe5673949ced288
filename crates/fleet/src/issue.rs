//! Issuing and rotating device credentials, crash-safely and fast.
//!
//! Devices are issued in batches. For each batch:
//! 1. keys and certificates are made in memory, on every core;
//! 2. one transaction records each certificate as `pending`, owned by this
//!    process (the serial's `UNIQUE` constraint and the one-pending /
//!    one-active indexes make a second process skip, never duplicate);
//! 3. each device's files are written into this process's staging folder
//!    `.work/TOKEN/new/ID/`, which is then renamed to `devices/ID/` in one
//!    step (rotation first moves the old folder to `.work/TOKEN/old/ID/`);
//! 4. one `syncfs` makes the whole batch durable (no per-file fsync storm);
//! 5. one transaction marks the batch `active` (rotation: the old row
//!    `superseded` or `revoked` in the same transaction).
//!
//! A process killed anywhere in this leaves `pending` rows owned by a dead
//! process; [`crate::recover`] settles each one by looking at what reached
//! `devices/ID/`. Re-running the same `issue` then skips every device that
//! has a certificate and issues the rest.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use devtls_pki::fingerprint;
use devtls_pki::issue::{Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::devices::{DeviceReq, Source};
use crate::lock::{self, Lock};
use crate::{names, Error, Fleet};

/// Makes the `boot.py` for a device of a role (from the CLI's MicroPython snippets).
pub type BootPy = std::sync::Arc<dyn Fn(Role) -> String + Send + Sync>;

/// How devices are issued.
#[derive(Clone)]
pub struct IssueOptions {
    /// Days each certificate is valid.
    pub days: u32,
    /// What the device's certificate is for.
    pub role: Role,
    /// The device key type.
    pub key: KeyType,
    /// The `boot.py` written into every device folder.
    pub boot_py: BootPy,
    /// Worker threads for keys and signatures.
    pub threads: usize,
    /// Worker threads writing device folders: more than the cores, because
    /// file creation waits on the disk rather than the CPU.
    pub io_threads: usize,
    /// Devices per transaction and per `syncfs`.
    pub batch: usize,
    /// Give devices whose certificates were all revoked a new key and
    /// certificate (their folder is replaced); otherwise they are skipped.
    pub reissue: bool,
}

impl IssueOptions {
    /// Defaults: every core for crypto, four writers per core, batches of 1024.
    pub fn new(days: u32, role: Role, key: KeyType, boot_py: BootPy) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        IssueOptions {
            days,
            role,
            key,
            boot_py,
            threads,
            io_threads: threads * 4,
            batch: 1024,
            reissue: false,
        }
    }
}

/// What one `issue` or `rotate` run did. Bounded in size whatever the fleet size.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Certificates issued.
    pub issued: u64,
    /// Devices skipped because they already have a certificate (or another process is issuing one).
    pub skipped: u64,
    /// Devices that could not be issued, with why (at most 100 kept).
    pub failed: Vec<Failure>,
    /// How many failed in all.
    pub failed_count: u64,
    /// The first device issued (for messages).
    pub first: Option<String>,
    /// The last device issued.
    pub last: Option<String>,
}

/// A device that could not be issued.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The device.
    pub device: String,
    /// Why.
    pub error: String,
}

impl Report {
    fn fail(&mut self, device: &str, error: String) {
        self.failed_count += 1;
        if self.failed.len() < 100 {
            self.failed.push(Failure {
                device: device.to_string(),
                error,
            });
        }
    }
}

/// The role spelled as the inventory stores it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Server => "server",
        Role::Both => "both",
        Role::Ca => "ca",
    }
}

/// The role an inventory row names.
pub fn role_from_name(name: &str) -> Role {
    match name {
        "server" => Role::Server,
        "both" => Role::Both,
        _ => Role::Client,
    }
}

/// The file names a device folder holds for `role`: certificate and key.
pub fn device_file_names(role: Role) -> (String, String) {
    let stem = role.stem();
    (format!("{stem}.der"), format!("{stem}.key.der"))
}

/// This process's staging area and the lock that tells others it is alive.
pub(crate) struct Session {
    pub(crate) token: String,
    pub(crate) work: PathBuf,
    lock_path: PathBuf,
    _lock: Lock,
}

impl Session {
    fn start(fleet: &Fleet) -> Result<Session, Error> {
        let root = fleet.dir().join(names::WORK);
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let token = format!("{:016x}{:08x}", rand::random::<u64>(), std::process::id());
        let lock_path = root.join(format!("{token}.lock"));
        let lock = Lock::create_locked(&root.join(format!(".{token}.new")), &lock_path)?;
        let work = root.join(&token);
        for sub in ["new", "old"] {
            fs::create_dir_all(work.join(sub)).map_err(|e| Error::io(&work, e))?;
        }
        Ok(Session {
            token,
            work,
            lock_path,
            _lock: lock,
        })
    }

    fn finish(self) -> Result<(), Error> {
        fs::remove_dir_all(&self.work).map_err(|e| Error::io(&self.work, e))?;
        fs::remove_file(&self.lock_path).map_err(|e| Error::io(&self.lock_path, e))?;
        Ok(())
    }
}

/// Where a job's key comes from.
#[derive(Debug, Clone)]
enum KeySource {
    Generate(KeyType),
    Csr(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Job {
    req: DeviceReq,
    role: Role,
    key: KeySource,
    /// Rotation: the row this certificate replaces and what that row becomes.
    replaces: Option<(i64, &'static str)>,
    /// Re-issue: the replaced row is already revoked, and the device must
    /// still have no active certificate when the new one is recorded.
    reissue: bool,
}

struct Made {
    job: Job,
    key_der: Option<Vec<u8>>,
    cert_der: Vec<u8>,
    serial: String,
    sha256: String,
    key_type: String,
    not_before: i64,
    not_after: i64,
}

/// Facts read back from a certificate the fleet signed.
pub(crate) struct CertFacts {
    pub(crate) serial: String,
    pub(crate) key_type: String,
}

pub(crate) fn cert_facts(der: &[u8]) -> Option<CertFacts> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let key_type = match cert.public_key().parsed().ok()? {
        x509_parser::public_key::PublicKey::EC(ec) => match ec.key_size() {
            256 => "p256".to_string(),
            384 => "p384".to_string(),
            n => format!("ec{n}"),
        },
        x509_parser::public_key::PublicKey::RSA(rsa) => format!("rsa{}", rsa.key_size()),
        _ => "other".to_string(),
    };
    Some(CertFacts {
        serial: hex::encode(cert.raw_serial()),
        key_type,
    })
}

fn make(ca: &Authority, job: Job, days: u32) -> Result<Made, Error> {
    let mut spec = CertSpec::new(job.req.id.clone(), job.role, days);
    spec.dns = job.req.dns.clone();
    spec.ips = job.req.ips.clone();
    // A device that serves TLS is reached by its ID when no other name was given.
    let id_is_hostname = job
        .req
        .id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
    if job.role != Role::Client && spec.dns.is_empty() && spec.ips.is_empty() && id_is_hostname {
        spec.dns.push(job.req.id.clone());
    }
    let (key_der, cert) = match &job.key {
        KeySource::Generate(key_type) => {
            let key = PrivateKey::generate(*key_type)?;
            let cert = ca.sign(&spec, &key)?;
            (Some(key.pkcs8_der()), cert)
        }
        KeySource::Csr(csr) => (None, ca.sign_csr(csr, &spec)?),
    };
    let facts = cert_facts(&cert.der)
        .ok_or_else(|| Error::Invalid("the new certificate does not parse".into()))?;
    Ok(Made {
        key_der,
        sha256: fingerprint::sha256_hex(&cert.der),
        serial: facts.serial,
        key_type: facts.key_type,
        not_before: spec.not_before.unix_timestamp(),
        not_after: spec.not_after.unix_timestamp(),
        cert_der: cert.der,
        job,
    })
}

/// Runs `f` over `items` on `threads` threads, keeping the order.
fn parallel<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let c: Vec<T> = items.by_ref().take(chunk).collect();
        if c.is_empty() {
            break;
        }
        chunks.push(c);
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    // No fsync here: the folder is renamed into place only once complete, and
    // the whole batch is made durable by one syncfs before it is marked active.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))
}

/// Writes one device's folder in staging and renames it into `devices/ID/`.
fn place(
    devices: &Path,
    ca: (&Path, &[u8]),
    session: &Session,
    made: &Made,
    boot_py: &BootPy,
) -> Result<(), Error> {
    let id = &made.job.req.id;
    let stage = session.work.join("new").join(id);
    fs::create_dir(&stage).map_err(|e| Error::io(&stage, e))?;
    let (cert_name, key_name) = device_file_names(made.job.role);
    write_file(&stage.join(&cert_name), &made.cert_der, 0o644)?;
    if let Some(key) = &made.key_der {
        write_file(&stage.join(&key_name), key, 0o600)?;
    }
    // The CA certificate is public and the same for every device: a hard
    // link costs no new inode, which is what a file system charges most for.
    let ca_copy = stage.join(names::CA_DER);
    if fs::hard_link(ca.0, &ca_copy).is_err() {
        write_file(&ca_copy, ca.1, 0o644)?;
    }
    write_file(
        &stage.join(names::BOOT_PY),
        boot_py(made.job.role).as_bytes(),
        0o644,
    )?;
    let dest = devices.join(id);
    if made.job.replaces.is_some() && dest.exists() {
        let old = session.work.join("old").join(id);
        fs::rename(&dest, &old).map_err(|e| Error::io(&dest, e))?;
    }
    // rename(2) of a folder onto a non-empty folder fails, so an unexpected
    // folder is never overwritten.
    fs::rename(&stage, &dest).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => Error::Invalid(format!(
            "{} already exists but the inventory has no certificate for it; \
             move it away and re-run",
            dest.display()
        )),
        _ => Error::io(&dest, e),
    })
}

/// Records a batch as `pending`; returns the ones this process now owns.
fn reserve(
    db: &mut Connection,
    session: &Session,
    made: Vec<Made>,
    report: &mut Report,
) -> Result<Vec<Made>, Error> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut owned = Vec::with_capacity(made.len());
    {
        // Taken: anything for a new device; a pending row for a rotation;
        // a pending or active row for a re-issue.
        let mut taken = tx.prepare_cached(
            "SELECT 1 FROM certs WHERE device = ?1
               AND (status = 'pending' OR ?2 IS NULL OR (?3 AND status = 'active')) LIMIT 1",
        )?;
        let mut still_active =
            tx.prepare_cached("SELECT 1 FROM certs WHERE id = ? AND status = 'active'")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO certs (device, serial, sha256, key_type, role, dns, ips, not_before,
                                not_after, status, owner, replaces, old_status, issued_at, from_csr)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
        )?;
        let now = crate::now().unix_timestamp();
        for m in made {
            let id = &m.job.req.id;
            let replaces = m.job.replaces.map(|(row, _)| row);
            // Checked again inside the transaction: another process may have
            // issued this device since the batch was planned.
            if taken
                .query_row(params![id, replaces, m.job.reissue], |_| Ok(()))
                .optional()?
                .is_some()
            {
                report.skipped += 1;
                continue;
            }
            if let Some(row) = replaces.filter(|_| !m.job.reissue) {
                if still_active
                    .query_row([row], |_| Ok(()))
                    .optional()?
                    .is_none()
                {
                    report.skipped += 1;
                    continue;
                }
            }
            let ips: Vec<String> = m.job.req.ips.iter().map(ToString::to_string).collect();
            let inserted = insert.execute(params![
                id,
                m.serial,
                m.sha256,
                m.key_type,
                role_name(m.job.role),
                m.job.req.dns.join(";"),
                ips.join(";"),
                m.not_before,
                m.not_after,
                session.token,
                replaces,
                m.job.replaces.map(|(_, s)| s),
                now,
                matches!(m.job.key, KeySource::Csr(_)),
            ]);
            match inserted {
                Ok(_) => owned.push(m),
                Err(e) => report.fail(id, format!("not recorded: {e}")),
            }
        }
    }
    tx.commit()?;
    Ok(owned)
}

/// Marks what reached `devices/` active and forgets what did not.
fn settle(
    db: &mut Connection,
    placed: &[(&Made, Result<(), Error>)],
    report: &mut Report,
) -> Result<(), Error> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut active = tx.prepare_cached(
            "UPDATE certs SET status = 'active', owner = NULL WHERE serial = ? AND status = 'pending'",
        )?;
        let mut forget =
            tx.prepare_cached("DELETE FROM certs WHERE serial = ? AND status = 'pending'")?;
        for (m, result) in placed {
            match result {
                Ok(()) => {
                    if let Some((row, becomes)) = m.job.replaces {
                        crate::inventory::retire(&tx, row, becomes)?;
                    }
                    active.execute([&m.serial])?;
                    report.issued += 1;
                    if report.first.is_none() {
                        report.first = Some(m.job.req.id.clone());
                    }
                    report.last = Some(m.job.req.id.clone());
                }
                Err(e) => {
                    forget.execute([&m.serial])?;
                    report.fail(&m.job.req.id, e.to_string());
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// A batch's keys and certificates, or why a device's could not be made.
type MadeBatch = Vec<Result<Made, (String, Error)>>;

/// Makes keys and certificates for a batch on `opts.threads` threads; no
/// side effects, so it can run while the previous batch is being written.
fn make_batch(ca: &Authority, jobs: Vec<Job>, opts: &IssueOptions) -> MadeBatch {
    parallel(jobs, opts.threads, |job| {
        let id = job.req.id.clone();
        make(ca, job, opts.days).map_err(|e| (id, e))
    })
}

fn run_batch(
    fleet: &mut Fleet,
    session: &Session,
    ca: &Authority,
    jobs: Vec<Job>,
    opts: &IssueOptions,
    report: &mut Report,
) -> Result<(), Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    commit_batch(fleet, session, make_batch(ca, jobs, opts), opts, report)
}

/// Steps 2 to 5 of the module's protocol for a made batch: reserve, place,
/// sync, settle.
fn commit_batch(
    fleet: &mut Fleet,
    session: &Session,
    made: MadeBatch,
    opts: &IssueOptions,
    report: &mut Report,
) -> Result<(), Error> {
    let mut ok = Vec::with_capacity(made.len());
    for m in made {
        match m {
            Ok(m) => ok.push(m),
            Err((id, e)) => report.fail(&id, e.to_string()),
        }
    }
    let owned = reserve(&mut fleet.db, session, ok, report)?;
    let devices = fleet.dir().join(names::DEVICES);
    let ca_path = fleet.dir().join(names::CA_DER);
    let ca = (ca_path.as_path(), fleet.ca_der.as_slice());
    let placed: Vec<(&Made, Result<(), Error>)> =
        parallel(owned.iter().collect(), opts.io_threads, |m| {
            (m, place(&devices, ca, session, m, &opts.boot_py))
        });
    // Whatever failed half-way stays in staging, which is removed at the end.
    lock::sync_fs(&devices)?;
    settle(&mut fleet.db, &placed, report)?;
    for (m, _) in &placed {
        if m.job.replaces.is_some() {
            let old = session.work.join("old").join(&m.job.req.id);
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
            }
        }
    }
    Ok(())
}

/// Issues a key and certificate for every device in `source` that has none
/// yet. `progress` is called with the number of devices handled so far.
pub fn issue(
    fleet: &mut Fleet,
    source: Source,
    opts: &IssueOptions,
    progress: &dyn Fn(u64),
) -> Result<Report, Error> {
    let ca = fleet.authority()?;
    let session = Session::start(fleet)?;
    let mut report = Report::default();
    let mut source = source.peekable();
    let mut done = 0u64;
    // The next batch's keys and certificates are made while the current one
    // is written and synced, so the CPU and the disk work at the same time.
    std::thread::scope(|scope| -> Result<(), Error> {
        let mut in_flight: Option<(Option<std::thread::ScopedJoinHandle<'_, MadeBatch>>, u64)> =
            None;
        loop {
            let next = if source.peek().is_some() {
                let jobs = plan_batch(fleet, &mut source, opts, &mut done, &mut report)?;
                let ca = &ca;
                let making =
                    (!jobs.is_empty()).then(|| scope.spawn(move || make_batch(ca, jobs, opts)));
                Some((making, done))
            } else {
                None
            };
            if let Some((making, upto)) = in_flight.take() {
                if let Some(making) = making {
                    let made: MadeBatch = making.join().map_err(|_| {
                        Error::Invalid("a thread making keys and certificates panicked".into())
                    })?;
                    commit_batch(fleet, &session, made, opts, &mut report)?;
                }
                progress(upto);
            }
            in_flight = next;
            if in_flight.is_none() {
                return Ok(());
            }
        }
    })?;
    session.finish()?;
    Ok(report)
}

/// The next batch from `source`: the devices that have no certificate yet.
fn plan_batch(
    fleet: &Fleet,
    source: &mut std::iter::Peekable<Source>,
    opts: &IssueOptions,
    done: &mut u64,
    report: &mut Report,
) -> Result<Vec<Job>, Error> {
    let mut jobs = Vec::with_capacity(opts.batch);
    for req in source.by_ref().take(opts.batch) {
        let req = req?;
        *done += 1;
        // A device already in the inventory is skipped, unless it is to be
        // re-issued and none of its certificates is active or pending.
        let replaces = if crate::inventory::has_device(&fleet.db, &req.id)? {
            let retired = match opts.reissue {
                true => crate::inventory::retired_device(&fleet.db, &req.id)?,
                false => None,
            };
            let Some(row) = retired else {
                report.skipped += 1;
                continue;
            };
            Some((row, "revoked"))
        } else {
            None
        };
        jobs.push(Job {
            req,
            role: opts.role,
            key: KeySource::Generate(opts.key),
            replaces,
            reissue: replaces.is_some(),
        });
    }
    Ok(jobs)
}

/// Signs a certificate for a key the device made itself (its CSR, DER).
/// The device folder gets the certificate, `ca.der` and `boot.py`, no key.
pub fn issue_csr(
    fleet: &mut Fleet,
    req: DeviceReq,
    csr_der: Vec<u8>,
    opts: &IssueOptions,
) -> Result<Report, Error> {
    let ca = fleet.authority()?;
    let session = Session::start(fleet)?;
    let mut report = Report::default();
    if crate::inventory::has_device(&fleet.db, &req.id)? {
        report.skipped += 1;
    } else {
        let job = Job {
            req,
            role: opts.role,
            key: KeySource::Csr(csr_der),
            replaces: None,
            reissue: false,
        };
        run_batch(fleet, &session, &ca, vec![job], opts, &mut report)?;
    }
    session.finish()?;
    Ok(report)
}

/// An active row to rotate: id, device, role, key type, dns, ips, from a CSR.
type RotateRow = (i64, String, String, String, String, String, bool);

/// What `rotate` left alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RotateReport {
    /// The new certificates.
    #[serde(flatten)]
    pub report: Report,
    /// Devices that made their own key: they need a new CSR (`fleet issue --csr`).
    pub need_csr: Vec<String>,
}

/// New keys and certificates for every active certificate that expires
/// within `within` (including already expired ones). The old certificate
/// becomes `superseded`, or `revoked` (reason superseded) with `revoke_old`.
pub fn rotate(
    fleet: &mut Fleet,
    within: Duration,
    revoke_old: bool,
    opts: &IssueOptions,
    progress: &dyn Fn(u64),
) -> Result<RotateReport, Error> {
    let ca = fleet.authority()?;
    let session = Session::start(fleet)?;
    let mut out = RotateReport::default();
    let before = (crate::now() + within).unix_timestamp();
    // New rows get larger ids: stopping at today's largest never rotates a fresh certificate.
    let max_id: i64 = fleet
        .db
        .query_row("SELECT COALESCE(MAX(id), 0) FROM certs", [], |r| r.get(0))?;
    let becomes = if revoke_old { "revoked" } else { "superseded" };
    let mut cursor = 0i64;
    let mut done = 0u64;
    loop {
        let rows: Vec<RotateRow> = crate::inventory::tuples(
            &fleet.db,
            "SELECT id, device, role, key_type, dns, ips, from_csr FROM certs
             WHERE status = 'active' AND not_after <= ? AND id > ? AND id <= ?
             ORDER BY id LIMIT ?",
            params![before, cursor, max_id, opts.batch as i64],
        )?;
        let Some(last) = rows.last() else { break };
        cursor = last.0;
        let mut jobs = Vec::new();
        for (id, device, role, key_type, dns, ips, from_csr) in rows {
            done += 1;
            if from_csr {
                out.need_csr.push(device);
                continue;
            }
            let key_type: KeyType = key_type
                .parse()
                .map_err(|e: String| Error::Invalid(format!("{device}: {e}")))?;
            let split = |s: &str| -> Vec<String> {
                s.split(';')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            };
            let req = DeviceReq {
                id: device,
                dns: split(&dns),
                ips: split(&ips).iter().filter_map(|s| s.parse().ok()).collect(),
            };
            jobs.push(Job {
                req,
                role: role_from_name(&role),
                key: KeySource::Generate(key_type),
                replaces: Some((id, becomes)),
                reissue: false,
            });
        }
        run_batch(fleet, &session, &ca, jobs, opts, &mut out.report)?;
        progress(done);
    }
    session.finish()?;
    Ok(out)
}

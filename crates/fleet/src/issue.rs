//! Issuing and rotating device credentials, crash-safely and fast.
//!
//! Devices are issued in batches. For each batch:
//! 1. keys and certificates are made in memory and each device's files are
//!    written into this process's staging folder `.work/TOKEN/new/ID/`, on
//!    every core (nothing outside staging changes yet);
//! 2. one transaction records each certificate as `pending`, owned by this
//!    process (the serial's `UNIQUE` constraint and the one-pending /
//!    one-active indexes make a second process skip, never duplicate);
//! 3. each recorded device's staged folder is renamed to `devices/ID/` in one
//!    step (rotation first moves the old folder to `.work/TOKEN/old/ID/`);
//! 4. one `syncfs` makes the whole batch durable (no per-file fsync storm;
//!    other systems than Linux: an fsync per file, see [`crate::lock::sync_devices`]);
//! 5. one transaction marks the batch `active` (rotation: the old row
//!    `superseded` or `revoked` in the same transaction).
//!
//! Step 1 of the next batch runs while steps 2 to 5 of this one do, so the
//! cores stay busy. A process killed anywhere in this leaves `pending` rows
//! owned by a dead process; [`crate::recover`] settles each one by looking
//! at what reached `devices/ID/`. Re-running the same `issue` then skips
//! every device that has a certificate and issues the rest.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Condvar, Mutex};

use devtls_pki::fingerprint;
use devtls_pki::issue::{Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};
use serde::Serialize;
use time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::device_files::{self, RenewUrl};
use crate::devices::{DeviceReq, Source};
use crate::folders::{Folders, Installed};
use crate::lock::{self, Lock};
use crate::store::{NewCert, Reserved, RotateRow, Store};
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
    /// Worker threads making keys and certificates and writing device folders.
    pub threads: usize,
    /// Devices per transaction and per `syncfs`.
    pub batch: usize,
    /// Give devices whose certificates were all revoked a new key and
    /// certificate (their folder is replaced); otherwise they are skipped.
    pub reissue: bool,
    /// The renewal service: each device folder also gets `renew.py`
    /// (client and both roles; see [`crate::device_files`]).
    pub renew: Option<RenewUrl>,
    /// Also write `ID.romfs`, an image of the device's first credentials
    /// and scripts for its read-only `/rom`.
    pub romfs: bool,
}

impl IssueOptions {
    /// Defaults: a worker per core, batches of 1024.
    pub fn new(days: u32, role: Role, key: KeyType, boot_py: BootPy) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        IssueOptions {
            days,
            role,
            key,
            boot_py,
            threads,
            batch: 1024,
            reissue: false,
            renew: None,
            romfs: false,
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
    folders: Folders,
    lock_path: PathBuf,
    _lock: Lock,
}

impl Session {
    fn start(fleet: &Fleet) -> Result<Session, Error> {
        let root = fleet.dir().join(names::WORK);
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let token = format!(
            "{}{:016x}{:08x}",
            fleet.issuer(),
            rand::random::<u64>(),
            std::process::id()
        );
        // Before any row carries the token: whoever sees its rows can ask
        // the database whether this process still lives.
        fleet.db().hold_owner(&token)?;
        let lock_path = root.join(format!("{token}.lock"));
        let lock = Lock::create_locked(&root.join(format!(".{token}.new")), &lock_path)?;
        let work = root.join(&token);
        for sub in ["new", "old"] {
            fs::create_dir_all(work.join(sub)).map_err(|e| Error::io(&work, e))?;
        }
        Ok(Session {
            folders: Folders::open(fleet, &work)?,
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

/// A device whose folder is staged: what its inventory row needs. The key
/// and certificate bytes stay with the worker that wrote them, which frees
/// them (no private key crosses to the main thread, and no allocation is
/// freed by a thread other than the one that made it).
struct Made {
    job: Job,
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

/// Makes one device's key and certificate and writes its folder in staging.
fn make(maker: &Maker<'_>, job: Job) -> Result<Made, Error> {
    let mut spec = CertSpec::new(job.req.id.clone(), job.role, maker.days);
    spec.dns = job.req.dns.clone();
    spec.ips = job.req.ips.clone();
    // A device that serves TLS is reached by its ID when no other name was given.
    let id_is_hostname = devtls_pki::names::dns_name(&job.req.id).is_ok();
    if job.role != Role::Client && spec.dns.is_empty() && spec.ips.is_empty() && id_is_hostname {
        spec.dns.push(job.req.id.clone());
    }
    let (key_der, key_type, cert) = match &job.key {
        KeySource::Generate(key_type) => {
            let key = PrivateKey::generate(*key_type)?;
            let cert = maker.ca.sign(&spec, &key)?;
            (Some(key.pkcs8_der()), key_type.to_string(), cert)
        }
        KeySource::Csr(csr) => {
            let cert = maker.ca.sign_csr(csr, &spec)?;
            // The device's own key: its type is read back from the certificate.
            let facts = cert_facts(&cert.der)
                .ok_or_else(|| Error::Invalid("the new certificate does not parse".into()))?;
            (None, facts.key_type, cert)
        }
    };
    stage(maker, &job, &cert.der, key_der.as_deref())?;
    Ok(Made {
        sha256: fingerprint::sha256_hex(&cert.der),
        serial: hex::encode(&cert.serial),
        key_type,
        not_before: spec.not_before.unix_timestamp(),
        not_after: spec.not_after.unix_timestamp(),
        job,
    })
}

/// Writes one device's folder in staging, `.work/TOKEN/new/ID/`: its
/// certificate, key, `ca.der`, `boot.py`, and with the options `renew.py`
/// and `ID.romfs` (an image holding all of them; 0600, as it holds the key).
fn stage(
    maker: &Maker<'_>,
    job: &Job,
    cert_der: &[u8],
    key_der: Option<&[u8]>,
) -> Result<(), Error> {
    let folders = &maker.session.folders;
    let id = job.req.id.as_str();
    folders.mkdir(id)?;
    let (cert_name, key_name) = device_file_names(job.role);
    folders.write(id, &cert_name, cert_der, 0o644)?;
    if let Some(key) = key_der {
        folders.write(id, &key_name, key, 0o600)?;
    }
    folders.add_ca(id)?;
    let boot_py = maker.boot_py(job.role);
    folders.write(id, names::BOOT_PY, boot_py.as_bytes(), 0o644)?;
    let renew_py = maker.renew_py(job.role);
    if let Some(renew_py) = renew_py {
        folders.write(id, device_files::RENEW_PY, renew_py.as_bytes(), 0o644)?;
    }
    if maker.romfs {
        let mut files: Vec<(&str, &[u8])> = vec![
            (&cert_name, cert_der),
            (names::CA_DER, maker.ca_der),
            (names::BOOT_PY, boot_py.as_bytes()),
        ];
        if let Some(key) = key_der {
            files.push((&key_name, key));
        }
        if let Some(renew_py) = renew_py {
            files.push((device_files::RENEW_PY, renew_py.as_bytes()));
        }
        let image = device_files::romfs_image(&files)?;
        folders.write(id, &device_files::romfs_name(id), &image, 0o600)?;
    }
    Ok(())
}

/// Renames a device's staged folder to `devices/ID/` (a rotated device's old
/// folder is first moved to `.work/TOKEN/old/ID/`).
fn install(folders: &Folders, made: &Made) -> Result<(), Error> {
    let id = made.job.req.id.as_str();
    match folders.install(id, made.job.replaces.is_some())? {
        Installed::Done => Ok(()),
        Installed::Occupied => Err(Error::Invalid(format!(
            "{} already exists but the inventory has no certificate for it; \
             move it away and re-run",
            folders.devices_path.join(id).display()
        ))),
    }
}

/// Records a batch as `pending`; returns the ones this process now owns and
/// the ones whose serial was already taken (to be signed again).
fn reserve(
    db: &dyn Store,
    session: &Session,
    made: Vec<Made>,
    report: &mut Report,
) -> Result<(Vec<Made>, Vec<Job>), Error> {
    let certs: Vec<NewCert> = made
        .iter()
        .map(|m| NewCert {
            device: m.job.req.id.clone(),
            serial: m.serial.clone(),
            sha256: m.sha256.clone(),
            key_type: m.key_type.clone(),
            role: role_name(m.job.role).to_string(),
            dns: m.job.req.dns.join(";"),
            ips: m
                .job
                .req
                .ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(";"),
            not_before: m.not_before,
            not_after: m.not_after,
            replaces: m.job.replaces.map(|(row, _)| row),
            old_status: m.job.replaces.map(|(_, s)| s),
            reissue: m.job.reissue,
            from_csr: matches!(m.job.key, KeySource::Csr(_)),
        })
        .collect();
    let outcomes = db.reserve(&session.token, &certs)?;
    let mut owned = Vec::with_capacity(made.len());
    let mut again = Vec::new();
    for (m, outcome) in made.into_iter().zip(outcomes) {
        match outcome {
            Reserved::Owned => owned.push(m),
            Reserved::Skipped => report.skipped += 1,
            Reserved::SerialTaken => {
                // Its staged folder holds the refused certificate: made anew.
                session.folders.discard(&m.job.req.id)?;
                again.push(m.job);
            }
            Reserved::Failed(e) => report.fail(&m.job.req.id, format!("not recorded: {e}")),
        }
    }
    Ok((owned, again))
}

/// Marks what reached `devices/` active and forgets what did not.
fn settle(
    db: &dyn Store,
    session: &Session,
    placed: &[(&Made, Result<(), Error>)],
    report: &mut Report,
) -> Result<(), Error> {
    let mut retire = Vec::new();
    let mut forget = Vec::new();
    for (m, result) in placed {
        match result {
            Ok(()) => {
                retire.extend(m.job.replaces);
                report.issued += 1;
                if report.first.is_none() {
                    report.first = Some(m.job.req.id.clone());
                }
                report.last = Some(m.job.req.id.clone());
            }
            Err(e) => {
                forget.push(m.serial.clone());
                report.fail(&m.job.req.id, e.to_string());
            }
        }
    }
    // Every row this process still has pending is one of this batch's
    // installed devices: the store activates them all at once.
    db.settle(&session.token, &retire, &forget)
}

/// A batch's keys and certificates, or why a device's could not be made.
type MadeBatch = Vec<Result<Made, (String, Error)>>;

/// What the worker threads share to make and stage devices: read-only.
struct Maker<'a> {
    ca: &'a Authority,
    session: &'a Session,
    days: u32,
    threads: usize,
    /// boot.py depends only on the role: rendered once per role, not per device.
    boot_pys: [(Role, String); 3],
    /// renew.py, likewise (for the roles that renew, when renewal is on).
    renew_pys: Vec<(Role, String)>,
    romfs: bool,
    ca_der: &'a [u8],
}

impl<'a> Maker<'a> {
    fn new(ca: &'a Authority, ca_der: &'a [u8], session: &'a Session, opts: &IssueOptions) -> Self {
        let boot_py = |role| (role, (opts.boot_py)(role));
        let renew_pys = match &opts.renew {
            Some(url) => [Role::Client, Role::Both]
                .into_iter()
                .map(|role| (role, device_files::renew_py(url, role, opts.romfs)))
                .collect(),
            None => Vec::new(),
        };
        Maker {
            renew_pys,
            romfs: opts.romfs,
            ca_der,
            ca,
            session,
            days: opts.days,
            threads: opts.threads,
            boot_pys: [
                boot_py(Role::Client),
                boot_py(Role::Server),
                boot_py(Role::Both),
            ],
        }
    }

    fn renew_py(&self, role: Role) -> Option<&str> {
        self.renew_pys
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, text)| text.as_str())
    }

    fn boot_py(&self, role: Role) -> &str {
        self.boot_pys
            .iter()
            .find(|(r, _)| *r == role)
            .map_or("", |(_, text)| text)
    }
}

/// A batch handed to the workers, waiting for all its devices to come back.
struct InFlight {
    /// Each job's result, in the batch's order.
    made: Vec<Option<Result<Made, (String, Error)>>>,
    missing: usize,
    /// Devices taken from the source up to the end of this batch (progress).
    done: u64,
}

/// The batches the workers are filling in, oldest first.
#[derive(Default)]
struct Batches {
    queue: VecDeque<InFlight>,
    /// The sequence number of the batch at the front of the queue.
    front: usize,
}

/// Runs the batches `next` plans through the module's protocol: step 1 on a
/// pool of `maker.threads` workers, steps 2 to 5 here, batch after batch in
/// order. The workers take devices first come, first served and are kept a
/// batch ahead of the commits, so they never wait for one (a pool spawned
/// per batch left a core idle while the main thread committed). The main
/// thread is woken once per batch, not once per device.
fn run_batches(
    fleet: &mut Fleet,
    maker: &Maker<'_>,
    report: &mut Report,
    progress: &dyn Fn(u64),
    mut next: impl FnMut(&Fleet, &mut Report) -> Result<Option<(Vec<Job>, u64)>, Error>,
) -> Result<(), Error> {
    let (job_tx, job_rx) = mpsc::channel::<(usize, usize, Job)>();
    let job_rx = Mutex::new(job_rx);
    let batches = Mutex::new(Batches::default());
    let front_complete = Condvar::new();
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..maker.threads.max(1) {
            let (job_rx, batches, front_complete) = (&job_rx, &batches, &front_complete);
            let failed = &failed;
            let worker = std::thread::Builder::new().name("devtls-worker".into());
            let spawned = worker.spawn_scoped(scope, move || loop {
                let job = job_rx.lock().map(|rx| rx.recv());
                let Ok(Ok((batch, index, job))) = job else {
                    return; // no more work: the main thread hung up
                };
                if failed.load(Ordering::Relaxed) {
                    return; // the run failed: the queued devices are not made
                }
                let id = job.req.id.clone();
                // A panic becomes this device's error: the main thread waits
                // for every device of a batch and must hear about each one.
                let made = std::panic::catch_unwind(AssertUnwindSafe(|| make(maker, job)))
                    .unwrap_or_else(|_| Err(Error::Invalid("making it panicked".into())))
                    .map_err(|e| (id, e));
                let Ok(mut b) = batches.lock() else { return };
                let offset = batch - b.front;
                let in_flight = &mut b.queue[offset];
                in_flight.made[index] = Some(made);
                in_flight.missing -= 1;
                if offset == 0 && in_flight.missing == 0 {
                    front_complete.notify_one();
                }
            });
            if let Err(e) = spawned {
                drop(job_tx); // lets the workers already started return
                return Err(Error::Invalid(format!(
                    "could not start a worker thread: {e}"
                )));
            }
        }
        let stopped = || Error::Invalid("the workers stopped".into());
        let result = (|| loop {
            // Plan until two batches are in flight: the workers start on the
            // second while this thread commits the first.
            loop {
                let (sequence, in_flight) = {
                    let b = batches.lock().map_err(|_| stopped())?;
                    (b.front + b.queue.len(), b.queue.len())
                };
                if in_flight >= 2 {
                    break;
                }
                let Some((jobs, done)) = next(fleet, report)? else {
                    break;
                };
                batches
                    .lock()
                    .map_err(|_| stopped())?
                    .queue
                    .push_back(InFlight {
                        made: (0..jobs.len()).map(|_| None).collect(),
                        missing: jobs.len(),
                        done,
                    });
                for (index, job) in jobs.into_iter().enumerate() {
                    job_tx.send((sequence, index, job)).map_err(|_| stopped())?;
                }
            }
            let oldest = {
                let mut b = batches.lock().map_err(|_| stopped())?;
                if b.queue.is_empty() {
                    return Ok(());
                }
                while b.queue[0].missing > 0 {
                    b = front_complete.wait(b).map_err(|_| stopped())?;
                }
                b.front += 1;
                b.queue.pop_front().expect("the front batch is there")
            };
            let made: MadeBatch = oldest.made.into_iter().flatten().collect();
            if !made.is_empty() {
                commit_batch(fleet, maker, made, report)?;
            }
            progress(oldest.done);
        })();
        // Hanging up stops the workers after the job in hand.
        failed.store(result.is_err(), Ordering::Relaxed);
        drop(job_tx);
        result
    })
}

/// How often a device is signed when its serial keeps clashing.
const SERIAL_ATTEMPTS: usize = 8;

/// Steps 2 to 5 of the module's protocol for a made and staged batch:
/// reserve, install, sync, settle.
fn commit_batch(
    fleet: &mut Fleet,
    maker: &Maker<'_>,
    made: MadeBatch,
    report: &mut Report,
) -> Result<(), Error> {
    let session = maker.session;
    let mut ok = Vec::with_capacity(made.len());
    for m in made {
        match m {
            Ok(m) => ok.push(m),
            Err((id, e)) => report.fail(&id, e.to_string()),
        }
    }
    let mut owned = Vec::with_capacity(ok.len());
    for attempt in 1.. {
        let (mine, again) = reserve(fleet.db(), session, ok, report)?;
        owned.extend(mine);
        if again.is_empty() {
            break;
        }
        // A random serial another certificate of this CA already has (the
        // database's UNIQUE constraint refused it): signed again with a new
        // one. Rare enough to redo here, on this thread.
        ok = Vec::with_capacity(again.len());
        for job in again {
            let id = job.req.id.clone();
            if attempt >= SERIAL_ATTEMPTS {
                report.fail(&id, "no unused serial after several tries".into());
                continue;
            }
            match make(maker, job) {
                Ok(m) => ok.push(m),
                Err(e) => report.fail(&id, e.to_string()),
            }
        }
    }
    // One thread: renames across folders take a file-system-wide lock anyway.
    let placed: Vec<(&Made, Result<(), Error>)> = owned
        .iter()
        .map(|m| (m, install(&session.folders, m)))
        .collect();
    // Whatever was not installed stays in staging, which is removed at the end.
    lock::sync_devices(
        &session.folders.devices_path,
        placed.iter().map(|(m, _)| m.job.req.id.as_str()),
    )?;
    settle(fleet.db(), session, &placed, report)?;
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
    let ca_der = fleet.ca_der().to_vec();
    let maker = Maker::new(&ca, &ca_der, &session, opts);
    let mut report = Report::default();
    let mut planner = Planner {
        source: source.peekable(),
        done: 0,
        in_flight: HashSet::new(),
    };
    run_batches(fleet, &maker, &mut report, progress, |fleet, report| {
        let jobs = planner.next_batch(fleet, opts, report)?;
        Ok(jobs.map(|jobs| (jobs, planner.done)))
    })?;
    drop(maker);
    session.finish()?;
    Ok(report)
}

/// Cuts the devices of an `issue` into batches of jobs.
struct Planner {
    source: std::iter::Peekable<Source>,
    /// Devices taken from the source so far.
    done: u64,
    /// The IDs of the last batch planned. It is committed only after the
    /// next one is planned, so the inventory does not know them yet and a
    /// repeated ID is caught here.
    in_flight: HashSet<String>,
}

impl Planner {
    /// The next batch: the devices that have no certificate yet (`None`
    /// once the source is exhausted).
    fn next_batch(
        &mut self,
        fleet: &Fleet,
        opts: &IssueOptions,
        report: &mut Report,
    ) -> Result<Option<Vec<Job>>, Error> {
        if self.source.peek().is_none() {
            return Ok(None);
        }
        let mut reqs = Vec::with_capacity(opts.batch);
        let mut ids = HashSet::with_capacity(opts.batch);
        for req in self.source.by_ref().take(opts.batch) {
            let req = req?;
            self.done += 1;
            if self.in_flight.contains(&req.id) || !ids.insert(req.id.clone()) {
                report.skipped += 1;
                continue;
            }
            reqs.push(req);
        }
        let known = fleet
            .db()
            .known_devices(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut jobs = Vec::with_capacity(reqs.len());
        for req in reqs {
            // A device already in the inventory is skipped, unless it is to be
            // re-issued and none of its certificates is active or pending.
            let replaces = if known.contains(&req.id) {
                let retired = match opts.reissue {
                    true => fleet.db().retired_device(&req.id)?,
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
        self.in_flight = ids;
        Ok(Some(jobs))
    }
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
    let ca_der = fleet.ca_der().to_vec();
    let maker = Maker::new(&ca, &ca_der, &session, opts);
    let mut report = Report::default();
    if fleet.db().has_device(&req.id)? {
        report.skipped += 1;
    } else {
        let job = Job {
            req,
            role: opts.role,
            key: KeySource::Csr(csr_der),
            replaces: None,
            reissue: false,
        };
        let mut jobs = Some(vec![job]);
        run_batches(fleet, &maker, &mut report, &|_| {}, |_, _| {
            Ok(jobs.take().map(|jobs| (jobs, 1)))
        })?;
    }
    drop(maker);
    session.finish()?;
    Ok(report)
}

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
    let ca_der = fleet.ca_der().to_vec();
    let maker = Maker::new(&ca, &ca_der, &session, opts);
    let mut out = RotateReport::default();
    let before = (crate::now() + within).unix_timestamp();
    // New rows get larger ids: stopping at today's largest never rotates a fresh certificate.
    let max_id = fleet.db().max_id()?;
    let becomes = if revoke_old { "revoked" } else { "superseded" };
    let mut cursor = 0i64;
    let mut done = 0u64;
    let need_csr = &mut out.need_csr;
    run_batches(fleet, &maker, &mut out.report, progress, |fleet, _| {
        let rows: Vec<RotateRow> = fleet.db().rotate_rows(before, cursor, max_id, opts.batch)?;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        cursor = last.0;
        let mut jobs = Vec::new();
        for (id, device, role, key_type, dns, ips, from_csr) in rows {
            done += 1;
            if from_csr {
                need_csr.push(device);
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
        Ok(Some((jobs, done)))
    })?;
    drop(maker);
    session.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InitOptions;
    use std::io::Write;
    use std::sync::Arc;

    #[test]
    fn a_device_listed_twice_is_issued_once_in_or_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let init = InitOptions {
            name: "t".into(),
            key: KeyType::P256,
            days: 365,
        };
        let mut fleet = Fleet::init(&dir.path().join("fleet"), &init).unwrap();
        let mut opts = IssueOptions::new(30, Role::Client, KeyType::P256, Arc::new(|_| "".into()));
        opts.batch = 2;
        // Batches of two: `a` again while its batch is still in flight, `a`
        // and `b` again once theirs is committed, `e` twice in one batch.
        let ids = ["a", "b", "a", "c", "a", "b", "c", "d", "d", "e", "e"];
        let source = Source::List(
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .into_iter(),
        );
        let report = issue(&mut fleet, source, &opts, &|_| {}).unwrap();
        assert_eq!(report.failed_count, 0, "{:?}", report.failed);
        assert_eq!((report.issued, report.skipped), (5, 6));
        let counts = fleet.db().counts().unwrap();
        assert_eq!(counts, [("active".to_string(), 5)]);
        let mut folders: Vec<String> = fs::read_dir(fleet.dir().join(names::DEVICES))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        folders.sort();
        assert_eq!(folders, ["a", "b", "c", "d", "e"]);
    }

    /// A new fleet in a temporary folder: the folder, the fleet's path, the fleet.
    fn new_fleet() -> (tempfile::TempDir, std::path::PathBuf, Fleet) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fleet");
        let init = InitOptions {
            name: "t".into(),
            key: KeyType::P256,
            days: 365,
        };
        let fleet = Fleet::init(&root, &init).unwrap();
        (dir, root, fleet)
    }

    /// A serial the inventory already holds (forced: a trigger records the
    /// device's first serial for a decoy just before its row is inserted)
    /// is refused by the UNIQUE constraint and the device is signed again.
    #[test]
    fn a_serial_clash_is_signed_again() {
        let (_dir, root, mut fleet) = new_fleet();
        let side = rusqlite::Connection::open(root.join(names::INVENTORY)).unwrap();
        side.execute_batch(
            "CREATE TABLE clash_done (x INTEGER);
             CREATE TRIGGER clash BEFORE INSERT ON certs
             WHEN NEW.device = 'clash-me' AND NOT EXISTS (SELECT 1 FROM clash_done)
             BEGIN
               INSERT INTO clash_done VALUES (1);
               INSERT INTO certs (device, serial, key_type, role, not_before, not_after, status, issued_at)
               VALUES ('decoy', NEW.serial, 'p256', 'client', 0, 1, 'superseded', 0);
             END;",
        )
        .unwrap();
        let opts = IssueOptions::new(30, Role::Client, KeyType::P256, Arc::new(|_| "".into()));
        let source = Source::List(vec!["clash-me".to_string()].into_iter());
        let report = issue(&mut fleet, source, &opts, &|_| {}).unwrap();
        assert_eq!(
            (report.issued, report.failed_count),
            (1, 0),
            "{:?}",
            report.failed
        );
        let decoy = &fleet.db().device_rows("decoy").unwrap()[0].serial;
        let mine = fleet.db().device_rows("clash-me").unwrap();
        assert_eq!(mine.len(), 1);
        assert_ne!(&mine[0].serial, decoy, "signed again with another serial");
        let der = fs::read(root.join("devices/clash-me/client.der")).unwrap();
        assert_eq!(cert_facts(&der).unwrap().serial, mine[0].serial);
    }

    /// A device's `ca.der` is its own file: `cp` over it (which truncates
    /// and writes the existing file) leaves the fleet's CA certificate as
    /// it was, and the fleet still signs.
    #[test]
    fn a_device_ca_der_is_a_copy_not_the_fleet_file() {
        let (_dir, root, mut fleet) = new_fleet();
        let ca = fs::read(root.join(names::CA_DER)).unwrap();
        let opts = IssueOptions::new(30, Role::Client, KeyType::P256, Arc::new(|_| "".into()));
        let one = |id: &str| Source::List(vec![id.to_string()].into_iter());
        issue(&mut fleet, one("cam-1"), &opts, &|_| {}).unwrap();
        let device_ca = root.join("devices/cam-1").join(names::CA_DER);
        assert_eq!(fs::read(&device_ca).unwrap(), ca);
        // What `cp other.der devices/cam-1/ca.der` does: open, truncate, write.
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&device_ca)
            .unwrap()
            .write_all(b"not the CA")
            .unwrap();
        assert_eq!(fs::read(root.join(names::CA_DER)).unwrap(), ca);
        drop(fleet);
        let mut fleet = Fleet::open(&root).unwrap();
        let report = issue(&mut fleet, one("cam-2"), &opts, &|_| {}).unwrap();
        assert_eq!((report.issued, report.failed_count), (1, 0));
    }
}

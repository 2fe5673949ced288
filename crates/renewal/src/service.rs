//! The service without sockets: from a request and the certificate the
//! device presented, the answer (and one log event). The inventory is
//! touched under one lock; keys and certificates are made outside it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use devtls_fleet::renewal::{self, CertRow, Confirmed, NewRenewal, Pending, Recorded};
use devtls_fleet::{issue::role_from_name, Fleet};
use devtls_pki::issue::{Authority, CertSpec};
use devtls_pki::keys::{KeyType, PrivateKey};
use devtls_pki::profile::Profile;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::decide::{decide, Policy, Refusal, Verdict};
use crate::encode;
use crate::http::{Request, Response};

/// The EST endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `GET /.well-known/est/cacerts`
    CaCerts,
    /// `POST /.well-known/est/serverkeygen`
    ServerKeygen,
    /// `POST /.well-known/est/simplereenroll`
    SimpleReenroll,
    /// Anything else.
    Other,
}

impl Endpoint {
    /// The endpoint a path names.
    pub fn of(path: &str) -> Endpoint {
        match path.trim_end_matches('/') {
            "/.well-known/est/cacerts" => Endpoint::CaCerts,
            "/.well-known/est/serverkeygen" => Endpoint::ServerKeygen,
            "/.well-known/est/simplereenroll" => Endpoint::SimpleReenroll,
            _ => Endpoint::Other,
        }
    }

    /// Its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::CaCerts => "cacerts",
            Endpoint::ServerKeygen => "serverkeygen",
            Endpoint::SimpleReenroll => "simplereenroll",
            Endpoint::Other => "other",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Endpoint::CaCerts => "GET",
            _ => "POST",
        }
    }
}

/// One request, as logged and counted.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The device, when the presented certificate is in the inventory.
    pub device: Option<String>,
    /// The presented certificate's serial (hex).
    pub serial: String,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// `issued`, `resent`, `renewed`, `current`, `cacerts`, `refused-REASON`,
    /// `bad-request`, `not-found`, `error`.
    pub outcome: String,
    /// The HTTP status sent.
    pub status: u16,
    /// More about a bad request or an error (never key material).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The fleet cannot be used.
    #[error(transparent)]
    Fleet(#[from] devtls_fleet::Error),
}

/// How often the outcomes counted in memory (every request's but `issued`
/// and `renewed`, which the inventory counts in the transaction that records
/// them, and those of connections refused before any request: `refused-tls`,
/// `refused-busy`) are written to the inventory, one write per outcome: no
/// request costs a counter write of its own (docs/renewal.md, "Logging and
/// counting").
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The renewal service's state: the fleet, its CA, the policy.
pub struct Service {
    fleet: Mutex<Fleet>,
    unwritten: Mutex<BTreeMap<String, u64>>,
    ca: Arc<Authority>,
    ca_der: Vec<u8>,
    dir: std::path::PathBuf,
    policy: Policy,
    profile: &'static Profile,
}

/// What the renewal step produced.
enum Issued {
    Creds(Box<Pending>, Option<Vec<u8>>),
    Refused(Refusal),
    Bad(String),
    /// Other requests of the device kept changing its renewal: try later.
    Busy,
}

impl Service {
    /// Opens the service on a fleet: creates the renewal tables, makes its
    /// commits survive a power cut and removes key files a killed run left
    /// behind.
    pub fn new(
        fleet: Fleet,
        policy: Policy,
        profile: &'static Profile,
    ) -> Result<Self, ServiceError> {
        renewal::ensure_schema(&fleet)?;
        renewal::durable_commits(&fleet)?;
        renewal::sweep(&fleet)?;
        Ok(Service {
            ca: fleet.authority()?,
            ca_der: fleet.ca_der().to_vec(),
            dir: fleet.dir().to_path_buf(),
            fleet: Mutex::new(fleet),
            unwritten: Mutex::default(),
            policy,
            profile,
        })
    }

    /// The fleet CA certificate (DER).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The CA (to issue the service's own certificate).
    pub fn authority(&self) -> &Arc<Authority> {
        &self.ca
    }

    fn fleet(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an outcome (a request's, or a connection's the TLS layer
    /// refused: `refused-tls`), in memory only: written by the next
    /// [`Service::flush_counts`], which the server runs every [`FLUSH_EVERY`].
    pub fn note(&self, outcome: &str) {
        let mut unwritten = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        *unwritten.entry(outcome.to_string()).or_insert(0) += 1;
    }

    /// Writes the outcomes counted in memory to the inventory (one write
    /// per outcome); what cannot be written is kept for the next call.
    pub fn flush_counts(&self) {
        let counted =
            std::mem::take(&mut *self.unwritten.lock().unwrap_or_else(|p| p.into_inner()));
        if counted.is_empty() {
            return;
        }
        let fleet = self.fleet();
        for (outcome, n) in counted {
            if renewal::count(&fleet, &outcome, n).is_err() {
                self.note_n(&outcome, n);
            }
        }
    }

    fn note_n(&self, outcome: &str, n: u64) {
        let mut unwritten = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        *unwritten.entry(outcome.to_string()).or_insert(0) += n;
    }

    /// Answers `req` from a device that presented `leaf` (DER), at the current time.
    pub fn respond(&self, leaf: &[u8], req: &Request) -> (Response, Event) {
        let endpoint = Endpoint::of(&req.path);
        let serial = X509Certificate::from_der(leaf)
            .map(|(_, c)| hex::encode(c.raw_serial()))
            .unwrap_or_default();
        let mut event = Event {
            device: None,
            serial,
            endpoint,
            outcome: String::new(),
            status: 0,
            detail: None,
        };
        let response = match self.answer(endpoint, req, &mut event) {
            Ok(r) => r,
            Err(e) => {
                event.outcome = "error".into();
                event.detail = Some(e.to_string());
                text(500, "error", "error: the service failed; see its log")
            }
        };
        event.status = response.status;
        if !renewal::COUNTED_BY_THE_INVENTORY.contains(&event.outcome.as_str()) {
            self.note(&event.outcome);
        }
        (response, event)
    }

    fn answer(
        &self,
        endpoint: Endpoint,
        req: &Request,
        event: &mut Event,
    ) -> Result<Response, devtls_fleet::Error> {
        if endpoint == Endpoint::Other {
            event.outcome = "not-found".into();
            return Ok(text(
                404,
                "not-found",
                "not found: use /.well-known/est/cacerts, serverkeygen or simplereenroll",
            ));
        }
        if req.method != endpoint.method() {
            event.outcome = "bad-request".into();
            return Ok(text(
                405,
                "bad-request",
                &format!("use {} for {}", endpoint.method(), req.path),
            )
            .with("Allow", endpoint.method()));
        }
        let now = devtls_fleet::now().unix_timestamp();
        let fleet = self.fleet();
        let mut row = renewal::find(&fleet, &event.serial)?;
        event.device = row.as_ref().map(|r| r.device.clone());
        let pending = match &row {
            Some(r) if r.status == "pending" && r.owner.is_none() => {
                renewal::pending_by_cert(&fleet, r.id)?.is_some()
            }
            _ => false,
        };
        if !pending && row.as_ref().is_some_and(|r| r.status == "pending") {
            // Another service may have confirmed this certificate between the
            // two reads (several services on one PostgreSQL inventory): its
            // row is then active, not an unknown certificate.
            row = renewal::find(&fleet, &event.serial)?;
        }
        let mut verdict = decide(row.as_ref(), pending, now, &self.policy);
        let mut confirmed = false;
        if verdict == Verdict::Confirm {
            let id = row.as_ref().map_or(0, |r| r.id);
            match renewal::confirm(&fleet, id, self.policy.old_becomes())? {
                Confirmed::Done { .. } => confirmed = true,
                Confirmed::OldRevoked => return Ok(refuse(event, Refusal::Revoked)),
                Confirmed::Gone => {}
            }
            row = renewal::find(&fleet, &event.serial)?;
            verdict = match decide(row.as_ref(), false, now, &self.policy) {
                // Just confirmed: not renewed again in the same request.
                Verdict::Renew => Verdict::Current,
                v => v,
            };
        }
        if let Verdict::Refuse(why) = verdict {
            return Ok(refuse(event, why));
        }
        let outcome = |name: &str| {
            if confirmed {
                "renewed".to_string()
            } else {
                name.to_string()
            }
        };
        if endpoint == Endpoint::CaCerts {
            // The grace lets an expired certificate renew, nothing else
            // (docs/renewal.md, "The grace").
            if row.as_ref().is_some_and(|r| now >= r.not_after) {
                return Ok(refuse(event, Refusal::Expired));
            }
            event.outcome = outcome("cacerts");
            return Ok(cacerts(req, &self.ca_der));
        }
        if verdict != Verdict::Renew {
            event.outcome = outcome("current");
            return Ok(Response {
                status: 204,
                headers: vec![("X-Devtls-Status".into(), "current".into())],
                body: Vec::new(),
            });
        }
        let Some(old) = row else {
            return Ok(refuse(event, Refusal::Unknown));
        };
        drop(fleet);
        match self.renew(endpoint, req, &old, event)? {
            Issued::Creds(pending, key) => Ok(credentials(endpoint, req, &pending, key.as_deref())),
            Issued::Refused(why) => Ok(refuse(event, why)),
            Issued::Busy => {
                event.outcome = "busy".into();
                Ok(busy())
            }
            Issued::Bad(why) => {
                event.outcome = "bad-request".into();
                event.detail = Some(why.clone());
                Ok(text(
                    400,
                    "bad-request",
                    &format!("refused: bad-request: {why}"),
                ))
            }
        }
    }

    /// Gives `old`'s device its pending renewal, or makes one.
    fn renew(
        &self,
        endpoint: Endpoint,
        req: &Request,
        old: &CertRow,
        event: &mut Event,
    ) -> Result<Issued, devtls_fleet::Error> {
        let dns: Vec<String> = split(&old.dns);
        let ips: Vec<IpAddr> = split(&old.ips)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let csr = if endpoint == Endpoint::SimpleReenroll {
            let der = crate::csr::body_der(&req.body);
            match crate::csr::check(&der, self.profile, &dns, &ips) {
                Ok(checked) => Some((der, checked)),
                Err(e) => return Ok(Issued::Bad(e.to_string())),
            }
        } else {
            None
        };
        let wanted_spki = csr.as_ref().map(|(_, c)| c.spki_sha256.as_str());
        // Two tries: a second request of the same device may record first,
        // or a dead issuer's row is in the way until recovery settles it.
        for _ in 0..2 {
            {
                let fleet = self.fleet();
                if let Some(p) = renewal::pending_for(&fleet, old.id)? {
                    let now = devtls_fleet::now().unix_timestamp();
                    // One new certificate per renewal: while it is valid, the
                    // same request gets it again and any other is refused
                    // (another kind, another CSR key, or a key kept by
                    // another service), so a device cannot make certificates,
                    // nor grow the CRL, by asking (docs/renewal.md).
                    if p.cert.not_after > now {
                        let same_kind = p.spki_sha256.as_deref() == wanted_spki;
                        if !same_kind || !renewal::key_here(&fleet, &p) {
                            return Ok(Issued::Refused(Refusal::Pending));
                        }
                        let key = renewal::pending_key(&fleet, &p)?;
                        event.outcome = "resent".into();
                        return Ok(Issued::Creds(Box::new(p), key));
                    }
                    // Expired unconfirmed: at most one replacement per
                    // lifetime of a new certificate (an hour at least).
                    renewal::abandon(&fleet, p.cert.id)?;
                }
            }
            let now = devtls_fleet::now();
            let mut spec = CertSpec::new(old.device.clone(), role_from_name(&old.role), 1);
            spec.not_before = now - Duration::minutes(1);
            spec.not_after = now + Duration::seconds(self.policy.new_lifetime(old));
            spec.dns = dns.clone();
            spec.ips = ips.clone();
            let (cert, key_der, key_type) = match &csr {
                Some((der, checked)) => match self.ca.sign_csr(der, &spec) {
                    Ok(cert) => (cert, None, checked.key_type),
                    // What rcgen refuses to read in the request (an extension
                    // it does not support): the device's to change.
                    Err(devtls_pki::Error::Malformed(why)) => return Ok(Issued::Bad(why)),
                    Err(e) => return Err(e.into()),
                },
                None => {
                    let key_type: KeyType = old.key_type.parse().unwrap_or(KeyType::P256);
                    let key = PrivateKey::generate(key_type)?;
                    (self.ca.sign(&spec, &key)?, Some(key.pkcs8_der()), key_type)
                }
            };
            let serial = hex::encode(&cert.serial);
            // The key's file is written (and synced) before the row, outside the lock.
            let key_file = match &key_der {
                Some(key) => Some(renewal::write_key(&self.dir, &serial, key)?),
                None => None,
            };
            let new = NewRenewal {
                old,
                cert_der: &cert.der,
                serial: &serial,
                key_type: key_type.name(),
                not_before: spec.not_before.unix_timestamp(),
                not_after: spec.not_after.unix_timestamp(),
                key_file,
                spki_sha256: wanted_spki,
                old_becomes: self.policy.old_becomes(),
            };
            let mut fleet = self.fleet();
            match renewal::record(&fleet, &new)? {
                Recorded::Done(id) => {
                    event.outcome = "issued".into();
                    let pending = renewal::pending_by_cert(&fleet, id)?.ok_or_else(|| {
                        devtls_fleet::Error::Invalid("a renewal just recorded is gone".into())
                    })?;
                    return Ok(Issued::Creds(Box::new(pending), key_der));
                }
                Recorded::OldNotActive => {
                    let now = devtls_fleet::now().unix_timestamp();
                    let row = renewal::find(&fleet, &old.serial)?;
                    return Ok(match decide(row.as_ref(), false, now, &self.policy) {
                        Verdict::Refuse(why) => Issued::Refused(why),
                        _ => Issued::Refused(Refusal::Superseded),
                    });
                }
                Recorded::Raced => {
                    // Something else is pending for the device: another of
                    // its requests (found by `pending_for` on the next try),
                    // or a `fleet issue`/`rotate` row. That issuer may have
                    // died since the service opened the fleet: its row is
                    // settled as every fleet command settles it when it
                    // opens the fleet; a live issuer's row stays, and the
                    // device is told to come back (docs/renewal.md).
                    devtls_fleet::recover::run(&mut fleet)?;
                }
            }
        }
        Ok(Issued::Busy)
    }
}

fn split(list: &str) -> Vec<String> {
    list.split(';')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn text(status: u16, tag: &str, body: &str) -> Response {
    Response::new(
        status,
        "text/plain; charset=utf-8",
        format!("{body}\n").into_bytes(),
    )
    .with("X-Devtls-Status", tag)
}

fn refuse(event: &mut Event, why: Refusal) -> Response {
    event.outcome = format!("refused-{}", why.name());
    let body = match why.reason() {
        Some(reason) => format!("refused: {}: {reason}", why.name()),
        None => format!("refused: {}", why.name()),
    };
    text(why.status(), why.name(), &body)
}

/// 503 with `Retry-After` (EST's "come back later", RFC 7030 §4.2.3).
pub fn busy() -> Response {
    text(
        503,
        "busy",
        "busy: another request of this device, or an issuance of it, is in progress; retry later",
    )
    .with("Retry-After", &crate::server::RETRY_AFTER.to_string())
}

fn cacerts(req: &Request, ca_der: &[u8]) -> Response {
    if req.accepts(encode::PKIX_CERT) {
        return Response::new(200, encode::PKIX_CERT, ca_der.to_vec());
    }
    Response::new(
        200,
        encode::PKCS7,
        encode::base64_lines(&encode::certs_only(&[ca_der])).into_bytes(),
    )
    .with("Content-Transfer-Encoding", "base64")
}

fn credentials(endpoint: Endpoint, req: &Request, p: &Pending, key: Option<&[u8]>) -> Response {
    if req.accepts(encode::DEVTLS) {
        let body = encode::devtls(&p.cert_der, key, p.cert.not_after);
        return Response::new(200, encode::DEVTLS, body).with("X-Devtls-Status", "renewed");
    }
    match (endpoint, key) {
        (Endpoint::ServerKeygen, Some(key)) => {
            let (ctype, body) = encode::serverkeygen_multipart(key, &p.cert_der);
            Response::new(200, &ctype, body)
        }
        _ => Response::new(
            200,
            encode::PKCS7,
            encode::base64_lines(&encode::certs_only(&[&p.cert_der])).into_bytes(),
        )
        .with("Content-Transfer-Encoding", "base64"),
    }
}

/// Unix seconds as a date for messages.
pub fn date(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

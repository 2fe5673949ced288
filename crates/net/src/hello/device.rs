//! The device's side of the handshake as a socket-free state machine: it
//! writes the device's ClientHello, reads the server's answer and decides,
//! as the device would, whether the device carries on, refuses, or is
//! refused. Drivers ([`super::drive`]) move the bytes.
//!
//! The device's checks, in its order: the ServerHello (version, suite,
//! compression), the Certificate message (the chain, verified by
//! `devtls_pki::verify` as the device verifies it), the ServerKeyExchange
//! (group and signature algorithm among those the device offered, the
//! signature checked with the leaf's key), then, when the server asked for
//! a certificate, the device's Certificate, ClientKeyExchange and
//! CertificateVerify (plaintext in TLS 1.2) and whether the server refuses
//! them. Nothing here needs a cipher: over TLS the device's Finished is
//! replaced by a record the server cannot decrypt, and the alert it answers
//! with says whether it had accepted everything before it. DTLS drops such
//! records silently, so there the device's real ChangeCipherSpec and
//! Finished are sent ([`super::finished`]): the server's own
//! ChangeCipherSpec means it accepted the device's flight, an alert or
//! silence through two retransmission intervals means it refused it
//! (docs/device-behaviour.md). For a suite devtls cannot seal (none the
//! device offers) the DTLS flight stops before the Finished and a quiet
//! second means acceptance, to be confirmed by a full handshake.

use devtls_pki::device_error::{self, DeviceError};
use devtls_pki::profile::Profile;
use devtls_pki::verify::{self, PeerRole, Verdict};
use serde::Serialize;
use time::OffsetDateTime;

use super::client_hello::Offer;
use super::finished::ClientKeys;
use super::keys::{self, KeyError};
use super::server_flight::{self, alert_name, CertificateRequest, EcdheParams, ServerHello};
use super::wire::{content, hs, Incoming, Reader, Transport, WireError, Writer};

/// The device's own certificate and key, for servers that demand one (mTLS).
#[derive(Clone)]
pub struct Identity {
    /// The device's certificate, DER (it presents only this one).
    pub cert: Vec<u8>,
    /// Its private key, DER (PKCS#8, SEC1 or PKCS#1).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// How the device checks the server's chain.
#[derive(Debug, Clone)]
pub struct ChainCheck<'a> {
    /// The one DER anchor the device loaded.
    pub anchor: &'a [u8],
    /// The name checked (`server_hostname`).
    pub hostname: Option<&'a str>,
    /// The device's clock.
    pub time: OffsetDateTime,
    /// `HOST:PORT`, for messages.
    pub target: Option<&'a str>,
}

/// Who the device is for one conversation.
#[derive(Debug, Clone)]
pub struct Device<'a> {
    /// Its profile (the chain rules).
    pub profile: &'a Profile,
    /// What its ClientHello offers ([`Offer::device`], or a widened copy).
    pub offer: Offer,
    /// SNI (the script's `server_hostname`).
    pub server_name: Option<&'a str>,
    /// Verify the chain as the device does (`None`: record it only).
    pub check: Option<ChainCheck<'a>>,
    /// The device's certificate and key, if it has one.
    pub identity: Option<&'a Identity>,
}

/// Where in the handshake something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Answering the device's ClientHello.
    Hello,
    /// Answering the device's Certificate / ClientKeyExchange / CertificateVerify.
    ClientFlight,
}

/// What the device refuses in the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The server chose TLS 1.3 (only a widened offer allows it).
    Tls13,
    /// A protocol version the device does not speak.
    Version,
    /// A cipher suite the device did not offer.
    Suite,
    /// A key exchange group the device did not offer.
    Group,
    /// A signature algorithm the device did not offer.
    SignatureAlgorithm,
    /// The key exchange signature does not verify with the leaf's key.
    Signature,
    /// A message the device cannot read or did not expect.
    Malformed,
    /// The device's own key cannot sign (mTLS).
    OwnKey,
}

/// A refusal by the device, with its error.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// What kind.
    pub kind: RefusalKind,
    /// The mbedTLS error the script sees.
    pub error: DeviceError,
    /// What exactly, in words.
    pub why: String,
}

/// How the conversation ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum End {
    /// The device would send its Finished: the server accepted everything
    /// the device sent and the device accepted everything the server sent.
    Proceeds,
    /// The server refused with a fatal alert.
    ServerAlert {
        /// The alert description.
        alert: u8,
        /// Its name.
        name: &'static str,
        /// After what.
        after: Stage,
    },
    /// The device refuses the server's answer.
    DeviceRefuses(Refusal),
    /// The chain failed the device's verification ([`Outcome::chain_verdict`]).
    ChainRefused,
    /// The server closed the connection.
    Closed {
        /// After what.
        after: Stage,
    },
    /// DTLS: the server went silent after the device's certificate flight:
    /// after its Finished, for two retransmission intervals (or, for a suite
    /// devtls cannot seal,
    /// a full handshake by devtls's own DTLS client did not finish either).
    /// The device waits until it times out.
    ServerSilent,
    /// The server does not speak TLS.
    NotTls {
        /// The first bytes, for the user.
        detail: String,
    },
}

/// What the server sent and what the device made of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Found {
    /// The ServerHello.
    pub server_hello: Option<ServerHello>,
    /// The chain, leaf first, DER.
    #[serde(skip)]
    pub chain: Vec<Vec<u8>>,
    /// The ECDHE parameters.
    pub key_exchange: Option<EcdheParams>,
    /// The CertificateRequest, if the server asked for one.
    pub certificate_request: Option<CertificateRequest>,
    /// DTLS: the server asked for a cookie first.
    pub cookie_exchange: bool,
    /// The device sent its certificate (mTLS) or an empty Certificate.
    pub sent_certificate: Option<bool>,
    /// DTLS: the device's flight ended with its real Finished, so the
    /// server's reaction is the verdict (no confirmation needed).
    pub finished_sent: bool,
}

/// The conversation's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// What the server sent.
    pub found: Found,
    /// The device's verdict on the chain, when it was checked.
    #[serde(skip)]
    pub chain_verdict: Option<Verdict>,
    /// How it ended.
    pub end: End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hello,
    Flight,
    AwaitVerdict,
    Done,
}

/// The device's side of one handshake.
#[derive(Debug)]
pub struct Conversation<'a> {
    device: Device<'a>,
    writer: Writer,
    reader: Reader,
    random: [u8; 32],
    transcript: Vec<u8>,
    last_flight: Vec<Vec<u8>>,
    found: Found,
    chain_verdict: Option<Verdict>,
    state: State,
    farewell: Option<Vec<u8>>,
    /// DTLS: the device's write keys once its Finished is sent.
    keys: Option<ClientKeys>,
    /// Silent waits since the device's Finished.
    silent_rounds: u8,
}

/// What to do after feeding the conversation.
#[derive(Debug, Default)]
pub struct Progress {
    /// Datagrams (DTLS) or byte runs (TLS) to send now.
    pub send: Vec<Vec<u8>>,
    /// The conversation's result, when it ended.
    pub done: Option<Outcome>,
}

impl<'a> Conversation<'a> {
    /// Starts a conversation: returns it and the ClientHello to send.
    pub fn start(device: Device<'a>) -> (Self, Vec<Vec<u8>>) {
        let transport = device.offer.transport;
        let random = device.offer.random();
        let mut c = Conversation {
            writer: Writer::new(transport),
            reader: Reader::new(transport),
            random,
            transcript: Vec::new(),
            last_flight: Vec::new(),
            found: Found::default(),
            chain_verdict: None,
            state: State::Hello,
            farewell: None,
            keys: None,
            silent_rounds: 0,
            device,
        };
        let first = c.hello(&[]);
        (c, first)
    }

    fn transport(&self) -> Transport {
        self.device.offer.transport
    }

    fn hello(&mut self, cookie: &[u8]) -> Vec<Vec<u8>> {
        let body = self
            .device
            .offer
            .client_hello(self.device.server_name, &self.random, cookie);
        let msg = self.writer.handshake_message(hs::CLIENT_HELLO, &body);
        self.transcript = msg.clone();
        let record = self.writer.record(content::HANDSHAKE, &msg);
        self.last_flight = vec![record];
        self.last_flight.clone()
    }

    /// DTLS: the last flight again (the device retransmits on a timer).
    pub fn retransmit(&self) -> Vec<Vec<u8>> {
        self.last_flight.clone()
    }

    /// Waiting for the server's reaction to the device's certificate flight,
    /// where silence means acceptance (DTLS, no Finished sent).
    pub fn silence_accepts(&self) -> bool {
        self.state == State::AwaitVerdict
            && self.transport() == Transport::Dtls
            && !self.found.finished_sent
    }

    /// The server said nothing for a retransmission interval (DTLS).
    /// Before the device's flight: `None`, retransmit. After a flight
    /// without Finished: it accepted it. After the device's Finished: a
    /// server that accepted answers with its ChangeCipherSpec, so silence
    /// through two retransmissions (or until `out_of_time`) is a refusal.
    pub fn silence(&mut self, out_of_time: bool) -> Option<Outcome> {
        if self.silence_accepts() {
            return Some(self.finish(End::Proceeds));
        }
        if self.state == State::AwaitVerdict && self.found.finished_sent {
            self.silent_rounds += 1;
            if self.silent_rounds >= 2 || out_of_time {
                return Some(self.finish(End::ServerSilent));
            }
        }
        None
    }

    /// The server closed the connection.
    pub fn closed(&mut self) -> Outcome {
        let after = if self.state == State::AwaitVerdict {
            Stage::ClientFlight
        } else {
            Stage::Hello
        };
        self.finish(End::Closed { after })
    }

    /// Whether the server has sent any record yet.
    pub fn answered(&self) -> bool {
        self.reader.records > 0
    }

    /// The alert(s) the device sends when it stops before the handshake is
    /// over (a server waiting for the rest, e.g. a DTLS server serving one
    /// peer at a time, is released): a fatal alert when it refuses, a
    /// user_canceled and close_notify when it would have carried on.
    pub fn farewell(&mut self) -> Option<Vec<u8>> {
        self.farewell.take()
    }

    fn finish(&mut self, end: End) -> Outcome {
        let alerts: &[[u8; 2]] = match (&end, self.state) {
            // Over TLS the device's ChangeCipherSpec is sent: no plaintext alert after it.
            (End::Proceeds, State::AwaitVerdict) if self.transport() == Transport::Dtls => {
                &[[1, 90], [1, 0]]
            }
            (_, State::AwaitVerdict) => &[],
            (End::ChainRefused, _) => &[[2, 42]],
            (End::DeviceRefuses(r), _) if r.kind == RefusalKind::Malformed => &[[2, 50]],
            (End::DeviceRefuses(_), _) => &[[2, 47]],
            (End::Proceeds, _) => &[[1, 90], [1, 0]],
            _ => &[],
        };
        if !alerts.is_empty() {
            let mut out = Vec::new();
            for a in alerts {
                out.extend(self.record(content::ALERT, a));
            }
            self.farewell = Some(out);
        }
        self.state = State::Done;
        Outcome {
            found: std::mem::take(&mut self.found),
            chain_verdict: self.chain_verdict.take(),
            end,
        }
    }

    /// One record: sealed with the device's keys once its Finished is sent.
    fn record(&mut self, content_type: u8, payload: &[u8]) -> Vec<u8> {
        match &self.keys {
            Some(k) => {
                let (epoch, seq) = self.writer.take_seq();
                k.seal(
                    content_type,
                    self.transport().version(),
                    epoch,
                    seq,
                    payload,
                )
            }
            None => self.writer.record(content_type, payload),
        }
    }

    /// Feeds bytes (TLS) or a datagram (DTLS) from the server.
    pub fn receive(&mut self, bytes: &[u8]) -> Progress {
        let mut progress = Progress::default();
        if self.state == State::Done {
            return progress;
        }
        if let Err(e) = self.reader.push(bytes) {
            if self.transport() == Transport::Dtls {
                // DTLS drops what it cannot read (RFC 6347 4.1.2.7), as the device does.
                return progress;
            }
            progress.done = Some(self.wire_error(e));
            return progress;
        }
        while let Some(item) = self.reader.next_incoming() {
            match self.step(item) {
                Ok(mut send) => progress.send.append(&mut send),
                Err(end) => {
                    progress.done = Some(self.finish(end));
                    return progress;
                }
            }
            if self.state == State::Done {
                break;
            }
        }
        if self.state == State::Done && progress.done.is_none() {
            progress.done = Some(self.finish(End::Proceeds));
        }
        progress
    }

    fn wire_error(&mut self, e: WireError) -> Outcome {
        match e {
            WireError::NotTls(detail) if !self.answered() => self.finish(End::NotTls { detail }),
            other => self.finish(End::DeviceRefuses(malformed(&other.to_string()))),
        }
    }

    // One message; Ok(bytes to send) or Err(how it ended).
    fn step(&mut self, item: Incoming) -> Result<Vec<Vec<u8>>, End> {
        let after = if self.state == State::AwaitVerdict {
            Stage::ClientFlight
        } else {
            Stage::Hello
        };
        match item {
            Incoming::Alert {
                level: 1,
                description,
            } if description != 0 => Ok(Vec::new()),
            Incoming::Alert { description: 0, .. } => Err(End::Closed { after }),
            Incoming::Alert { description, .. } => {
                if after == Stage::ClientFlight
                    && !self.found.finished_sent
                    && matches!(description, 20 | 51)
                {
                    // The server rejected only the stand-in Finished: it had
                    // accepted the device's certificate flight. (After the
                    // device's real Finished these alerts are refusals.)
                    return Err(End::Proceeds);
                }
                Err(End::ServerAlert {
                    alert: description,
                    name: alert_name(description),
                    after,
                })
            }
            Incoming::ChangeCipherSpec | Incoming::Other(_) => {
                if after == Stage::ClientFlight {
                    Err(End::Proceeds)
                } else {
                    Err(End::DeviceRefuses(malformed(
                        "the server sent a record out of order",
                    )))
                }
            }
            Incoming::Handshake {
                msg_type,
                body,
                transcript,
            } => self.handshake(msg_type, &body, &transcript),
        }
    }

    fn handshake(
        &mut self,
        msg_type: u8,
        body: &[u8],
        transcript: &[u8],
    ) -> Result<Vec<Vec<u8>>, End> {
        match (self.state, msg_type) {
            (State::Hello, hs::HELLO_VERIFY_REQUEST) if self.transport() == Transport::Dtls => {
                let cookie = server_flight::hello_verify_cookie(body)
                    .map_err(|e| End::DeviceRefuses(malformed(&e.to_string())))?;
                self.found.cookie_exchange = true;
                self.reader.restart();
                Ok(self.hello(&cookie))
            }
            (State::Hello, hs::SERVER_HELLO) => {
                self.transcript.extend_from_slice(transcript);
                let sh = ServerHello::parse(body)
                    .map_err(|e| End::DeviceRefuses(malformed(&e.to_string())))?;
                let checked = self.check_server_hello(&sh);
                self.found.server_hello = Some(sh);
                checked?;
                self.state = State::Flight;
                Ok(Vec::new())
            }
            (State::Flight, hs::CERTIFICATE) => {
                self.transcript.extend_from_slice(transcript);
                self.found.chain = server_flight::certificates(body)
                    .map_err(|e| End::DeviceRefuses(malformed(&e.to_string())))?;
                self.check_chain()?;
                Ok(Vec::new())
            }
            (State::Flight, hs::SERVER_KEY_EXCHANGE) => {
                self.transcript.extend_from_slice(transcript);
                self.check_key_exchange(body)?;
                Ok(Vec::new())
            }
            (State::Flight, hs::CERTIFICATE_REQUEST) => {
                self.transcript.extend_from_slice(transcript);
                let cr = CertificateRequest::parse(body)
                    .map_err(|e| End::DeviceRefuses(malformed(&e.to_string())))?;
                self.found.certificate_request = Some(cr);
                Ok(Vec::new())
            }
            (State::Flight, hs::SERVER_HELLO_DONE) => {
                self.transcript.extend_from_slice(transcript);
                if self.found.chain.is_empty() {
                    return Err(End::DeviceRefuses(malformed(
                        "the server sent no certificate (anonymous suites are not the device's)",
                    )));
                }
                if self.found.certificate_request.is_none() {
                    self.state = State::Done;
                    return Ok(Vec::new());
                }
                let flight = self.client_flight()?;
                self.state = State::AwaitVerdict;
                Ok(flight)
            }
            (State::AwaitVerdict, _) => Err(End::Proceeds),
            (_, other) => Err(End::DeviceRefuses(malformed(&format!(
                "the server sent handshake message {other} where the device does not expect it"
            )))),
        }
    }

    fn check_server_hello(&self, sh: &ServerHello) -> Result<(), End> {
        let offer = &self.device.offer;
        if sh.version == 0x0304 {
            return Err(refuse(
                RefusalKind::Tls13,
                device_error::BAD_PROTOCOL_VERSION,
                "the server chose TLS 1.3".into(),
            ));
        }
        if sh.version != offer.transport.version() {
            return Err(refuse(
                RefusalKind::Version,
                device_error::BAD_PROTOCOL_VERSION,
                format!("the server chose protocol version {:#06x}", sh.version),
            ));
        }
        if !offer.suites.contains(&sh.suite) {
            return Err(refuse(
                RefusalKind::Suite,
                device_error::ILLEGAL_PARAMETER,
                format!(
                    "the server chose cipher suite {:#06x}, which the device did not offer",
                    sh.suite
                ),
            ));
        }
        if sh.compression != 0 {
            return Err(refuse(
                RefusalKind::Malformed,
                device_error::ILLEGAL_PARAMETER,
                "the server chose compression".into(),
            ));
        }
        Ok(())
    }

    fn check_chain(&mut self) -> Result<(), End> {
        let Some(check) = &self.device.check else {
            return Ok(());
        };
        let verdict = verify::verify(&verify::Input {
            profile: self.device.profile,
            presented: &self.found.chain,
            anchor: check.anchor,
            hostname: check.hostname,
            time: check.time,
            now: OffsetDateTime::now_utc(),
            peer: PeerRole::Server,
            target: check.target,
        });
        let works = verdict.works;
        self.chain_verdict = Some(verdict);
        if works {
            Ok(())
        } else {
            Err(End::ChainRefused)
        }
    }

    fn suite_is_ecdhe(&self) -> bool {
        self.found
            .server_hello
            .as_ref()
            .is_some_and(|sh| sh.suite >> 8 == 0xC0)
    }

    fn check_key_exchange(&mut self, body: &[u8]) -> Result<(), End> {
        if !self.suite_is_ecdhe() {
            return Err(End::DeviceRefuses(malformed(
                "the server sent a ServerKeyExchange for an RSA key exchange suite",
            )));
        }
        let params = EcdheParams::parse(body).map_err(|e| {
            End::DeviceRefuses(malformed(&format!("unreadable ServerKeyExchange ({e:?})")))
        })?;
        let offer = &self.device.offer;
        let group = params.group;
        let scheme = params.signature_algorithm;
        let sh_random = self
            .found
            .server_hello
            .as_ref()
            .map(|s| s.random.clone())
            .unwrap_or_default();
        self.found.key_exchange = Some(params.clone());
        if !offer.groups.contains(&group) {
            return Err(refuse(
                RefusalKind::Group,
                device_error::ILLEGAL_PARAMETER,
                format!(
                    "the server chose key exchange group {group}, which the device did not offer"
                ),
            ));
        }
        if !offer.signature_algorithms.contains(&scheme) {
            return Err(refuse(
                RefusalKind::SignatureAlgorithm,
                device_error::ILLEGAL_PARAMETER,
                format!("the server signed its key exchange with {scheme:#06x}, which the device did not offer"),
            ));
        }
        let mut signed = self.random.to_vec();
        signed.extend_from_slice(&sh_random);
        signed.extend_from_slice(&params.params);
        let leaf = self.found.chain.first().cloned().unwrap_or_default();
        keys::verify_server_signature(&leaf, scheme, &signed, &params.signature).map_err(|e| {
            let error = if matches!(keys::LeafKey::of(&leaf), Ok(keys::LeafKey::Rsa(_))) {
                device_error::RSA_VERIFY_FAILED
            } else {
                device_error::ECP_VERIFY_FAILED
            };
            refuse(RefusalKind::Signature, error, e.to_string())
        })
    }

    // The device's Certificate, ClientKeyExchange and (with a key)
    // CertificateVerify; over TLS then ChangeCipherSpec and a stand-in Finished.
    fn client_flight(&mut self) -> Result<Vec<Vec<u8>>, End> {
        let identity = self.device.identity;
        let mut cert_body = Vec::new();
        match identity {
            Some(id) => {
                super::wire::put_u24(&mut cert_body, id.cert.len() + 3);
                super::wire::put_u24(&mut cert_body, id.cert.len());
                cert_body.extend_from_slice(&id.cert);
            }
            None => super::wire::put_u24(&mut cert_body, 0),
        }
        self.found.sent_certificate = Some(identity.is_some());
        let leaf = self.found.chain.first().cloned().unwrap_or_default();
        let kx = match &self.found.key_exchange {
            Some(p) if self.suite_is_ecdhe() => keys::ecdhe_key_exchange(p.group, Some(&p.public)),
            _ => keys::rsa_client_key_exchange(&leaf),
        }
        .map_err(|e| End::DeviceRefuses(malformed(&e.to_string())))?;
        let cke = kx.body.clone();
        let mut messages = Vec::new();
        let m = self.writer.handshake_message(hs::CERTIFICATE, &cert_body);
        self.transcript.extend_from_slice(&m);
        messages.push(m);
        let m = self.writer.handshake_message(hs::CLIENT_KEY_EXCHANGE, &cke);
        self.transcript.extend_from_slice(&m);
        messages.push(m);
        if let Some(id) = identity {
            let sha384 = self
                .found
                .server_hello
                .as_ref()
                .is_some_and(|sh| suite_hash_is_sha384(sh.suite));
            let cv = keys::certificate_verify(&id.key, sha384, &self.transcript).map_err(
                |e: KeyError| {
                    End::DeviceRefuses(Refusal {
                        kind: RefusalKind::OwnKey,
                        error: device_error::FATAL_ALERT,
                        why: e.to_string(),
                    })
                },
            )?;
            let m = self.writer.handshake_message(hs::CERTIFICATE_VERIFY, &cv);
            self.transcript.extend_from_slice(&m);
            messages.push(m);
        }
        let mut out = Vec::new();
        match self.transport() {
            Transport::Tls => {
                let joined: Vec<u8> = messages.concat();
                let mut run = self.writer.record(content::HANDSHAKE, &joined);
                run.extend(self.writer.record(content::CHANGE_CIPHER_SPEC, &[1]));
                // A Finished the server cannot decrypt: its alert tells
                // whether it had accepted everything before.
                run.extend(self.writer.record(content::HANDSHAKE, &[0u8; 40]));
                out.push(run);
            }
            Transport::Dtls => {
                let mut records: Vec<u8> = messages
                    .iter()
                    .flat_map(|m| self.writer.record(content::HANDSHAKE, m))
                    .collect();
                if let Some(fin) = self.finish_flight(&kx.premaster) {
                    records.extend(fin);
                }
                out.push(records);
            }
        }
        self.last_flight = out.clone();
        Ok(out)
    }
}

impl Conversation<'_> {
    /// DTLS: the device's ChangeCipherSpec and its Finished, sealed, when
    /// the suite is one [`ClientKeys`] seals (every suite the device
    /// offers); `None` otherwise.
    fn finish_flight(&mut self, premaster: &[u8]) -> Option<Vec<u8>> {
        let sh = self.found.server_hello.as_ref()?;
        if premaster.is_empty() {
            return None;
        }
        let keys = ClientKeys::derive(sh.suite, premaster, &self.random, &sh.random)?;
        let verify_data = keys.verify_data(&self.transcript);
        let mut out = self.writer.record(content::CHANGE_CIPHER_SPEC, &[1]);
        self.writer.next_epoch();
        let fin = self.writer.handshake_message(hs::FINISHED, &verify_data);
        self.transcript.extend_from_slice(&fin);
        self.keys = Some(keys);
        out.extend(self.record(content::HANDSHAKE, &fin));
        self.found.finished_sent = true;
        Some(out)
    }
}

// The suites whose PRF hash is SHA-384 (their names end in _SHA384).
fn suite_hash_is_sha384(suite: u16) -> bool {
    matches!(
        suite,
        0xC02C | 0xC030 | 0xC024 | 0xC028 | 0x009D | 0x003D | 0xC0AD | 0xC0A1
    )
}

fn refuse(kind: RefusalKind, error: DeviceError, why: String) -> End {
    End::DeviceRefuses(Refusal { kind, error, why })
}

fn malformed(why: &str) -> Refusal {
    Refusal {
        kind: RefusalKind::Malformed,
        error: device_error::DECODE_ERROR,
        why: why.to_string(),
    }
}

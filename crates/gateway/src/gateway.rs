//! The running gateway: listeners, one task per connection, the route chosen
//! by the SNI in the ClientHello, the upstream connected while the client's
//! handshake completes, then the relay; certificate files polled for changes.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devtls_net::diagnose::{self, Context, Diagnosis, Failure, Side};
use devtls_net::verify::PRESENTED_BY_CLIENT;
use devtls_pki::profile::{self, Profile};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::LazyConfigAcceptor;

use crate::admission::{self, Admission, Ticket};
use crate::certs::{self, CertError, ReloadableCert, RouteCert};
use crate::clientauth::{ClientAuth, Revoked};
use crate::config::{Direction, GatewayConfig, Route};
use crate::log::{millis, ConnLog, Logger, Outcome};
use crate::readahead::ReadAhead;
use crate::relay::{self, End};
use crate::routing::{self, Listener};
use crate::upstream::{self, Connector, UpstreamError};
use crate::watch::Watched;

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A certificate, key or anchor file cannot be used.
    #[error("{route}: {error}")]
    Cert {
        /// The route.
        route: String,
        /// The file problem.
        error: CertError,
    },
    /// The upstream settings cannot be used.
    #[error("{route}: {error}")]
    Upstream {
        /// The route.
        route: String,
        /// Why.
        error: UpstreamError,
    },
    /// Listening failed.
    #[error("cannot listen on {addr}: {error}; pick another address or stop what holds it")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The I/O runtime could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
}

/// Counters a caller (or a test) can read while the gateway runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted and not yet closed.
    pub active: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections relayed (both sides connected).
    pub relayed: AtomicU64,
    /// Connections closed at once, over a handshake limit (crate::admission).
    pub refused: AtomicU64,
}

/// A route ready to serve. Each part is rebuilt when its files change.
struct RouteRt {
    route: Route,
    cert: Arc<ReloadableCert>,
    server: Arc<Watched<PublicSide, CertError>>,
    upstream: Arc<Watched<Connector, UpstreamError>>,
    slots: Arc<Semaphore>,
}

/// The public side of a route: the rustls configuration and, when devices
/// prove themselves, how their certificates are checked.
#[derive(Debug)]
struct PublicSide {
    config: Arc<ServerConfig>,
    auth: Option<ClientAuth>,
}

/// A bound gateway.
pub struct Gateway {
    routes: Arc<Vec<RouteRt>>,
    listeners: Vec<(Listener, TcpListener, Duration)>,
    logger: Logger,
    reload_interval: Duration,
    stats: Arc<Stats>,
}

/// The profile whose key types a route's certificate must suit: any client
/// for an inbound route, the device for an outbound one.
fn shown_to(route: &Route) -> &'static Profile {
    match route.direction {
        Direction::Inbound => &profile::MODERN,
        Direction::Outbound => profile::DEFAULT,
    }
}

fn public_side(route: &Route, cert: &Arc<ReloadableCert>) -> Result<PublicSide, CertError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let auth = match &route.client_ca {
        None => None,
        Some(ca) => Some(ClientAuth::load(
            ca,
            route.client_crl.as_deref(),
            cert.current(),
        )?),
    };
    let verifier = auth
        .as_ref()
        .map_or_else(WebPkiClientVerifier::no_client_auth, |a| a.verifier.clone());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Unusable {
            files: route.cert.cert.display().to_string(),
            message: format!("no usable TLS version: {e}"),
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(RouteCert(cert.clone())));
    Ok(PublicSide {
        config: Arc::new(config),
        auth,
    })
}

fn route_rt(route: &Route) -> Result<RouteRt, GatewayError> {
    let cert_err = |error| GatewayError::Cert {
        route: route.name.clone(),
        error,
    };
    let cert = Arc::new(ReloadableCert::load(&route.cert, shown_to(route)).map_err(cert_err)?);
    let public_files = route
        .client_ca
        .iter()
        .chain(&route.client_crl)
        .cloned()
        .collect();
    let (r, c) = (route.clone(), cert.clone());
    let server =
        Watched::new(public_files, move || public_side(&r, &c).map(Arc::new)).map_err(cert_err)?;
    let (up, direction) = (route.upstream.clone(), route.direction.clone());
    let upstream = Watched::new(upstream::files(&up), move || {
        Connector::new(&up, &direction).map(Arc::new)
    })
    .map_err(|error| GatewayError::Upstream {
        route: route.name.clone(),
        error,
    })?;
    Ok(RouteRt {
        route: route.clone(),
        cert,
        server: Arc::new(server),
        upstream: Arc::new(upstream),
        slots: Arc::new(Semaphore::new(route.limits.max_connections)),
    })
}

impl Gateway {
    /// Reads every file and binds every listen address.
    pub async fn bind(config: &GatewayConfig, logger: Logger) -> Result<Gateway, GatewayError> {
        let routes = config
            .routes
            .iter()
            .map(route_rt)
            .collect::<Result<Vec<_>, _>>()?;
        let mut listeners = Vec::new();
        for l in routing::listeners(&config.routes) {
            let tcp = TcpListener::bind(l.addr)
                .await
                .map_err(|error| GatewayError::Bind {
                    addr: l.addr,
                    error,
                })?;
            let hello_timeout = l
                .routes
                .iter()
                .map(|&i| config.routes[i].limits.connect_timeout)
                .max()
                .unwrap_or(Duration::from_secs(10));
            listeners.push((l, tcp, hello_timeout));
        }
        Ok(Gateway {
            routes: Arc::new(routes),
            listeners,
            logger,
            reload_interval: config.reload_interval,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The bound addresses (port 0 resolved) with the names of their routes.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, Vec<String>)> {
        self.listeners
            .iter()
            .map(|(l, tcp, _)| {
                let names = l
                    .routes
                    .iter()
                    .map(|&i| self.routes[i].route.name.clone())
                    .collect();
                (tcp.local_addr().unwrap_or(l.addr), names)
            })
            .collect()
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Serves until the process ends.
    pub async fn run(self) {
        let reload = tokio::spawn(watch_certs(
            self.routes.clone(),
            self.reload_interval,
            self.logger,
        ));
        let mut tasks = Vec::new();
        let admission = Admission::new(
            admission::MAX_HANDSHAKES,
            admission::MAX_HANDSHAKES_PER_ADDRESS,
        );
        for (listener, tcp, hello_timeout) in self.listeners {
            let routes = self.routes.clone();
            let logger = self.logger;
            let stats = self.stats.clone();
            let admission = admission.clone();
            let listener = Arc::new(listener);
            tasks.push(tokio::spawn(async move {
                loop {
                    match tcp.accept().await {
                        Ok((conn, client)) => {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                            let ticket = match admission.admit(client.ip()) {
                                Ok(ticket) => ticket,
                                Err(refused) => {
                                    // Closed before a byte is read or a task made.
                                    drop(conn);
                                    stats.refused.fetch_add(1, Ordering::Relaxed);
                                    logger.conn(&refused_log(client, refused));
                                    continue;
                                }
                            };
                            let routes = routes.clone();
                            let listener = listener.clone();
                            let stats = stats.clone();
                            let admission = admission.clone();
                            stats.active.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(async move {
                                let slot = RefCell::new(Vec::new());
                                let log = PRESENTED_BY_CLIENT
                                    .scope(
                                        slot,
                                        handle(
                                            conn,
                                            client,
                                            ticket,
                                            &listener,
                                            &routes,
                                            hello_timeout,
                                            &stats,
                                        ),
                                    )
                                    .await;
                                if handshake_failed(&log.outcome) {
                                    admission.failed(client.ip());
                                }
                                logger.conn(&log);
                                if stats.active.fetch_sub(1, Ordering::Relaxed) == 1 {
                                    release_memory();
                                }
                            });
                        }
                        // Out of file descriptors and the like: back off instead of spinning.
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        reload.abort();
    }
}

/// Gives freed memory back to the system once no connection is open, so
/// the resident size returns to its baseline after a burst (glibc keeps
/// freed heap in its arenas otherwise).
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap pages to the kernel; it
    // takes no pointers and is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Two descriptors per relayed connection: lift the soft limit to the hard
/// one, as servers do (nginx's worker_rlimit_nofile), so the cap on
/// connections is the route's, not a default of 1024.
fn raise_fd_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Checks every route's files each `interval` (its certificate, the
/// device side's anchor and client certificate, the client CA and CRL);
/// logs reloads and refusals.
async fn watch_certs(routes: Arc<Vec<RouteRt>>, interval: Duration, logger: Logger) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for rt in routes.iter() {
            let cert = rt.cert.clone();
            if let Ok(Some(event)) = tokio::task::spawn_blocking(move || cert.poll()).await {
                log_cert_reload(rt, event, logger);
            }
            let server = rt.server.clone();
            if let Ok(Some(result)) = tokio::task::spawn_blocking(move || server.poll()).await {
                log_reload(rt, "client_ca", rt.server.files(), result.err(), logger);
            }
            let upstream = rt.upstream.clone();
            if let Ok(Some(result)) = tokio::task::spawn_blocking(move || upstream.poll()).await {
                log_reload(rt, "device_side", rt.upstream.files(), result.err(), logger);
            }
        }
    }
}

fn log_cert_reload(rt: &RouteRt, event: certs::Reload, logger: Logger) {
    let files = rt.cert.files();
    match event {
        certs::Reload::Reloaded { leaf } => {
            let (subject, until) = leaf.as_ref().map_or_else(
                || (String::new(), String::new()),
                |l| (l.subject.clone(), l.not_after.clone()),
            );
            logger.event(
                "reloaded",
                &format!(
                    "{}: reloaded {} ({subject}, valid until {until}); new connections use it",
                    rt.route.name,
                    files.cert.display()
                ),
                serde_json::json!({
                    "route": rt.route.name, "what": "certificate",
                    "cert": files.cert.display().to_string(),
                    "subject": subject, "not_after": until,
                }),
            );
        }
        certs::Reload::Refused(e) => log_reload(
            rt,
            "certificate",
            &[files.cert.clone(), files.key.clone()],
            Some(e),
            logger,
        ),
    }
}

/// A reload of `what` (read from `files`) done, or refused for `error`.
fn log_reload(
    rt: &RouteRt,
    what: &str,
    files: &[std::path::PathBuf],
    error: Option<impl std::fmt::Display>,
    logger: Logger,
) {
    let names = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match error {
        None => logger.event(
            "reloaded",
            &format!(
                "{}: reloaded {names} ({what}); new connections use it",
                rt.route.name
            ),
            serde_json::json!({"route": rt.route.name, "what": what, "files": names}),
        ),
        Some(e) => logger.event(
            "reload_refused",
            &format!(
                "{}: refused the new {what} files: {e}; keeping the ones in use (fix the files \
                 and save them again)",
                rt.route.name
            ),
            serde_json::json!({
                "route": rt.route.name, "what": what, "files": names, "error": e.to_string(),
            }),
        ),
    }
}

/// The client's side never became TLS (garbage, a stall, an aborted or
/// refused handshake): spends the address's failure budget
/// ([`Admission::failed`]).
fn handshake_failed(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::ClientFailed { .. } | Outcome::ClientRevoked { .. } | Outcome::NoRoute { .. }
    )
}

/// The log line of a connection closed at once by [`Admission`].
fn refused_log(client: SocketAddr, refused: admission::Refused) -> ConnLog {
    ConnLog {
        client,
        sni: None,
        route: None,
        upstream: None,
        version: None,
        outcome: Outcome::ClientFailed {
            detail: refused.to_string(),
            diagnosis: None,
        },
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
    }
}

/// One connection, start to end; returns its log line.
async fn handle(
    tcp: TcpStream,
    client: SocketAddr,
    ticket: Ticket,
    listener: &Listener,
    routes: &[RouteRt],
    hello_timeout: Duration,
    stats: &Stats,
) -> ConnLog {
    let start = Instant::now();
    let _ = tcp.set_nodelay(true);
    let mut log = ConnLog {
        client,
        sni: None,
        route: None,
        upstream: None,
        version: None,
        outcome: Outcome::Relayed,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
    };
    let outcome = serve(
        tcp,
        ticket,
        listener,
        routes,
        hello_timeout,
        stats,
        &mut log,
    )
    .await;
    log.outcome = outcome;
    log.duration_ms = millis(start.elapsed());
    log
}

async fn serve(
    tcp: TcpStream,
    ticket: Ticket,
    listener: &Listener,
    routes: &[RouteRt],
    hello_timeout: Duration,
    stats: &Stats,
    log: &mut ConnLog,
) -> Outcome {
    let client_failed = |detail: String| Outcome::ClientFailed {
        detail,
        diagnosis: None,
    };
    let lazy = LazyConfigAcceptor::new(Acceptor::default(), ReadAhead::new(tcp));
    let start = match tokio::time::timeout(hello_timeout, lazy).await {
        Err(_) => return client_failed("no ClientHello within the time limit".into()),
        Ok(Err(e)) => return client_failed(format!("not a TLS ClientHello ({e})")),
        Ok(Ok(start)) => start,
    };
    let sni = start.client_hello().server_name().map(str::to_string);
    log.sni = sni.clone();
    let rt = match listener.pick(sni.as_deref()) {
        Ok(i) => &routes[i],
        Err(e) => {
            return Outcome::NoRoute {
                detail: e.to_string(),
            }
        }
    };
    log.route = Some(rt.route.name.clone());
    let upstream = rt.upstream.current();
    let public = rt.server.current();
    log.upstream = Some(upstream.addr().to_string());
    let Ok(_slot) = rt.slots.clone().try_acquire_owned() else {
        return Outcome::Limit {
            max_connections: rt.route.limits.max_connections,
        };
    };
    let limits = rt.route.limits;
    // The client's handshake and the upstream connection at the same time.
    // The chain a device presents is kept (net's task-local slot, set
    // around each connection's task) so a refusal for revocation names the
    // certificate.
    let accept = tokio::time::timeout(
        limits.connect_timeout,
        start.into_stream(public.config.clone()),
    );
    let connect = upstream.connect(limits.connect_timeout);
    let (accepted, connected) = tokio::join!(accept, connect);
    // The handshake is over (done, failed or timed out): its place goes back.
    drop(ticket);
    let presented = PRESENTED_BY_CLIENT
        .try_with(|p| p.borrow().first().cloned())
        .ok()
        .flatten();
    let mut client = match accepted {
        Err(_) => return client_failed("TLS handshake not finished within the time limit".into()),
        Ok(Err(e)) => {
            if let Some(revoked) = revocation(&public, presented.clone(), &e) {
                return Outcome::ClientRevoked { revoked };
            }
            let detail = format!("TLS handshake failed ({e})");
            let diagnosis = (rt.route.direction == Direction::Outbound)
                .then(|| device_client_failed(e, presented, &rt.route));
            return Outcome::ClientFailed { detail, diagnosis };
        }
        Ok(Ok(stream)) => stream,
    };
    log.version = client.get_ref().1.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        other => format!("{other:?}"),
    });
    let (upstream, _peer) = match connected {
        Ok(up) => up,
        Err(diagnosis) => {
            // A clean close for the client: close_notify, then FIN.
            let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
            return Outcome::UpstreamFailed { diagnosis };
        }
    };
    stats.relayed.fetch_add(1, Ordering::Relaxed);
    let device = match &rt.route.direction {
        Direction::Inbound => relay::DeviceSide::Upstream,
        Direction::Outbound => relay::DeviceSide::Client,
    };
    let (end, up, down) = relay::relay(client, upstream, limits.idle_timeout, device).await;
    log.bytes_up = up;
    log.bytes_down = down;
    match end {
        End::Done => Outcome::Relayed,
        End::Idle => Outcome::Idle,
        End::Error(e) => Outcome::Broken {
            detail: e.to_string(),
        },
    }
}

/// A device (the client on an outbound route) whose handshake failed:
/// net's diagnosis, with what the device raises for it.
fn device_client_failed(
    e: std::io::Error,
    presented: Option<rustls::pki_types::CertificateDer<'static>>,
    route: &Route,
) -> Box<Diagnosis> {
    let presented = devtls_net::report::summarize(presented.as_slice());
    let anchors = route
        .client_ca
        .as_ref()
        .map_or_else(|| "no client CA".to_string(), |p| p.display().to_string());
    let ctx = Context {
        side: Side::ServerOfDevice,
        profile: shown_to(route),
        server_name: "",
        anchors: &anchors,
        presented: &presented,
        asked_for_cert: false,
        sent_cert: false,
        probe: None,
    };
    Box::new(diagnose::diagnose(&Failure::from_io(e), &ctx))
}

/// When the handshake failed because the client's certificate is on the
/// route's CRL: which certificate and why.
fn revocation(
    public: &PublicSide,
    presented: Option<rustls::pki_types::CertificateDer<'static>>,
    e: &std::io::Error,
) -> Option<Revoked> {
    let revoked = matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))
    );
    if !revoked {
        return None;
    }
    public.auth.as_ref()?.revoked(&presented?)
}

/// Binds and serves on a private multi-thread runtime with `workers`
/// threads (0: one per core), for callers without tokio. `on_listening`
/// gets the bound addresses before the first client is accepted.
pub fn run_blocking(
    config: &GatewayConfig,
    logger: Logger,
    workers: usize,
    on_listening: impl FnOnce(&[(SocketAddr, Vec<String>)]),
) -> Result<(), GatewayError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    let runtime = builder.build().map_err(GatewayError::Runtime)?;
    raise_fd_limit();
    runtime.block_on(async {
        let gateway = Gateway::bind(config, logger).await?;
        on_listening(&gateway.local_addrs());
        gateway.run().await;
        Ok(())
    })
}

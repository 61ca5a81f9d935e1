//! An iLO-like Redfish service on 127.0.0.1 for tests and `vault demo`.
//!
//! Hand-written on `TcpListener` + one thread per connection (+ rustls for HTTPS) so that
//! every fault is fully controllable: 5xx, delays, dribbled or cut bodies, lying
//! `Content-Length`, endless bodies, redirect loops, malformed JSON, HTML error pages.
//! [`SimFleet`] serves many BMCs from one process, their listeners accepted by one epoll
//! thread. A request passes `admit` (OData version, route, method, session) before its
//! route runs; `resource` serves the documents that are only JSON.
//!
//! Invariants:
//! - It only ever binds loopback, and every connection is bounded: header size, body size,
//!   per-request deadline, and at most [`MAX_REQUESTS_PER_CONNECTION`] requests on one
//!   connection. Like iLO, it answers HTTP/1.1 requests with `Connection: keep-alive`
//!   and serves the next request on the same connection (a client then pays one TLS
//!   handshake per BMC, not one per request); it closes after an answer it cut short or
//!   could not complete, after a client's `Connection: close`, after HTTP/1.0 requests,
//!   and when no complete request arrives within [`REQUEST_DEADLINE`].
//! - All threads stop on [`SimHandle::shutdown`] (or drop): sleeps and socket reads poll
//!   the stop flag, and the accept thread joins the connection threads before it ends.
//!   A test that forgets to stop it cannot hang the test binary.
//! - It is a test double, not a security boundary: the password it checks lives in plain
//!   memory and tokens are compared naively.
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{SigSet, Signal};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{Value, json};

/// iLO's default session idle timeout.
const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const MAX_HEADER_BYTES: usize = 16 << 10;
const MAX_HEADERS: usize = 64;
const MAX_BODY_BYTES: u64 = 64 << 20;
/// A request must arrive completely within this time (on a kept-alive connection,
/// counted from the end of the previous answer: an idle connection is closed after it).
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Requests served on one connection before it is closed (`Connection: close`).
const MAX_REQUESTS_PER_CONNECTION: usize = 100;
/// Socket read granularity: how often a blocked read looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Largest body written together with its header block (see `respond`).
const COALESCED_BODY_BYTES: usize = 256 << 10;
/// `EndlessBody` stops after this much even if the client keeps reading.
const ENDLESS_CAP: u64 = 1 << 30;

/// Faults the simulator can inject.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// 500 with an iLO error body on the backup service GET, the `.bak` GET and the
    /// restore POST.
    ServerError,
    /// Waits this long before answering the `.bak` GET.
    Slow(Duration),
    /// The `.bak` body dribbles one byte per ~100 ms.
    SlowDrip,
    /// Sends half of the `.bak` body (with the full `Content-Length`), then closes.
    CutMidDownload,
    /// The backup service resource is invalid JSON.
    MalformedJson,
    /// `200 text/html` login page instead of the `.bak`.
    HtmlErrorPage,
    /// The `.bak` answer claims 10 GB.
    HugeContentLength,
    /// The `.bak` body is chunked and never ends (until the client hangs up).
    EndlessBody,
    /// The `.bak` GET redirects to itself.
    RedirectLoop,
    /// The next n requests to the login, backup service, `.bak` or restore endpoints
    /// answer 503; then the simulator behaves normally.
    TransientErrors(u32),
}

/// How the simulated iLO behaves.
#[derive(Clone)]
pub struct SimConfig {
    pub tls: bool,
    pub user: String,
    pub password: String,
    pub session_limit: usize,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub backup_bytes: Vec<u8>,
    /// iLO answers the login with an absolute `Location`; other BMCs with a path.
    pub absolute_location: bool,
    /// Added to every request (for fleet benchmarks).
    pub latency: Duration,
    pub fault: Fault,
    /// Whether `GET <BackupFileLocation>` serves the file, as HPE documents. `false`
    /// answers 405 there; `POST` with a `sessionKey` form field (what HPE's iLOrest does)
    /// always works.
    pub get_download: bool,
    /// The session collection the service root names in `Links.Sessions`. `None`: a
    /// Redfish service without sessions (login only by HTTP Basic).
    pub sessions_uri: Option<String>,
    /// The Managers collection lists, before the real Manager, one that answers this
    /// status (a Manager that fails during discovery).
    pub failing_first_manager: Option<u16>,
    /// Serve a self-signed certificate with `basicConstraints CA:TRUE`, like the one
    /// `openssl req -x509` makes (and many BMCs ship).
    pub ca_flag_certificate: bool,
    /// The first this many logins with the right credentials answer 503
    /// `SessionLimitExceeded`, as an iLO whose session slots are taken by others does.
    pub refused_logins: u32,
}

/// Default session collection, as on iLO 5 and iLO 6.
pub const SESSIONS_URI: &str = "/redfish/v1/SessionService/Sessions/";
/// The simulator's own state (open sessions, requests received, restores), as JSON,
/// without authentication. Not part of iLO: for tests and for watching a demo.
pub const STATE_URI: &str = "/vault-simulator/state";
/// iLO's limit on the backup-file password (`--filepass` of HPE's iLOrest).
pub const MAX_FILE_PASSWORD_CHARS: usize = 32;
pub use super::redfish::INVALID_RESTORE_PASSWORD;
/// First line of a password-protected backup served by the simulator. Real iLO encrypts
/// such a file; the simulator only tags it with a hash of the password, which is enough
/// to model what clients see (the file differs, restore needs the same password).
const PROTECTED_MAGIC: &[u8] = b"VAULT-SIMULATOR password-protected iLO backup\n";
/// Requests kept in the state log.
const MAX_LOGGED_REQUESTS: usize = 10_000;

impl Default for SimConfig {
    fn default() -> Self {
        // Deterministic filler; tests that care set their own bytes.
        let backup_bytes = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        SimConfig {
            tls: true,
            user: "admin".into(),
            password: "simulator-password".into(),
            session_limit: 8,
            serial: "CZ2D1234XY".into(),
            model: "iLO 6".into(),
            firmware: "iLO 6 v1.59".into(),
            backup_bytes,
            absolute_location: true,
            latency: Duration::ZERO,
            fault: Fault::None,
            get_download: true,
            sessions_uri: Some(SESSIONS_URI.into()),
            failing_first_manager: None,
            ca_flag_certificate: false,
            refused_logins: 0,
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &"[REDACTED]")
            .field("session_limit", &self.session_limit)
            .field("serial", &self.serial)
            .field("model", &self.model)
            .field("firmware", &self.firmware)
            .field("backup_bytes", &self.backup_bytes.len())
            .field("absolute_location", &self.absolute_location)
            .field("latency", &self.latency)
            .field("fault", &self.fault)
            .field("get_download", &self.get_download)
            .field("sessions_uri", &self.sessions_uri)
            .field("failing_first_manager", &self.failing_first_manager)
            .field("ca_flag_certificate", &self.ca_flag_certificate)
            .field("refused_logins", &self.refused_logins)
            .finish()
    }
}

struct SimSession {
    id: String,
    user: String,
    last_used: Instant,
}

/// One request as the simulator saw it (no header values, no bodies: they hold secrets).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub status: u16,
    /// Lower-cased names of the request headers.
    pub headers: Vec<String>,
    pub content_type: Option<String>,
    /// Names of the `multipart/form-data` fields, in order.
    pub form_fields: Vec<String>,
}

/// One accepted restore upload.
#[derive(Debug, Clone)]
pub struct Restored {
    pub file: Vec<u8>,
    /// Whether a non-empty `password` form field came with it.
    pub with_password: bool,
}

struct Shared {
    cfg: SimConfig,
    port: u16,
    fault: Mutex<Fault>,
    transient_left: AtomicU32,
    /// Logins still to refuse with `SessionLimitExceeded` ([`SimConfig::refused_logins`]).
    refusals_left: AtomicU32,
    /// token → session
    sessions: Mutex<HashMap<String, SimSession>>,
    created: AtomicUsize,
    requests: AtomicUsize,
    /// Connections accepted (a kept-alive connection serves several requests).
    connections: AtomicUsize,
    /// Answers in which the configured fault acted (see [`SimHandle::faults_served`]).
    faults_served: AtomicUsize,
    restored: Mutex<Vec<Restored>>,
    /// Lower-cased names of the `.bak` files created by service GETs.
    backups: Mutex<HashSet<String>>,
    /// Reads of the BackupRestoreService (each makes iLO build a backup).
    built: AtomicUsize,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
    stop: AtomicBool,
    tls: Option<Arc<ServerConfig>>,
}

/// A self-signed certificate for 127.0.0.1/localhost, its PEM in a temporary directory.
struct Identity {
    ck: rcgen::CertifiedKey<rcgen::KeyPair>,
    ca_path: PathBuf,
    fingerprint: String,
    dir: tempfile::TempDir,
}

impl Identity {
    fn new(ca_flag: bool) -> io::Result<Identity> {
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let ck = if ca_flag {
            let mut params = rcgen::CertificateParams::new(names).map_err(io::Error::other)?;
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let signing_key = rcgen::KeyPair::generate().map_err(io::Error::other)?;
            let cert = params.self_signed(&signing_key).map_err(io::Error::other)?;
            rcgen::CertifiedKey { cert, signing_key }
        } else {
            rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?
        };
        let dir = tempfile::Builder::new()
            .prefix("vault-bmc-simulator-")
            .tempdir()?;
        // Removed on drop, and by the CLI's signal handler if the process is stopped.
        crate::fsutil::register_live_temp(dir.path());
        let ca_path = dir.path().join("bmc-simulator-ca.pem");
        std::fs::write(&ca_path, ck.cert.pem())?;
        let fingerprint = {
            use sha2::Digest as _;
            format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(ck.cert.der()))
            )
        };
        Ok(Identity {
            ck,
            ca_path,
            fingerprint,
            dir,
        })
    }

    fn server_config(&self) -> io::Result<Arc<ServerConfig>> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            self.ck.signing_key.serialize_der(),
        ));
        let cert: CertificateDer<'static> = self.ck.cert.der().clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let sc = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .map_err(io::Error::other)?;
        Ok(Arc::new(sc))
    }
}

impl Shared {
    fn new(cfg: SimConfig, port: u16, tls: Option<Arc<ServerConfig>>) -> Arc<Shared> {
        let fault = cfg.fault.clone();
        let transient = match fault {
            Fault::TransientErrors(n) => n,
            _ => 0,
        };
        let refusals = cfg.refused_logins;
        Arc::new(Shared {
            cfg,
            refusals_left: AtomicU32::new(refusals),
            port,
            fault: Mutex::new(fault),
            transient_left: AtomicU32::new(transient),
            sessions: Mutex::new(HashMap::new()),
            created: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            faults_served: AtomicUsize::new(0),
            restored: Mutex::new(Vec::new()),
            backups: Mutex::new(HashSet::new()),
            built: AtomicUsize::new(0),
            log: Arc::new(Mutex::new(Vec::new())),
            stop: AtomicBool::new(false),
            tls,
        })
    }
}

/// Many simulated BMCs served by one process: each its own port on 127.0.0.1, its own
/// [`SimConfig`] (serial, credentials, latency, fault) and state, all accepted by a single
/// thread that waits on every listener at once (epoll), one thread per connection. They
/// share one certificate (for 127.0.0.1), so one CA file trusts the whole fleet. For the
/// 10,000-BMC fleet runs, where a process (or an accept thread) per BMC would not scale.
pub struct SimFleet {
    shared: Vec<Arc<Shared>>,
    accept: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    ca_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SimFleet {
    /// Binds one free port on 127.0.0.1 per configuration and starts serving them all.
    pub fn start(cfgs: Vec<SimConfig>) -> io::Result<SimFleet> {
        // A listener per BMC, plus the connections: raise the soft limit to the hard one.
        let _ = rlimit::increase_nofile_limit(cfgs.len() as u64 * 2 + 1024);
        let id = Identity::new(false)?;
        let tls = id.server_config()?;
        let mut listeners = Vec::with_capacity(cfgs.len());
        let mut shared = Vec::with_capacity(cfgs.len());
        for cfg in cfgs {
            let l = TcpListener::bind(("127.0.0.1", 0))?;
            l.set_nonblocking(true)?;
            let port = l.local_addr()?.port();
            let t = cfg.tls.then(|| Arc::clone(&tls));
            shared.push(Shared::new(cfg, port, t));
            listeners.push(l);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sh) = (Arc::clone(&stop), shared.clone());
        let accept = std::thread::Builder::new()
            .name("bmc-fleet-accept".into())
            .spawn(move || fleet_accept_loop(listeners, sh, st))?;
        Ok(SimFleet {
            shared,
            accept: Some(accept),
            stop,
            ca_path: id.ca_path,
            _dir: id.dir,
        })
    }

    pub fn len(&self) -> usize {
        self.shared.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.is_empty()
    }

    /// The base URL of BMC `i`.
    pub fn base_url(&self, i: usize) -> String {
        let s = &self.shared[i];
        let scheme = if s.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", s.port)
    }

    /// PEM of the certificate every BMC of the fleet presents.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_path
    }

    /// Complete requests received by all BMCs.
    pub fn request_count(&self) -> usize {
        self.shared
            .iter()
            .map(|s| s.requests.load(Ordering::SeqCst))
            .sum()
    }

    /// Sessions open on BMC `i`.
    pub fn open_sessions(&self, i: usize) -> usize {
        let mut s = lock(&self.shared[i].sessions);
        purge_expired(&mut s);
        s.len()
    }

    /// Writes a fleet inventory (TOML, `vault backup pull --inventory`) of every BMC.
    pub fn write_inventory(&self, out: &mut dyn Write) -> io::Result<()> {
        for i in 0..self.len() {
            writeln!(out, "[[bmc]]")?;
            writeln!(out, "url = \"{}\"", self.base_url(i))?;
            writeln!(out, "user = \"{}\"", self.shared[i].cfg.user)?;
            writeln!(out, "ca_cert = \"{}\"\n", self.ca_path.display())?;
        }
        Ok(())
    }

    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in &self.shared {
            s.stop.store(true, Ordering::SeqCst);
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        self.stop_all();
        crate::fsutil::unregister_live_temp(self._dir.path());
    }
}

/// Accepts on every listener of a fleet from one thread (epoll, level-triggered), handing
/// each connection to a thread of its own; polls `stop` every [`POLL`].
fn fleet_accept_loop(listeners: Vec<TcpListener>, shared: Vec<Arc<Shared>>, stop: Arc<AtomicBool>) {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let Ok(epoll) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
        return;
    };
    for (i, l) in listeners.iter().enumerate() {
        if epoll
            .add(l, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .is_err()
        {
            return;
        }
    }
    let mut events = vec![EpollEvent::empty(); 512];
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let poll_ms = u16::try_from(POLL.as_millis()).unwrap_or(100);
    while !stop.load(Ordering::SeqCst) {
        let n = match epoll.wait(&mut events, poll_ms) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        for ev in &events[..n] {
            let i = ev.data() as usize;
            let (Some(l), Some(sh)) = (listeners.get(i), shared.get(i)) else {
                continue;
            };
            // Until WouldBlock (this listener is drained) or another error (EMFILE, a
            // reset before accept): the next wakeup tries again.
            while let Ok((stream, _)) = l.accept() {
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                let s = Arc::clone(sh);
                match std::thread::Builder::new()
                    .name("bmc-fleet-conn".into())
                    .spawn(move || serve_connection(stream, &s))
                {
                    Ok(h) => workers.push(h),
                    Err(_) => break,
                }
            }
        }
        workers.retain(|h| !h.is_finished());
    }
    for h in workers {
        let _ = h.join();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running simulator. Stops (and joins its threads) on [`SimHandle::shutdown`] or drop.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    ca_path: PathBuf,
    fingerprint: String,
    _dir: tempfile::TempDir,
}

impl SimHandle {
    /// Binds 127.0.0.1 on a free port, makes a self-signed certificate for
    /// 127.0.0.1/localhost (its PEM is the CA to trust) and starts serving.
    pub fn start(cfg: SimConfig) -> io::Result<SimHandle> {
        Self::start_on(cfg, 0)
    }

    fn start_on(cfg: SimConfig, port: u16) -> io::Result<SimHandle> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let id = Identity::new(cfg.ca_flag_certificate)?;
        let tls = if cfg.tls {
            Some(id.server_config()?)
        } else {
            None
        };
        let shared = Shared::new(cfg, addr.port(), tls);
        let acc_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("bmc-sim-accept".into())
            .spawn(move || accept_loop(listener, acc_shared))?;
        Ok(SimHandle {
            shared,
            addr,
            accept: Some(accept),
            ca_path: id.ca_path,
            fingerprint: id.fingerprint,
            _dir: id.dir,
        })
    }

    /// `https://127.0.0.1:<port>` (or `http://` without TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    /// PEM of the simulator's self-signed certificate, to pass as the CA.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_path
    }

    /// Sessions currently open (created and neither deleted nor expired).
    pub fn open_sessions(&self) -> usize {
        let mut s = lock(&self.shared.sessions);
        purge_expired(&mut s);
        s.len()
    }

    /// Sessions ever created.
    pub fn sessions_created(&self) -> usize {
        self.shared.created.load(Ordering::SeqCst)
    }

    /// File parts received by the restore endpoint (accepted uploads only).
    pub fn restored(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.restored)
            .iter()
            .map(|r| r.file.clone())
            .collect()
    }

    /// Accepted restore uploads with what came with them.
    pub fn restores(&self) -> Vec<Restored> {
        lock(&self.shared.restored).clone()
    }

    /// How often the BackupRestoreService was read (each read builds a backup on iLO).
    pub fn backups_built(&self) -> usize {
        self.shared.built.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first (capped).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// SHA-256 fingerprint of the certificate it presents, as `sha256:<hex>`.
    pub fn cert_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    pub fn set_fault(&self, f: Fault) {
        let n = match f {
            Fault::TransientErrors(n) => n,
            _ => 0,
        };
        self.shared.transient_left.store(n, Ordering::SeqCst);
        *lock(&self.shared.fault) = f;
    }

    /// Answers so far in which the configured fault acted (an error, a delay, a cut, a
    /// bad body), so a test can tell a fault that fired from one that was never reached.
    pub fn faults_served(&self) -> usize {
        self.shared.faults_served.load(Ordering::SeqCst)
    }

    /// Complete requests received so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (one serves several requests: keep-alive).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops serving and joins all threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
        crate::fsutil::unregister_live_temp(self._dir.path());
    }
}

/// Runs a simulator on 127.0.0.1:`port` (0 = any) until SIGINT, SIGTERM or SIGHUP, after
/// printing its URL, CA path, state URL and user to stdout. For `vault bmc-simulator`.
/// On a signal it stops serving, removes its certificate directory and returns the signal.
/// (In the vault binary the process-wide handler of `cli::signals` takes the signal
/// first; it removes the directory through the `fsutil` registry before it exits.)
pub fn run_foreground(cfg: SimConfig, port: u16) -> io::Result<Signal> {
    run_foreground_to(cfg, port, &mut io::stdout())
}

/// [`run_foreground`] printing its banner to `out`.
pub fn run_foreground_to(cfg: SimConfig, port: u16, out: &mut dyn Write) -> io::Result<Signal> {
    // Block the stop signals before any thread starts (threads inherit the mask), so that
    // they are taken here by sigwait instead of killing the process with the temporary
    // certificate directory still on disk.
    let mut stop_signals = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stop_signals.add(sig);
    }
    stop_signals.thread_block().map_err(io::Error::from)?;
    let user = cfg.user.clone();
    let handle = SimHandle::start_on(cfg, port)?;
    writeln!(out, "BMC simulator listening on {}", handle.base_url())?;
    writeln!(out, "CA certificate: {}", handle.ca_cert_path().display())?;
    writeln!(out, "user: {user}")?;
    writeln!(out, "state: {}{STATE_URI}", handle.base_url())?;
    writeln!(
        out,
        "certificate fingerprint: {}",
        handle.cert_fingerprint()
    )?;
    out.flush()?;
    let signal = stop_signals.wait().map_err(io::Error::from)?;
    handle.shutdown();
    Ok(signal)
}

/// [`run_foreground_to`] for a fleet ([`SimFleet`]): writes its inventory to `inventory`
/// (atomically, 0600) and prints the banner once every BMC is listening.
pub fn run_fleet_foreground_to(
    cfgs: Vec<SimConfig>,
    inventory: &Path,
    out: &mut dyn Write,
) -> io::Result<Signal> {
    let mut stop_signals = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stop_signals.add(sig);
    }
    stop_signals.thread_block().map_err(io::Error::from)?;
    let fleet = SimFleet::start(cfgs)?;
    let mut text = Vec::new();
    fleet.write_inventory(&mut text)?;
    crate::fsutil::write_atomic(inventory, &text, 0o600)?;
    writeln!(
        out,
        "BMC simulator fleet: {} BMCs on 127.0.0.1 (the first on port {}, the last on {}; every port is in the inventory)",
        fleet.len(),
        fleet.shared.first().map_or(0, |s| s.port),
        fleet.shared.last().map_or(0, |s| s.port)
    )?;
    writeln!(out, "CA certificate: {}", fleet.ca_cert_path().display())?;
    writeln!(out, "inventory: {}", inventory.display())?;
    out.flush()?;
    let signal = stop_signals.wait().map_err(io::Error::from)?;
    fleet.shutdown();
    Ok(signal)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // e.g. EMFILE: back off instead of spinning.
            sleep_unless_stopped(&shared, Duration::from_millis(50));
            continue;
        };
        workers.retain(|h| !h.is_finished());
        let s = Arc::clone(&shared);
        if let Ok(h) = std::thread::Builder::new()
            .name("bmc-sim-conn".into())
            .spawn(move || serve_connection(stream, &s))
        {
            workers.push(h);
        }
    }
    for h in workers {
        let _ = h.join();
    }
}

/// Sleeps `d` in small steps; returns false if the simulator is stopping.
fn sleep_unless_stopped(shared: &Shared, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        // One sleep for a latency up to POLL: a wakeup per step is the simulator's CPU.
        std::thread::sleep((end - now).min(POLL));
    }
}

enum ConnIo {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

/// One client connection, plus what the answer to its request was (for the log) and
/// whether the request was a HEAD (headers only).
struct Conn {
    io: ConnIo,
    status: u16,
    head_only: bool,
    /// The answer being written says `Connection: keep-alive` (else `close`).
    keep_alive: bool,
    /// The answer was written completely (by [`respond`]): the connection can serve
    /// another request.
    complete: bool,
    /// The request's log entry, logged when its answer's status line is written (before
    /// the client can see the answer, so a client never sees an answer not yet logged).
    pending: Option<LoggedRequest>,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
}

impl Conn {
    fn log_pending(&mut self, status: u16) {
        if let Some(mut entry) = self.pending.take() {
            entry.status = status;
            let mut log = lock(&self.log);
            if log.len() < MAX_LOGGED_REQUESTS {
                log.push(entry);
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.io {
            ConnIo::Plain(s) => s.read(buf),
            ConnIo::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.io {
            ConnIo::Plain(s) => s.write(buf),
            ConnIo::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.io {
            ConnIo::Plain(s) => s.flush(),
            ConnIo::Tls(s) => s.flush(),
        }
    }
}

impl Conn {
    /// Ends the connection: TLS close_notify (unless `abrupt`), then a TCP shutdown.
    fn close(mut self, abrupt: bool) {
        if let ConnIo::Tls(s) = &mut self.io
            && !abrupt
        {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let sock = match &self.io {
            ConnIo::Plain(s) => s,
            ConnIo::Tls(s) => &s.sock,
        };
        let _ = sock.shutdown(Shutdown::Both);
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    if stream.set_read_timeout(Some(POLL)).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let io = match &shared.tls {
        Some(cfg) => match ServerConnection::new(Arc::clone(cfg)) {
            Ok(c) => ConnIo::Tls(Box::new(StreamOwned::new(c, stream))),
            Err(_) => return,
        },
        None => ConnIo::Plain(stream),
    };
    let mut conn = Conn {
        io,
        status: 0,
        head_only: false,
        keep_alive: false,
        complete: false,
        pending: None,
        log: Arc::clone(&shared.log),
    };
    for served in 1..=MAX_REQUESTS_PER_CONNECTION {
        conn.keep_alive = false;
        conn.complete = false;
        let req = match read_request(&mut conn, shared) {
            Ok(Some(r)) => r,
            // The peer went away (or stayed idle) between requests, or never sent one.
            Ok(None) => return conn.close(true),
            Err((status, msg)) => {
                let _ = respond_json(&mut conn, status, &[], &ilo_error(msg));
                return conn.close(false);
            }
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        conn.head_only = req.method == "HEAD";
        conn.keep_alive = served < MAX_REQUESTS_PER_CONNECTION && wants_keep_alive(&req);
        if !shared.cfg.latency.is_zero() && !sleep_unless_stopped(shared, shared.cfg.latency) {
            return conn.close(true);
        }
        conn.pending = Some(log_entry(&req));
        let abrupt = handle(&mut conn, &req, shared).unwrap_or(true);
        // No answer was written (a cut connection): logged with status 0.
        conn.log_pending(0);
        if abrupt || !conn.keep_alive || !conn.complete {
            return conn.close(abrupt);
        }
    }
}

/// Whether the client lets the connection stay open after this request: HTTP/1.1
/// without `Connection: close` (HTTP/1.0 clients get one answer per connection).
fn wants_keep_alive(req: &Request) -> bool {
    req.version == "HTTP/1.1"
        && !req
            .header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

fn log_entry(req: &Request) -> LoggedRequest {
    let content_type = req.header("content-type").map(str::to_string);
    let form_fields = content_type
        .as_deref()
        .and_then(multipart_boundary)
        .and_then(|b| {
            parse_multipart(&req.body, &b).map(|parts| parts.into_iter().map(|p| p.name).collect())
        })
        .unwrap_or_default();
    LoggedRequest {
        method: req.method.clone(),
        target: req.target.clone(),
        status: 0,
        headers: req.headers.iter().map(|(n, _)| n.clone()).collect(),
        content_type,
        form_fields,
    }
}

struct Request {
    method: String,
    target: String,
    version: String,
    /// Lower-cased path without query and trailing slashes: iLO routes case- and
    /// slash-insensitively.
    route: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type HttpErr = (u16, &'static str);

/// Reads until stop, deadline or data; maps socket timeouts to polling.
fn read_some(
    conn: &mut Conn,
    buf: &mut [u8],
    shared: &Shared,
    deadline: Instant,
) -> io::Result<usize> {
    loop {
        match conn.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shared.stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    return Err(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// A strict HTTP/1.1 request parser: bounded header block, `Content-Length` bodies only.
/// `Ok(None)` means the peer went away (or failed the TLS handshake) before a request.
fn read_request(conn: &mut Conn, shared: &Shared) -> Result<Option<Request>, HttpErr> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let Some((mut buf, head_end)) = read_head(conn, shared, deadline)? else {
        return Ok(None);
    };
    let bad = (400, "Base.1.12.MalformedJSON");
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad)?;
    let mut req = parse_head(head)?;
    let len = content_length(&req)?;
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .and_then(|_| conn.flush());
    }
    let body = buf.split_off(head_end + 4);
    if body.len() > len {
        // Pipelining is not supported: the next request may be sent once this one is
        // answered.
        return Err(bad);
    }
    let Some(body) = read_body(conn, shared, deadline, body, len) else {
        return Ok(None);
    };
    req.body = body;
    Ok(Some(req))
}

/// Reads up to the end of the header block (bounded): what was read and where the block
/// ends, or `None` if the peer went away first.
fn read_head(
    conn: &mut Conn,
    shared: &Shared,
    deadline: Instant,
) -> Result<Option<(Vec<u8>, usize)>, HttpErr> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEADER_BYTES {
            return Err((431, "Base.1.12.GeneralError"));
        }
        match read_some(conn, &mut chunk, shared, deadline) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    if head_end > MAX_HEADER_BYTES {
        return Err((431, "Base.1.12.GeneralError"));
    }
    Ok(Some((buf, head_end)))
}

/// The request line and the headers (names lower-cased), strictly.
fn parse_head(head: &str) -> Result<Request, HttpErr> {
    let bad = (400, "Base.1.12.MalformedJSON");
    let mut lines = head.split("\r\n");
    let request_line = lines.next().ok_or(bad)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Err(bad);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err((505, "Base.1.12.GeneralError"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err((431, "Base.1.12.GeneralError"));
        }
        let (name, value) = line.split_once(':').ok_or(bad)?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
        {
            return Err(bad);
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        route: route_of(target),
        headers,
        body: Vec::new(),
    })
}

/// The body length the request declares: one `Content-Length` of digits (none: 0), at
/// most [`MAX_BODY_BYTES`]; chunked bodies are not supported.
fn content_length(req: &Request) -> Result<usize, HttpErr> {
    let bad = (400, "Base.1.12.MalformedJSON");
    if req.header("transfer-encoding").is_some() {
        return Err((501, "Base.1.12.GeneralError"));
    }
    let lengths: Vec<&str> = req
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let len: u64 = match lengths.as_slice() {
        [] => 0,
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => {
            one.parse().map_err(|_| bad)?
        }
        _ => return Err(bad),
    };
    if len > MAX_BODY_BYTES {
        return Err((413, "Base.1.12.GeneralError"));
    }
    usize::try_from(len).map_err(|_| bad)
}

/// Reads the rest of a body of `len` bytes after the `body` read with the head; `None`
/// if the peer went away first.
fn read_body(
    conn: &mut Conn,
    shared: &Shared,
    deadline: Instant,
    mut body: Vec<u8>,
    len: usize,
) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    body.reserve(len - body.len());
    while body.len() < len {
        let want = chunk.len().min(len - body.len());
        match read_some(conn, &mut chunk[..want], shared, deadline) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(body)
}

fn route_of(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_ascii_lowercase()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ilo_error(message_id: &str) -> Value {
    json!({"error": {
        "code": "iLO.0.10.ExtendedInfo",
        "message": "See @Message.ExtendedInfo for more information.",
        "@Message.ExtendedInfo": [{"MessageId": message_id}]
    }})
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn write_head(conn: &mut Conn, status: u16, headers: &[(&str, String)]) -> io::Result<()> {
    let head = head_of(conn, status, headers);
    conn.write_all(head.as_bytes())
}

/// The status line and header block of an answer (logged as sent: see `Conn::pending`).
fn head_of(conn: &mut Conn, status: u16, headers: &[(&str, String)]) -> String {
    conn.status = status;
    conn.log_pending(status);
    // Redfish answers are never to be cached (DSP0266 asks for Cache-Control on GET).
    let connection = if conn.keep_alive {
        "keep-alive"
    } else {
        "close"
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: HPE-iLO-Server/1.30 (vault simulator)\r\nConnection: {connection}\r\nCache-Control: no-cache\r\n",
        reason(status)
    );
    for (n, v) in headers {
        head.push_str(n);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Writes a complete answer; to a HEAD request only the header block, with the
/// `Content-Length` the GET would have.
fn respond(
    conn: &mut Conn,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut all: Vec<(&str, String)> = headers.to_vec();
    all.push(("Content-Length", body.len().to_string()));
    // Head and body of a small answer in one write, as a server that buffers its output
    // sends it (one TLS record and one segment for the client to receive, not two); a
    // large body is written from where it is, not copied.
    let mut out = head_of(conn, status, &all).into_bytes();
    if !conn.head_only && body.len() <= COALESCED_BODY_BYTES {
        out.extend_from_slice(body);
        conn.write_all(&out)?;
    } else {
        conn.write_all(&out)?;
        if !conn.head_only {
            conn.write_all(body)?;
        }
    }
    conn.flush()?;
    conn.complete = true;
    Ok(())
}

/// The header block of an answer that will not be completed as declared (a fault cuts,
/// dribbles or never ends it): `Connection: close`, and the connection ends after it.
fn write_head_then_close(
    conn: &mut Conn,
    status: u16,
    headers: &[(&str, String)],
) -> io::Result<()> {
    conn.keep_alive = false;
    write_head(conn, status, headers)
}

fn respond_json(
    conn: &mut Conn,
    status: u16,
    headers: &[(&str, String)],
    v: &Value,
) -> io::Result<()> {
    let mut all: Vec<(&str, String)> = headers.to_vec();
    all.push(("Content-Type", "application/json; charset=utf-8".into()));
    all.push(("OData-Version", "4.0".into()));
    if (200..300).contains(&status)
        && let Some(link) = v
            .get("@odata.type")
            .and_then(Value::as_str)
            .and_then(schema_link)
    {
        all.push(("Link", link));
    }
    let body = v.to_string();
    if (200..300).contains(&status) && v.get("@odata.id").is_some() {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(body.as_bytes());
        all.push(("ETag", format!("W/\"{}\"", hex::encode(&digest[..4]))));
    }
    respond(conn, status, &all, body.as_bytes())
}

/// `Link: <schema>; rel=describedby` for a DMTF `@odata.type` (`#Manager.v1_5_1.Manager`
/// → `Manager.v1_5_1.json`, `#ManagerCollection.ManagerCollection` → unversioned).
/// HPE OEM types get none: their schemas are not published by DMTF.
fn schema_link(odata_type: &str) -> Option<String> {
    let t = odata_type.strip_prefix('#')?;
    if t.starts_with("Hpe") {
        return None;
    }
    let name = match t.split('.').collect::<Vec<_>>().as_slice() {
        [ns, ver, _] => format!("{ns}.{ver}"),
        [ns, _] => (*ns).to_string(),
        _ => return None,
    };
    Some(format!(
        "<http://redfish.dmtf.org/schemas/v1/{name}.json>; rel=describedby"
    ))
}

fn no_session(conn: &mut Conn) -> io::Result<()> {
    respond_json(
        conn,
        401,
        &[("WWW-Authenticate", "Basic realm=\"iLO\"".into())],
        &ilo_error("Base.1.12.NoValidSession"),
    )
}

fn unavailable(conn: &mut Conn) -> io::Result<()> {
    respond_json(
        conn,
        503,
        &[],
        &ilo_error("Base.1.12.ServiceTemporarilyUnavailable"),
    )
}

fn purge_expired(sessions: &mut HashMap<String, SimSession>) {
    sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE_TIMEOUT);
}

/// Whether `token` is a live session (and marks it used).
fn live_token(shared: &Shared, token: &str) -> bool {
    let mut sessions = lock(&shared.sessions);
    purge_expired(&mut sessions);
    match sessions.get_mut(token) {
        Some(s) => {
            s.last_used = Instant::now();
            true
        }
        None => false,
    }
}

/// Whether the request carries a live session token or valid Basic credentials.
fn authenticated(req: &Request, shared: &Shared) -> bool {
    if let Some(token) = req.header("x-auth-token") {
        return live_token(shared, token);
    }
    if let Some(auth) = req.header("authorization")
        && let Some(b64) = auth.strip_prefix("Basic ")
        && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim())
        && let Ok(raw) = String::from_utf8(raw)
        && let Some((u, p)) = raw.split_once(':')
    {
        return u == shared.cfg.user && p == shared.cfg.password;
    }
    false
}

/// Consumes one transient failure if any are left.
fn take_transient(shared: &Shared) -> bool {
    let taken = shared
        .transient_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if taken {
        fault_fired(shared);
    }
    taken
}

fn fault_fired(shared: &Shared) {
    shared.faults_served.fetch_add(1, Ordering::SeqCst);
}

fn current_fault(shared: &Shared) -> Fault {
    lock(&shared.fault).clone()
}

/// The resources of the simulated iLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    /// `/redfish`: the protocol version document.
    Versions,
    Root,
    /// `/redfish/v1/odata`: the OData service document.
    OData,
    /// `/redfish/v1/$metadata`: the OData (CSDL) metadata document.
    Metadata,
    State,
    SessionService,
    Sessions,
    /// `<Sessions>/Members`: POST here also logs in (DSP0266).
    SessionsMembers,
    Session(&'a str),
    AccountService,
    Accounts,
    Account,
    Roles,
    Role(&'a str),
    JsonSchemas,
    Registries,
    Managers,
    FailingManager(u16),
    Manager,
    Systems,
    System,
    BackupService,
    BackupFile(&'a str),
    Upload,
    NotFound,
}

const ROLES: [&str; 3] = ["Administrator", "Operator", "ReadOnly"];

fn route<'a>(r: &'a str, cfg: &SimConfig) -> Route<'a> {
    if let Some(sessions) = cfg.sessions_uri.as_deref().map(route_of) {
        if r == sessions {
            return Route::Sessions;
        }
        if let Some(id) = r
            .strip_prefix(sessions.as_str())
            .and_then(|x| x.strip_prefix('/'))
        {
            return if id == "members" {
                Route::SessionsMembers
            } else if !id.is_empty() && !id.contains('/') {
                Route::Session(id)
            } else {
                Route::NotFound
            };
        }
    }
    if let Some(name) = r.strip_prefix("/bkupdata/") {
        return Route::BackupFile(name);
    }
    if let Some(role) = r.strip_prefix("/redfish/v1/accountservice/roles/") {
        return match ROLES.iter().find(|x| x.eq_ignore_ascii_case(role)) {
            Some(x) => Route::Role(x),
            None => Route::NotFound,
        };
    }
    match r {
        "/redfish" => Route::Versions,
        "/redfish/v1" => Route::Root,
        "/redfish/v1/odata" => Route::OData,
        "/redfish/v1/$metadata" => Route::Metadata,
        "/vault-simulator/state" => Route::State,
        "/redfish/v1/sessionservice" if cfg.sessions_uri.is_some() => Route::SessionService,
        "/redfish/v1/accountservice" => Route::AccountService,
        "/redfish/v1/accountservice/accounts" => Route::Accounts,
        "/redfish/v1/accountservice/accounts/1" => Route::Account,
        "/redfish/v1/accountservice/roles" => Route::Roles,
        "/redfish/v1/jsonschemas" => Route::JsonSchemas,
        "/redfish/v1/registries" => Route::Registries,
        "/redfish/v1/managers" => Route::Managers,
        "/redfish/v1/managers/0" => match cfg.failing_first_manager {
            Some(status) => Route::FailingManager(status),
            None => Route::NotFound,
        },
        "/redfish/v1/managers/1" => Route::Manager,
        "/redfish/v1/systems" => Route::Systems,
        "/redfish/v1/systems/1" => Route::System,
        "/redfish/v1/managers/1/backuprestoreservice" => Route::BackupService,
        "/cgi-bin/uploadrestorefile" => Route::Upload,
        _ => Route::NotFound,
    }
}

/// The methods a resource supports, for `Allow` and 405.
fn allowed(r: Route<'_>, cfg: &SimConfig) -> &'static str {
    match r {
        Route::Sessions => "GET, HEAD, POST",
        Route::SessionsMembers | Route::Upload => "POST",
        Route::Session(_) => "GET, HEAD, DELETE",
        Route::BackupFile(_) if cfg.get_download => "GET, HEAD, POST",
        Route::BackupFile(_) => "POST",
        _ => "GET, HEAD",
    }
}

/// Whether the resource needs credentials for `method`. The restore and the POST
/// download check the `sessionKey` form field themselves, like iLO.
fn needs_auth(r: Route<'_>, method: &str) -> bool {
    match r {
        Route::Versions | Route::Root | Route::OData | Route::Metadata | Route::State => false,
        Route::Sessions | Route::SessionsMembers => method != "POST",
        Route::BackupFile(_) | Route::Upload => method != "POST",
        _ => true,
    }
}

/// Answers one request. Returns whether the connection must be cut without a clean
/// TLS close (for the "cut" faults).
fn handle(conn: &mut Conn, req: &Request, shared: &Shared) -> io::Result<bool> {
    let Some((r, allow)) = admit(conn, req, shared)? else {
        return Ok(false);
    };
    let m = req.method.as_str();
    let allow_h = [("Allow", allow.to_string())];
    if let Some(v) = resource(m, r, shared) {
        return respond_json(conn, 200, &allow_h, &v).map(|_| false);
    }
    let missing = |conn: &mut Conn| {
        respond_json(conn, 404, &[], &ilo_error("Base.1.12.ResourceMissingAtURI"))
    };
    match (m, r) {
        (_, Route::Metadata) => respond(
            conn,
            200,
            &[
                ("Allow", allow.into()),
                ("Content-Type", "application/xml; charset=utf-8".into()),
                ("OData-Version", "4.0".into()),
            ],
            METADATA.as_bytes(),
        ),
        ("POST", Route::Sessions | Route::SessionsMembers) => login(conn, req, shared),
        ("DELETE", Route::Session(id)) => {
            let mut sessions = lock(&shared.sessions);
            let before = sessions.len();
            sessions.retain(|_, s| !s.id.eq_ignore_ascii_case(id));
            let removed = before != sessions.len();
            drop(sessions);
            if removed {
                respond_json(
                    conn,
                    200,
                    &[],
                    &json!({"error": {"code": "iLO.0.10.ExtendedInfo", "message": "See @Message.ExtendedInfo for more information.", "@Message.ExtendedInfo": [{"MessageId": "Base.1.12.Success"}]}}),
                )
            } else {
                missing(conn)
            }
        }
        (_, Route::Session(id)) => {
            let sessions = lock(&shared.sessions);
            let found = sessions
                .values()
                .find(|s| s.id.eq_ignore_ascii_case(id))
                .map(|s| session_resource(&shared.cfg, &s.id, &s.user));
            drop(sessions);
            match found {
                Some(v) => respond_json(conn, 200, &allow_h, &v),
                None => missing(conn),
            }
        }
        (_, Route::FailingManager(status)) => {
            respond_json(conn, status, &[], &ilo_error("Base.1.12.InternalError"))
        }
        (_, Route::BackupService) => backup_service(conn, shared),
        ("POST", Route::BackupFile(name)) => backup_file_post(conn, req, shared, name),
        (_, Route::BackupFile(name)) => backup_file(conn, req, shared, name),
        (_, Route::Upload) => upload(conn, req, shared),
        _ => missing(conn),
    }
    .map(|_| false)
}

/// The checks every request passes before its route runs, answered the way iLO answers
/// them: an unsupported OData version (412), an unknown URI (404), a method the
/// resource does not allow (405, with `Allow`), a missing session (401). `None`: the
/// answer was sent.
fn admit<'r>(
    conn: &mut Conn,
    req: &'r Request,
    shared: &Shared,
) -> io::Result<Option<(Route<'r>, &'static str)>> {
    let cfg = &shared.cfg;
    // DSP0266: a request for an OData version the service does not support gets 412.
    if let Some(v) = req.header("odata-version")
        && v.trim() != "4.0"
    {
        respond_json(conn, 412, &[], &ilo_error("Base.1.12.HeaderInvalid"))?;
        return Ok(None);
    }
    let r = route(&req.route, cfg);
    if r == Route::NotFound {
        respond_json(conn, 404, &[], &ilo_error("Base.1.12.ResourceMissingAtURI"))?;
        return Ok(None);
    }
    let allow = allowed(r, cfg);
    let m = req.method.as_str();
    if !allow.split(", ").any(|a| a == m) {
        respond_json(
            conn,
            405,
            &[("Allow", allow.into())],
            &ilo_error("Base.1.12.OperationNotAllowed"),
        )?;
        return Ok(None);
    }
    if needs_auth(r, m) && !authenticated(req, shared) {
        no_session(conn)?;
        return Ok(None);
    }
    Ok(Some((r, allow)))
}

/// The JSON document at `r` when it is one the service serves as it is (`None`: the
/// route does more than that, or `m` is a POST that logs in).
fn resource(m: &str, r: Route<'_>, shared: &Shared) -> Option<Value> {
    let cfg = &shared.cfg;
    Some(match r {
        Route::Versions => json!({"v1": "/redfish/v1/"}),
        Route::Root => service_root(cfg),
        Route::OData => odata_service(cfg),
        Route::State => state(shared),
        Route::SessionService => session_service(cfg),
        Route::Sessions if m != "POST" => sessions(shared),
        Route::AccountService => account_service(),
        Route::Accounts => collection(
            "/redfish/v1/AccountService/Accounts/",
            "#ManagerAccountCollection.ManagerAccountCollection",
            "Accounts",
            &["/redfish/v1/AccountService/Accounts/1/"],
        ),
        Route::Account => account(cfg),
        Route::Roles => roles(),
        Route::Role(name) => role(name),
        Route::JsonSchemas => collection(
            "/redfish/v1/JsonSchemas/",
            "#JsonSchemaFileCollection.JsonSchemaFileCollection",
            "JSON Schemas",
            &[],
        ),
        Route::Registries => collection(
            "/redfish/v1/Registries/",
            "#MessageRegistryFileCollection.MessageRegistryFileCollection",
            "Registries",
            &[],
        ),
        Route::Managers => managers(cfg),
        Route::Manager => manager(cfg),
        Route::Systems => collection(
            "/redfish/v1/Systems/",
            "#ComputerSystemCollection.ComputerSystemCollection",
            "Computer Systems",
            &["/redfish/v1/Systems/1/"],
        ),
        Route::System => system(cfg),
        _ => return None,
    })
}

/// The session collection: every live session.
fn sessions(shared: &Shared) -> Value {
    let cfg = &shared.cfg;
    let sessions = lock(&shared.sessions);
    let members: Vec<Value> = sessions
        .values()
        .map(|s| json!({"@odata.id": session_uri(cfg, &s.id)}))
        .collect();
    drop(sessions);
    let mut v = collection(
        cfg.sessions_uri.as_deref().unwrap_or(SESSIONS_URI),
        "#SessionCollection.SessionCollection",
        "Sessions",
        &[],
    );
    v["Members@odata.count"] = json!(members.len());
    v["Members"] = Value::Array(members);
    v
}

fn roles() -> Value {
    let members: Vec<String> = ROLES
        .iter()
        .map(|r| format!("/redfish/v1/AccountService/Roles/{r}/"))
        .collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    collection(
        "/redfish/v1/AccountService/Roles/",
        "#RoleCollection.RoleCollection",
        "Roles",
        &refs,
    )
}

/// The manager collection (with the failing Manager 0 first when configured).
fn managers(cfg: &SimConfig) -> Value {
    let mut members = vec!["/redfish/v1/Managers/1/"];
    if cfg.failing_first_manager.is_some() {
        members.insert(0, "/redfish/v1/Managers/0/");
    }
    collection(
        "/redfish/v1/Managers/",
        "#ManagerCollection.ManagerCollection",
        "Managers",
        &members,
    )
}

fn system(cfg: &SimConfig) -> Value {
    json!({
        "@odata.context": "/redfish/v1/$metadata#ComputerSystem.ComputerSystem",
        "@odata.id": "/redfish/v1/Systems/1/",
        "@odata.type": "#ComputerSystem.v1_17_0.ComputerSystem",
        "Id": "1",
        "Name": "Computer System",
        "Manufacturer": "HPE",
        "Model": "ProLiant DL380 Gen11",
        "SerialNumber": cfg.serial,
        "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/1/"}]}
    })
}

fn session_uri(cfg: &SimConfig, id: &str) -> String {
    let base = cfg.sessions_uri.as_deref().unwrap_or(SESSIONS_URI);
    format!("{}/{id}/", base.trim_end_matches('/'))
}

fn service_root(cfg: &SimConfig) -> Value {
    let generation = cfg.model.trim();
    let version = cfg
        .firmware
        .rsplit(' ')
        .next()
        .unwrap_or("1.59")
        .trim_start_matches('v');
    let mut root = json!({
        "@odata.context": "/redfish/v1/$metadata#ServiceRoot.ServiceRoot",
        "@odata.id": "/redfish/v1/",
        "@odata.type": "#ServiceRoot.v1_13_0.ServiceRoot",
        "Id": "RootService",
        "Name": "HPE RESTful Root Service",
        "Product": "ProLiant DL380 Gen11",
        "RedfishVersion": "1.13.0",
        "UUID": "a8e1d6b4-1c2f-5b3a-9d7e-6f0c4b2a1e93",
        "Vendor": "HPE",
        "AccountService": {"@odata.id": "/redfish/v1/AccountService/"},
        "JsonSchemas": {"@odata.id": "/redfish/v1/JsonSchemas/"},
        "Managers": {"@odata.id": "/redfish/v1/Managers/"},
        "Registries": {"@odata.id": "/redfish/v1/Registries/"},
        "Systems": {"@odata.id": "/redfish/v1/Systems/"},
        "Oem": {"Hpe": {
            "Manager": [{
                "ManagerType": generation,
                "ManagerFirmwareVersion": version,
                "HostName": "ILO-SIMULATOR",
                "Languages": [{"Language": "en", "TranslationName": "English", "Version": version}]
            }],
            "Moniker": {"PRODGEN": generation, "PRODNAM": "Integrated Lights-Out", "PRODTAG": "iLO"},
            "Sessions": {"LoginHint": {"Hint": "POST to /Sessions to login"}}
        }}
    });
    if let Some(sessions) = &cfg.sessions_uri {
        root["SessionService"] = json!({"@odata.id": "/redfish/v1/SessionService/"});
        root["Links"] = json!({"Sessions": {"@odata.id": sessions}});
    }
    root
}

fn odata_service(cfg: &SimConfig) -> Value {
    let mut value = vec![
        json!({"name": "Service", "kind": "Singleton", "url": "/redfish/v1/"}),
        json!({"name": "AccountService", "kind": "Singleton", "url": "/redfish/v1/AccountService/"}),
        json!({"name": "JsonSchemas", "kind": "Singleton", "url": "/redfish/v1/JsonSchemas/"}),
        json!({"name": "Managers", "kind": "Singleton", "url": "/redfish/v1/Managers/"}),
        json!({"name": "Registries", "kind": "Singleton", "url": "/redfish/v1/Registries/"}),
        json!({"name": "Systems", "kind": "Singleton", "url": "/redfish/v1/Systems/"}),
    ];
    if let Some(s) = &cfg.sessions_uri {
        value.push(json!({"name": "SessionService", "kind": "Singleton", "url": "/redfish/v1/SessionService/"}));
        value.push(json!({"name": "Sessions", "kind": "Singleton", "url": s}));
    }
    json!({"@odata.context": "/redfish/v1/$metadata", "value": value})
}

/// The OData metadata document: the entity container and the DMTF schemas the
/// resources use (by reference; the simulator serves no schema files itself).
const METADATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ServiceRoot_v1.xml">
    <edmx:Include Namespace="ServiceRoot"/>
    <edmx:Include Namespace="ServiceRoot.v1_13_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/SessionService_v1.xml">
    <edmx:Include Namespace="SessionService"/>
    <edmx:Include Namespace="SessionService.v1_1_8"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/SessionCollection_v1.xml">
    <edmx:Include Namespace="SessionCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Session_v1.xml">
    <edmx:Include Namespace="Session"/>
    <edmx:Include Namespace="Session.v1_0_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/AccountService_v1.xml">
    <edmx:Include Namespace="AccountService"/>
    <edmx:Include Namespace="AccountService.v1_5_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ManagerAccountCollection_v1.xml">
    <edmx:Include Namespace="ManagerAccountCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ManagerAccount_v1.xml">
    <edmx:Include Namespace="ManagerAccount"/>
    <edmx:Include Namespace="ManagerAccount.v1_3_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/RoleCollection_v1.xml">
    <edmx:Include Namespace="RoleCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Role_v1.xml">
    <edmx:Include Namespace="Role"/>
    <edmx:Include Namespace="Role.v1_2_1"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ManagerCollection_v1.xml">
    <edmx:Include Namespace="ManagerCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Manager_v1.xml">
    <edmx:Include Namespace="Manager"/>
    <edmx:Include Namespace="Manager.v1_5_1"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ComputerSystemCollection_v1.xml">
    <edmx:Include Namespace="ComputerSystemCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ComputerSystem_v1.xml">
    <edmx:Include Namespace="ComputerSystem"/>
    <edmx:Include Namespace="ComputerSystem.v1_17_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/JsonSchemaFileCollection_v1.xml">
    <edmx:Include Namespace="JsonSchemaFileCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/MessageRegistryFileCollection_v1.xml">
    <edmx:Include Namespace="MessageRegistryFileCollection"/>
  </edmx:Reference>
  <edmx:DataServices>
    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">
      <EntityContainer Name="Service" Extends="ServiceRoot.v1_13_0.ServiceContainer"/>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"#;

fn state(shared: &Shared) -> Value {
    let open = {
        let mut s = lock(&shared.sessions);
        purge_expired(&mut s);
        s.len()
    };
    let restores: Vec<Value> = lock(&shared.restored)
        .iter()
        .map(|r| {
            use sha2::Digest as _;
            json!({
                "bytes": r.file.len(),
                "sha256": hex::encode(sha2::Sha256::digest(&r.file)),
                "withPassword": r.with_password,
            })
        })
        .collect();
    json!({
        "openSessions": open,
        "sessionsCreated": shared.created.load(Ordering::SeqCst),
        "backupsBuilt": shared.built.load(Ordering::SeqCst),
        "restores": restores,
        "requests": *lock(&shared.log),
    })
}

fn collection(id: &str, odata_type: &str, name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| json!({"@odata.id": m})).collect();
    let short = odata_type.trim_start_matches('#');
    let short = short.split('.').next().unwrap_or(short);
    json!({
        "@odata.context": format!("/redfish/v1/$metadata#{short}.{short}"),
        "@odata.id": id,
        "@odata.type": odata_type,
        "Name": name,
        "Members@odata.count": members.len(),
        "Members": members
    })
}

fn session_service(cfg: &SimConfig) -> Value {
    json!({
        "@odata.context": "/redfish/v1/$metadata#SessionService.SessionService",
        "@odata.id": "/redfish/v1/SessionService/",
        "@odata.type": "#SessionService.v1_1_8.SessionService",
        "Id": "SessionService",
        "Name": "Session Service",
        "ServiceEnabled": true,
        "SessionTimeout": SESSION_IDLE_TIMEOUT.as_secs(),
        "Sessions": {"@odata.id": cfg.sessions_uri.as_deref().unwrap_or(SESSIONS_URI)}
    })
}

fn account_service() -> Value {
    json!({
        "@odata.context": "/redfish/v1/$metadata#AccountService.AccountService",
        "@odata.id": "/redfish/v1/AccountService/",
        "@odata.type": "#AccountService.v1_5_0.AccountService",
        "Id": "AccountService",
        "Name": "Account Service",
        "ServiceEnabled": true,
        "MinPasswordLength": 8,
        "Accounts": {"@odata.id": "/redfish/v1/AccountService/Accounts/"},
        "Roles": {"@odata.id": "/redfish/v1/AccountService/Roles/"}
    })
}

fn account(cfg: &SimConfig) -> Value {
    json!({
        "@odata.context": "/redfish/v1/$metadata#ManagerAccount.ManagerAccount",
        "@odata.id": "/redfish/v1/AccountService/Accounts/1/",
        "@odata.type": "#ManagerAccount.v1_3_0.ManagerAccount",
        "Id": "1",
        "Name": "User Account",
        "UserName": cfg.user,
        "RoleId": "Administrator",
        "Enabled": true,
        "Locked": false,
        "Password": null,
        "Links": {"Role": {"@odata.id": "/redfish/v1/AccountService/Roles/Administrator/"}}
    })
}

fn role(name: &str) -> Value {
    let privileges: &[&str] = match name {
        "Administrator" => &[
            "Login",
            "ConfigureManager",
            "ConfigureUsers",
            "ConfigureSelf",
            "ConfigureComponents",
        ],
        "Operator" => &["Login", "ConfigureSelf", "ConfigureComponents"],
        _ => &["Login", "ConfigureSelf"],
    };
    json!({
        "@odata.context": "/redfish/v1/$metadata#Role.Role",
        "@odata.id": format!("/redfish/v1/AccountService/Roles/{name}/"),
        "@odata.type": "#Role.v1_2_1.Role",
        "Id": name,
        "Name": format!("{name} Role"),
        "RoleId": name,
        "IsPredefined": true,
        "AssignedPrivileges": privileges
    })
}

fn manager(cfg: &SimConfig) -> Value {
    json!({
        "@odata.context": "/redfish/v1/$metadata#Manager.Manager",
        "@odata.id": "/redfish/v1/Managers/1/",
        "@odata.type": "#Manager.v1_5_1.Manager",
        "Id": "1",
        "Name": "Manager",
        "ManagerType": "BMC",
        "Model": cfg.model,
        "FirmwareVersion": cfg.firmware,
        "Oem": {"Hpe": {"Links": {
            "BackupRestoreService": {"@odata.id": "/redfish/v1/Managers/1/BackupRestoreService/"}
        }}}
    })
}

fn session_resource(cfg: &SimConfig, id: &str, user: &str) -> Value {
    json!({
        "@odata.context": "/redfish/v1/$metadata#Session.Session",
        "@odata.id": session_uri(cfg, id),
        "@odata.type": "#Session.v1_0_0.Session",
        "Description": "Manager User Session",
        "Id": id,
        "Name": "User Session",
        "UserName": user
    })
}

fn login(conn: &mut Conn, req: &Request, shared: &Shared) -> io::Result<()> {
    if take_transient(shared) {
        return unavailable(conn);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return respond_json(conn, 400, &[], &ilo_error("Base.1.12.MalformedJSON"));
    };
    let user = body.get("UserName").and_then(Value::as_str);
    let password = body.get("Password").and_then(Value::as_str);
    let (Some(user), Some(password)) = (user, password) else {
        return respond_json(conn, 400, &[], &ilo_error("Base.1.12.PropertyMissing"));
    };
    if user != shared.cfg.user || password != shared.cfg.password {
        return no_session(conn);
    }
    let refused = shared
        .refusals_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mut sessions = lock(&shared.sessions);
    purge_expired(&mut sessions);
    if refused || sessions.len() >= shared.cfg.session_limit {
        drop(sessions);
        return respond_json(conn, 503, &[], &ilo_error("Base.1.12.SessionLimitExceeded"));
    }
    let safe_user: String = user
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    let id = format!("{safe_user}{}", hex::encode(rand::random::<[u8; 8]>()));
    let token = hex::encode(rand::random::<[u8; 16]>());
    sessions.insert(
        token.clone(),
        SimSession {
            id: id.clone(),
            user: user.to_string(),
            last_used: Instant::now(),
        },
    );
    drop(sessions);
    shared.created.fetch_add(1, Ordering::SeqCst);
    let path = session_uri(&shared.cfg, &id);
    let location = if shared.cfg.absolute_location {
        // Like iLO: the default port is left out of the URL.
        let (scheme, default_port) = if shared.tls.is_some() {
            ("https", 443)
        } else {
            ("http", 80)
        };
        if shared.port == default_port {
            format!("{scheme}://127.0.0.1{path}")
        } else {
            format!("{scheme}://127.0.0.1:{}{path}", shared.port)
        }
    } else {
        path
    };
    respond_json(
        conn,
        201,
        &[("X-Auth-Token", token), ("Location", location)],
        &session_resource(&shared.cfg, &id, user),
    )
}

fn backup_service(conn: &mut Conn, shared: &Shared) -> io::Result<()> {
    let fault = current_fault(shared);
    if matches!(fault, Fault::ServerError | Fault::MalformedJson) {
        fault_fired(shared);
    }
    if fault == Fault::ServerError {
        return respond_json(conn, 500, &[], &ilo_error("Base.1.12.InternalError"));
    }
    if take_transient(shared) {
        return unavailable(conn);
    }
    if fault == Fault::MalformedJson {
        let body =
            b"{\"@odata.id\": \"/redfish/v1/Managers/1/BackupRestoreService/\", \"BackupFileLoc";
        return respond(
            conn,
            200,
            &[("Content-Type", "application/json".into())],
            body,
        );
    }
    // iLO creates the file when the service is read and names it after serial and time.
    shared.built.fetch_add(1, Ordering::SeqCst);
    let stamp = crate::clock::now()
        .format(time::macros::format_description!(
            "[year][month][day]_[hour][minute]"
        ))
        .unwrap_or_else(|_| "19700101_0000".into());
    let name = format!("HPE_{}_{stamp}.bak", shared.cfg.serial);
    lock(&shared.backups).insert(name.to_ascii_lowercase());
    respond_json(
        conn,
        200,
        &[("Allow", "GET, HEAD".into())],
        &json!({
            "@odata.context": "/redfish/v1/$metadata#HpeiLOBackupRestoreService.HpeiLOBackupRestoreService",
            "@odata.id": "/redfish/v1/Managers/1/BackupRestoreService/",
            "@odata.type": "#HpeiLOBackupRestoreService.v2_2_0.HpeiLOBackupRestoreService",
            "Id": "BackupRestoreService",
            "Name": "Backup Restore Service",
            "BackupFileLocation": format!("/bkupdata/{name}"),
            "HttpPushUri": "/cgi-bin/uploadRestoreFile",
            "CustomBackupandRestore": false,
            "BackupFiles": []
        }),
    )
}

/// `POST <BackupFileLocation>` as `multipart/form-data` with a `sessionKey` field and an
/// optional `password` (at most 32 characters): how HPE's iLOrest downloads a backup.
fn backup_file_post(conn: &mut Conn, req: &Request, shared: &Shared, name: &str) -> io::Result<()> {
    let Some(boundary) = req.header("content-type").and_then(multipart_boundary) else {
        return respond_json(conn, 400, &[], &ilo_error("Base.1.12.UnsupportedMediaType"));
    };
    let Some(parts) = parse_multipart(&req.body, &boundary) else {
        return respond_json(conn, 400, &[], &ilo_error("Base.1.12.MalformedJSON"));
    };
    let field = |n: &str| {
        parts
            .iter()
            .find(|p| p.name == n)
            .and_then(|p| std::str::from_utf8(p.data).ok())
    };
    if !field("sessionKey").is_some_and(|k| live_token(shared, k)) {
        return no_session(conn);
    }
    let password = field("password").filter(|p| !p.is_empty());
    if password.is_some_and(|p| p.chars().count() > MAX_FILE_PASSWORD_CHARS) {
        return respond_json(
            conn,
            400,
            &[],
            &ilo_error("Base.1.12.PropertyValueFormatError"),
        );
    }
    serve_backup(conn, req, shared, name, password)
}

/// `GET <BackupFileLocation>` (session token or Basic already checked).
fn backup_file(conn: &mut Conn, req: &Request, shared: &Shared, name: &str) -> io::Result<()> {
    serve_backup(conn, req, shared, name, None)
}

/// A backup protected by `password`, as the simulator serves it.
fn protected_backup(data: &[u8], password: &str) -> Vec<u8> {
    use sha2::Digest as _;
    let mut out = PROTECTED_MAGIC.to_vec();
    out.extend_from_slice(hex::encode(sha2::Sha256::digest(password.as_bytes())).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

/// Serves the `.bak`, or the configured fault.
fn serve_backup(
    conn: &mut Conn,
    req: &Request,
    shared: &Shared,
    name: &str,
    password: Option<&str>,
) -> io::Result<()> {
    if !lock(&shared.backups).contains(name) {
        return respond_json(conn, 404, &[], &ilo_error("Base.1.12.ResourceMissingAtURI"));
    }
    let protected;
    let data: &[u8] = match password {
        Some(p) => {
            protected = protected_backup(&shared.cfg.backup_bytes, p);
            &protected
        }
        None => &shared.cfg.backup_bytes,
    };
    let fault = current_fault(shared);
    if !matches!(
        fault,
        Fault::None | Fault::MalformedJson | Fault::TransientErrors(_)
    ) {
        fault_fired(shared);
    }
    if let Some(done) = serve_backup_fault(conn, req, shared, fault, data) {
        return done;
    }
    let file = req.target.rsplit('/').next().unwrap_or("backup.bak");
    let mut headers = octet(data.len() as u64);
    headers.push((
        "Content-Disposition",
        format!("attachment; filename=\"{file}\""),
    ));
    respond(conn, 200, &headers, data)
}

/// The headers of a backup download of `len` bytes.
fn octet(len: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/octet-stream".into()),
        ("Content-Length", len.to_string()),
    ]
}

/// A backup download under the fault `fault`: how it was answered, or `None` when the
/// fault leaves the download as it is (or was used up).
fn serve_backup_fault(
    conn: &mut Conn,
    req: &Request,
    shared: &Shared,
    fault: Fault,
    data: &[u8],
) -> Option<io::Result<()>> {
    Some(match fault {
        Fault::ServerError => respond_json(conn, 500, &[], &ilo_error("Base.1.12.InternalError")),
        Fault::Slow(d) if !sleep_unless_stopped(shared, d) => Ok(()),
        Fault::SlowDrip => slow_drip(conn, shared, data),
        Fault::CutMidDownload => write_head_then_close(conn, 200, &octet(data.len() as u64))
            .and_then(|()| conn.write_all(&data[..data.len() / 2]))
            .and_then(|()| conn.flush()),
        Fault::HtmlErrorPage => {
            let page = b"<!DOCTYPE html><html><head><title>iLO Login</title></head><body>Session expired</body></html>";
            respond(conn, 200, &[("Content-Type", "text/html".into())], page)
        }
        Fault::HugeContentLength => write_head_then_close(conn, 200, &octet(10_000_000_000))
            .and_then(|()| conn.write_all(&data[..data.len().min(64 << 10)]))
            .and_then(|()| conn.flush()),
        Fault::EndlessBody => endless_body(conn, shared),
        Fault::RedirectLoop => respond(conn, 302, &[("Location", req.target.clone())], b""),
        Fault::TransientErrors(_) if take_transient(shared) => unavailable(conn),
        _ => return None,
    })
}

/// `SlowDrip`: the header block, then one byte every 100 ms.
fn slow_drip(conn: &mut Conn, shared: &Shared, data: &[u8]) -> io::Result<()> {
    write_head_then_close(conn, 200, &octet(data.len() as u64))?;
    conn.flush()?;
    for b in data {
        if !sleep_unless_stopped(shared, Duration::from_millis(100)) {
            return Ok(());
        }
        conn.write_all(std::slice::from_ref(b))?;
        conn.flush()?;
    }
    Ok(())
}

/// `EndlessBody`: a chunked body that does not end (until [`ENDLESS_CAP`] or a stop).
fn endless_body(conn: &mut Conn, shared: &Shared) -> io::Result<()> {
    write_head_then_close(
        conn,
        200,
        &[
            ("Content-Type", "application/octet-stream".into()),
            ("Transfer-Encoding", "chunked".into()),
        ],
    )?;
    let chunk = vec![0xA5u8; 16 << 10];
    let mut sent: u64 = 0;
    while sent < ENDLESS_CAP && !shared.stop.load(Ordering::SeqCst) {
        write!(conn, "{:x}\r\n", chunk.len())?;
        conn.write_all(&chunk)?;
        conn.write_all(b"\r\n")?;
        sent += chunk.len() as u64;
    }
    conn.flush()
}

/// The restore endpoint: multipart with a `sessionKey` field equal to the `sessionKey`
/// cookie and to a live session token, an optional `password` and a `file` part. An
/// empty file, or a password-protected one whose header is damaged, is refused with
/// 400; a protected file with a wrong or missing password gets iLO's plain-text
/// `invalid_restore_password`.
fn upload(conn: &mut Conn, req: &Request, shared: &Shared) -> io::Result<()> {
    match current_fault(shared) {
        Fault::ServerError => {
            fault_fired(shared);
            return respond_json(conn, 500, &[], &ilo_error("Base.1.12.InternalError"));
        }
        Fault::TransientErrors(_) if take_transient(shared) => {
            return unavailable(conn);
        }
        _ => {}
    }
    let cookie_key = req.header("cookie").and_then(|c| {
        c.split(';')
            .map(str::trim)
            .find_map(|kv| kv.strip_prefix("sessionKey="))
            .map(str::to_string)
    });
    let Some(boundary) = req.header("content-type").and_then(multipart_boundary) else {
        return respond_json(conn, 400, &[], &ilo_error("Base.1.12.UnsupportedMediaType"));
    };
    let Some(parts) = parse_multipart(&req.body, &boundary) else {
        return respond_json(conn, 400, &[], &ilo_error("Base.1.12.MalformedJSON"));
    };
    let field = |n: &str| {
        parts
            .iter()
            .find(|p| p.name == n)
            .and_then(|p| std::str::from_utf8(p.data).ok())
    };
    let valid = match (cookie_key.as_deref(), field("sessionKey")) {
        (Some(c), Some(f)) if c == f => live_token(shared, c),
        _ => false,
    };
    if !valid {
        return no_session(conn);
    }
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return respond_json(conn, 400, &[], &ilo_error("Base.1.12.PropertyMissing"));
    };
    let invalid_file = |conn: &mut Conn| {
        respond_json(
            conn,
            400,
            &[],
            &ilo_error("Base.1.12.PropertyValueFormatError"),
        )
    };
    if file.data.is_empty() {
        return invalid_file(conn);
    }
    let password = field("password").filter(|p| !p.is_empty());
    if let Some(rest) = file.data.strip_prefix(PROTECTED_MAGIC) {
        let Some(tag) = rest.get(..64).filter(|_| rest.get(64) == Some(&b'\n')) else {
            return invalid_file(conn);
        };
        let expected = password.map(|p| {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(p.as_bytes()))
        });
        if expected.as_deref().map(str::as_bytes) != Some(tag) {
            return respond(
                conn,
                400,
                &[("Content-Type", "text/plain".into())],
                INVALID_RESTORE_PASSWORD.as_bytes(),
            );
        }
    }
    lock(&shared.restored).push(Restored {
        file: file.data.to_vec(),
        with_password: password.is_some(),
    });
    respond_json(
        conn,
        200,
        &[],
        &json!({"Message": "Restore in progress. iLO will reset when it completes."}),
    )
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    if !it
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    it.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
    })
    .filter(|b| !b.is_empty() && b.len() <= 70)
}

struct Part<'a> {
    name: String,
    filename: Option<String>,
    data: &'a [u8],
}

/// Strict RFC 7578 parsing: every part has a Content-Disposition with a name; the body
/// ends with the closing delimiter.
fn parse_multipart<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<Part<'a>>> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    if !body.starts_with(delim.as_bytes()) {
        return None;
    }
    let mut pos = delim.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        if !rest.starts_with(b"\r\n") || parts.len() >= 16 {
            return None;
        }
        pos += 2;
        let head_len = find(&body[pos..], b"\r\n\r\n")?;
        let head = std::str::from_utf8(&body[pos..pos + head_len]).ok()?;
        pos += head_len + 4;
        let data_len = find(&body[pos..], next_delim.as_bytes())?;
        let data = &body[pos..pos + data_len];
        pos += data_len + next_delim.len();
        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for param in v.split(';').skip(1) {
                let (pk, pv) = param.trim().split_once('=')?;
                let pv = pv.trim_matches('"').to_string();
                match pk.trim() {
                    "name" => name = Some(pv),
                    "filename" => filename = Some(pv),
                    _ => {}
                }
            }
        }
        parts.push(Part {
            name: name?,
            filename,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_ignore_case_query_and_trailing_slashes() {
        assert_eq!(route_of("/redfish/v1/"), "/redfish/v1");
        assert_eq!(
            route_of("/Redfish/V1/Managers/1/BackupRestoreService/?$select=X"),
            "/redfish/v1/managers/1/backuprestoreservice"
        );
        assert_eq!(route_of("/"), "/");
    }

    #[test]
    fn multipart_is_parsed_strictly() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"sessionKey\"\r\n\r\ntok\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bak\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\r\n\x01\r\n--XyZ--\r\n";
        let parts = parse_multipart(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "sessionKey");
        assert_eq!(parts[0].data, b"tok");
        assert_eq!(parts[1].filename.as_deref(), Some("a.bak"));
        assert_eq!(parts[1].data, b"\x00\r\n\x01");
        assert!(parse_multipart(&body[..body.len() - 9], "XyZ").is_none());
        assert!(parse_multipart(b"garbage", "XyZ").is_none());
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(multipart_boundary("application/json"), None);
    }
}

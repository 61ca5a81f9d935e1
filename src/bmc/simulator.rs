//! An iLO-like Redfish service on 127.0.0.1 for tests and `vault demo`.
//!
//! Hand-written on `TcpListener` + one thread per connection (+ rustls for HTTPS) so that
//! every fault is fully controllable: 5xx, delays, dribbled or cut bodies, lying
//! `Content-Length`, endless bodies, redirect loops, malformed JSON, HTML error pages.
//!
//! Invariants:
//! - It only ever binds loopback, and every connection is bounded: header size, body size,
//!   per-request deadline, and `Connection: close` after each answer.
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
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{Value, json};

/// iLO's default session idle timeout.
const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const MAX_HEADER_BYTES: usize = 16 << 10;
const MAX_HEADERS: usize = 64;
const MAX_BODY_BYTES: u64 = 64 << 20;
/// A request must arrive completely within this time.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Socket read granularity: how often a blocked read looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
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
}

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
            .finish()
    }
}

struct SimSession {
    id: String,
    user: String,
    last_used: Instant,
}

struct Shared {
    cfg: SimConfig,
    port: u16,
    fault: Mutex<Fault>,
    transient_left: AtomicU32,
    /// token → session
    sessions: Mutex<HashMap<String, SimSession>>,
    created: AtomicUsize,
    requests: AtomicUsize,
    restored: Mutex<Vec<Vec<u8>>>,
    /// Lower-cased names of the `.bak` files created by service GETs.
    backups: Mutex<HashSet<String>>,
    stop: AtomicBool,
    tls: Option<Arc<ServerConfig>>,
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
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .map_err(io::Error::other)?;
        let dir = tempfile::tempdir()?;
        let ca_path = dir.path().join("bmc-simulator-ca.pem");
        std::fs::write(&ca_path, ck.cert.pem())?;
        let tls = if cfg.tls {
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
            let cert: CertificateDer<'static> = ck.cert.der().clone();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let sc = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .map_err(io::Error::other)?;
            Some(Arc::new(sc))
        } else {
            None
        };
        let fault = cfg.fault.clone();
        let transient = match fault {
            Fault::TransientErrors(n) => n,
            _ => 0,
        };
        let shared = Arc::new(Shared {
            cfg,
            port: addr.port(),
            fault: Mutex::new(fault),
            transient_left: AtomicU32::new(transient),
            sessions: Mutex::new(HashMap::new()),
            created: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            restored: Mutex::new(Vec::new()),
            backups: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
            tls,
        });
        let acc_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("bmc-sim-accept".into())
            .spawn(move || accept_loop(listener, acc_shared))?;
        Ok(SimHandle {
            shared,
            addr,
            accept: Some(accept),
            ca_path,
            _dir: dir,
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
        lock(&self.shared.restored).clone()
    }

    pub fn set_fault(&self, f: Fault) {
        let n = match f {
            Fault::TransientErrors(n) => n,
            _ => 0,
        };
        self.shared.transient_left.store(n, Ordering::SeqCst);
        *lock(&self.shared.fault) = f;
    }

    /// Complete requests received so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
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
    }
}

/// Runs a simulator on 127.0.0.1:`port` (0 = any) until the process is killed, after
/// printing its URL, CA path and user to stdout. For `vault bmc-simulator`.
pub fn run_foreground(cfg: SimConfig, port: u16) -> io::Result<()> {
    run_foreground_to(cfg, port, &mut io::stdout())
}

/// [`run_foreground`] printing its banner to `out`.
pub fn run_foreground_to(cfg: SimConfig, port: u16, out: &mut dyn Write) -> io::Result<()> {
    let user = cfg.user.clone();
    let mut handle = SimHandle::start_on(cfg, port)?;
    writeln!(out, "BMC simulator listening on {}", handle.base_url())?;
    writeln!(out, "CA certificate: {}", handle.ca_cert_path().display())?;
    writeln!(out, "user: {user}")?;
    out.flush()?;
    if let Some(h) = handle.accept.take() {
        let _ = h.join();
    }
    Ok(())
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
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl Conn {
    /// Ends the connection: TLS close_notify (unless `abrupt`), then a TCP shutdown.
    fn close(mut self, abrupt: bool) {
        if let Conn::Tls(s) = &mut self
            && !abrupt
        {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let sock = match &self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        };
        let _ = sock.shutdown(Shutdown::Both);
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(POLL)).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut conn = match &shared.tls {
        Some(cfg) => match ServerConnection::new(Arc::clone(cfg)) {
            Ok(c) => Conn::Tls(Box::new(StreamOwned::new(c, stream))),
            Err(_) => return,
        },
        None => Conn::Plain(stream),
    };
    let req = match read_request(&mut conn, shared) {
        Ok(Some(r)) => r,
        Ok(None) => return conn.close(true),
        Err((status, msg)) => {
            let _ = respond_json(&mut conn, status, &[], &ilo_error(msg));
            return conn.close(false);
        }
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if !shared.cfg.latency.is_zero() && !sleep_unless_stopped(shared, shared.cfg.latency) {
        return conn.close(true);
    }
    let abrupt = handle(&mut conn, &req, shared).unwrap_or(true);
    conn.close(abrupt);
}

struct Request {
    method: String,
    target: String,
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
    let bad = (400, "Base.1.12.MalformedJSON");
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad)?;
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
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        route: route_of(target),
        headers,
        body: Vec::new(),
    };
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
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .and_then(|_| conn.flush());
    }
    let len = usize::try_from(len).map_err(|_| bad)?;
    let mut body = buf.split_off(head_end + 4);
    if body.len() > len {
        // Pipelining is not supported: one request per connection.
        return Err(bad);
    }
    body.reserve(len - body.len());
    while body.len() < len {
        let want = chunk.len().min(len - body.len());
        match read_some(conn, &mut chunk[..want], shared, deadline) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    req.body = body;
    Ok(Some(req))
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
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: HPE-iLO-Server/1.30 (vault simulator)\r\nConnection: close\r\n",
        reason(status)
    );
    for (n, v) in headers {
        head.push_str(n);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())
}

fn respond(
    conn: &mut Conn,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut all: Vec<(&str, String)> = headers.to_vec();
    all.push(("Content-Length", body.len().to_string()));
    write_head(conn, status, &all)?;
    conn.write_all(body)?;
    conn.flush()
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
    respond(conn, status, &all, v.to_string().as_bytes())
}

fn no_session(conn: &mut Conn) -> io::Result<()> {
    respond_json(
        conn,
        401,
        &[("WWW-Authenticate", "Basic realm=\"iLO\"".into())],
        &ilo_error("Base.1.12.NoValidSession"),
    )
}

fn purge_expired(sessions: &mut HashMap<String, SimSession>) {
    sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE_TIMEOUT);
}

/// Whether the request carries a live session token or valid Basic credentials.
fn authenticated(req: &Request, shared: &Shared) -> bool {
    if let Some(token) = req.header("x-auth-token") {
        let mut sessions = lock(&shared.sessions);
        purge_expired(&mut sessions);
        if let Some(s) = sessions.get_mut(token) {
            s.last_used = Instant::now();
            return true;
        }
        return false;
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
    shared
        .transient_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn current_fault(shared: &Shared) -> Fault {
    lock(&shared.fault).clone()
}

/// Answers one request. Returns whether the connection must be cut without a clean
/// TLS close (for the "cut" faults).
fn handle(conn: &mut Conn, req: &Request, shared: &Shared) -> io::Result<bool> {
    let route = req.route.as_str();
    let m = req.method.as_str();
    const SESSIONS: &str = "/redfish/v1/sessionservice/sessions";
    match (m, route) {
        ("GET", "/redfish/v1" | "/redfish") => respond_json(conn, 200, &[], &service_root()),
        ("POST", SESSIONS) => login(conn, req, shared),
        (_, r) if r.starts_with("/redfish/v1/sessionservice/sessions/") => {
            if !authenticated(req, shared) {
                return no_session(conn).map(|_| false);
            }
            let id = &r[SESSIONS.len() + 1..];
            match m {
                "DELETE" => {
                    let mut sessions = lock(&shared.sessions);
                    let before = sessions.len();
                    sessions.retain(|_, s| !s.id.eq_ignore_ascii_case(id));
                    let removed = before != sessions.len();
                    drop(sessions);
                    if removed {
                        respond_json(conn, 200, &[], &json!({"error": {"code": "iLO.0.10.ExtendedInfo", "@Message.ExtendedInfo": [{"MessageId": "Base.1.12.Success"}]}}))
                    } else {
                        respond_json(conn, 404, &[], &ilo_error("Base.1.12.ResourceMissingAtURI"))
                    }
                }
                "GET" => {
                    let sessions = lock(&shared.sessions);
                    match sessions.values().find(|s| s.id.eq_ignore_ascii_case(id)) {
                        Some(s) => {
                            let v = session_resource(&s.id, &s.user);
                            drop(sessions);
                            respond_json(conn, 200, &[], &v)
                        }
                        None => {
                            drop(sessions);
                            respond_json(conn, 404, &[], &ilo_error("Base.1.12.ResourceMissingAtURI"))
                        }
                    }
                }
                _ => method_not_allowed(conn),
            }
        }
        (_, "/redfish/v1/managers" | "/redfish/v1/managers/1" | "/redfish/v1/systems" | "/redfish/v1/systems/1" | SESSIONS)
        | (_, "/redfish/v1/managers/1/backuprestoreservice")
            if !authenticated(req, shared) =>
        {
            no_session(conn)
        }
        ("GET", SESSIONS) => {
            let sessions = lock(&shared.sessions);
            let members: Vec<Value> = sessions
                .values()
                .map(|s| json!({"@odata.id": format!("/redfish/v1/SessionService/Sessions/{}/", s.id)}))
                .collect();
            drop(sessions);
            respond_json(conn, 200, &[], &json!({"@odata.id": "/redfish/v1/SessionService/Sessions/", "Members@odata.count": members.len(), "Members": members}))
        }
        ("GET", "/redfish/v1/managers") => respond_json(conn, 200, &[], &collection("/redfish/v1/Managers/", "/redfish/v1/Managers/1/")),
        ("GET", "/redfish/v1/managers/1") => respond_json(conn, 200, &[], &manager(&shared.cfg)),
        ("GET", "/redfish/v1/systems") => respond_json(conn, 200, &[], &collection("/redfish/v1/Systems/", "/redfish/v1/Systems/1/")),
        ("GET", "/redfish/v1/systems/1") => respond_json(
            conn,
            200,
            &[],
            &json!({"@odata.id": "/redfish/v1/Systems/1/", "@odata.type": "#ComputerSystem.v1_17_0.ComputerSystem", "Id": "1", "Model": "ProLiant DL380 Gen11", "SerialNumber": shared.cfg.serial}),
        ),
        ("GET", "/redfish/v1/managers/1/backuprestoreservice") => backup_service(conn, shared),
        ("GET", r) if r.starts_with("/bkupdata/") => {
            if !authenticated(req, shared) {
                return no_session(conn).map(|_| false);
            }
            backup_file(conn, req, shared)
        }
        ("POST", "/cgi-bin/uploadrestorefile") => upload(conn, req, shared),
        (_, "/redfish/v1" | "/redfish/v1/managers" | "/redfish/v1/managers/1" | "/redfish/v1/systems" | "/redfish/v1/systems/1")
        | (_, SESSIONS | "/redfish/v1/managers/1/backuprestoreservice" | "/cgi-bin/uploadrestorefile") => method_not_allowed(conn),
        _ => respond_json(conn, 404, &[], &ilo_error("Base.1.12.ResourceMissingAtURI")),
    }
    .map(|_| false)
}

fn method_not_allowed(conn: &mut Conn) -> io::Result<()> {
    respond_json(conn, 405, &[], &ilo_error("Base.1.12.OperationNotAllowed"))
}

fn service_root() -> Value {
    json!({
        "@odata.id": "/redfish/v1/",
        "@odata.type": "#ServiceRoot.v1_13_0.ServiceRoot",
        "Id": "RootService",
        "Name": "HPE RESTful Root Service",
        "RedfishVersion": "1.13.0",
        "Managers": {"@odata.id": "/redfish/v1/Managers/"},
        "Systems": {"@odata.id": "/redfish/v1/Systems/"},
        "SessionService": {"@odata.id": "/redfish/v1/SessionService/"},
        "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions/"}},
        "Oem": {"Hpe": {"Manager": [{"ManagerType": "iLO 6"}]}}
    })
}

fn collection(id: &str, member: &str) -> Value {
    json!({"@odata.id": id, "Members@odata.count": 1, "Members": [{"@odata.id": member}]})
}

fn manager(cfg: &SimConfig) -> Value {
    json!({
        "@odata.id": "/redfish/v1/Managers/1/",
        "@odata.type": "#Manager.v1_5_1.Manager",
        "Id": "1",
        "ManagerType": "BMC",
        "Model": cfg.model,
        "FirmwareVersion": cfg.firmware,
        "Oem": {"Hpe": {"Links": {
            "BackupRestoreService": {"@odata.id": "/redfish/v1/Managers/1/BackupRestoreService/"}
        }}}
    })
}

fn session_resource(id: &str, user: &str) -> Value {
    json!({
        "@odata.id": format!("/redfish/v1/SessionService/Sessions/{id}/"),
        "@odata.type": "#Session.v1_0_0.Session",
        "Description": "Manager User Session",
        "Id": id,
        "Name": "User Session",
        "UserName": user
    })
}

fn login(conn: &mut Conn, req: &Request, shared: &Shared) -> io::Result<()> {
    if take_transient(shared) {
        return respond_json(
            conn,
            503,
            &[],
            &ilo_error("Base.1.12.ServiceTemporarilyUnavailable"),
        );
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
    let mut sessions = lock(&shared.sessions);
    purge_expired(&mut sessions);
    if sessions.len() >= shared.cfg.session_limit {
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
    let path = format!("/redfish/v1/SessionService/Sessions/{id}/");
    let location = if shared.cfg.absolute_location {
        let scheme = if shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}{path}", shared.port)
    } else {
        path
    };
    respond_json(
        conn,
        201,
        &[("X-Auth-Token", token), ("Location", location)],
        &session_resource(&id, user),
    )
}

fn backup_service(conn: &mut Conn, shared: &Shared) -> io::Result<()> {
    let fault = current_fault(shared);
    if fault == Fault::ServerError {
        return respond_json(conn, 500, &[], &ilo_error("Base.1.12.InternalError"));
    }
    if take_transient(shared) {
        return respond_json(
            conn,
            503,
            &[],
            &ilo_error("Base.1.12.ServiceTemporarilyUnavailable"),
        );
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
        &[],
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

/// Serves the `.bak`, or the configured fault. Returns whether to cut the connection.
fn backup_file(conn: &mut Conn, req: &Request, shared: &Shared) -> io::Result<()> {
    let name = req.route.trim_start_matches("/bkupdata/");
    if !lock(&shared.backups).contains(name) {
        return respond_json(conn, 404, &[], &ilo_error("Base.1.12.ResourceMissingAtURI"));
    }
    let data = &shared.cfg.backup_bytes;
    let octet = |len: u64| -> Vec<(&str, String)> {
        vec![
            ("Content-Type", "application/octet-stream".into()),
            ("Content-Length", len.to_string()),
        ]
    };
    match current_fault(shared) {
        Fault::ServerError => {
            return respond_json(conn, 500, &[], &ilo_error("Base.1.12.InternalError"));
        }
        Fault::Slow(d) if !sleep_unless_stopped(shared, d) => return Ok(()),
        Fault::SlowDrip => {
            write_head(conn, 200, &octet(data.len() as u64))?;
            conn.flush()?;
            for b in data {
                if !sleep_unless_stopped(shared, Duration::from_millis(100)) {
                    return Ok(());
                }
                conn.write_all(std::slice::from_ref(b))?;
                conn.flush()?;
            }
            return Ok(());
        }
        Fault::CutMidDownload => {
            write_head(conn, 200, &octet(data.len() as u64))?;
            conn.write_all(&data[..data.len() / 2])?;
            return conn.flush();
        }
        Fault::HtmlErrorPage => {
            let page = b"<!DOCTYPE html><html><head><title>iLO Login</title></head><body>Session expired</body></html>";
            return respond(conn, 200, &[("Content-Type", "text/html".into())], page);
        }
        Fault::HugeContentLength => {
            write_head(conn, 200, &octet(10_000_000_000))?;
            conn.write_all(&data[..data.len().min(64 << 10)])?;
            return conn.flush();
        }
        Fault::EndlessBody => {
            write_head(
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
            return conn.flush();
        }
        Fault::RedirectLoop => {
            return respond(conn, 302, &[("Location", req.target.clone())], b"");
        }
        Fault::TransientErrors(_) if take_transient(shared) => {
            return respond_json(
                conn,
                503,
                &[],
                &ilo_error("Base.1.12.ServiceTemporarilyUnavailable"),
            );
        }
        _ => {}
    }
    let file = req.target.rsplit('/').next().unwrap_or("backup.bak");
    let mut headers = octet(data.len() as u64);
    headers.push((
        "Content-Disposition",
        format!("attachment; filename=\"{file}\""),
    ));
    respond(conn, 200, &headers, data)
}

/// The restore endpoint: multipart with a `sessionKey` field equal to the `sessionKey`
/// cookie and to a live session token, and a `file` part.
fn upload(conn: &mut Conn, req: &Request, shared: &Shared) -> io::Result<()> {
    match current_fault(shared) {
        Fault::ServerError => {
            return respond_json(conn, 500, &[], &ilo_error("Base.1.12.InternalError"));
        }
        Fault::TransientErrors(_) if take_transient(shared) => {
            return respond_json(
                conn,
                503,
                &[],
                &ilo_error("Base.1.12.ServiceTemporarilyUnavailable"),
            );
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
    let field_key = parts
        .iter()
        .find(|p| p.name == "sessionKey")
        .and_then(|p| std::str::from_utf8(p.data).ok());
    let valid = match (cookie_key.as_deref(), field_key) {
        (Some(c), Some(f)) if c == f => {
            let mut sessions = lock(&shared.sessions);
            purge_expired(&mut sessions);
            sessions.contains_key(c)
        }
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
    lock(&shared.restored).push(file.data.to_vec());
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

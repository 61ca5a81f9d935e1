//! Redfish client for HPE iLO backup and restore.
//!
//! Invariants:
//! - A session created by [`BmcSession::connect`] is deleted on every exit path: by
//!   [`BmcSession::logout`], by `Drop` (on errors and early returns), and by
//!   [`logout_all_live_sessions`] from a Ctrl-C handler. iLO allows only a few sessions;
//!   a leaked one locks people out until it times out (30 minutes by default).
//! - Requests go only to the origin the user named (see `redfish`), never follow
//!   redirects, and carry the token or password only in headers. No error, log line or
//!   `Debug` output contains a password, a token or an `Authorization` value.
//! - Only idempotent requests (GET, DELETE) are retried. The login POST is never retried
//!   (a retry after a lost answer would leak a session) and neither is the restore POST
//!   (iLO resets after accepting one).
//! - A download is streamed into the caller's sink and never buffered whole; anything but
//!   a `200` carrying a binary body within `max_backup_bytes` is an error, so an error page
//!   can never end up sealed as a backup. On error, bytes already written to the sink
//!   must be discarded by the caller. `download_file` is that rule in three steps: the
//!   response check (`check_file_response`), a capped and stall-guarded sink
//!   (`GuardedSink`), and `io::copy` between them.
use std::cell::Cell;
use std::io::{self, Cursor, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use ureq::http::Response;
use ureq::{Agent, Body, RequestBuilder, SendBody};
use zeroize::Zeroizing;

use super::error::BmcError;
use super::redfish::{
    self, FALLBACK_BACKUP_SERVICE, MAX_JSON_BYTES, Origin, SERVICE_ROOT, SESSIONS_PATH, link_at,
    members, parse_error_body, parse_json, path_of, str_at,
};
use super::tls::{self, Fingerprint};
use crate::secret::Password;

/// Default cap on a backup's size. iLO backups are tens of KiB to a few MiB.
pub const DEFAULT_MAX_BACKUP_BYTES: u64 = 512 << 20;
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retries of an idempotent request.
pub const DEFAULT_RETRIES: u32 = 2;
/// Timeout of the best-effort logout from `Drop` and the Ctrl-C path: the user is
/// waiting for the process to end.
const BEST_EFFORT_LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest error body read to find a `MessageId`.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// A download slower than this (averaged over each `timeout` window) is stalled.
/// Catches a BMC that dribbles bytes just fast enough to beat the per-read timeout.
const MIN_DOWNLOAD_BYTES_PER_SEC: u64 = 4096;
/// Backoff of retry n is `BACKOFF_BASE * 2^n`, capped.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Managers examined during discovery (a hostile collection could list millions).
const MAX_MANAGERS: usize = 16;

/// How to authenticate to the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Redfish session: one login, `X-Auth-Token` on each request, logout at the end.
    #[default]
    Session,
    /// HTTP Basic on every request; no session to leak, but restore is not possible.
    Basic,
}

/// How the `.bak` file is fetched from `BackupFileLocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownloadMethod {
    /// `GET` (as HPE documents), falling back to `POST` when the BMC refuses the GET
    /// (404, 405 or 501); always `POST` with a backup-file password.
    #[default]
    Auto,
    /// Only `GET`.
    Get,
    /// Only `POST` as `multipart/form-data` with a `sessionKey` field, as HPE's iLOrest
    /// does (needs a session login).
    Post,
}

/// Longest iLO backup-file password (`--filepass` of iLOrest).
pub const MAX_FILE_PASSWORD_CHARS: usize = 32;
/// Default number of login attempts after `SessionLimitExceeded` (backoff 0.2 s … 3.2 s).
pub const DEFAULT_SESSION_LIMIT_RETRIES: u32 = 5;

/// Everything needed to reach one BMC. `Debug` is safe: the password is redacted.
#[derive(Debug, Clone)]
pub struct BmcOptions {
    /// `https://host[:port]` (or `http://` for the simulator and labs).
    pub url: String,
    pub user: String,
    pub password: Password,
    pub auth: AuthMode,
    /// PEM file with the CA (or the self-signed certificate) that signed the BMC's
    /// certificate. When given, it is the only trust anchor: BMC certificates are never
    /// issued by public CAs, so the public roots would only widen the attack surface.
    pub ca_cert: Option<PathBuf>,
    /// Disables certificate verification. The CLI must warn when it is set.
    pub insecure: bool,
    /// Limit for connecting, for each read/write, and for each JSON request overall.
    pub timeout: Duration,
    /// Extra attempts for idempotent requests after a transient failure.
    pub retries: u32,
    /// `http://host:port` proxy (HTTP CONNECT). `None` means a direct connection; the
    /// `*_PROXY` environment variables are deliberately ignored.
    pub proxy: Option<String>,
    pub max_backup_bytes: u64,
    /// SHA-256 pins of the BMC's certificate: it must hash to one of them.
    pub tls_fingerprints: Vec<Fingerprint>,
    /// Allows `http://`: the password, the session token and the backup cross the
    /// network in clear. Refused unless set; the CLI must warn on every use.
    pub allow_http: bool,
    pub download: DownloadMethod,
    /// iLO's backup-file password (at most 32 characters): the backup is requested
    /// protected with it, and a restore sends it.
    pub file_password: Option<Password>,
    /// Login attempts after `SessionLimitExceeded`, with exponential backoff.
    pub session_limit_retries: u32,
}

impl BmcOptions {
    /// Options with the defaults: session auth, verified TLS with the public roots,
    /// 30 s timeout, 2 retries, no proxy, 512 MiB size cap.
    pub fn new(url: impl Into<String>, user: impl Into<String>, password: Password) -> Self {
        BmcOptions {
            url: url.into(),
            user: user.into(),
            password,
            auth: AuthMode::Session,
            ca_cert: None,
            insecure: false,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            proxy: None,
            max_backup_bytes: DEFAULT_MAX_BACKUP_BYTES,
            tls_fingerprints: Vec::new(),
            allow_http: false,
            download: DownloadMethod::Auto,
            file_password: None,
            session_limit_retries: DEFAULT_SESSION_LIMIT_RETRIES,
        }
    }
}

/// What discovery learned about the manager that serves backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerInfo {
    /// `host[:port]` as given in the URL.
    pub host: String,
    /// e.g. "iLO 6".
    pub model: Option<String>,
    pub firmware: Option<String>,
    /// The server's serial number (from the ComputerSystem, else the Manager). Restore
    /// should only go to the system with the same serial.
    pub serial: Option<String>,
}

/// The HPE `HpeiLOBackupRestoreService` of one manager. URIs are as the BMC gave them.
///
/// Reading the service makes iLO build a backup, so discovery reads it once and keeps
/// the `BackupFileLocation` it named: one `BackupService` stands for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupService {
    pub uri: String,
    pub http_push_uri: String,
    pub manager: ManagerInfo,
    /// The backup the discovery read made, if the service named one.
    pub backup_file: Option<BackupFile>,
    /// What discovery skipped and why (e.g. a Manager that answered 500).
    pub notes: Vec<String>,
}

/// Where the BMC put a freshly created backup (`BackupFileLocation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// The `.bak` file name, made safe for file systems.
    pub file_name: String,
    pub backup_file_location: String,
}

/// The result of a successful download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupDownload {
    /// The `.bak` file name from `BackupFileLocation`, made safe for file systems.
    pub file_name: String,
    pub backup_file_location: String,
    pub bytes: u64,
}

/// A logged-in session, shared between its `BmcSession` and the process-wide registry
/// so that whichever comes first (logout, drop, Ctrl-C) deletes it exactly once.
struct LiveSession {
    id: u64,
    agent: Agent,
    host: String,
    logout_url: String,
    token: Zeroizing<String>,
    done: AtomicBool,
}

static LIVE_SESSIONS: Mutex<Vec<Arc<LiveSession>>> = Mutex::new(Vec::new());
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Vec<Arc<LiveSession>>> {
    // A panic elsewhere must not stop us from logging out: ignore poisoning.
    LIVE_SESSIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Logs out every BMC session of this process that is still open, in parallel, each with
/// a short timeout. For the Ctrl-C handler (installed by the CLI with `ctrlc`), which
/// calls this before exiting. Returns how many sessions were logged out cleanly.
pub fn logout_all_live_sessions() -> usize {
    let sessions = std::mem::take(&mut *registry());
    std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .iter()
            .map(|live| s.spawn(move || live.delete(BEST_EFFORT_LOGOUT_TIMEOUT, 0).is_ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|ok| *ok)
            .count()
    })
}

/// Number of sessions this process holds open (the unit tests' check that every
/// session is logged out).
#[cfg(test)]
pub fn live_session_count() -> usize {
    registry().len()
}

impl LiveSession {
    /// Deletes the session once; later calls are no-ops.
    fn delete(&self, timeout: Duration, retries: u32) -> Result<(), BmcError> {
        if self.done.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        registry().retain(|s| s.id != self.id);
        retrying(retries, || self.delete_once(timeout))
    }

    fn delete_once(&self, timeout: Duration) -> Result<(), BmcError> {
        let path = path_of(&self.logout_url).unwrap_or_default();
        let resp = self
            .agent
            .delete(&self.logout_url)
            .header("X-Auth-Token", self.token.as_str())
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .map_err(|e| classify(&self.host, e, &format!("DELETE {path}"), timeout))?;
        match resp.status().as_u16() {
            // 401/404: the session is already gone (expired, deleted, iLO reset).
            200..=299 | 401 | 404 => Ok(()),
            _ => Err(error_from_response(
                &self.host, resp, "DELETE", &path, false,
            )),
        }
    }
}

enum Auth {
    Session(Arc<LiveSession>),
    /// The complete `Authorization` header value.
    Basic(Zeroizing<String>),
}

/// A connection to one BMC. Logs out on drop.
pub struct BmcSession {
    agent: Agent,
    origin: Origin,
    auth: Auth,
    timeout: Duration,
    retries: u32,
    max_backup_bytes: u64,
    download: DownloadMethod,
    file_password: Option<Password>,
    /// The service root read before logging in (it names the Sessions collection).
    root: Option<Value>,
}

impl std::fmt::Debug for BmcSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.auth {
            Auth::Session(_) => "session",
            Auth::Basic(_) => "basic",
        };
        f.debug_struct("BmcSession")
            .field("host", &self.origin.host)
            .field("auth", &mode)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct LoginBody<'a> {
    #[serde(rename = "UserName")]
    user: &'a str,
    #[serde(rename = "Password")]
    password: &'a str,
}

impl BmcSession {
    /// Prepares the HTTP client and, in session mode, logs in.
    pub fn connect(opts: BmcOptions) -> Result<Self, BmcError> {
        let origin = Origin::parse(&opts.url).map_err(|reason| BmcError::InvalidUrl {
            host: redfish::display_host(&opts.url),
            reason,
        })?;
        if !origin.tls && !opts.allow_http {
            return Err(BmcError::PlaintextRefused { host: origin.host });
        }
        if let Some(p) = &opts.file_password {
            check_file_password(p)?;
        }
        let agent = build_agent(&opts)?;
        let mut root = None;
        let auth = match opts.auth {
            AuthMode::Basic => {
                let raw = Zeroizing::new(format!("{}:{}", opts.user, opts.password.expose()));
                let enc = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
                Auth::Basic(Zeroizing::new(format!("Basic {enc}")))
            }
            AuthMode::Session => {
                let (sessions, r) = sessions_uri(&agent, &origin, &opts)?;
                root = r;
                Auth::Session(login(&agent, &origin, &opts, &sessions)?)
            }
        };
        Ok(BmcSession {
            agent,
            origin,
            auth,
            timeout: opts.timeout,
            retries: opts.retries,
            max_backup_bytes: opts.max_backup_bytes,
            download: opts.download,
            file_password: opts.file_password,
            root,
        })
    }

    /// `host[:port]` of this BMC, for messages.
    pub fn host(&self) -> &str {
        &self.origin.host
    }

    /// Finds the backup service: service root → Managers → each Manager's
    /// `Oem.Hpe.Links.BackupRestoreService` (else the well-known fallback), plus model,
    /// firmware and the server's serial number.
    pub fn discover(&mut self) -> Result<BackupService, BmcError> {
        let root = match self.root.take() {
            Some(r) => r,
            None => self.get_json(SERVICE_ROOT)?,
        };
        let managers_ref = link_at(&root, &["Managers"])
            .unwrap_or("/redfish/v1/Managers/")
            .to_string();
        let systems_ref = link_at(&root, &["Systems"]).map(str::to_string);

        let mut notes = Vec::new();
        let (manager, link) = self.choose_manager(&managers_ref, &mut notes)?;
        let svc_ref = link.unwrap_or_else(|| FALLBACK_BACKUP_SERVICE.to_string());
        let svc = self.backup_service_at(&svc_ref)?;
        let push = str_at(&svc, &["HttpPushUri"]).ok_or_else(|| BmcError::NoBackupService {
            host: self.origin.host.clone(),
            detail: format!("{svc_ref} has no HttpPushUri"),
        })?;
        path_of(push).map_err(|w| self.malformed(format!("HttpPushUri: {w}")))?;
        let backup_file = match str_at(&svc, &["BackupFileLocation"]) {
            Some(location) => Some(self.backup_file_at(location)?),
            None => None,
        };

        let mut serial = match systems_ref {
            Some(r) => self.system_serial(&r)?,
            None => None,
        };
        if serial.is_none() {
            serial = text_field(&manager, "SerialNumber");
        }
        Ok(BackupService {
            uri: svc_ref,
            http_push_uri: push.to_string(),
            backup_file,
            notes,
            manager: ManagerInfo {
                host: self.origin.host.clone(),
                model: text_field(&manager, "Model"),
                firmware: text_field(&manager, "FirmwareVersion"),
                serial,
            },
        })
    }

    /// The Manager to back up: the first (of at most [`MAX_MANAGERS`]) that links a
    /// BackupRestoreService, else the first that answered, with that link. A Manager
    /// that answers with an error or nonsense is skipped (noted in `notes`): the next one
    /// may be the iLO. Transport, TLS and authentication failures are not skipped, and
    /// when no Manager answered, the first skip's error is the answer.
    fn choose_manager(
        &self,
        managers_ref: &str,
        notes: &mut Vec<String>,
    ) -> Result<(Value, Option<String>), BmcError> {
        let managers = self.get_json(managers_ref)?;
        let member_refs: Vec<String> = members(&managers)
            .into_iter()
            .take(MAX_MANAGERS)
            .map(str::to_string)
            .collect();
        let mut first_error = None;
        let mut chosen: Option<(Value, Option<String>)> = None;
        for m in &member_refs {
            let mv = match self.get_json(m) {
                Ok(v) => v,
                Err(e @ (BmcError::Http { .. } | BmcError::MalformedResponse { .. })) => {
                    notes.push(format!("skipped Manager {}: {e}", redfish::sanitize(m)));
                    first_error.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let link =
                link_at(&mv, &["Oem", "Hpe", "Links", "BackupRestoreService"]).map(str::to_string);
            if link.is_some() {
                return Ok((mv, link));
            }
            if chosen.is_none() {
                chosen = Some((mv, None));
            }
        }
        match (chosen, first_error) {
            (Some(c), _) => Ok(c),
            (None, Some(e)) => Err(e),
            (None, None) => Ok((Value::Null, None)),
        }
    }

    /// The BackupRestoreService document at `svc_ref`; a BMC without one (404, 405,
    /// 501) is told apart from other failures.
    fn backup_service_at(&self, svc_ref: &str) -> Result<Value, BmcError> {
        match self.get_json(svc_ref) {
            Err(BmcError::Http {
                status: 404 | 405 | 501,
                message_id,
                ..
            }) => Err(BmcError::NoBackupService {
                host: self.origin.host.clone(),
                detail: format!(
                    "{svc_ref} not found{}",
                    message_id.map(|m| format!(", {m}")).unwrap_or_default()
                ),
            }),
            r => r,
        }
    }

    /// The first ComputerSystem's serial number. A missing or odd Systems tree is not
    /// fatal (serial is informational); network and auth failures are.
    fn system_serial(&self, systems_ref: &str) -> Result<Option<String>, BmcError> {
        let tolerate = |e: BmcError| match e {
            BmcError::Http { .. } | BmcError::MalformedResponse { .. } => Ok(None),
            e => Err(e),
        };
        let systems = match self.get_json(systems_ref) {
            Ok(v) => v,
            Err(e) => return tolerate(e),
        };
        let Some(first) = members(&systems).first().map(|s| s.to_string()) else {
            return Ok(None);
        };
        match self.get_json(&first) {
            Ok(sys) => Ok(text_field(&sys, "SerialNumber")),
            Err(e) => tolerate(e),
        }
    }

    /// Makes the BMC create a backup (GET of the service) and streams the file named by
    /// `BackupFileLocation` into `sink`. On error the sink may hold a partial download
    /// that the caller must discard.
    pub fn download_backup(
        &mut self,
        svc: &BackupService,
        sink: &mut dyn Write,
    ) -> Result<BackupDownload, BmcError> {
        let file = self.request_backup(svc)?;
        self.download_file(&file, sink)
    }

    /// First half of [`download_backup`](Self::download_backup): makes the BMC create a
    /// backup (GET of the service) and returns where it is, so a caller can record the
    /// file's name (e.g. in an archive header) before the bytes arrive.
    ///
    /// Discovery already read the service (which made iLO build a backup); its
    /// `BackupFileLocation` is used without reading the service a second time.
    pub fn request_backup(&mut self, svc: &BackupService) -> Result<BackupFile, BmcError> {
        if let Some(f) = &svc.backup_file {
            return Ok(f.clone());
        }
        let v = self.get_json(&svc.uri)?;
        let location = str_at(&v, &["BackupFileLocation"])
            .ok_or_else(|| self.malformed(format!("{} has no BackupFileLocation", svc.uri)))?
            .to_string();
        self.backup_file_at(&location)
    }

    fn backup_file_at(&self, location: &str) -> Result<BackupFile, BmcError> {
        let path =
            path_of(location).map_err(|w| self.malformed(format!("BackupFileLocation: {w}")))?;
        Ok(BackupFile {
            file_name: redfish::safe_file_name(redfish::last_segment(&path)),
            backup_file_location: location.to_string(),
        })
    }

    /// Second half of [`download_backup`](Self::download_backup): streams the file that
    /// [`request_backup`](Self::request_backup) named into `sink`. On error the sink may
    /// hold a partial download that the caller must discard.
    pub fn download_file(
        &mut self,
        file: &BackupFile,
        sink: &mut dyn Write,
    ) -> Result<BackupDownload, BmcError> {
        let location = file.backup_file_location.clone();
        let path =
            path_of(&location).map_err(|w| self.malformed(format!("BackupFileLocation: {w}")))?;
        let mut resp = self.fetch_file(&path)?;
        let length = self.check_file_response(&mut resp, &path)?;
        let mut guarded = GuardedSink {
            sink,
            host: &self.origin.host,
            path: &path,
            limit: self.max_backup_bytes,
            claimed: length.claimed,
            timeout: self.timeout,
            floor: MIN_DOWNLOAD_BYTES_PER_SEC.saturating_mul(self.timeout.as_secs().max(1)),
            total: 0,
            window_start: Instant::now(),
            window_bytes: 0,
            refused: None,
        };
        // A BufReader of 64 KiB: `io::copy` hands each read's bytes straight from its
        // buffer to the guarded sink (no second copy), one write per read, so the stall
        // guard sees every read.
        let copied = io::copy(
            &mut io::BufReader::with_capacity(64 << 10, resp.body_mut().as_reader()),
            &mut guarded,
        );
        let total = guarded.total;
        if let Err(e) = copied {
            return Err(match guarded.refused.take() {
                Some(refused) => refused,
                None => self.broken_off(e, &path, total, length.claimed),
            });
        }
        if total == 0 {
            return Err(self.not_a_backup(&path, "an empty body".into()));
        }
        if let Some(exp) = length.claimed.filter(|_| length.identity)
            && exp != total
        {
            return Err(BmcError::Truncated {
                host: self.origin.host.clone(),
                received: total,
                expected: length.claimed,
            });
        }
        Ok(BackupDownload {
            file_name: redfish::safe_file_name(redfish::last_segment(&path)),
            backup_file_location: location,
            bytes: total,
        })
    }

    /// The answer to the download of `path`: a GET (retried when transient), or the POST
    /// iLOrest uses when a file password is set, `--download-method post` was asked
    /// for, or the BMC serves the file only that way.
    fn fetch_file(&self, path: &str) -> Result<Response<Body>, BmcError> {
        let url = format!("{}{path}", self.origin.base);
        if self.download == DownloadMethod::Post || self.file_password.is_some() {
            return self.download_by_post(&url, path);
        }
        let got = retrying(self.retries, || {
            // No overall deadline for the body: a large backup on a slow link is fine
            // as long as it keeps moving (per-read timeout and the stall guard).
            let rb = self
                .agent
                .get(&url)
                .header("Accept", "application/octet-stream")
                .config()
                .timeout_global(None)
                .build();
            self.send_checked(self.authed(rb).call(), "GET", path)
        });
        match got {
            // A BMC that only serves the file the way HPE's iLOrest asks for it.
            Err(BmcError::Http {
                status: 404 | 405 | 501,
                ..
            }) if self.download == DownloadMethod::Auto
                && matches!(self.auth, Auth::Session(_)) =>
            {
                self.download_by_post(&url, path)
            }
            r => r,
        }
    }

    /// Refuses an answer that is not a backup file before a byte of it is kept: another
    /// status, an HTML, JSON or text page, an empty body, or a length over the cap.
    fn check_file_response(
        &self,
        resp: &mut Response<Body>,
        path: &str,
    ) -> Result<Length, BmcError> {
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(
                self.not_a_backup(path, format!("an answer without the file (HTTP {status})"))
            );
        }
        let content_type = header(resp, "content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("text/html") {
            return Err(self.not_a_backup(path, "an HTML page".into()));
        }
        if content_type.contains("json") {
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BODY)
                .read_to_vec()
                .unwrap_or_default();
            let id = parse_error_body(&body)
                .message_id
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            return Err(self.not_a_backup(path, format!("a JSON document{id}")));
        }
        if content_type.starts_with("text/") {
            return Err(self.not_a_backup(
                path,
                format!("a text page ({})", redfish::sanitize(&content_type)),
            ));
        }
        let length = Length {
            identity: header(resp, "content-encoding").is_none(),
            claimed: header(resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok()),
        };
        if let Some(len) = length.claimed.filter(|_| length.identity) {
            if len > self.max_backup_bytes {
                return Err(BmcError::TooLarge {
                    host: self.origin.host.clone(),
                    limit: self.max_backup_bytes,
                    claimed: Some(len),
                });
            }
            if len == 0 {
                return Err(self.not_a_backup(path, "an empty body".into()));
            }
        }
        Ok(length)
    }

    fn not_a_backup(&self, path: &str, reason: String) -> BmcError {
        BmcError::NotABackup {
            host: self.origin.host.clone(),
            path: path.to_string(),
            reason,
        }
    }

    /// A read of the download body that failed after `received` bytes: a timeout or a
    /// TLS failure as such, anything else as a download that broke off.
    fn broken_off(
        &self,
        e: io::Error,
        path: &str,
        received: u64,
        expected: Option<u64>,
    ) -> BmcError {
        let host = &self.origin.host;
        match classify_io(host, e, &format!("GET {path}"), self.timeout) {
            e @ (BmcError::Timeout { .. } | BmcError::Tls { .. }) => e,
            _ => BmcError::Truncated {
                host: host.clone(),
                received,
                expected,
            },
        }
    }

    /// `POST <BackupFileLocation>` as `multipart/form-data` with `sessionKey` (and the
    /// backup-file `password`), the way HPE's iLOrest downloads. Never retried: with a
    /// password each POST may make iLO build a new protected file.
    fn download_by_post(&self, url: &str, path: &str) -> Result<Response<Body>, BmcError> {
        let Auth::Session(live) = &self.auth else {
            return Err(BmcError::NeedsSession {
                host: self.origin.host.clone(),
                what: if self.file_password.is_some() {
                    "make a password-protected backup"
                } else {
                    "download the backup by POST"
                },
            });
        };
        let boundary = format!("vault-{}", hex::encode(rand::random::<[u8; 16]>()));
        let mut form = Zeroizing::new(String::new());
        form.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"sessionKey\"\r\n\r\n{}\r\n",
            live.token.as_str()
        ));
        if let Some(p) = &self.file_password {
            form.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{}\r\n",
                p.expose()
            ));
        }
        form.push_str(&format!("--{boundary}--\r\n"));
        let rb = self
            .agent
            .post(url)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("Accept", "application/octet-stream")
            .header("X-Auth-Token", live.token.as_str())
            .config()
            .timeout_global(None)
            .build();
        self.send_checked(rb.send(form.as_bytes()), "POST", path)
    }

    /// Uploads a backup to the service's `HttpPushUri` as `multipart/form-data` (fields
    /// `sessionKey`, the backup-file `password` if one is set, and `file`), streaming
    /// exactly `len` bytes from `body`. Never retried: iLO resets after accepting a
    /// restore.
    pub fn restore(
        &mut self,
        svc: &BackupService,
        file_name: &str,
        body: &mut dyn Read,
        len: u64,
    ) -> Result<(), BmcError> {
        let Auth::Session(live) = &self.auth else {
            return Err(BmcError::RestoreNeedsSession {
                host: self.origin.host.clone(),
            });
        };
        let path =
            path_of(&svc.http_push_uri).map_err(|w| self.malformed(format!("HttpPushUri: {w}")))?;
        let url = format!("{}{path}", self.origin.base);
        let boundary = format!("vault-{}", hex::encode(rand::random::<[u8; 16]>()));
        let (head, tail) = upload_form(
            &boundary,
            live.token.as_str(),
            self.file_password.as_ref(),
            &redfish::safe_file_name(file_name),
        );
        let total = head.len() as u64 + len + tail.len() as u64;
        let source_failed = Cell::new(false);
        let mut reader = Cursor::new(head.as_slice())
            .chain(ExactLen {
                inner: body,
                remaining: len,
                failed: &source_failed,
            })
            .chain(Cursor::new(tail));
        let cookie = Zeroizing::new(format!("sessionKey={}", live.token.as_str()));
        let result = self
            .agent
            .post(&url)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("Content-Length", total.to_string())
            .header("X-Auth-Token", live.token.as_str())
            .header("Cookie", cookie.as_str())
            .header("Accept", "application/json")
            .config()
            .timeout_global(None)
            .build()
            .send(SendBody::from_reader(&mut reader));
        let resp = match result {
            Ok(r) => r,
            Err(e) if source_failed.get() => {
                return Err(BmcError::Io {
                    context: format!(
                        "cannot read the backup to restore to BMC {}",
                        self.origin.host
                    ),
                    source: e.into_io(),
                });
            }
            Err(e) => {
                return Err(classify(
                    &self.origin.host,
                    e,
                    &format!("POST {path}"),
                    self.timeout,
                ));
            }
        };
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(error_from_response(
                &self.origin.host,
                resp,
                "POST",
                &path,
                false,
            ))
        }
    }

    /// Deletes the session (no-op in basic mode). Idempotent DELETE, so it is retried.
    pub fn logout(self) -> Result<(), BmcError> {
        match &self.auth {
            Auth::Session(live) => live.delete(self.timeout, self.retries),
            Auth::Basic(_) => Ok(()),
        }
    }

    /// GET a JSON resource (retried), capped in size and depth.
    fn get_json(&self, reference: &str) -> Result<Value, BmcError> {
        let path = path_of(reference).map_err(|w| self.malformed(w))?;
        let url = format!("{}{path}", self.origin.base);
        let mut resp = retrying(self.retries, || {
            let rb = self
                .agent
                .get(&url)
                .header("Accept", "application/json")
                .header("OData-Version", "4.0");
            self.send_checked(self.authed(rb).call(), "GET", &path)
        })?;
        let bytes = read_capped(&self.origin.host, &mut resp, &path, self.timeout)?;
        parse_json(&bytes).map_err(|w| self.malformed(format!("{path}: {w}")))
    }

    /// Maps transport errors and non-2xx answers to `BmcError`.
    fn send_checked(
        &self,
        result: Result<Response<Body>, ureq::Error>,
        method: &'static str,
        path: &str,
    ) -> Result<Response<Body>, BmcError> {
        let resp = result.map_err(|e| {
            classify(
                &self.origin.host,
                e,
                &format!("{method} {path}"),
                self.timeout,
            )
        })?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            // With Basic auth every request is a login.
            let login = matches!(self.auth, Auth::Basic(_));
            Err(error_from_response(
                &self.origin.host,
                resp,
                method,
                path,
                login,
            ))
        }
    }

    fn authed<B>(&self, rb: RequestBuilder<B>) -> RequestBuilder<B> {
        match &self.auth {
            Auth::Session(live) => rb.header("X-Auth-Token", live.token.as_str()),
            Auth::Basic(value) => rb.header("Authorization", value.as_str()),
        }
    }

    fn malformed(&self, what: String) -> BmcError {
        BmcError::MalformedResponse {
            host: self.origin.host.clone(),
            what,
        }
    }
}

impl Drop for BmcSession {
    fn drop(&mut self) {
        if let Auth::Session(live) = &self.auth {
            // Best effort: the error path that dropped us is what the user needs to see.
            let _ = live.delete(BEST_EFFORT_LOGOUT_TIMEOUT.min(self.timeout), 0);
        }
    }
}

/// iLO's limits on a backup-file password.
fn check_file_password(p: &Password) -> Result<(), BmcError> {
    let reason = if p.is_empty() {
        "it is empty"
    } else if p.expose().chars().count() > MAX_FILE_PASSWORD_CHARS {
        "iLO accepts at most 32 characters"
    } else if p.expose().chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(BmcError::FilePassword {
        reason: reason.into(),
    })
}

/// The Sessions collection the service root names (`Links.Sessions`), and the root
/// itself for discovery. A root that cannot be read without credentials (some BMCs
/// protect it) leaves the DSP0266 default; a readable root without `Links.Sessions` is a
/// service without sessions.
fn sessions_uri(
    agent: &Agent,
    origin: &Origin,
    opts: &BmcOptions,
) -> Result<(String, Option<Value>), BmcError> {
    let host = &origin.host;
    let mut resp = retrying(opts.retries, || {
        let r = agent
            .get(format!("{}{SERVICE_ROOT}", origin.base))
            .header("Accept", "application/json")
            .header("OData-Version", "4.0")
            .call()
            .map_err(|e| classify(host, e, &format!("GET {SERVICE_ROOT}"), opts.timeout))?;
        if r.status().is_server_error() {
            return Err(error_from_response(host, r, "GET", SERVICE_ROOT, false));
        }
        Ok(r)
    })?;
    if !resp.status().is_success() {
        return Ok((SESSIONS_PATH.to_string(), None));
    }
    let bytes = read_capped(host, &mut resp, SERVICE_ROOT, opts.timeout)?;
    let root = parse_json(&bytes).map_err(|w| BmcError::MalformedResponse {
        host: host.clone(),
        what: format!("{SERVICE_ROOT}: {w}"),
    })?;
    match link_at(&root, &["Links", "Sessions"]) {
        Some(s) => {
            let path = path_of(s).map_err(|w| BmcError::MalformedResponse {
                host: host.clone(),
                what: format!("Links.Sessions: {w}"),
            })?;
            Ok((path, Some(root)))
        }
        None => Err(BmcError::NoSessions {
            host: host.clone(),
            detail: "its service root has no Links.Sessions".into(),
        }),
    }
}

/// Logs in, retrying with bounded backoff while the BMC answers `SessionLimitExceeded`
/// (a definite refusal: no session was made, so a retry cannot leak one).
fn login(
    agent: &Agent,
    origin: &Origin,
    opts: &BmcOptions,
    sessions: &str,
) -> Result<Arc<LiveSession>, BmcError> {
    let mut n = 0;
    loop {
        match login_once(agent, origin, opts, sessions) {
            Err(BmcError::SessionLimit { .. }) if n < opts.session_limit_retries => {
                std::thread::sleep(backoff(n));
                n += 1;
            }
            r => return r,
        }
    }
}

/// POSTs the credentials once (never retried after a lost answer) and registers the new
/// session before anything else can fail, so it is always logged out.
fn login_once(
    agent: &Agent,
    origin: &Origin,
    opts: &BmcOptions,
    sessions: &str,
) -> Result<Arc<LiveSession>, BmcError> {
    let host = &origin.host;
    let body = Zeroizing::new(
        serde_json::to_vec(&LoginBody {
            user: &opts.user,
            password: opts.password.expose(),
        })
        .map_err(|e| BmcError::Io {
            context: "cannot encode the login request".into(),
            source: io::Error::other(e.to_string()),
        })?,
    );
    let mut resp = agent
        .post(format!("{}{sessions}", origin.base))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .header("OData-Version", "4.0")
        .send(body.as_slice())
        .map_err(|e| classify(host, e, &format!("POST {sessions}"), opts.timeout))?;
    if matches!(resp.status().as_u16(), 404 | 405 | 501) {
        return Err(BmcError::NoSessions {
            host: host.clone(),
            detail: format!("POST {sessions} answered HTTP {}", resp.status().as_u16()),
        });
    }
    if !resp.status().is_success() {
        return Err(error_from_response(host, resp, "POST", sessions, true));
    }
    let token = header(&resp, "x-auth-token")
        .filter(|t| !t.is_empty() && t.len() <= 4096 && t.bytes().all(|b| b.is_ascii_graphic()))
        .map(Zeroizing::new);
    let location = match header(&resp, "location") {
        Some(l) => Some(l),
        // Some BMCs omit Location; the session resource names itself in the body.
        None => read_capped(host, &mut resp, sessions, opts.timeout)
            .ok()
            .and_then(|b| parse_json(&b).ok())
            .and_then(|v| str_at(&v, &["@odata.id"]).map(str::to_string)),
    };
    let (Some(token), Some(location)) = (token, location) else {
        return Err(BmcError::MalformedResponse {
            host: host.clone(),
            what: "the login answer lacks X-Auth-Token or Location".into(),
        });
    };
    let logout_url = origin
        .resolve(&location)
        .map_err(|w| BmcError::MalformedResponse {
            host: host.clone(),
            what: format!("session Location: {w}"),
        })?;
    let live = Arc::new(LiveSession {
        id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
        agent: agent.clone(),
        host: host.clone(),
        logout_url,
        token,
        done: AtomicBool::new(false),
    });
    registry().push(Arc::clone(&live));
    Ok(live)
}

/// The `multipart/form-data` parts of an iLO upload around the file's bytes: `head`
/// (session key, backup-file password if any, the file part's header) and `tail`.
/// `head` holds the token and the password, so it is wiped on drop.
fn upload_form(
    boundary: &str,
    token: &str,
    file_password: Option<&Password>,
    name: &str,
) -> (Zeroizing<Vec<u8>>, Vec<u8>) {
    let password_part = Zeroizing::new(match file_password {
        Some(p) => format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{}\r\n",
            p.expose()
        ),
        None => String::new(),
    });
    let head = Zeroizing::new(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"sessionKey\"\r\n\r\n{token}\r\n\
             {password_part}\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            password_part = password_part.as_str(),
        )
        .into_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    (head, tail)
}

/// Read and write buffer of each connection (ureq's own, and the TLS layer's). ureq's
/// default is 128 KiB each, zeroed on every new connection: at one connection per BMC
/// that is half a MiB of memset per pull for answers of a few KiB. The input buffer
/// also bounds the response header block (iLO's is well under 2 KiB); the backup
/// itself streams through it whatever its size.
const CONNECTION_BUFFER_BYTES: usize = 32 * 1024;

fn build_agent(opts: &BmcOptions) -> Result<Agent, BmcError> {
    use ureq::unversioned::transport::{
        ConnectProxyConnector, Connector, DefaultConnector, TcpConnector,
    };
    let trust = trust_of(opts)?;
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(trust.ureq)
        .proxy(proxy_of(opts)?)
        // Redirects are reported, not followed: a redirect could carry the token to
        // another origin, and iLO never redirects Redfish or backup URIs.
        .max_redirects(0)
        .timeout_global(Some(opts.timeout))
        .timeout_connect(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .timeout_per_write(Some(opts.timeout))
        .input_buffer_size(CONNECTION_BUFFER_BYTES)
        .output_buffer_size(CONNECTION_BUFFER_BYTES)
        .user_agent(concat!("vault/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(match trust.pinned {
        None => Agent::with_parts(config, DefaultConnector::new(), LiteralResolver::default()),
        Some(tls_config) => {
            let connector =
                ().chain(ConnectProxyConnector::default())
                    .chain(TcpConnector::default())
                    .chain(tls::TlsConnector { config: tls_config });
            Agent::with_parts(config, connector, LiteralResolver::default())
        }
    })
}

/// How the BMC's certificate is checked: by ureq (`--insecure`, WebPKI roots), or by our
/// own verifier (`pinned`: `--ca-cert`, `--tls-fingerprint`; see [`tls`]), which also
/// accepts the BMC's own self-signed certificate with the CA bit set.
struct Trust {
    ureq: ureq::tls::TlsConfig,
    pinned: Option<Arc<rustls::ClientConfig>>,
}

fn trust_of(opts: &BmcOptions) -> Result<Trust, BmcError> {
    use ureq::tls::{RootCerts, TlsConfig};
    let tls = TlsConfig::builder();
    if opts.insecure {
        return Ok(Trust {
            ureq: tls.disable_verification(true).build(),
            pinned: None,
        });
    }
    if opts.ca_cert.is_none() && opts.tls_fingerprints.is_empty() {
        return Ok(Trust {
            ureq: tls.root_certs(RootCerts::WebPki).build(),
            pinned: None,
        });
    }
    let certs = match &opts.ca_cert {
        Some(path) => read_ca_certs(path)?,
        None => Vec::new(),
    };
    let config = tls::client_config(tls::Trust {
        certs,
        pins: opts.tls_fingerprints.clone(),
    })
    .map_err(|reason| BmcError::CaCert {
        path: opts.ca_cert.clone().unwrap_or_default(),
        reason,
    })?;
    Ok(Trust {
        ureq: tls.build(),
        pinned: Some(config),
    })
}

/// The certificates of the PEM file `--ca-cert` names (at most 1 MiB, at least one).
fn read_ca_certs(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, BmcError> {
    use ureq::tls::PemItem;
    let ca_err = |reason: String| BmcError::CaCert {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| ca_err(e.to_string()))?;
    if meta.len() > 1 << 20 {
        return Err(ca_err("larger than 1 MiB, not a CA certificate".into()));
    }
    let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => {
                Some(rustls::pki_types::CertificateDer::from(c.der().to_vec()))
            }
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(ca_err("no PEM certificate found in it".into()));
    }
    Ok(certs)
}

/// `--proxy`: an HTTP CONNECT proxy, named in errors by host and port only.
fn proxy_of(opts: &BmcOptions) -> Result<Option<ureq::Proxy>, BmcError> {
    let Some(p) = &opts.proxy else {
        return Ok(None);
    };
    // Host and port only: a proxy URL may carry `user:password@`.
    let invalid = |reason: &str| BmcError::InvalidProxy {
        proxy: redfish::display_host(p),
        reason: reason.to_string(),
    };
    let proxy =
        ureq::Proxy::new(p).map_err(|_| invalid("use http://host:port (an HTTP CONNECT proxy)"))?;
    // Without ureq's `socks-proxy` feature a SOCKS proxy would be skipped and the
    // connection made directly: refuse rather than silently bypass it.
    if !matches!(
        proxy.protocol(),
        ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
    ) {
        return Err(invalid(
            "SOCKS proxies are not supported; use an HTTP CONNECT proxy (http://host:port)",
        ));
    }
    Ok(Some(proxy))
}

/// Resolves an IP-literal host (how fleets usually name their BMCs) by parsing it, and
/// anything else with ureq's resolver. ureq's resolver runs every lookup on a thread of
/// its own when a timeout is set (it always is here): a thread started and joined per
/// connection, which for IP literals resolves nothing.
#[derive(Debug, Default)]
struct LiteralResolver {
    names: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let literal = uri.authority().and_then(|a| {
            let host = a.host().trim_start_matches('[').trim_end_matches(']');
            let ip: std::net::IpAddr = host.parse().ok()?;
            let port = a.port_u16().or(match uri.scheme_str()? {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            })?;
            Some(std::net::SocketAddr::new(ip, port))
        });
        let Some(addr) = literal else {
            return self.names.resolve(uri, config, timeout);
        };
        let mut out = self.empty();
        for a in config.ip_family().keep_wanted(std::iter::once(addr)) {
            out.push(a);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// Runs `attempt` up to `1 + retries` times while it fails transiently, with exponential
/// backoff. Only for idempotent requests.
fn retrying<T>(
    retries: u32,
    mut attempt: impl FnMut() -> Result<T, BmcError>,
) -> Result<T, BmcError> {
    let mut n = 0;
    loop {
        match attempt() {
            Err(e) if e.is_transient() && n < retries => {
                std::thread::sleep(backoff(n));
                n += 1;
            }
            r => return r,
        }
    }
}

/// `200ms · 2^n`, capped at 5 s.
pub(crate) fn backoff(n: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP)
}

/// What a download's headers say about its length.
struct Length {
    /// No `Content-Encoding`: `claimed` counts the bytes that will arrive.
    identity: bool,
    /// `Content-Length`.
    claimed: Option<u64>,
}

/// The sink of a download behind the checks the bytes must pass on the way: the first
/// bytes are not an error page, the total stays under the cap, and the transfer keeps
/// a minimum rate over every `timeout` window (a BMC that trickles a byte a second
/// would otherwise hold a fleet slot for days). A refusal is kept in `refused` (the
/// `io::Error` only stops the copy), so the caller reports it rather than a write error.
struct GuardedSink<'a> {
    sink: &'a mut dyn Write,
    host: &'a str,
    path: &'a str,
    limit: u64,
    claimed: Option<u64>,
    timeout: Duration,
    /// Bytes a window must carry at least.
    floor: u64,
    total: u64,
    window_start: Instant,
    window_bytes: u64,
    refused: Option<BmcError>,
}

impl GuardedSink<'_> {
    fn accept(&mut self, chunk: &[u8]) -> Result<(), BmcError> {
        let host = self.host.to_string();
        if self.total == 0
            && let Some(what) = sniff_not_a_backup(chunk)
        {
            return Err(BmcError::NotABackup {
                host,
                path: self.path.to_string(),
                reason: what.into(),
            });
        }
        if self.total.saturating_add(chunk.len() as u64) > self.limit {
            return Err(BmcError::TooLarge {
                host,
                limit: self.limit,
                claimed: self.claimed,
            });
        }
        self.sink.write_all(chunk).map_err(|source| BmcError::Io {
            context: format!("cannot store the backup from BMC {host}"),
            source,
        })?;
        self.total += chunk.len() as u64;
        self.window_bytes += chunk.len() as u64;
        if self.window_start.elapsed() >= self.timeout {
            if self.window_bytes < self.floor {
                return Err(BmcError::Timeout {
                    host,
                    what: format!("download of {} stalled at {} bytes", self.path, self.total),
                    after: self.timeout,
                });
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(())
    }
}

impl Write for GuardedSink<'_> {
    fn write(&mut self, chunk: &[u8]) -> io::Result<usize> {
        match self.accept(chunk) {
            Ok(()) => Ok(chunk.len()),
            Err(e) => {
                self.refused = Some(e);
                Err(io::Error::other("download refused"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn text_field(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(redfish::sanitize)
}

fn read_capped(
    host: &str,
    resp: &mut Response<Body>,
    path: &str,
    timeout: Duration,
) -> Result<Vec<u8>, BmcError> {
    resp.body_mut()
        .with_config()
        .limit(MAX_JSON_BYTES)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => BmcError::MalformedResponse {
                host: host.to_string(),
                what: format!("{path}: body larger than {MAX_JSON_BYTES} bytes"),
            },
            e => classify(host, e, &format!("reading {path}"), timeout),
        })
}

/// Turns a non-2xx answer into an error, reading a bounded error body for its MessageId.
fn error_from_response(
    host: &str,
    mut resp: Response<Body>,
    method: &'static str,
    path: &str,
    during_login: bool,
) -> BmcError {
    let status = resp.status().as_u16();
    let location = header(&resp, "location");
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ERROR_BODY)
        .read_to_vec()
        .unwrap_or_default();
    let info = parse_error_body(&body);
    let host = host.to_string();
    // iLO's whole answer to a restore with a wrong or missing backup-file password.
    if body.trim_ascii() == redfish::INVALID_RESTORE_PASSWORD.as_bytes() {
        return BmcError::FilePasswordRejected { host };
    }
    if (300..400).contains(&status) {
        return BmcError::Redirect {
            host,
            path: path.to_string(),
            status,
            location: location.map(|l| redfish::sanitize(&l)).unwrap_or_default(),
        };
    }
    if redfish::is_session_limit(&info) {
        return BmcError::SessionLimit {
            host,
            message_id: info.message_id,
        };
    }
    if status == 401 || status == 403 {
        return BmcError::Auth {
            host,
            status,
            message_id: info.message_id,
            during_login,
        };
    }
    BmcError::Http {
        host,
        method,
        path: path.to_string(),
        status,
        message_id: info.message_id,
        message: info.message,
    }
}

/// Maps a transport error. TLS failures get their own variant because the fix
/// (`--ca-cert`) is specific.
fn classify(host: &str, e: ureq::Error, what: &str, timeout: Duration) -> BmcError {
    let host_s = host.to_string();
    match e {
        ureq::Error::Timeout(t) => BmcError::Timeout {
            host: host_s,
            what: format!("{what}: {t}"),
            after: timeout,
        },
        ureq::Error::Io(io) => classify_io(host, io, what, timeout),
        ureq::Error::Rustls(r) => BmcError::Tls {
            host: host_s,
            detail: r.to_string(),
        },
        ureq::Error::Tls(s) => BmcError::Tls {
            host: host_s,
            detail: s.to_string(),
        },
        ureq::Error::Pem(p) => BmcError::Tls {
            host: host_s,
            detail: p.to_string(),
        },
        ureq::Error::HostNotFound => BmcError::Connect {
            host: host_s,
            detail: "host name not found".into(),
        },
        ureq::Error::ConnectProxyFailed(m) => BmcError::Connect {
            host: host_s,
            detail: format!(
                "the proxy refused the connection: {}",
                redfish::sanitize(&m)
            ),
        },
        ureq::Error::InvalidProxyUrl => BmcError::InvalidProxy {
            proxy: String::new(),
            reason: "use http://host:port".into(),
        },
        ureq::Error::Protocol(p) => BmcError::MalformedResponse {
            host: host_s,
            what: format!("{what}: HTTP protocol error: {p}"),
        },
        ureq::Error::LargeResponseHeader(..) => BmcError::MalformedResponse {
            host: host_s,
            what: format!("{what}: response header too large"),
        },
        ureq::Error::BadUri(_) => BmcError::MalformedResponse {
            host: host_s,
            what: format!("{what}: invalid URI"),
        },
        other => BmcError::Connect {
            host: host_s,
            detail: format!("{what}: {other}"),
        },
    }
}

fn classify_io(host: &str, e: io::Error, what: &str, timeout: Duration) -> BmcError {
    if let Some(inner) = e.get_ref() {
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return BmcError::Tls {
                host: host.to_string(),
                detail: r.to_string(),
            };
        }
        if let Some(ureq::Error::Timeout(t)) = inner.downcast_ref::<ureq::Error>() {
            return BmcError::Timeout {
                host: host.to_string(),
                what: format!("{what}: {t}"),
                after: timeout,
            };
        }
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => BmcError::Timeout {
            host: host.to_string(),
            what: what.to_string(),
            after: timeout,
        },
        _ => BmcError::Connect {
            host: host.to_string(),
            detail: format!("{what}: {e}"),
        },
    }
}

/// Recognises an error page served with a binary content type.
fn sniff_not_a_backup(first: &[u8]) -> Option<&'static str> {
    let start = first
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(first.len());
    let head: Vec<u8> = first[start..]
        .iter()
        .take(16)
        .map(u8::to_ascii_lowercase)
        .collect();
    if head.starts_with(b"<!doctype html") || head.starts_with(b"<html") {
        return Some("an HTML page");
    }
    let probe = &first[start..first.len().min(start + 4096)];
    if head.starts_with(b"{") && probe.windows(7).any(|w| w == b"\"error\"") {
        return Some("a JSON error");
    }
    None
}

/// Yields exactly `remaining` bytes of `inner`; a short source is an error, not a short
/// upload (the multipart Content-Length was computed from the announced length).
struct ExactLen<'a> {
    inner: &'a mut dyn Read,
    remaining: u64,
    failed: &'a Cell<bool>,
}

impl Read for ExactLen<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failed.set(true);
                return Err(e);
            }
        };
        if n == 0 {
            self.failed.set(true);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the backup ended before its announced length",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(1), Duration::from_millis(400));
        assert_eq!(backoff(3), Duration::from_millis(1600));
        assert_eq!(backoff(10), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn error_pages_are_sniffed() {
        assert_eq!(
            sniff_not_a_backup(b"  <!DOCTYPE html><html>"),
            Some("an HTML page")
        );
        assert_eq!(sniff_not_a_backup(b"<HTML><body>"), Some("an HTML page"));
        assert_eq!(
            sniff_not_a_backup(br#"{"error":{"code":"x"}}"#),
            Some("a JSON error")
        );
        assert_eq!(sniff_not_a_backup(&[0x1f, 0x8b, 0, 1, 2]), None);
        assert_eq!(sniff_not_a_backup(b""), None);
    }

    #[test]
    fn exact_len_refuses_a_short_source() {
        let failed = Cell::new(false);
        let mut src: &[u8] = b"abc";
        let mut r = ExactLen {
            inner: &mut src,
            remaining: 5,
            failed: &failed,
        };
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        assert!(failed.get());
        let failed = Cell::new(false);
        let mut src: &[u8] = b"abcdef";
        let mut r = ExactLen {
            inner: &mut src,
            remaining: 4,
            failed: &failed,
        };
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn options_debug_hides_the_password() {
        let o = BmcOptions::new("https://x", "admin", Password::new("hunter2-secret".into()));
        let s = format!("{o:?}");
        assert!(!s.contains("hunter2"));
    }
}

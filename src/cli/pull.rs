//! `vault backup pull` and `vault backup restore`: the BMC side (Redfish / HPE iLO).
//!
//! Invariants:
//! - A backup goes from the BMC's socket straight into the sealing stream through a
//!   bounded in-memory channel (download thread → sealer): plaintext never touches the
//!   disk. The channel ends cleanly only when the download succeeded; any other end makes
//!   the sealer's reader fail, so the temporary archive is discarded and nothing is stored.
//! - Sealing runs without the home lock (a slow BMC must not block the home or the other
//!   pulls of a fleet); the lock is taken only for the final no-clobber rename.
//! - Restore authenticates the whole archive before it connects to the BMC, then streams a
//!   second decryption pass of the same open file straight into the request body.
//! - Every BMC session is logged out on every path: `logout` on success, the client's
//!   `Drop` on errors, and on Ctrl-C the SIGINT handler, which also removes this process's
//!   temporary archive files (a `process::exit` skips destructors) and exits with 130.
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use clap::{ArgGroup, Args};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::backup::{backup_json, file_err, key_lookup, sealing_key};
use super::event;
use super::{CliError, CliResult, Ctx, ScopeArgs, password};
use crate::audit::AuditEvent;
use crate::bmc::client::DEFAULT_MAX_BACKUP_BYTES;
use crate::bmc::redfish::{Origin, sanitize};
use crate::bmc::{AuthMode, BmcError, BmcOptions, BmcSession};
use crate::envelope::{self, ArchiveHeader, Inspection, Source};
use crate::errors::Kind;
use crate::keystore::{Home, KeyStore, Scope};
use crate::secret::Password;
use crate::store::{self, ArchiveStore, archive_err};

/// Chunks in flight between the download (or decryption) thread and its consumer.
const CHANNEL_DEPTH: usize = 16;
/// Largest fleet inventory file read.
const MAX_INVENTORY_BYTES: u64 = 4 << 20;
/// Largest number of BMCs in one inventory.
const MAX_INVENTORY_ENTRIES: usize = 10_000;
pub const RESTORE_NOTE: &str = "iLO resets after a restore and is unreachable for a few minutes while it applies the configuration";

/// How to reach and log in to a BMC (shared by pull and restore).
#[derive(Args, Clone)]
pub struct ConnArgs {
    /// BMC account.
    #[arg(
        long,
        value_name = "U",
        env = "VAULT_BMC_USER",
        default_value = "Administrator"
    )]
    bmc_user: String,
    /// Read the BMC password from this file (mode 0600) instead of VAULT_BMC_PASSWORD or a prompt.
    #[arg(long, value_name = "P")]
    bmc_password_file: Option<PathBuf>,
    /// PEM file with the CA (or self-signed certificate) that signed the BMC's certificate.
    #[arg(long, value_name = "F", conflicts_with = "insecure")]
    ca_cert: Option<PathBuf>,
    /// Do not verify the BMC's TLS certificate (anyone on the path could read the backup
    /// and the password); prefer --ca-cert.
    #[arg(long)]
    insecure: bool,
    /// Redfish session login (logged out at the end) or HTTP Basic on each request.
    #[arg(long, value_enum, default_value_t = AuthArg::Session)]
    auth: AuthArg,
    /// Seconds allowed for connecting, each read and each request.
    #[arg(long, value_name = "S", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Extra attempts of idempotent requests after a transient failure.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    retries: u32,
    /// HTTP CONNECT proxy (http://host:port); *_PROXY variables are ignored.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthArg {
    Session,
    Basic,
}

impl From<AuthArg> for AuthMode {
    fn from(a: AuthArg) -> AuthMode {
        match a {
            AuthArg::Session => AuthMode::Session,
            AuthArg::Basic => AuthMode::Basic,
        }
    }
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["bmc", "inventory"])))]
#[command(
    after_help = "Inventory (TOML; JSON with the same fields, as a list or {\"bmc\": [...]}):\n  \
[[bmc]]\n  \
url = \"https://ilo-rack1-01\"\n  \
user = \"backup\"             # default: --bmc-user\n  \
password_file = \"ilo.pw\"    # or password_env = \"ILO_PW\"\n  \
ca_cert = \"ilo-ca.pem\"      # or insecure = true\n  \
scope = \"domain\"            # also: domain, key, description,\n  \
domain = \"rack1\"            #       auth, timeout, retries, proxy\n\
Unset fields take the command-line value; relative paths are relative to the inventory."
)]
pub struct PullArgs {
    /// BMC base URL, e.g. https://ilo-host
    #[arg(long, value_name = "URL")]
    bmc: Option<String>,
    /// Pull a fleet: a TOML or JSON file (by extension) listing BMCs.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// BMCs pulled at the same time (fleet only).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    #[command(flatten)]
    conn: ConnArgs,
    /// Largest backup accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BACKUP_BYTES)]
    max_size: u64,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Seal under this key instead of the scope's default.
    #[arg(long, value_name = "ID")]
    key: Option<String>,
    /// Description stored in the archive (default: "backup of BMC <host>").
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The archive to restore.
    #[arg(long, value_name = "ID")]
    id: String,
    /// BMC base URL, e.g. https://ilo-host
    #[arg(long, value_name = "URL")]
    bmc: String,
    #[command(flatten)]
    conn: ConnArgs,
    /// Restore even if the BMC's server serial differs from the archive's (board replacement).
    #[arg(long)]
    allow_different_system: bool,
    /// Do not ask for confirmation (the BMC resets after a restore).
    #[arg(long)]
    yes: bool,
}

// ---------------------------------------------------------------------------------------
// The channel between a producer thread and a `Read` consumer

enum Msg {
    Data(Vec<u8>),
    /// The producer finished successfully; anything else (a dropped sender) is a failure.
    End,
}

/// The producing end: every write becomes one message; a vanished reader is `BrokenPipe`.
struct ChannelWriter {
    tx: SyncSender<Msg>,
    progress: ProgressBar,
}

impl ChannelWriter {
    /// Declares the stream complete. Not calling it makes the reader fail at the end.
    fn end(self) {
        let _ = self.tx.send(Msg::End);
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .send(Msg::Data(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the consumer stopped"))?;
        self.progress.inc(buf.len() as u64);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The consuming end: EOF only after `Msg::End`; a producer that stopped without it
/// (failed or panicked) is an error, so a partial stream can never look complete.
struct ChannelReader {
    rx: Receiver<Msg>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
    what: &'static str,
}

fn channel(what: &'static str, progress: ProgressBar) -> (ChannelWriter, ChannelReader) {
    let (tx, rx) = sync_channel(CHANNEL_DEPTH);
    (
        ChannelWriter { tx, progress },
        ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
            what,
        },
    )
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(v)) => {
                    self.buf = v;
                    self.pos = 0;
                }
                Ok(Msg::End) => self.done = true,
                Err(_) => return Err(io::Error::other(format!("{} failed", self.what))),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// Pull

/// Everything needed to pull one BMC into one archive.
pub struct PullJob {
    pub opts: BmcOptions,
    pub scope: Scope,
    pub domain: Option<String>,
    pub key: Option<String>,
    pub description: Option<String>,
}

/// A stored pull.
pub struct Pulled {
    pub inspection: Inspection,
    pub key_id: Uuid,
    pub host: String,
    /// Set when the backup is stored but the session could not be deleted.
    pub logout_warning: Option<String>,
}

/// `host[:port]` of a BMC URL for messages and audit records, before connecting.
/// Never echoes credentials someone put in the URL (the client refuses such URLs).
pub fn host_of(url: &str) -> String {
    Origin::parse(url).map(|o| o.host).unwrap_or_else(|_| {
        let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        sanitize(host)
    })
}

/// Pulls one backup into a new archive of `home`. Prints nothing.
pub fn pull_one(
    home: &Home,
    account: &str,
    job: PullJob,
    progress: &ProgressBar,
) -> CliResult<Pulled> {
    let ks = KeyStore::new(home);
    // Resolve the key before logging in: a wrong --key must not cost a BMC session.
    let (key, material) = sealing_key(&ks, job.scope, job.domain.as_deref(), job.key.as_deref())?;
    let mut session = BmcSession::connect(job.opts)?;
    let host = session.host().to_string();
    progress.set_message(format!("{host}: discovering"));
    let svc = session.discover()?;
    let file = session.request_backup(&svc)?;
    let m = &svc.manager;
    let source = Source {
        bmc_host: Some(m.host.clone()),
        manager_model: m.model.clone(),
        firmware_version: m.firmware.clone(),
        serial_number: m.serial.clone(),
        file_name: Some(file.file_name.clone()),
        backup_file_location: Some(file.backup_file_location.clone()),
    };
    let description = job
        .description
        .clone()
        .unwrap_or_else(|| format!("backup of BMC {host}"));
    let header = ArchiveHeader::new(job.scope, job.domain, account, &description, Some(source));
    progress.set_message(format!("{host}: downloading {}", file.file_name));

    let store = ArchiveStore::new(home);
    let (writer, reader) = channel("the download from the BMC", progress.clone());
    let mut temp: Option<PathBuf> = None;
    let (download, staged) = std::thread::scope(|s| {
        let session = &mut session;
        let file = &file;
        let dl = s.spawn(move || {
            let mut writer = writer;
            let r = session.download_file(file, &mut writer);
            if r.is_ok() {
                writer.end();
            }
            r
        });
        let staged = store.seal_unlocked(&header, key.id, &material, reader, &mut |p| {
            temp = Some(p.to_path_buf());
        });
        (dl.join(), staged)
    });
    let committed = (|| -> CliResult<PathBuf> {
        let download =
            download.map_err(|_| CliError::new(Kind::Internal, "the download thread panicked"))?;
        let staged = match (download, staged) {
            // The sink failed because sealing failed (disk full, …): that is the cause.
            (Err(BmcError::Io { .. }), Err(seal)) => return Err(seal.into()),
            (Err(e), _) => return Err(e.into()),
            (Ok(_), staged) => staged?,
        };
        let lock = home.lock()?;
        Ok(staged.commit(&lock)?.1)
    })();
    let path = committed?;
    let logout_warning = session.logout().err().map(|e| e.to_string());
    Ok(Pulled {
        inspection: store::inspect_file(&path)?,
        key_id: key.id,
        host,
        logout_warning,
    })
}

fn progress_bar(on_tty: bool) -> ProgressBar {
    if !on_tty {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn bmc_options(
    url: &str,
    user: &str,
    password: Password,
    conn: &ConnArgs,
    max_size: u64,
) -> BmcOptions {
    let mut o = BmcOptions::new(url, user, password);
    o.auth = conn.auth.into();
    o.ca_cert = conn.ca_cert.clone();
    o.insecure = conn.insecure;
    o.timeout = Duration::from_secs(conn.timeout);
    o.retries = conn.retries;
    o.proxy = conn.proxy.clone();
    o.max_backup_bytes = max_size;
    o
}

fn bmc_password(conn: &ConnArgs) -> CliResult<Password> {
    Ok(password::obtain(
        conn.bmc_password_file.as_deref(),
        "VAULT_BMC_PASSWORD",
        "BMC password",
        false,
    )?)
}

fn insecure_warning(ctx: &Ctx, what: &str) {
    ctx.notice(&format!(
        "warning: --insecure: the TLS certificate of {what} is not verified; anyone on the network path could read the backup and the password (use --ca-cert)"
    ));
}

fn pulled_audit<'a>(host: &str, r: &CliResult<Pulled>) -> AuditEvent<'a> {
    AuditEvent {
        bmc_host: Some(host.to_string()),
        archive_id: r.as_ref().ok().map(|p| p.inspection.header.id.to_string()),
        key_id: r.as_ref().ok().map(|p| p.key_id.to_string()),
        ..event("backup.pull")
    }
}

pub fn pull(ctx: &Ctx, a: PullArgs) -> CliResult {
    if let Some(inv) = &a.inventory {
        return pull_fleet(ctx, &a, inv);
    }
    let url = a.bmc.clone().expect("clap requires --bmc or --inventory");
    let (scope, domain) = a.scope.resolve(Scope::System)?;
    if a.conn.insecure {
        insecure_warning(ctx, &format!("BMC {}", host_of(&url)));
    }
    let home = ctx.home()?;
    let host = host_of(&url);
    let r = (|| {
        let password = bmc_password(&a.conn)?;
        let job = PullJob {
            opts: bmc_options(&url, &a.conn.bmc_user, password, &a.conn, a.max_size),
            scope,
            domain,
            key: a.key.clone(),
            description: a.description.clone(),
        };
        let pb = progress_bar(io::stderr().is_terminal());
        let r = pull_one(&home, &ctx.account, job, &pb);
        pb.finish_and_clear();
        r
    })();
    ctx.audit(pulled_audit(&host, &r), &r);
    let p = r?;
    if let Some(w) = &p.logout_warning {
        ctx.notice(&format!(
            "warning: the backup is stored but the session was not deleted: {w}"
        ));
    }
    ctx.print(&backup_json(&p.inspection))
}

// ---------------------------------------------------------------------------------------
// Fleet

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inventory {
    #[serde(default)]
    bmc: Vec<InventoryEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryEntry {
    url: String,
    user: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    ca_cert: Option<PathBuf>,
    insecure: Option<bool>,
    auth: Option<AuthArg>,
    timeout: Option<u64>,
    retries: Option<u32>,
    proxy: Option<String>,
    scope: Option<String>,
    domain: Option<String>,
    key: Option<String>,
    description: Option<String>,
}

fn usage(msg: String) -> CliError {
    CliError::new(Kind::Usage, msg)
}

fn read_inventory(path: &Path) -> CliResult<Vec<InventoryEntry>> {
    let f = File::open(path).map_err(|e| file_err(path, e))?;
    let mut text = String::new();
    f.take(MAX_INVENTORY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| file_err(path, e))?;
    if text.len() as u64 > MAX_INVENTORY_BYTES {
        return Err(usage(format!(
            "inventory {} is larger than {MAX_INVENTORY_BYTES} bytes",
            path.display()
        )));
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let bad = |e: String| {
        usage(format!(
            "inventory {} is not valid: {e}; see 'vault backup pull --help' for the format",
            path.display()
        ))
    };
    let entries = match ext.as_str() {
        "toml" => {
            toml::from_str::<Inventory>(&text)
                .map_err(|e| bad(e.to_string()))?
                .bmc
        }
        "json" => {
            let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            if v.is_array() {
                serde_json::from_value(v).map_err(|e| bad(e.to_string()))?
            } else {
                serde_json::from_value::<Inventory>(v)
                    .map_err(|e| bad(e.to_string()))?
                    .bmc
            }
        }
        _ => {
            return Err(usage(format!(
                "inventory {} must end in .toml or .json",
                path.display()
            )));
        }
    };
    if entries.is_empty() {
        return Err(bad("it lists no BMC ([[bmc]] entries)".into()));
    }
    if entries.len() > MAX_INVENTORY_ENTRIES {
        return Err(bad(format!("more than {MAX_INVENTORY_ENTRIES} BMCs")));
    }
    Ok(entries)
}

/// Turns one inventory entry into a job; `shared` is the command-line password.
fn fleet_job(
    e: &InventoryEntry,
    base: &Path,
    a: &PullArgs,
    shared: Option<&Password>,
) -> CliResult<PullJob> {
    let rel = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let password = match (&e.password_file, &e.password_env) {
        (Some(f), _) => crate::ops::password::from_file(&rel(f))?,
        (None, Some(var)) => Password::new(std::env::var(var).map_err(|_| {
            usage(format!(
                "the environment variable {var} named by password_env is not set"
            ))
        })?),
        (None, None) => Password::new(
            shared
                .map(|p| p.expose().to_string())
                .ok_or_else(|| usage("no password for this BMC".into()))?,
        ),
    };
    if password.is_empty() {
        return Err(usage("the BMC password is empty".into()));
    }
    let scope_args = ScopeArgs {
        scope: match e.scope.as_deref() {
            None => a.scope.scope,
            Some("system") => Some(super::ScopeArg::System),
            Some("domain") => Some(super::ScopeArg::Domain),
            Some(other) => {
                return Err(usage(format!(
                    "scope {other:?}: use \"system\" or \"domain\""
                )));
            }
        },
        domain: e.domain.clone().or_else(|| a.scope.domain.clone()),
    };
    let (scope, domain) = scope_args.resolve(Scope::System)?;
    let mut conn = a.conn.clone();
    if let Some(c) = &e.ca_cert {
        conn.ca_cert = Some(rel(c));
        conn.insecure = false;
    }
    if let Some(i) = e.insecure {
        conn.insecure = i;
    }
    if let Some(x) = e.auth {
        conn.auth = x;
    }
    if let Some(t) = e.timeout {
        conn.timeout = t.clamp(1, 3600);
    }
    if let Some(r) = e.retries {
        conn.retries = r.min(10);
    }
    if e.proxy.is_some() {
        conn.proxy = e.proxy.clone();
    }
    let user = e.user.as_deref().unwrap_or(&a.conn.bmc_user);
    Ok(PullJob {
        opts: bmc_options(&e.url, user, password, &conn, a.max_size),
        scope,
        domain,
        key: e.key.clone().or_else(|| a.key.clone()),
        description: e.description.clone().or_else(|| a.description.clone()),
    })
}

fn pull_fleet(ctx: &Ctx, a: &PullArgs, inventory: &Path) -> CliResult {
    let entries = read_inventory(inventory)?;
    let base = inventory
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let needs_shared = entries
        .iter()
        .any(|e| e.password_file.is_none() && e.password_env.is_none());
    let shared = if needs_shared {
        Some(bmc_password(&a.conn)?)
    } else {
        None
    };
    let insecure: Vec<String> = entries
        .iter()
        .filter(|e| e.insecure.unwrap_or(a.conn.insecure && e.ca_cert.is_none()))
        .map(|e| host_of(&e.url))
        .collect();
    if !insecure.is_empty() {
        let mut list = insecure
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if insecure.len() > 5 {
            list.push_str(", …");
        }
        insecure_warning(ctx, &format!("{} BMC(s) ({list})", insecure.len()));
    }
    let home = ctx.home()?;
    let jobs: Vec<Mutex<Option<CliResult<PullJob>>>> = entries
        .iter()
        .map(|e| Mutex::new(Some(fleet_job(e, &base, a, shared.as_ref()))))
        .collect();
    drop(shared);
    let n = entries.len();
    let results: Vec<Mutex<Option<Value>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let on_tty = io::stderr().is_terminal();
    let bar = if on_tty {
        let pb = ProgressBar::new(n as u64);
        pb.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} BMCs  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let workers = usize::from(a.parallel).min(n);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let url = &entries[i].url;
                    let host = host_of(url);
                    let job = jobs[i]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take()
                        .expect("each job is taken once");
                    let r = job.and_then(|job| {
                        pull_one(&home, &ctx.account, job, &ProgressBar::hidden())
                    });
                    ctx.audit(pulled_audit(&host, &r), &r);
                    let v = match &r {
                        Ok(p) => {
                            if let Some(w) = &p.logout_warning {
                                bar.suspend(|| {
                                    ctx.notice(&format!("warning: {}: {w}", p.host))
                                });
                            }
                            let h = &p.inspection.header;
                            json!({
                                "bmc": url,
                                "status": "ok",
                                "archiveId": h.id,
                                "backupKeyId": p.key_id,
                                "size": p.inspection.plaintext_size,
                                "serialNumber": h.source.as_ref().and_then(|s| s.serial_number.clone()),
                            })
                        }
                        Err(e) => {
                            bar.suspend(|| ctx.notice(&format!("{host}: {}", e.message)));
                            json!({
                                "bmc": url,
                                "status": "failed",
                                "error": e.message,
                                "errorKind": e.kind.name(),
                            })
                        }
                    };
                    *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(v);
                    bar.set_message(host);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let results: Vec<Value> = results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or(json!({"status": "failed", "error": "not attempted"}))
        })
        .collect();
    let failed = results.iter().filter(|r| r["status"] != "ok").count();
    ctx.print(&json!({
        "total": n,
        "succeeded": n - failed,
        "failed": failed,
        "results": results,
    }))?;
    if failed > 0 {
        return Err(CliError::new(
            Kind::Bmc,
            format!(
                "{failed} of {n} BMC(s) failed (listed in the output); the others were archived"
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Restore

/// A completed restore.
pub struct Restored {
    pub archive_id: Uuid,
    pub key_id: Uuid,
    pub host: String,
    pub bytes: u64,
    pub file_name: String,
    pub bmc_serial: Option<String>,
    pub archive_serial: Option<String>,
}

/// What the confirmation step is shown before anything is sent.
pub struct RestorePlan<'a> {
    pub archive_id: Uuid,
    pub host: &'a str,
    pub serial: Option<&'a str>,
    pub created_at: &'a str,
}

/// Verifies the archive at `path` completely, checks that the BMC is the system it came
/// from (unless `allow_different_system`), asks `confirm`, then streams the plaintext
/// into the BMC's restore endpoint. Prints nothing.
pub fn restore_one(
    home: &Home,
    path: &Path,
    opts: BmcOptions,
    allow_different_system: bool,
    confirm: &dyn Fn(&RestorePlan<'_>) -> CliResult,
    progress: &ProgressBar,
) -> CliResult<Restored> {
    let ks = KeyStore::new(home);
    let lookup = key_lookup(&ks)?;
    // One open file for both passes, so the bytes sent are those that were verified
    // (short of someone rewriting the file in place, which pass 2 detects as tampering).
    let mut f = crate::store::open_archive(path).map_err(|e| file_err(path, e))?;
    let verified = envelope::verify(BufReader::with_capacity(envelope::READ_BUFFER, &f), &lookup)
        .map_err(archive_err(path))?;
    let archive_serial = verified
        .header
        .source
        .as_ref()
        .and_then(|s| s.serial_number.clone());
    let file_name = verified
        .header
        .source
        .as_ref()
        .and_then(|s| s.file_name.clone())
        .unwrap_or_else(|| format!("{}.bak", verified.header.id));

    let mut session = BmcSession::connect(opts)?;
    let host = session.host().to_string();
    let svc = session.discover()?;
    let bmc_serial = svc.manager.serial.clone();
    if !allow_different_system {
        match (&archive_serial, &bmc_serial) {
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
            (Some(a), Some(b)) => {
                return Err(CliError::new(
                    Kind::Refused,
                    format!(
                        "archive {} came from the server with serial {a}, but BMC {host} manages serial {b}; nothing was sent. If the system board was replaced, pass --allow-different-system",
                        verified.header.id
                    ),
                ));
            }
            (None, _) => {
                return Err(CliError::new(
                    Kind::Refused,
                    format!(
                        "archive {} does not record the serial number of the server it came from, so BMC {host} cannot be checked; nothing was sent. Pass --allow-different-system to restore it anyway",
                        verified.header.id
                    ),
                ));
            }
            (Some(a), None) => {
                return Err(CliError::new(
                    Kind::Refused,
                    format!(
                        "BMC {host} does not report its server's serial number, so it cannot be checked against the archive's ({a}); nothing was sent. Pass --allow-different-system to restore anyway"
                    ),
                ));
            }
        }
    }
    confirm(&RestorePlan {
        archive_id: verified.header.id,
        host: &host,
        serial: archive_serial.as_deref(),
        created_at: &verified.header.created_at,
    })?;

    f.seek(SeekFrom::Start(0)).map_err(|e| file_err(path, e))?;
    progress.set_message(format!("{host}: uploading {file_name}"));
    let (writer, mut reader) = channel("decrypting the archive", progress.clone());
    let size = verified.plaintext_size;
    progress.set_length(size);
    let (sent, opened) = std::thread::scope(|s| {
        let f = &f;
        let lookup = &lookup;
        let dec = s.spawn(move || {
            let mut writer = writer;
            let r = envelope::open(
                BufReader::with_capacity(envelope::READ_BUFFER, f),
                lookup,
                &mut writer,
            );
            if r.is_ok() {
                writer.end();
            }
            r
        });
        let sent = session.restore(&svc, &file_name, &mut reader, size);
        // Unblocks the decryption thread if the upload stopped early.
        drop(reader);
        (sent, dec.join())
    });
    match opened {
        Err(_) => {
            return Err(CliError::new(
                Kind::Internal,
                "the decryption thread panicked",
            ));
        }
        Ok(Err(e)) => {
            // The upload was cut short, so the BMC got an incomplete request and
            // rejects it; only a file changed since pass 1 (or a vanished BMC) gets here.
            if sent.is_ok() {
                return Err(archive_err(path)(e).into());
            }
        }
        Ok(Ok(_)) => {}
    }
    sent?;
    // iLO resets after a restore; a failed logout then is expected and harmless.
    let _ = session.logout();
    Ok(Restored {
        archive_id: verified.header.id,
        key_id: verified.key_id,
        host,
        bytes: size,
        file_name,
        bmc_serial,
        archive_serial,
    })
}

fn confirm_on_tty(yes: bool) -> impl Fn(&RestorePlan<'_>) -> CliResult {
    move |plan| {
        if yes {
            return Ok(());
        }
        if !io::stdin().is_terminal() {
            return Err(CliError::new(
                Kind::Usage,
                format!(
                    "restoring resets BMC {}: pass --yes to confirm (there is no terminal to ask)",
                    plan.host
                ),
            ));
        }
        eprint!(
            "Restore archive {} (serial {}, created {}) to BMC {}? {RESTORE_NOTE}. Type 'yes' to continue: ",
            plan.archive_id,
            plan.serial.unwrap_or("unknown"),
            plan.created_at,
            plan.host
        );
        let _ = io::stderr().flush();
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::new(Kind::Io, format!("cannot read the answer: {e}")))?;
        if line.trim().eq_ignore_ascii_case("yes") {
            Ok(())
        } else {
            Err(CliError::new(
                Kind::Refused,
                "restore cancelled; nothing was sent",
            ))
        }
    }
}

pub fn restore(ctx: &Ctx, a: RestoreArgs) -> CliResult {
    let home = ctx.home()?;
    let host = host_of(&a.bmc);
    if a.conn.insecure {
        insecure_warning(ctx, &format!("BMC {host}"));
    }
    if a.conn.auth == AuthArg::Basic {
        return Err(BmcError::RestoreNeedsSession { host }.into());
    }
    if !a.yes && !io::stdin().is_terminal() {
        return Err(CliError::new(
            Kind::Usage,
            format!(
                "restoring resets BMC {host}: pass --yes to confirm (there is no terminal to ask)"
            ),
        ));
    }
    let mut archive_id = None;
    let r = (|| {
        let (id, path) = ArchiveStore::new(&home).find(&a.id)?;
        archive_id = Some(id.to_string());
        let password = bmc_password(&a.conn)?;
        let opts = bmc_options(&a.bmc, &a.conn.bmc_user, password, &a.conn, 0);
        // The bar starts after the confirmation prompt, so it does not draw over it.
        let pb = ProgressBar::hidden();
        let confirm = |plan: &RestorePlan<'_>| {
            confirm_on_tty(a.yes)(plan)?;
            if io::stderr().is_terminal() {
                pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {bytes}/{total_bytes}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.enable_steady_tick(Duration::from_millis(120));
            }
            Ok(())
        };
        let r = restore_one(&home, &path, opts, a.allow_different_system, &confirm, &pb);
        pb.finish_and_clear();
        r
    })();
    ctx.audit(
        AuditEvent {
            bmc_host: Some(host),
            archive_id: r
                .as_ref()
                .ok()
                .map(|x| x.archive_id.to_string())
                .or(archive_id),
            key_id: r.as_ref().ok().map(|x| x.key_id.to_string()),
            ..event("backup.restore")
        },
        &r,
    );
    let x = r?;
    ctx.print(&restored_json(&x))
}

pub fn restored_json(x: &Restored) -> Value {
    json!({
        "id": x.archive_id,
        "bmc": x.host,
        "restored": true,
        "bytes": x.bytes,
        "fileName": x.file_name,
        "serialNumber": x.bmc_serial,
        "archiveSerialNumber": x.archive_serial,
        "note": RESTORE_NOTE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ends_cleanly_only_after_end() {
        let (mut w, mut r) = channel("test", ProgressBar::hidden());
        let t = std::thread::spawn(move || {
            w.write_all(b"hello ").unwrap();
            w.write_all(b"world").unwrap();
            w.end();
        });
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        t.join().unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn channel_without_end_is_an_error_not_eof() {
        let (mut w, mut r) = channel("the download", ProgressBar::hidden());
        let t = std::thread::spawn(move || {
            w.write_all(b"partial").unwrap();
            drop(w);
        });
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        t.join().unwrap();
        assert!(err.to_string().contains("the download failed"), "{err}");
    }

    #[test]
    fn writer_fails_when_reader_is_gone() {
        let (mut w, r) = channel("x", ProgressBar::hidden());
        drop(r);
        assert_eq!(w.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn inventories_parse_in_toml_and_json() {
        let t = tempfile::tempdir().unwrap();
        let toml_path = t.path().join("fleet.toml");
        std::fs::write(
            &toml_path,
            "[[bmc]]\nurl = \"https://a\"\ninsecure = true\n\n[[bmc]]\nurl = \"https://b\"\nscope = \"domain\"\ndomain = \"r1\"\n",
        )
        .unwrap();
        let e = read_inventory(&toml_path).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].domain.as_deref(), Some("r1"));
        let json_path = t.path().join("fleet.json");
        std::fs::write(&json_path, r#"[{"url":"https://a","auth":"basic"}]"#).unwrap();
        assert_eq!(
            read_inventory(&json_path).unwrap()[0].auth,
            Some(AuthArg::Basic)
        );
        std::fs::write(&json_path, r#"{"bmc":[{"url":"https://a","bogus":1}]}"#).unwrap();
        assert!(read_inventory(&json_path).is_err());
        let other = t.path().join("fleet.yaml");
        std::fs::write(&other, "x").unwrap();
        assert!(read_inventory(&other).is_err());
    }

    #[test]
    fn host_of_names_the_bmc() {
        assert_eq!(host_of("https://10.0.0.5:8443"), "10.0.0.5:8443");
        assert_eq!(host_of("https://10.0.0.5/redfish/v1/"), "10.0.0.5");
        assert_eq!(host_of("https://10.0.0.5:8443/other"), "10.0.0.5:8443");
        let h = host_of("https://root:hunter2@ilo-7/");
        assert_eq!(h, "ilo-7");
    }
}

//! `vault backup pull` and `vault backup restore`: arguments, inventories and printing
//! for the BMC operations of [`crate::ops::pull`] and [`crate::ops::restore`] (which hold
//! the invariants: one thread from socket to sealed archive, verify before restore,
//! sessions logged out on every path).
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgGroup, Args};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use super::progress::Bar;
use super::records::{Archive, FleetItem, FleetReport, Pushed, RESTORE_NOTE, RestoredRecord};
use super::{CliError, CliResult, Ctx, ScopeArgs, password};
use crate::bmc::redfish::Origin;
use crate::bmc::tls::Fingerprint;
use crate::bmc::{AuthMode, BmcError, BmcOptions};
use crate::errors::Kind;
use crate::keystore::Scope;
use crate::ops::OpsError;
use crate::ops::fleet::{self as ops_fleet, FLEET_SESSION_LIMIT_RETRIES, FleetJob, FleetOutcome};
use crate::ops::pull::{
    self as op_pull, DEFAULT_MAX_BACKUP_BYTES, DownloadMethod, PullJob, host_of,
};
use crate::ops::remote as ops_remote;
use crate::ops::restore::{self as op_restore, RestorePlan};
use crate::remote::Remote;
use crate::secret::Password;

/// How to reach and log in to a BMC (shared by pull and restore).
#[derive(Args, Clone)]
pub struct ConnArgs {
    /// BMC account [default: Administrator; env VAULT_BMC_USER, or bmc-user in config.toml].
    #[arg(long, value_name = "U")]
    bmc_user: Option<String>,
    /// Read the BMC password from this file (mode 0600) instead of VAULT_BMC_PASSWORD or a prompt.
    #[arg(long, value_name = "P")]
    bmc_password_file: Option<PathBuf>,
    /// PEM file with the CA (or self-signed certificate) that signed the BMC's certificate
    /// [env VAULT_CA_CERT, or ca-cert in config.toml].
    #[arg(long, value_name = "F", conflicts_with = "insecure")]
    ca_cert: Option<PathBuf>,
    /// Do not verify the BMC's TLS certificate (anyone on the path could read the backup
    /// and the password); prefer --ca-cert.
    #[arg(long)]
    insecure: bool,
    /// Redfish session login (logged out at the end) or HTTP Basic on each request.
    #[arg(long, value_enum, default_value_t = AuthArg::Session)]
    auth: AuthArg,
    /// Seconds allowed for connecting, each read and each request [default: 30; env
    /// VAULT_TIMEOUT, or timeout in config.toml].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: Option<u64>,
    /// Extra attempts of idempotent requests after a transient failure [default: 2; env
    /// VAULT_RETRIES, or retries in config.toml].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10))]
    retries: Option<u32>,
    /// HTTP CONNECT proxy (http://host:port); *_PROXY variables are ignored.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Pin the BMC's certificate by its SHA-256 (as `openssl x509 -fingerprint -sha256`
    /// prints it), alone or with --ca-cert; for BMCs whose certificate changes.
    #[arg(long, value_name = "sha256:HEX", conflicts_with = "insecure",
          value_parser = parse_pin)]
    tls_fingerprint: Option<Fingerprint>,
    /// Allow a plain http:// BMC URL: the password, the session token and the backup
    /// cross the network unencrypted (a warning is printed every time).
    #[arg(long)]
    allow_http: bool,
}

fn parse_pin(s: &str) -> Result<Fingerprint, String> {
    crate::bmc::tls::parse_fingerprint(s)
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadArg {
    /// GET the file (as HPE documents), POST if the BMC refuses the GET.
    Auto,
    Get,
    /// POST a sessionKey form field, as HPE's iLOrest does.
    Post,
}

impl From<DownloadArg> for DownloadMethod {
    fn from(a: DownloadArg) -> DownloadMethod {
        match a {
            DownloadArg::Auto => DownloadMethod::Auto,
            DownloadArg::Get => DownloadMethod::Get,
            DownloadArg::Post => DownloadMethod::Post,
        }
    }
}

impl ConnArgs {
    /// Fills what no flag gave from the environment, then config.toml (flag > env >
    /// file > default). A configured CA does not apply under --insecure.
    fn resolve(&mut self, d: &super::everyday::BmcDefaults) {
        if self.bmc_user.is_none() {
            self.bmc_user.clone_from(&d.user);
        }
        if self.ca_cert.is_none() && !self.insecure {
            self.ca_cert.clone_from(&d.ca_cert);
        }
        self.timeout = self.timeout.or(d.timeout);
        self.retries = self.retries.or(d.retries);
    }

    fn user(&self) -> &str {
        self.bmc_user
            .as_deref()
            .unwrap_or(super::everyday::DEFAULT_BMC_USER)
    }
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
domain = \"rack1\"            #       auth, timeout, retries, proxy,\n  \
                            #       tls_fingerprint, allow_http, download_method,\n  \
                            #       file_password_file, file_password_env\n\
Unset fields take the command-line value; relative paths are relative to the inventory."
)]
pub struct PullArgs {
    /// BMC base URL, e.g. https://ilo-host
    #[arg(long, value_name = "URL")]
    bmc: Option<String>,
    /// Pull a fleet: a TOML or JSON file (by extension) listing BMCs.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    #[command(flatten)]
    metrics: super::everyday::MetricsArgs,
    /// BMCs pulled at the same time (fleet only) [default: 4; env VAULT_PARALLEL, or
    /// parallel in config.toml].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    parallel: Option<u16>,
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
    /// How to fetch the .bak from the BMC.
    #[arg(long, value_enum, default_value_t = DownloadArg::Auto)]
    download_method: DownloadArg,
    /// Ask iLO for a backup protected by its own backup-file password (at most 32
    /// characters) from --file-password-file, $VAULT_ILO_FILE_PASSWORD or a prompt. It is
    /// kept encrypted inside the archive, and restore gives it back to iLO.
    #[arg(long)]
    file_password: bool,
    /// File (mode 0600) with the iLO backup-file password; implies --file-password.
    #[arg(long, value_name = "P")]
    file_password_file: Option<PathBuf>,
    #[command(flatten)]
    push: PushToArgs,
    /// Commit each archive and audit record on its own instead of in groups (for
    /// benchmarks that compare the two; durability is the same).
    #[arg(long, hide = true)]
    no_group_commit: bool,
}

/// `--push-to NAME [--retain DAYS [--lock MODE]]` of `backup pull`.
#[derive(Args)]
pub struct PushToArgs {
    /// Push each archive to this remote as soon as it is sealed (as 'backup push' does:
    /// the object appears whole or not at all); the archive stays in the home too.
    #[arg(long, value_name = "NAME")]
    push_to: Option<String>,
    /// With --push-to: Object Lock retention in days (90d or 90).
    #[arg(long, value_name = "DAYS", value_parser = super::remote::parse_days,
          requires = "push_to")]
    retain: Option<u32>,
    /// With --retain: Object Lock mode (default governance).
    #[arg(long, value_enum, requires = "retain")]
    lock: Option<super::remote::LockArg>,
}

impl PushToArgs {
    fn lock(&self) -> Option<(crate::remote::LockMode, u32)> {
        self.retain.map(|days| {
            let mode = self.lock.map(Into::into);
            (mode.unwrap_or(crate::remote::LockMode::Governance), days)
        })
    }

    /// The remote to push to, connected before any BMC is pulled (so a typo costs nothing).
    fn connect(&self, ops: &crate::ops::Context) -> CliResult<Option<Remote>> {
        match &self.push_to {
            Some(name) => Ok(Some(ops_remote::connect(
                ops,
                name,
                &super::remote::credential_env(),
            )?)),
            None => Ok(None),
        }
    }
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The archive to restore.
    #[arg(long, value_name = "ID")]
    id: String,
    /// Fetch the archive from this remote into the home first (verified end to end, as
    /// 'backup fetch' does; nothing is fetched if it is already here): a restore on a new
    /// machine straight from the bucket.
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
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
    o.timeout = Duration::from_secs(conn.timeout.unwrap_or(super::everyday::DEFAULT_TIMEOUT));
    o.retries = conn.retries.unwrap_or(super::everyday::DEFAULT_RETRIES);
    o.proxy = conn.proxy.clone();
    o.max_backup_bytes = max_size;
    o.allow_http = conn.allow_http;
    o.tls_fingerprints = conn.tls_fingerprint.into_iter().collect();
    o
}

/// Whether a BMC URL is plain http:// (allowed only with --allow-http, and warned about).
fn is_plain_http(url: &str) -> bool {
    Origin::parse(url).is_ok_and(|o| !o.tls)
}

fn http_warning(ctx: &Ctx, host: &str) {
    ctx.notice(&format!(
        "warning: --allow-http: plain HTTP to BMC {host}; the password, the session token and the backup cross the network unencrypted"
    ));
}

/// iLO's backup-file password for a pull, if one was asked for (never from argv).
fn file_password(a: &PullArgs) -> CliResult<Option<Password>> {
    if !a.file_password && a.file_password_file.is_none() {
        return Ok(None);
    }
    Ok(Some(password::obtain(
        a.file_password_file.as_deref(),
        "VAULT_ILO_FILE_PASSWORD",
        "iLO backup-file password",
        true,
    )?))
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

/// Audits a pull that failed before [`op_pull::pull`] could start, naming its BMC.
fn not_started(ops: &crate::ops::Context, host: &str, e: CliError) -> CliError {
    let job = OpsError::Job {
        kind: e.kind,
        message: e.message,
    };
    op_pull::refused(ops, host, job).into()
}

pub fn pull(ctx: &Ctx, mut a: PullArgs) -> CliResult {
    crate::group::set_enabled(!a.no_group_commit);
    let defaults = super::everyday::bmc_defaults(ctx)?;
    a.conn.resolve(&defaults);
    a.parallel = a.parallel.or(defaults.parallel);
    if let Some(inv) = &a.inventory {
        return pull_fleet(ctx, &a, inv);
    }
    let url = a.bmc.clone().expect("clap requires --bmc or --inventory");
    let (scope, domain) = a.scope.resolve(Scope::System)?;
    if a.conn.insecure {
        insecure_warning(ctx, &format!("BMC {}", host_of(&url)));
    }
    if a.conn.allow_http && is_plain_http(&url) {
        http_warning(ctx, &host_of(&url));
    }
    let metrics = super::everyday::metrics_path(ctx, &a.metrics)?;
    let started = std::time::Instant::now();
    let ops = ctx.ops()?;
    let remote = a.push.connect(&ops)?;
    // A failure before the operation could start is still on the record.
    let (password, file_pw) = bmc_password(&a.conn)
        .and_then(|p| Ok((p, file_password(&a)?)))
        .map_err(|e| not_started(&ops, &host_of(&url), e))?;
    let mut opts = bmc_options(&url, a.conn.user(), password, &a.conn, a.max_size);
    opts.download = a.download_method.into();
    opts.file_password = file_pw;
    let job = PullJob {
        opts,
        scope,
        domain,
        key: a.key.clone(),
        description: a.description.clone(),
    };
    let bar = Bar(progress_bar(io::stderr().is_terminal()));
    let r = op_pull::pull(&ops, job, &bar);
    bar.0.finish_and_clear();
    if let Some(m) = &metrics {
        let bytes = r
            .as_ref()
            .map(|p| p.sealed.plaintext_size)
            .map_err(crate::errors::Classify::kind);
        let sample = super::everyday::pull_sample(&host_of(&url), started, bytes);
        super::everyday::write_pull_metrics(ctx, m, &[sample], started);
    }
    let p = r?;
    for n in &p.notes {
        ctx.notice(&format!("note: BMC {}: {n}", p.host));
    }
    if let Some(w) = &p.logout_warning {
        ctx.notice(&format!(
            "warning: the backup is stored but the session was not deleted: {w}"
        ));
    }
    let pushed = remote.as_ref().map(|r| {
        let o = ops_remote::push_sealed(&ops, r, &p.sealed.header.id, a.push.lock());
        (r, o)
    });
    ctx.print(&Archive {
        pushed: match &pushed {
            Some((r, Ok(o))) => Some(Pushed::new(r, o)),
            _ => None,
        },
        ..Archive::sealed(&p.sealed)
    })?;
    match pushed {
        Some((_, Err(e))) => Err(e.into()),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Fleet

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
    tls_fingerprint: Option<String>,
    allow_http: Option<bool>,
    download_method: Option<DownloadArg>,
    file_password_file: Option<PathBuf>,
    file_password_env: Option<String>,
    scope: Option<String>,
    domain: Option<String>,
    key: Option<String>,
    description: Option<String>,
}

fn usage(msg: String) -> CliError {
    CliError::new(Kind::Usage, msg)
}

/// The inventory's entries; an invalid one is told where its format is described.
fn read_inventory(path: &Path) -> CliResult<Vec<InventoryEntry>> {
    ops_fleet::read_inventory(path).map_err(|e| {
        let invalid = matches!(e, OpsError::Inventory { .. });
        let mut e = CliError::from(e);
        if invalid {
            e.message
                .push_str("; see 'vault backup pull --help' for the format");
        }
        e
    })
}

/// Turns one inventory entry into a job; `shared` is the command-line password.
fn fleet_job(
    e: &InventoryEntry,
    base: &Path,
    a: &PullArgs,
    shared: Option<&Password>,
    shared_file_password: Option<&Password>,
) -> CliResult<PullJob> {
    let password = entry_password(e, base, shared)?;
    let (scope, domain) = entry_scope(e, a)?;
    let conn = entry_conn(e, base, a)?;
    let user = e.user.as_deref().unwrap_or(a.conn.user());
    let mut opts = bmc_options(&e.url, user, password, &conn, a.max_size);
    opts.session_limit_retries = FLEET_SESSION_LIMIT_RETRIES;
    opts.download = e.download_method.unwrap_or(a.download_method).into();
    opts.file_password = entry_file_password(e, base, shared_file_password)?;
    Ok(PullJob {
        opts,
        scope,
        domain,
        key: e.key.clone().or_else(|| a.key.clone()),
        description: e.description.clone().or_else(|| a.description.clone()),
    })
}

/// A path of an inventory entry: relative paths are relative to the inventory's directory.
fn entry_path(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The entry's BMC password: its `password_file`, its `password_env`, or the shared one.
fn entry_password(
    e: &InventoryEntry,
    base: &Path,
    shared: Option<&Password>,
) -> CliResult<Password> {
    let password = match (&e.password_file, &e.password_env) {
        (Some(f), _) => crate::ops::password::from_file(&entry_path(base, f))?,
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
    Ok(password)
}

/// The entry's scope and domain, each defaulting to the command line's.
fn entry_scope(e: &InventoryEntry, a: &PullArgs) -> CliResult<(Scope, Option<String>)> {
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
    scope_args.resolve(Scope::System)
}

/// The command line's connection settings with the entry's own over them.
fn entry_conn(e: &InventoryEntry, base: &Path, a: &PullArgs) -> CliResult<ConnArgs> {
    let mut conn = a.conn.clone();
    if let Some(c) = &e.ca_cert {
        conn.ca_cert = Some(entry_path(base, c));
        conn.insecure = false;
    }
    if let Some(i) = e.insecure {
        conn.insecure = i;
    }
    if let Some(x) = e.auth {
        conn.auth = x;
    }
    if let Some(t) = e.timeout {
        conn.timeout = Some(t.clamp(1, 3600));
    }
    if let Some(r) = e.retries {
        conn.retries = Some(r.min(10));
    }
    if e.proxy.is_some() {
        conn.proxy = e.proxy.clone();
    }
    if let Some(f) = &e.tls_fingerprint {
        conn.tls_fingerprint =
            Some(parse_pin(f).map_err(|m| usage(format!("tls_fingerprint: {m}")))?);
    }
    if let Some(h) = e.allow_http {
        conn.allow_http = h;
    }
    Ok(conn)
}

/// iLO's backup-file password for the entry: its own file or variable, or the shared one.
fn entry_file_password(
    e: &InventoryEntry,
    base: &Path,
    shared: Option<&Password>,
) -> CliResult<Option<Password>> {
    Ok(match (&e.file_password_file, &e.file_password_env) {
        (Some(f), _) => Some(crate::ops::password::from_file(&entry_path(base, f))?),
        (None, Some(var)) => Some(Password::new(std::env::var(var).map_err(|_| {
            usage(format!(
                "the environment variable {var} named by file_password_env is not set"
            ))
        })?)),
        (None, None) => shared.map(|p| Password::new(p.expose().to_string())),
    })
}

fn pull_fleet(ctx: &Ctx, a: &PullArgs, inventory: &Path) -> CliResult {
    let metrics = super::everyday::metrics_path(ctx, &a.metrics)?;
    let started = std::time::Instant::now();
    let entries = read_inventory(inventory)?;
    let jobs = fleet_jobs(ctx, a, inventory, &entries)?;
    let ops = ctx.ops()?;
    let remote = a.push.connect(&ops)?;
    let n = jobs.len();
    let bar = fleet_bar(n);
    let opts = ops_fleet::FleetOptions {
        parallel: usize::from(a.parallel.unwrap_or(super::everyday::DEFAULT_PARALLEL)),
        push_to: remote.as_ref().map(|r| (r, a.push.lock())),
    };
    let report = ops_fleet::pull(&ops, jobs, &opts, &bar);
    bar.0.finish_and_clear();
    let g = &report.group;
    ctx.notice(&format!(
        "group commit: {} archives in {} home-lock batches, {} audit records in {} appends",
        g.archives, g.archive_batches, g.records, g.audit_batches
    ));
    if let Some(m) = &metrics {
        fleet_metrics(ctx, m, &report, started);
    }
    let results: Vec<FleetItem> = report
        .outcomes
        .iter()
        .map(|o| fleet_item(remote.as_ref(), o))
        .collect();
    let failed = results.iter().filter(|r| r.status != "ok").count();
    let push_failed = results.iter().filter(|r| r.push_error.is_some()).count();
    ctx.print(&FleetReport {
        total: n,
        succeeded: n - failed,
        failed,
        results,
        push_failed: remote.is_some().then_some(push_failed),
    })?;
    fleet_status(n, failed, push_failed)
}

/// One job per inventory entry (the passwords asked for once, before any BMC is tried);
/// an entry no job can be made of fails alone.
fn fleet_jobs(
    ctx: &Ctx,
    a: &PullArgs,
    inventory: &Path,
    entries: &[InventoryEntry],
) -> CliResult<Vec<FleetJob>> {
    let base = ops_fleet::inventory_dir(inventory);
    let needs_shared = entries
        .iter()
        .any(|e| e.password_file.is_none() && e.password_env.is_none());
    let shared = if needs_shared {
        Some(bmc_password(&a.conn)?)
    } else {
        None
    };
    fleet_warnings(ctx, a, entries);
    let shared_file_password = file_password(a)?;
    Ok(entries
        .iter()
        .map(|e| FleetJob {
            host: host_of(&e.url),
            job: fleet_job(e, &base, a, shared.as_ref(), shared_file_password.as_ref()).map_err(
                |e| OpsError::Job {
                    kind: e.kind,
                    message: e.message,
                },
            ),
        })
        .collect())
}

/// The fleet's progress bar on a terminal (hidden otherwise).
fn fleet_bar(n: usize) -> Bar {
    Bar(if io::stderr().is_terminal() {
        let pb = ProgressBar::new(n as u64);
        pb.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} BMCs  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    })
}

/// `--metrics`: one sample per BMC.
fn fleet_metrics(
    ctx: &Ctx,
    m: &Path,
    report: &ops_fleet::FleetReport,
    started: std::time::Instant,
) {
    let samples: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| {
            let bytes = o
                .result
                .as_ref()
                .map(|p| p.sealed.plaintext_size)
                .map_err(crate::errors::Classify::kind);
            super::everyday::pull_sample(&o.host, o.started, bytes)
        })
        .collect();
    super::everyday::write_pull_metrics(ctx, m, &samples, started);
}

/// The fleet's exit: an error when a BMC failed or an archive was not pushed.
fn fleet_status(n: usize, failed: usize, push_failed: usize) -> CliResult {
    if failed > 0 {
        return Err(CliError::new(
            Kind::Bmc,
            format!(
                "{failed} of {n} BMC(s) failed (listed in the output); the others were archived"
            ),
        ));
    }
    if push_failed > 0 {
        return Err(CliError::new(
            Kind::Bmc,
            format!(
                "{push_failed} of {n} archive(s) were not pushed (their pushError is in the output); they are in the home: push them with 'vault backup push --all --remote NAME'"
            ),
        ));
    }
    Ok(())
}

/// The warnings a fleet gives before it starts: BMCs without TLS verification, plain HTTP.
fn fleet_warnings(ctx: &Ctx, a: &PullArgs, entries: &[InventoryEntry]) {
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
    for e in entries {
        if e.allow_http.unwrap_or(a.conn.allow_http) && is_plain_http(&e.url) {
            http_warning(ctx, &host_of(&e.url));
        }
    }
}

/// One BMC's line of the fleet record.
fn fleet_item<'a>(remote: Option<&'a Remote>, o: &'a FleetOutcome) -> FleetItem<'a> {
    let mut item = FleetItem {
        bmc: &o.host,
        status: "ok",
        archive_id: None,
        backup_key_id: None,
        size: None,
        serial_number: None,
        error: None,
        error_kind: None,
        attempts: o.attempts,
        pushed: None,
        push_error: None,
    };
    match &o.result {
        Ok(p) => {
            let h = &p.sealed.header;
            item.archive_id = Some(h.id);
            item.backup_key_id = Some(p.sealed.key_id);
            item.size = Some(p.sealed.plaintext_size);
            item.serial_number = Some(h.source.as_ref().and_then(|s| s.serial_number.as_deref()));
            match (remote, &o.pushed) {
                (Some(r), Some(Ok(pushed))) => item.pushed = Some(Pushed::new(r, pushed)),
                (_, Some(Err(e))) => item.push_error = Some(e.to_string()),
                _ => {}
            }
        }
        Err(e) => {
            item.status = "failed";
            item.error = Some(e.to_string());
            item.error_kind = Some(crate::errors::Classify::kind(e).name());
        }
    }
    item
}

// ---------------------------------------------------------------------------------------
// Restore

fn confirm_on_tty(yes: bool) -> impl Fn(&RestorePlan<'_>) -> Result<(), OpsError> {
    move |plan| {
        if yes {
            return Ok(());
        }
        if !io::stdin().is_terminal() {
            return Err(OpsError::RestoreNotConfirmed {
                host: plan.host.to_string(),
            });
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
            .map_err(|source| OpsError::Read {
                what: "the answer from",
                path: "the terminal".into(),
                source,
            })?;
        if line.trim().eq_ignore_ascii_case("yes") {
            Ok(())
        } else {
            Err(OpsError::RestoreCancelled)
        }
    }
}

pub fn restore(ctx: &Ctx, mut a: RestoreArgs) -> CliResult {
    a.conn.resolve(&super::everyday::bmc_defaults(ctx)?);
    if let Some(remote) = &a.remote {
        a.id = super::remote::fetch_first(ctx, remote, &a.id)?;
    }
    let ops = ctx.ops()?;
    let host = host_of(&a.bmc);
    if a.conn.insecure {
        insecure_warning(ctx, &format!("BMC {host}"));
    }
    if a.conn.allow_http && is_plain_http(&a.bmc) {
        http_warning(ctx, &host);
    }
    // A refusal before anything is sent is audited too, naming the archive and BMC asked
    // for (issue 13.5).
    let refusal: Option<OpsError> = if a.conn.auth == AuthArg::Basic {
        Some(BmcError::RestoreNeedsSession { host: host.clone() }.into())
    } else if !a.yes && !io::stdin().is_terminal() {
        Some(OpsError::RestoreNotConfirmed { host: host.clone() })
    } else {
        None
    };
    if let Some(e) = refusal {
        return Err(op_restore::refused(&ops, &a.id, &host, e).into());
    }
    let connect = || -> Result<BmcOptions, OpsError> {
        let password = password::obtain(
            a.conn.bmc_password_file.as_deref(),
            "VAULT_BMC_PASSWORD",
            "BMC password",
            false,
        )?;
        Ok(bmc_options(&a.bmc, a.conn.user(), password, &a.conn, 0))
    };
    // The bar starts after the confirmation prompt, so it does not draw over it.
    let bar = Bar(ProgressBar::hidden());
    let confirm = |plan: &RestorePlan<'_>| {
        confirm_on_tty(a.yes)(plan)?;
        if io::stderr().is_terminal() {
            bar.0
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.0.set_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes}/{total_bytes}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.0.enable_steady_tick(Duration::from_millis(120));
        }
        Ok(())
    };
    let r = op_restore::restore(
        &ops,
        &a.id,
        &host,
        &connect,
        a.allow_different_system,
        &confirm,
        &bar,
    );
    bar.0.finish_and_clear();
    ctx.print(&RestoredRecord::from(&r?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

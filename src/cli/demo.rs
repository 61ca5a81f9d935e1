//! `vault demo` and `vault bmc-simulator`.
//!
//! The demo runs the whole cycle against an in-process simulator (HTTPS with its own CA,
//! on a free loopback port) in throw-away homes, through the same library functions the
//! commands use: so "the demo passes" means the real code paths work on this machine.
//! It needs no network, no TTY and no environment, and must finish in seconds.
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use rand::RngCore;
use uuid::Uuid;

use super::records::{DemoReport, DemoStep, RestoredRecord};
use super::{CliError, CliResult, Ctx};
use crate::bmc::simulator::run_foreground_to;
use crate::bmc::{BmcOptions, Fault, SimConfig, SimHandle};
use crate::errors::Kind;
use crate::keystore::KeyInfo;
use crate::keystore::kdf::{ImportLimit, KdfParams};
use crate::ops::backup::{RewrapPlan, Target};
use crate::ops::keys::NewKey;
use crate::ops::pull::PullJob;
use crate::ops::restore::Restored;
use crate::ops::{self, Silent};
use crate::scope::Scope;
use crate::secret::Password;

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the temporary homes and files (their path is printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
pub struct SimulatorArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, value_name = "N", default_value_t = 0)]
    port: u16,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    http: bool,
    /// The account the simulator accepts.
    #[arg(long, value_name = "U", default_value = "Administrator")]
    user: String,
    /// File (mode 0600) with the password it accepts; default: $VAULT_BMC_PASSWORD, else
    /// "simulator-password".
    #[arg(long, value_name = "P")]
    password_file: Option<PathBuf>,
    /// The server serial number it reports (and puts in backup file names).
    #[arg(long, value_name = "S", default_value = "CZ2D1234XY")]
    serial: String,
    /// Serve this file as the backup.
    #[arg(long, value_name = "F", conflicts_with = "backup_size")]
    backup_file: Option<PathBuf>,
    /// Serve this many deterministic pseudo-random bytes as the backup (max 256 MiB).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=(256 << 20)))]
    backup_size: Option<u64>,
    /// Sessions allowed at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    session_limit: usize,
    /// Delay added to every request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// Inject a fault: server-error, slow[=SECS], slow-drip, cut-mid-download,
    /// malformed-json, html-error-page, huge-content-length, endless-body, redirect-loop,
    /// transient-errors[=N].
    #[arg(long, value_name = "NAME", value_parser = parse_fault)]
    fault: Option<Fault>,
    /// Serve this many BMCs from this one process, each on a port of its own with its
    /// own serial (SERIAL-00001, …) and sessions, all under one certificate; needs
    /// --inventory (--port is then ignored).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "inventory",
          value_parser = clap::value_parser!(u32).range(1..=20_000))]
    count: u32,
    /// With --count: write the fleet's inventory (TOML, for 'backup pull --inventory') here.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// With --count and --fault: only every K-th BMC (the K-th, 2K-th, …) has the fault.
    #[arg(long, value_name = "K", requires = "fault",
          value_parser = clap::value_parser!(u32).range(1..))]
    fault_every: Option<u32>,
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    let (name, arg) = match s.split_once('=') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    let num = |default: u64| -> Result<u64, String> {
        arg.map_or(Ok(default), |a| {
            a.parse::<u64>()
                .map_err(|_| format!("{a:?} is not a number"))
        })
    };
    Ok(match name {
        "none" => Fault::None,
        "server-error" => Fault::ServerError,
        "slow" => Fault::Slow(std::time::Duration::from_secs(num(60)?)),
        "slow-drip" => Fault::SlowDrip,
        "cut-mid-download" => Fault::CutMidDownload,
        "malformed-json" => Fault::MalformedJson,
        "html-error-page" => Fault::HtmlErrorPage,
        "huge-content-length" => Fault::HugeContentLength,
        "endless-body" => Fault::EndlessBody,
        "redirect-loop" => Fault::RedirectLoop,
        "transient-errors" => Fault::TransientErrors(u32::try_from(num(3)?).unwrap_or(u32::MAX)),
        other => return Err(format!("unknown fault {other:?}")),
    })
}

/// Deterministic filler that does not look like an error page.
fn filler(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

pub fn simulator(ctx: &Ctx, a: SimulatorArgs) -> CliResult {
    let password = match &a.password_file {
        Some(p) => crate::ops::password::from_file(p)?.expose().to_string(),
        None => {
            match std::env::var("VAULT_BMC_PASSWORD") {
                Ok(p) if !p.is_empty() => p,
                _ => {
                    ctx.notice("password: simulator-password (the default; use --password-file to choose one)");
                    "simulator-password".to_string()
                }
            }
        }
    };
    let backup_bytes = match (&a.backup_file, a.backup_size) {
        (Some(f), _) => ops::demo::simulator_backup(f)?,
        (None, Some(n)) => filler(usize::try_from(n).unwrap_or(usize::MAX)),
        (None, None) => SimConfig::default().backup_bytes,
    };
    let cfg = SimConfig {
        tls: !a.http,
        user: a.user,
        password,
        session_limit: a.session_limit.max(1),
        serial: a.serial,
        backup_bytes,
        latency: std::time::Duration::from_millis(a.latency_ms),
        fault: a.fault.unwrap_or_default(),
        ..SimConfig::default()
    };
    ctx.notice("BMC simulator for tests and demos (loopback only); stop it with Ctrl-C");
    let mut out = std::io::stdout();
    if let Some(inventory) = a.inventory.as_deref().filter(|_| a.count > 1) {
        let every = a.fault_every.unwrap_or(1) as usize;
        let cfgs = (1..=a.count as usize)
            .map(|i| SimConfig {
                serial: format!("{}-{i:05}", cfg.serial),
                fault: if i % every == 0 {
                    cfg.fault.clone()
                } else {
                    Fault::None
                },
                ..cfg.clone()
            })
            .collect();
        let signal = crate::bmc::simulator::run_fleet_foreground_to(cfgs, inventory, &mut out)
            .map_err(|e| {
                CliError::new(Kind::Io, format!("cannot run the BMC simulator fleet: {e}"))
            })?;
        ctx.notice(&format!("BMC simulator fleet stopped by {signal}"));
        return Ok(());
    }
    let signal = run_foreground_to(cfg, a.port, &mut out).map_err(|e| {
        CliError::new(
            Kind::Io,
            format!("cannot run the BMC simulator on port {}: {e}", a.port),
        )
    })?;
    ctx.notice(&format!(
        "BMC simulator stopped by {signal}; its certificate directory is removed"
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// demo

/// What the steps learn and share: the homes, the simulator, the keys and the archive.
/// A step runs only when every step before it passed, so what an earlier step sets is
/// there ([`need`]).
struct Demo {
    root: PathBuf,
    account: String,
    format: super::output::Format,
    // Secrets of the demo exist only in memory (never on argv or in the environment).
    bmc_password: String,
    key_password: String,
    backup: Vec<u8>,
    sim: Option<SimHandle>,
    a: Option<ops::Context>,
    b: Option<ops::Context>,
    key1: Option<KeyInfo>,
    key2: Option<KeyInfo>,
    archive: Option<Uuid>,
    restored: Option<Restored>,
}

const SERIAL: &str = "CZDEMO0001";

/// One step: its name (printed) and what it does, returning what it showed.
type Step = (&'static str, fn(&mut Demo) -> CliResult<String>);

/// The demo, in order.
const STEPS: &[Step] = &[
    (
        "start the iLO simulator (HTTPS, private CA)",
        start_simulator,
    ),
    (
        "open two vault homes (A: this site, B: the restore site)",
        open_homes,
    ),
    ("create a system backup key in A", create_key),
    (
        "pull a backup from the BMC into a sealed archive",
        pull_backup,
    ),
    ("inspect the archive without any key", inspect_archive),
    ("verify the archive completely with its key", verify_archive),
    ("rotate the system key", rotate_key),
    (
        "rewrap the archive onto the new key (header only)",
        rewrap_archive,
    ),
    (
        "export the new key under a password (keys download)",
        export_key,
    ),
    ("import the key into home B (keys upload)", import_key),
    (
        "move the archive to home B (backup download / upload)",
        move_archive,
    ),
    (
        "extract in home B and compare with the BMC's bytes",
        extract_and_compare,
    ),
    ("restore from home B to the BMC", restore_to_bmc),
    ("check that no BMC session is left open", no_session_left),
    ("verify the audit logs of both homes", verify_audit_logs),
];

/// What an earlier step set (steps stop at the first failure).
fn need<T>(v: &Option<T>) -> &T {
    v.as_ref().expect("set by an earlier step that passed")
}

fn check(ok: bool, what: impl FnOnce() -> String) -> CliResult {
    if ok {
        Ok(())
    } else {
        Err(CliError::new(Kind::Internal, what()))
    }
}

fn short(id: impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

impl Demo {
    fn home(&self, name: &str) -> Ctx {
        Ctx {
            home_dir: self.root.join(name),
            root_password_file: None,
            format: self.format,
            account: self.account.clone(),
        }
    }

    fn bmc(&self) -> BmcOptions {
        let sim = need(&self.sim);
        let mut o = BmcOptions::new(
            sim.base_url(),
            "Administrator",
            Password::new(self.bmc_password.clone()),
        );
        o.ca_cert = Some(sim.ca_cert_path().to_path_buf());
        o.timeout = std::time::Duration::from_secs(10);
        o
    }

    fn archive(&self) -> Target {
        Target::Id(need(&self.archive).to_string())
    }

    fn key_file(&self) -> PathBuf {
        self.root.join("demo-key.vkey")
    }
}

fn start_simulator(d: &mut Demo) -> CliResult<String> {
    let sim = SimHandle::start(SimConfig {
        user: "Administrator".into(),
        password: d.bmc_password.clone(),
        serial: SERIAL.into(),
        backup_bytes: d.backup.clone(),
        ..SimConfig::default()
    })
    .map_err(|e| CliError::new(Kind::Io, format!("cannot start the simulator: {e}")))?;
    let detail = format!("{} ({} byte backup)", sim.base_url(), d.backup.len());
    d.sim = Some(sim);
    Ok(detail)
}

fn open_homes(d: &mut Demo) -> CliResult<String> {
    let (a, b) = (d.home("home-a"), d.home("home-b"));
    // Silent: what the operations would warn about, the steps check and say.
    d.a = Some(ops::Context::with_home(a.home()?, &d.account));
    d.b = Some(ops::Context::with_home(b.home()?, &d.account));
    Ok(format!(
        "{} and {}",
        a.home_dir.display(),
        b.home_dir.display()
    ))
}

fn create_key(d: &mut Demo) -> CliResult<String> {
    let new = NewKey {
        scope: Scope::System,
        domain: None,
        make_default: true,
        description: "demo key".into(),
        tied_to_hsm: false,
    };
    let k = ops::keys::create(need(&d.a), &new)?;
    let detail = format!("key {} is the system default", short(k.id));
    d.key1 = Some(k);
    Ok(detail)
}

fn pull_backup(d: &mut Demo) -> CliResult<String> {
    let job = PullJob {
        opts: d.bmc(),
        scope: Scope::System,
        domain: None,
        key: None,
        description: Some("demo backup".into()),
    };
    let p = ops::pull::pull(need(&d.a), job, &Silent)?;
    let s = &p.sealed;
    check(s.key_id == need(&d.key1).id, || {
        "the archive is not sealed under the system default".into()
    })?;
    d.archive = Some(s.header.id);
    Ok(format!(
        "archive {} ({} bytes from {}, sealed under key {})",
        short(s.header.id),
        s.plaintext_size,
        p.host,
        short(s.key_id)
    ))
}

fn inspect_archive(d: &mut Demo) -> CliResult<String> {
    let (l, _) = ops::backup::get(need(&d.a), &need(&d.archive).to_string())?;
    let i = &l.inspection;
    let src = i.header.source.clone().unwrap_or_default();
    check(src.serial_number.as_deref() == Some(SERIAL), || {
        format!(
            "the archive records serial {:?}, not {SERIAL}",
            src.serial_number
        )
    })?;
    check(i.plaintext_size == d.backup.len() as u64, || {
        "the archive's size differs from the BMC's backup".into()
    })?;
    Ok(format!(
        "{} from {} ({}, {}), serial {SERIAL}, sha256 {}…",
        src.file_name.unwrap_or_default(),
        src.bmc_host.unwrap_or_default(),
        src.manager_model.unwrap_or_default(),
        src.firmware_version.unwrap_or_default(),
        &hex::encode(i.sha256)[..16]
    ))
}

fn verify_archive(d: &mut Demo) -> CliResult<String> {
    let s = ops::backup::verify(need(&d.a), &d.archive(), &Silent)?;
    Ok(format!(
        "every chunk and the trailer authenticate under key {}",
        short(s.key_id)
    ))
}

fn rotate_key(d: &mut Demo) -> CliResult<String> {
    let r = ops::keys::rotate(need(&d.a), Scope::System, None)?;
    let detail = format!(
        "new default {}, {} retired (it still decrypts)",
        short(r.new_key.id),
        short(r.retired_key.id)
    );
    d.key2 = Some(r.new_key);
    Ok(detail)
}

fn rewrap_archive(d: &mut Demo) -> CliResult<String> {
    let a = need(&d.a);
    let key2 = need(&d.key2).id;
    let plan = RewrapPlan {
        id: Some(need(&d.archive).to_string()),
        key: Some(key2.to_string()),
        ..RewrapPlan::default()
    };
    let mut report = ops::backup::rewrap(a, &plan)?;
    if let Some((_, e)) = report.failed.pop() {
        return Err(e.into());
    }
    let r = report
        .rewrapped
        .pop()
        .ok_or_else(|| CliError::new(Kind::Internal, "the rewrap did not report the archive"))?;
    check(r.changed && !r.reencrypted, || {
        "the rewrap did not rewrite the key slot".into()
    })?;
    let v = ops::backup::verify(a, &d.archive(), &Silent)?;
    check(v.key_id == key2, || {
        "the archive does not open with the new key".into()
    })?;
    Ok(format!(
        "now under key {} (only its key slot was rewritten), verified",
        short(r.to)
    ))
}

fn export_key(d: &mut Demo) -> CliResult<String> {
    let password = d.key_password.clone();
    let file = d.key_file();
    let e = ops::keys::export(
        need(&d.a),
        &need(&d.key2).id.to_string(),
        &file,
        KdfParams::default(),
        &|| Ok(Password::new(password.clone())),
    )?;
    Ok(format!("{} ({})", e.file.display(), e.params.describe()))
}

fn import_key(d: &mut Demo) -> CliResult<String> {
    let password = d.key_password.clone();
    ops::keys::import(
        need(&d.b),
        &d.key_file(),
        Scope::System,
        ImportLimit::Default,
        &|| Ok(Password::new(password.clone())),
    )?;
    Ok(format!("key {} is now in B", short(need(&d.key2).id)))
}

fn move_archive(d: &mut Demo) -> CliResult<String> {
    let copy = d.root.join("demo-archive.vault");
    let id = need(&d.archive).to_string();
    let (_, n) = ops::backup::download(need(&d.a), &id, &copy)?;
    let up = ops::backup::upload(need(&d.b), &copy)?;
    check(up.added, || "home B already had the archive".into())?;
    check(up.verified, || {
        "home B stored the archive without authenticating it".into()
    })?;
    Ok(format!("{n} bytes, still encrypted, authenticated by B"))
}

fn extract_and_compare(d: &mut Demo) -> CliResult<String> {
    let out = d.root.join("extracted.bak");
    ops::backup::extract(need(&d.b), &d.archive(), &out, &Silent)?;
    // The demo's own check of what the product wrote.
    let n = ops::demo::file_holds(&out, &d.backup)?.ok_or_else(|| {
        CliError::new(
            Kind::Internal,
            "the extracted bytes differ from the BMC's backup",
        )
    })?;
    Ok(format!("{n} bytes, identical"))
}

fn restore_to_bmc(d: &mut Demo) -> CliResult<String> {
    let sim = need(&d.sim);
    let host = ops::pull::host_of(&sim.base_url());
    let x = ops::restore::restore(
        need(&d.b),
        &need(&d.archive).to_string(),
        &host,
        &|| Ok(d.bmc()),
        false,
        &|_| Ok(()),
        &Silent,
    )?;
    let got = sim.restored();
    check(got.len() == 1 && got[0] == d.backup, || {
        "the simulator did not receive exactly the original backup".into()
    })?;
    let detail = format!(
        "{} bytes sent; the simulator received identical bytes",
        x.bytes
    );
    d.restored = Some(x);
    Ok(detail)
}

fn no_session_left(d: &mut Demo) -> CliResult<String> {
    let sim = need(&d.sim);
    let open = sim.open_sessions();
    check(open == 0, || {
        format!("{open} session(s) still open on the simulator")
    })?;
    Ok(format!(
        "{} session(s) created, 0 open",
        sim.sessions_created()
    ))
}

fn verify_audit_logs(d: &mut Demo) -> CliResult<String> {
    let mut n = 0;
    for c in [need(&d.a), need(&d.b)] {
        let dir = c.home().dir().display().to_string();
        let r = c
            .verify_audit_log()
            .map_err(|e| CliError::new(Kind::Integrity, format!("audit log of {dir}: {e}")))?;
        check(r.is_intact(), || {
            format!("the audit log of {dir} is broken")
        })?;
        n += r.records;
    }
    Ok(format!("{n} records, hash chains intact"))
}

pub fn run(ctx: &Ctx, a: DemoArgs) -> CliResult {
    let tmp = tempfile::Builder::new()
        .prefix("vault-demo-")
        .tempdir()
        .map_err(|e| {
            CliError::new(
                Kind::Io,
                format!("cannot create a temporary directory: {e}"),
            )
        })?;
    let started = Instant::now();
    let mut d = Demo::new(ctx, tmp.path().to_path_buf());
    eprintln!(
        "vault demo: the whole cycle against a built-in iLO simulator, in {}",
        d.root.display()
    );
    let (steps, failed) = run_steps(&mut d);
    let bmc_url = d.sim.as_ref().map(|s| s.base_url().to_string());
    if let Some(sim) = d.sim.take() {
        sim.shutdown();
    }
    let kept_in = a.keep.then(|| tmp.keep().display().to_string());
    ctx.print(&DemoReport {
        ok: failed.is_none(),
        steps,
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        bmc_url,
        archive_id: d.archive,
        restore: d.restored.as_ref().map(RestoredRecord::from),
        kept_in,
    })?;
    match failed {
        None => {
            eprintln!("vault demo: every step passed");
            Ok(())
        }
        Some(e) => Err(CliError::new(
            e.kind,
            format!("the demo failed: {}", e.message),
        )),
    }
}

impl Demo {
    /// A demo in `root` with fresh secrets and a random backup (192 KiB and a bit).
    fn new(ctx: &Ctx, root: PathBuf) -> Self {
        let mut backup = vec![0u8; 192 * 1024 + 123];
        rand::thread_rng().fill_bytes(&mut backup);
        Demo {
            root,
            account: ctx.account.clone(),
            format: ctx.format,
            bmc_password: hex::encode(rand::random::<[u8; 16]>()),
            key_password: hex::encode(rand::random::<[u8; 16]>()),
            backup,
            sim: None,
            a: None,
            b: None,
            key1: None,
            key2: None,
            archive: None,
            restored: None,
        }
    }
}

/// Runs [`STEPS`] in order up to the first failure, saying each on stderr; returns
/// what each step showed and the failure, if any.
fn run_steps(d: &mut Demo) -> (Vec<DemoStep>, Option<CliError>) {
    let mut steps = Vec::new();
    for (n, (name, step)) in STEPS.iter().enumerate().map(|(i, s)| (i + 1, s)) {
        match step(d) {
            Ok(detail) => {
                eprintln!("vault demo: {n:>2}. ok      {name}: {detail}");
                steps.push(DemoStep {
                    step: n,
                    name,
                    ok: true,
                    detail: Some(detail),
                    error: None,
                    error_kind: None,
                });
            }
            Err(e) => {
                eprintln!(
                    "vault demo: {n:>2}. FAILED  {name}: {}",
                    crate::escape::for_terminal(&e.message)
                );
                steps.push(DemoStep {
                    step: n,
                    name,
                    ok: false,
                    detail: None,
                    error: Some(e.message.clone()),
                    error_kind: Some(e.kind.name()),
                });
                return (steps, Some(e));
            }
        }
    }
    (steps, None)
}

//! Everyday operation from the command line: `--syslog`, `--metrics-file` and
//! `vault config show`, each resolved flag > environment > `config.toml` > default.
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{CliError, CliResult, Ctx};
use crate::audit::syslog::{self, Forwarder, Target};
use crate::config::{Config, Setting, Source, pick};
use crate::errors::Kind;
use crate::metrics::{self, PullOutcome, PullSample, SweepSample};

/// Environment variables of the settings (the flags' names, upper-case).
const ENV_SYSLOG: &str = "VAULT_SYSLOG";
const ENV_METRICS: &str = "VAULT_METRICS_FILE";

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print every setting's effective value and where it came from (env, file or
    /// default; a flag wins over all of them on the command that takes it). The file is
    /// config.toml in the home, e.g.:
    ///
    ///   metrics-file = "/var/lib/prometheus/node-exporter/vault.prom"
    ///   syslog = "tcp://127.0.0.1:514"
    Show,
}

/// `--metrics-file` for pulls and sweeps.
#[derive(Args, Clone, Debug, Default)]
pub struct MetricsArgs {
    /// Write Prometheus textfile-collector metrics here (atomically; env
    /// VAULT_METRICS_FILE, or metrics-file in config.toml).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

fn env(name: &'static str) -> Option<(&'static str, String)> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| (name, v))
}

fn config(home: &Path) -> CliResult<Config> {
    Ok(Config::load(home)?)
}

/// Resolves `--syslog` / VAULT_SYSLOG / `syslog` and installs the forwarder for every
/// audit append of this process.
pub fn install_syslog(home: &Path, flag: Option<String>) -> CliResult {
    let cfg = config(home)?;
    let Some(s) = pick(flag, env(ENV_SYSLOG), (cfg.file.syslog.clone(), &cfg), None) else {
        return Ok(());
    };
    let target: Target = s.value.parse()?;
    syslog::install(Forwarder::new(target));
    Ok(())
}

/// Says on stderr which audit records did not reach the syslog receiver (they are in
/// audit.log). Called once, at the end of every command.
pub fn report_syslog() {
    let Some(f) = syslog::installed() else { return };
    let st = f.status();
    if st.unsent == 0 {
        return;
    }
    let range = match (st.first_unsent_seq, st.last_unsent_seq) {
        (Some(a), Some(b)) if a != b => format!("seq {a}..{b}"),
        (Some(a), _) => format!("seq {a}"),
        _ => String::new(),
    };
    eprintln!(
        "vault: warning: {} audit record(s) ({range}) were not forwarded to syslog {}: {}; they are in audit.log, and the operation itself was not affected",
        st.unsent,
        f.target(),
        crate::escape::for_terminal(st.error.as_deref().unwrap_or("unknown error"))
    );
}

/// The metrics file, if any: `--metrics-file`, VAULT_METRICS_FILE, `metrics-file`.
pub fn metrics_path(ctx: &Ctx, a: &MetricsArgs) -> CliResult<Option<PathBuf>> {
    let cfg = config(ctx.home_dir())?;
    Ok(pick(
        a.metrics_file.clone(),
        env(ENV_METRICS).map(|(n, v)| (n, PathBuf::from(v))),
        (cfg.file.metrics_file.clone(), &cfg),
        None,
    )
    .map(|s| s.value))
}

/// One BMC's pull result for the metrics.
pub fn pull_sample(bmc: &str, started: Instant, r: Result<u64, Kind>) -> PullSample {
    PullSample {
        bmc: bmc.to_string(),
        outcome: match r {
            Ok(bytes) => PullOutcome::Success { bytes },
            Err(kind) => PullOutcome::Failure {
                kind: kind.name().to_string(),
            },
        },
        duration: started.elapsed(),
        finished: SystemTime::now(),
    }
}

fn metrics_warning(ctx: &Ctx, r: Result<metrics::WriteReport, metrics::MetricsError>) {
    match r {
        Ok(rep) => {
            if let Some(why) = rep.replaced_unreadable {
                ctx.notice(&format!(
                    "warning: the previous metrics file was replaced ({why}); its counters restart at 0"
                ));
            }
        }
        // The pull or sweep itself is done: a monitoring problem is reported, not fatal;
        // the stale file's timestamps make the monitoring system notice too.
        Err(e) => ctx.notice(&format!("warning: {e}")),
    }
}

pub fn write_pull_metrics(ctx: &Ctx, path: &Path, samples: &[PullSample], started: Instant) {
    let r = metrics::write_pulls(path, samples, started.elapsed(), SystemTime::now());
    metrics_warning(ctx, r);
}

pub fn write_sweep_metrics(
    ctx: &Ctx,
    path: &Path,
    s: &crate::sweep::SweepSummary,
    started: Instant,
) {
    let sample = SweepSample {
        files: s.files,
        archives: s.archives,
        ok: s.ok,
        skipped: s.skipped,
        verified: s.verified,
        integrity_failures: s.integrity_failures,
        findings: s
            .findings
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        duration: started.elapsed(),
        finished: SystemTime::now(),
    };
    metrics_warning(ctx, metrics::write_sweep(path, &sample));
}

/// One line of `vault config show`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Shown {
    name: &'static str,
    value: Option<serde_json::Value>,
    source: Option<Source>,
    env: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigShown {
    file: PathBuf,
    file_exists: bool,
    settings: Vec<Shown>,
}

fn shown<T: Serialize>(
    name: &'static str,
    env_name: &'static str,
    file: Option<T>,
    cfg: &Config,
    default: Option<T>,
    parse: impl Fn(String) -> Option<T>,
) -> CliResult<Shown> {
    let from_env = match std::env::var(env_name).ok().filter(|v| !v.is_empty()) {
        Some(v) => Some((
            env_name,
            parse(v).ok_or_else(|| {
                CliError::new(Kind::Usage, format!("{env_name} is not a valid {name}"))
            })?,
        )),
        None => None,
    };
    let s: Option<Setting<T>> = pick(None, from_env, (file, cfg), default);
    Ok(Shown {
        name,
        value: s
            .as_ref()
            .map(|s| serde_json::to_value(&s.value).expect("settings serialize")),
        source: s.map(|s| s.source),
        env: env_name,
    })
}

pub fn run(ctx: &Ctx, c: ConfigCmd) -> CliResult {
    match c {
        ConfigCmd::Show => {
            let cfg = config(ctx.home_dir())?;
            let f = &cfg.file;
            let settings = vec![
                shown(
                    "metrics-file",
                    ENV_METRICS,
                    f.metrics_file.clone(),
                    &cfg,
                    None,
                    |v| Some(PathBuf::from(v)),
                )?,
                shown("syslog", ENV_SYSLOG, f.syslog.clone(), &cfg, None, |v| {
                    v.parse::<Target>().ok().map(|_| v)
                })?,
            ];
            ctx.print(&ConfigShown {
                file: cfg.path.clone(),
                file_exists: cfg.exists,
                settings,
            })
        }
    }
}

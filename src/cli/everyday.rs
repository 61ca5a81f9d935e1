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
use crate::metrics::{self, PullOutcome, PullSample};

/// Environment variables of the settings (the flags' names, upper-case).
const ENV_SYSLOG: &str = "VAULT_SYSLOG";
const ENV_METRICS: &str = "VAULT_METRICS_FILE";
const ENV_BMC_USER: &str = "VAULT_BMC_USER";
const ENV_CA_CERT: &str = "VAULT_CA_CERT";
const ENV_PARALLEL: &str = "VAULT_PARALLEL";
const ENV_TIMEOUT: &str = "VAULT_TIMEOUT";
const ENV_RETRIES: &str = "VAULT_RETRIES";
/// Built-in defaults of the BMC settings.
pub const DEFAULT_BMC_USER: &str = "Administrator";
pub const DEFAULT_PARALLEL: u16 = 4;
pub const DEFAULT_TIMEOUT: u64 = 30;
pub const DEFAULT_RETRIES: u32 = 2;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print every setting's effective value and where it came from (env, file or
    /// default; a flag wins over all of them on the command that takes it). The file is
    /// config.toml in the home, e.g.:
    ///
    ///   metrics-file = "/var/lib/prometheus/node-exporter/vault.prom"
    ///   syslog = "tcp://127.0.0.1:514"
    ///   bmc-user = "backup"
    ///   ca-cert = "/etc/vault/ilo-ca.pem"
    ///   parallel = 32
    ///   timeout = 30
    ///   retries = 2
    ///   keep-last = 7
    ///   keep-monthly = 12
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

/// A numeric environment setting, refused (not ignored) when out of `range`.
fn env_num<T: std::str::FromStr + PartialOrd + std::fmt::Debug>(
    name: &'static str,
    range: std::ops::RangeInclusive<T>,
) -> CliResult<Option<(&'static str, T)>> {
    match env(name) {
        None => Ok(None),
        Some((_, v)) => match v.trim().parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(Some((name, n))),
            _ => Err(CliError::new(
                Kind::Usage,
                format!("{name}={v:?} is not a number in {range:?}"),
            )),
        },
    }
}

/// The BMC settings a pull or restore did not get as flags: from the environment, else
/// config.toml (`None`: the built-in default applies).
#[derive(Default)]
pub struct BmcDefaults {
    pub user: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub parallel: Option<u16>,
    pub timeout: Option<u64>,
    pub retries: Option<u32>,
}

pub fn bmc_defaults(ctx: &Ctx) -> CliResult<BmcDefaults> {
    use crate::config::{PARALLEL_RANGE, RETRIES_RANGE, TIMEOUT_RANGE};
    let cfg = config(ctx.home_dir())?;
    let f = &cfg.file;
    Ok(BmcDefaults {
        user: pick(None, env(ENV_BMC_USER), (f.bmc_user.clone(), &cfg), None).map(|s| s.value),
        ca_cert: pick(
            None,
            env(ENV_CA_CERT).map(|(n, v)| (n, PathBuf::from(v))),
            (f.ca_cert.clone(), &cfg),
            None,
        )
        .map(|s| s.value),
        parallel: pick(
            None,
            env_num(ENV_PARALLEL, PARALLEL_RANGE)?,
            (f.parallel, &cfg),
            None,
        )
        .map(|s| s.value),
        timeout: pick(
            None,
            env_num(ENV_TIMEOUT, TIMEOUT_RANGE)?,
            (f.timeout, &cfg),
            None,
        )
        .map(|s| s.value),
        retries: pick(
            None,
            env_num(ENV_RETRIES, RETRIES_RANGE)?,
            (f.retries, &cfg),
            None,
        )
        .map(|s| s.value),
    })
}

/// The retention of config.toml (`keep-last` …), for a prune that names no `--keep-*`.
pub fn retention_defaults(ctx: &Ctx) -> CliResult<crate::retention::Policy> {
    let f = config(ctx.home_dir())?.file;
    Ok(crate::retention::Policy {
        keep_last: f.keep_last,
        keep_daily: f.keep_daily,
        keep_weekly: f.keep_weekly,
        keep_monthly: f.keep_monthly,
    })
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

pub fn write_pull_metrics(_ctx: &Ctx, path: &Path, samples: &[PullSample], started: Instant) {
    let r = metrics::write_pulls(path, samples, started.elapsed(), SystemTime::now());
    crate::ops::audit::metrics_written(r, &super::Notices);
}

/// One line of `vault config show`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Shown {
    name: &'static str,
    value: Option<serde_json::Value>,
    source: Option<Source>,
    #[serde(skip_serializing_if = "str::is_empty")]
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
    let from_env = match std::env::var(env_name)
        .ok()
        .filter(|v| !v.is_empty() && !env_name.is_empty())
    {
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
                shown(
                    "bmc-user",
                    ENV_BMC_USER,
                    f.bmc_user.clone(),
                    &cfg,
                    Some(DEFAULT_BMC_USER.to_string()),
                    Some,
                )?,
                shown("ca-cert", ENV_CA_CERT, f.ca_cert.clone(), &cfg, None, |v| {
                    Some(PathBuf::from(v))
                })?,
                shown(
                    "parallel",
                    ENV_PARALLEL,
                    f.parallel,
                    &cfg,
                    Some(DEFAULT_PARALLEL),
                    |v| {
                        v.parse()
                            .ok()
                            .filter(|p| crate::config::PARALLEL_RANGE.contains(p))
                    },
                )?,
                shown(
                    "timeout",
                    ENV_TIMEOUT,
                    f.timeout,
                    &cfg,
                    Some(DEFAULT_TIMEOUT),
                    |v| {
                        v.parse()
                            .ok()
                            .filter(|t| crate::config::TIMEOUT_RANGE.contains(t))
                    },
                )?,
                shown(
                    "retries",
                    ENV_RETRIES,
                    f.retries,
                    &cfg,
                    Some(DEFAULT_RETRIES),
                    |v| {
                        v.parse()
                            .ok()
                            .filter(|r| crate::config::RETRIES_RANGE.contains(r))
                    },
                )?,
                shown("keep-last", "", f.keep_last, &cfg, None, |_| None)?,
                shown("keep-daily", "", f.keep_daily, &cfg, None, |_| None)?,
                shown("keep-weekly", "", f.keep_weekly, &cfg, None, |_| None)?,
                shown("keep-monthly", "", f.keep_monthly, &cfg, None, |_| None)?,
            ];
            ctx.print(&ConfigShown {
                file: cfg.path.clone(),
                file_exists: cfg.exists,
                settings,
            })
        }
    }
}

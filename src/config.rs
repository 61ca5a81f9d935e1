//! Per-home defaults: `config.toml` in the vault home.
//!
//! Precedence, for every setting: a command-line flag, then the environment, then the
//! file, then the built-in default. [`Setting`] keeps where a value came from, so
//! `vault config show` can say it.
//!
//! Invariants:
//! - The file changes where vault connects and whom it trusts (`ca-cert`, `syslog`), so it
//!   is honoured only if the effective user owns it and nobody else can write it, like
//!   OpenSSH's StrictModes; otherwise loading fails with what to fix. It holds no secret
//!   and must not: there is no password setting.
//! - Unknown keys are refused (a misspelt `sylog = ...` must not be silently ignored),
//!   and the file is read with a size bound like any other input.
//! - Nothing here reads the environment or argv: the CLI passes those values in.
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::syslog::Target;
use crate::errors::{Classify, Kind};

/// Name of the file inside the home.
pub const FILE_NAME: &str = "config.toml";
/// Largest config file read.
pub const MAX_LEN: u64 = 64 * 1024;

/// The settings the file may hold; the names are the flags' names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// Prometheus textfile written by pulls and sweeps (`--metrics-file`); relative paths
    /// are relative to the home.
    pub metrics_file: Option<PathBuf>,
    /// Syslog receiver for audit records (`--syslog`): udp://H:P, tcp://H:P, unix:/PATH.
    pub syslog: Option<String>,
    /// BMC account of pulls and restores (`--bmc-user`).
    pub bmc_user: Option<String>,
    /// CA (PEM) that signed the BMCs' certificates (`--ca-cert`); relative paths are
    /// relative to the home.
    pub ca_cert: Option<PathBuf>,
    /// BMCs pulled at the same time by a fleet pull (`--parallel`, 1 to 1024).
    pub parallel: Option<u16>,
    /// Seconds allowed for connecting, each read and each BMC request (`--timeout`, 1 to 3600).
    pub timeout: Option<u64>,
    /// Extra attempts of idempotent BMC requests (`--retries`, 0 to 10).
    pub retries: Option<u32>,
    /// Retention of `backup prune` when it names no `--keep-*` (`--keep-last` …).
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

/// Bounds of the numeric settings (the flags' own bounds).
pub const PARALLEL_RANGE: std::ops::RangeInclusive<u16> = 1..=1024;
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;
pub const RETRIES_RANGE: std::ops::RangeInclusive<u32> = 0..=10;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_LEN} bytes; it is not a vault config file", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not valid: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{} is owned by uid {owner}, not by you (uid {euid}): it could redirect where vault connects; `chown {euid} {}` if you trust it",
        path.display(), path.display()
    )]
    NotOwned {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error("{} is writable by others (mode {mode:03o}): run `chmod go-w {}`", path.display(), path.display())]
    WritableByOthers { path: PathBuf, mode: u32 },
}

impl Classify for ConfigError {
    fn kind(&self) -> Kind {
        match self {
            ConfigError::Io { .. } => Kind::Io,
            ConfigError::TooLarge { .. } | ConfigError::Invalid { .. } => Kind::Usage,
            ConfigError::NotOwned { .. } | ConfigError::WritableByOthers { .. } => Kind::Refused,
        }
    }
}

/// The home's config file as loaded: its path, and its settings (all unset if missing).
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub path: PathBuf,
    pub exists: bool,
    pub file: ConfigFile,
}

/// The effective user id, without unsafe code: `/proc/self` belongs to it.
fn euid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

impl Config {
    /// Loads `<home>/config.toml`. A missing file (or home) is an empty config.
    pub fn load(home: &Path) -> Result<Config, ConfigError> {
        let path = home.join(FILE_NAME);
        let io = |source| ConfigError::Io {
            path: path.clone(),
            source,
        };
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config {
                    path,
                    exists: false,
                    file: ConfigFile::default(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        let meta = f.metadata().map_err(io)?;
        if let Some(euid) = euid()
            && meta.uid() != euid
        {
            return Err(ConfigError::NotOwned {
                path,
                owner: meta.uid(),
                euid,
            });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(ConfigError::WritableByOthers {
                path,
                mode: meta.mode() & 0o777,
            });
        }
        let mut text = String::new();
        f.take(MAX_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => ConfigError::Invalid {
                    path: path.clone(),
                    reason: "it is not UTF-8".into(),
                },
                _ => io(e),
            })?;
        if text.len() as u64 > MAX_LEN {
            return Err(ConfigError::TooLarge { path });
        }
        let file = Self::parse(&text).map_err(|reason| ConfigError::Invalid {
            path: path.clone(),
            reason,
        })?;
        let file = ConfigFile {
            metrics_file: file.metrics_file.map(|p| home.join(p)),
            ca_cert: file.ca_cert.map(|p| home.join(p)),
            ..file
        };
        Ok(Config {
            path,
            exists: true,
            file,
        })
    }

    /// Parses and checks the settings (no file access).
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if let Some(s) = &file.syslog {
            s.parse::<Target>().map_err(|e| e.to_string())?;
        }
        let out_of = |name: &str, range: String| Err(format!("{name} must be in {range}"));
        if file.parallel.is_some_and(|p| !PARALLEL_RANGE.contains(&p)) {
            return out_of("parallel", format!("{PARALLEL_RANGE:?}"));
        }
        if file.timeout.is_some_and(|t| !TIMEOUT_RANGE.contains(&t)) {
            return out_of("timeout", format!("{TIMEOUT_RANGE:?}"));
        }
        if file.retries.is_some_and(|r| !RETRIES_RANGE.contains(&r)) {
            return out_of("retries", format!("{RETRIES_RANGE:?}"));
        }
        if file
            .bmc_user
            .as_deref()
            .is_some_and(|u| u.is_empty() || u.chars().any(char::is_control))
        {
            return Err("bmc-user must be a non-empty name without control characters".into());
        }
        Ok(file)
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An effective value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The first of flag, environment, file and default that is set.
pub fn pick<T>(
    flag: Option<T>,
    env: Option<(&'static str, T)>,
    file: (Option<T>, &Config),
    default: Option<T>,
) -> Option<Setting<T>> {
    if let Some(value) = flag {
        return Some(Setting {
            value,
            source: Source::Flag,
        });
    }
    if let Some((name, value)) = env {
        return Some(Setting {
            value,
            source: Source::Env(name),
        });
    }
    if let Some(value) = file.0 {
        return Some(Setting {
            value,
            source: Source::File(file.1.path.clone()),
        });
    }
    default.map(|value| Setting {
        value,
        source: Source::Default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, text: &str, mode: u32) {
        let p = dir.join(FILE_NAME);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn every_setting_parses_and_relative_paths_are_under_the_home() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "metrics-file = \"/var/lib/node/vault.prom\"\nsyslog = \"tcp://127.0.0.1:514\"\n",
            0o600,
        );
        let c = Config::load(d.path()).unwrap();
        assert!(c.exists);
        assert_eq!(
            c.file.metrics_file,
            Some(PathBuf::from("/var/lib/node/vault.prom"))
        );
        assert_eq!(c.file.syslog.as_deref(), Some("tcp://127.0.0.1:514"));
        let rel = Config::parse("metrics-file = \"vault.prom\"").unwrap();
        assert_eq!(rel.metrics_file, Some(PathBuf::from("vault.prom")));
    }

    #[test]
    fn bmc_defaults_and_retention_parse_and_are_bounded() {
        let c = Config::parse(
            "bmc-user = \"backup\"\nca-cert = \"ilo-ca.pem\"\nparallel = 32\ntimeout = 10\nretries = 1\nkeep-last = 7\nkeep-monthly = 12\n",
        )
        .unwrap();
        assert_eq!(c.bmc_user.as_deref(), Some("backup"));
        assert_eq!(
            (c.parallel, c.timeout, c.retries),
            (Some(32), Some(10), Some(1))
        );
        assert_eq!((c.keep_last, c.keep_monthly), (Some(7), Some(12)));
        for (text, want) in [
            ("parallel = 0", "parallel must be in"),
            ("parallel = 5000", "parallel must be in"),
            ("timeout = 0", "timeout must be in"),
            ("retries = 11", "retries must be in"),
            ("bmc-user = \"\"", "bmc-user"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "ca-cert = \"ilo-ca.pem\"\n", 0o600);
        let loaded = Config::load(d.path()).unwrap();
        assert_eq!(loaded.file.ca_cert, Some(d.path().join("ilo-ca.pem")));
    }

    #[test]
    fn a_missing_file_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::load(&d.path().join("no-home")).unwrap();
        assert!(!c.exists);
        assert_eq!(c.file, ConfigFile::default());
    }

    #[test]
    fn typos_bad_values_and_bad_targets_are_refused() {
        for (text, want) in [
            ("sylog = \"tcp://h:1\"", "unknown field"),
            ("syslog = \"localhost\"", "not udp://"),
            ("bmc-password = \"x\"", "unknown field"),
            ("syslog = 514", "invalid type"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_file_others_can_write_is_refused() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "syslog = \"udp://127.0.0.1:514\"\n", 0o666);
        let e = Config::load(d.path()).unwrap_err();
        assert!(matches!(e, ConfigError::WritableByOthers { .. }), "{e}");
        assert!(e.to_string().contains("chmod go-w"));
    }

    #[test]
    fn a_file_owned_by_someone_else_is_refused() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "syslog = \"tcp://192.0.2.1:514\"\n", 0o600);
        let p = d.path().join(FILE_NAME);
        let other = euid().unwrap().wrapping_add(4242);
        // Only root can give a file away; the tests run as root in CI.
        if std::os::unix::fs::chown(&p, Some(other), None).is_err() {
            eprintln!("not root: cannot chown, ownership check untested here");
            return;
        }
        let e = Config::load(d.path()).unwrap_err();
        assert!(
            matches!(e, ConfigError::NotOwned { owner, .. } if owner == other),
            "{e}"
        );
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &"# x\n".repeat(20_000), 0o600);
        assert!(matches!(
            Config::load(d.path()),
            Err(ConfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let c = Config {
            path: "/h/config.toml".into(),
            exists: true,
            file: ConfigFile::default(),
        };
        let s = |f, e: Option<u8>, fi, d| {
            pick(f, e.map(|v| ("VAULT_PARALLEL", v)), (fi, &c), d).unwrap()
        };
        assert_eq!(s(Some(1), Some(2), Some(3), Some(4)).source, Source::Flag);
        assert_eq!(
            s(None, Some(2), Some(3), Some(4)).source,
            Source::Env("VAULT_PARALLEL")
        );
        let f = s(None, None, Some(3), Some(4));
        assert_eq!(
            (f.value, f.source.to_string()),
            (3, "file /h/config.toml".to_string())
        );
        assert_eq!(s(None, None, None, Some(4)).source, Source::Default);
        assert!(pick::<u8>(None, None, (None, &c), None).is_none());
    }
}

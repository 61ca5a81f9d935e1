//! Prometheus textfile-collector metrics for pulls and sweeps (`--metrics-file PATH`).
//!
//! Invariants:
//! - The file is replaced atomically (temporary file in the same directory, fsync, rename),
//!   so node_exporter never reads half a file. Its mode is 0644: the metrics hold host
//!   names, counts and times, never a secret, and the collector runs as another user.
//! - Updates are read-modify-write under an exclusive `flock` on `PATH.lock`: a pull and a
//!   sweep (or two pulls) writing the same file never lose each other's samples. Per-BMC
//!   samples of BMCs that a run did not touch are kept, and failure counters only grow
//!   (a deleted file restarts them at 0, which Prometheus reads as a counter reset).
//! - Only families named `vault_*` are read back; a previous file that does not parse is
//!   replaced, and the caller is told (it does not fail the operation that just ran).
//! - Reading back is bounded ([`MAX_FILE_LEN`]) like any other untrusted input.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::errors::{Classify, Kind};
use crate::fsutil;

/// Largest previous metrics file read back (a 10,000-BMC fleet writes about 4 MiB).
pub const MAX_FILE_LEN: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot {action} the metrics file {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Classify for MetricsError {
    fn kind(&self) -> Kind {
        Kind::Io
    }
}

/// How one BMC's pull ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// Archived; `bytes` of plaintext backup.
    Success { bytes: u64 },
    /// Failed with this error kind (`bmc`, `auth`, `io`, … as in the JSON `errorKind`).
    Failure { kind: String },
}

/// One BMC's pull, as the metrics see it.
#[derive(Debug, Clone)]
pub struct PullSample {
    /// `host[:port]` only, never a URL with credentials.
    pub bmc: String,
    pub outcome: PullOutcome,
    pub duration: Duration,
    /// When the pull ended.
    pub finished: SystemTime,
}

/// A sweep's outcome, as the metrics see it (the numbers of `sweep::SweepSummary`).
#[derive(Debug, Clone)]
pub struct SweepSample {
    /// Regular files examined, archives among them, files without finding, files not
    /// examined, archives fully authenticated, files with an integrity finding.
    pub files: u64,
    pub archives: u64,
    pub ok: u64,
    pub skipped: u64,
    pub verified: u64,
    pub integrity_failures: u64,
    /// Files per finding code (every code, with 0 when none).
    pub findings: Vec<(String, u64)>,
    pub duration: Duration,
    pub finished: SystemTime,
}

/// What an update reports besides success.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// The previous file could not be read back and was replaced (why).
    pub replaced_unreadable: Option<String>,
}

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Gauge,
    Counter,
}

struct Family {
    help: &'static str,
    ty: Type,
}

/// Every family vault writes. The set is closed: anything else read back is dropped.
fn family(name: &str) -> Option<Family> {
    use Type::*;
    let (help, ty) = match name {
        "vault_bmc_last_success_timestamp_seconds" => (
            "When the last successful pull of this BMC ended (Unix time).",
            Gauge,
        ),
        "vault_bmc_last_attempt_timestamp_seconds" => (
            "When the last pull of this BMC ended, successful or not (Unix time).",
            Gauge,
        ),
        "vault_bmc_last_success" => (
            "1 if the last pull of this BMC succeeded, 0 if it failed.",
            Gauge,
        ),
        "vault_bmc_last_duration_seconds" => ("Duration of the last pull of this BMC.", Gauge),
        "vault_bmc_last_backup_bytes" => (
            "Plaintext size of the last backup archived from this BMC.",
            Gauge,
        ),
        "vault_bmc_pull_failures_total" => ("Failed pulls of this BMC, by error kind.", Counter),
        "vault_pull_run_timestamp_seconds" => ("When the last pull run ended (Unix time).", Gauge),
        "vault_pull_run_duration_seconds" => ("Duration of the last pull run.", Gauge),
        "vault_pull_run_bmcs" => ("BMCs in the last pull run, by result.", Gauge),
        "vault_sweep_timestamp_seconds" => ("When the last sweep ended (Unix time).", Gauge),
        "vault_sweep_duration_seconds" => ("Duration of the last sweep.", Gauge),
        "vault_sweep_files" => ("Regular files examined by the last sweep.", Gauge),
        "vault_sweep_archives" => ("Vault archives among them.", Gauge),
        "vault_sweep_ok_files" => ("Files of the last sweep without any finding.", Gauge),
        "vault_sweep_skipped_files" => (
            "Symbolic links, special and temporary files the last sweep did not examine.",
            Gauge,
        ),
        "vault_sweep_verified_archives" => (
            "Archives the last sweep fully authenticated with their keys (0 for a keyless sweep).",
            Gauge,
        ),
        "vault_sweep_integrity_failures" => (
            "Files of the last sweep with at least one integrity finding.",
            Gauge,
        ),
        "vault_sweep_findings" => ("Files of the last sweep per finding code.", Gauge),
        _ => return None,
    };
    Some(Family { help, ty })
}

/// The samples of one textfile, keyed by family then labels (sorted: a stable file).
#[derive(Debug, Default, Clone, PartialEq)]
struct Samples(BTreeMap<String, BTreeMap<Labels, f64>>);

impl Samples {
    fn set(&mut self, name: &str, labels: Labels, v: f64) {
        debug_assert!(family(name).is_some(), "{name}");
        self.0
            .entry(name.to_string())
            .or_default()
            .insert(labels, v);
    }

    fn add(&mut self, name: &str, labels: Labels, v: f64) {
        *self
            .0
            .entry(name.to_string())
            .or_default()
            .entry(labels)
            .or_insert(0.0) += v;
    }

    fn remove_prefix(&mut self, prefix: &str) {
        self.0.retain(|name, _| !name.starts_with(prefix));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, samples) in &self.0 {
            let Some(f) = family(name) else { continue };
            if samples.is_empty() {
                continue;
            }
            let ty = match f.ty {
                Type::Gauge => "gauge",
                Type::Counter => "counter",
            };
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {ty}");
            for (labels, v) in samples {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(val));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", format_value(*v));
            }
        }
        out
    }

    /// Parses a file this module wrote. Lines of unknown families are dropped.
    fn parse(text: &str) -> Result<Samples, String> {
        let mut s = Samples::default();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}", n + 1);
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| bad("no value"))?;
            let value: f64 = value.parse().map_err(|_| bad("value is not a number"))?;
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .ok_or_else(|| bad("unclosed labels"))?;
                    (name, parse_labels(body).ok_or_else(|| bad("bad labels"))?)
                }
            };
            if family(name).is_some() {
                s.set(name, labels, value);
            }
        }
        Ok(s)
    }
}

/// `k="v",k2="v2"` with the exposition format's escapes (`\\`, `\"`, `\n`).
fn parse_labels(mut body: &str) -> Option<Labels> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (k, rest) = body.split_once("=\"")?;
        let mut v = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => v.push('\n'),
                    c @ ('\\' | '"') => v.push(c),
                    _ => return None,
                },
                (_, c) => v.push(c),
            }
        };
        out.push((k.to_string(), v));
        body = &rest[end + 1..];
        body = body.strip_prefix(',').unwrap_or(body);
    }
    Some(out)
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn bmc(host: &str) -> Labels {
    vec![("bmc".into(), host.into())]
}

impl Samples {
    fn record_pulls(&mut self, pulls: &[PullSample], run: Duration, finished: SystemTime) {
        let (mut ok, mut failed) = (0u64, 0u64);
        for p in pulls {
            let l = bmc(&p.bmc);
            let end = unix_seconds(p.finished);
            self.set("vault_bmc_last_attempt_timestamp_seconds", l.clone(), end);
            self.set(
                "vault_bmc_last_duration_seconds",
                l.clone(),
                p.duration.as_secs_f64(),
            );
            match &p.outcome {
                PullOutcome::Success { bytes } => {
                    ok += 1;
                    self.set("vault_bmc_last_success", l.clone(), 1.0);
                    self.set("vault_bmc_last_success_timestamp_seconds", l.clone(), end);
                    self.set("vault_bmc_last_backup_bytes", l, *bytes as f64);
                }
                PullOutcome::Failure { kind } => {
                    failed += 1;
                    self.set("vault_bmc_last_success", l.clone(), 0.0);
                    let mut l = l;
                    l.push(("kind".into(), kind.clone()));
                    self.add("vault_bmc_pull_failures_total", l, 1.0);
                }
            }
        }
        self.set(
            "vault_pull_run_timestamp_seconds",
            vec![],
            unix_seconds(finished),
        );
        self.set("vault_pull_run_duration_seconds", vec![], run.as_secs_f64());
        let result = |r: &str| vec![("result".to_string(), r.to_string())];
        self.set("vault_pull_run_bmcs", result("ok"), ok as f64);
        self.set("vault_pull_run_bmcs", result("failed"), failed as f64);
    }

    fn record_sweep(&mut self, s: &SweepSample) {
        // A sweep's numbers describe that sweep only: the previous ones go.
        self.remove_prefix("vault_sweep_");
        let sum = s;
        self.set(
            "vault_sweep_timestamp_seconds",
            vec![],
            unix_seconds(s.finished),
        );
        self.set(
            "vault_sweep_duration_seconds",
            vec![],
            s.duration.as_secs_f64(),
        );
        for (name, v) in [
            ("vault_sweep_files", sum.files),
            ("vault_sweep_archives", sum.archives),
            ("vault_sweep_ok_files", sum.ok),
            ("vault_sweep_skipped_files", sum.skipped),
            ("vault_sweep_verified_archives", sum.verified),
            ("vault_sweep_integrity_failures", sum.integrity_failures),
        ] {
            self.set(name, vec![], v as f64);
        }
        for (code, n) in &sum.findings {
            self.set(
                "vault_sweep_findings",
                vec![("finding".into(), code.clone())],
                *n as f64,
            );
        }
    }
}

/// Adds a pull run (one BMC or a fleet) to the metrics file at `path`.
pub fn write_pulls(
    path: &Path,
    pulls: &[PullSample],
    run: Duration,
    finished: SystemTime,
) -> Result<WriteReport, MetricsError> {
    update(path, |s| s.record_pulls(pulls, run, finished))
}

/// Replaces the sweep metrics in the metrics file at `path`.
pub fn write_sweep(path: &Path, sweep: &SweepSample) -> Result<WriteReport, MetricsError> {
    update(path, |s| s.record_sweep(sweep))
}

fn update(path: &Path, change: impl FnOnce(&mut Samples)) -> Result<WriteReport, MetricsError> {
    let err = |action| {
        move |source| MetricsError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(PathBuf::from(lock_name))
        .map_err(err("lock"))?;
    // Released when `lock` is closed, after the rename.
    lock.lock().map_err(err("lock"))?;

    let mut report = WriteReport::default();
    let mut samples = match read_bounded(path) {
        Ok(None) => Samples::default(),
        Ok(Some(text)) => Samples::parse(&text).unwrap_or_else(|why| {
            report.replaced_unreadable = Some(why);
            Samples::default()
        }),
        Err(why) => {
            report.replaced_unreadable = Some(why);
            Samples::default()
        }
    };
    change(&mut samples);
    fsutil::write_atomic(path, samples.render().as_bytes(), 0o644).map_err(err("write"))?;
    Ok(report)
}

/// The previous file, `None` if there is none; `Err` (a reason) if it is unusable.
fn read_bounded(path: &Path) -> Result<Option<String>, String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let mut bytes = Vec::new();
    f.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(format!("it is larger than {MAX_FILE_LEN} bytes"));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "it is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn pull(host: &str, outcome: PullOutcome, end: u64) -> PullSample {
        PullSample {
            bmc: host.into(),
            outcome,
            duration: Duration::from_millis(1500),
            finished: at(end),
        }
    }

    fn fail(kind: &str) -> PullOutcome {
        PullOutcome::Failure { kind: kind.into() }
    }

    fn read(p: &Path) -> Samples {
        Samples::parse(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn get(s: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let l: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.0.get(name)?.get(&l).copied()
    }

    #[test]
    fn pulls_accumulate_failures_and_keep_the_last_success() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vault.prom");
        let ok = PullOutcome::Success { bytes: 4096 };
        write_pulls(
            &p,
            &[pull("a:443", ok.clone(), 100), pull("b", fail("bmc"), 101)],
            Duration::from_secs(2),
            at(102),
        )
        .unwrap();
        write_pulls(
            &p,
            &[
                pull("a:443", fail("auth"), 200),
                pull("b", fail("bmc"), 201),
            ],
            Duration::from_secs(3),
            at(202),
        )
        .unwrap();
        let s = read(&p);
        let a = [("bmc", "a:443")];
        assert_eq!(
            get(&s, "vault_bmc_last_success_timestamp_seconds", &a),
            Some(100.0)
        );
        assert_eq!(
            get(&s, "vault_bmc_last_attempt_timestamp_seconds", &a),
            Some(200.0)
        );
        assert_eq!(get(&s, "vault_bmc_last_success", &a), Some(0.0));
        assert_eq!(get(&s, "vault_bmc_last_backup_bytes", &a), Some(4096.0));
        assert_eq!(get(&s, "vault_bmc_last_duration_seconds", &a), Some(1.5));
        let fails = |h, k| {
            get(
                &s,
                "vault_bmc_pull_failures_total",
                &[("bmc", h), ("kind", k)],
            )
        };
        assert_eq!(fails("a:443", "auth"), Some(1.0));
        assert_eq!(fails("b", "bmc"), Some(2.0));
        assert_eq!(
            get(
                &s,
                "vault_bmc_last_success_timestamp_seconds",
                &[("bmc", "b")]
            ),
            None
        );
        assert_eq!(
            get(&s, "vault_pull_run_bmcs", &[("result", "failed")]),
            Some(2.0)
        );
        assert_eq!(
            get(&s, "vault_pull_run_timestamp_seconds", &[]),
            Some(202.0)
        );
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn a_single_pull_keeps_the_fleet_s_other_bmcs() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vault.prom");
        let ok = PullOutcome::Success { bytes: 1 };
        write_pulls(
            &p,
            &[pull("a", ok.clone(), 1), pull("b", ok.clone(), 1)],
            Duration::ZERO,
            at(1),
        )
        .unwrap();
        write_pulls(&p, &[pull("a", ok, 5)], Duration::ZERO, at(5)).unwrap();
        let s = read(&p);
        assert_eq!(
            get(
                &s,
                "vault_bmc_last_success_timestamp_seconds",
                &[("bmc", "b")]
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                &s,
                "vault_bmc_last_success_timestamp_seconds",
                &[("bmc", "a")]
            ),
            Some(5.0)
        );
    }

    #[test]
    fn labels_with_quotes_backslashes_and_newlines_round_trip() {
        let mut s = Samples::default();
        let host = "we\"ird\\host\nname";
        s.set("vault_bmc_last_success", bmc(host), 1.0);
        let text = s.render();
        assert!(text.contains(r#"{bmc="we\"ird\\host\nname"} 1"#), "{text}");
        assert_eq!(Samples::parse(&text).unwrap(), s);
    }

    #[test]
    fn sweeps_replace_their_own_families_and_keep_pulls() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vault.prom");
        write_pulls(&p, &[pull("a", fail("io"), 1)], Duration::ZERO, at(1)).unwrap();
        let sweep = SweepSample {
            files: 3,
            archives: 3,
            ok: 1,
            skipped: 0,
            verified: 0,
            integrity_failures: 0,
            findings: vec![("key-missing".into(), 2), ("truncated".into(), 0)],
            duration: Duration::from_secs(1),
            finished: at(9),
        };
        write_sweep(&p, &sweep).unwrap();
        let s = read(&p);
        assert_eq!(
            get(&s, "vault_sweep_findings", &[("finding", "key-missing")]),
            Some(2.0)
        );
        assert_eq!(
            get(&s, "vault_sweep_findings", &[("finding", "truncated")]),
            Some(0.0)
        );
        assert_eq!(
            get(
                &s,
                "vault_bmc_pull_failures_total",
                &[("bmc", "a"), ("kind", "io")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn an_unparseable_previous_file_is_replaced_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vault.prom");
        std::fs::write(&p, "vault_bmc_last_success{bmc=\"a} 1\n").unwrap();
        let r = write_pulls(&p, &[pull("b", fail("bmc"), 1)], Duration::ZERO, at(1)).unwrap();
        assert!(r.replaced_unreadable.unwrap().contains("line 1"));
        let s = read(&p);
        assert_eq!(get(&s, "vault_bmc_last_success", &[("bmc", "a")]), None);
        // Foreign families are dropped, not carried over unchecked.
        std::fs::write(&p, "other_metric 1\nvault_bmc_last_success{bmc=\"a\"} 1\n").unwrap();
        write_pulls(&p, &[], Duration::ZERO, at(2)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            !text.contains("other_metric") && text.contains("bmc=\"a\""),
            "{text}"
        );
    }
}

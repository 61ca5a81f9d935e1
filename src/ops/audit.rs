//! The read-only audit operations: the log's records, the check of its hash chain
//! (against an anchor kept elsewhere), and keyless integrity and policy sweeps over
//! archive files and remotes, with their Prometheus metrics.
//!
//! Invariant: nothing here appends to the log, changes an archive or creates a vault
//! home. A sweep of a machine that has no home sees no key (every key is "missing"), and
//! a check of the chain reports what is broken as a [`LogProblem`] beside the full report,
//! so the caller can print the report and still fail.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use uuid::Uuid;

use super::{OpsError, Progress};
use crate::audit::{AnchorCheck, AuditFilter, AuditLog, AuditRecord, Broken, VerifyReport};
use crate::home::Home;
use crate::keystore::KeyStore;
use crate::metrics::{self, SweepSample};
use crate::remote::Remote;
use crate::sweep::{self, KeyStatus, SweepKeys, SweepOptions, SweepReport, SweepSummary};

/// The records of the audit log of the home at `home_dir` that match `filter`, oldest first.
pub fn records(home_dir: &Path, filter: &AuditFilter) -> Result<Vec<AuditRecord>, OpsError> {
    Ok(AuditLog::open(home_dir).query(filter)?)
}

/// A point of the chain kept elsewhere: record `seq` has hash `hash` (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// What [`verify`] found: the chain's report, the anchor check if one was asked for, and
/// the first problem (a broken chain first, then an anchor that does not match).
#[derive(Debug)]
pub struct Verification {
    pub report: VerifyReport,
    pub anchor: Option<(Anchor, AnchorCheck)>,
    pub problem: Option<LogProblem>,
}

impl Verification {
    /// The anchor to keep for the next check: the last intact record.
    pub fn next_anchor(&self) -> Anchor {
        Anchor {
            seq: self.report.records,
            hash: self.report.last_hash.clone(),
        }
    }
}

/// Why a log cannot be trusted (all of them are integrity failures).
#[derive(Debug, thiserror::Error)]
pub enum LogProblem {
    #[error(
        "audit log {} is broken at line {}{}: {}; the {intact} record(s) before it chain correctly, records from there on cannot be trusted. Keep the file as evidence and compare it with your last anchor or a backup copy",
        path.display(), broken.line, broken.seq.map(|s| format!(" (seq {s})")).unwrap_or_default(), broken.reason
    )]
    Broken {
        path: PathBuf,
        broken: Broken,
        intact: u64,
    },
    #[error(
        "record {seq} of audit log {} now has hash {found}, not the anchored {anchored}: the log up to it was rewritten",
        path.display()
    )]
    Rewritten {
        path: PathBuf,
        seq: u64,
        found: String,
        anchored: String,
    },
    #[error(
        "audit log {} ends after {records} intact record(s), before the anchored seq {seq}: records were removed from its end",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        records: u64,
        seq: u64,
    },
}

impl crate::errors::Classify for LogProblem {
    fn kind(&self) -> crate::errors::Kind {
        crate::errors::Kind::Integrity
    }
}

/// Checks the hash chain of the log of the home at `home_dir` and, with `anchor`, that
/// records 1..=seq are unchanged and still present.
pub fn verify(home_dir: &Path, anchor: Option<Anchor>) -> Result<Verification, OpsError> {
    let log = AuditLog::open(home_dir);
    let path = log.path().to_path_buf();
    let report = log.verify()?;
    let mut problem = report
        .first_broken
        .clone()
        .map(|broken| LogProblem::Broken {
            path: path.clone(),
            broken,
            intact: report.records,
        });
    let anchor = match anchor {
        None => None,
        Some(a) => {
            let check = log.verify_against_anchor(a.seq, &a.hash)?;
            let mismatch = match &check {
                AnchorCheck::Found => None,
                AnchorCheck::HashDiffers { found, .. } => Some(LogProblem::Rewritten {
                    path: path.clone(),
                    seq: a.seq,
                    found: found.clone(),
                    anchored: a.hash.clone(),
                }),
                AnchorCheck::Truncated { records } => Some(LogProblem::Truncated {
                    path: path.clone(),
                    records: *records,
                    seq: a.seq,
                }),
                AnchorCheck::ChainBroken { broken } => Some(LogProblem::Broken {
                    path: path.clone(),
                    broken: broken.clone(),
                    intact: broken.line.saturating_sub(1),
                }),
            };
            problem = problem.or(mismatch);
            Some((a, check))
        }
    };
    Ok(Verification {
        report,
        anchor,
        problem,
    })
}

/// A keyless sweep of archive files, directories and remotes (`audit archives`).
pub struct ArchiveSweep {
    /// Files and directories (walked recursively).
    pub paths: Vec<PathBuf>,
    /// Remotes of this home, each swept keylessly by ranged reads.
    pub remotes: Vec<Remote>,
    pub max_age_days: Option<u64>,
    pub rotation_days: Option<u64>,
    /// Remotes only: `retention-too-short` when an Object Lock ends sooner than this.
    pub min_retention_days: Option<u32>,
    /// Also authenticate every local archive whose key is in the home.
    pub verify: bool,
    /// Home public keys (`vault home public-key` files): check every archive's signature.
    pub trust: Vec<PathBuf>,
    /// Worker threads; `None`: the number of CPUs, at most 4.
    pub threads: Option<usize>,
    /// Write Prometheus textfile metrics of the sweep here.
    pub metrics: Option<PathBuf>,
    pub now: OffsetDateTime,
}

/// What [`sweep_archives`] found.
pub struct Swept {
    pub report: SweepReport,
    /// Directories at the depth limit that were not entered (listed under `skipped`).
    pub too_deep: usize,
}

/// Fails with [`OpsError::NotFound`] for the first of `paths` that does not exist.
pub fn check_paths(paths: &[PathBuf]) -> Result<(), OpsError> {
    match paths.iter().find(|p| std::fs::metadata(p).is_err()) {
        Some(p) => Err(OpsError::NotFound(p.clone())),
        None => Ok(()),
    }
}

/// Sweeps `req`'s paths and remotes. Key states come from `home` (no home: every key is
/// missing); with `verify`, local archives are authenticated with its keys. Findings are
/// the report, never an error: an error means the sweep could not run at all. A metrics
/// file that cannot be written is a warning on `progress`.
pub fn sweep_archives(
    home: Option<&Home>,
    req: &ArchiveSweep,
    progress: &dyn Progress,
) -> Result<Swept, OpsError> {
    let started = std::time::Instant::now();
    check_paths(&req.paths)?;
    let statuses = match home {
        Some(h) => key_statuses(h)?,
        None => HashMap::new(),
    };
    let status = |id: &Uuid| statuses.get(id).cloned();
    let confirmations = match home {
        Some(h) => crate::store::Confirmations::of(h),
        None => crate::store::Confirmations::none(),
    };
    let confirmed = |i: &crate::envelope::Inspection, k: &Uuid| confirmations.key(i, k);
    let threads = req.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get().min(4))
            .unwrap_or(1)
    });
    let opts = SweepOptions {
        trusted: super::backup::trusted_keys(&req.trust)?,
        max_age_days: req.max_age_days,
        rotation_days: req.rotation_days,
        now: req.now,
        threads,
    };
    let keyless = SweepKeys {
        status: &status,
        confirmed: &confirmed,
        material: None,
    };
    let report = match home.filter(|_| req.verify) {
        Some(h) => {
            let ks = KeyStore::new(h);
            let material = super::backup::key_lookup(&ks)?;
            let keys = SweepKeys {
                status: &status,
                confirmed: &confirmed,
                material: Some(&material),
            };
            sweep::sweep(&req.paths, &keys, &opts)
        }
        None => sweep::sweep(&req.paths, &keyless, &opts),
    };
    let report = if req.remotes.is_empty() {
        report
    } else {
        let mut all = report.archives;
        for remote in &req.remotes {
            all.extend(super::remote::sweep(
                remote,
                &keyless,
                &opts,
                req.min_retention_days,
            )?);
        }
        sweep::summarize(all, report.skipped)
    };
    if let Some(m) = &req.metrics {
        write_sweep_metrics(m, &report.summary, started.elapsed(), progress);
    }
    let too_deep = report
        .skipped
        .iter()
        .filter(|k| k.reason == sweep::SkipReason::TooDeep)
        .count();
    Ok(Swept { report, too_deep })
}

/// Each key's state, age and dependency, as a sweep needs them (no material).
fn key_statuses(home: &Home) -> Result<HashMap<Uuid, KeyStatus>, OpsError> {
    let ks = KeyStore::new(home);
    let deps = ks.dependencies()?;
    Ok(ks
        .list(None, None)?
        .into_iter()
        .map(|k| {
            let status = KeyStatus {
                state: k.state,
                created_at: k.created_at,
                depends_on: deps.of(&k.id),
            };
            (k.id, status)
        })
        .collect())
}

/// Writes the metrics of a sweep that took `took`. The sweep itself is done: a
/// monitoring problem is a warning, not a failure (the stale file's timestamps make the
/// monitoring system notice too).
pub fn write_sweep_metrics(path: &Path, s: &SweepSummary, took: Duration, progress: &dyn Progress) {
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
        duration: took,
        finished: SystemTime::now(),
    };
    metrics_written(metrics::write_sweep(path, &sample), progress);
}

/// Reports on `progress` what a metrics write left to know: a failure, or a previous
/// file that was unreadable and replaced (its counters restart).
pub fn metrics_written(
    r: Result<metrics::WriteReport, metrics::MetricsError>,
    progress: &dyn Progress,
) {
    match r {
        Ok(rep) => {
            if let Some(why) = rep.replaced_unreadable {
                progress.warn(&format!(
                    "warning: the previous metrics file was replaced ({why}); its counters restart at 0"
                ));
            }
        }
        Err(e) => progress.warn(&format!("warning: {e}")),
    }
}

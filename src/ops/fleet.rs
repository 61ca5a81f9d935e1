//! `backup pull --inventory`: many BMCs pulled by a pool of threads, each pull the same
//! audited operation as a single one ([`super::pull::pull`]).
//!
//! Invariants:
//! - Every job gets exactly one [`FleetOutcome`], in inventory order, whatever happens
//!   to the others; a job the caller could not build is audited as a failed
//!   `backup.pull` naming its BMC, like any failure.
//! - A BMC that answers `SessionLimitExceeded` (every session slot taken) is not held
//!   by a worker through a long backoff: it is put back at the end of the queue and tried
//!   again once the others were, at most [`FLEET_ATTEMPTS`] times in all.
//! - Archives finishing together are renamed under one home lock (group commit, see
//!   [`crate::store::StagedArchive::commit_grouped`]); with a remote, each is pushed by
//!   the thread that pulled it, right after its commit, and stays in the home whatever
//!   happens to the push.
//! - Progress: `phase(host)` and `advance(1)` once per BMC finished, `warn` for what the
//!   person running the fleet should see at once (retries, failures, sessions left open).
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::progress::Progress;
use super::pull::{PullJob, Pulled};
use super::{Context, OpsError, Silent};
use crate::bmc::BmcError;
use crate::remote::{LockMode, PushOutcome, Remote};

/// Largest fleet inventory file read.
pub const MAX_INVENTORY_BYTES: u64 = 4 << 20;
/// Largest number of BMCs in one inventory.
pub const MAX_INVENTORY_ENTRIES: usize = 10_000;
/// Attempts at a fleet BMC that answers `SessionLimitExceeded` (the others go first).
pub const FLEET_ATTEMPTS: u32 = 3;
/// Login retries within one fleet attempt: a full BMC is re-queued rather than holding
/// a worker through the whole backoff of a single pull.
pub const FLEET_SESSION_LIMIT_RETRIES: u32 = 2;

/// The `[[bmc]]` list of an inventory (TOML), or `{"bmc": [...]}` (JSON).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Inventory<E> {
    #[serde(default = "Vec::new")]
    bmc: Vec<E>,
}

/// Reads a fleet inventory: TOML or JSON by extension (JSON as a list or
/// `{"bmc": [...]}`), at most [`MAX_INVENTORY_BYTES`] and [`MAX_INVENTORY_ENTRIES`], at
/// least one entry. The entry type `E` is the caller's.
pub fn read_inventory<E: DeserializeOwned>(path: &Path) -> Result<Vec<E>, OpsError> {
    let bad = |reason: String| OpsError::Inventory {
        path: path.to_path_buf(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(OpsError::file(path))?;
    let mut text = String::new();
    f.take(MAX_INVENTORY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(OpsError::file(path))?;
    if text.len() as u64 > MAX_INVENTORY_BYTES {
        return Err(bad(format!("is larger than {MAX_INVENTORY_BYTES} bytes")));
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let invalid = |e: String| bad(format!("is not valid: {e}"));
    let entries = match ext.as_str() {
        "toml" => {
            toml::from_str::<Inventory<E>>(&text)
                .map_err(|e| invalid(e.to_string()))?
                .bmc
        }
        "json" => {
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            if v.is_array() {
                serde_json::from_value(v).map_err(|e| invalid(e.to_string()))?
            } else {
                serde_json::from_value::<Inventory<E>>(v)
                    .map_err(|e| invalid(e.to_string()))?
                    .bmc
            }
        }
        _ => return Err(bad("must end in .toml or .json".into())),
    };
    if entries.is_empty() {
        return Err(invalid("it lists no BMC ([[bmc]] entries)".into()));
    }
    if entries.len() > MAX_INVENTORY_ENTRIES {
        return Err(invalid(format!("more than {MAX_INVENTORY_ENTRIES} BMCs")));
    }
    Ok(entries)
}

/// The directory an inventory's relative paths are relative to.
pub fn inventory_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// One BMC of a fleet: its `host[:port]` and the job, or why none could be built.
pub struct FleetJob {
    pub host: String,
    pub job: Result<PullJob, OpsError>,
}

/// How a fleet runs.
pub struct FleetOptions<'a> {
    /// Workers (at most one per BMC).
    pub parallel: usize,
    /// Push each archive to this remote right after its commit, optionally under
    /// Object Lock (mode, days).
    pub push_to: Option<(&'a Remote, Option<(LockMode, u32)>)>,
}

/// What became of one BMC.
pub struct FleetOutcome {
    pub host: String,
    /// When its last attempt started (for per-BMC metrics).
    pub started: Instant,
    /// 1 unless the BMC answered `SessionLimitExceeded`.
    pub attempts: u32,
    pub result: Result<Pulled, OpsError>,
    /// With a remote and a stored archive: the push's outcome.
    pub pushed: Option<Result<PushOutcome, OpsError>>,
}

/// A fleet's outcomes (inventory order) and how its commits were grouped.
pub struct FleetReport {
    pub outcomes: Vec<FleetOutcome>,
    pub group: GroupStats,
}

/// Group commit figures of this process for the home (cumulative).
pub struct GroupStats {
    pub archives: u64,
    pub archive_batches: u64,
    pub records: u64,
    pub audit_batches: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Pulls every job of `jobs` with `opts.parallel` workers (see the module's invariants).
pub fn pull(
    ctx: &Context,
    jobs: Vec<FleetJob>,
    opts: &FleetOptions<'_>,
    progress: &dyn Progress,
) -> FleetReport {
    // Each worker holds a socket, a staged archive and, briefly, the lock and audit
    // files: at 256 workers that is past the usual soft limit of 1024 descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let run = Run::new(jobs);
    let workers = opts.parallel.clamp(1, run.hosts.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(i) = run.next() {
                    if let Some(outcome) = run.attempt(ctx, i, progress) {
                        let outcome = push_after_commit(ctx, opts, outcome, progress);
                        *lock(&run.outcomes[i]) = Some(outcome);
                        progress.phase(&run.hosts[i], None);
                        progress.advance(1);
                    }
                }
            });
        }
    });
    let outcomes = run
        .outcomes
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .expect("every job finishes with an outcome")
        })
        .collect();
    FleetReport {
        outcomes,
        group: group_stats(ctx),
    }
}

/// The shared state of a fleet's workers.
struct Run {
    hosts: Vec<String>,
    /// Each job until a worker takes it (and again when it is re-queued).
    jobs: Vec<Mutex<Option<Result<PullJob, OpsError>>>>,
    outcomes: Vec<Mutex<Option<FleetOutcome>>>,
    /// The next job never tried.
    next: AtomicUsize,
    /// BMCs that answered SessionLimitExceeded, tried again once the others were.
    again: Mutex<VecDeque<usize>>,
    attempts: Vec<AtomicU32>,
}

impl Run {
    fn new(jobs: Vec<FleetJob>) -> Run {
        let n = jobs.len();
        let hosts = jobs.iter().map(|j| j.host.clone()).collect();
        Run {
            hosts,
            jobs: jobs.into_iter().map(|j| Mutex::new(Some(j.job))).collect(),
            outcomes: (0..n).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            again: Mutex::new(VecDeque::new()),
            attempts: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The job to work on next: every job once, then the re-queued ones.
    fn next(&self) -> Option<usize> {
        match self.next.fetch_add(1, Ordering::SeqCst) {
            i if i < self.hosts.len() => Some(i),
            _ => lock(&self.again).pop_front(),
        }
    }

    /// One attempt at job `i`: its outcome, or `None` when the BMC had no free session
    /// slot and the job went back to the end of the queue.
    fn attempt(&self, ctx: &Context, i: usize, progress: &dyn Progress) -> Option<FleetOutcome> {
        let attempt = self.attempts[i].fetch_add(1, Ordering::SeqCst) + 1;
        let host = &self.hosts[i];
        let job = lock(&self.jobs[i]).take().expect("each job is taken once");
        let started = Instant::now();
        let result = match job {
            Ok(job) => {
                let retry = (attempt < FLEET_ATTEMPTS).then(|| job.clone());
                match (super::pull::pull(ctx, job, &Silent), retry) {
                    (Err(OpsError::Bmc(BmcError::SessionLimit { .. })), Some(job)) => {
                        *lock(&self.jobs[i]) = Some(Ok(job));
                        lock(&self.again).push_back(i);
                        progress.warn(&format!(
                            "{host}: no free session slot (attempt {attempt} of {FLEET_ATTEMPTS}); trying it again after the other BMCs"
                        ));
                        return None;
                    }
                    (r, _) => r,
                }
            }
            Err(e) => Err(super::pull::refused(ctx, host, e)),
        };
        match &result {
            Ok(p) => {
                if let Some(w) = &p.logout_warning {
                    progress.warn(&format!("warning: {}: {w}", p.host));
                }
            }
            Err(e) => progress.warn(&format!("{host}: {e}")),
        }
        Some(FleetOutcome {
            host: host.clone(),
            started,
            attempts: attempt,
            result,
            pushed: None,
        })
    }
}

/// With a remote: pushes a stored archive, by the thread that pulled it, right after its
/// commit (it stays in the home whatever happens to the push).
fn push_after_commit(
    ctx: &Context,
    opts: &FleetOptions<'_>,
    mut outcome: FleetOutcome,
    progress: &dyn Progress,
) -> FleetOutcome {
    if let (Ok(p), Some((remote, lock_mode))) = (&outcome.result, &opts.push_to) {
        outcome.pushed = Some(
            super::remote::push_sealed(ctx, remote, &p.sealed.header.id, *lock_mode)
                .inspect_err(|e| progress.warn(&e.to_string())),
        );
    }
    outcome
}

fn group_stats(ctx: &Context) -> GroupStats {
    let home = ctx.home();
    let (archive_batches, archives) = crate::store::commit_group_stats(&home.archives_dir());
    let (audit_batches, records) =
        crate::audit::group_stats(&home.dir().join(crate::audit::LOG_FILE_NAME));
    GroupStats {
        archives,
        archive_batches,
        records,
        audit_batches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        url: String,
        domain: Option<String>,
    }

    #[test]
    fn inventories_are_toml_or_json_and_bounded() {
        let t = tempfile::tempdir().unwrap();
        let toml_path = t.path().join("fleet.toml");
        std::fs::write(
            &toml_path,
            "[[bmc]]\nurl = \"https://a\"\n\n[[bmc]]\nurl = \"https://b\"\ndomain = \"r1\"\n",
        )
        .unwrap();
        let e: Vec<Entry> = read_inventory(&toml_path).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].domain.as_deref(), Some("r1"));
        let json_path = t.path().join("fleet.json");
        std::fs::write(&json_path, r#"[{"url":"https://a"}]"#).unwrap();
        assert_eq!(
            read_inventory::<Entry>(&json_path).unwrap()[0].url,
            "https://a"
        );
        std::fs::write(&json_path, r#"{"bmc":[{"url":"https://a","bogus":1}]}"#).unwrap();
        assert!(read_inventory::<Entry>(&json_path).is_err());
        std::fs::write(&json_path, r#"{"bmc":[]}"#).unwrap();
        let err = read_inventory::<Entry>(&json_path).unwrap_err().to_string();
        assert!(err.contains("lists no BMC"), "{err}");
        let other = t.path().join("fleet.yaml");
        std::fs::write(&other, "x").unwrap();
        assert!(read_inventory::<Entry>(&other).is_err());
        let big = t.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_INVENTORY_BYTES as usize + 1]).unwrap();
        let err = read_inventory::<Entry>(&big).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
    }

    #[test]
    fn inventory_paths_are_relative_to_its_directory() {
        assert_eq!(inventory_dir(Path::new("fleet.toml")), Path::new("."));
        assert_eq!(
            inventory_dir(Path::new("/etc/v/fleet.toml")),
            Path::new("/etc/v")
        );
    }
}

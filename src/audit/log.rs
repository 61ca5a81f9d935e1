//! `audit.log`: the append-only, hash-chained JSON-lines file in the vault home.
//!
//! Invariants:
//! - Every append holds an exclusive `flock` on `audit.log` from reading the last record
//!   to the `fsync` of the new one, so concurrent processes never fork the chain (two
//!   records with the same seq) — without the lock they would.
//! - A record is written with one `write_all` of the whole line, `\n` included, on an
//!   `O_APPEND` descriptor, then `sync_data`. A line without its `\n` (a *torn tail*) was
//!   therefore never reported as written; the next append truncates it back to the last
//!   newline and says so, with the removed length and SHA-256, in the new record's
//!   `detail`. Verify reports a torn tail separately from tampering.
//! - Readers never buffer more than [`MAX_LINE_LEN`] bytes of one line.
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Take, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::AuditError;
use super::intent::{self, Abandoned, Intent, IntentRecord};
use super::lines::{Line, LineReader};
use super::record::{AuditEvent, AuditRecord, GENESIS_PREV_HASH, Outcome, is_hash_hex};
use crate::account::os_account;
use crate::clock::{self, Precision};
use crate::fsutil;
use crate::group::Group;

/// Name of the log file inside the vault home.
pub const LOG_FILE_NAME: &str = "audit.log";

/// Longest line (without `\n`) a reader accepts and a writer produces.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Chunk size for scanning backwards from the end of the log.
const SCAN_CHUNK: u64 = 8 * 1024;

/// Handle on a vault home's audit log. Cheap to create; every call opens the file anew,
/// so separate handles behave like separate processes.
#[derive(Debug, Clone)]
pub struct AuditLog {
    home: PathBuf,
    path: PathBuf,
    account: Option<String>,
}

/// Selects records in [`AuditLog::query`]. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Records whose time is at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Exact operation (`"keys.create"`), or a group without a dot (`"keys"` matches
    /// every `keys.*`).
    pub operation: Option<String>,
    pub key_id: Option<String>,
    pub archive_id: Option<String>,
}

/// Outcome of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Records that chain correctly from genesis, up to the first broken one.
    pub records: u64,
    /// `hash` of the last of those records (64 zeros if none): the anchor to keep.
    pub last_hash: String,
    /// The first record that breaks the chain, if any (tampering or corruption).
    pub first_broken: Option<Broken>,
    /// Unterminated bytes at the end (an interrupted append), if the chain reached them.
    pub torn_tail: Option<TornTail>,
    /// Intents of processes that died after announcing a change and before recording its
    /// outcome ([`AuditLog::unfinished`]), not yet in the chain: the next append records
    /// them as `unfinished`. Their changes may or may not have been made.
    pub unfinished: Vec<IntentRecord>,
}

impl VerifyReport {
    /// No record breaks the chain. A torn tail alone does not make a log untrustworthy.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Broken {
    /// 1-based line number in `audit.log`.
    pub line: u64,
    /// The seq the line claims, when it parses.
    pub seq: Option<u64>,
    pub kind: BreakKind,
    /// A sentence for people.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakKind {
    /// Not JSON, not a record, not UTF-8, or longer than [`MAX_LINE_LEN`].
    Unparseable,
    /// `hash`/`prevHash` not 64 lowercase hex digits.
    MalformedHash,
    /// The stored `hash` is not the hash of the record's fields: a field was edited.
    HashMismatch,
    /// `seq` is not the previous seq + 1: a record was deleted, inserted or moved.
    SeqGap,
    /// `prevHash` is not the previous record's `hash`.
    PrevHashMismatch,
}

/// An interrupted append: bytes after the last newline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TornTail {
    /// The line number the torn bytes would have had.
    pub line: u64,
    pub bytes: u64,
}

/// Outcome of [`AuditLog::verify_against_anchor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum AnchorCheck {
    /// The chain is intact from genesis to the anchored seq, which has the anchored hash:
    /// every record up to the anchor is exactly as it was when the anchor was taken.
    Found,
    /// The anchored seq exists but its hash differs: history up to it was rewritten.
    HashDiffers { line: u64, found: String },
    /// The log now ends (intact) before the anchored seq: its tail was truncated.
    Truncated { records: u64 },
    /// The chain breaks before the anchored seq is reached.
    ChainBroken { broken: Broken },
}

/// Streaming iterator over committed records (see [`AuditLog::records`]).
pub struct Records {
    /// `None` when the log does not exist yet.
    lines: Option<LineReader<Take<File>>>,
    path: PathBuf,
}

impl Iterator for Records {
    type Item = Result<AuditRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        let lines = self.lines.as_mut()?;
        let item = match lines.next_line() {
            Err(e) => Err(AuditError::io("read", &self.path, e)),
            // A torn tail is not a record (see module docs); verify reports it.
            Ok(None) | Ok(Some((_, Line::Torn { .. }))) => {
                self.lines = None;
                return None;
            }
            Ok(Some((line, l))) => parse_line(l).map_err(|(_, reason)| AuditError::CorruptLine {
                path: self.path.clone(),
                line,
                reason,
            }),
        };
        // Stop after an I/O error; a corrupt line is reported and iteration goes on.
        if matches!(item, Err(AuditError::Io { .. })) {
            self.lines = None;
        }
        Some(item)
    }
}

/// Parses one line; on failure, the reason kind and a sentence.
fn parse_line(line: Line) -> Result<AuditRecord, (BreakKind, String)> {
    match line {
        Line::Complete(bytes) => serde_json::from_slice::<AuditRecord>(&bytes)
            .map_err(|e| (BreakKind::Unparseable, format!("not a record: {e}"))),
        Line::TooLong { len } => Err((
            BreakKind::Unparseable,
            format!("line of {len} bytes exceeds the {MAX_LINE_LEN}-byte limit"),
        )),
        Line::Torn { len } => Err((BreakKind::Unparseable, format!("{len} unterminated bytes"))),
    }
}

/// Chain state while scanning from genesis.
struct Chain {
    records: u64,
    last_hash: String,
}

impl Chain {
    fn new() -> Self {
        Chain {
            records: 0,
            last_hash: GENESIS_PREV_HASH.to_string(),
        }
    }

    /// Checks that `rec` is the next link; on success it becomes the chain's tail.
    fn push(&mut self, line: u64, rec: &AuditRecord) -> Result<(), Broken> {
        let broken = |kind, reason: String| Broken {
            line,
            seq: Some(rec.seq),
            kind,
            reason,
        };
        if !is_hash_hex(&rec.hash) || !is_hash_hex(&rec.prev_hash) {
            return Err(broken(
                BreakKind::MalformedHash,
                "hash or prevHash is not 64 lowercase hex digits".into(),
            ));
        }
        // Own hash first: an edited record is named as edited, not as a chain gap.
        if rec.compute_hash() != rec.hash {
            return Err(broken(
                BreakKind::HashMismatch,
                "hash does not match the record's contents (a field was changed)".into(),
            ));
        }
        let expected = self.records + 1;
        if rec.seq != expected {
            return Err(broken(
                BreakKind::SeqGap,
                format!(
                    "seq {} where {expected} was expected (a record was deleted, inserted or moved)",
                    rec.seq
                ),
            ));
        }
        if rec.prev_hash != self.last_hash {
            return Err(broken(
                BreakKind::PrevHashMismatch,
                "prevHash is not the previous record's hash".into(),
            ));
        }
        self.records = expected;
        self.last_hash.clone_from(&rec.hash);
        Ok(())
    }
}

/// An event waiting in a group commit, owned: it may be written by another thread.
struct Pending {
    operation: String,
    key_id: Option<String>,
    archive_id: Option<String>,
    bmc_host: Option<String>,
    result: Outcome,
    detail: Option<String>,
    account: String,
}

type AppendGroup = Group<Pending, Result<AuditRecord, AuditError>>;

/// The group commit of each log file this process appends to.
/// `unfinished` records written into the chain by a batch and not yet handed to the
/// syslog forwarder: [`AuditLog::append`] takes them after its own batch is on disk.
static UNFORWARDED: Mutex<Vec<AuditRecord>> = Mutex::new(Vec::new());

fn lock_unforwarded() -> MutexGuard<'static, Vec<AuditRecord>> {
    // A panic while holding it leaves only a list of records to forward: still usable.
    UNFORWARDED.lock().unwrap_or_else(PoisonError::into_inner)
}

fn group_of(path: &Path) -> Arc<AppendGroup> {
    static GROUPS: LazyLock<Mutex<HashMap<PathBuf, Arc<AppendGroup>>>> =
        LazyLock::new(Default::default);
    let mut all = GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(all.entry(path.to_path_buf()).or_default())
}

/// Batches and events group-committed so far to the log at `path` by this process.
pub fn group_stats(path: &Path) -> (u64, u64) {
    group_of(path).stats()
}

impl AuditLog {
    /// A handle on `<home>/audit.log`. Does no I/O; the file is created by the first append.
    pub fn open(home: &Path) -> Self {
        AuditLog {
            home: home.to_path_buf(),
            path: home.join(LOG_FILE_NAME),
            account: None,
        }
    }

    /// Records `account` instead of [`os_account`](crate::account::os_account) (e.g. a name the CLI resolved).
    pub fn with_account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record for `ev` and returns it, durably on disk.
    ///
    /// Appends of the same log made at the same time by threads of this process are
    /// group-committed ([`crate::group`]): one of them locks the file, writes every
    /// pending record and syncs once. Each call still returns only once its own record
    /// is on disk, and the records of a batch are chained in one order like any others.
    ///
    /// The record is then handed to the process's syslog forwarder, if one is installed
    /// ([`super::syslog::install`]), after the lock is released; forwarding never fails
    /// the append.
    pub fn append(&self, ev: &AuditEvent) -> Result<AuditRecord, AuditError> {
        validate_operation(ev.operation)?;
        let pending = Pending {
            operation: ev.operation.to_string(),
            key_id: ev.key_id.clone(),
            archive_id: ev.archive_id.clone(),
            bmc_host: ev.bmc_host.clone(),
            result: ev.result.clone(),
            detail: ev.detail.clone(),
            account: self.account.clone().unwrap_or_else(os_account),
        };
        let rec = group_of(&self.path).submit(pending, |batch| self.append_batch(batch))?;
        // Taken whether or not a forwarder is installed, so the queue never grows.
        let unfinished = std::mem::take(&mut *lock_unforwarded());
        if let Some(f) = super::syslog::installed() {
            for u in &unfinished {
                f.forward(u);
            }
            f.forward(&rec);
        }
        Ok(rec)
    }

    /// Announces a change before its commit point: writes and fsyncs an intent for `ev`
    /// (see [`super::intent`]). The change may be made only once this returned `Ok`.
    pub fn intend(&self, ev: &AuditEvent) -> Result<Intent, AuditError> {
        validate_operation(ev.operation)?;
        fsutil::ensure_private_dir(&self.home)
            .map_err(|e| AuditError::io("create the directory of", &self.path, e))?;
        let account = self.account.clone().unwrap_or_else(os_account);
        intent::write(&self.home, &account, ev)
    }

    /// Appends the outcome `ev` of the change announced by `intent`, then removes the
    /// intent. If the removal fails, the outcome is recorded and the error says so (the
    /// next append records the intent as unfinished too).
    pub fn conclude(&self, intent: Intent, ev: &AuditEvent) -> Result<AuditRecord, AuditError> {
        let rec = self.append(ev)?;
        let path = intent.path().to_path_buf();
        intent
            .remove()
            .map_err(|e| AuditError::io("remove the concluded intent", &path, e))?;
        Ok(rec)
    }

    /// Intents of processes that died between announcing a change and recording its
    /// outcome, not yet taken into the chain (the next append does that). Read-only.
    pub fn unfinished(&self) -> Result<Vec<IntentRecord>, AuditError> {
        Ok(intent::abandoned(&self.home)?
            .into_iter()
            .filter_map(|a| match a {
                Abandoned::Intent { records, .. } => Some(records.into_iter().flatten()),
                Abandoned::Temporary(_) => None,
            })
            .flatten()
            .collect())
    }

    /// Appends `batch` under one lock and one sync; one result per event, in order. A
    /// failure of the shared steps (open, lock, tail, write) fails every event of it.
    fn append_batch(&self, batch: Vec<Pending>) -> Vec<Result<AuditRecord, AuditError>> {
        let n = batch.len();
        match self.append_locked(batch) {
            Ok(results) => results,
            Err(e) => {
                let (kind, msg) = match &e {
                    AuditError::Io { source, .. } => (source.kind(), source.to_string()),
                    other => (io::ErrorKind::Other, other.to_string()),
                };
                let mut out = vec![Err(e)];
                out.extend((1..n).map(|_| {
                    Err(AuditError::io(
                        "append to",
                        &self.path,
                        io::Error::new(kind, msg.clone()),
                    ))
                }));
                out
            }
        }
    }

    /// Appends `batch`, after the `unfinished` records of abandoned intents, under the
    /// log's lock, with one write and one sync.
    fn append_locked(
        &self,
        batch: Vec<Pending>,
    ) -> Result<Vec<Result<AuditRecord, AuditError>>, AuditError> {
        let path = &self.path;
        let (file, existed) = self.open_locked()?;
        let tail = read_tail(&file, path)?;
        let repair_note = repair_torn_tail(&file, path, &tail)?;
        let mut folded = self.fold_abandoned()?;
        let n_recorded = folded.events.len();
        let mut all = std::mem::take(&mut folded.events);
        all.extend(batch);
        let (lines, results) = chain(path, &tail, repair_note, all);
        if lines.is_empty() {
            return Ok(results.into_iter().skip(n_recorded).collect());
        }
        let written = (&file).write_all(&lines).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Best effort: take back a partial write now rather than leave it for the next
            // append to repair. If this fails too, the next append still repairs it.
            let _ = file.set_len(tail.complete_len);
            return Err(AuditError::io("write", path, e));
        }
        if !existed {
            // Make the new directory entry durable too.
            fsutil::sync_dir(&self.home).map_err(|e| AuditError::io("sync", path, e))?;
        }
        // The `unfinished` records are in the chain now: the appending thread forwards
        // them to syslog with its own record, like every other record.
        lock_unforwarded().extend(results[..n_recorded].iter().flatten().cloned());
        folded.remove_recorded(&results[..n_recorded])?;
        Ok(results.into_iter().skip(n_recorded).collect())
    }

    /// Opens (creating) the log and takes its exclusive lock, held until the returned
    /// file is dropped (flock is released on close); and whether the log existed before.
    fn open_locked(&self) -> Result<(File, bool), AuditError> {
        let path = &self.path;
        fsutil::ensure_private_dir(&self.home)
            .map_err(|e| AuditError::io("create the directory of", path, e))?;
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError::io("open", path, e))?;
        file.lock().map_err(|e| AuditError::io("lock", path, e))?;
        Ok((file, existed))
    }

    /// Abandoned intents: each becomes an `unfinished` record, in the account that
    /// announced it; their files go once those records are on disk.
    fn fold_abandoned(&self) -> Result<Folded, AuditError> {
        let mut folded = Folded {
            events: Vec::new(),
            files: Vec::new(),
            temporaries: Vec::new(),
        };
        for a in intent::abandoned(&self.home)? {
            let (p, records, lock) = match a {
                Abandoned::Temporary(p) => {
                    folded.temporaries.push(p);
                    continue;
                }
                Abandoned::Intent {
                    path,
                    records,
                    _lock,
                } => (path, records, _lock),
            };
            let n = records.len();
            for record in records {
                folded.events.push(match record {
                    Ok(i) => Pending {
                        detail: Some(intent::unfinished_detail(&i)),
                        operation: i.operation,
                        key_id: i.key_id,
                        archive_id: i.archive_id,
                        bmc_host: i.bmc_host,
                        result: Outcome::Unfinished,
                        account: i.account,
                    },
                    Err(reason) => Pending {
                        operation: "audit.intent".into(),
                        key_id: None,
                        archive_id: None,
                        bmc_host: None,
                        result: Outcome::Unfinished,
                        detail: Some(format!(
                            "abandoned intent {} is {reason}; removed",
                            p.display()
                        )),
                        account: self.account.clone().unwrap_or_else(os_account),
                    },
                });
            }
            folded.files.push((p, lock, n));
        }
        Ok(folded)
    }

    /// Streams the committed records in file order. Lines that are not records are
    /// yielded as [`AuditError::CorruptLine`] and iteration continues; a torn tail is
    /// skipped. Only the chain check in [`AuditLog::verify`] proves integrity.
    ///
    /// Iterates a snapshot of the length at call time, taken under a shared lock, so a
    /// concurrent append is never seen half-written.
    pub fn records(&self) -> Result<Records, AuditError> {
        let (file, len) = match self.open_shared()? {
            Some(f) => {
                let len = f
                    .metadata()
                    .map_err(|e| AuditError::io("read", &self.path, e))?
                    .len();
                f.unlock()
                    .map_err(|e| AuditError::io("unlock", &self.path, e))?;
                (f, len)
            }
            // No log yet: nothing was ever recorded.
            None => {
                return Ok(Records {
                    lines: None,
                    path: self.path.clone(),
                });
            }
        };
        Ok(Records {
            lines: Some(LineReader::new(file.take(len), MAX_LINE_LEN)),
            path: self.path.clone(),
        })
    }

    /// Records matching every field set in `filter`, in log order. Fails on the first
    /// line that is not a record rather than silently leaving it out.
    pub fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditError> {
        let mut out = Vec::new();
        for (i, rec) in self.records()?.enumerate() {
            let rec = rec?;
            if let Some(since) = filter.since {
                let t = OffsetDateTime::parse(&rec.time, &Rfc3339).map_err(|_| {
                    AuditError::BadTime {
                        path: self.path.clone(),
                        // Records yields one item per complete line, so this is its number.
                        line: i as u64 + 1,
                        time: rec.time.clone(),
                    }
                })?;
                if t < since {
                    continue;
                }
            }
            if let Some(op) = &filter.operation
                && !operation_matches(op, &rec.operation)
            {
                continue;
            }
            if filter.key_id.is_some() && filter.key_id != rec.key_id {
                continue;
            }
            if filter.archive_id.is_some() && filter.archive_id != rec.archive_id {
                continue;
            }
            out.push(rec);
        }
        Ok(out)
    }

    /// Checks the whole chain from genesis and names the first record that breaks it.
    /// Holds a shared lock throughout, so it sees no append half-done.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        let mut report = self.scan(None)?;
        report.unfinished = self.unfinished()?;
        Ok(report)
    }

    /// Checks that the chain is intact from genesis up to `seq` and that record `seq`
    /// still has `hash` (an anchor saved from an earlier [`VerifyReport`]). Records after
    /// the anchor are not examined; use [`AuditLog::verify`] for those.
    pub fn verify_against_anchor(&self, seq: u64, hash: &str) -> Result<AnchorCheck, AuditError> {
        let want = hash.trim().to_ascii_lowercase();
        let report = self.scan(Some(seq))?;
        if let Some(broken) = report.first_broken {
            return Ok(AnchorCheck::ChainBroken { broken });
        }
        if report.records < seq {
            return Ok(AnchorCheck::Truncated {
                records: report.records,
            });
        }
        if report.last_hash != want {
            return Ok(AnchorCheck::HashDiffers {
                // One record per line in an intact chain.
                line: seq,
                found: report.last_hash,
            });
        }
        Ok(AnchorCheck::Found)
    }

    /// Walks the chain, stopping after record `stop_at` if given.
    fn scan(&self, stop_at: Option<u64>) -> Result<VerifyReport, AuditError> {
        let mut chain = Chain::new();
        let mut report = VerifyReport {
            records: 0,
            last_hash: chain.last_hash.clone(),
            first_broken: None,
            torn_tail: None,
            unfinished: Vec::new(),
        };
        let Some(file) = self.open_shared()? else {
            return Ok(report);
        };
        let mut lines = LineReader::new(&file, MAX_LINE_LEN);
        while stop_at.is_none_or(|s| chain.records < s) {
            let Some((line_no, line)) = lines
                .next_line()
                .map_err(|e| AuditError::io("read", &self.path, e))?
            else {
                break;
            };
            if let Line::Torn { len } = line {
                report.torn_tail = Some(TornTail {
                    line: line_no,
                    bytes: len,
                });
                break;
            }
            let pushed = match parse_line(line) {
                Ok(rec) => chain.push(line_no, &rec),
                Err((kind, reason)) => Err(Broken {
                    line: line_no,
                    seq: None,
                    kind,
                    reason,
                }),
            };
            if let Err(b) = pushed {
                report.first_broken = Some(b);
                break;
            }
        }
        report.records = chain.records;
        report.last_hash = chain.last_hash;
        Ok(report)
    }

    /// Opens the log read-only under a shared lock; `None` if it does not exist yet.
    fn open_shared(&self) -> Result<Option<File>, AuditError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AuditError::io("open", &self.path, e)),
        };
        file.lock_shared()
            .map_err(|e| AuditError::io("lock", &self.path, e))?;
        Ok(Some(file))
    }
}

/// What an appender needs from the end of the log.
/// The `unfinished` records of abandoned intents (see [`AuditLog::fold_abandoned`]).
struct Folded {
    events: Vec<Pending>,
    /// Each intent file, its lock (held until it is removed) and how many events it gave.
    files: Vec<(PathBuf, File, usize)>,
    /// Temporaries of dead processes: their operations committed nothing.
    temporaries: Vec<PathBuf>,
}

impl Folded {
    /// Removes each intent file whose every record is in the chain (`results`, one per
    /// event, in order), and the dead temporaries.
    fn remove_recorded(
        self,
        results: &[Result<AuditRecord, AuditError>],
    ) -> Result<(), AuditError> {
        let mut at = 0;
        for (p, _lock, n) in &self.files {
            let all_ok = results[at..at + n].iter().all(Result::is_ok);
            at += n;
            if all_ok {
                std::fs::remove_file(p)
                    .map_err(|e| AuditError::io("remove the recorded intent", p, e))?;
            }
        }
        for p in self.temporaries {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}

/// Truncates a torn tail back to the last newline; the note that says so, for the next
/// record's `detail`.
fn repair_torn_tail(file: &File, path: &Path, tail: &Tail) -> Result<Option<String>, AuditError> {
    let Some(torn) = &tail.torn else {
        return Ok(None);
    };
    file.set_len(tail.complete_len)
        .map_err(|e| AuditError::io("repair the torn tail of", path, e))?;
    Ok(Some(format!(
        "repaired torn tail: removed {} unterminated bytes (sha256 {})",
        torn.len, torn.sha256
    )))
}

/// Chains `batch` after `tail`: the lines to write, and one result per event (an event
/// that cannot be a record fails alone and takes no seq).
fn chain(
    path: &Path,
    tail: &Tail,
    mut repair_note: Option<String>,
    batch: Vec<Pending>,
) -> (Vec<u8>, Vec<Result<AuditRecord, AuditError>>) {
    let (mut seq, mut prev_hash) = match &tail.last {
        None => (0, GENESIS_PREV_HASH.to_string()),
        Some(last) => (last.seq, last.hash.clone()),
    };
    let mut lines = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    for ev in batch {
        let Some(next) = seq.checked_add(1) else {
            results.push(Err(AuditError::LastRecordUnreadable {
                path: path.to_path_buf(),
                reason: "seq overflow".into(),
            }));
            continue;
        };
        // The note of a repair goes into the first record written after it.
        let detail = match (ev.detail.clone(), &repair_note) {
            (d, None) => d,
            (Some(d), Some(note)) => Some(format!("{d}; {note}")),
            (None, Some(note)) => Some(note.clone()),
        };
        let rec = ev.into_record(next, detail, &prev_hash);
        match record_line(&rec) {
            Ok(line) => {
                lines.extend_from_slice(&line);
                lines.push(b'\n');
                repair_note = None;
                seq = next;
                prev_hash.clone_from(&rec.hash);
                results.push(Ok(rec));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    (lines, results)
}

/// The JSON line of `rec` (without its `\n`), at most [`MAX_LINE_LEN`] bytes.
fn record_line(rec: &AuditRecord) -> Result<Vec<u8>, AuditError> {
    let line = serde_json::to_vec(rec)
        .map_err(|e| AuditError::InvalidEvent(format!("cannot serialize record: {e}")))?;
    if line.len() > MAX_LINE_LEN {
        return Err(AuditError::RecordTooLarge {
            operation: rec.operation.clone(),
            len: line.len(),
            max: MAX_LINE_LEN,
        });
    }
    Ok(line)
}

impl Pending {
    /// The record of this event as number `seq` after `prev_hash`, hashed.
    fn into_record(self, seq: u64, detail: Option<String>, prev_hash: &str) -> AuditRecord {
        let (result, error_kind) = match self.result {
            Outcome::Unfinished => ("unfinished".to_string(), None),
            Outcome::Success => ("success".to_string(), None),
            Outcome::Failure { kind } => ("failure".to_string(), Some(kind)),
        };
        let mut rec = AuditRecord {
            seq,
            time: clock::now_rfc3339(Precision::Millis),
            account: self.account,
            operation: self.operation,
            key_id: self.key_id,
            archive_id: self.archive_id,
            bmc_host: self.bmc_host,
            result,
            error_kind,
            detail,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        rec
    }
}

struct Tail {
    /// Length of the log up to and including its last newline.
    complete_len: u64,
    /// The last complete record, if any.
    last: Option<AuditRecord>,
    torn: Option<TornInfo>,
}

struct TornInfo {
    len: u64,
    sha256: String,
}

/// Reads the last record by scanning back from the end: O(last line), not O(file).
fn read_tail(file: &File, path: &Path) -> Result<Tail, AuditError> {
    let io_err = |e| AuditError::io("read", path, e);
    let len = file.metadata().map_err(io_err)?.len();
    let complete_len = rfind_newline(file, 0, len)
        .map_err(io_err)?
        .map_or(0, |p| p + 1);
    let torn = if complete_len < len {
        Some(TornInfo {
            len: len - complete_len,
            sha256: hash_range(file, complete_len, len).map_err(io_err)?,
        })
    } else {
        None
    };
    if complete_len == 0 {
        return Ok(Tail {
            complete_len,
            last: None,
            torn,
        });
    }
    let line_end = complete_len - 1; // position of the final '\n'
    let lo = line_end.saturating_sub(MAX_LINE_LEN as u64 + 1);
    let start = rfind_newline(file, lo, line_end)
        .map_err(io_err)?
        .map_or(0, |p| p + 1);
    let unreadable = |reason: String| AuditError::LastRecordUnreadable {
        path: path.to_path_buf(),
        reason,
    };
    let line_len = line_end - start;
    if line_len > MAX_LINE_LEN as u64 {
        return Err(unreadable(format!(
            "last line exceeds the {MAX_LINE_LEN}-byte limit"
        )));
    }
    let mut buf = vec![0u8; line_len as usize];
    file.read_exact_at(&mut buf, start).map_err(io_err)?;
    let last: AuditRecord =
        serde_json::from_slice(&buf).map_err(|e| unreadable(format!("not a record: {e}")))?;
    if !is_hash_hex(&last.hash) {
        return Err(unreadable("its hash is not 64 lowercase hex digits".into()));
    }
    Ok(Tail {
        complete_len,
        last: Some(last),
        torn,
    })
}

/// Position of the last `\n` in `[lo, hi)`, reading backwards in bounded chunks.
fn rfind_newline(file: &File, lo: u64, hi: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; SCAN_CHUNK as usize];
    let mut end = hi;
    while end > lo {
        let start = end.saturating_sub(SCAN_CHUNK).max(lo);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}

/// SHA-256 (hex) of bytes `[lo, hi)` of `file`, streamed.
fn hash_range(file: &File, lo: u64, hi: u64) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; SCAN_CHUNK as usize];
    let mut at = lo;
    while at < hi {
        let n = (hi - at).min(SCAN_CHUNK) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

/// Operation names are short dotted identifiers (`keys.create`), so filters and
/// downstream tools can rely on their shape.
fn validate_operation(op: &str) -> Result<(), AuditError> {
    let ok = !op.is_empty()
        && op.len() <= 64
        && op
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AuditError::InvalidEvent(format!(
            "operation {op:?} must be 1-64 characters of a-z, 0-9, '.' and '-'"
        )))
    }
}

fn operation_matches(filter: &str, op: &str) -> bool {
    if filter.contains('.') {
        filter == op
    } else {
        op == filter || op.strip_prefix(filter).is_some_and(|r| r.starts_with('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    fn ok(op: &str) -> AuditEvent<'_> {
        AuditEvent::new(op, Outcome::Success)
    }

    /// A log with `n` records appended through the real API.
    fn log_with(n: u64) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).with_account("tester");
        for i in 1..=n {
            let rec = log
                .append(&ok("keys.create").key_id(format!("k{i}")))
                .unwrap();
            assert_eq!(rec.seq, i);
        }
        (dir, log)
    }

    fn read_lines(log: &AuditLog) -> Vec<String> {
        let text = std::fs::read_to_string(log.path()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn write_lines(log: &AuditLog, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(log.path(), text).unwrap();
    }

    fn parse(line: &str) -> AuditRecord {
        serde_json::from_str(line).unwrap()
    }

    /// Serializes `rec` with a freshly computed (so self-consistent) hash.
    fn reseal(mut rec: AuditRecord) -> String {
        rec.hash = rec.compute_hash();
        serde_json::to_string(&rec).unwrap()
    }

    /// Expects the chain to break first at `line` (claiming `seq`) for `kind`.
    fn assert_broken(log: &AuditLog, line: u64, seq: Option<u64>, kind: BreakKind) {
        let r = log.verify().unwrap();
        let b = r.first_broken.clone().expect("chain should be broken");
        assert_eq!((b.line, b.seq, b.kind), (line, seq, kind), "{r:?}");
        assert_eq!(r.records, line - 1, "records before the break");
        assert!(!r.is_intact());
    }

    const N: u64 = 10;
    const K: usize = 5; // 1-based line/seq of the tampered record

    #[test]
    fn appended_chain_verifies_and_file_is_private() {
        let (_d, log) = log_with(N);
        let r = log.verify().unwrap();
        assert!(r.is_intact());
        assert_eq!(r.records, N);
        assert_eq!(r.torn_tail, None);
        let recs: Vec<_> = log.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(r.last_hash, recs.last().unwrap().hash);
        assert_eq!(recs[0].prev_hash, GENESIS_PREV_HASH);
        for w in recs.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
            assert_eq!(w[1].seq, w[0].seq + 1);
        }
        assert!(OffsetDateTime::parse(&recs[0].time, &Rfc3339).is_ok());
        assert!(recs[0].time.ends_with('Z'));
        assert_eq!(recs[0].account, "tester");
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Issue 16: appends from many threads at once are group-committed, and the chain is
    /// the same as if they had come one by one: every record once, in one order.
    #[test]
    fn concurrent_appends_share_batches_and_chain_intact() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let home = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let log = AuditLog::open(&home).with_account(format!("t{t}"));
                    (0..20)
                        .map(|i| {
                            log.append(&ok("backup.pull").key_id(format!("{t}-{i}")))
                                .unwrap()
                                .seq
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=320).collect::<Vec<u64>>());
        let log = AuditLog::open(dir.path());
        let r = log.verify().unwrap();
        assert!(r.is_intact() && r.records == 320);
        let keys: std::collections::BTreeSet<String> = log
            .records()
            .unwrap()
            .map(|r| r.unwrap().key_id.unwrap())
            .collect();
        assert_eq!(keys.len(), 320);
        let (batches, events) = group_stats(log.path());
        assert_eq!(events, 320);
        assert!(batches <= 320);
    }

    #[test]
    fn missing_log_is_an_empty_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("nothing-yet"));
        assert_eq!(log.records().unwrap().count(), 0);
        let r = log.verify().unwrap();
        assert_eq!((r.records, r.last_hash.as_str()), (0, GENESIS_PREV_HASH));
        assert!(log.query(&AuditFilter::default()).unwrap().is_empty());
        assert!(!log.path().exists(), "reading must not create the log");
    }

    #[test]
    fn failure_outcome_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path());
        let ev = AuditEvent::new(
            "backup.pull",
            Outcome::Failure {
                kind: "bmc-unreachable".into(),
            },
        )
        .bmc_host("ilo1.example");
        let rec = log.append(&ev).unwrap();
        assert_eq!(rec.result, "failure");
        assert_eq!(rec.error_kind.as_deref(), Some("bmc-unreachable"));
        assert!(!rec.is_success());
        assert!(!rec.account.is_empty());
        let line = &read_lines(&log)[0];
        assert!(line.contains(r#""bmcHost":"ilo1.example""#), "{line}");
        assert!(line.contains(r#""errorKind":"bmc-unreachable""#), "{line}");
    }

    #[test]
    fn intents_are_concluded_or_recorded_as_unfinished_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).with_account("tester");
        let ev = |a: &str| ok("backup.create").archive_id(a).key_id("k1");
        // Concluded: one success record, no file left.
        let i = log.intend(&ev("a")).unwrap();
        assert!(i.path().exists());
        // Held by a live owner: neither listed nor recorded by another append.
        let held = log.intend(&ev("b")).unwrap();
        assert!(log.unfinished().unwrap().is_empty());
        log.append(&ok("keys.list")).unwrap();
        let done = log.conclude(i, &ev("a")).unwrap();
        assert_eq!(done.result, "success");
        // The owner dies (its lock goes with its descriptor): listed, then recorded once.
        let path = held.path().to_path_buf();
        drop(held);
        let open = log.unfinished().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].archive_id.as_deref(), Some("b"));
        assert_eq!(open[0].account, "tester");
        let next = log.append(&ok("keys.list")).unwrap();
        assert!(!path.exists());
        let recs: Vec<_> = log.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 4);
        let folded = &recs[2];
        assert_eq!(
            (folded.result.as_str(), folded.archive_id.as_deref()),
            ("unfinished", Some("b"))
        );
        assert!(
            folded
                .detail
                .as_deref()
                .unwrap()
                .starts_with("announced at ")
        );
        assert_eq!(next.seq, 4);
        let r = log.verify().unwrap();
        assert!(r.is_intact() && r.unfinished.is_empty(), "{r:?}");
        log.append(&ok("keys.list")).unwrap();
        assert_eq!(log.records().unwrap().count(), 5, "recorded twice");
    }

    #[test]
    fn a_damaged_intent_is_recorded_and_a_torn_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path());
        let pending = dir.path().join(super::intent::PENDING_DIR);
        std::fs::create_dir_all(&pending).unwrap();
        std::fs::write(pending.join("x.intent"), b"{not json").unwrap();
        // A torn temporary of a process that no longer exists (pid above the kernel's
        // maximum), and one of this live process, which must be left alone.
        std::fs::write(pending.join(".tmp-4194305-y"), b"{\"time\"").unwrap();
        let mine = pending.join(format!(".tmp-{}-z", std::process::id()));
        std::fs::write(&mine, b"").unwrap();
        log.append(&ok("keys.list")).unwrap();
        let recs: Vec<_> = log.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!(
            (recs[0].operation.as_str(), recs[0].result.as_str()),
            ("audit.intent", "unfinished")
        );
        let left: Vec<_> = std::fs::read_dir(&pending)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, vec![mine]);
    }

    #[test]
    fn edited_field_is_a_hash_mismatch_at_that_record() {
        let (_d, log) = log_with(N);
        let mut lines = read_lines(&log);
        lines[K - 1] = lines[K - 1].replace("keys.create", "keys.delete");
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, Some(K as u64), BreakKind::HashMismatch);
    }

    #[test]
    fn deleted_record_is_a_seq_gap_at_its_successor() {
        let (_d, log) = log_with(N);
        let mut lines = read_lines(&log);
        lines.remove(K - 1);
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, Some(K as u64 + 1), BreakKind::SeqGap);
    }

    #[test]
    fn inserted_copy_with_its_own_valid_hash_is_a_seq_gap() {
        let (_d, log) = log_with(N);
        let mut lines = read_lines(&log);
        let mut forged = parse(&lines[2]);
        forged.detail = Some("forged".into());
        lines.insert(K - 1, reseal(forged));
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, Some(3), BreakKind::SeqGap);
    }

    #[test]
    fn inserted_record_that_fits_the_chain_breaks_it_at_the_next_line() {
        // The best possible forgery (right seq, right prevHash, own hash correct) cannot be
        // told from a real record without a key, but the displaced original record K no
        // longer fits after it: the break is named at line K+1.
        let (_d, log) = log_with(N);
        let mut lines = read_lines(&log);
        let mut forged = parse(&lines[K - 1]);
        forged.operation = "keys.delete".into();
        lines.insert(K - 1, reseal(forged));
        write_lines(&log, &lines);
        assert_broken(&log, K as u64 + 1, Some(K as u64), BreakKind::SeqGap);
    }

    #[test]
    fn swapped_records_are_a_seq_gap_at_the_first() {
        let (_d, log) = log_with(N);
        let mut lines = read_lines(&log);
        lines.swap(K - 1, K);
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, Some(K as u64 + 1), BreakKind::SeqGap);
    }

    #[test]
    fn changed_prev_hash_is_detected_with_or_without_rehash() {
        let (_d, log) = log_with(N);
        let orig = read_lines(&log);
        let mut rec = parse(&orig[K - 1]);
        rec.prev_hash = "ab".repeat(32);

        let mut lines = orig.clone();
        lines[K - 1] = serde_json::to_string(&rec).unwrap();
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, Some(K as u64), BreakKind::HashMismatch);

        let mut lines = orig;
        lines[K - 1] = reseal(rec);
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, Some(K as u64), BreakKind::PrevHashMismatch);
    }

    #[test]
    fn garbage_and_smuggled_fields_are_unparseable() {
        let (_d, log) = log_with(N);
        let orig = read_lines(&log);

        let mut lines = orig.clone();
        lines[K - 1] = "not json".into();
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, None, BreakKind::Unparseable);
        // records() reports the bad line and keeps going.
        let items: Vec<_> = log.records().unwrap().collect();
        assert_eq!(items.len(), N as usize);
        assert!(matches!(
            items[K - 1],
            Err(AuditError::CorruptLine { line, .. }) if line == K as u64
        ));
        assert!(log.query(&AuditFilter::default()).is_err());

        let mut lines = orig.clone();
        lines[K - 1].insert_str(1, r#""note":"x","#);
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, None, BreakKind::Unparseable);

        let mut lines = orig;
        lines[K - 1] = lines[K - 1].replace(&parse(&lines[K - 1]).hash, &"A".repeat(64));
        write_lines(&log, &lines);
        assert_broken(&log, K as u64, Some(K as u64), BreakKind::MalformedHash);
    }

    #[test]
    fn torn_tail_is_reported_apart_from_tampering_and_repaired_by_next_append() {
        let (_d, log) = log_with(3);
        let torn = br#"{"seq":4,"time":"2025-"#;
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(torn).unwrap();
        drop(f);

        let r = log.verify().unwrap();
        assert!(r.is_intact());
        assert_eq!(r.records, 3);
        assert_eq!(
            r.torn_tail,
            Some(TornTail {
                line: 4,
                bytes: torn.len() as u64
            })
        );
        assert_eq!(log.records().unwrap().count(), 3);

        let rec = log.append(&ok("backup.create")).unwrap();
        assert_eq!(rec.seq, 4);
        let detail = rec.detail.unwrap();
        assert!(detail.contains("repaired torn tail"), "{detail}");
        assert!(
            detail.contains(&hex::encode(Sha256::digest(torn))),
            "{detail}"
        );
        let r = log.verify().unwrap();
        assert!(r.is_intact());
        assert_eq!((r.records, r.torn_tail), (4, None));
    }

    #[test]
    fn torn_first_line_restarts_at_genesis_and_keeps_caller_detail() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path());
        std::fs::write(log.path(), b"{\"seq\":1").unwrap();
        let rec = log.append(&ok("keys.create").detail("first")).unwrap();
        assert_eq!((rec.seq, rec.prev_hash.as_str()), (1, GENESIS_PREV_HASH));
        assert!(rec.detail.unwrap().starts_with("first; repaired torn tail"));
        assert!(log.verify().unwrap().is_intact());
    }

    #[test]
    fn append_refuses_to_chain_onto_an_unreadable_last_record() {
        let (_d, log) = log_with(2);
        let mut lines = read_lines(&log);
        lines.push("garbage".into());
        write_lines(&log, &lines);
        let before = std::fs::read(log.path()).unwrap();
        let err = log.append(&ok("keys.create")).unwrap_err();
        assert!(
            matches!(err, AuditError::LastRecordUnreadable { .. }),
            "{err}"
        );
        // The next step ("run 'vault audit verify'") is the CLI's: cli::hints.
        assert!(
            err.to_string().contains("last record is unreadable"),
            "{err}"
        );
        assert_eq!(std::fs::read(log.path()).unwrap(), before);
    }

    #[test]
    fn last_record_is_found_across_scan_chunks() {
        // Records longer than the backward-scan chunk exercise the chunked search.
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path());
        let big = "d".repeat(3 * SCAN_CHUNK as usize);
        for _ in 0..3 {
            log.append(&ok("backup.verify").detail(big.clone()))
                .unwrap();
        }
        let r = log.verify().unwrap();
        assert!(r.is_intact());
        assert_eq!(r.records, 3);
    }

    #[test]
    fn invalid_events_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path());
        for op in ["", "Keys.Create", "keys create", "keys\n.create"] {
            assert!(matches!(
                log.append(&ok(op)),
                Err(AuditError::InvalidEvent(_))
            ));
        }
        let huge = "x".repeat(MAX_LINE_LEN);
        assert!(matches!(
            log.append(&ok("keys.create").detail(huge)),
            Err(AuditError::RecordTooLarge { .. })
        ));
        assert_eq!(log.verify().unwrap().records, 0);
    }

    /// Writes a chain with chosen times, operations and key ids (no clock involved).
    fn crafted(log: &AuditLog, rows: &[(&str, &str, Option<&str>)]) {
        let mut prev = GENESIS_PREV_HASH.to_string();
        let mut lines = Vec::new();
        for (i, (time, op, key)) in rows.iter().enumerate() {
            let mut rec = AuditRecord {
                seq: i as u64 + 1,
                time: time.to_string(),
                account: "alice".into(),
                operation: op.to_string(),
                key_id: key.map(str::to_string),
                archive_id: None,
                bmc_host: None,
                result: "success".into(),
                error_kind: None,
                detail: None,
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            rec.hash = rec.compute_hash();
            prev.clone_from(&rec.hash);
            lines.push(serde_json::to_string(&rec).unwrap());
        }
        write_lines(log, &lines);
    }

    #[test]
    fn query_filters_by_since_operation_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path());
        crafted(
            &log,
            &[
                ("2025-01-01T00:00:00Z", "keys.create", Some("k1")),
                ("2025-03-01T00:00:00.500Z", "backup.create", Some("k1")),
                ("2025-06-01T00:00:00Z", "keys.rotate", Some("k2")),
                ("2025-09-01T12:00:00Z", "backup.create", Some("k2")),
            ],
        );
        assert!(log.verify().unwrap().is_intact());
        let seqs =
            |f: AuditFilter| -> Vec<u64> { log.query(&f).unwrap().iter().map(|r| r.seq).collect() };
        assert_eq!(seqs(AuditFilter::default()), [1, 2, 3, 4]);
        let since = OffsetDateTime::parse("2025-06-01T00:00:00+00:00", &Rfc3339).unwrap();
        let f = |since, op: Option<&str>, key: Option<&str>| AuditFilter {
            since,
            operation: op.map(str::to_string),
            key_id: key.map(str::to_string),
            archive_id: None,
        };
        assert_eq!(seqs(f(Some(since), None, None)), [3, 4]);
        assert_eq!(seqs(f(None, Some("backup.create"), None)), [2, 4]);
        assert_eq!(seqs(f(None, Some("keys"), None)), [1, 3]);
        assert_eq!(seqs(f(None, Some("key"), None)), Vec::<u64>::new());
        assert_eq!(seqs(f(None, None, Some("k1"))), [1, 2]);
        assert_eq!(seqs(f(Some(since), Some("backup"), Some("k2"))), [4]);
    }

    #[test]
    fn anchor_detects_rewrite_and_truncation() {
        let (_d, log) = log_with(N);
        let anchor = log.verify().unwrap();
        let (seq, hash) = (anchor.records, anchor.last_hash.clone());
        assert_eq!(
            log.verify_against_anchor(seq, &hash).unwrap(),
            AnchorCheck::Found
        );
        assert_eq!(
            log.verify_against_anchor(seq, &hash.to_uppercase())
                .unwrap(),
            AnchorCheck::Found
        );
        assert_eq!(
            log.verify_against_anchor(0, GENESIS_PREV_HASH).unwrap(),
            AnchorCheck::Found
        );
        // Later appends do not disturb an earlier anchor.
        log.append(&ok("keys.delete")).unwrap();
        assert_eq!(
            log.verify_against_anchor(seq, &hash).unwrap(),
            AnchorCheck::Found
        );
        let orig = read_lines(&log);

        // Tail truncated before the anchor: the remaining chain is intact, the anchor is not.
        write_lines(&log, &orig[..7]);
        assert!(log.verify().unwrap().is_intact());
        assert_eq!(
            log.verify_against_anchor(seq, &hash).unwrap(),
            AnchorCheck::Truncated { records: 7 }
        );

        // A plain edit of the anchored record breaks the chain there.
        let mut lines = orig.clone();
        lines[N as usize - 1] = lines[N as usize - 1].replace("keys.create", "keys.upload");
        write_lines(&log, &lines);
        assert!(matches!(
            log.verify_against_anchor(seq, &hash).unwrap(),
            AnchorCheck::ChainBroken { broken } if broken.line == N
        ));

        // A full rewrite from record K on (every hash recomputed) fools verify, not the anchor.
        let mut prev = parse(&orig[K - 2]).hash;
        let mut lines = orig[..K - 1].to_vec();
        for line in &orig[K - 1..] {
            let mut rec = parse(line);
            if rec.seq == K as u64 {
                rec.operation = "keys.download".into();
            }
            rec.prev_hash = prev;
            rec.hash = rec.compute_hash();
            prev = rec.hash.clone();
            lines.push(serde_json::to_string(&rec).unwrap());
        }
        write_lines(&log, &lines);
        assert!(log.verify().unwrap().is_intact());
        assert!(matches!(
            log.verify_against_anchor(seq, &hash).unwrap(),
            AnchorCheck::HashDiffers { line, .. } if line == N
        ));
    }

    #[test]
    fn concurrent_handles_never_fork_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let home = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    // Own handle, own File opens: flock contends as between processes.
                    let log = AuditLog::open(&home);
                    for i in 0..50 {
                        log.append(&ok("backup.create").detail(format!("t{t} i{i}")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let log = AuditLog::open(dir.path());
        let r = log.verify().unwrap();
        assert!(r.is_intact(), "{r:?}");
        assert_eq!((r.records, r.torn_tail), (400, None));
        let seqs: Vec<u64> = log.records().unwrap().map(|r| r.unwrap().seq).collect();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    }

    // Appends from separate processes (separate `flock` owners, separate file offsets)
    // are covered through the real binary by
    // `tests/audit_cli.rs::eight_concurrent_processes_leave_one_valid_chain_with_every_record`.

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Any bytes as a log: reading, verifying, anchoring and appending never panic.
        /// Memory is bounded by construction: no reader holds more than MAX_LINE_LEN of a
        /// line (see `lines::tests::huge_line_is_not_buffered`).
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'{'), Just(b'"'), any::<u8>()], 0..4096)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let log = AuditLog::open(dir.path());
            std::fs::write(log.path(), &bytes).unwrap();
            for item in log.records().unwrap() {
                let _ = item;
            }
            let _ = log.query(&AuditFilter::default());
            let r = log.verify().unwrap();
            prop_assert!(r.records <= bytes.len() as u64);
            let _ = log.verify_against_anchor(1, GENESIS_PREV_HASH).unwrap();
            let _ = log.append(&ok("keys.create"));
        }

        /// Changing any single byte of a valid log breaks the chain (`vault audit verify`
        /// exits 5), with one exception that README.md documents: replacing the final
        /// newline turns the last record into a torn tail, which verify reports but
        /// accepts (exit 0), like records removed from the end; an anchor taken after that
        /// record shows it (`truncated`).
        #[test]
        fn any_single_byte_change_is_detected(pos in any::<prop::sample::Index>(), new in any::<u8>()) {
            let (_d, log) = log_with(4);
            let last_hash = log.verify().unwrap().last_hash;
            let mut bytes = std::fs::read(log.path()).unwrap();
            let i = pos.index(bytes.len());
            prop_assume!(bytes[i] != new);
            bytes[i] = new;
            std::fs::write(log.path(), &bytes).unwrap();
            let r = log.verify().unwrap();
            if i == bytes.len() - 1 {
                prop_assert!(
                    r.is_intact() && r.records == 3 && r.torn_tail.is_some(),
                    "final newline -> {:?}: {:?}", new as char, r
                );
                let anchor = log.verify_against_anchor(4, &last_hash).unwrap();
                prop_assert!(
                    matches!(anchor, AnchorCheck::Truncated { records: 3 }),
                    "{:?}", anchor
                );
            } else {
                prop_assert!(
                    !r.is_intact(),
                    "undetected change at byte {} -> {:?}: {:?}", i, new as char, r
                );
            }
        }

        /// The final newline, every value: always the documented torn tail.
        #[test]
        fn replaced_final_newline_is_a_torn_tail(new in any::<u8>()) {
            prop_assume!(new != b'\n');
            let (_d, log) = log_with(4);
            let mut bytes = std::fs::read(log.path()).unwrap();
            let n = bytes.len();
            bytes[n - 1] = new;
            std::fs::write(log.path(), &bytes).unwrap();
            let r = log.verify().unwrap();
            prop_assert!(r.is_intact() && r.records == 3 && r.torn_tail.is_some(), "{:?}", r);
        }
    }
}

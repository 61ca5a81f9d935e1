//! Intents: the durable "about to change the home" notes of audited operations.
//!
//! Invariants:
//! - An operation writes its intent (`audit.pending/<uuid>.intent`: who, what, which key,
//!   archive or BMC) and fsyncs it *before* its commit point (an archive's rename, the
//!   write of `keys.json`), and removes it only *after* its outcome record is durable in
//!   `audit.log`. At every instant, a committed change is therefore covered by its
//!   outcome record in the chain or by its intent on disk.
//! - The owner holds an exclusive `flock` on its intent from before the file has its final
//!   name until it concludes (the file appears by rename, so no reader sees half an
//!   intent). An intent whose lock is free belongs to a process that died between the two:
//!   the next append to the log (under the log's lock, so exactly once) moves it into the
//!   chain as an `unfinished` record, in the account that announced it, and removes it.
//!   After a kill the chain thus ends up holding a record of every change that may have
//!   been made, whether or not it was.
//! - Intents announced at the same time by threads of this process (a fleet's pulls) are
//!   group-committed ([`crate::group`]): one thread writes them all into one file, one
//!   JSON line each, with one `fsync` and one directory sync, and each caller gets its
//!   own [`Intent`] on that file. The file is locked until its last intent is concluded
//!   or dropped, and removed when every one of them was concluded; if one was dropped
//!   instead (its outcome could not be recorded), the whole file is left for the next
//!   append, which records each of its intents as `unfinished` (those already concluded
//!   too: "may or may not have been made" covers them).
//! - An intent line is at most [`MAX_LINE_LEN`] bytes, an intent file at most
//!   [`MAX_INTENT_FILE_BYTES`] (a batch larger than that goes into several files), and
//!   both are read bounded.
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::AuditError;
use super::log::MAX_LINE_LEN;
use super::record::AuditEvent;
use crate::clock::{self, Precision};
use crate::fsutil;
use crate::group::Group;

/// Directory of the pending intents inside the vault home.
pub const PENDING_DIR: &str = "audit.pending";

/// Largest intent file written or read (several intents of one batch, one per line).
pub const MAX_INTENT_FILE_BYTES: usize = 16 * MAX_LINE_LEN;

const EXT: &str = ".intent";

/// What an intent file holds: the event of the change announced, and who announced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntentRecord {
    /// RFC 3339, UTC: when the change was announced.
    pub time: String,
    pub account: String,
    pub pid: u32,
    pub operation: String,
    pub key_id: Option<String>,
    pub archive_id: Option<String>,
    pub bmc_host: Option<String>,
    pub detail: Option<String>,
}

/// A pending intent owned by this process (see the module docs). Give it to
/// [`super::AuditLog::conclude`]; dropping it instead leaves it for the next append to
/// record as unfinished, which is right when the change may have been made.
#[must_use = "an intent is concluded by AuditLog::conclude"]
pub struct Intent {
    file: Arc<IntentFile>,
    concluded: bool,
}

/// One intent file and the intents of this process in it.
struct IntentFile {
    /// Holds the exclusive lock until the last intent in the file is gone.
    _file: File,
    path: PathBuf,
    state: Mutex<FileState>,
}

struct FileState {
    /// Intents in the file neither concluded nor dropped yet.
    open: usize,
    /// One was dropped unconcluded: the file stays for the next append to record.
    abandoned: bool,
}

impl Intent {
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Once the outcome is in the chain: removes the file if this was its last open
    /// intent and none of the others was abandoned.
    pub(super) fn remove(mut self) -> io::Result<()> {
        self.concluded = true;
        match self.file.release(false) {
            true => fs::remove_file(&self.file.path),
            false => Ok(()),
        }
    }
}

impl Drop for Intent {
    fn drop(&mut self) {
        if !self.concluded {
            self.file.release(true);
        }
    }
}

impl IntentFile {
    /// One intent of the file is gone (`abandoned`: unconcluded); true when it was the
    /// last one and every intent of the file was concluded.
    fn release(&self, abandoned: bool) -> bool {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.open -= 1;
        st.abandoned |= abandoned;
        st.open == 0 && !st.abandoned
    }
}

pub(super) fn pending_dir(home: &Path) -> PathBuf {
    home.join(PENDING_DIR)
}

type IntentGroup = Group<Vec<u8>, Result<Intent, AuditError>>;

/// The group commit of each intent directory this process writes to.
fn group_of(dir: &Path) -> Arc<IntentGroup> {
    static GROUPS: LazyLock<Mutex<HashMap<PathBuf, Arc<IntentGroup>>>> =
        LazyLock::new(Default::default);
    let mut all = GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(all.entry(dir.to_path_buf()).or_default())
}

/// Writes and fsyncs an intent for `ev`, locked, under its final name (with the intents
/// other threads announce at the same time, see the module docs).
pub(super) fn write(home: &Path, account: &str, ev: &AuditEvent) -> Result<Intent, AuditError> {
    let dir = pending_dir(home);
    let rec = IntentRecord {
        time: clock::now_rfc3339(Precision::Millis),
        account: account.to_string(),
        pid: std::process::id(),
        operation: ev.operation.to_string(),
        key_id: ev.key_id.clone(),
        archive_id: ev.archive_id.clone(),
        bmc_host: ev.bmc_host.clone(),
        detail: ev.detail.clone(),
    };
    let mut line = serde_json::to_vec(&rec)
        .map_err(|e| AuditError::InvalidEvent(format!("cannot serialize intent: {e}")))?;
    if line.len() > MAX_LINE_LEN {
        return Err(AuditError::RecordTooLarge {
            operation: rec.operation,
            len: line.len(),
            max: MAX_LINE_LEN,
        });
    }
    line.push(b'\n');
    fsutil::ensure_private_dir(&dir)
        .map_err(|e| AuditError::io("create the intent directory of", &dir, e))?;
    group_of(&dir).submit(line, |batch| write_batch(&dir, batch))
}

/// Writes `lines` into as few files as [`MAX_INTENT_FILE_BYTES`] allows; one result per
/// line, in order. A failure fails every intent of its file.
fn write_batch(dir: &Path, lines: Vec<Vec<u8>>) -> Vec<Result<Intent, AuditError>> {
    let mut out = Vec::with_capacity(lines.len());
    let mut files: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut size = 0;
    for line in lines {
        match files.last_mut() {
            Some(f) if size + line.len() <= MAX_INTENT_FILE_BYTES => {
                size += line.len();
                f.push(line);
            }
            _ => {
                size = line.len();
                files.push(vec![line]);
            }
        }
    }
    let mut written = Vec::new();
    for lines in files {
        let n = lines.len();
        match write_file(dir, &lines.concat(), n) {
            Ok(file) => {
                written.push(Arc::clone(&file));
                out.extend((0..n).map(|_| {
                    Ok(Intent {
                        file: Arc::clone(&file),
                        concluded: false,
                    })
                }));
            }
            Err(e) => {
                let (kind, msg) = (e.kind(), e.to_string());
                out.extend((0..n).map(|_| {
                    Err(AuditError::io(
                        "write an intent for",
                        dir,
                        io::Error::new(kind, msg.clone()),
                    ))
                }));
            }
        }
    }
    // Every file of the batch is named and its name durable with one directory sync.
    if !written.is_empty()
        && let Err(e) = fsutil::sync_dir(dir)
    {
        for f in written {
            let _ = fs::remove_file(&f.path);
        }
        let (kind, msg) = (e.kind(), e.to_string());
        return out
            .into_iter()
            .map(|r| {
                // Dropping the intents of a removed file: nothing is left to record.
                drop(r);
                Err(AuditError::io(
                    "write an intent for",
                    dir,
                    io::Error::new(kind, msg.clone()),
                ))
            })
            .collect();
    }
    out
}

/// Writes one intent file holding `n` intents: a temporary, locked, written and synced,
/// then renamed to its final name (the caller syncs the directory).
fn write_file(dir: &Path, bytes: &[u8], n: usize) -> io::Result<Arc<IntentFile>> {
    let id = Uuid::new_v4();
    // The pid in the name tells a reader whether the writer may still be at work: the
    // temporary is not locked yet between its creation and the lock.
    let temp = dir.join(format!(
        "{}{}-{id}",
        fsutil::TEMP_PREFIX,
        std::process::id()
    ));
    let path = dir.join(format!("{id}{EXT}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    let written = file
        .lock()
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_data())
        .and_then(|()| fs::rename(&temp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(Arc::new(IntentFile {
        _file: file,
        path,
        state: Mutex::new(FileState {
            open: n,
            abandoned: false,
        }),
    }))
}

/// An intent left by a process that died (its lock was free), or a leftover temporary.
pub(super) enum Abandoned {
    Intent {
        path: PathBuf,
        /// One per line of the file (an unreadable file: one error).
        records: Vec<Result<IntentRecord, String>>,
        /// Held while the caller records it, so no one else does.
        _lock: File,
    },
    Temporary(PathBuf),
}

/// The abandoned intents of `home`, oldest announcement first. Intents still locked by a
/// running operation are not included.
pub(super) fn abandoned(home: &Path) -> Result<Vec<Abandoned>, AuditError> {
    let dir = pending_dir(home);
    let entries = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io("read the intents of", &dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("read the intents of", &dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_temp = name.starts_with(fsutil::TEMP_PREFIX);
        if !is_temp && !name.ends_with(EXT) {
            continue;
        }
        if is_temp && writer_may_be_alive(&name[fsutil::TEMP_PREFIX.len()..]) {
            continue;
        }
        let mut file = match File::open(&path) {
            Ok(f) => f,
            // Concluded or recorded meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(AuditError::io("read the intent", &path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => continue,
            Err(fs::TryLockError::Error(e)) => {
                return Err(AuditError::io("lock the intent", &path, e));
            }
        }
        // The owner may have concluded and removed it between our open and our lock.
        if !path.exists() {
            continue;
        }
        if is_temp {
            // Killed before the intent had its name: its operation committed nothing.
            out.push(Abandoned::Temporary(path));
            continue;
        }
        let records = match read_bounded(&mut file) {
            Ok(b) => parse_lines(&b),
            Err(e) => vec![Err(format!("unreadable: {e}"))],
        };
        out.push(Abandoned::Intent {
            path,
            records,
            _lock: file,
        });
    }
    let first_time = |a: &Abandoned| match a {
        Abandoned::Intent { records, .. } => match records.first() {
            Some(Ok(r)) => Some(r.time.clone()),
            _ => None,
        },
        Abandoned::Temporary(_) => None,
    };
    out.sort_by(|a, b| match (first_time(a), first_time(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => std::cmp::Ordering::Equal,
    });
    Ok(out)
}

/// The intents of a file, one JSON line each (an empty file is not an intent).
fn parse_lines(bytes: &[u8]) -> Vec<Result<IntentRecord, String>> {
    let parse = |l: &[u8]| {
        if l.len() > MAX_LINE_LEN {
            return Err(format!("a line longer than {MAX_LINE_LEN} bytes"));
        }
        serde_json::from_slice::<IntentRecord>(l).map_err(|e| format!("not an intent: {e}"))
    };
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return vec![parse(bytes)];
    }
    lines.into_iter().map(parse).collect()
}

/// Whether the process named at the start of a temporary's name (`<pid>-<uuid>`) may
/// still be writing it: this process, or any process that still exists.
fn writer_may_be_alive(rest: &str) -> bool {
    match rest
        .split_once('-')
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    {
        Some(pid) => pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists(),
        // Not a name this module writes: leave it alone.
        None => true,
    }
}

fn read_bounded(file: &mut File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_INTENT_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_INTENT_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {MAX_INTENT_FILE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// The `detail` of the `unfinished` record that takes an abandoned intent into the chain.
pub(super) fn unfinished_detail(rec: &IntentRecord) -> String {
    let mut d = format!(
        "announced at {} by pid {} and never concluded (the process ended before recording its outcome): the change may or may not have been made",
        rec.time, rec.pid
    );
    if let Some(x) = &rec.detail {
        d.push_str("; ");
        d.push_str(x);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, Outcome};

    fn line(archive: &str) -> Vec<u8> {
        let rec = IntentRecord {
            time: clock::now_rfc3339(Precision::Millis),
            account: "tester".into(),
            pid: std::process::id(),
            operation: "backup.pull".into(),
            key_id: Some("k".into()),
            archive_id: Some(archive.into()),
            bmc_host: None,
            detail: None,
        };
        let mut l = serde_json::to_vec(&rec).unwrap();
        l.push(b'\n');
        l
    }

    fn files(dir: &Path) -> usize {
        fs::read_dir(dir).map_or(0, |d| d.count())
    }

    /// A batch shares one file, locked until its last intent goes, removed once all
    /// were concluded.
    #[test]
    fn a_batch_of_intents_is_one_file_removed_after_its_last_conclusion() {
        let home = tempfile::tempdir().unwrap();
        let log = AuditLog::open(home.path()).with_account("tester");
        let dir = pending_dir(home.path());
        fs::create_dir_all(&dir).unwrap();
        let mut intents: Vec<Intent> = write_batch(&dir, vec![line("a"), line("b"), line("c")])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(files(&dir), 1);
        assert!(intents.iter().all(|i| i.path() == intents[0].path()));
        // Locked by its owner: not abandoned.
        assert!(log.unfinished().unwrap().is_empty());
        let ev = crate::audit::AuditEvent::new("backup.pull", Outcome::Success);
        log.conclude(intents.pop().unwrap(), &ev).unwrap();
        log.conclude(intents.pop().unwrap(), &ev).unwrap();
        assert_eq!(
            files(&dir),
            1,
            "removed before its last intent was concluded"
        );
        log.conclude(intents.pop().unwrap(), &ev).unwrap();
        assert_eq!(files(&dir), 0);
        assert_eq!(log.records().unwrap().count(), 3);
    }

    /// One intent of a batch dropped unconcluded: the file stays, and once the others
    /// are gone the next append records every intent of it as unfinished.
    #[test]
    fn a_dropped_intent_leaves_its_whole_batch_for_the_next_append() {
        let home = tempfile::tempdir().unwrap();
        let log = AuditLog::open(home.path()).with_account("tester");
        let dir = pending_dir(home.path());
        fs::create_dir_all(&dir).unwrap();
        let mut intents: Vec<Intent> = write_batch(&dir, vec![line("a"), line("b")])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let ev = crate::audit::AuditEvent::new("backup.pull", Outcome::Success);
        drop(intents.pop());
        assert!(
            log.unfinished().unwrap().is_empty(),
            "still locked by the other"
        );
        log.conclude(intents.pop().unwrap(), &ev).unwrap();
        let open: Vec<_> = log.unfinished().unwrap();
        let ids: Vec<_> = open.iter().map(|r| r.archive_id.clone().unwrap()).collect();
        assert_eq!(ids, ["a", "b"]);
        log.append(&ev).unwrap();
        assert_eq!(files(&dir), 0);
        let unfinished = log
            .records()
            .unwrap()
            .map(Result::unwrap)
            .filter(|r| r.result == "unfinished")
            .count();
        assert_eq!(unfinished, 2);
    }

    /// A batch larger than an intent file may be goes into several, each within bounds.
    #[test]
    fn a_large_batch_is_split_into_bounded_files() {
        let home = tempfile::tempdir().unwrap();
        let dir = pending_dir(home.path());
        fs::create_dir_all(&dir).unwrap();
        let one = line("a");
        let n = MAX_INTENT_FILE_BYTES / one.len() + 2;
        let intents: Vec<Intent> = write_batch(&dir, vec![one; n])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(intents.len(), n);
        assert_eq!(files(&dir), 2);
        for e in fs::read_dir(&dir).unwrap() {
            assert!(e.unwrap().metadata().unwrap().len() as usize <= MAX_INTENT_FILE_BYTES);
        }
    }
}

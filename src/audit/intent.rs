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
//! - An intent is at most [`MAX_LINE_LEN`] bytes and is read bounded.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::AuditError;
use super::log::MAX_LINE_LEN;
use super::record::AuditEvent;
use crate::clock::{self, Precision};
use crate::fsutil;

/// Directory of the pending intents inside the vault home.
pub const PENDING_DIR: &str = "audit.pending";

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
    /// Holds the exclusive lock.
    _file: File,
    path: PathBuf,
}

impl Intent {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file once the outcome is in the chain.
    pub(super) fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

pub(super) fn pending_dir(home: &Path) -> PathBuf {
    home.join(PENDING_DIR)
}

/// Writes and fsyncs an intent for `ev`, locked, under its final name.
pub(super) fn write(home: &Path, account: &str, ev: &AuditEvent) -> Result<Intent, AuditError> {
    let dir = pending_dir(home);
    let err = |action, e| AuditError::io(action, &dir, e);
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
    let bytes = serde_json::to_vec(&rec)
        .map_err(|e| AuditError::InvalidEvent(format!("cannot serialize intent: {e}")))?;
    if bytes.len() > MAX_LINE_LEN {
        return Err(AuditError::RecordTooLarge {
            operation: rec.operation,
            len: bytes.len(),
            max: MAX_LINE_LEN,
        });
    }
    fsutil::ensure_private_dir(&dir).map_err(|e| err("create the intent directory of", e))?;
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
        .open(&temp)
        .map_err(|e| err("write an intent for", e))?;
    let written = file
        .lock()
        .and_then(|()| file.write_all(&bytes))
        .and_then(|()| file.sync_data())
        .and_then(|()| fs::rename(&temp, &path))
        .and_then(|()| fsutil::sync_dir(&dir));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        let _ = fs::remove_file(&path);
        return Err(err("write an intent for", e));
    }
    Ok(Intent { _file: file, path })
}

/// An intent left by a process that died (its lock was free), or a leftover temporary.
pub(super) enum Abandoned {
    Intent {
        path: PathBuf,
        record: Result<IntentRecord, String>,
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
        let record = read_bounded(&mut file)
            .map_err(|e| format!("unreadable: {e}"))
            .and_then(|b| {
                serde_json::from_slice::<IntentRecord>(&b)
                    .map_err(|e| format!("not an intent: {e}"))
            });
        out.push(Abandoned::Intent {
            path,
            record,
            _lock: file,
        });
    }
    out.sort_by(|a, b| match (a, b) {
        (Abandoned::Intent { record: Ok(x), .. }, Abandoned::Intent { record: Ok(y), .. }) => {
            x.time.cmp(&y.time)
        }
        _ => std::cmp::Ordering::Equal,
    });
    Ok(out)
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
    file.take(MAX_LINE_LEN as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_LINE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {MAX_LINE_LEN} bytes"),
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

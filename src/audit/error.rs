//! Errors of the audit module: each names the log file and says what to do next.
use std::io;
use std::path::PathBuf;

use crate::errors::{Classify, Kind};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log (or its directory) could not be opened, locked, read, written or synced.
    #[error("cannot {action} audit log {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A complete line of the log is not a valid record (tampering or disk corruption).
    #[error(
        "audit log {} line {line} is not a valid record ({reason})",
        path.display()
    )]
    CorruptLine {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    /// The last record cannot be read, so a new record cannot be chained onto it.
    #[error(
        "cannot append to audit log {}: its last record is unreadable ({reason})",
        path.display()
    )]
    LastRecordUnreadable { path: PathBuf, reason: String },

    /// The event does not make a well-formed record.
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),

    /// The serialized record would exceed the line-length limit readers enforce.
    #[error(
        "audit record for '{operation}' is {len} bytes, more than the {max}-byte line limit; shorten its detail"
    )]
    RecordTooLarge {
        operation: String,
        len: usize,
        max: usize,
    },

    /// A record in `since` filtering has a time that is not RFC 3339.
    #[error("audit log {} line {line} has an invalid time '{time}'", path.display())]
    BadTime {
        path: PathBuf,
        line: u64,
        time: String,
    },
}

impl AuditError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        AuditError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Classify for AuditError {
    fn kind(&self) -> Kind {
        match self {
            AuditError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Kind::NotFound
            }
            AuditError::Io { .. } => Kind::Io,
            AuditError::CorruptLine { .. }
            | AuditError::LastRecordUnreadable { .. }
            | AuditError::BadTime { .. } => Kind::Integrity,
            AuditError::InvalidEvent(_) | AuditError::RecordTooLarge { .. } => Kind::Internal,
        }
    }
}

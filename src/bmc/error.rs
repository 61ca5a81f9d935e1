//! Errors of the BMC client.
//!
//! Invariant: every message names the BMC (host[:port]) and says what to do next, and no
//! message ever contains a password, a session token or an `Authorization` value. Text that
//! comes from the BMC (its `MessageId` and `Message`) is shortened and stripped of control
//! characters before it is stored here, because a hostile BMC controls it.
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong talking to a BMC. One variant per thing a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BmcError {
    /// `host` is what can be shown of the URL: never its user-info part.
    #[error("invalid BMC URL (host {host:?}): {reason}")]
    InvalidUrl {
        host: String,
        reason: super::redfish::UrlProblem,
    },

    #[error(
        "refusing plain http:// to BMC {host}: the password, the session token and the backup would cross the network unencrypted"
    )]
    PlaintextRefused { host: String },

    #[error("BMC {host} offers no Redfish sessions ({detail})")]
    NoSessions { host: String, detail: String },

    #[error("invalid iLO backup-file password: {reason}")]
    FilePassword { reason: String },

    #[error(
        "BMC {host} refused the backup-file password (invalid_restore_password): the archive's file password is not the one the backup was made with; nothing was restored"
    )]
    FilePasswordRejected { host: String },

    #[error("BMC {host} needs a session to {what} (iLO checks the session key in the form)")]
    NeedsSession { host: String, what: &'static str },

    #[error("cannot use CA certificate {}: {reason}; pass a PEM file with the CA that signed the BMC certificate", path.display())]
    CaCert { path: PathBuf, reason: String },

    #[error("invalid proxy {proxy:?}: {reason}")]
    InvalidProxy { proxy: String, reason: String },

    #[error(
        "cannot connect to BMC {host}: {detail}; check the address, the port and that the BMC is reachable from here"
    )]
    Connect { host: String, detail: String },

    #[error("TLS with BMC {host} failed ({detail})")]
    Tls { host: String, detail: String },

    #[error("{}", auth_message(host, *status, message_id.as_deref(), *during_login))]
    Auth {
        host: String,
        status: u16,
        message_id: Option<String>,
        during_login: bool,
    },

    #[error("BMC {host} has no free session slot{}: log out stale sessions (iLO web UI, Information > Sessions), wait for them to time out", id_suffix(message_id.as_deref()))]
    SessionLimit {
        host: String,
        message_id: Option<String>,
    },

    #[error("BMC {host} answered {method} {path} with HTTP {status}{}{}", id_suffix(message_id.as_deref()), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Http {
        host: String,
        method: &'static str,
        path: String,
        status: u16,
        message_id: Option<String>,
        message: Option<String>,
    },

    #[error(
        "BMC {host} redirected {path} (HTTP {status}) to {location:?}; redirects are not followed so credentials never leave the BMC you named"
    )]
    Redirect {
        host: String,
        path: String,
        status: u16,
        location: String,
    },

    #[error(
        "BMC {host} does not offer an HPE iLO BackupRestoreService ({detail}); backups need iLO 5 or iLO 6 firmware with Backup and Restore"
    )]
    NoBackupService { host: String, detail: String },

    #[error(
        "BMC {host} sent {reason} for {path} instead of a backup file; nothing was kept. Check the iLO event log, then retry"
    )]
    NotABackup {
        host: String,
        path: String,
        reason: String,
    },

    #[error("the backup from BMC {host} is larger than the limit of {limit} bytes{}; refusing to read it", claimed.map(|c| format!(" (it claims {c} bytes)")).unwrap_or_default())]
    TooLarge {
        host: String,
        limit: u64,
        claimed: Option<u64>,
    },

    #[error("the download from BMC {host} broke off after {received} bytes{}: the backup is incomplete and must not be used; retry", expected.map(|e| format!(" of {e}")).unwrap_or_default())]
    Truncated {
        host: String,
        received: u64,
        expected: Option<u64>,
    },

    #[error("BMC {host} sent a malformed response ({what}); is this a Redfish service?")]
    MalformedResponse { host: String, what: String },

    #[error("BMC {host} did not answer in time ({what}, limit {}s)", after.as_secs_f32())]
    Timeout {
        host: String,
        what: String,
        after: Duration,
    },

    #[error("restoring to BMC {host} needs a session login (iLO checks the session key)")]
    RestoreNeedsSession { host: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl BmcError {
    /// Whether an idempotent request that failed this way may be sent again: the BMC
    /// might be busy or the network flaky. Authentication, TLS and protocol failures
    /// will not change by retrying, so they are never retried.
    pub fn is_transient(&self) -> bool {
        match self {
            BmcError::Connect { .. } | BmcError::Timeout { .. } => true,
            BmcError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The Redfish `MessageId` the BMC sent with this error, if any.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            BmcError::Auth { message_id, .. }
            | BmcError::SessionLimit { message_id, .. }
            | BmcError::Http { message_id, .. } => message_id.as_deref(),
            _ => None,
        }
    }
}

fn id_suffix(id: Option<&str>) -> String {
    id.map(|i| format!(" ({i})")).unwrap_or_default()
}

fn auth_message(host: &str, status: u16, id: Option<&str>, during_login: bool) -> String {
    let id = id_suffix(id);
    match (during_login, status) {
        (true, 403) => format!(
            "BMC {host} refused the login{id}: the account is not allowed to log in over Redfish; check its privileges"
        ),
        (true, _) => format!("BMC {host} refused the login{id}"),
        (false, 403) => format!(
            "BMC {host} denied access{id}: the account lacks the privilege for this operation (backup and restore need iLO configuration privilege)"
        ),
        (false, _) => format!(
            "BMC {host} no longer accepts the credentials{id}: the session may have expired or been deleted; run the command again"
        ),
    }
}

impl crate::errors::Classify for BmcError {
    fn kind(&self) -> crate::errors::Kind {
        use crate::errors::Kind;
        match self {
            BmcError::InvalidUrl { .. }
            | BmcError::InvalidProxy { .. }
            | BmcError::CaCert { .. }
            | BmcError::PlaintextRefused { .. }
            | BmcError::FilePassword { .. }
            | BmcError::NeedsSession { .. }
            | BmcError::RestoreNeedsSession { .. } => Kind::Usage,
            BmcError::Auth { .. } | BmcError::FilePasswordRejected { .. } => Kind::Auth,
            BmcError::Io { .. } => Kind::Io,
            BmcError::Connect { .. }
            | BmcError::Tls { .. }
            | BmcError::SessionLimit { .. }
            | BmcError::NoSessions { .. }
            | BmcError::Http { .. }
            | BmcError::Redirect { .. }
            | BmcError::NoBackupService { .. }
            | BmcError::NotABackup { .. }
            | BmcError::TooLarge { .. }
            | BmcError::Truncated { .. }
            | BmcError::MalformedResponse { .. }
            | BmcError::Timeout { .. } => Kind::Bmc,
        }
    }
}

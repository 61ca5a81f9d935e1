//! The error of the operations layer: what an operation can fail with, each variant
//! mapped to one exit-code [`Kind`].
//!
//! Invariant: messages name the object (file, key id, archive id, BMC host) and never a
//! secret. They do not name CLI commands or flags: hints such as "run 'vault backup
//! list'" are the CLI's to add (`cli::hints`, by variant), because the library is also
//! used by the demo and by other programs.
use std::io;
use std::path::PathBuf;

use crate::audit::AuditError;
use crate::bmc::BmcError;
use crate::errors::{Classify, Kind};
use crate::home::HomeError;
use crate::keystore::KeyError;
use crate::keystore::kdf::KdfError;
use crate::keystore::keyfile::KeyFileError;
use crate::remote::RemoteError;
use crate::scope::Scope;
/// Why a `--trust` file is refused ([`OpsError::TrustFile`]).
pub use crate::signing::PublicKeyError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Root(#[from] crate::home::root::RootError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bmc(#[from] BmcError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// A retention policy that keeps no archive at all.
    #[error("a retention policy must keep something: this one would remove every archive")]
    PolicyKeepsNothing,
    /// Boxed: S3 errors carry bucket, object and response details.
    #[error(transparent)]
    Remote(Box<RemoteError>),
    /// A key file that did not parse or open.
    #[error("{}: {source}", path.display())]
    KeyFile { path: PathBuf, source: KeyFileError },
    /// A key-file import refused by the key store.
    #[error("{}: {source}", path.display())]
    Import { path: PathBuf, source: KeyError },
    #[error("{} is too large to be a vault key file", .0.display())]
    KeyFileTooLarge(PathBuf),
    /// KDF parameters asked for a new key file that are out of bounds.
    #[error(transparent)]
    KdfParams(KdfError),
    /// The key named to seal an archive belongs to another scope or domain.
    #[error("key {key} is {} and cannot seal {}", describe_key(*.key_scope, .key_domain.as_deref()), describe_archive(.domain.as_deref()))]
    KeyOutOfScope {
        key: uuid::Uuid,
        key_scope: Scope,
        key_domain: Option<String>,
        scope: Scope,
        domain: Option<String>,
    },
    /// Restore: the BMC manages another server than the archive came from.
    #[error(
        "archive {archive} came from the server with serial {archive_serial}, but BMC {host} manages serial {bmc_serial}; nothing was sent"
    )]
    SerialMismatch {
        archive: uuid::Uuid,
        host: String,
        archive_serial: String,
        bmc_serial: String,
    },
    #[error(
        "archive {archive} does not record the serial number of the server it came from, so BMC {host} cannot be checked; nothing was sent"
    )]
    NoArchiveSerial { archive: uuid::Uuid, host: String },
    #[error(
        "BMC {host} does not report its server's serial number, so it cannot be checked against the archive's ({archive_serial}); nothing was sent"
    )]
    NoBmcSerial {
        host: String,
        archive_serial: String,
    },
    #[error("restoring resets BMC {host} and was not confirmed (there is no terminal to ask)")]
    RestoreNotConfirmed { host: String },
    #[error("restore cancelled; nothing was sent")]
    RestoreCancelled,
    /// The iLO backup-file password sealed in an archive is not UTF-8 (authenticated, so
    /// written so by whoever holds the key).
    #[error("archive {archive}: its iLO backup-file password is not text; nothing was sent")]
    FilePasswordNotText { archive: uuid::Uuid },
    /// A path the caller named does not exist.
    #[error("{} does not exist (or cannot be reached); check the path", .0.display())]
    NotFound(PathBuf),
    /// Opening, reading or writing a file the caller named.
    #[error("cannot access {}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    /// No remote of the home is on the bucket of an `s3://` URL.
    #[error("no remote of this home is on bucket '{0}'")]
    NoRemoteForBucket(String),
    /// A fleet inventory that cannot be used (too large, not TOML/JSON, unknown fields).
    #[error("inventory {} {reason}", path.display())]
    Inventory { path: PathBuf, reason: String },
    /// A job the caller could not build (e.g. a fleet entry without a password), with
    /// the kind the caller gave it.
    #[error("{message}")]
    Job { kind: Kind, message: String },
    /// `pull --push-to`: the archive is stored but its push failed.
    #[error("archive {id} is in the home but was not pushed to {remote}: {source}")]
    NotPushed {
        id: uuid::Uuid,
        remote: String,
        source: Box<OpsError>,
    },
    /// A `--trust` file that is not a home public key.
    #[error("{}: {source}", path.display())]
    TrustFile {
        path: PathBuf,
        source: PublicKeyError,
    },
    /// A plain rewrap away from a compromised key would keep the data keys it exposes.
    #[error(
        "key {0} is compromised: a plain rewrap keeps each archive's data key, which whoever holds that key can recompute; nothing was changed"
    )]
    CompromisedRewrap(uuid::Uuid),
    /// Writing the output of an extract failed; nothing was left under its name.
    #[error("cannot write {}: {source}; nothing was written there", path.display())]
    Destination { path: PathBuf, source: io::Error },
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot write {what} {}: {source}", path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl From<RemoteError> for OpsError {
    fn from(e: RemoteError) -> Self {
        OpsError::Remote(Box::new(e))
    }
}

impl Classify for OpsError {
    fn kind(&self) -> Kind {
        match self {
            OpsError::Home(e) => e.kind(),
            OpsError::Root(e) => e.kind(),
            OpsError::Key(e) | OpsError::Import { source: e, .. } => e.kind(),
            OpsError::Store(e) => e.kind(),
            OpsError::Bmc(e) => e.kind(),
            OpsError::Audit(e) => e.kind(),
            OpsError::Password(e) => e.kind(),
            OpsError::Remote(e) => e.kind(),
            OpsError::PolicyKeepsNothing => Kind::Usage,
            OpsError::KeyFile { source, .. } => source.kind(),
            OpsError::KeyFileTooLarge(_) | OpsError::KdfParams(_) | OpsError::TrustFile { .. } => {
                Kind::Usage
            }
            OpsError::CompromisedRewrap(_) => Kind::Refused,
            OpsError::NoRemoteForBucket(_) => Kind::NotFound,
            OpsError::Inventory { .. } => Kind::Usage,
            OpsError::Job { kind, .. } => *kind,
            OpsError::NotPushed { source, .. } => source.kind(),
            OpsError::File { source, .. } | OpsError::Destination { source, .. } => {
                Classify::kind(source)
            }
            OpsError::Read { .. } | OpsError::Write { .. } => Kind::Io,
            OpsError::NotFound(_) => Kind::NotFound,
            OpsError::KeyOutOfScope { .. }
            | OpsError::SerialMismatch { .. }
            | OpsError::NoArchiveSerial { .. }
            | OpsError::NoBmcSerial { .. }
            | OpsError::RestoreCancelled => Kind::Refused,
            OpsError::RestoreNotConfirmed { .. } => Kind::Usage,
            OpsError::FilePasswordNotText { .. } => Kind::Integrity,
        }
    }
}

fn describe_key(scope: Scope, domain: Option<&str>) -> String {
    match scope {
        Scope::System => "a system key".to_string(),
        Scope::Domain => format!("a key of domain {}", domain.unwrap_or("?")),
    }
}

fn describe_archive(domain: Option<&str>) -> String {
    match domain {
        None => "a system archive".to_string(),
        Some(d) => format!("an archive of domain {d}"),
    }
}

impl OpsError {
    /// A failure to open or access `path`.
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> OpsError {
        let path = path.into();
        move |source| OpsError::File { path, source }
    }
}

/// Why no usable password was obtained. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot access {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read password file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("password file {} is larger than {max} bytes; is it the right file?", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("password file {} is not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("cannot read the password from the terminal: {0}")]
    Terminal(io::Error),
    #[error("the two passwords differ; nothing was written")]
    Mismatch,
    #[error("a password is needed: pass {flag} FILE or set {env_var} (no terminal to prompt on)")]
    Missing { flag: String, env_var: String },
    #[error("the password is empty")]
    Empty,
    #[error("the password is too short: use at least {min} characters")]
    TooShort { min: usize },
    #[error("the environment variable {0} named by password_env is not set")]
    EnvNotSet(String),
    #[error("no password for this BMC")]
    NoneForBmc,
    #[error("the BMC password is empty")]
    EmptyBmc,
}

impl Classify for PasswordError {
    fn kind(&self) -> Kind {
        match self {
            PasswordError::Open { source, .. } => Classify::kind(source),
            PasswordError::Read { .. } | PasswordError::Terminal(_) => Kind::Io,
            _ => Kind::Usage,
        }
    }
}

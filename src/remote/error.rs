//! Errors of the remote (S3) archive stores. Messages name the remote, bucket or object
//! and say what to do; none ever carries a credential or a signed URL (whose query string
//! holds a signature).
use std::io;

use crate::envelope::EnvelopeError;
use crate::errors::{Classify, Kind};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0}")]
    Usage(String),
    #[error("no remote named '{0}' in this home")]
    UnknownRemote(String),
    #[error("a remote named '{0}' already exists in this home; pick another name")]
    RemoteExists(String),
    #[error(
        "no S3 credentials for remote '{remote}': set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the remote a credentials file/profile ({detail})"
    )]
    NoCredentials { remote: String, detail: String },
    #[error("cannot read the S3 credentials file {path}: {reason}")]
    CredentialsFile { path: String, reason: String },
    #[error("cannot use {path} as the CA certificate of the S3 endpoint: {reason}")]
    CaCert { path: String, reason: String },
    #[error("cannot reach the S3 endpoint {endpoint} ({what}): {reason}")]
    Transport {
        endpoint: String,
        what: String,
        reason: String,
    },
    #[error(
        "S3 refused {what} on s3://{bucket}/{object}: {status} {code}{message}; check the credentials and the bucket policy"
    )]
    Denied {
        what: String,
        bucket: String,
        object: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("no object s3://{bucket}/{object} in the store")]
    NoSuchObject { bucket: String, object: String },
    #[error("S3 answered {what} on s3://{bucket}/{object} with {status} {code}{message}")]
    Failed {
        what: String,
        bucket: String,
        object: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("the S3 response to {what} could not be understood: {reason}")]
    BadResponse { what: String, reason: String },
    #[error(
        "object s3://{bucket}/{object} is corrupted in the store: {reason}; nothing was written to the home (fetch another copy or push it again from a home that has it)"
    )]
    Corrupted {
        bucket: String,
        object: String,
        reason: String,
    },
    #[error("{0} is locked by S3 Object Lock until {1}; it cannot be deleted before then")]
    Locked(String, String),
    #[error("{what}: {source}")]
    Archive { what: String, source: EnvelopeError },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl Classify for RemoteError {
    fn kind(&self) -> Kind {
        match self {
            RemoteError::Usage(_) | RemoteError::RemoteExists(_) => Kind::Usage,
            RemoteError::UnknownRemote(_) | RemoteError::NoSuchObject { .. } => Kind::NotFound,
            RemoteError::NoCredentials { .. }
            | RemoteError::CredentialsFile { .. }
            | RemoteError::Denied { .. } => Kind::Auth,
            RemoteError::CaCert { .. } => Kind::Usage,
            // "The BMC or the network failed" (exit 8).
            RemoteError::Transport { .. }
            | RemoteError::Failed { .. }
            | RemoteError::BadResponse { .. } => Kind::Bmc,
            RemoteError::Corrupted { .. } => Kind::Integrity,
            RemoteError::Locked(..) => Kind::Refused,
            RemoteError::Archive { source, .. } => source.kind(),
            RemoteError::Io { source, .. } => Classify::kind(source),
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RemoteError {
    let what = what.into();
    move |source| RemoteError::Io { what, source }
}

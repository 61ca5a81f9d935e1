//! The one error type of the archive layer.
//!
//! Each variant is something a person can act on differently: a file that is not an
//! archive, a newer format, damage that looks like a cut-short copy, damage that looks
//! like modification, a missing key, the wrong key. Messages name what broke and the next
//! step; they never contain key material (keys are only ever named by their id).
use uuid::Uuid;

use crate::errors::{Classify, Kind};

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Zero bytes: the same verdict from every command that reads an archive (inspect,
    /// verify, upload, the sweep), and the same words as for an empty key file.
    #[error(
        "the file is empty (0 bytes), so it is not a vault archive; an interrupted copy or download leaves this, use a complete copy"
    )]
    Empty,

    /// The first 8 bytes are not `VAULTARC`.
    #[error(
        "input is not a vault archive (it does not start with the magic bytes \"VAULTARC\"); check that you gave the right file"
    )]
    NotAnArchive,

    /// The file was written by a newer vault.
    #[error(
        "archive format version {found} is newer than this vault supports (max {max}); upgrade vault"
    )]
    UnsupportedVersion { found: u16, max: u16 },

    /// A structural rule of the format is broken (bad JSON, bad length, reserved bits set).
    #[error(
        "archive is malformed: {0}; the file is damaged or was not written by vault, use another copy"
    )]
    Malformed(String),

    /// The input ended before the format says it may (a cut-short copy or download).
    #[error(
        "archive is truncated: {0}; the file was cut short (interrupted copy or download), use a complete copy"
    )]
    Truncated(String),

    /// Authentication failed: the bytes were modified after sealing.
    #[error(
        "archive failed authentication ({0}): it was modified or corrupted after sealing; do not restore it, use another copy"
    )]
    Tampered(String),

    /// No key slot names a key that the caller can provide.
    #[error(
        "archive is sealed under key {} which is not in this home",
        join_ids(.key_ids)
    )]
    KeyUnavailable { key_ids: Vec<Uuid> },

    /// A slot names a key we have, but it does not authenticate under that key.
    #[error(
        "the key slot for key {key_id} does not authenticate with the key of that id in this home: either that key's material differs from the one that sealed the archive (check the imported key file), or the archive header or key slot was modified"
    )]
    WrongKey { key_id: Uuid },

    /// The key's scope or domain is not the archive's (a domain key opens only archives of
    /// its own domain, a system key only system archives).
    #[error(
        "key {key_id} is {key} and cannot open {archive}: the archive header claims a scope or domain its key does not have; do not restore it"
    )]
    ScopeMismatch {
        key_id: Uuid,
        key: String,
        archive: String,
    },

    /// An in-place rewrap of a format 1 archive: it must be upgraded (re-encrypted).
    #[error("archive is format version 1 and must be upgraded (re-encrypted) to be rewrapped")]
    NeedsUpgrade,

    /// The caller handed in a header that cannot be sealed (a programming error upstream).
    #[error("cannot seal: invalid archive header: {0}")]
    InvalidHeader(String),

    /// The plaintext exceeds what the chunk counter can address (4 PiB).
    #[error(
        "input is too large: Cobblestone-256 archives hold at most 2^38 chunks (4 PiB); split the input"
    )]
    TooLarge,

    #[error("I/O error while processing the archive: {0}")]
    Io(#[from] std::io::Error),
}

fn join_ids(ids: &[Uuid]) -> String {
    if ids.is_empty() {
        return "(none: the archive has no occupied key slot)".to_string();
    }
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Maps an early end of input onto `Truncated(what)`; other I/O errors stay `Io`.
pub(crate) fn eof_is_truncation(what: &str) -> impl FnOnce(std::io::Error) -> EnvelopeError + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            EnvelopeError::Truncated(format!("input ends inside the {what}"))
        } else {
            EnvelopeError::Io(e)
        }
    }
}

impl Classify for EnvelopeError {
    fn kind(&self) -> Kind {
        match self {
            EnvelopeError::Empty
            | EnvelopeError::NotAnArchive
            | EnvelopeError::InvalidHeader(_) => Kind::Usage,
            EnvelopeError::UnsupportedVersion { .. } | EnvelopeError::TooLarge => Kind::Unsupported,
            EnvelopeError::Malformed(_)
            | EnvelopeError::Truncated(_)
            | EnvelopeError::Tampered(_)
            | EnvelopeError::ScopeMismatch { .. } => Kind::Integrity,
            EnvelopeError::NeedsUpgrade => Kind::Unsupported,
            EnvelopeError::KeyUnavailable { .. } => Kind::NotFound,
            EnvelopeError::WrongKey { .. } => Kind::Auth,
            EnvelopeError::Io(e) => Classify::kind(e),
        }
    }
}

//! What a failure means to a user, independent of the module that raised it.
//!
//! Every module's error enum maps each variant to one `Kind`; the CLI turns a `Kind` into
//! the documented exit code and the audit log records its name. Keeping this mapping in
//! one place is what keeps exit codes stable across releases.

/// Classes of failure a user (or a script) can act on. The numbers are the exit codes
/// documented in README.md; never renumber a released one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything unexpected.
    Internal = 1,
    /// Bad arguments or input that is not what the command expects.
    Usage = 2,
    /// A named key, archive or file does not exist.
    NotFound = 3,
    /// Wrong password or wrong key.
    Auth = 4,
    /// Corrupted, tampered or truncated data.
    Integrity = 5,
    /// A format version newer than this build, or parameters outside sane bounds.
    Unsupported = 6,
    /// Refused by policy or state: retired key, scope mismatch, id clash, key in use.
    Refused = 7,
    /// The BMC or the network failed.
    Bmc = 8,
    /// Reading or writing local files failed (permissions, full disk, lock).
    Io = 9,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        self as u8
    }

    /// Stable name used in JSON output and audit records.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Internal => "internal",
            Kind::Usage => "usage",
            Kind::NotFound => "not-found",
            Kind::Auth => "auth",
            Kind::Integrity => "integrity",
            Kind::Unsupported => "unsupported",
            Kind::Refused => "refused",
            Kind::Bmc => "bmc",
            Kind::Io => "io",
        }
    }
}

/// Implemented by every module error.
pub trait Classify {
    fn kind(&self) -> Kind;
}

impl Classify for std::io::Error {
    fn kind(&self) -> Kind {
        match std::io::Error::kind(self) {
            std::io::ErrorKind::NotFound => Kind::NotFound,
            _ => Kind::Io,
        }
    }
}

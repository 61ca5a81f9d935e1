//! The tamper-evident audit log: who did what, when, to which key, archive or BMC.
//!
//! Invariant: `audit.log` in the vault home is append-only JSON lines, and record *n*
//! carries `seq = n`, the previous record's `hash` as `prevHash` (64 zeros for the first)
//! and the SHA-256 of its own canonical encoding (see [`AuditRecord::compute_hash`]). Any
//! edit, deletion, insertion or reordering of a record therefore breaks the chain at the
//! first changed record, and [`AuditLog::verify`] names it. What the chain cannot show is
//! a truncated tail or a wholesale rewrite by someone with write access: for that the
//! user keeps an *anchor* (`records`, `lastHash` from [`VerifyReport`]) elsewhere and
//! checks it with [`AuditLog::verify_against_anchor`].
//!
//! Records never hold secrets: the API takes no key material, and callers must not put
//! passwords, tokens or key bytes into [`AuditEvent::detail`] (or any other field).
//! SECURITY-audit.md documents the exact encoding for independent verifiers.
//!
//! A change to the home is announced before its commit point by an [`Intent`]
//! ([`AuditLog::intend`]) and concluded by its outcome record ([`AuditLog::conclude`]);
//! an intent its process never concluded becomes an `unfinished` record on the next
//! append (see [`intent`]), so a kill never leaves a committed change with no record.

mod error;
pub mod intent;
mod lines;
mod log;
mod record;
pub mod syslog;

pub use error::AuditError;
pub use intent::{Intent, IntentRecord, PENDING_DIR};
pub use log::{
    AnchorCheck, AuditFilter, AuditLog, BreakKind, Broken, LOG_FILE_NAME, MAX_LINE_LEN, Records,
    TornTail, VerifyReport, group_stats,
};
pub use record::{AuditEvent, AuditRecord, GENESIS_PREV_HASH, Outcome};

//! The operations layer: every command of `vault` as a plain library function.
//!
//! One module per group (`home`, `keys`, `backup`, `pull`, `restore`, `fleet`, `remote`,
//! `prune`, `audit`, `shell`, `demo`): each takes typed options, returns a typed result and
//! fails with [`OpsError`], whose variants map to the exit-code kinds of
//! [`crate::errors::Kind`] and whose messages state facts without naming a command or flag (the CLI adds those).
//! Nothing here parses arguments, reads the environment, touches stdout/stderr or a TTY:
//! progress and warnings go through [`Progress`], passwords come from a
//! [`PasswordSource`] the caller provides, and the CLI, the demo and the fleet runner
//! (`fleet`, over `pull`) all call the same functions.
//!
//! Invariant: an operation that changes the home records itself in the audit log through
//! [`Context::audited`], on success and on failure, naming what was asked for (key id,
//! archive id, BMC host) even when it was not found. A caller cannot forget the record,
//! because it cannot reach the change without going through the operation. Before its
//! commit point (rename, `keys.json` write) it writes a durable *intent*
//! ([`Audit::intent`], [`crate::audit::intent`]) and after it the outcome record, so a
//! kill at any instant leaves a committed change with its intent or its outcome on record.
pub mod audit;
pub mod backup;
pub mod demo;
pub mod error;
pub mod fleet;
pub mod home;
pub mod keys;
pub mod password;
pub mod progress;
pub mod prune;
pub mod pull;
pub mod remote;
pub mod restore;
pub mod shell;

use std::path::Path;

pub use error::{OpsError, PasswordError};
pub use progress::{Progress, Silent};

use crate::audit::{AuditEvent, AuditLog, Intent, Outcome};
use crate::errors::Classify;
use crate::home::Home;
use crate::secret::Password;

/// Where an operation gets a password, asked only when it is needed (so that a wrong
/// `--id` costs no prompt). The CLI reads a file, the environment or the terminal.
pub type PasswordSource<'a> = &'a dyn Fn() -> Result<Password, OpsError>;

/// An opened vault home and who is acting in it.
pub struct Context {
    home: Home,
    account: String,
    reporter: Box<dyn Progress + Send>,
}

/// What an audited operation is about, filled in as the operation learns it.
#[derive(Debug, Default, Clone)]
pub struct Subject {
    pub key_id: Option<String>,
    pub archive_id: Option<String>,
    pub bmc_host: Option<String>,
    pub detail: Option<String>,
}

impl Context {
    /// Opens (creating on first use) the home at `dir` for `account`.
    pub fn open(dir: &Path, account: impl Into<String>) -> Result<Self, OpsError> {
        Ok(Context {
            home: Home::open(dir)?,
            account: account.into(),
            reporter: Box::new(Silent),
        })
    }

    /// Uses an already opened home (e.g. one given an unlocker for its root key).
    pub fn with_home(home: Home, account: impl Into<String>) -> Self {
        Context {
            home,
            account: account.into(),
            reporter: Box::new(Silent),
        }
    }

    /// Sends the warnings of operations (not their byte progress) to `reporter`.
    pub fn with_reporter(mut self, reporter: Box<dyn Progress + Send>) -> Self {
        self.reporter = reporter;
        self
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub(crate) fn warn(&self, message: &str) {
        self.reporter.warn(message);
    }

    /// Runs `f` as the audited operation `operation` and appends its outcome record:
    /// success, or failure with the error's kind. `f` fills in the subject as it learns
    /// what it acts on, and calls [`Audit::intent`] right before its commit point (the
    /// rename of an archive, the write of `keys.json`); the outcome then concludes that
    /// intent. A failure to append the outcome is reported as a warning and does not undo
    /// the operation: its intent is durable and the next append records it.
    pub(crate) fn audited<T>(
        &self,
        operation: &'static str,
        subject: Subject,
        f: impl FnOnce(&mut Audit<'_>) -> Result<T, OpsError>,
    ) -> Result<T, OpsError> {
        let mut audit = Audit {
            ctx: self,
            operation,
            subject,
            intent: None,
        };
        let r = f(&mut audit);
        let result = match &r {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure {
                kind: e.kind().name().to_string(),
            },
        };
        let Audit {
            subject, intent, ..
        } = audit;
        #[cfg(feature = "fuzzing")]
        if intent.is_some() {
            pause_before_outcome();
        }
        let ev = subject.event(operation, result);
        let log = self.log();
        let appended = match intent {
            Some(intent) => log.conclude(intent, &ev),
            None => log.append(&ev),
        };
        if let Err(e) = appended {
            self.warn(&format!("warning: could not append to the audit log: {e}"));
        }
        r
    }

    /// Checks the hash chain of this home's audit log (read-only).
    pub fn verify_audit_log(&self) -> Result<crate::audit::VerifyReport, OpsError> {
        Ok(AuditLog::open(self.home.dir()).verify()?)
    }

    fn log(&self) -> AuditLog {
        AuditLog::open(self.home.dir()).with_account(self.account.clone())
    }
}

impl Subject {
    fn event(&self, operation: &'static str, result: Outcome) -> AuditEvent<'static> {
        AuditEvent {
            operation,
            key_id: self.key_id.clone(),
            archive_id: self.archive_id.clone(),
            bmc_host: self.bmc_host.clone(),
            result,
            detail: self.detail.clone(),
        }
    }
}

/// An audited operation in progress (see [`Context::audited`]): its [`Subject`], and its
/// intent record once announced.
pub(crate) struct Audit<'c> {
    ctx: &'c Context,
    operation: &'static str,
    subject: Subject,
    intent: Option<Intent>,
}

impl Audit<'_> {
    /// Announces the change durably ([`AuditLog::intend`]), naming the subject as known
    /// now. Call it right before the commit point: if it fails, the operation fails
    /// without making its change, so no change is ever made without a record. Calling it
    /// again is a no-op.
    pub(crate) fn intent(&mut self) -> Result<(), OpsError> {
        if self.intent.is_none() {
            let ev = self.subject.event(self.operation, Outcome::Success);
            self.intent = Some(self.ctx.log().intend(&ev)?);
        }
        Ok(())
    }
}

impl std::ops::Deref for Audit<'_> {
    type Target = Subject;
    fn deref(&self) -> &Subject {
        &self.subject
    }
}

impl std::ops::DerefMut for Audit<'_> {
    fn deref_mut(&mut self) -> &mut Subject {
        &mut self.subject
    }
}

/// Name of the environment variable read by [`pause_before_outcome`].
#[cfg(feature = "fuzzing")]
pub const PAUSE_BEFORE_OUTCOME: &str = "VAULT_FUZZ_PAUSE_BEFORE_OUTCOME_MS";

/// Test hook of the `fuzzing` feature (never in a shipped build): when
/// [`PAUSE_BEFORE_OUTCOME`] is set, an audited operation that announced its change sleeps
/// that many milliseconds after its commit point and before recording its outcome, so
/// `tests/audit_kill.rs` can SIGKILL it exactly in that window.
#[cfg(feature = "fuzzing")]
fn pause_before_outcome() {
    if let Some(ms) = std::env::var(PAUSE_BEFORE_OUTCOME)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
    }
}

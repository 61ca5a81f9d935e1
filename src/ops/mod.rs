//! The operations layer: every command of `vault` as a plain library function.
//!
//! Each group (`keys`, and the others as they move here) takes typed options, returns a
//! typed result and fails with [`OpsError`], whose variants map to the exit-code kinds
//! of [`crate::errors::Kind`]. Nothing here parses arguments, reads the environment,
//! touches stdout/stderr or a TTY: progress and warnings go through [`Progress`],
//! passwords come from a [`PasswordSource`] the caller provides, and the CLI, the demo
//! and the fleet runner all call the same functions.
//!
//! Invariant: an operation that changes the home records itself in the audit log through
//! [`Context::audited`], on success and on failure, naming what was asked for (key id,
//! archive id, BMC host) even when it was not found. A caller cannot forget the record,
//! because it cannot reach the change without going through the operation.
pub mod backup;
pub mod error;
pub mod home;
pub mod keys;
pub mod password;
pub mod progress;
pub mod prune;
pub mod pull;
pub mod remote;
pub mod restore;

use std::path::Path;

pub use error::{OpsError, PasswordError};
pub use progress::{Progress, Silent};

use crate::audit::{AuditEvent, AuditLog, Outcome};
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

    /// Runs `f` as the audited operation `operation` and appends its record: success, or
    /// failure with the error's kind. `f` fills in `subject` as it learns what it acts
    /// on. A failure to append is reported as a warning and does not undo the operation.
    pub(crate) fn audited<T>(
        &self,
        operation: &'static str,
        mut subject: Subject,
        f: impl FnOnce(&mut Subject) -> Result<T, OpsError>,
    ) -> Result<T, OpsError> {
        let r = f(&mut subject);
        let result = match &r {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure {
                kind: e.kind().name().to_string(),
            },
        };
        self.record(operation, subject, result);
        r
    }

    fn record(&self, operation: &str, s: Subject, result: Outcome) {
        let ev = AuditEvent {
            operation,
            key_id: s.key_id,
            archive_id: s.archive_id,
            bmc_host: s.bmc_host,
            result,
            detail: s.detail,
        };
        let log = AuditLog::open(self.home.dir()).with_account(self.account.clone());
        if let Err(e) = log.append(&ev) {
            self.warn(&format!("warning: could not append to the audit log: {e}"));
        }
    }
}

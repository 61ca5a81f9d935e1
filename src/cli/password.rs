//! Where passwords come from on the command line: a file, an environment variable, or a
//! TTY prompt (in that order).
//!
//! Invariant: a password never comes from argv (it would be visible in `ps` and shell
//! history), never is echoed, logged or put into an error. Files are read by
//! [`ops::password::from_file`], which refuses files readable by group or others.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::ops::{self, OpsError, PasswordError};
use crate::secret::Password;

/// The environment variable of a new root passphrase (`home protect`, `home rotate-root`).
pub const ENV_NEW_ROOT_PASSWORD: &str = "VAULT_NEW_ROOT_PASSWORD";

/// How to obtain one password, resolved from the arguments; asked only when an
/// operation calls [`PasswordArg::get`].
pub struct PasswordArg {
    pub file: Option<PathBuf>,
    pub env_var: &'static str,
    pub prompt: &'static str,
    /// A new password (a key file being written): asked twice, minimum length.
    pub new: bool,
}

impl PasswordArg {
    pub fn get(&self) -> Result<Password, OpsError> {
        Ok(obtain(
            self.file.as_deref(),
            self.env_var,
            self.prompt,
            self.new,
        )?)
    }
}

/// Reads a password from `file`, else `env_var`, else the TTY (asked twice if `confirm`).
pub fn obtain(
    file: Option<&Path>,
    env_var: &str,
    prompt: &str,
    confirm: bool,
) -> Result<Password, PasswordError> {
    let pw = if let Some(path) = file {
        ops::password::from_file(path)?
    } else if let Ok(v) = std::env::var(env_var) {
        Password::new(v)
    } else if std::io::stdin().is_terminal() {
        let ask = |p: String| rpassword::prompt_password(p).map_err(PasswordError::Terminal);
        let first = Password::new(ask(format!("{prompt}: "))?);
        if confirm {
            let again = Password::new(ask(format!("{prompt} (again): "))?);
            if again.expose() != first.expose() {
                return Err(PasswordError::Mismatch);
            }
        }
        first
    } else {
        return Err(PasswordError::Missing {
            flag: file_flag(env_var).to_string(),
            env_var: env_var.to_string(),
        });
    };
    ops::password::check(&pw, confirm)?;
    Ok(pw)
}

/// The flag that names the file for the password read from `env_var`, as the error for a
/// missing password must say it (`backup pull` has no `--password-file`).
fn file_flag(env_var: &str) -> &'static str {
    match env_var {
        "VAULT_BMC_PASSWORD" => "--bmc-password-file",
        ENV_NEW_ROOT_PASSWORD => "--new-password-file",
        _ => "--password-file",
    }
}

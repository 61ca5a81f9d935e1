//! Where passwords come from: a file, an environment variable, or a TTY prompt.
//!
//! Invariant: a password never comes from argv (it would be visible in `ps` and shell
//! history), never is echoed, logged or put into an error. Password files must not be
//! readable by group or others.
use std::io::{IsTerminal, Read};
use std::path::Path;

use super::CliError;
use crate::errors::Kind;
use crate::fsutil;
use crate::secret::Password;

const MAX_PASSWORD_FILE: u64 = 4096;
/// Minimum length of a new key-file password.
pub const MIN_NEW_PASSWORD: usize = 8;

/// Reads a password from `file`, else `env_var`, else the TTY (asked twice if `confirm`).
pub fn obtain(
    file: Option<&Path>,
    env_var: &str,
    prompt: &str,
    confirm: bool,
) -> Result<Password, CliError> {
    let pw = if let Some(path) = file {
        from_file(path)?
    } else if let Ok(v) = std::env::var(env_var) {
        Password::new(v)
    } else if std::io::stdin().is_terminal() {
        let first = Password::new(rpassword::prompt_password(format!("{prompt}: ")).map_err(
            |e| {
                CliError::new(
                    Kind::Io,
                    format!("cannot read the password from the terminal: {e}"),
                )
            },
        )?);
        if confirm {
            let again = Password::new(
                rpassword::prompt_password(format!("{prompt} (again): ")).map_err(|e| {
                    CliError::new(
                        Kind::Io,
                        format!("cannot read the password from the terminal: {e}"),
                    )
                })?,
            );
            if again.expose() != first.expose() {
                return Err(CliError::new(
                    Kind::Usage,
                    "the two passwords differ; nothing was written",
                ));
            }
        }
        first
    } else {
        return Err(CliError::new(
            Kind::Usage,
            format!(
                "a password is needed: pass --password-file FILE or set {env_var} (no terminal to prompt on)"
            ),
        ));
    };
    if pw.is_empty() {
        return Err(CliError::new(Kind::Usage, "the password is empty"));
    }
    if confirm && pw.expose().chars().count() < MIN_NEW_PASSWORD {
        return Err(CliError::new(
            Kind::Usage,
            format!("the password is too short: use at least {MIN_NEW_PASSWORD} characters"),
        ));
    }
    Ok(pw)
}

/// Reads a password file: at most 4 KiB, one trailing newline stripped, mode 0600.
pub fn from_file(path: &Path) -> Result<Password, CliError> {
    let f = fsutil::open_secret_file(path).map_err(|e| super::backup::file_err(path, e))?;

    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    f.take(MAX_PASSWORD_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            CliError::new(
                Kind::Io,
                format!("cannot read password file {}: {e}", path.display()),
            )
        })?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE {
        return Err(CliError::new(
            Kind::Usage,
            format!(
                "password file {} is larger than {MAX_PASSWORD_FILE} bytes; is it the right file?",
                path.display()
            ),
        ));
    }
    let mut text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|_| {
        CliError::new(
            Kind::Usage,
            format!("password file {} is not UTF-8 text", path.display()),
        )
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(Password::new(text))
}

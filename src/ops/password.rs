//! Password files: the one way an operation reads a password from disk.
//!
//! Invariant: a password file is at most 4 KiB, not readable by group or others, UTF-8,
//! and its one trailing newline (`\n` or `\r\n`) is not part of the password. The bytes
//! are held in zeroizing buffers and never appear in an error.
use std::io::Read;
use std::path::Path;

use super::PasswordError;
use crate::fsutil;
use crate::secret::Password;

/// Largest password file read.
pub const MAX_PASSWORD_FILE: u64 = 4096;
/// Minimum length of a new key-file password.
pub const MIN_NEW_PASSWORD: usize = 8;

/// Reads a password file.
pub fn from_file(path: &Path) -> Result<Password, PasswordError> {
    let f = fsutil::open_secret_file(path).map_err(|source| PasswordError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    f.take(MAX_PASSWORD_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| PasswordError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE {
        return Err(PasswordError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_PASSWORD_FILE,
        });
    }
    let mut text =
        String::from_utf8(std::mem::take(&mut *bytes)).map_err(|_| PasswordError::NotUtf8 {
            path: path.to_path_buf(),
        })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(Password::new(text))
}

/// Checks a password obtained from anywhere: not empty, and for a new key file
/// (`new`) at least [`MIN_NEW_PASSWORD`] characters.
pub fn check(pw: &Password, new: bool) -> Result<(), PasswordError> {
    if pw.is_empty() {
        return Err(PasswordError::Empty);
    }
    if new && pw.expose().chars().count() < MIN_NEW_PASSWORD {
        return Err(PasswordError::TooShort {
            min: MIN_NEW_PASSWORD,
        });
    }
    Ok(())
}

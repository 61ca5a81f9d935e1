//! The file reads of `vault bmc-simulator` and `vault demo`: the backup a simulator is
//! told to serve, and the demo's own check of the bytes `backup extract` wrote.
use std::io::Read;
use std::path::Path;

use super::OpsError;
use crate::errors::Kind;

/// The largest file `bmc-simulator --backup-file` serves.
pub const SIMULATOR_BACKUP_MAX: u64 = 256 << 20;

/// The bytes of `path`, for a simulator to serve as its backup (at most
/// [`SIMULATOR_BACKUP_MAX`], read no further than that).
pub fn simulator_backup(path: &Path) -> Result<Vec<u8>, OpsError> {
    let f = std::fs::File::open(path).map_err(OpsError::file(path))?;
    let mut bytes = Vec::new();
    f.take(SIMULATOR_BACKUP_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(OpsError::file(path))?;
    if bytes.len() as u64 > SIMULATOR_BACKUP_MAX {
        return Err(OpsError::Job {
            kind: Kind::Usage,
            message: format!("{} is larger than 256 MiB", path.display()),
        });
    }
    Ok(bytes)
}

/// Whether the file at `path` holds exactly `expected`; returns its length when it does,
/// `None` when it differs.
pub fn file_holds(path: &Path, expected: &[u8]) -> Result<Option<u64>, OpsError> {
    let got = std::fs::read(path).map_err(OpsError::file(path))?;
    Ok((got == expected).then_some(got.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_holds_its_bytes_and_not_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(file_holds(&p, b"abc").unwrap(), Some(3));
        assert_eq!(file_holds(&p, b"abd").unwrap(), None);
        assert_eq!(simulator_backup(&p).unwrap(), b"abc");
        assert!(simulator_backup(&dir.path().join("missing")).is_err());
    }
}

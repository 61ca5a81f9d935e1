//! The vault home: a private directory holding the root key, the wrapped backup keys,
//! the archive store and the audit log.
//!
//! Invariants:
//! - The directory is 0700 and every secret file 0600; a root key file readable by group
//!   or others is refused rather than used.
//! - Every state change happens while holding the home's exclusive lock (`HomeLock`), so
//!   concurrent invocations serialise instead of losing each other's writes; mutating APIs
//!   take `&HomeLock` as proof. Readers need no lock because every file is replaced by an
//!   atomic rename.
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::errors::{Classify, Kind};
use crate::fsutil;
use crate::secret::Key32;

const ROOT_MAGIC: &[u8; 8] = b"VAULTRK1";

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot use vault home {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "root key {path} is damaged (expected 40 bytes starting with VAULTRK1); restore it from your backup of the vault home"
    )]
    BadRootKey { path: PathBuf },
}

impl Classify for HomeError {
    fn kind(&self) -> Kind {
        match self {
            HomeError::Io { source, .. } => Classify::kind(source),
            HomeError::BadRootKey { .. } => Kind::Integrity,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An opened vault home.
pub struct Home {
    dir: PathBuf,
}

/// Proof that this process holds the home's exclusive lock; released on drop.
pub struct HomeLock {
    _file: File,
}

impl Home {
    /// Opens (creating on first use) the home at `dir`.
    pub fn open(dir: &Path) -> Result<Home, HomeError> {
        fsutil::ensure_private_dir(dir).map_err(io_err(dir))?;
        let home = Home {
            dir: dir.to_path_buf(),
        };
        fsutil::ensure_private_dir(&home.archives_dir()).map_err(io_err(dir))?;
        // Created here, before any caller can hold the lock: `root_key` itself never locks,
        // so it is safe to call while holding a `HomeLock`.
        if !home.root_key_path().exists() {
            let _lock = home.lock()?;
            home.create_root_key_if_missing()?;
        }
        Ok(home)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn archives_dir(&self) -> PathBuf {
        self.dir.join("archives")
    }

    pub fn keys_path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    fn root_key_path(&self) -> PathBuf {
        self.dir.join("root.key")
    }

    /// Blocks until this process holds the home's exclusive lock.
    pub fn lock(&self) -> Result<HomeLock, HomeError> {
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        self.remove_stale_temporaries();
        Ok(HomeLock { _file: file })
    }

    /// Removes `.tmp-*` files left in the home and its archive store by a killed writer.
    ///
    /// A temporary is removed only when the process named in it (`.tmp-<pid>-…`) no longer
    /// exists: staged BMC pulls write their temporary *without* the lock and take it only
    /// to commit, so "I hold the lock" alone does not prove a temporary is abandoned.
    /// Best effort: readers ignore temporaries anyway, this only reclaims space.
    fn remove_stale_temporaries(&self) {
        for dir in [self.dir.clone(), self.archives_dir()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let is_stale_temp = entry.file_name().to_str().is_some_and(|n| {
                    n.starts_with(fsutil::TEMP_PREFIX) && !fsutil::temp_owner_alive(n)
                });
                if is_stale_temp && entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    fn create_root_key_if_missing(&self) -> Result<(), HomeError> {
        let path = self.root_key_path();
        if path.exists() {
            return Ok(());
        }
        let key = Key32::random();
        let mut bytes = zeroize::Zeroizing::new(ROOT_MAGIC.to_vec());
        bytes.extend_from_slice(key.expose());
        let mut f = fsutil::AtomicFile::create(&path, 0o600).map_err(io_err(&path))?;
        std::io::Write::write_all(&mut f, &bytes).map_err(io_err(&path))?;
        f.commit_new().map_err(io_err(&path))
    }

    /// The root key that wraps every backup key at rest (created by `open`).
    pub fn root_key(&self) -> Result<Key32, HomeError> {
        let path = self.root_key_path();
        let mut f = fsutil::open_secret_file(&path).map_err(io_err(&path))?;
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(41));
        (&mut f)
            .take(41)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        if bytes.len() != 40 || &bytes[..8] != ROOT_MAGIC {
            return Err(HomeError::BadRootKey { path });
        }
        Ok(Key32::from_slice(&bytes[8..]).expect("32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_home_and_stable_root_key() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("h");
        let home = Home::open(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let k1 = home.root_key().unwrap();
        let k2 = Home::open(&dir).unwrap().root_key().unwrap();
        assert!(k1.ct_eq(&k2));
        let m = std::fs::metadata(dir.join("root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
    }

    #[test]
    fn world_readable_root_key_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path()).unwrap();
        home.root_key().unwrap();
        let p = t.path().join("root.key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = home.root_key().err().unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn stale_temporaries_are_removed_under_the_lock() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path()).unwrap();
        let stale = [
            t.path().join(".tmp-keys"),
            home.archives_dir().join(".tmp-seal"),
        ];
        for p in &stale {
            std::fs::write(p, b"partial").unwrap();
        }
        let keep = home.archives_dir().join("other.vault");
        std::fs::write(&keep, b"x").unwrap();
        // A temporary of a live process (this one) may be a staged pull: it must stay.
        let live = home
            .archives_dir()
            .join(format!(".tmp-{}-staged", std::process::id()));
        std::fs::write(&live, b"in progress").unwrap();
        drop(home.lock().unwrap());
        assert!(stale.iter().all(|p| !p.exists()));
        assert!(keep.exists());
        assert!(live.exists(), "a live writer's temporary was removed");
    }

    #[test]
    fn damaged_root_key_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path()).unwrap();
        home.root_key().unwrap();
        let p = t.path().join("root.key");
        std::fs::write(&p, b"short").unwrap();
        assert!(matches!(home.root_key(), Err(HomeError::BadRootKey { .. })));
    }
}

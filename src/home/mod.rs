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
use std::sync::Mutex;

use uuid::Uuid;

pub mod root;
pub mod token;

use self::root::{NoSecrets, RootError, RootFile, RootInfo, Target, Unlocked, Unlocker};
use crate::errors::{Classify, Kind};
use crate::fsutil;
use crate::secret::Key32;

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot use vault home {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("vault home {path} already has a root key")]
    AlreadyInitialised { path: PathBuf },
    #[error(
        "the key store of {path} is wrapped under root key {want}, but {found} holds root key {have}; restore root.key from the backup of this vault home made with keys.json"
    )]
    RootMismatch {
        path: PathBuf,
        want: Uuid,
        found: PathBuf,
        have: String,
    },
}

impl Classify for HomeError {
    fn kind(&self) -> Kind {
        match self {
            HomeError::Io { source, .. } => Classify::kind(source),
            HomeError::Root(e) => e.kind(),
            HomeError::AlreadyInitialised { .. } => Kind::Refused,
            HomeError::RootMismatch { .. } => Kind::Integrity,
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
    unlocker: Box<dyn Unlocker + Send + Sync>,
    /// The root key once unlocked (a passphrase or a PIN is asked for at most once per
    /// command), with the token session or passphrase-derived key that protects it.
    unlocked: Mutex<Option<Unlocked>>,
}

/// Proof that this process holds the home's exclusive lock; released on drop.
pub struct HomeLock {
    _file: File,
}

/// Which of the two root key files.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RootSlot {
    Current,
    Next,
}

/// Removes the home at `dir` when it holds only what opening it made (the root key, the
/// lock, the audit log and an empty `archives/`), so that a command that failed on a home
/// that did not exist before it ran leaves no home behind (issue 17). A home with a key
/// store, an archive or any other file is kept. Returns whether it was removed.
///
/// The check runs under the home's lock, so a concurrent command that has already written
/// something keeps its home.
pub fn discard_unused(dir: &Path) -> std::io::Result<bool> {
    const MADE_BY_OPEN: [&str; 4] = ["root.key", "lock", crate::audit::LOG_FILE_NAME, "archives"];
    let lock_path = dir.join("lock");
    let lock = match OpenOptions::new().write(true).open(&lock_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    lock.lock()?;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if !MADE_BY_OPEN.iter().any(|m| name == *m) {
            return Ok(false);
        }
    }
    let archives = dir.join("archives");
    if archives.exists() && std::fs::read_dir(&archives)?.next().is_some() {
        return Ok(false);
    }
    std::fs::remove_dir_all(dir)?;
    drop(lock);
    Ok(true)
}

impl Home {
    /// Opens (creating on first use, with a root key in mode `file`) the home at `dir`.
    pub fn open(dir: &Path) -> Result<Home, HomeError> {
        let home = Home::open_existing(dir)?;
        // Created here, before any caller can hold the lock: `root_key` itself never locks,
        // so it is safe to call while holding a `HomeLock`.
        if !home.root_key_path().exists() {
            let _lock = home.lock()?;
            if !home.root_key_path().exists() && !home.keys_path().exists() {
                home.write_new_root(Target::File)?;
            }
        }
        Ok(home)
    }

    fn open_existing(dir: &Path) -> Result<Home, HomeError> {
        fsutil::ensure_private_dir(dir).map_err(io_err(dir))?;
        let home = Home {
            dir: dir.to_path_buf(),
            unlocker: Box::new(NoSecrets),
            unlocked: Mutex::new(None),
        };
        fsutil::ensure_private_dir(&home.archives_dir()).map_err(io_err(dir))?;
        Ok(home)
    }

    /// Creates a home whose root key is protected as `target` (`vault home init`).
    /// Refused when the directory already holds a root key or a key store.
    pub fn init(dir: &Path, target: Target<'_>) -> Result<Home, HomeError> {
        let home = Home::open_existing(dir)?;
        let _lock = home.lock()?;
        if home.root_key_path().exists() || home.keys_path().exists() {
            return Err(HomeError::AlreadyInitialised {
                path: dir.to_path_buf(),
            });
        }
        home.write_new_root(target)?;
        drop(_lock);
        Ok(home)
    }

    fn write_new_root(&self, target: Target<'_>) -> Result<(), HomeError> {
        let path = self.root_key_path();
        let (unlocked, bytes) = root::create(target, None)?;
        let mut f = fsutil::AtomicFile::create(&path, 0o600).map_err(io_err(&path))?;
        std::io::Write::write_all(&mut f, &bytes).map_err(io_err(&path))?;
        f.commit_new().map_err(io_err(&path))?;
        *self.cache() = Some(unlocked);
        Ok(())
    }

    /// Sets where passphrases and PINs come from (the CLI: a file, the environment or a
    /// TTY). Without one, only a home in mode `file` can be unlocked.
    pub fn with_unlocker(mut self, unlocker: Box<dyn Unlocker + Send + Sync>) -> Home {
        self.unlocker = unlocker;
        self
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

    fn next_root_path(&self) -> PathBuf {
        self.dir.join("root.key.next")
    }

    fn root_path(&self, slot: RootSlot) -> PathBuf {
        match slot {
            RootSlot::Current => self.root_key_path(),
            RootSlot::Next => self.next_root_path(),
        }
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
        let lock = HomeLock { _file: file };
        self.finish_interrupted_root_change(&lock)?;
        Ok(lock)
    }

    /// Completes or undoes a root change that a killed process left half done (see
    /// `root.rs`): `root.key.next` is renamed over `root.key` when the key store already
    /// names its id (the store was committed), and removed otherwise. Needs no secret.
    fn finish_interrupted_root_change(&self, _lock: &HomeLock) -> Result<(), HomeError> {
        let next = self.next_root_path();
        let Some(file) = self.read_root(RootSlot::Next)? else {
            return Ok(());
        };
        if file.info.root_id.is_some() && self.store_root_id()? == file.info.root_id {
            self.commit_next_root()
        } else {
            std::fs::remove_file(&next).map_err(io_err(&next))?;
            fsutil::sync_dir(&self.dir).map_err(io_err(&self.dir))
        }
    }

    /// The root id the key store names (`None`: no store yet, or one from before root ids).
    pub(crate) fn store_root_id(&self) -> Result<Option<Uuid>, HomeError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RootRef {
            #[serde(default)]
            root_id: Option<Uuid>,
        }
        let path = self.keys_path();
        let bytes = match fsutil::open_secret_file(&path).and_then(|mut f| {
            let mut b = Vec::new();
            f.read_to_end(&mut b).map(|_| b)
        }) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        // A damaged store is reported by the key store itself, with its own message.
        Ok(serde_json::from_slice::<RootRef>(&bytes)
            .ok()
            .and_then(|r| r.root_id))
    }

    /// Reads and parses a root key file (no secret needed); `None` if it does not exist.
    pub(crate) fn read_root(&self, slot: RootSlot) -> Result<Option<RootFile>, HomeError> {
        let path = self.root_path(slot);
        let mut f = match fsutil::open_secret_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        (&mut f)
            .take(root::MAX_ROOT_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        if bytes.len() as u64 > root::MAX_ROOT_FILE {
            return Err(RootError::Damaged {
                path,
                what: "larger than any root key file".into(),
            }
            .into());
        }
        Ok(Some(root::parse(&path, &bytes)?))
    }

    /// How the root key is protected (`vault home show`); needs no secret.
    pub fn root_info(&self) -> Result<RootInfo, HomeError> {
        match self.read_root(RootSlot::Current)? {
            Some(f) => Ok(f.info),
            None => Err(io_err(&self.root_key_path())(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            ))),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Unlocked>> {
        self.unlocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the unlocked root key whose id is `want` (the one the key store
    /// names; `None` accepts whatever `root.key` holds), unlocking it on first use.
    pub(crate) fn with_root<R>(
        &self,
        want: Option<Uuid>,
        f: impl FnOnce(&Unlocked) -> R,
    ) -> Result<R, HomeError> {
        let mut cache = self.cache();
        let hit = cache
            .as_ref()
            .is_some_and(|u| want.is_none() || u.info.root_id == want);
        if !hit {
            let mut chosen = None;
            for slot in [RootSlot::Current, RootSlot::Next] {
                if let Some(file) = self.read_root(slot)?
                    && (want.is_none() || file.info.root_id == want)
                {
                    chosen = Some((slot, file));
                    break;
                }
            }
            let Some((slot, file)) = chosen else {
                let path = self.root_key_path();
                let Some(want) = want else {
                    return Err(io_err(&path)(std::io::Error::from(
                        std::io::ErrorKind::NotFound,
                    )));
                };
                let have = self
                    .read_root(RootSlot::Current)?
                    .map(|f| {
                        f.info
                            .root_id
                            .map_or("without an id (written by an older vault)".into(), |i| {
                                i.to_string()
                            })
                    })
                    .unwrap_or_else(|| "nothing (root.key is missing)".into());
                return Err(HomeError::RootMismatch {
                    path: self.dir.clone(),
                    want,
                    found: path,
                    have,
                });
            };
            let path = self.root_path(slot);
            *cache = Some(file.unlock(&path, self.unlocker.as_ref())?);
        }
        Ok(f(cache.as_ref().expect("just unlocked")))
    }

    /// The root key that wraps every backup key at rest (created by `open`).
    pub fn root_key(&self) -> Result<Key32, HomeError> {
        let want = self.store_root_id()?;
        self.with_root(want, |u| u.key.duplicate())
    }

    /// Writes a new root key file to `root.key.next` (step 1 of a root change).
    pub(crate) fn write_next_root(&self, _lock: &HomeLock, bytes: &[u8]) -> Result<(), HomeError> {
        let path = self.next_root_path();
        fsutil::write_atomic(&path, bytes, 0o600).map_err(io_err(&path))
    }

    /// Renames `root.key.next` over `root.key` (step 3, after the store is committed).
    pub(crate) fn commit_next_root(&self) -> Result<(), HomeError> {
        let next = self.next_root_path();
        std::fs::rename(&next, self.root_key_path()).map_err(io_err(&next))?;
        fsutil::sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// Removes `root.key.next` after a root change failed before its commit point.
    pub(crate) fn discard_next_root(&self) {
        let _ = std::fs::remove_file(self.next_root_path());
    }

    /// Takes the unlocked root out of the cache (to derive the next one from it).
    pub(crate) fn take_unlocked(&self) -> Option<Unlocked> {
        self.cache().take()
    }

    /// Puts an unlocked root into the cache.
    pub(crate) fn set_unlocked(&self, u: Unlocked) {
        *self.cache() = Some(u);
    }

    /// Where passphrases and PINs come from.
    pub fn unlocker(&self) -> &dyn Unlocker {
        self.unlocker.as_ref()
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
        assert_eq!(home.root_info().unwrap().mode, root::Mode::File);
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
        // A fresh `Home` (the unlocked key is cached per instance, per command).
        let err = Home::open(t.path()).unwrap().root_key().err().unwrap();
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
        let home = Home::open(t.path()).unwrap();
        assert!(matches!(
            home.root_key(),
            Err(HomeError::Root(RootError::Damaged { .. }))
        ));
    }
}

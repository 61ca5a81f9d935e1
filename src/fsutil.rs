//! File-system primitives shared by every module that writes state.
//!
//! Invariant: nothing is ever written in place under its final name. Writers go to a
//! temporary file in the destination directory (same file system, so `rename` is atomic),
//! which is fsynced, renamed over the final name, and the directory fsynced. A crash or
//! error at any instant leaves either the old file or the new one, never a torn one.
//!
//! The lifecycle of temporaries belongs to [`AtomicFile`]:
//! - [`AtomicFile::create_unnamed`] (for plaintext: `backup extract`) opens the file with
//!   `O_TMPFILE` where the file system allows it: it has no name until the commit links
//!   it in (`linkat`), so no kill, not even SIGKILL, can leave it behind.
//! - Otherwise the temporary is named `.tmp-<pid>-*` and is entered in one process-wide
//!   registry until it is committed or dropped. The process's one handler for SIGINT,
//!   SIGTERM and SIGHUP (installed at start-up by the CLI) calls
//!   [`remove_live_temps`] before exiting, since `exit` skips destructors.
//! - What a SIGKILL leaves is removed by the next writer in that directory
//!   ([`remove_stale_temps`], run by `create_unnamed` and by the holder of the home lock),
//!   but only once the process named in it is gone: other writers (parallel BMC pulls)
//!   stage archives without holding the lock. Readers skip `.tmp-*` names.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Mutex, PoisonError};
use std::thread::{self, JoinHandle};

/// Prefix of every temporary file; readers skip names that start with it.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Whether the temporary file `name` (`.tmp-<pid>-…`) may still belong to a live
/// process. Names without a pid are treated as stale. A reused pid only keeps a stale
/// file around longer; it never lets a live writer's file be removed.
pub fn temp_owner_alive(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
        return false;
    };
    match rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => Path::new("/proc").join(pid.to_string()).exists(),
        None => false,
    }
}

/// Named temporaries of this process that are not committed or dropped yet.
static LIVE_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live_temps() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE_TEMPS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register(p: &Path) {
    live_temps().push(p.to_path_buf());
}

fn unregister(p: &Path) {
    live_temps().retain(|x| x != p);
}

/// Removes every named temporary this process is still writing; returns how many. For
/// the signal handler, which exits without running destructors. Writers whose file is
/// removed under them fail at their commit, which is the point: nothing partial stays.
pub fn remove_live_temps() -> usize {
    let paths = std::mem::take(&mut *live_temps());
    paths
        .iter()
        .filter(|p| fs::remove_file(p).is_ok() || fs::remove_dir_all(p).is_ok())
        .count()
}

/// Registers a temporary file or directory that is not an [`AtomicFile`] (e.g. the BMC
/// simulator's certificate directory) for removal by the signal handler.
pub fn register_live_temp(p: &Path) {
    register(p);
}

/// Undoes [`register_live_temp`] once the owner removed the path itself.
pub fn unregister_live_temp(p: &Path) {
    unregister(p);
}

/// Removes the `.tmp-<pid>-*` files of `dir` whose writer is gone (left by a killed
/// process); returns how many. Never touches a live process's temporaries.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(TEMP_PREFIX)
                && !temp_owner_alive(&name)
                && e.file_type().is_ok_and(|t| t.is_file())
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// The temporary behind an [`AtomicFile`].
enum Temp {
    /// A `.tmp-<pid>-*` file, registered in [`LIVE_TEMPS`] while it exists.
    Named(tempfile::NamedTempFile),
    /// An `O_TMPFILE` file: no directory entry until the commit links it.
    Unnamed { file: File, proc_path: PathBuf },
}

impl Temp {
    fn file(&self) -> &File {
        match self {
            Temp::Named(t) => t.as_file(),
            Temp::Unnamed { file, .. } => file,
        }
    }

    fn file_mut(&mut self) -> &mut File {
        match self {
            Temp::Named(t) => t.as_file_mut(),
            Temp::Unnamed { file, .. } => file,
        }
    }
}

/// A file being written that appears under `dest` only when `commit` succeeds.
///
/// Large files are flushed as they are written: at [`FIRST_FLUSH`] bytes, then at gaps
/// that double up to [`FLUSH_EVERY`], a background thread `fdatasync`s what has been
/// written so far, so that the disk works while the caller computes and the final fsync
/// in `commit` has only the tail left to wait for.
pub struct AtomicFile {
    tmp: Option<Temp>,
    dest: PathBuf,
    written: u64,
    next_flush: u64,
    flusher: Option<Flusher>,
    /// Synced by [`AtomicFile::sync`] and not written since: the commit has only its
    /// rename left (one fsync per file, not two).
    synced: bool,
}

/// The largest gap between two background flushes.
pub const FLUSH_EVERY: u64 = 16 << 20;
/// Bytes written before the first background flush (smaller files never start the
/// flusher thread); the gaps then double up to `FLUSH_EVERY`, so that a file of a few
/// MiB is on its way to the disk early too.
pub const FIRST_FLUSH: u64 = 2 << 20;

/// The background `fdatasync` thread of a large `AtomicFile`. A request is a unit: the
/// thread flushes whatever has been written when it gets to it, so requests that arrive
/// while one is in progress collapse into the next (the channel holds one).
struct Flusher {
    wake: SyncSender<()>,
    /// Returns the first flush error: an error reported to this thread's fsync is not
    /// reported again to the final one (Linux reports write-back errors once per open
    /// file), so `commit` must see it here.
    handle: JoinHandle<io::Result<()>>,
}

impl Flusher {
    fn start(file: File) -> io::Result<Self> {
        let (wake, requests) = mpsc::sync_channel::<()>(1);
        let handle = thread::Builder::new()
            .name("vault-flush".into())
            .spawn(move || {
                for () in requests {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Flusher { wake, handle })
    }

    /// Waits for the flush in progress (if any) and returns the first error.
    fn stop(self) -> io::Result<()> {
        drop(self.wake);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the flush thread panicked")))
    }
}

impl AtomicFile {
    /// Starts writing `dest` with permissions `mode` (e.g. 0o600 for secrets), in a named
    /// temporary `.tmp-<pid>-*` of the same directory.
    pub fn create(dest: &Path, mode: u32) -> io::Result<Self> {
        let dir = parent_dir(dest);
        let prefix = format!("{TEMP_PREFIX}{}-", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(fs::Permissions::from_mode(mode))
            .tempfile_in(dir)?;
        register(tmp.path());
        Ok(Self::with(Temp::Named(tmp), dest))
    }

    /// Like [`create`](Self::create), but where the file system allows it the temporary
    /// has no name at all until the commit (`O_TMPFILE`), so nothing can be left behind.
    /// For files whose content must never linger (decrypted plaintext). Also removes the
    /// temporaries that killed writers left in that directory.
    pub fn create_unnamed(dest: &Path, mode: u32) -> io::Result<Self> {
        let dir = parent_dir(dest);
        remove_stale_temps(dir);
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(mode)
            .custom_flags(nix::libc::O_TMPFILE | nix::libc::O_CLOEXEC)
            .open(dir);
        match opened {
            Ok(file) => {
                // The umask applies to O_TMPFILE too; the mode asked for must hold.
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                let proc_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
                Ok(Self::with(Temp::Unnamed { file, proc_path }, dest))
            }
            // No O_TMPFILE on this file system (or kernel): a named, registered temporary.
            Err(e) if is_no_tmpfile(&e) => Self::create(dest, mode),
            Err(e) => Err(e),
        }
    }

    fn with(tmp: Temp, dest: &Path) -> Self {
        AtomicFile {
            tmp: Some(tmp),
            dest: dest.to_path_buf(),
            written: 0,
            next_flush: FIRST_FLUSH,
            flusher: None,
            synced: false,
        }
    }

    /// A path that names the bytes being written until `commit`: the `.tmp-*` file next
    /// to `dest`, or for an unnamed temporary its `/proc/self/fd` link.
    pub fn temp_path(&self) -> &Path {
        match self.tmp.as_ref().expect("not committed") {
            Temp::Named(t) => t.path(),
            Temp::Unnamed { proc_path, .. } => proc_path,
        }
    }

    /// Whether the temporary has no directory entry (see [`create_unnamed`](Self::create_unnamed)).
    #[cfg(test)]
    pub fn is_unnamed(&self) -> bool {
        matches!(self.tmp, Some(Temp::Unnamed { .. }))
    }

    pub fn file(&mut self) -> &mut File {
        // The caller may write through it.
        self.synced = false;
        self.tmp.as_mut().expect("not committed").file_mut()
    }

    /// Flushes, fsyncs, renames over the destination and fsyncs the directory.
    pub fn commit(self) -> io::Result<()> {
        self.persist(true)
    }

    /// Like `commit`, but fails if `dest` already exists (no overwrite).
    pub fn commit_new(self) -> io::Result<()> {
        self.persist(false)
    }

    /// Flushes the data to disk now (fsync), so that a commit made later under a lock has
    /// only the rename left (the group commit of archives in the store).
    pub fn sync(&mut self) -> io::Result<()> {
        self.stop_flusher()?;
        self.file().sync_all()?;
        self.synced = true;
        Ok(())
    }

    /// [`Self::commit_new`] without the final sync of the directory, for a batch of
    /// commits into one directory that the caller then syncs once ([`sync_dir`]) before
    /// it reports any of them done. A crash before that sync may lose the new name, never
    /// leave a partial file under it.
    pub fn commit_new_unsynced(self) -> io::Result<()> {
        self.persist_inner(false).map(drop)
    }

    fn persist(self, overwrite: bool) -> io::Result<()> {
        let dir = self.persist_inner(overwrite)?;
        sync_dir(&dir)
    }

    /// Syncs the data and renames; returns the directory to sync.
    fn persist_inner(mut self, overwrite: bool) -> io::Result<PathBuf> {
        self.stop_flusher()?;
        let tmp = self.tmp.take().expect("commit once");
        if !self.synced {
            tmp.file().sync_all()?;
        }
        let dir = parent_dir(&self.dest);
        match tmp {
            Temp::Named(t) => {
                let path = t.path().to_path_buf();
                let r = if overwrite {
                    t.persist(&self.dest)
                } else {
                    t.persist_noclobber(&self.dest)
                };
                unregister(&path);
                r.map_err(|e| e.error)?;
            }
            Temp::Unnamed { file, proc_path } if !overwrite => {
                // linkat refuses an existing name: a no-clobber commit in one step.
                link(&proc_path, &self.dest)?;
                drop(file);
            }
            Temp::Unnamed { file, proc_path } => {
                // linkat cannot replace a name, so link under a temporary name (registered
                // like any other) and rename that over the destination.
                let name = dir.join(format!(
                    "{TEMP_PREFIX}{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                ));
                link(&proc_path, &name)?;
                register(&name);
                drop(file);
                let r = fs::rename(&name, &self.dest);
                if r.is_err() {
                    let _ = fs::remove_file(&name);
                }
                unregister(&name);
                r?;
            }
        }
        Ok(dir.to_path_buf())
    }

    fn stop_flusher(&mut self) -> io::Result<()> {
        self.flusher.take().map_or(Ok(()), Flusher::stop)
    }

    /// Counts `n` more bytes written and asks for a background flush when the next
    /// flush point is passed.
    fn wrote(&mut self, n: usize) -> io::Result<()> {
        self.written += n as u64;
        if self.written < self.next_flush {
            return Ok(());
        }
        self.next_flush = self.written + self.written.clamp(FIRST_FLUSH, FLUSH_EVERY);
        if self.flusher.is_none() {
            let clone = self.file().try_clone()?;
            self.flusher = Some(Flusher::start(clone)?);
        }
        let Some(f) = &self.flusher else {
            return Ok(());
        };
        match f.wake.try_send(()) {
            // Full: a flush is pending and will include these bytes.
            Ok(()) | Err(TrySendError::Full(())) => Ok(()),
            // The thread stopped on an error: report it now rather than at `commit`.
            Err(TrySendError::Disconnected(())) => self.stop_flusher(),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed (an error, or a panic): the flush result no longer matters, but
        // the thread must not outlive the file. A named temporary is removed by its own
        // drop (and leaves the registry); an unnamed one vanishes with its descriptor.
        let _ = self.stop_flusher();
        if let Some(Temp::Named(t)) = &self.tmp {
            unregister(t.path());
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file().write(buf)?;
        self.wrote(n)?;
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.file().write_vectored(bufs)?;
        self.wrote(n)?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

/// Whether opening with `O_TMPFILE` failed because the file system or kernel lacks it.
fn is_no_tmpfile(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR | nix::libc::EINVAL | nix::libc::ENOENT)
    )
}

/// Gives the unnamed file open at `proc_path` (`/proc/self/fd/N`) the name `dest`.
fn link(proc_path: &Path, dest: &Path) -> io::Result<()> {
    nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        proc_path,
        nix::fcntl::AT_FDCWD,
        dest,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

/// Writes `bytes` to `dest` atomically with permissions `mode`.
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = AtomicFile::create(dest, mode)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Fsyncs a directory so that a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing; tightens an existing one we own.
/// The directory must be owned by the effective user and every directory above it must
/// pass [`check_path_not_writable_by_others`] (StrictModes).
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        // A symlinked home is followed, but what it points to is what gets checked.
        return ensure_private_dir(&fs::canonicalize(dir)?);
    }
    check_owner(dir, &meta)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    check_path_not_writable_by_others(dir)
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Refuses `path` unless it is owned by the effective user.
fn check_owner(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = effective_uid();
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by the user running vault (uid {me}); another user \
                 could have planted or replaced it: check it, then 'chown {me} {}'",
                path.display(),
                meta.uid(),
                path.display()
            ),
        ));
    }
    Ok(())
}

/// StrictModes along a path (OpenSSH's rule): every existing directory from the root down
/// to `path` (inclusive) must be owned by the effective user or by root, and not writable
/// by group or others, unless it is sticky (like /tmp, where others cannot rename or
/// delete what is ours). Otherwise another user could swap a directory in the path and
/// plant a home, a root key or a password file of their own.
pub fn check_path_not_writable_by_others(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let abs = fs::canonicalize(path)?;
    let me = effective_uid();
    for dir in abs.ancestors() {
        let meta = fs::metadata(dir)?;
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0;
        if meta.uid() != me && meta.uid() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "directory {} on the path to {} is owned by uid {}, neither you (uid {me}) nor root; \
                     move the vault home (or the file) somewhere only you control",
                    dir.display(),
                    path.display(),
                    meta.uid()
                ),
            ));
        }
        if mode & 0o022 != 0 && !sticky {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "directory {} on the path to {} is writable by group or others (mode {:o}); \
                     run 'chmod go-w {}'",
                    dir.display(),
                    path.display(),
                    mode & 0o7777,
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Opens a file that holds a secret (root key, key store, password or PIN file).
///
/// Refused when it is a symbolic link (opened with `O_NOFOLLOW`, so the check and the
/// open are one step), not a regular file, not owned by the effective user, readable or
/// writable by group or others, or when a directory above it is writable by others.
pub fn open_secret_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NOCTTY).bits())
        .open(path)
        .map_err(|e| {
            // ELOOP is what O_NOFOLLOW answers for a symbolic link.
            if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is a symbolic link; secret files are never read through one: \
                         replace it with the file itself",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    check_owner(path, &meta)?;
    let mode = meta.mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable or writable by group or others (mode {:o}); run 'chmod 600 {}'",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        ));
    }
    let parent = parent_dir(path);
    check_path_not_writable_by_others(parent)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_atomic_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        {
            let mut f = AtomicFile::create(&dest, 0o600).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn large_file_is_flushed_in_the_background_and_commits_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("big");
        let piece: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let total = 2 * FLUSH_EVERY as usize + 12_345;
        let mut f = AtomicFile::create(&dest, 0o600).unwrap();
        let mut left = total;
        while left > 0 {
            let n = left.min(piece.len());
            if left.is_multiple_of(3) {
                f.write_all(&piece[..n]).unwrap();
            } else {
                let (a, b) = piece[..n].split_at(n / 2);
                let bufs = [io::IoSlice::new(a), io::IoSlice::new(b)];
                // Both slices in one system call (not just the first, as `Write`'s
                // default `write_vectored` would).
                assert_eq!(f.write_vectored(&bufs).unwrap(), n);
            }
            left -= n;
        }
        assert!(
            f.flusher.is_some(),
            "a file past FLUSH_EVERY starts the flusher"
        );
        assert_eq!(f.written, total as u64);
        f.commit().unwrap();
        let got = fs::read(&dest).unwrap();
        assert_eq!(got.len(), total);
        assert!(got.chunks(piece.len()).all(|c| c == &piece[..c.len()]));
    }

    #[test]
    fn small_file_starts_no_flusher_and_dropping_a_flushing_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(&dir.path().join("f"), 0o600).unwrap();
        f.write_all(&vec![7; FIRST_FLUSH as usize - 1]).unwrap();
        assert!(f.flusher.is_none(), "below FIRST_FLUSH: no thread");
        f.write_all(&[7]).unwrap();
        assert!(f.flusher.is_some(), "at FIRST_FLUSH: flushing");
        assert_eq!(f.next_flush, 2 * FIRST_FLUSH);
        drop(f);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn committed_atomic_file_has_mode_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        write_atomic(&dest, b"hello", 0o600).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
        let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_atomic(&dest, b"again", 0o600).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"again");
    }

    #[test]
    fn commit_new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        write_atomic(&dest, b"first", 0o600).unwrap();
        let mut f = AtomicFile::create(&dest, 0o600).unwrap();
        f.write_all(b"second").unwrap();
        assert!(f.commit_new().is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"first");
    }

    #[test]
    fn temporaries_name_their_writer() {
        let dir = tempfile::tempdir().unwrap();
        let f = AtomicFile::create(&dir.path().join("x"), 0o600).unwrap();
        let name = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        let name = name.to_str().unwrap();
        assert!(
            name.starts_with(&format!(".tmp-{}-", std::process::id())),
            "{name}"
        );
        assert!(temp_owner_alive(name));
        drop(f);
        // pid_max on Linux is at most 2^22, so this pid cannot be alive.
        assert!(!temp_owner_alive(".tmp-4294967295-abc"));
        assert!(!temp_owner_alive(".tmp-abc"));
    }

    #[test]
    fn group_readable_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        fs::write(&p, "x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = open_secret_file(&p).unwrap_err();
        assert!(err.to_string().contains("chmod 600"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(open_secret_file(&p).is_ok());
    }

    /// Issue 13.7: files planted by another user, symlinks and writable parents.
    #[test]
    fn secret_files_are_checked_like_strict_modes() {
        use std::os::unix::fs::chown;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        fs::write(&p, "x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(open_secret_file(&p).is_ok());

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let err = open_secret_file(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        fs::set_permissions(&p, fs::Permissions::from_mode(0o602)).unwrap();
        assert!(
            open_secret_file(&p)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();

        let sub = dir.path().join("open");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o777)).unwrap();
        let q = sub.join("pw");
        fs::write(&q, "x").unwrap();
        fs::set_permissions(&q, fs::Permissions::from_mode(0o600)).unwrap();
        let err = open_secret_file(&q).unwrap_err();
        assert!(err.to_string().contains("chmod go-w"), "{err}");

        if effective_uid() == 0 {
            // Only root can give a file away; as root this is the attack of issue 13.7.
            chown(&p, Some(4242), None).unwrap();
            let err = open_secret_file(&p).unwrap_err();
            assert!(err.to_string().contains("owned by uid 4242"), "{err}");
            let home = dir.path().join("home");
            fs::create_dir(&home).unwrap();
            chown(&home, Some(4242), None).unwrap();
            let err = ensure_private_dir(&home).unwrap_err();
            assert!(err.to_string().contains("owned by uid 4242"), "{err}");
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn unnamed_temporary_has_no_name_until_commit_and_then_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("plain");
        let mut f = AtomicFile::create_unnamed(&dest, 0o600).unwrap();
        assert!(
            f.is_unnamed(),
            "the test directory's file system supports O_TMPFILE"
        );
        f.write_all(b"secret plaintext").unwrap();
        assert!(names(dir.path()).is_empty(), "a name exists before commit");
        f.commit().unwrap();
        assert_eq!(names(dir.path()), ["plain"]);
        assert_eq!(fs::read(&dest).unwrap(), b"secret plaintext");
        let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Replacing an existing file, and a no-clobber commit refusing one.
        let mut f = AtomicFile::create_unnamed(&dest, 0o600).unwrap();
        f.write_all(b"second").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"second");
        let mut f = AtomicFile::create_unnamed(&dest, 0o600).unwrap();
        f.write_all(b"third").unwrap();
        assert!(f.commit_new().is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["plain"], "nothing left by either");

        // Dropped uncommitted: nothing at all.
        let mut f = AtomicFile::create_unnamed(&dir.path().join("other"), 0o600).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(names(dir.path()), ["plain"]);
    }

    #[test]
    fn named_temporaries_are_registered_until_committed_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = AtomicFile::create(&dir.path().join("a"), 0o600).unwrap();
        let b = AtomicFile::create(&dir.path().join("b"), 0o600).unwrap();
        let (pa, pb) = (a.temp_path().to_path_buf(), b.temp_path().to_path_buf());
        assert!(live_temps().contains(&pa) && live_temps().contains(&pb));
        a.commit().unwrap();
        drop(b);
        assert!(!live_temps().contains(&pa) && !live_temps().contains(&pb));
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max on Linux is at most 2^22: this writer is gone.
        fs::write(dir.path().join(".tmp-4194305-abc"), b"left by a kill").unwrap();
        let live = AtomicFile::create(&dir.path().join("x"), 0o600).unwrap();
        fs::write(dir.path().join("keep"), b"not a temporary").unwrap();
        assert_eq!(remove_stale_temps(dir.path()), 1);
        let mut left = names(dir.path());
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&"keep".to_string()));
        assert!(
            live.temp_path().exists(),
            "a live writer's temporary is kept"
        );
    }
}

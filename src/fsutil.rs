//! File-system primitives shared by every module that writes state.
//!
//! Invariant: nothing is ever written in place under its final name. Writers go to a
//! temporary file in the destination directory (same file system, so `rename` is atomic),
//! which is fsynced, renamed over the final name, and the directory fsynced. A crash or
//! error at any instant leaves either the old file or the new one, never a torn one; the
//! temporary (named `.tmp-<pid>-*`) is removed on drop; stale ones left by a killed
//! process are ignored by readers and, in the vault home, removed by the next holder of
//! the home lock — but only once the process named in them is gone, because some writers
//! (parallel BMC pulls) stage archives without holding the lock.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// A file being written that appears under `dest` only when `commit` succeeds.
pub struct AtomicFile {
    tmp: Option<tempfile::NamedTempFile>,
    dest: PathBuf,
}

impl AtomicFile {
    /// Starts writing `dest` with permissions `mode` (e.g. 0o600 for secrets).
    pub fn create(dest: &Path, mode: u32) -> io::Result<Self> {
        let dir = parent_dir(dest);
        let prefix = format!("{TEMP_PREFIX}{}-", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(fs::Permissions::from_mode(mode))
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            tmp: Some(tmp),
            dest: dest.to_path_buf(),
        })
    }

    /// Where the bytes are being written until `commit` (a `.tmp-*` name next to `dest`).
    pub fn temp_path(&self) -> &Path {
        self.tmp.as_ref().expect("not committed").path()
    }

    pub fn file(&mut self) -> &mut File {
        self.tmp.as_mut().expect("not committed").as_file_mut()
    }

    /// Flushes, fsyncs, renames over the destination and fsyncs the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let tmp = self.tmp.take().expect("commit once");
        tmp.as_file().sync_all()?;
        tmp.persist(&self.dest).map_err(|e| e.error)?;
        sync_dir(parent_dir(&self.dest))
    }

    /// Like `commit`, but fails if `dest` already exists (no overwrite).
    pub fn commit_new(mut self) -> io::Result<()> {
        let tmp = self.tmp.take().expect("commit once");
        tmp.as_file().sync_all()?;
        tmp.persist_noclobber(&self.dest).map_err(|e| e.error)?;
        sync_dir(parent_dir(&self.dest))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file().write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
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
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens a file that holds a secret, refusing it if group or others may read it.
pub fn open_secret_file(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().read(true).open(path)?;
    let mode = f.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable by group or others (mode {:o}); run 'chmod 600 {}'",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        ));
    }
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
}

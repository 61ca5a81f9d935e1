//! The archive store of a vault home: `archives/<id>.vault`, one sealed archive per file.
//!
//! Invariants:
//! - An archive appears under its final name only complete: new archives are sealed into
//!   a temporary file in the same directory and renamed with no-clobber, so a failed or
//!   killed seal or upload leaves nothing (stray `.tmp-*` files are ignored by `list`).
//! - The file name is the archive id from the authenticated header; an uploaded file
//!   whose id already exists with different bytes is refused rather than overwritten.
//! - Listing and reference checks read only headers and trailers (`envelope::inspect`),
//!   so they cost the same for a 1 KiB and a 10 GiB archive.
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::envelope::{
    self, ArchiveHeader, EnvelopeError, Inspection, SealOptions, SealSummary, Sealer,
};
use crate::errors::{Classify, Kind};
use crate::fsutil::{self, AtomicFile};
use crate::home::{Home, HomeLock};

const EXT: &str = "vault";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no archive with id {0} in this home")]
    NotFound(String),
    #[error(
        "{offered} claims archive id {id}, but {existing} already holds that id with different content; refusing to overwrite it (compare the two files; only one can be genuine)"
    )]
    Clash {
        id: Uuid,
        existing: String,
        offered: String,
    },
    #[error(
        "{path} should hold archive {asked} but its header says {found}: the file was replaced by another archive; nothing was used. Put the right file back, or use the file by name"
    )]
    IdMismatch {
        path: String,
        asked: Uuid,
        found: Uuid,
    },
    #[error("{path}: {source}")]
    Archive { path: String, source: EnvelopeError },
    #[error("cannot access {path}: {source}")]
    Io { path: String, source: io::Error },
}

impl Classify for StoreError {
    fn kind(&self) -> Kind {
        match self {
            StoreError::NotFound(_) => Kind::NotFound,
            StoreError::Clash { .. } => Kind::Refused,
            StoreError::IdMismatch { .. } => Kind::Integrity,
            StoreError::Archive { source, .. } => source.kind(),
            StoreError::Io { source, .. } => Classify::kind(source),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Attaches the file name to an archive-layer error.
pub fn archive_err(path: &Path) -> impl FnOnce(EnvelopeError) -> StoreError + '_ {
    move |source| StoreError::Archive {
        path: path.display().to_string(),
        source,
    }
}

/// One entry of the store: its path and what its header says (or why it cannot be read).
pub struct StoredArchive {
    pub path: PathBuf,
    pub inspection: Result<Inspection, EnvelopeError>,
}

/// Opens an archive for reading under a shared lock on the file, held until the `File`
/// is dropped: `rewrap` rewrites key slots in place under an exclusive lock, so a reader
/// never sees a half-written slot (which would look like tampering).
pub fn open_archive(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    f.lock_shared()?;
    Ok(f)
}

/// Inspects an archive file: reads only its header and trailer.
pub fn inspect_file(path: &Path) -> Result<Inspection, StoreError> {
    let f = open_archive(path).map_err(io_err(path))?;
    envelope::inspect(BufReader::with_capacity(8192, f)).map_err(archive_err(path))
}

pub struct ArchiveStore<'h> {
    home: &'h Home,
}

impl<'h> ArchiveStore<'h> {
    pub fn new(home: &'h Home) -> Self {
        ArchiveStore { home }
    }

    pub fn path_of(&self, id: &Uuid) -> PathBuf {
        self.home.archives_dir().join(format!("{id}.{EXT}"))
    }

    /// Every archive in the store, oldest first (by `createdAt`, then id).
    pub fn list(&self) -> Result<Vec<StoredArchive>, StoreError> {
        let dir = self.home.archives_dir();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(fsutil::TEMP_PREFIX) || !name.ends_with(EXT) {
                continue;
            }
            let path = entry.path();
            let inspection = File::open(&path)
                .map_err(EnvelopeError::Io)
                .and_then(|f| envelope::inspect(BufReader::with_capacity(8192, f)));
            out.push(StoredArchive { path, inspection });
        }
        out.sort_by(|a, b| match (&a.inspection, &b.inspection) {
            (Ok(x), Ok(y)) => {
                (&x.header.created_at, x.header.id).cmp(&(&y.header.created_at, y.header.id))
            }
            _ => a.path.cmp(&b.path),
        });
        Ok(out)
    }

    /// Finds an archive by full id or unambiguous prefix.
    pub fn find(&self, id_or_prefix: &str) -> Result<(Uuid, PathBuf), StoreError> {
        if let Ok(id) = Uuid::parse_str(id_or_prefix) {
            let p = self.path_of(&id);
            return if p.exists() {
                self.check_identity(&id, p).map(|p| (id, p))
            } else {
                Err(StoreError::NotFound(id_or_prefix.to_string()))
            };
        }
        let needle = id_or_prefix.to_ascii_lowercase();
        let dir = self.home.archives_dir();
        let mut hits = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".vault")
                && stem.starts_with(&needle)
                && !needle.is_empty()
                && let Ok(id) = Uuid::parse_str(stem)
            {
                hits.push((id, entry.path()));
            }
        }
        if hits.len() == 1 {
            let (id, p) = hits.remove(0);
            self.check_identity(&id, p).map(|p| (id, p))
        } else {
            Err(StoreError::NotFound(id_or_prefix.to_string()))
        }
    }

    /// An archive's file name is its id: the header of `archives/<id>.vault` must say
    /// `id` (a copy of another archive put under that name would otherwise be restored
    /// in its place: a silent rollback). The header id is authenticated when the archive
    /// is opened, which binds the name to the content.
    fn check_identity(&self, id: &Uuid, path: PathBuf) -> Result<PathBuf, StoreError> {
        let found = inspect_file(&path)?.header.id;
        if found != *id {
            return Err(StoreError::IdMismatch {
                path: path.display().to_string(),
                asked: *id,
                found,
            });
        }
        Ok(path)
    }

    /// Ids of the archives whose key slots name `key_id`.
    pub fn referencing(&self, key_id: &Uuid) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|a| a.inspection.ok())
            .filter(|i| i.key_ids.iter().any(|(k, _)| k == key_id))
            .map(|i| i.header.id.to_string())
            .collect())
    }

    /// The archives whose key slots name `key_id`, split by what `key` (that key, as this
    /// home holds it) confirms: `confirmed` open with it ([`envelope::confirm_key`],
    /// O(header) each); `claimed_only` merely name it in a slot that does not open with it
    /// (a forged or edited slot: deleting the key loses nothing of those).
    pub fn referencing_confirmed(
        &self,
        key_id: &Uuid,
        key: &envelope::OpeningKey,
    ) -> Result<Referencing, StoreError> {
        let lookup = |id: &Uuid| {
            (id == key_id).then(|| {
                envelope::OpeningKey::new(
                    key.material.duplicate(),
                    key.scope,
                    key.domain_id.clone(),
                )
            })
        };
        let mut r = Referencing::default();
        for a in self.list()? {
            let Ok(i) = a.inspection else { continue };
            if !i.key_ids.iter().any(|(k, _)| k == key_id) {
                continue;
            }
            let confirmed = open_archive(&a.path)
                .map_err(EnvelopeError::Io)
                .and_then(|f| envelope::confirm_key(BufReader::with_capacity(8192, f), &lookup))
                .is_ok_and(|k| k == *key_id);
            let list = if confirmed {
                &mut r.confirmed
            } else {
                &mut r.claimed_only
            };
            list.push(i.header.id.to_string());
        }
        Ok(r)
    }

    /// Starts a new archive of the store: a [`Sealer`] writing into a temporary file of
    /// the archive directory. Write the plaintext into the returned [`ArchiveWriter`],
    /// call [`ArchiveWriter::finish`], then [`StagedArchive::commit`] under the home lock.
    /// Nothing appears under a final name before the commit; dropping the writer or the
    /// staged archive removes the temporary file. Needs no lock while streaming (a long
    /// BMC download must not hold up other operations or parallel pulls): the archive id
    /// is a fresh random UUID and the commit is a no-clobber rename.
    pub fn stage(
        &self,
        header: &ArchiveHeader,
        options: SealOptions<'_>,
    ) -> Result<ArchiveWriter, StoreError> {
        let path = self.path_of(&header.id);
        let out = AtomicFile::create(&path, 0o600).map_err(io_err(&path))?;
        let sealer = Sealer::new(header, options, out).map_err(archive_err(&path))?;
        Ok(ArchiveWriter { sealer, path })
    }

    /// Seals `input` as a new archive of the store ([`Self::stage`], read, commit). The
    /// operations stage and commit themselves (to audit between the two): unit tests only.
    #[cfg(test)]
    pub fn seal_new<R: Read>(
        &self,
        lock: &HomeLock,
        header: &ArchiveHeader,
        options: SealOptions<'_>,
        input: R,
    ) -> Result<(SealSummary, PathBuf), StoreError> {
        let mut writer = self.stage(header, options)?;
        writer.read_from(input)?;
        writer.finish()?.commit(lock)
    }

    /// Seals `input` into a temporary file of the store *without* the home lock
    /// ([`Self::stage`] and [`ArchiveWriter::finish`]). `on_temp` learns the temporary
    /// file's path before any payload byte is written (so a signal handler can remove it).
    /// Unit tests only.
    #[cfg(test)]
    pub fn seal_unlocked<R: Read>(
        &self,
        header: &ArchiveHeader,
        options: SealOptions<'_>,
        input: R,
        on_temp: &mut dyn FnMut(&Path),
    ) -> Result<StagedArchive, StoreError> {
        let mut writer = self.stage(header, options)?;
        on_temp(writer.temp_path());
        writer.read_from(input)?;
        writer.finish()
    }

    /// Copies an archive file into the store after checking its structure. Returns the
    /// inspection and whether it was newly added (false: identical copy already present).
    pub fn import(&self, lock: &HomeLock, src: &Path) -> Result<(Inspection, bool), StoreError> {
        self.import_as(lock, src, true)
    }

    /// [`Self::import`], recording a newly added archive as *unverified* when `verified`
    /// is false (its key was not here to authenticate it): `backup list/get` show it as
    /// `Unverified` until a `verify` of the stored file succeeds. The mark is made before
    /// the archive is committed, so a kill in between leaves a mark without an archive
    /// (ignored), never an unverified archive without its mark.
    pub fn import_as(
        &self,
        lock: &HomeLock,
        src: &Path,
        verified: bool,
    ) -> Result<(Inspection, bool), StoreError> {
        let id = inspect_file(src)?.header.id;
        let fresh = !self.path_of(&id).exists();
        if fresh && !verified {
            self.set_unverified(&id)?;
        }
        let r = self.import_checked(lock, src);
        if fresh && !verified && !matches!(r, Ok((_, true))) {
            self.clear_unverified(&id)?;
        }
        r
    }

    fn unverified_path(&self, id: &Uuid) -> PathBuf {
        self.home.dir().join(UNVERIFIED_DIR).join(id.to_string())
    }

    fn set_unverified(&self, id: &Uuid) -> Result<(), StoreError> {
        let path = self.unverified_path(id);
        let dir = path.parent().expect("the mark is in a directory");
        fsutil::ensure_private_dir(dir).map_err(io_err(dir))?;
        fsutil::write_atomic(&path, b"", 0o600).map_err(io_err(&path))
    }

    /// Removes the unverified mark of `id`, if any.
    pub fn clear_unverified(&self, id: &Uuid) -> Result<(), StoreError> {
        let path = self.unverified_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// A successful authentication of `path` as archive `id`: if `path` is the store's
    /// file for `id`, it is no longer unverified.
    pub fn authenticated(&self, path: &Path, id: &Uuid) -> Result<(), StoreError> {
        if path == self.path_of(id) {
            self.clear_unverified(id)?;
        }
        Ok(())
    }

    /// Records that a key of this home opened an archive ([`Confirmations`]): its key id
    /// and generation are then confirmed in keyless views for exactly these bytes before
    /// the payload. Nothing is written when this home's own signature already confirms
    /// the slot. Atomic (a kill leaves the old state or the record); no lock is needed,
    /// since a record's content is determined by its name's bytes.
    pub fn record_confirmation(&self, summary: &envelope::OpenSummary) -> Result<(), StoreError> {
        if Confirmations::of(self.home).signed(summary) {
            return Ok(());
        }
        let dir = self.home.dir().join(CONFIRMED_DIR);
        fsutil::ensure_private_dir(&dir).map_err(io_err(&dir))?;
        let path = dir.join(hex::encode(summary.prefix_sha256));
        let record = ConfirmationRecord {
            archive_id: summary.header.id,
            key_id: summary.key_id,
            generation: summary.generation,
        };
        let bytes = serde_json::to_vec(&record).expect("a record serializes");
        fsutil::write_atomic(&path, &bytes, 0o600).map_err(io_err(&path))
    }

    /// What `backup list/get` say about a stored archive: `IdMismatch` when its file is
    /// named for another id than its header's, `Unverified` when it was uploaded without
    /// its key and no verify has succeeded since, else `Completed`.
    pub fn status(&self, path: &Path, inspection: &Inspection) -> ArchiveStatus {
        let id = inspection.header.id;
        if path.file_name() != self.path_of(&id).file_name() {
            ArchiveStatus::IdMismatch
        } else if self.unverified_path(&id).exists() {
            ArchiveStatus::Unverified
        } else {
            ArchiveStatus::Completed
        }
    }

    fn import_checked(
        &self,
        _lock: &HomeLock,
        src: &Path,
    ) -> Result<(Inspection, bool), StoreError> {
        let inspection = inspect_file(src)?;
        if !inspection.length_consistent {
            return Err(StoreError::Archive {
                path: src.display().to_string(),
                source: EnvelopeError::Truncated(
                    "its length does not match the size its trailer claims".into(),
                ),
            });
        }
        let dest = self.path_of(&inspection.header.id);
        if dest.exists() {
            return if same_content(src, &dest).map_err(io_err(&dest))? {
                Ok((inspection, false))
            } else {
                Err(StoreError::Clash {
                    id: inspection.header.id,
                    existing: dest.display().to_string(),
                    offered: src.display().to_string(),
                })
            };
        }
        let mut input = File::open(src).map_err(io_err(src))?;
        let mut out = AtomicFile::create(&dest, 0o600).map_err(io_err(&dest))?;
        io::copy(&mut input, &mut out).map_err(io_err(&dest))?;
        out.commit_new().map_err(io_err(&dest))?;
        Ok((inspection, true))
    }

    pub fn delete(&self, _lock: &HomeLock, id: &Uuid) -> Result<(), StoreError> {
        let path = self.path_of(id);
        std::fs::remove_file(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound(id.to_string())
            } else {
                StoreError::Io {
                    path: path.display().to_string(),
                    source: e,
                }
            }
        })?;
        fsutil::sync_dir(&self.home.archives_dir()).map_err(io_err(&path))?;
        self.clear_unverified(id)
    }
}

/// Directory of the home holding one record per archive prefix a key of this home
/// confirmed (see [`Confirmations`]).
pub const CONFIRMED_DIR: &str = "confirmed";

/// What a keyless view of this home (`backup list/get`, `audit archives`) may present as
/// fact about an archive's key slots. A slot's key id and generation are *confirmed* when
/// (a) the slot carries a valid signature by this home's signing key (its signature
/// covers the header, the secret block, the slot's index and bytes, so a slot forged,
/// edited, swapped or copied from another archive fails it), or (b) a key of this home
/// opened the archive (`backup verify`, `extract`, a verified `upload`, `fetch`) and left
/// a record naming the archive, the key id, the generation and the SHA-256 of every byte
/// before the payload (so a later change to either slot or the header is not covered).
/// Everything else is only *claimed*. Both checks are O(header): no key, no payload.
/// Both rest on the home directory (its `signing.pub` and `confirmed/`) being the home's
/// own; `--trust` with a public key kept elsewhere, or `verify`, do not.
pub struct Confirmations {
    public_key: Option<[u8; 32]>,
    dir: Option<PathBuf>,
}

/// A record of [`Confirmations`] (`confirmed/<hex prefix SHA-256>`).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfirmationRecord {
    archive_id: Uuid,
    key_id: Uuid,
    generation: u32,
}

impl Confirmations {
    /// What `home` confirms (keyless: reads its public key file and records).
    pub fn of(home: &Home) -> Self {
        Confirmations {
            public_key: crate::signing::home_public_key(home),
            dir: Some(home.dir().join(CONFIRMED_DIR)),
        }
    }

    /// Confirms nothing (a sweep without a home).
    pub fn none() -> Self {
        Confirmations {
            public_key: None,
            dir: None,
        }
    }

    /// Whether the key id and generation slot `slot` of `i` shows are confirmed. A slot
    /// region that breaks its keyless rule confirms nothing.
    pub fn slot(&self, i: &Inspection, slot: usize) -> bool {
        let Some(envelope::SlotInfo::Occupied { key_id, generation }) = i.slots.get(slot) else {
            return false;
        };
        if i.region.is_err() {
            return false;
        }
        let signed = self.public_key.is_some_and(|pk| {
            i.signatures
                .iter()
                .any(|s| s.slot == Some(slot) && s.valid && s.public_key == pk)
        });
        signed
            || self.recorded(i).is_some_and(|r| {
                r.archive_id == i.header.id && r.key_id == *key_id && r.generation == *generation
            })
    }

    /// [`Self::slot`] for the newest slot naming `key_id` (the key a view shows).
    pub fn key(&self, i: &Inspection, key_id: &Uuid) -> bool {
        let newest = i
            .slots
            .iter()
            .enumerate()
            .filter_map(|(n, s)| match s {
                envelope::SlotInfo::Occupied {
                    key_id: k,
                    generation,
                } if k == key_id => Some((n, *generation)),
                _ => None,
            })
            .max_by_key(|(_, g)| *g);
        newest.is_some_and(|(n, _)| self.slot(i, n))
    }

    fn recorded(&self, i: &Inspection) -> Option<ConfirmationRecord> {
        let path = self.dir.as_ref()?.join(hex::encode(i.prefix_sha256));
        // A record is a few dozen bytes; anything larger is not one.
        let f = File::open(path).ok()?;
        let mut text = Vec::new();
        f.take(1024).read_to_end(&mut text).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Whether `summary` (a successful open in this home) is already confirmed by this
    /// home's signature on the slot that opened it, so that no record is needed.
    fn signed(&self, summary: &envelope::OpenSummary) -> bool {
        self.public_key
            .is_some_and(|pk| summary.signers.slots.get(summary.slot) == Some(&Some(pk)))
    }
}

/// Result of [`ArchiveStore::referencing_confirmed`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Referencing {
    pub confirmed: Vec<String>,
    pub claimed_only: Vec<String>,
}

/// Directory of the home holding one empty file per unverified archive id.
pub const UNVERIFIED_DIR: &str = "unverified";

/// See [`ArchiveStore::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveStatus {
    Completed,
    Unverified,
    IdMismatch,
}

impl ArchiveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveStatus::Completed => "Completed",
            ArchiveStatus::Unverified => "Unverified",
            ArchiveStatus::IdMismatch => "IdMismatch",
        }
    }
}

/// A new archive of the store being written: a `Write` for the plaintext, in a temporary
/// file (see [`ArchiveStore::stage`]). [`ArchiveWriter::finish`] is mandatory: an
/// unfinished writer is not an archive, and dropping it removes the temporary file.
#[must_use = "an archive is staged only after ArchiveWriter::finish returned Ok"]
pub struct ArchiveWriter {
    sealer: Sealer<AtomicFile>,
    path: PathBuf,
}

impl ArchiveWriter {
    /// The temporary file (removed on drop, renamed by the commit).
    pub fn temp_path(&self) -> &Path {
        self.sealer.get_ref().temp_path()
    }

    /// The final path the archive will have after the commit.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `input` to its end into the archive (no intermediate copy).
    pub fn read_from<R: Read>(&mut self, input: R) -> Result<(), StoreError> {
        self.sealer
            .read_from(input)
            .map_err(archive_err(&self.path))
    }

    /// Writes the final chunk and the trailer; the archive is then complete but not
    /// visible until [`StagedArchive::commit`].
    pub fn finish(self) -> Result<StagedArchive, StoreError> {
        let path = self.path;
        let (out, summary) = self.sealer.finish().map_err(archive_err(&path))?;
        Ok(StagedArchive { out, path, summary })
    }
}

impl Write for ArchiveWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sealer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sealer.flush()
    }
}

/// A completely sealed archive in a temporary file of the store, not yet visible; see
/// [`ArchiveStore::stage`].
pub struct StagedArchive {
    out: AtomicFile,
    path: PathBuf,
    summary: SealSummary,
}

impl StagedArchive {
    pub fn temp_path(&self) -> &Path {
        self.out.temp_path()
    }

    /// Makes the archive appear under its final name (fsync, no-clobber rename).
    pub fn commit(self, _lock: &HomeLock) -> Result<(SealSummary, PathBuf), StoreError> {
        let path = self.path;
        self.out.commit_new().map_err(io_err(&path))?;
        Ok((self.summary, path))
    }

    /// [`Self::commit`] as a group commit ([`crate::group`]): this thread syncs the data;
    /// then one of the threads committing into this home at the same time takes the home
    /// lock once, renames every archive of the batch (no clobber) and syncs the
    /// directory once. Returns, like `commit`, when this archive is durably under its
    /// name; a fleet pull no longer queues on the home lock once per archive. Never call
    /// it while holding the home lock: the leader of the batch may be another thread
    /// that needs it.
    pub fn commit_grouped(mut self, home: &Home) -> Result<(SealSummary, PathBuf), StoreError> {
        self.out.sync().map_err(io_err(&self.path))?;
        commit_group(&home.archives_dir()).submit(self, |batch| commit_batch(home, batch))
    }
}

type CommitGroup = crate::group::Group<StagedArchive, Result<(SealSummary, PathBuf), StoreError>>;

/// The group commit of each archives directory this process commits into.
fn commit_group(dir: &Path) -> std::sync::Arc<CommitGroup> {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, Mutex, PoisonError};
    static GROUPS: LazyLock<Mutex<HashMap<PathBuf, Arc<CommitGroup>>>> =
        LazyLock::new(Default::default);
    let mut all = GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(all.entry(dir.to_path_buf()).or_default())
}

/// Batches and archives group-committed so far into the archives directory `dir`.
pub fn commit_group_stats(dir: &Path) -> (u64, u64) {
    commit_group(dir).stats()
}

/// One batch: the home lock once, every rename, one directory sync. A failed lock fails
/// every archive of the batch (each temporary is then removed, as on any failed commit);
/// a clash fails only its own; a failed directory sync fails those renamed in it (they
/// may be under their names or not after a crash, as after a failed `commit`).
fn commit_batch(
    home: &Home,
    batch: Vec<StagedArchive>,
) -> Vec<Result<(SealSummary, PathBuf), StoreError>> {
    let dir = home.archives_dir();
    let shared_err = |path: &Path, e: &dyn std::fmt::Display, kind: io::ErrorKind| {
        Err(io_err(path)(io::Error::new(kind, e.to_string())))
    };
    let lock = match home.lock() {
        Ok(l) => l,
        Err(e) => {
            return batch
                .iter()
                .map(|s| shared_err(&s.path, &e, io::ErrorKind::Other))
                .collect();
        }
    };
    let mut results: Vec<_> = batch
        .into_iter()
        .map(|s| {
            let path = s.path;
            match s.out.commit_new_unsynced() {
                Ok(()) => Ok((s.summary, path)),
                Err(e) => Err(io_err(&path)(e)),
            }
        })
        .collect();
    if let Err(e) = fsutil::sync_dir(&dir) {
        for r in &mut results {
            if let Ok((_, path)) = r {
                let path = path.clone();
                *r = shared_err(&path, &e, e.kind());
            }
        }
    }
    drop(lock);
    results
}

/// Copies `src` to `dest` atomically (temporary file, fsync, rename).
pub fn copy_atomic(src: &Path, dest: &Path, mode: u32) -> Result<u64, StoreError> {
    let mut input = File::open(src).map_err(io_err(src))?;
    let mut out = AtomicFile::create(dest, mode).map_err(io_err(dest))?;
    let n = io::copy(&mut input, &mut out).map_err(io_err(dest))?;
    out.flush().map_err(io_err(dest))?;
    out.commit().map_err(io_err(dest))?;
    Ok(n)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (fa, fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (BufReader::new(fa), BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = ra.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        rb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Key32;

    fn entries(home: &Home) -> Vec<String> {
        std::fs::read_dir(home.archives_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn staged_seal_is_invisible_until_commit_and_leaves_nothing_on_error() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path()).unwrap();
        let st = ArchiveStore::new(&home);
        let key = Key32::random();
        let key_id = Uuid::new_v4();
        let header = ArchiveHeader::new(crate::scope::Scope::System, None, "t", "", None);

        let mut temp = None;
        let staged = st
            .seal_unlocked(
                &header,
                SealOptions::new(key_id, &key),
                &b"payload"[..],
                &mut |p| temp = Some(p.to_path_buf()),
            )
            .unwrap();
        let temp = temp.unwrap();
        assert_eq!(staged.temp_path(), temp);
        assert!(temp.exists());
        assert!(st.list().unwrap().is_empty(), "not visible before commit");
        let (summary, path) = staged.commit(&home.lock().unwrap()).unwrap();
        assert_eq!(summary.plaintext_size, 7);
        assert_eq!(path, st.path_of(&header.id));
        assert!(!temp.exists());
        assert_eq!(st.list().unwrap().len(), 1);

        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("source broke"))
            }
        }
        let header = ArchiveHeader::new(crate::scope::Scope::System, None, "t", "", None);
        let r = st.seal_unlocked(
            &header,
            SealOptions::new(key_id, &key),
            Failing,
            &mut |_| {},
        );
        assert!(r.is_err());
        assert_eq!(entries(&home).len(), 1, "the failed seal left a file");
    }

    #[test]
    fn a_staged_writer_commits_what_was_written_and_a_dropped_one_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path()).unwrap();
        let st = ArchiveStore::new(&home);
        let key = Key32::random();
        let key_id = Uuid::new_v4();
        let header = ArchiveHeader::new(envelope::Scope::System, None, "t", "", None);
        let mut w = st.stage(&header, SealOptions::new(key_id, &key)).unwrap();
        assert!(w.temp_path().exists());
        assert_eq!(w.path(), st.path_of(&header.id));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        for piece in data.chunks(65_536) {
            w.write_all(piece).unwrap();
        }
        let staged = w.finish().unwrap();
        assert!(st.list().unwrap().is_empty(), "not visible before commit");
        let (summary, path) = staged.commit(&home.lock().unwrap()).unwrap();
        assert_eq!(summary.plaintext_size, data.len() as u64);
        let lookup = |id: &Uuid| {
            (*id == key_id)
                .then(|| envelope::OpeningKey::new(key.duplicate(), envelope::Scope::System, None))
        };
        let mut back = Vec::new();
        envelope::open(File::open(&path).unwrap(), &lookup, &mut back).unwrap();
        assert!(back == data);

        let header = ArchiveHeader::new(envelope::Scope::System, None, "t", "", None);
        let mut w = st.stage(&header, SealOptions::new(key_id, &key)).unwrap();
        w.write_all(&data[..100_000]).unwrap();
        let temp = w.temp_path().to_path_buf();
        drop(w);
        assert!(!temp.exists());
        assert_eq!(entries(&home).len(), 1, "the dropped writer left a file");
    }
}

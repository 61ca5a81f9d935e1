//! The local archive operations (create, list, get, inspect, verify, extract, download,
//! upload, delete, rewrap) and their shared steps: which key seals a new archive, and the key lookup
//! that opens one.
//!
//! Invariants:
//! - A new archive is sealed only under an *active* key of its own scope and domain;
//!   opening may use any key of this home (retired keys included).
//! - Every change to the store (a new, uploaded, rewrapped or deleted archive) is
//!   announced by an intent right before its commit point and concluded by its outcome
//!   (see [`super::Context::audited`]).
//! - Plaintext is written only to a temporary file that is renamed once the whole
//!   archive authenticated (`extract`); nothing appears under `out` otherwise.
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::progress::{Counted, Progress};
use super::{Audit, Context, OpsError, Subject};
use crate::envelope::{
    self, ArchiveHeader, Inspection, OpenSummary, OpeningKey, SealOptions, SealSummary, Source,
};
use crate::fsutil::AtomicFile;
use crate::home::Home;
use crate::keystore::{Dependencies, KeyError, KeyInfo, KeyStore};
use crate::scope::Scope;
use crate::secret::Key32;
use crate::store::{self, ArchiveStatus, ArchiveStore, archive_err};

/// Chooses the key that seals a new archive of `scope`/`domain` (the one `named`, else
/// the default) and checks it may.
pub fn sealing_key(
    ks: &KeyStore<'_>,
    scope: Scope,
    domain: Option<&str>,
    named: Option<&str>,
) -> Result<(KeyInfo, Key32), OpsError> {
    let no_default = || KeyError::NoDefault {
        scope,
        domain: domain.map(str::to_string),
    };
    let (info, key) = match named {
        Some(id) => {
            let info = ks.find(id)?;
            check_scope(&info, scope, domain)?;
            ks.material(&info.id, true)?
        }
        None => ks.default_material(scope, domain)?.ok_or_else(no_default)?,
    };
    check_scope(&info, scope, domain)?;
    Ok((info, key))
}

fn check_scope(info: &KeyInfo, scope: Scope, domain: Option<&str>) -> Result<(), OpsError> {
    if info.in_scope(scope, domain) {
        return Ok(());
    }
    Err(OpsError::KeyOutOfScope {
        key: info.id,
        key_scope: info.scope,
        key_domain: info.domain_id.clone(),
        scope,
        domain: domain.map(str::to_string),
    })
}

/// Looks up keys of this home for opening archives (retired keys included), with the
/// scope and domain the home records for each. The root key is unlocked first, so a
/// wrong PIN, a missing token or passphrase, or an edited key entry is reported as such,
/// not as "key not in this home".
pub fn key_lookup<'a>(
    ks: &'a KeyStore<'_>,
) -> Result<impl Fn(&Uuid) -> Option<OpeningKey> + 'a, OpsError> {
    ks.unlock()?;
    Ok(move |id: &Uuid| {
        ks.material(id, false)
            .ok()
            .map(|(info, k)| OpeningKey::new(k, info.scope, info.domain_id))
    })
}

/// What `create` seals: a file it opens, or a stream the caller opened (stdin).
pub enum Input<'a> {
    File(&'a Path),
    Stream(Box<dyn Read + 'a>),
}

impl Input<'_> {
    /// How the input is named in audit records (`-` for a stream).
    fn label(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stream(_) => "-".into(),
        }
    }
}

/// A new archive sealed from local bytes.
#[derive(Debug, Clone)]
pub struct NewArchive {
    pub scope: Scope,
    pub domain: Option<String>,
    /// Seal under this key instead of the scope's default.
    pub key: Option<String>,
    pub description: String,
}

/// A new archive just committed, described from what sealing it produced (its file is
/// not read again): the header written, the key it is sealed under, its plaintext's size
/// and SHA-256.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub version: u16,
    pub header: ArchiveHeader,
    pub key_id: Uuid,
    pub plaintext_size: u64,
    pub sha256: [u8; 32],
}

impl Sealed {
    pub fn new(header: ArchiveHeader, summary: &SealSummary) -> Self {
        debug_assert_eq!(header.id, summary.archive_id);
        Sealed {
            version: envelope::CURRENT_VERSION,
            header,
            key_id: summary.key_id,
            plaintext_size: summary.plaintext_size,
            sha256: summary.sha256,
        }
    }
}

/// An archive of this home (`--id`, full id or prefix) or an archive file anywhere.
#[derive(Debug, Clone)]
pub enum Target {
    Id(String),
    File(PathBuf),
}

/// Seals `input` into a new archive of the home, as the audited operation
/// `backup.create` (intent before the rename, outcome after).
pub fn create(
    ctx: &Context,
    new: &NewArchive,
    input: Input<'_>,
    progress: &dyn Progress,
) -> Result<Sealed, OpsError> {
    // A failure names the input it was asked to seal (issue 13.5).
    let subject = Subject {
        detail: Some(format!("file {}", input.label())),
        ..Subject::default()
    };
    ctx.audited("backup.create", subject, |s| {
        let ks = KeyStore::new(ctx.home());
        let (key, material) =
            sealing_key(&ks, new.scope, new.domain.as_deref(), new.key.as_deref())?;
        let (reader, len, file_name): (Box<dyn Read + '_>, _, _) = match input {
            Input::File(p) => {
                let f = File::open(p).map_err(OpsError::file(p))?;
                let len = f.metadata().ok().map(|m| m.len());
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (Box::new(f), len, Some(name))
            }
            Input::Stream(r) => (r, None, None),
        };
        let source = file_name.map(|f| Source {
            file_name: Some(f),
            ..Default::default()
        });
        let header = ArchiveHeader::new(
            new.scope,
            new.domain.clone(),
            ctx.account(),
            &new.description,
            source,
        );
        progress.phase("sealing", len);
        let signer = crate::signing::home_signer(ctx.home(), &ks)?;
        let store = ArchiveStore::new(ctx.home());
        let lock = ctx.home().lock()?;
        let mut writer = store.stage(
            &header,
            SealOptions::new(key.id, &material).signed_by(&signer),
        )?;
        // Straight into the sealer's chunk buffers: a `BufReader` here would keep up to
        // 64 KiB of plaintext in a buffer freed unwiped (issue 13.11).
        writer.read_from(Counted::new(reader, progress))?;
        let staged = writer.finish()?;
        s.archive_id = Some(header.id.to_string());
        s.key_id = Some(key.id.to_string());
        s.intent()?;
        let (summary, _) = staged.commit(&lock)?;
        s.detail = None;
        Ok(Sealed::new(header, &summary))
    })
}

/// The archive id asked for and the file named, for the audit record of an operation
/// even when it fails (issue 13.5): the id given, or the id in the named file's header
/// when it can be read; and `file PATH`.
fn asked(t: &Target) -> Subject {
    match t {
        Target::Id(id) => Subject {
            archive_id: Some(id.clone()),
            ..Subject::default()
        },
        Target::File(f) => Subject {
            archive_id: store::inspect_file(f).ok().map(|i| i.header.id.to_string()),
            detail: Some(format!("file {}", f.display())),
            ..Subject::default()
        },
    }
}

fn target_path(ctx: &Context, t: &Target) -> Result<PathBuf, OpsError> {
    Ok(match t {
        Target::Id(id) => ArchiveStore::new(ctx.home()).find(id)?.1,
        Target::File(f) => f.clone(),
    })
}

/// Authenticates an archive completely, as the audited operation `backup.verify`.
pub fn verify(
    ctx: &Context,
    target: &Target,
    progress: &dyn Progress,
) -> Result<OpenSummary, OpsError> {
    ctx.audited("backup.verify", asked(target), |s| {
        let path = target_path(ctx, target)?;
        let v = verify_path(ctx.home(), &path, progress)?;
        s.archive_id = Some(v.header.id.to_string());
        s.key_id = Some(v.key_id.to_string());
        record_confirmation(ctx, &v);
        Ok(v)
    })
}

/// Authenticates the archive at `path` with the keys of `home` (not audited).
pub fn verify_path(
    home: &Home,
    path: &Path,
    progress: &dyn Progress,
) -> Result<OpenSummary, OpsError> {
    let ks = KeyStore::new(home);
    let f = store::open_archive(path).map_err(OpsError::file(path))?;
    let len = f.metadata().ok().map(|m| m.len());
    let lookup = key_lookup(&ks)?;
    progress.phase("verifying", len);
    let input = BufReader::with_capacity(envelope::READ_BUFFER, Counted::new(f, progress));
    let s = envelope::verify(input, &lookup).map_err(archive_err(path))?;
    ArchiveStore::new(home).authenticated(path, &s.header.id)?;
    Ok(s)
}

/// Remembers that a key of this home opened the archive `opened` describes, so that
/// `backup list/get` and `audit archives` show its key id as confirmed
/// ([`store::Confirmations`]). A record that cannot be written (a read-only home) is a
/// warning: the key id is then still shown as claimed, and nothing else is affected.
pub(crate) fn record_confirmation(ctx: &Context, opened: &OpenSummary) {
    if let Err(e) = ArchiveStore::new(ctx.home()).record_confirmation(opened) {
        ctx.warn(&format!(
            "could not record that key {} confirmed archive {} ({e}); keyless views keep showing its key id as claimed",
            opened.key_id, opened.header.id
        ));
    }
}

/// Decrypts an archive to `out` (a temporary file renamed only once the whole archive
/// authenticated), as the audited operation `backup.extract`.
pub fn extract(
    ctx: &Context,
    target: &Target,
    out: &Path,
    progress: &dyn Progress,
) -> Result<OpenSummary, OpsError> {
    ctx.audited("backup.extract", asked(target), |s| {
        let path = target_path(ctx, target)?;
        let v = extract_path(ctx.home(), &path, out, progress)?;
        s.archive_id = Some(v.header.id.to_string());
        record_confirmation(ctx, &v);
        Ok(v)
    })
}

/// Decrypts the archive at `path` to `out` with the keys of `home` (not audited).
pub fn extract_path(
    home: &Home,
    path: &Path,
    out: &Path,
    progress: &dyn Progress,
) -> Result<OpenSummary, OpsError> {
    let ks = KeyStore::new(home);
    let f = store::open_archive(path).map_err(OpsError::file(path))?;
    let lookup = key_lookup(&ks)?;
    let dest = AtomicFile::create_unnamed(out, 0o600).map_err(OpsError::file(out))?;
    // Plaintext goes to a temporary file that is renamed only after the whole archive
    // authenticated; on any error it is dropped, leaving nothing under `out`.
    let mut dest = WriteSide {
        inner: dest,
        failed: None,
    };
    let len = f.metadata().ok().map(|m| m.len());
    progress.phase("extracting", len);
    let input = BufReader::with_capacity(envelope::READ_BUFFER, Counted::new(f, progress));
    let s = envelope::open(input, &lookup, &mut dest).map_err(|e| match dest.failed.take() {
        // A failed write (disk full, read-only, file-size limit) is about `out`, not
        // about the archive being read.
        Some(source) => OpsError::Destination {
            path: out.to_path_buf(),
            source,
        },
        None => archive_err(path)(e).into(),
    })?;
    dest.inner.commit().map_err(OpsError::file(out))?;
    Ok(s)
}

/// Remembers a write error so that it is reported against the destination.
struct WriteSide<W> {
    inner: W,
    failed: Option<io::Error>,
}

impl<W: Write> Write for WriteSide<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs).inspect_err(|e| {
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }
}

/// Copies archive `id` out of the home (still encrypted) to `file`, as the audited
/// operation `backup.download`. Returns the archive id and the bytes copied.
pub fn download(ctx: &Context, id: &str, file: &Path) -> Result<(Uuid, u64), OpsError> {
    let subject = asked(&Target::Id(id.to_string()));
    ctx.audited("backup.download", subject, |s| {
        let (id, path) = ArchiveStore::new(ctx.home()).find(id)?;
        s.archive_id = Some(id.to_string());
        Ok((id, store::copy_atomic(&path, file, 0o600)?))
    })
}

/// An archive file added to the home.
pub struct Uploaded {
    pub inspection: Inspection,
    /// False: an identical copy was already there (nothing changed).
    pub added: bool,
    /// Authenticated before it was stored (its key is in this home). False: stored
    /// unverified, nothing about its content is known until its key is uploaded.
    pub verified: bool,
}

/// Adds the archive file `file` to the home, as the audited operation `backup.upload`.
pub fn upload(ctx: &Context, file: &Path) -> Result<Uploaded, OpsError> {
    ctx.audited("backup.upload", asked(&Target::File(file.into())), |s| {
        let ks = KeyStore::new(ctx.home());
        // Authenticated before it is stored when its key is here (junk carrying a
        // genuine id is refused); otherwise stored and said to be unverified.
        let claimed = store::inspect_file(file)?;
        let opened = if claimed.key_ids.iter().any(|(k, _)| ks.get(k).is_ok()) {
            Some(verify_path(ctx.home(), file, &super::Silent)?)
        } else {
            None
        };
        let verified = opened.is_some();
        let lock = ctx.home().lock()?;
        s.archive_id = Some(claimed.header.id.to_string());
        s.intent()?;
        let (inspection, added) = ArchiveStore::new(ctx.home()).import_as(&lock, file, verified)?;
        s.archive_id = Some(inspection.header.id.to_string());
        if let Some(o) = &opened {
            record_confirmation(ctx, o);
        }
        Ok(Uploaded {
            inspection,
            added,
            verified,
        })
    })
}

/// Reads `--trust` files: home public keys (from `vault home public-key`).
pub fn trusted_keys(files: &[PathBuf]) -> Result<Vec<[u8; 32]>, OpsError> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(OpsError::file(f))?;
            crate::signing::parse_public_key(&text).map_err(|source| OpsError::TrustFile {
                path: f.clone(),
                source,
            })
        })
        .collect()
}

/// Reads the archive file `path` in full without any key: its signatures and whether
/// its ciphertext matches the trailer's digest.
pub fn check_keyless(path: &Path) -> Result<envelope::KeylessCheck, OpsError> {
    let f = store::open_archive(path).map_err(OpsError::file(path))?;
    Ok(
        envelope::check_keyless(BufReader::with_capacity(envelope::READ_BUFFER, f))
            .map_err(archive_err(path))?,
    )
}

/// Deletes archive `id` of the home, as the audited operation `backup.delete`.
pub fn delete(ctx: &Context, id: &str) -> Result<Uuid, OpsError> {
    ctx.audited("backup.delete", asked(&Target::Id(id.to_string())), |s| {
        let st = ArchiveStore::new(ctx.home());
        let (found, _) = st.find(id)?;
        let lock = ctx.home().lock()?;
        s.intent()?;
        st.delete(&lock, &found)?;
        Ok(found)
    })
}

/// Which archives `rewrap` moves, and where.
#[derive(Debug, Clone, Default)]
pub struct RewrapPlan {
    /// One archive (full id or prefix); `None`: every archive of the home.
    pub id: Option<String>,
    /// Only archives currently sealed under this key.
    pub from: Option<String>,
    /// The new key (default: each archive's scope/domain default).
    pub key: Option<String>,
    /// A fresh data key and payload (O(file)) instead of a new key slot (O(header)).
    pub reencrypt: bool,
}

/// One archive moved to another key.
#[derive(Debug, Clone)]
pub struct Rewrapped {
    pub id: Uuid,
    pub from: Uuid,
    pub to: Uuid,
    pub changed: bool,
    pub reencrypted: bool,
}

/// What a rewrap did: the archives moved and those that failed (id from the file name).
#[derive(Default)]
pub struct RewrapReport {
    pub rewrapped: Vec<Rewrapped>,
    pub failed: Vec<(Option<String>, OpsError)>,
}

/// Moves archives to another key, each as the audited operation `backup.rewrap`
/// (intent before the slot or file is rewritten, outcome after). Holds the home lock
/// throughout. A wrong `--id` or `--from` fails the whole call; a failure of one archive
/// is reported in [`RewrapReport::failed`] and the others go on.
pub fn rewrap(ctx: &Context, plan: &RewrapPlan) -> Result<RewrapReport, OpsError> {
    let ks = KeyStore::new(ctx.home());
    let st = ArchiveStore::new(ctx.home());
    let signer = crate::signing::home_signer(ctx.home(), &ks)?;
    let lock = ctx.home().lock()?;
    let from = plan.from.as_deref().map(|f| ks.find(f)).transpose()?;
    if let Some(f) = &from
        && f.state == crate::keystore::KeyState::Compromised
        && !plan.reencrypt
    {
        return Err(OpsError::CompromisedRewrap(f.id));
    }
    let targets: Vec<PathBuf> = match &plan.id {
        Some(id) => match st.find(id) {
            Ok((_, path)) => vec![path],
            // Audited like any failure, naming the id asked for (issue 13.5).
            Err(e) => {
                let subject = asked(&Target::Id(id.clone()));
                return ctx.audited("backup.rewrap", subject, |_| Err(e.into()));
            }
        },
        None => st.list()?.into_iter().map(|s| s.path).collect(),
    };
    let lookup = key_lookup(&ks)?;
    let mut report = RewrapReport::default();
    for path in targets {
        let archive_id = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let insp = match store::inspect_file(&path) {
            Ok(i) => i,
            Err(e) => {
                let subject = Subject {
                    archive_id: archive_id.clone(),
                    detail: plan.reencrypt.then(|| "reencrypt".to_string()),
                    ..Subject::default()
                };
                let e = ctx
                    .audited("backup.rewrap", subject, |_| Err::<(), _>(e.into()))
                    .unwrap_err();
                report.failed.push((archive_id, e));
                continue;
            }
        };
        // Claimed key ids (either slot): the rewrap itself then authenticates.
        if let Some(f) = &from
            && !insp.key_ids.iter().any(|(k, _)| *k == f.id)
        {
            continue;
        }
        let subject = Subject {
            archive_id: archive_id.clone(),
            detail: plan.reencrypt.then(|| "reencrypt".to_string()),
            ..Subject::default()
        };
        let r = ctx.audited("backup.rewrap", subject, |s| {
            let r = rewrap_one(&ks, &lookup, &signer, &path, &insp, plan, s);
            if r.is_err() {
                s.key_id = None;
            }
            r
        });
        match r {
            Ok(done) => report.rewrapped.push(done),
            Err(e) => report.failed.push((archive_id, e)),
        }
    }
    drop(lock);
    Ok(report)
}

fn rewrap_one(
    ks: &KeyStore<'_>,
    lookup: &dyn Fn(&Uuid) -> Option<envelope::OpeningKey>,
    signer: &ed25519_dalek::SigningKey,
    path: &Path,
    insp: &Inspection,
    plan: &RewrapPlan,
    s: &mut Audit<'_>,
) -> Result<Rewrapped, OpsError> {
    let (key, material) = sealing_key(
        ks,
        insp.header.scope,
        insp.header.domain_id.as_deref(),
        plan.key.as_deref(),
    )?;
    s.key_id = Some(key.id.to_string());
    let new_key = envelope::OpeningKey::new(material, key.scope, key.domain_id.clone());
    if plan.reencrypt {
        let src = store::open_archive(path).map_err(OpsError::file(path))?;
        let mut out = AtomicFile::create(path, 0o600).map_err(OpsError::file(path))?;
        let r = envelope::reencrypt(
            BufReader::with_capacity(envelope::READ_BUFFER, src),
            lookup,
            key.id,
            &new_key,
            Some(signer),
            &mut out,
        )
        .map_err(archive_err(path))?;
        s.intent()?;
        out.commit().map_err(OpsError::file(path))?;
        Ok(Rewrapped {
            id: r.archive_id,
            from: r.previous_key_id,
            to: r.new_key_id,
            changed: true,
            reencrypted: true,
        })
    } else {
        s.intent()?;
        let r = envelope::rewrap_file(path, lookup, key.id, &new_key, Some(signer))
            .map_err(archive_err(path))?;
        Ok(Rewrapped {
            id: r.archive_id,
            from: r.previous_key_id,
            to: r.new_key_id,
            changed: r.changed,
            reencrypted: false,
        })
    }
}

/// An archive of the home as `backup list/get` describe it: its keyless view and what
/// the store says about it.
pub struct Listed {
    pub inspection: Inspection,
    pub status: ArchiveStatus,
    /// The key id shown (the newest slot's) is confirmed ([`store::Confirmations`]):
    /// this home signed that slot, or one of its keys opened these exact bytes.
    pub key_confirmed: bool,
}

impl Listed {
    fn new(inspection: Inspection, status: ArchiveStatus, c: &store::Confirmations) -> Self {
        let key_confirmed = inspection
            .key_ids
            .first()
            .is_some_and(|(k, _)| c.key(&inspection, k));
        Listed {
            inspection,
            status,
            key_confirmed,
        }
    }
}

/// The archives of the home (oldest first), optionally only those of one scope and
/// domain, with what each key depends on. An unreadable archive file is skipped and an
/// archive stored under another archive's name is reported, both as warnings through the
/// context's reporter. Keyless: nothing is verified.
pub fn list(
    ctx: &Context,
    only: Option<&(Scope, Option<String>)>,
) -> Result<(Vec<Listed>, Dependencies), OpsError> {
    let deps = KeyStore::new(ctx.home()).dependencies()?;
    let st = ArchiveStore::new(ctx.home());
    let confirmations = store::Confirmations::of(ctx.home());
    let mut out = Vec::new();
    for a in st.list()? {
        match a.inspection {
            Ok(i) => {
                if only.is_none_or(|(s, d)| i.header.scope == *s && i.header.domain_id == *d) {
                    let status = st.status(&a.path, &i);
                    if status == ArchiveStatus::IdMismatch {
                        ctx.warn(&format!("{} holds archive {}, not the archive its name says: it was put in place of another one (integrity finding name-id-mismatch)", a.path.display(), i.header.id));
                    }
                    out.push(Listed::new(i, status, &confirmations));
                }
            }
            Err(e) => ctx.warn(&format!(
                "skipping unreadable archive {}: {e}",
                a.path.display()
            )),
        }
    }
    Ok((out, deps))
}

/// One archive of the home (full id or prefix), keyless, with its key's dependencies.
pub fn get(ctx: &Context, id: &str) -> Result<(Listed, Dependencies), OpsError> {
    let st = ArchiveStore::new(ctx.home());
    let (_, path) = st.find(id)?;
    let inspection = store::inspect_file(&path)?;
    let deps = KeyStore::new(ctx.home()).dependencies()?;
    let status = st.status(&path, &inspection);
    let confirmations = store::Confirmations::of(ctx.home());
    Ok((Listed::new(inspection, status, &confirmations), deps))
}

/// What each key of the home depends on (the root passphrase, a token).
pub fn dependencies(ctx: &Context) -> Result<Dependencies, OpsError> {
    Ok(KeyStore::new(ctx.home()).dependencies()?)
}

/// An archive file's header, slots and trailer, keyless and unverified.
pub fn inspect(path: &Path) -> Result<Inspection, OpsError> {
    Ok(store::inspect_file(path)?)
}

/// One signature of an archive as `inspect` shows it.
#[derive(Debug, Clone)]
pub struct Signer {
    /// `trailer` or `slot N`.
    pub part: String,
    /// The short fingerprint of the signing home's public key.
    pub fingerprint: String,
    pub valid: bool,
}

/// The signatures an inspection found (v2), with their signers' fingerprints.
pub fn signers(i: &Inspection) -> Vec<Signer> {
    i.signatures
        .iter()
        .map(|s| Signer {
            part: s
                .slot
                .map_or("trailer".to_string(), |n| format!("slot {n}")),
            fingerprint: crate::signing::fingerprint(&s.public_key),
            valid: s.valid,
        })
        .collect()
}

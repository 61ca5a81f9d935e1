//! `vault backup …` (local archive commands) and `vault inspect`.
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use uuid::Uuid;

use super::event;
use super::records::List;
use super::{CliError, CliResult, Ctx, ScopeArgs, progress, prune, pull, remote};
use crate::audit::AuditEvent;
use crate::envelope::{self, ArchiveHeader, Inspection, SlotInfo};
use crate::errors::{Classify, Kind};
use crate::fsutil::AtomicFile;
use crate::keystore::{Home, KeyStore, Scope};
pub use crate::ops::backup::{key_lookup, sealing_key};
use crate::store::{self, ArchiveStore, archive_err};

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Seal a file (or stdin with --file -) into a new archive in this home.
    Create(CreateArgs),
    /// Pull a configuration backup from a BMC (or a fleet) straight into sealed archives.
    Pull(Box<pull::PullArgs>),
    /// Push an archive back to the BMC it came from (verified completely first).
    Restore(Box<pull::RestoreArgs>),
    /// List the archives in this home (or, keylessly, on a remote).
    List {
        #[command(flatten)]
        scope: ScopeArgs,
        /// List this remote instead (keyless: ranged reads of each header and trailer).
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// Copy archives to a remote S3 store, optionally under Object Lock.
    Push(remote::PushArgs),
    /// Bring an archive back from a remote into this home, verified end to end.
    Fetch(remote::FetchArgs),
    /// Remove archives a retention policy no longer keeps (per BMC, like restic forget).
    Prune(prune::PruneArgs),
    /// Show one archive's metadata.
    Get {
        #[arg(long, value_name = "ID")]
        id: String,
    },
    /// Copy an archive out of the home (still encrypted) to a file.
    Download {
        #[arg(long, value_name = "ID")]
        id: String,
        #[arg(long, value_name = "F")]
        file: PathBuf,
    },
    /// Add an archive file to this home (its key must be uploaded separately).
    Upload {
        #[arg(long, value_name = "F")]
        file: PathBuf,
    },
    /// Authenticate an archive completely (header, every chunk, trailer, checksum).
    Verify(Target),
    /// Decrypt an archive to a file (written atomically, only if fully authentic).
    Extract {
        #[command(flatten)]
        target: Target,
        /// Where to write the plaintext.
        #[arg(long, value_name = "F")]
        out: PathBuf,
    },
    /// Move archives to another key: rewrite only the key slot (O(header)), or with
    /// --reencrypt give each a fresh data key and payload (when the old key may be compromised).
    Rewrap(RewrapArgs),
    /// Delete an archive from this home.
    Delete {
        #[arg(long, value_name = "ID")]
        id: String,
    },
    /// Same as 'vault inspect'.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The file to seal; '-' reads stdin.
    #[arg(long, value_name = "IN")]
    file: PathBuf,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Seal under this key instead of the scope's default.
    #[arg(long, value_name = "ID")]
    key: Option<String>,
    #[arg(long, value_name = "TEXT", default_value = "")]
    description: String,
}

#[derive(Args, Clone)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["id", "file"])))]
pub struct Target {
    /// An archive in this home.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// An archive file anywhere.
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
    /// With --id: fetch the archive from this remote into the home first (verified end to
    /// end, as 'backup fetch' does; nothing is fetched if it is already here).
    #[arg(long, value_name = "NAME", requires = "id")]
    remote: Option<String>,
}

#[derive(Args)]
pub struct RewrapArgs {
    /// The archive to rewrap.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    id: Option<String>,
    /// Every archive in this home (with --from: those sealed under that key).
    #[arg(long)]
    all: bool,
    /// Only archives currently sealed under this key.
    #[arg(long, value_name = "KEY")]
    from: Option<String>,
    /// The new key (default: the current default of each archive's scope/domain).
    #[arg(long, value_name = "ID")]
    key: Option<String>,
    /// Re-encrypt the payload under a fresh data key (O(file)); use when the old key may
    /// already be compromised.
    #[arg(long)]
    reencrypt: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The archive file.
    #[arg(long, value_name = "F")]
    file: PathBuf,
    /// A home public key file to trust (repeatable; from 'vault home public-key'): the
    /// archive is then read in full and its signatures reported without any backup key.
    #[arg(long, value_name = "FILE")]
    trust: Vec<PathBuf>,
}

/// Reads the `--trust` files.
pub fn trusted_keys(files: &[PathBuf]) -> CliResult<Vec<[u8; 32]>> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| file_err(f, e))?;
            crate::signing::parse_public_key(&text)
                .map_err(|e| CliError::new(Kind::Usage, format!("{}: {e}", f.display())))
        })
        .collect()
}

pub fn run(ctx: &Ctx, cmd: BackupCmd) -> CliResult {
    match cmd {
        BackupCmd::Create(a) => create(ctx, a),
        BackupCmd::Pull(a) => pull::pull(ctx, *a),
        BackupCmd::Restore(a) => pull::restore(ctx, *a),
        BackupCmd::Push(a) => remote::push(ctx, a),
        BackupCmd::Fetch(a) => remote::fetch(ctx, a),
        BackupCmd::Prune(a) => prune::run(ctx, a),
        BackupCmd::List {
            remote: Some(name), ..
        } => remote::list(ctx, &name),
        BackupCmd::List { scope, .. } => {
            let home = ctx.home()?;
            let filter = match (scope.scope, &scope.domain) {
                (None, None) => None,
                _ => Some(scope.resolve(Scope::System)?),
            };
            let mut items = Vec::new();
            let deps = KeyStore::new(&home).dependencies()?;
            let st = ArchiveStore::new(&home);
            for a in st.list()? {
                match a.inspection {
                    Ok(i) => {
                        if filter
                            .as_ref()
                            .is_none_or(|(s, d)| i.header.scope == *s && i.header.domain_id == *d)
                        {
                            let status = st.status(&a.path, &i);
                            if status == store::ArchiveStatus::IdMismatch {
                                ctx.notice(&format!("{} holds archive {}, not the archive its name says: it was put in place of another one (integrity finding name-id-mismatch)", a.path.display(), i.header.id));
                            }
                            items.push(with_status(
                                with_dependency(backup_json(&i), &i, &deps),
                                status,
                            ));
                        }
                    }
                    Err(e) => ctx.notice(&format!(
                        "skipping unreadable archive {}: {e}",
                        a.path.display()
                    )),
                }
            }
            ctx.print(&List::of(items))
        }
        BackupCmd::Get { id } => {
            let home = ctx.home()?;
            let st = ArchiveStore::new(&home);
            let (_, path) = st.find(&id)?;
            let i = store::inspect_file(&path)?;
            let deps = KeyStore::new(&home).dependencies()?;
            let status = st.status(&path, &i);
            ctx.print(&with_status(
                with_dependency(backup_json(&i), &i, &deps),
                status,
            ))
        }
        BackupCmd::Download { id, file } => {
            let home = ctx.home()?;
            let r = (|| -> CliResult<(Uuid, u64)> {
                let (id, path) = ArchiveStore::new(&home).find(&id)?;
                Ok((id, store::copy_atomic(&path, &file, 0o600)?))
            })();
            ctx.audit(
                AuditEvent {
                    archive_id: Some(r.as_ref().map_or(id.clone(), |(i, _)| i.to_string())),
                    ..event("backup.download")
                },
                &r,
            );
            let (id, bytes) = r?;
            ctx.print(&json!({"id": id, "file": file.display().to_string(), "bytes": bytes}))
        }
        BackupCmd::Upload { file } => {
            let home = ctx.home()?;
            let ks = KeyStore::new(&home);
            let r = (|| -> CliResult<(Inspection, bool, bool)> {
                // Authenticated before it is stored when its key is here (junk carrying a
                // genuine id is refused); otherwise stored and said to be unverified.
                let claimed = store::inspect_file(&file)?;
                let verified = if claimed.key_ids.iter().any(|(k, _)| ks.get(k).is_ok()) {
                    verify_path(&home, &file)?;
                    true
                } else {
                    false
                };
                let lock = home.lock()?;
                let (insp, added) = ArchiveStore::new(&home).import_as(&lock, &file, verified)?;
                Ok((insp, added, verified))
            })();
            let (asked_id, detail) = asked(None, Some(&file));
            ctx.audit(
                AuditEvent {
                    archive_id: r
                        .as_ref()
                        .ok()
                        .map(|(i, _, _)| i.header.id.to_string())
                        .or(asked_id),
                    detail,
                    ..event("backup.upload")
                },
                &r,
            );
            let (insp, added, verified) = r?;
            if !added {
                ctx.notice(&format!(
                    "archive {} is already in this home; nothing changed",
                    insp.header.id
                ));
            }
            if !verified && let Some((k, _)) = insp.key_ids.first() {
                ctx.notice(&format!("stored UNVERIFIED: its key {k} (claimed) is not in this home, so nothing about its content is known; import the key with 'vault keys upload', then run 'vault backup verify'"));
            }
            let mut v = backup_json(&insp);
            v["verified"] = json!(verified);
            ctx.print(&v)
        }
        BackupCmd::Verify(t) => {
            let t = fetched(ctx, t)?;
            let home = ctx.home()?;
            let r = target_path(&home, &t).and_then(|path| verify_path(&home, &path));
            let (asked_id, detail) = asked(t.id.as_deref(), t.file.as_deref());
            ctx.audit(
                AuditEvent {
                    archive_id: r
                        .as_ref()
                        .ok()
                        .map(|s| s.header.id.to_string())
                        .or(asked_id),
                    key_id: r.as_ref().ok().map(|s| s.key_id.to_string()),
                    detail,
                    ..event("backup.verify")
                },
                &r,
            );
            let s = r?;
            ctx.print(&json!({
                "id": s.header.id,
                "verified": true,
                "backupKeyId": s.key_id,
                "version": s.version,
                "size": s.plaintext_size,
                "checksum": envelope::hex_digest(&s.sha256),
            }))
        }
        BackupCmd::Extract { target, out } => {
            let target = fetched(ctx, target)?;
            let home = ctx.home()?;
            let r = target_path(&home, &target).and_then(|path| extract(&home, &path, &out));
            let (asked_id, detail) = asked(target.id.as_deref(), target.file.as_deref());
            ctx.audit(
                AuditEvent {
                    archive_id: r
                        .as_ref()
                        .ok()
                        .map(|s| s.header.id.to_string())
                        .or(asked_id),
                    detail,
                    ..event("backup.extract")
                },
                &r,
            );
            let s = r?;
            ctx.print(&json!({
                "id": s.header.id,
                "out": out.display().to_string(),
                "size": s.plaintext_size,
                "checksum": envelope::hex_digest(&s.sha256),
            }))
        }
        BackupCmd::Rewrap(a) => rewrap(ctx, a),
        BackupCmd::Delete { id } => {
            let home = ctx.home()?;
            let r = (|| -> CliResult<Uuid> {
                let st = ArchiveStore::new(&home);
                let (id, _) = st.find(&id)?;
                let lock = home.lock()?;
                st.delete(&lock, &id)?;
                Ok(id)
            })();
            ctx.audit(
                AuditEvent {
                    archive_id: Some(id.clone()),
                    ..event("backup.delete")
                },
                &r,
            );
            ctx.print(&json!({"deleted": true, "id": r?}))
        }
        BackupCmd::Inspect(a) => inspect(ctx, &a),
    }
}

/// `vault inspect --file F`: metadata only, no key, nothing verified.
pub fn inspect(ctx: &Ctx, a: &InspectArgs) -> CliResult {
    let i = store::inspect_file(&a.file)?;
    let h = &i.header;
    let mut v = json!({
        "version": i.version,
        "createdAt": h.created_at,
        "scope": h.scope,
        "domainID": h.domain_id.clone().unwrap_or_default(),
        "backupKeyId": i.key_ids.first().map(|(k, _)| k.to_string()).unwrap_or_default(),
        "isEncrypted": true,
        "creatorAccount": h.creator_account,
        "isHSMBacked": false,
        "description": h.description,
        "checksum": envelope::hex_digest(&i.sha256),
        "productVersion": h.product_version,
        "id": h.id,
        "size": i.plaintext_size,
        "archiveSize": i.file_len,
        "source": h.source.clone().map(|s| serde_json::to_value(s).expect("serializes")).unwrap_or(json!({})),
        "keySlots": i.slots.iter().map(slot_json).collect::<Vec<_>>(),
        "lengthConsistent": i.length_consistent,
        "verified": false,
    });
    // HSM-backed: sealed under a key that this home's key store says is tied to the
    // token (claimed, like every keyless view; opening checks it).
    if ctx.home_dir().join("keys.json").exists() {
        let home = ctx.home()?;
        let deps = KeyStore::new(&home).dependencies()?;
        if let Some((k, _)) = i.key_ids.first() {
            v["isHSMBacked"] = json!(deps.tied(k));
            v["dependsOn"] = json!(deps.of(k));
        }
    }
    if !i.length_consistent {
        v["warning"] = json!(
            "the file length does not match the size in its trailer: it is truncated or damaged"
        );
    }
    if let Err(e) = &i.region {
        v["slotRegion"] = json!(e);
    } else if i.key_ids.len() == 2 {
        v["interruptedRewrap"] = json!(true);
        ctx.notice("both key slots are occupied: a rewrap was interrupted; run 'vault backup rewrap' on it again to complete it");
    }
    v["signers"] = json!(
        i.signatures
            .iter()
            .map(|s| json!({
                "part": s.slot.map_or("trailer".to_string(), |n| format!("slot {n}")),
                "fingerprint": crate::signing::fingerprint(&s.public_key),
                "valid": s.valid,
            }))
            .collect::<Vec<_>>()
    );
    if !a.trust.is_empty() {
        let trusted = trusted_keys(&a.trust)?;
        let f = store::open_archive(&a.file).map_err(|e| file_err(&a.file, e))?;
        let check = envelope::check_keyless(BufReader::with_capacity(envelope::READ_BUFFER, f))
            .map_err(archive_err(&a.file))?;
        v["signature"] = json!(check.provenance(&trusted).to_string());
        v["ciphertextMatches"] = json!(check.ciphertext_matches);
    }
    ctx.notice(
        "metadata shown as stored (key ids are claimed); nothing is verified without the key: run 'vault backup verify'",
    );
    ctx.print(&v)
}

fn slot_json(s: &SlotInfo) -> Value {
    match s {
        SlotInfo::Empty => json!({"state": "empty"}),
        SlotInfo::Occupied { key_id, generation } => {
            json!({"state": "occupied", "keyId": key_id, "generation": generation, "claimed": true})
        }
        SlotInfo::Damaged => json!({"state": "damaged"}),
    }
}

/// Sets `tiedToHSM` and `dependsOn` (what is lost if a passphrase or token is) from
/// the key store's view of the archive's key.
fn with_dependency(mut v: Value, i: &Inspection, deps: &crate::keystore::Dependencies) -> Value {
    if let Some((k, _)) = i.key_ids.first() {
        v["tiedToHSM"] = json!(deps.tied(k));
        v["dependsOn"] = json!(deps.of(k));
    }
    v
}

/// ksctl-like description of an archive in the store.
pub fn backup_json(i: &Inspection) -> Value {
    let h = &i.header;
    let mut v = json!({
        "scope": h.scope,
        "account": h.creator_account,
        "version": i.version.to_string(),
        "id": h.id,
        "createdAt": h.created_at,
        "status": "Completed",
        "tiedToHSM": false,
        "backupKey": i.key_ids.first().map(|(k, _)| k.to_string()).unwrap_or_default(),
        "productVersion": h.product_version,
        "description": h.description,
        "checksum": envelope::hex_digest(&i.sha256),
        "size": i.plaintext_size,
    });
    if let Some(d) = &h.domain_id {
        v["domainID"] = json!(d);
    }
    if let Some(s) = &h.source {
        v["source"] = serde_json::to_value(s).expect("serializes");
    }
    v
}

/// What an operation was asked to act on, for its audit record even when it fails
/// (issue 13.5): the archive id given, or the id in the named file's header when the
/// file can be read; and the file's path (`file PATH`).
fn asked(id: Option<&str>, file: Option<&Path>) -> (Option<String>, Option<String>) {
    match (id, file) {
        (Some(id), _) => (Some(id.to_string()), None),
        (None, Some(f)) => (
            store::inspect_file(f).ok().map(|i| i.header.id.to_string()),
            Some(format!("file {}", f.display())),
        ),
        (None, None) => (None, None),
    }
}

/// A `--remote` target is fetched into the home first and then named by its full id.
fn fetched(ctx: &Ctx, mut t: Target) -> CliResult<Target> {
    if let (Some(remote), Some(id)) = (&t.remote, &t.id) {
        t.id = Some(remote::fetch_first(ctx, remote, id)?);
    }
    Ok(t)
}

fn target_path(home: &Home, t: &Target) -> CliResult<PathBuf> {
    match (&t.id, &t.file) {
        (Some(id), _) => Ok(ArchiveStore::new(home).find(id)?.1),
        (None, Some(f)) => Ok(f.clone()),
        (None, None) => Err(CliError::new(
            Kind::Usage,
            "name the archive with --id ID or --file F",
        )),
    }
}

pub fn verify_path(home: &Home, path: &Path) -> CliResult<envelope::OpenSummary> {
    let ks = KeyStore::new(home);
    let f = store::open_archive(path).map_err(|e| file_err(path, e))?;
    let len = f.metadata().ok().map(|m| m.len());
    let lookup = key_lookup(&ks)?;
    let input = progress::reader(
        BufReader::with_capacity(envelope::READ_BUFFER, f),
        len,
        "verifying",
    );
    let s = envelope::verify(input, &lookup).map_err(archive_err(path))?;
    ArchiveStore::new(home).authenticated(path, &s.header.id)?;
    Ok(s)
}

/// `status` of a `backup list/get` item; an unverified archive's key id is only claimed.
fn with_status(mut v: Value, status: store::ArchiveStatus) -> Value {
    v["status"] = json!(status.as_str());
    if status != store::ArchiveStatus::Completed {
        v["backupKeyClaimed"] = json!(true);
    }
    v
}

fn extract(home: &Home, path: &Path, out: &Path) -> CliResult<envelope::OpenSummary> {
    let ks = KeyStore::new(home);
    let f = store::open_archive(path).map_err(|e| file_err(path, e))?;
    let lookup = key_lookup(&ks)?;
    let dest = AtomicFile::create_unnamed(out, 0o600).map_err(|e| file_err(out, e))?;
    // Plaintext goes to a temporary file that is renamed only after the whole archive
    // authenticated; on any error it is dropped, leaving nothing under `out`.
    let mut dest = WriteSide {
        inner: dest,
        failed: None,
    };
    let len = f.metadata().ok().map(|m| m.len());
    let input = progress::reader(
        BufReader::with_capacity(envelope::READ_BUFFER, f),
        len,
        "extracting",
    );
    let s = envelope::open(input, &lookup, &mut dest).map_err(|e| {
        match dest.failed.take() {
            // A failed write (disk full, read-only, file-size limit) is about `out`, not
            // about the archive being read.
            Some(w) => CliError::new(
                Classify::kind(&w),
                format!(
                    "cannot write {}: {w}; nothing was written there",
                    out.display()
                ),
            ),
            None => archive_err(path)(e).into(),
        }
    })?;
    dest.inner.commit().map_err(|e| file_err(out, e))?;
    Ok(s)
}

/// Remembers a write error so that it is reported against the destination.
struct WriteSide<W> {
    inner: W,
    failed: Option<io::Error>,
}

impl<W: io::Write> io::Write for WriteSide<W> {
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

pub fn file_err(path: &Path, e: io::Error) -> CliError {
    CliError::new(
        Classify::kind(&e),
        format!("cannot access {}: {e}", path.display()),
    )
}

fn create(ctx: &Ctx, a: CreateArgs) -> CliResult {
    let home = ctx.home()?;
    let (scope, domain) = a.scope.resolve(Scope::System)?;
    let ks = KeyStore::new(&home);
    let r = (|| -> CliResult<(Inspection, Uuid)> {
        let (key, material) = sealing_key(&ks, scope, domain.as_deref(), a.key.as_deref())?;
        let file_name = (a.file.as_os_str() != "-").then(|| {
            a.file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let source = file_name.map(|f| envelope::Source {
            file_name: Some(f),
            ..Default::default()
        });
        let header =
            ArchiveHeader::new(scope, domain.clone(), &ctx.account, &a.description, source);
        let input: Box<dyn Read> = if a.file.as_os_str() == "-" {
            progress::reader(io::stdin().lock(), None, "sealing")
        } else {
            let f = File::open(&a.file).map_err(|e| file_err(&a.file, e))?;
            let len = f.metadata().ok().map(|m| m.len());
            progress::reader(f, len, "sealing")
        };
        let signer = crate::signing::home_signer(&home, &ks)?;
        let lock = home.lock()?;
        let (_, path) = ArchiveStore::new(&home).seal_new(
            &lock,
            &header,
            envelope::SealOptions::new(key.id, &material).signed_by(&signer),
            BufReader::with_capacity(envelope::READ_BUFFER, input),
        )?;
        Ok((store::inspect_file(&path)?, key.id))
    })();
    ctx.audit(
        AuditEvent {
            archive_id: r.as_ref().ok().map(|(i, _)| i.header.id.to_string()),
            key_id: r.as_ref().ok().map(|(_, k)| k.to_string()),
            // A failure names the input it was asked to seal (issue 13.5).
            detail: r.is_err().then(|| format!("file {}", a.file.display())),
            ..event("backup.create")
        },
        &r,
    );
    ctx.print(&backup_json(&r?.0))
}

fn rewrap(ctx: &Ctx, a: RewrapArgs) -> CliResult {
    let home = ctx.home()?;
    let ks = KeyStore::new(&home);
    let st = ArchiveStore::new(&home);
    let signer = crate::signing::home_signer(&home, &ks)?;
    let lock = home.lock()?;
    let from = a.from.as_deref().map(|f| ks.find(f)).transpose()?;
    if let Some(f) = &from
        && f.state == crate::keystore::KeyState::Compromised
        && !a.reencrypt
    {
        return Err(CliError::new(
            Kind::Refused,
            format!(
                "key {} is compromised: a plain rewrap keeps each archive's data key, which whoever holds that key can recompute; nothing was changed. Use 'vault backup rewrap --all --from {} --reencrypt'",
                f.id, f.id
            ),
        ));
    }
    let targets: Vec<PathBuf> = match &a.id {
        Some(id) => match st.find(id) {
            Ok((_, path)) => vec![path],
            Err(e) => {
                // Audited like any failure, naming the id asked for (issue 13.5).
                let r: CliResult = Err(e.into());
                ctx.audit(
                    AuditEvent {
                        archive_id: Some(id.clone()),
                        ..event("backup.rewrap")
                    },
                    &r,
                );
                return r;
            }
        },
        None => st.list()?.into_iter().map(|s| s.path).collect(),
    };
    let lookup = key_lookup(&ks)?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for path in targets {
        let r = (|| -> CliResult<Option<Value>> {
            let insp = store::inspect_file(&path)?;
            // Claimed key ids (either slot): the rewrap itself then authenticates.
            if let Some(f) = &from
                && !insp.key_ids.iter().any(|(k, _)| *k == f.id)
            {
                return Ok(None);
            }
            let (key, material) = sealing_key(
                &ks,
                insp.header.scope,
                insp.header.domain_id.as_deref(),
                a.key.as_deref(),
            )?;
            if a.reencrypt {
                let src = store::open_archive(&path).map_err(|e| file_err(&path, e))?;
                let mut out = AtomicFile::create(&path, 0o600).map_err(|e| file_err(&path, e))?;
                let new_key = envelope::OpeningKey::new(material, key.scope, key.domain_id.clone());
                let s = envelope::reencrypt(
                    BufReader::with_capacity(envelope::READ_BUFFER, src),
                    &lookup,
                    key.id,
                    &new_key,
                    Some(&signer),
                    &mut out,
                )
                .map_err(archive_err(&path))?;
                out.commit().map_err(|e| file_err(&path, e))?;
                Ok(Some(
                    json!({"id": s.archive_id, "from": s.previous_key_id, "to": s.new_key_id, "changed": true, "reencrypted": true}),
                ))
            } else {
                let new_key = envelope::OpeningKey::new(material, key.scope, key.domain_id.clone());
                let s = envelope::rewrap_file(&path, &lookup, key.id, &new_key, Some(&signer))
                    .map_err(archive_err(&path))?;
                Ok(Some(
                    json!({"id": s.archive_id, "from": s.previous_key_id, "to": s.new_key_id, "changed": s.changed, "reencrypted": false}),
                ))
            }
        })();
        let archive_id = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        if !matches!(r, Ok(None)) {
            let key_id = r
                .as_ref()
                .ok()
                .and_then(|v| v.as_ref())
                .map(|v| v["to"].as_str().unwrap_or_default().to_string());
            ctx.audit(
                AuditEvent {
                    archive_id: archive_id.clone(),
                    key_id,
                    detail: a.reencrypt.then(|| "reencrypt".to_string()),
                    ..event("backup.rewrap")
                },
                &r,
            );
        }
        match r {
            Ok(Some(v)) => done.push(v),
            Ok(None) => {}
            Err(e) => {
                failed.push(json!({"id": archive_id, "error": e.message, "kind": e.kind.name()}))
            }
        }
    }
    drop(lock);
    let n_failed = failed.len();
    ctx.print(&json!({"total": done.len() + n_failed, "rewrapped": done, "failed": failed}))?;
    if n_failed > 0 {
        return Err(CliError::new(
            Kind::Integrity,
            format!(
                "{n_failed} archive(s) could not be rewrapped (listed in the output); the others were"
            ),
        ));
    }
    Ok(())
}

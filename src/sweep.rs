//! Archive sweeps: walk files and directories, and report for every archive which key
//! protects it, whether that key is here, retired or overdue for rotation, whether the
//! archive is too old, and (optionally) whether it authenticates.
//!
//! Invariants:
//! - Without a key-material lookup a sweep reads only each file's first 16 bytes, header,
//!   key slots and last 80 bytes (`envelope::inspect`): the cost per archive is the same
//!   for 1 KiB and 10 GiB, and nothing is decrypted. Memory is bounded by the header cap
//!   (64 KiB) per worker, plus one small report per file.
//! - The walk never leaves the trees it was given: symbolic links below a named path are
//!   not followed (a link to `/` would otherwise sweep the whole machine, and a link
//!   cycle would never end), and depth is capped at [`MAX_DEPTH`]. Temporary files of
//!   interrupted writes (`.tmp-*`) are skipped: they were never archives.
//! - The sweep never fails halfway: every problem with a file becomes a [`Finding`] on that
//!   file, so one unreadable file cannot hide the state of the others.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::envelope::{self, EnvelopeError, Inspection, SlotInfo};
use crate::fsutil::TEMP_PREFIX;
use crate::keystore::KeyState;
use crate::scope::Scope;

/// Deepest directory level a sweep descends to below a named directory.
pub const MAX_DEPTH: usize = 64;

/// What the sweep needs to know about a key, without its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub state: KeyState,
    /// RFC 3339, as stored in the key store.
    pub created_at: String,
    /// What the key depends on: `file`, `passphrase`, `pkcs11:<token>` (the home's root)
    /// or `hsm:<token>` (a key tied to the token).
    pub depends_on: String,
}

/// Looks up a key's state by id; `None` if the key is not in the home.
pub type StatusLookup<'a> = &'a (dyn Fn(&Uuid) -> Option<KeyStatus> + Sync);
/// Looks up key material by id (for authentication); `None` if not in the home.
pub type MaterialLookup<'a> = &'a (dyn Fn(&Uuid) -> Option<envelope::OpeningKey> + Sync);

/// Whether the home confirms the key id an archive's newest slot naming it shows
/// (`store::Confirmations::key`): signed by the home, or opened by one of its keys.
pub type ConfirmLookup<'a> = &'a (dyn Fn(&Inspection, &Uuid) -> bool + Sync);

/// Key lookups: state (always), what the home confirms (always) and material (only for
/// `--verify`). `Sync` because the sweep runs on several threads.
pub struct SweepKeys<'a> {
    pub status: StatusLookup<'a>,
    pub confirmed: ConfirmLookup<'a>,
    /// `Some` makes the sweep authenticate every archive whose key is present (O(file)).
    pub material: Option<MaterialLookup<'a>>,
}

/// Policy and execution settings.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// `archive-too-old` when an archive's `createdAt` is more than this many days ago.
    pub max_age_days: Option<u64>,
    /// `key-rotation-overdue` when an active key's `createdAt` is more than this many days ago.
    pub rotation_days: Option<u64>,
    /// The instant ages are measured from (a parameter, so tests need no clock).
    pub now: OffsetDateTime,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Trusted home public keys (`--trust`): when not empty, every archive is read in full
    /// and its signatures and ciphertext digest checked without any backup key.
    pub trusted: Vec<[u8; 32]>,
}

/// What is wrong with one file. Codes are stable: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingCode {
    Unreadable,
    NotAnArchive,
    UnsupportedVersion,
    Malformed,
    Truncated,
    AuthenticationFailed,
    KeyMissing,
    KeyRetired,
    KeyRotationOverdue,
    ArchiveTooOld,
    /// A remote object's Object Lock ends before the policy's minimum (or it has none).
    RetentionTooShort,
    /// With `--trust`: a signature does not verify or the bytes do not match what the
    /// signed trailer says (modified after signing).
    SignatureInvalid,
    /// With `--trust`: validly signed, but by a home not trusted.
    UnknownSigner,
    /// With `--trust`: no signature (format 1, or sealed without a home).
    Unsigned,
    /// Sealed under a key this home marks compromised: re-encrypt it.
    KeyCompromised,
    /// The file is named `<id>.vault` for another id than its header's: put in place of
    /// another archive (a restore by that id would otherwise roll back).
    NameIdMismatch,
    /// Both key slots are occupied: a rewrap was interrupted (either key opens it); the
    /// next rewrap completes it.
    RewrapInterrupted,
}

impl FindingCode {
    pub const ALL: [FindingCode; 17] = [
        FindingCode::Unreadable,
        FindingCode::NotAnArchive,
        FindingCode::UnsupportedVersion,
        FindingCode::Malformed,
        FindingCode::Truncated,
        FindingCode::AuthenticationFailed,
        FindingCode::KeyMissing,
        FindingCode::KeyRetired,
        FindingCode::KeyRotationOverdue,
        FindingCode::ArchiveTooOld,
        FindingCode::RetentionTooShort,
        FindingCode::SignatureInvalid,
        FindingCode::UnknownSigner,
        FindingCode::Unsigned,
        FindingCode::KeyCompromised,
        FindingCode::NameIdMismatch,
        FindingCode::RewrapInterrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::Unreadable => "unreadable",
            FindingCode::NotAnArchive => "not-an-archive",
            FindingCode::UnsupportedVersion => "unsupported-version",
            FindingCode::Malformed => "malformed",
            FindingCode::Truncated => "truncated",
            FindingCode::AuthenticationFailed => "authentication-failed",
            FindingCode::KeyMissing => "key-missing",
            FindingCode::KeyRetired => "key-retired",
            FindingCode::KeyRotationOverdue => "key-rotation-overdue",
            FindingCode::ArchiveTooOld => "archive-too-old",
            FindingCode::RetentionTooShort => "retention-too-short",
            FindingCode::SignatureInvalid => "signature-invalid",
            FindingCode::UnknownSigner => "unknown-signer",
            FindingCode::Unsigned => "unsigned",
            FindingCode::KeyCompromised => "key-compromised",
            FindingCode::NameIdMismatch => "name-id-mismatch",
            FindingCode::RewrapInterrupted => "rewrap-interrupted",
        }
    }

    /// The file cannot be trusted as an intact archive. Policy findings (key state, age)
    /// and "cannot judge" findings (`unsupported-version`, `key-missing`) are not.
    pub fn is_integrity_failure(self) -> bool {
        matches!(
            self,
            FindingCode::Unreadable
                | FindingCode::NotAnArchive
                | FindingCode::Malformed
                | FindingCode::Truncated
                | FindingCode::AuthenticationFailed
                | FindingCode::SignatureInvalid
                | FindingCode::NameIdMismatch
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: FindingCode,
    /// A sentence for people: what is wrong (and what to do, where that is not a
    /// command: "use another copy").
    pub message: String,
    /// The next step, where it is one of vault's own operations. The library does not
    /// name commands or flags: the CLI words the step and appends it to `message`
    /// before printing (`cli::hints::sweep_report`).
    #[serde(skip)]
    pub remedy: Option<Remedy>,
}

/// The next step of a [`Finding`] that is one of vault's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Run the interrupted rewrap of this archive again: it completes.
    FinishRewrap(Uuid),
    /// A rewrap repairs a damaged key slot.
    RepairSlot,
    /// Import the missing key (its key file) into this home.
    ImportKey,
    /// Re-encrypt this archive (rewrap with a new data key) away from a compromised key.
    Reencrypt(Uuid),
    /// Rewrap this archive to the active key.
    Rewrap(Uuid),
    /// Rotate the key, then rewrap every archive.
    RotateKey,
    /// Push the object again with a longer retention.
    LongerRetention,
}

/// One swept file. Fields other than `path` and `findings` are `None` when the file could
/// not be read as an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveReport {
    pub path: String,
    pub id: Option<Uuid>,
    pub version: Option<u16>,
    pub scope: Option<Scope>,
    #[serde(rename = "domainID")]
    pub domain_id: Option<String>,
    /// The key that opens the archive here: the newest slot's key present in the home,
    /// else the newest slot's key.
    pub key_id: Option<Uuid>,
    /// `keyId` is read from an unauthenticated slot (a claim): the slot is not signed by
    /// this home and none of its keys confirmed these bytes, and `--verify` did not open
    /// the archive with that key.
    pub key_id_claimed: bool,
    pub created_at: Option<String>,
    /// Plaintext size as claimed by the (unverified unless `verified`) trailer.
    pub size: Option<u64>,
    /// Bytes on disk.
    pub archive_size: Option<u64>,
    pub key_present: Option<bool>,
    pub key_state: Option<KeyState>,
    /// What is lost with a passphrase or token: the key's `dependsOn` in this home.
    pub depends_on: Option<String>,
    /// `Some(true)` only after full authentication (`--verify`).
    pub verified: Option<bool>,
    pub findings: Vec<Finding>,
}

impl ArchiveReport {
    fn new(path: &Path) -> Self {
        ArchiveReport {
            path: path.display().to_string(),
            id: None,
            version: None,
            scope: None,
            domain_id: None,
            key_id: None,
            key_id_claimed: true,
            created_at: None,
            size: None,
            archive_size: None,
            key_present: None,
            key_state: None,
            depends_on: None,
            verified: None,
            findings: Vec::new(),
        }
    }

    fn add(&mut self, code: FindingCode, message: impl Into<String>) {
        self.add_with(code, message, None);
    }

    fn add_with(&mut self, code: FindingCode, message: impl Into<String>, remedy: Option<Remedy>) {
        self.findings.push(Finding {
            code,
            message: message.into(),
            remedy,
        });
    }

    pub fn is_integrity_failure(&self) -> bool {
        self.findings.iter().any(|f| f.code.is_integrity_failure())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    /// Regular files examined.
    pub files: u64,
    /// Files that are vault archives (they start with the archive magic).
    pub archives: u64,
    /// Files without any finding.
    pub ok: u64,
    pub with_findings: u64,
    /// Files with at least one integrity finding (see [`FindingCode::is_integrity_failure`]).
    pub integrity_failures: u64,
    /// Archives fully authenticated (`--verify`).
    pub verified: u64,
    /// Symbolic links, special files and `.tmp-*` files not examined.
    pub skipped: u64,
    /// Files per finding code; every code is present, with 0 when none.
    pub findings: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub summary: SweepSummary,
    /// One entry per examined file, in path order.
    pub archives: Vec<ArchiveReport>,
    /// What was not examined and why, in path order (`summary.skipped` counts these).
    pub skipped: Vec<Skipped>,
}

/// Why a path under a swept directory was not examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// A symbolic link below a named path (never followed).
    Symlink,
    /// A `.tmp-*` file: an interrupted write, never an archive.
    Temporary,
    /// A directory at [`MAX_DEPTH`] levels: nothing below it was looked at.
    TooDeep,
    /// A socket, FIFO or device.
    SpecialFile,
}

/// One path a sweep did not examine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

/// Sweeps `paths` (files or directories, walked recursively).
pub fn sweep(paths: &[PathBuf], keys: &SweepKeys<'_>, opts: &SweepOptions) -> SweepReport {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut unreadable = Vec::new();
    for p in paths {
        collect(p, 0, true, &mut files, &mut skipped, &mut unreadable);
    }
    files.sort();
    files.dedup();

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, ArchiveReport)>> = Mutex::new(Vec::with_capacity(files.len()));
    let threads = opts.threads.clamp(1, files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    local.push((i, check_file(path, keys, opts)));
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(local);
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut archives: Vec<ArchiveReport> = results.into_iter().map(|(_, r)| r).collect();
    archives.extend(unreadable);
    summarize(archives, skipped)
}

/// The report of `archives` (sorted by path here), with the paths `skipped`.
pub fn summarize(mut archives: Vec<ArchiveReport>, mut skipped: Vec<Skipped>) -> SweepReport {
    archives.sort_by(|a, b| a.path.cmp(&b.path));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let mut summary = SweepSummary {
        files: archives.len() as u64,
        archives: 0,
        ok: 0,
        with_findings: 0,
        integrity_failures: 0,
        verified: 0,
        skipped: skipped.len() as u64,
        findings: FindingCode::ALL.iter().map(|c| (c.as_str(), 0)).collect(),
    };
    for a in &archives {
        if a.id.is_some()
            || a.findings.iter().any(|f| {
                // A newer format or a damaged preamble is still recognizably an archive.
                matches!(
                    f.code,
                    FindingCode::UnsupportedVersion
                        | FindingCode::Malformed
                        | FindingCode::Truncated
                )
            })
        {
            summary.archives += 1;
        }
        if a.findings.is_empty() {
            summary.ok += 1;
        } else {
            summary.with_findings += 1;
        }
        if a.is_integrity_failure() {
            summary.integrity_failures += 1;
        }
        if a.verified == Some(true) {
            summary.verified += 1;
        }
        let mut codes: Vec<FindingCode> = a.findings.iter().map(|f| f.code).collect();
        codes.sort();
        codes.dedup();
        for c in codes {
            *summary.findings.entry(c.as_str()).or_default() += 1;
        }
    }
    SweepReport {
        summary,
        archives,
        skipped,
    }
}

/// Gathers the regular files under `path`. Named paths (`top`) are followed if they are
/// links; nothing below them is.
fn collect(
    path: &Path,
    depth: usize,
    top: bool,
    files: &mut Vec<PathBuf>,
    skipped: &mut Vec<Skipped>,
    unreadable: &mut Vec<ArchiveReport>,
) {
    let mut skip = |reason| {
        skipped.push(Skipped {
            path: path.display().to_string(),
            reason,
        })
    };
    let meta = if top {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let fail = |unreadable: &mut Vec<ArchiveReport>, what: &str, e: io::Error| {
        let mut r = ArchiveReport::new(path);
        r.add(
            FindingCode::Unreadable,
            format!("cannot {what}: {e}; check its permissions"),
        );
        unreadable.push(r);
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => return fail(unreadable, "read its metadata", e),
    };
    let ft = meta.file_type();
    if ft.is_file() {
        let is_temp = !top
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX));
        if is_temp {
            skip(SkipReason::Temporary);
        } else {
            files.push(path.to_path_buf());
        }
    } else if ft.is_dir() {
        if depth >= MAX_DEPTH {
            skip(SkipReason::TooDeep);
            return;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => return fail(unreadable, "list the directory", e),
        };
        for entry in entries {
            match entry {
                Ok(entry) => collect(&entry.path(), depth + 1, false, files, skipped, unreadable),
                Err(e) => return fail(unreadable, "list the directory", e),
            }
        }
    } else if ft.is_symlink() {
        skip(SkipReason::Symlink);
    } else {
        skip(SkipReason::SpecialFile);
    }
}

/// Examines one file: keyless checks, then policy, then (with key material) authentication.
/// The keyless and policy checks of an archive inspected elsewhere (a remote object read
/// by ranged reads), named `label`; no authentication.
pub fn check_inspected(
    label: &str,
    inspected: Result<&Inspection, &EnvelopeError>,
    keys: &SweepKeys<'_>,
    opts: &SweepOptions,
) -> ArchiveReport {
    let mut r = ArchiveReport::new(Path::new(label));
    match inspected {
        Ok(insp) => {
            describe(&mut r, insp, keys);
            name_check(&mut r, Path::new(label), insp);
            keyless_checks(&mut r, insp);
            policy_checks(&mut r, insp, keys, opts);
        }
        Err(e) => {
            let (code, msg) = classify(e);
            r.add(code, msg);
        }
    }
    r
}

impl ArchiveReport {
    /// Adds a finding found outside this module (e.g. a remote object's retention).
    pub fn add_finding(
        &mut self,
        code: FindingCode,
        message: impl Into<String>,
        remedy: Option<Remedy>,
    ) {
        self.add_with(code, message, remedy);
    }
}

fn check_file(path: &Path, keys: &SweepKeys<'_>, opts: &SweepOptions) -> ArchiveReport {
    let mut r = ArchiveReport::new(path);
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            r.add(
                FindingCode::Unreadable,
                format!("cannot open the file: {e}; check its permissions"),
            );
            return r;
        }
    };
    let insp = match inspect(&file) {
        Ok(i) => i,
        Err(e) => {
            let (code, msg) = classify(&e);
            r.add(code, msg);
            return r;
        }
    };
    describe(&mut r, &insp, keys);
    name_check(&mut r, path, &insp);
    keyless_checks(&mut r, &insp);
    if !opts.trusted.is_empty() {
        provenance_check(&mut r, &file, &opts.trusted);
    }
    policy_checks(&mut r, &insp, keys, opts);
    if let Some(material) = keys.material
        && r.key_present == Some(true)
        && !r.is_integrity_failure()
    {
        authenticate(&mut r, file, material);
    }
    r
}

/// `envelope::inspect` of the file: an empty file is `Empty`, one that does not start
/// with the magic is `NotAnArchive` (however short), as for every other command.
fn inspect(file: &File) -> Result<Inspection, EnvelopeError> {
    // Small buffer: inspect reads a few hundred bytes at each end of the file.
    envelope::inspect(BufReader::with_capacity(4096, file))
}

fn classify(e: &EnvelopeError) -> (FindingCode, String) {
    let code = match e {
        EnvelopeError::Empty | EnvelopeError::NotAnArchive => FindingCode::NotAnArchive,
        EnvelopeError::UnsupportedVersion { .. } => FindingCode::UnsupportedVersion,
        EnvelopeError::Truncated(_) => FindingCode::Truncated,
        EnvelopeError::Io(_) => FindingCode::Unreadable,
        EnvelopeError::Tampered(_)
        | EnvelopeError::WrongKey { .. }
        | EnvelopeError::ScopeMismatch { .. } => FindingCode::AuthenticationFailed,
        EnvelopeError::KeyUnavailable { .. } => FindingCode::KeyMissing,
        EnvelopeError::Malformed(_)
        | EnvelopeError::InvalidHeader(_)
        | EnvelopeError::TooLarge
        | EnvelopeError::NeedsUpgrade => FindingCode::Malformed,
    };
    let msg = match e {
        EnvelopeError::NotAnArchive => {
            "not a vault archive (no \"VAULTARC\" magic); remove it or keep it out of the archive directory".to_string()
        }
        other => other.to_string(),
    };
    (code, msg)
}

fn describe(r: &mut ArchiveReport, insp: &Inspection, keys: &SweepKeys<'_>) {
    let h = &insp.header;
    r.id = Some(h.id);
    r.version = Some(insp.version);
    r.scope = Some(h.scope);
    r.domain_id.clone_from(&h.domain_id);
    r.created_at = Some(h.created_at.clone());
    r.size = Some(insp.plaintext_size);
    r.archive_size = Some(insp.file_len);
    // The newest slot whose key is here is the one that opens the archive here.
    let present = insp
        .key_ids
        .iter()
        .find_map(|(k, _)| (keys.status)(k).map(|s| (*k, s)));
    match present {
        Some((k, s)) => {
            r.key_id = Some(k);
            r.key_present = Some(true);
            r.key_state = Some(s.state);
            r.depends_on = Some(s.depends_on);
        }
        None => {
            r.key_id = insp.key_ids.first().map(|(k, _)| *k);
            r.key_present = Some(false);
        }
    }
    r.key_id_claimed = !r.key_id.is_some_and(|k| (keys.confirmed)(insp, &k));
}

/// With trusted signers: reads the whole file and checks every byte against the signed
/// trailer and slots, without any backup key.
fn provenance_check(r: &mut ArchiveReport, mut file: &File, trusted: &[[u8; 32]]) {
    if let Err(e) = file.seek(SeekFrom::Start(0)) {
        r.add(
            FindingCode::Unreadable,
            format!("cannot read the file: {e}"),
        );
        return;
    }
    match envelope::check_keyless(BufReader::with_capacity(64 * 1024, file)) {
        Ok(c) => match c.provenance(trusted) {
            envelope::Provenance::Valid => {}
            envelope::Provenance::Invalid => r.add(
                FindingCode::SignatureInvalid,
                "its signatures or bytes do not match what the home signed: modified after sealing; use another copy",
            ),
            envelope::Provenance::UnknownSigner => r.add(
                FindingCode::UnknownSigner,
                "validly signed, but by a home that none of the trusted public keys names",
            ),
            envelope::Provenance::Unsigned => r.add(
                FindingCode::Unsigned,
                "carries no signature (format 1, or sealed without a vault home); its origin cannot be checked without the key",
            ),
        },
        Err(e) => {
            let (code, msg) = classify(&e);
            r.add(code, msg);
        }
    }
}

/// A file named `<uuid>.vault` (how a home and a remote name archives) must hold the
/// archive with that id. Other names are not judged.
fn name_check(r: &mut ArchiveReport, path: &Path, insp: &Inspection) {
    if let Some(named) = named_id(path)
        && named != insp.header.id
    {
        r.add(
            FindingCode::NameIdMismatch,
            format!(
                "the file is named for archive {named} but holds archive {}: it was put in place of another archive; find the right file for {named}",
                insp.header.id
            ),
        );
    }
}

/// The id in a `<uuid>.vault` file name, if the name has that form.
pub fn named_id(path: &Path) -> Option<Uuid> {
    let name = path.file_name()?.to_str()?;
    Uuid::parse_str(name.strip_suffix(".vault")?).ok()
}

fn keyless_checks(r: &mut ArchiveReport, insp: &Inspection) {
    if insp.region.is_ok() && insp.key_ids.len() == 2 {
        r.add_with(
            FindingCode::RewrapInterrupted,
            format!(
                "both key slots are occupied (claimed keys {} and {}): a rewrap was interrupted",
                insp.key_ids[0].0, insp.key_ids[1].0
            ),
            Some(Remedy::FinishRewrap(insp.header.id)),
        );
    }
    if let Err(e) = &insp.region
        && !insp.slots.contains(&SlotInfo::Damaged)
    {
        r.add(
            FindingCode::Malformed,
            format!("its key slots break the format's rule ({e}): a slot was filled, copied in or edited; the key ids it shows are not to be believed"),
        );
    }
    if !insp.length_consistent {
        let expected = envelope::format::payload_len_for(insp.plaintext_size);
        let (code, what) = match expected {
            Some(e) if insp.payload_len < e => (FindingCode::Truncated, "shorter"),
            _ => (FindingCode::Malformed, "longer"),
        };
        r.add(
            code,
            format!(
                "the file is {what} than the {} plaintext bytes its trailer claims require: it was cut short or damaged; use another copy",
                insp.plaintext_size
            ),
        );
    }
    if let Some(i) = insp.slots.iter().position(|s| *s == SlotInfo::Damaged) {
        r.add_with(
            FindingCode::Malformed,
            format!(
                "key slot {i} is damaged (an interrupted rewrap or a modification) and the archive will not open: use another copy, or repair it with a rewrap"
            ),
            Some(Remedy::RepairSlot),
        );
    }
    if insp.key_ids.is_empty() {
        r.add(
            FindingCode::Malformed,
            "no key slot is occupied: no key can open this archive; use another copy",
        );
    }
}

fn policy_checks(
    r: &mut ArchiveReport,
    insp: &Inspection,
    keys: &SweepKeys<'_>,
    opts: &SweepOptions,
) {
    let id = insp.header.id;
    match (r.key_present, r.key_id) {
        (Some(false), Some(k)) => r.add_with(
            FindingCode::KeyMissing,
            format!(
                "archive {id} is sealed under key {k}, which is not in this home: no one here can restore this archive until it is imported"
            ),
            Some(Remedy::ImportKey),
        ),
        (Some(true), Some(k)) => {
            let status = (keys.status)(&k);
            if let Some(s) = status {
                if s.state == KeyState::Compromised {
                    r.add_with(
                        FindingCode::KeyCompromised,
                        format!(
                            "archive {id} is still sealed under compromised key {k}: whoever holds that key can read and rewrite it"
                        ),
                        Some(Remedy::Reencrypt(id)),
                    );
                } else if s.state == KeyState::Retired {
                    r.add_with(
                        FindingCode::KeyRetired,
                        format!("archive {id} is sealed under retired key {k}"),
                        Some(Remedy::Rewrap(id)),
                    );
                } else if let Some(days) = opts.rotation_days
                    && let Some(age) = age_days(&s.created_at, opts.now)
                    && age > days
                {
                    r.add_with(
                        FindingCode::KeyRotationOverdue,
                        format!(
                            "key {k} was created {age} days ago, more than the {days}-day rotation policy"
                        ),
                        Some(Remedy::RotateKey),
                    );
                }
            }
        }
        _ => {}
    }
    if let Some(days) = opts.max_age_days {
        match age_days(&insp.header.created_at, opts.now) {
            Some(age) if age > days => r.add(
                FindingCode::ArchiveTooOld,
                format!(
                    "archive {id} was created {age} days ago, more than the {days}-day maximum age; take a fresh backup and retire this one"
                ),
            ),
            Some(_) => {}
            None => r.add(
                FindingCode::Malformed,
                format!(
                    "createdAt '{}' is not an RFC 3339 time, so the archive's age is unknown",
                    insp.header.created_at
                ),
            ),
        }
    }
}

/// Whole days from `time` to `now` (0 for times in the future), or `None` if unparsable.
fn age_days(time: &str, now: OffsetDateTime) -> Option<u64> {
    let t = OffsetDateTime::parse(time, &Rfc3339).ok()?;
    Some(u64::try_from((now - t).whole_days()).unwrap_or(0))
}

fn authenticate(r: &mut ArchiveReport, mut file: File, material: MaterialLookup<'_>) {
    if let Err(e) = file.seek(SeekFrom::Start(0)) {
        r.add(
            FindingCode::Unreadable,
            format!("cannot read the file: {e}"),
        );
        return;
    }
    match envelope::verify(BufReader::with_capacity(64 * 1024, file), material) {
        Ok(s) => {
            r.verified = Some(true);
            r.key_id = Some(s.key_id);
            r.key_id_claimed = false;
        }
        Err(e) => {
            r.verified = Some(false);
            let (code, msg) = match &e {
                // The key vanished between the state lookup and now.
                EnvelopeError::KeyUnavailable { .. } => (FindingCode::KeyMissing, e.to_string()),
                EnvelopeError::Io(_) => (FindingCode::Unreadable, e.to_string()),
                _ => (FindingCode::AuthenticationFailed, e.to_string()),
            };
            r.add(code, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_whole_days_and_future_is_zero() {
        let now = OffsetDateTime::parse("2026-01-10T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(age_days("2026-01-01T12:00:00Z", now), Some(9));
        assert_eq!(age_days("2026-01-01T12:00:01Z", now), Some(8));
        assert_eq!(age_days("2027-01-01T00:00:00Z", now), Some(0));
        assert_eq!(age_days("yesterday", now), None);
    }

    /// Policy findings state the fact; the step that is a vault command is a typed
    /// remedy (the CLI words it), never in the message.
    #[test]
    fn policy_findings_carry_their_remedy_not_a_command() {
        let t = tempfile::tempdir().unwrap();
        let key_id = Uuid::new_v4();
        let header = envelope::ArchiveHeader::new(Scope::System, None, "alice", "x", None);
        let mut bytes = Vec::new();
        let key = crate::secret::Key32::random();
        envelope::seal(&header, key_id, &key, &b"config"[..], &mut bytes).unwrap();
        let path = t.path().join("a.vault");
        std::fs::write(&path, &bytes).unwrap();
        let cases = [
            (
                Some(KeyState::Retired),
                FindingCode::KeyRetired,
                Remedy::Rewrap(header.id),
            ),
            (
                Some(KeyState::Compromised),
                FindingCode::KeyCompromised,
                Remedy::Reencrypt(header.id),
            ),
            (
                Some(KeyState::Active),
                FindingCode::KeyRotationOverdue,
                Remedy::RotateKey,
            ),
            (None, FindingCode::KeyMissing, Remedy::ImportKey),
        ];
        for (state, code, remedy) in cases {
            let status = move |_: &Uuid| {
                state.map(|state| KeyStatus {
                    state,
                    created_at: "2000-01-01T00:00:00Z".into(),
                    depends_on: "file".into(),
                })
            };
            let keys = SweepKeys {
                status: &status,
                confirmed: &|_, _| false,
                material: None,
            };
            let opts = SweepOptions {
                trusted: Vec::new(),
                max_age_days: None,
                rotation_days: Some(1),
                now: crate::clock::now(),
                threads: 1,
            };
            let rep = sweep(std::slice::from_ref(&path), &keys, &opts);
            let f = &rep.archives[0].findings;
            assert_eq!(f.len(), 1, "{f:?}");
            assert_eq!((f[0].code, f[0].remedy), (code, Some(remedy)));
            assert!(
                !f[0].message.contains("'vault ") && !f[0].message.contains("--"),
                "{}",
                f[0].message
            );
        }
    }

    #[test]
    fn codes_serialize_as_documented() {
        for c in FindingCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn junk_is_classified_without_panicking() {
        let t = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8], FindingCode)] = &[
            ("empty", b"", FindingCode::NotAnArchive),
            ("short-junk", b"abc", FindingCode::NotAnArchive),
            ("magic-only", b"VAULTARC", FindingCode::Truncated),
            ("short-magic", b"VAUL", FindingCode::Truncated),
            (
                "text",
                b"hello world, not an archive\n",
                FindingCode::NotAnArchive,
            ),
        ];
        for (name, bytes, _) in cases {
            std::fs::write(t.path().join(name), bytes).unwrap();
        }
        std::fs::write(t.path().join(".tmp-partial"), b"VAULTARC").unwrap();
        std::os::unix::fs::symlink("/", t.path().join("root-link")).unwrap();
        let status = |_: &Uuid| None;
        let keys = SweepKeys {
            status: &status,
            confirmed: &|_, _| false,
            material: None,
        };
        let opts = SweepOptions {
            trusted: Vec::new(),
            max_age_days: Some(1),
            rotation_days: Some(1),
            now: crate::clock::now(),
            threads: 2,
        };
        let rep = sweep(&[t.path().to_path_buf()], &keys, &opts);
        assert_eq!(rep.summary.files, cases.len() as u64);
        assert_eq!(rep.summary.skipped, 2, "temp file and symlink");
        let reasons: Vec<_> = rep.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, [SkipReason::Temporary, SkipReason::Symlink]);
        assert_eq!(rep.summary.integrity_failures, cases.len() as u64);
        for (name, _, code) in cases {
            let a = rep
                .archives
                .iter()
                .find(|a| a.path.ends_with(name))
                .unwrap();
            assert_eq!(a.findings.len(), 1, "{a:?}");
            assert_eq!(a.findings[0].code, *code, "{name}");
        }
    }
}

//! `backup restore`: an archive back onto the BMC it came from.
//!
//! Invariants:
//! - The whole archive is authenticated before the BMC is contacted; the bytes sent are
//!   then a second decryption pass over the *same open file* (an [`Opener`] is the
//!   request body: one thread, no channel), so what is sent is what was verified, short
//!   of someone rewriting the file in place, which the second pass detects as tampering.
//! - Unless told otherwise, the BMC must manage the server the archive came from
//!   (serial numbers compared), and `confirm` is asked before anything is sent.
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use uuid::Uuid;

use super::backup::key_lookup;
use super::progress::{Counted, Progress};
use super::{Context, OpsError, Subject};
use crate::bmc::{BmcOptions, BmcSession};
use crate::envelope::{self, Opener};
use crate::home::Home;
use crate::keystore::KeyStore;
use crate::secret::Password;
use crate::store::{self, ArchiveStore, archive_err};

/// A completed restore.
pub struct Restored {
    pub archive_id: Uuid,
    pub key_id: Uuid,
    pub host: String,
    pub bytes: u64,
    pub file_name: String,
    pub bmc_serial: Option<String>,
    pub archive_serial: Option<String>,
}

/// What the confirmation step is shown before anything is sent.
pub struct RestorePlan<'a> {
    pub archive_id: Uuid,
    pub host: &'a str,
    pub serial: Option<&'a str>,
    pub created_at: &'a str,
}

/// Asked once the BMC and the archive checked out, before anything is sent.
pub type Confirm<'a> = &'a dyn Fn(&RestorePlan<'_>) -> Result<(), OpsError>;

/// Records a restore of archive `id` to the BMC at `host` refused before anything was
/// sent or asked (e.g. HTTP Basic, no terminal to confirm on) as a failed
/// `backup.restore` naming both, and returns its error.
pub fn refused(ctx: &Context, id: &str, host: &str, e: OpsError) -> OpsError {
    let subject = Subject {
        bmc_host: Some(host.to_string()),
        archive_id: Some(id.to_string()),
        ..Subject::default()
    };
    match ctx.audited("backup.restore", subject, |_| Err::<(), _>(e)) {
        Err(e) => e,
        Ok(()) => unreachable!("the operation only fails"),
    }
}

/// Restores archive `id` (full id or prefix) of this home to the BMC of `opts`, as the
/// audited operation `backup.restore`.
///
/// `connect` gives the BMC's connection options (with its password) once the archive
/// was found, so that an unknown id costs no password prompt.
pub fn restore(
    ctx: &Context,
    id: &str,
    bmc_host: &str,
    connect: &dyn Fn() -> Result<BmcOptions, OpsError>,
    allow_different_system: bool,
    confirm: Confirm<'_>,
    progress: &dyn Progress,
) -> Result<Restored, OpsError> {
    let subject = Subject {
        bmc_host: Some(bmc_host.to_string()),
        archive_id: Some(id.to_string()),
        ..Subject::default()
    };
    ctx.audited("backup.restore", subject, |s| {
        let (found, path) = ArchiveStore::new(ctx.home()).find(id)?;
        s.archive_id = Some(found.to_string());
        let r = restore_one(
            ctx.home(),
            &path,
            connect()?,
            allow_different_system,
            confirm,
            progress,
        )?;
        s.key_id = Some(r.key_id.to_string());
        Ok(r)
    })
}

/// Verifies the archive at `path` completely, checks that the BMC is the system it came
/// from (unless `allow_different_system`), asks `confirm`, then streams the plaintext
/// into the BMC's restore endpoint (not audited: see [`restore`]).
pub fn restore_one(
    home: &Home,
    path: &Path,
    opts: BmcOptions,
    allow_different_system: bool,
    confirm: Confirm<'_>,
    progress: &dyn Progress,
) -> Result<Restored, OpsError> {
    let ks = KeyStore::new(home);
    let lookup = key_lookup(&ks)?;
    let mut f = store::open_archive(path).map_err(OpsError::file(path))?;
    let verified = envelope::verify(BufReader::with_capacity(envelope::READ_BUFFER, &f), &lookup)
        .map_err(archive_err(path))?;
    let archive_id = verified.header.id;
    let source = verified.header.source.as_ref();
    let archive_serial = source.and_then(|s| s.serial_number.clone());
    let file_name = source
        .and_then(|s| s.file_name.clone())
        .unwrap_or_else(|| format!("{archive_id}.bak"));
    // The iLO backup-file password sealed with the backup (pull --file-password).
    let mut opts = opts;
    if let Some(secret) = &verified.secret {
        let pw =
            std::str::from_utf8(secret.expose()).map_err(|_| OpsError::FilePasswordNotText {
                archive: archive_id,
            })?;
        opts.file_password = Some(Password::new(pw.to_string()));
    }

    let mut session = BmcSession::connect(opts)?;
    let host = session.host().to_string();
    let svc = session.discover()?;
    let bmc_serial = svc.manager.serial.clone();
    if !allow_different_system {
        same_system(archive_id, &host, &archive_serial, &bmc_serial)?;
    }
    confirm(&RestorePlan {
        archive_id,
        host: &host,
        serial: archive_serial.as_deref(),
        created_at: &verified.header.created_at,
    })?;

    f.seek(SeekFrom::Start(0)).map_err(OpsError::file(path))?;
    let size = verified.plaintext_size;
    progress.phase(&format!("{host}: uploading {file_name}"), Some(size));
    let mut opener = Opener::new(BufReader::with_capacity(envelope::READ_BUFFER, &f), &lookup)
        .map_err(archive_err(path))?;
    // A failed second pass fails the upload (the body read errs), so the BMC gets an
    // incomplete request and rejects it; the upload's error is the one reported.
    session.restore(
        &svc,
        &file_name,
        &mut Counted::new(&mut opener, progress),
        size,
    )?;
    // Everything was read: only a file changed since the first pass fails here.
    opener.finish().map_err(archive_err(path))?;
    // iLO resets after a restore; a failed logout then is expected and harmless.
    let _ = session.logout();
    Ok(Restored {
        archive_id,
        key_id: verified.key_id,
        host,
        bytes: size,
        file_name,
        bmc_serial,
        archive_serial,
    })
}

/// Whether the BMC manages the server the archive came from, by serial number.
fn same_system(
    archive: Uuid,
    host: &str,
    archive_serial: &Option<String>,
    bmc_serial: &Option<String>,
) -> Result<(), OpsError> {
    match (archive_serial, bmc_serial) {
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => Ok(()),
        (Some(a), Some(b)) => Err(OpsError::SerialMismatch {
            archive,
            host: host.to_string(),
            archive_serial: a.clone(),
            bmc_serial: b.clone(),
        }),
        (None, _) => Err(OpsError::NoArchiveSerial {
            archive,
            host: host.to_string(),
        }),
        (Some(a), None) => Err(OpsError::NoBmcSerial {
            host: host.to_string(),
            archive_serial: a.clone(),
        }),
    }
}

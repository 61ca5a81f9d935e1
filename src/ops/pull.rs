//! `backup pull`: one BMC's configuration backup, straight into a sealed archive.
//!
//! Invariants:
//! - The BMC client writes the download into the staged archive itself: the sealer is a
//!   `Write` ([`crate::store::ArchiveWriter`]), so a 64 KiB buffer goes from the client's
//!   read buffer into a chunk buffer of the sealer on the calling thread, with no channel
//!   or second thread between them. Plaintext never touches the disk.
//! - The archive is complete only when the download succeeded *and* the sealer finished;
//!   a failed or cut download drops the writer, which removes the temporary file.
//! - Sealing runs without the home lock (a slow BMC must not block the home or the other
//!   pulls of a fleet); the lock is taken only for the final no-clobber rename, once per
//!   batch of pulls finishing together (group commit, `StagedArchive::commit_grouped`).
//! - The key is resolved before logging in: a wrong `--key` must not cost a BMC session.
//!   The session is logged out on success, by the client's `Drop` on errors, and by the
//!   process's signal handler on SIGINT/SIGTERM/SIGHUP.
//! - What is returned describes the archive from what sealing produced (header, key,
//!   size, SHA-256): the committed file is not opened again.
use std::io::{self, Write};

use uuid::Uuid;

use super::backup::{Sealed, sealing_key};
use super::progress::{Counted, Progress};
use super::{Context, OpsError, Subject};
use crate::bmc::redfish::{Origin, display_host};
use crate::bmc::{BmcError, BmcOptions, BmcSession};
use crate::envelope::{ArchiveHeader, EnvelopeError, SealOptions, Source};
use crate::home::Home;
use crate::keystore::KeyStore;
use crate::scope::Scope;
use crate::store::{ArchiveStore, archive_err};

pub use crate::bmc::client::{DEFAULT_MAX_BACKUP_BYTES, DownloadMethod};

/// Everything needed to pull one BMC into one archive.
#[derive(Clone)]
pub struct PullJob {
    pub opts: BmcOptions,
    pub scope: Scope,
    pub domain: Option<String>,
    pub key: Option<String>,
    pub description: Option<String>,
}

/// A stored pull, described from what sealing produced (the archive is not re-read).
pub struct Pulled {
    pub sealed: Sealed,
    pub host: String,
    /// Set when the backup is stored but the session could not be deleted.
    pub logout_warning: Option<String>,
    /// What discovery skipped (e.g. a Manager that failed).
    pub notes: Vec<String>,
}

/// `host[:port]` of a BMC URL for messages and audit records, before connecting.
/// Never echoes credentials someone put in the URL (the client refuses such URLs).
pub fn host_of(url: &str) -> String {
    Origin::parse(url)
        .map(|o| o.host)
        .unwrap_or_else(|_| display_host(url))
}

/// Records a pull of the BMC at `host` that failed before it could start (no password,
/// an unusable inventory entry) as a failed `backup.pull`, and returns its error.
pub fn refused(ctx: &Context, host: &str, e: OpsError) -> OpsError {
    let subject = Subject {
        bmc_host: Some(host.to_string()),
        ..Subject::default()
    };
    match ctx.audited("backup.pull", subject, |_| Err::<(), _>(e)) {
        Err(e) => e,
        Ok(()) => unreachable!("the operation only fails"),
    }
}

/// Pulls one BMC as the audited operation `backup.pull`.
pub fn pull(ctx: &Context, job: PullJob, progress: &dyn Progress) -> Result<Pulled, OpsError> {
    let subject = Subject {
        bmc_host: Some(host_of(&job.opts.url)),
        ..Subject::default()
    };
    ctx.audited("backup.pull", subject, |s| {
        let before_commit = &mut |archive: Uuid, key: Uuid| {
            s.archive_id = Some(archive.to_string());
            s.key_id = Some(key.to_string());
            s.intent()
        };
        pull_one(ctx.home(), ctx.account(), job, progress, before_commit)
    })
}

/// Pulls one backup into a new archive of `home` (audited by [`pull`]): `before_commit`
/// learns the archive and key ids once the archive is sealed, right before its rename,
/// and can refuse the commit (e.g. when the intent record cannot be written).
pub fn pull_one(
    home: &Home,
    account: &str,
    job: PullJob,
    progress: &dyn Progress,
    before_commit: &mut dyn FnMut(Uuid, Uuid) -> Result<(), OpsError>,
) -> Result<Pulled, OpsError> {
    let ks = KeyStore::new(home);
    let (key, material) = sealing_key(&ks, job.scope, job.domain.as_deref(), job.key.as_deref())?;
    let signer = crate::signing::home_signer(home, &ks)?;
    // iLO's backup-file password goes into the archive's secret field, encrypted, so
    // that restore can give it back to iLO.
    let secret = job
        .opts
        .file_password
        .as_ref()
        .map(|p| zeroize::Zeroizing::new(p.expose().as_bytes().to_vec()));
    let mut session = BmcSession::connect(job.opts)?;
    let host = session.host().to_string();
    progress.phase(&format!("{host}: discovering"), None);
    let svc = session.discover()?;
    let file = session.request_backup(&svc)?;
    let m = &svc.manager;
    let source = Source {
        bmc_host: Some(m.host.clone()),
        manager_model: m.model.clone(),
        firmware_version: m.firmware.clone(),
        serial_number: m.serial.clone(),
        file_name: Some(file.file_name.clone()),
        backup_file_location: Some(file.backup_file_location.clone()),
    };
    let description = job
        .description
        .clone()
        .unwrap_or_else(|| format!("backup of BMC {host}"));
    let header = ArchiveHeader::new(job.scope, job.domain, account, &description, Some(source));
    progress.phase(&format!("{host}: downloading {}", file.file_name), None);

    let store = ArchiveStore::new(home);
    let mut seal = SealOptions::new(key.id, &material).signed_by(&signer);
    if let Some(s) = &secret {
        seal = seal.with_secret(s);
    }
    let writer = store.stage(&header, seal)?;
    let mut sink = Sink {
        inner: Counted::new(writer, progress),
        failed: None,
    };
    match session.download_file(&file, &mut sink) {
        Ok(_) => {}
        // The sink failed because sealing failed (disk full, …): that is the cause.
        Err(BmcError::Io { .. }) if sink.failed.is_some() => {
            let e = sink.failed.take().expect("checked");
            return Err(archive_err(&store.path_of(&header.id))(EnvelopeError::Io(e)).into());
        }
        Err(e) => return Err(e.into()),
    }
    let staged = sink.inner.into_inner().finish()?;
    before_commit(header.id, key.id)?;
    // Group commit: pulls finishing together share one home lock and directory sync.
    let (summary, _) = staged.commit_grouped(home)?;
    let logout_warning = session.logout().err().map(|e| e.to_string());
    Ok(Pulled {
        sealed: Sealed::new(header, &summary),
        host,
        logout_warning,
        notes: svc.notes,
    })
}

/// Remembers the first write error, so that a failure of the archive side is reported
/// as such and not as a failure of the download that was feeding it.
struct Sink<W> {
    inner: W,
    failed: Option<io::Error>,
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            self.failed
                .get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_names_the_bmc() {
        assert_eq!(host_of("https://10.0.0.5:8443"), "10.0.0.5:8443");
        assert_eq!(host_of("https://10.0.0.5/redfish/v1/"), "10.0.0.5");
        assert_eq!(host_of("https://10.0.0.5:8443/other"), "10.0.0.5:8443");
        let h = host_of("https://root:hunter2@ilo-7/");
        assert_eq!(h, "ilo-7");
    }
}

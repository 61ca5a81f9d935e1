//! Remote (S3) operations: add and list remotes, push archives off the box, fetch them
//! back (verified end to end before they are listed), and list a remote keylessly.
//!
//! Invariant: a fetched archive enters the home only after its bytes match the SHA-256
//! stored with the object, its header names the id asked for, and it authenticates under
//! a key of this home; every push, fetch and remote added is audited (success and
//! failure, naming the archive id or remote asked for).
use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

use super::{Context, OpsError, Subject};
use crate::envelope::OpenSummary;
use crate::fsutil::AtomicFile;
use crate::keystore::KeyStore;
use crate::remote::{
    self, CredentialEnv, LockMode, PushOutcome, Remote, RemoteArchive, RemoteConfig,
};
use crate::store::ArchiveStore;

/// A remote to add, and whether to create its bucket.
#[derive(Debug, Clone)]
pub struct NewRemote {
    pub config: RemoteConfig,
    pub create_bucket: bool,
    /// With `create_bucket`: enable Object Lock (and so versioning) on the new bucket.
    pub object_lock: bool,
}

/// Which archives of the home to push.
#[derive(Debug, Clone)]
pub enum Selection {
    One(String),
    All,
}

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub selection: Selection,
    /// Object Lock mode and retention in days.
    pub lock: Option<(LockMode, u32)>,
}

/// Result of `push`: what went up (or was already there), and what failed.
pub struct PushReport {
    pub pushed: Vec<PushOutcome>,
    pub failed: Vec<(Uuid, OpsError)>,
}

/// Result of `fetch`.
pub struct Fetched {
    pub summary: OpenSummary,
    /// False when the identical archive was already in the home.
    pub added: bool,
}

/// The per-request timeout used for remotes.
pub const TIMEOUT: Duration = remote::DEFAULT_TIMEOUT;

pub fn add(
    ctx: &Context,
    new: &NewRemote,
    creds: &CredentialEnv,
) -> Result<RemoteConfig, OpsError> {
    let subject = Subject {
        detail: Some(format!("remote {} {}", new.config.name, new.config.url)),
        ..Subject::default()
    };
    ctx.audited("remote.add", subject, |s| {
        let _lock = ctx.home().lock()?;
        if new.create_bucket {
            let r = Remote::connect(new.config.clone(), creds, TIMEOUT)?;
            r.client().create_bucket(new.object_lock)?;
        }
        s.intent()?;
        remote::config::add(ctx.home().dir(), new.config.clone())?;
        Ok(new.config.clone())
    })
}

pub fn list(ctx: &Context) -> Result<Vec<RemoteConfig>, OpsError> {
    Ok(remote::config::load(ctx.home().dir())?)
}

/// The remote of this home for `s3://BUCKET/PREFIX` (its endpoint, region and
/// credentials: the remote on that bucket whose prefix is the longest one `url` starts
/// with), addressed at that prefix. Without a home (`None`) there is none.
pub fn connect_url(
    ctx: Option<&Context>,
    url: &str,
    creds: &CredentialEnv,
) -> Result<Remote, OpsError> {
    let want = remote::S3Url::parse(url)?;
    let all = match ctx {
        Some(ctx) => list(ctx)?,
        None => Vec::new(),
    };
    let mut cfg = all
        .into_iter()
        .filter(|r| r.s3_url().is_ok_and(|u| u.bucket == want.bucket))
        .max_by_key(|r| {
            r.s3_url()
                .map(|u| want.prefix.starts_with(&u.prefix) as usize * (1 + u.prefix.len()))
                .unwrap_or(0)
        })
        .ok_or_else(|| OpsError::NoRemoteForBucket(want.bucket.clone()))?;
    cfg.url = url.to_string();
    Ok(Remote::connect(cfg, creds, TIMEOUT)?)
}

/// Connects to the remote `name` of the home (no request is made yet).
pub fn connect(ctx: &Context, name: &str, creds: &CredentialEnv) -> Result<Remote, OpsError> {
    let cfg = remote::config::find(ctx.home().dir(), name)?;
    Ok(Remote::connect(cfg, creds, TIMEOUT)?)
}

pub fn push(ctx: &Context, remote: &Remote, opts: &PushOptions) -> Result<PushReport, OpsError> {
    let store = ArchiveStore::new(ctx.home());
    let targets: Vec<(Uuid, PathBuf)> = match &opts.selection {
        Selection::All => store
            .list()?
            .into_iter()
            .filter_map(|s| s.inspection.ok().map(|i| (i.header.id, s.path)))
            .collect(),
        Selection::One(id) => vec![store.find(id)?],
    };
    let lock = opts
        .lock
        .map(|(mode, days)| (mode, remote::retain_until(days)));
    let mut report = PushReport {
        pushed: Vec::new(),
        failed: Vec::new(),
    };
    for (id, path) in targets {
        let r = push_one(ctx, remote, &id, &path, lock.clone());
        match r {
            Ok(p) => report.pushed.push(p),
            Err(e) => report.failed.push((id, e)),
        }
    }
    Ok(report)
}

/// Pushes one archive file of the home (audited as `backup.push`).
pub fn push_one(
    ctx: &Context,
    remote: &Remote,
    id: &Uuid,
    path: &std::path::Path,
    lock: Option<(LockMode, String)>,
) -> Result<PushOutcome, OpsError> {
    let subject = Subject {
        archive_id: Some(id.to_string()),
        detail: Some(format!(
            "{} s3://{}/{}",
            remote.config.name,
            remote.url.bucket,
            remote.object_key(id)
        )),
        ..Subject::default()
    };
    ctx.audited("backup.push", subject, |_| {
        Ok(remote.push_file(path, id, lock)?)
    })
}

/// Pushes an archive just sealed into the home (`backup pull --push-to`), by the thread
/// that pulled it, right after its commit: a fleet's archives land off-box one by one as
/// they are sealed, each holding at most one upload part in memory. The archive stays in
/// the home whatever happens to the push ([`OpsError::NotPushed`] says so).
pub fn push_sealed(
    ctx: &Context,
    remote: &Remote,
    id: &Uuid,
    lock: Option<(LockMode, u32)>,
) -> Result<PushOutcome, OpsError> {
    let path = ArchiveStore::new(ctx.home()).path_of(id);
    let lock = lock.map(|(mode, days)| (mode, remote::retain_until(days)));
    push_one(ctx, remote, id, &path, lock).map_err(|e| OpsError::NotPushed {
        id: *id,
        remote: remote.config.name.clone(),
        source: Box::new(e),
    })
}

/// Fetches archive `id` (or an unambiguous prefix) from `remote` into the home.
pub fn fetch(ctx: &Context, remote: &Remote, id: &str) -> Result<Fetched, OpsError> {
    let subject = Subject {
        archive_id: Some(id.to_string()),
        detail: Some(format!("from {}", remote.config.name)),
        ..Subject::default()
    };
    ctx.audited("backup.fetch", subject, |s| {
        let (id, key) = remote.find(id)?;
        s.archive_id = Some(id.to_string());
        let store = ArchiveStore::new(ctx.home());
        let dest = store.path_of(&id);
        let ks = KeyStore::new(ctx.home());
        let lookup = |k: &Uuid| {
            ks.material(k, false).ok().map(|(info, key)| {
                crate::envelope::OpeningKey::new(key, info.scope, info.domain_id)
            })
        };
        let mut tmp = AtomicFile::create(&dest, 0o600).map_err(|e| OpsError::Write {
            what: "the fetched archive",
            path: dest.clone(),
            source: e,
        })?;
        let summary = remote.fetch_into(&id, &key, &mut tmp, &lookup)?;
        s.key_id = Some(summary.key_id.to_string());
        super::backup::record_confirmation(ctx, &summary);
        let _lock = ctx.home().lock()?;
        if dest.exists() {
            return Ok(Fetched {
                summary,
                added: false,
            });
        }
        s.intent()?;
        tmp.commit_new().map_err(|e| OpsError::Write {
            what: "the fetched archive",
            path: dest.clone(),
            source: e,
        })?;
        Ok(Fetched {
            summary,
            added: true,
        })
    })
}

/// Every archive on the remote, inspected without any key by ranged reads.
pub fn list_archives(remote: &Remote) -> Result<Vec<RemoteArchive>, OpsError> {
    Ok(remote.list()?)
}

/// Per archive of `archives`: whether the key id its newest slot shows is confirmed by
/// this home ([`crate::store::Confirmations`]: this home signed that slot, or one of its
/// keys opened those bytes); `false` for an object that could not be inspected.
pub fn key_confirmed(ctx: &Context, archives: &[RemoteArchive]) -> Vec<bool> {
    let c = crate::store::Confirmations::of(ctx.home());
    archives
        .iter()
        .map(|a| {
            a.inspection
                .as_ref()
                .is_ok_and(|i| i.key_ids.first().is_some_and(|(k, _)| c.key(i, k)))
        })
        .collect()
}

/// Sweeps the archives of `remote` keylessly: the checks of a file sweep (without
/// authentication) and, with `min_retention_days`, `retention-too-short` for each object
/// whose Object Lock ends sooner than that from now (or that has none).
pub fn sweep(
    remote: &Remote,
    keys: &crate::sweep::SweepKeys<'_>,
    opts: &crate::sweep::SweepOptions,
    min_retention_days: Option<u32>,
) -> Result<Vec<crate::sweep::ArchiveReport>, OpsError> {
    use crate::sweep::{FindingCode, check_inspected};
    use time::format_description::well_known::Rfc3339;
    let mut out = Vec::new();
    for a in remote.list()? {
        let label = format!("s3://{}/{}", remote.url.bucket, a.key);
        let mut r = match &a.inspection {
            Ok(i) => check_inspected(&label, Ok(i), keys, opts),
            Err(remote::RemoteError::Archive { source, .. }) => {
                check_inspected(&label, Err(source), keys, opts)
            }
            Err(e) => {
                let err = crate::envelope::EnvelopeError::Io(std::io::Error::other(e.to_string()));
                check_inspected(&label, Err(&err), keys, opts)
            }
        };
        if let Some(days) = min_retention_days {
            // Some stores (Ceph RGW) report the lock on HEAD only.
            let head = match a.head.as_ref().filter(|h| h.retain_until.is_some()) {
                Some(h) => Some(h.clone()),
                None => remote.client().head(&a.key)?,
            };
            let until = head.as_ref().and_then(|h| h.retain_until.clone());
            let wanted = opts.now + time::Duration::days(i64::from(days));
            match until
                .as_deref()
                .map(|u| time::OffsetDateTime::parse(u, &Rfc3339))
            {
                Some(Ok(t)) if t >= wanted => {}
                Some(Ok(_)) => r.add_finding(
                    FindingCode::RetentionTooShort,
                    format!(
                        "its Object Lock ends {}, sooner than the {days}-day minimum",
                        until.unwrap_or_default()
                    ),
                    Some(crate::sweep::Remedy::LongerRetention),
                ),
                _ => r.add_finding(
                    FindingCode::RetentionTooShort,
                    format!("it has no Object Lock retention; the {days}-day minimum needs one"),
                    None,
                ),
            }
        }
        out.push(r);
    }
    Ok(out)
}

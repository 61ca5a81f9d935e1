//! `backup prune`: retention policies over the archives of the home or of a remote,
//! grouped per BMC (serial, else host), scope and domain (see [`crate::retention`]).
//!
//! Invariants:
//! - The newest archive of a group that verifies is never removed: before anything of a
//!   group goes, its archives are authenticated newest first (a remote one is downloaded
//!   and checked end to end, into a temporary file that is never kept) until one passes;
//!   if none does, nothing of the group is removed.
//! - `dry_run` changes nothing and writes no audit record; every real removal is audited
//!   (`backup.prune`, success or failure, with the archive id).
//! - On a remote, an object under Object Lock is reported as locked, not an error: the
//!   store refuses to delete it and that is the point. The version itself is deleted (a
//!   versioned bucket would otherwise only get a delete marker).
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;

use uuid::Uuid;

use super::{Context, OpsError, Subject};
use crate::envelope::{self, Inspection};
use crate::fsutil::AtomicFile;
use crate::keystore::KeyStore;
use crate::remote::Remote;
use crate::retention::{self, Candidate, Policy, Reason};
use crate::scope::Scope;
use crate::store::ArchiveStore;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub policy: Policy,
    pub dry_run: bool,
}

/// The group an archive is pruned in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// BMC serial number, else BMC host, else empty (archives sealed by hand).
    pub bmc: String,
    pub scope: Scope,
    pub domain_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Keep,
    /// Removed (or, with `dry_run`, would be).
    Remove,
    /// Object Lock keeps it on the remote until this date.
    Locked {
        until: String,
    },
    /// The removal failed (the error is also in the audit log).
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct PruneItem {
    pub id: Uuid,
    pub group: Group,
    pub created_at: String,
    pub reasons: Vec<Reason>,
    pub action: Action,
    /// `s3://bucket/key` on a remote.
    pub object: Option<String>,
}

pub struct PruneReport {
    pub dry_run: bool,
    pub items: Vec<PruneItem>,
}

impl PruneReport {
    pub fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.items.iter().filter(|i| f(&i.action)).count()
    }
}

/// One archive, wherever it lives.
struct Entry {
    inspection: Inspection,
    /// Remote object key (`None`: in the home).
    key: Option<String>,
}

/// Applies `opts.policy` to every group of archives of the home (or of `remote`).
pub fn prune(
    ctx: &Context,
    remote: Option<&Remote>,
    opts: &PruneOptions,
) -> Result<PruneReport, OpsError> {
    if !opts.policy.keeps_something() {
        return Err(OpsError::PolicyKeepsNothing);
    }
    let mut items = Vec::new();
    for (group, entries) in groups(entries(ctx, remote)?) {
        prune_group(ctx, remote, opts, &group, &entries, &mut items);
    }
    Ok(PruneReport {
        dry_run: opts.dry_run,
        items,
    })
}

/// Every archive of the home or of `remote` whose header reads (the others are the
/// sweep's to report, never the policy's to remove).
fn entries(ctx: &Context, remote: Option<&Remote>) -> Result<Vec<Entry>, OpsError> {
    Ok(match remote {
        None => ArchiveStore::new(ctx.home())
            .list()?
            .into_iter()
            .filter_map(|s| {
                s.inspection.ok().map(|inspection| Entry {
                    inspection,
                    key: None,
                })
            })
            .collect(),
        Some(r) => r
            .list()?
            .into_iter()
            .filter_map(|a| {
                a.inspection.ok().map(|inspection| Entry {
                    inspection,
                    key: Some(a.key),
                })
            })
            .collect(),
    })
}

/// `entries` by group, in a stable order (BMC, scope, domain).
fn groups(entries: Vec<Entry>) -> Vec<(Group, Vec<Entry>)> {
    type GroupKey = (String, String, Option<String>);
    let mut groups: BTreeMap<GroupKey, (Group, Vec<Entry>)> = BTreeMap::new();
    for e in entries {
        let g = group_of(&e.inspection);
        let k = (g.bmc.clone(), g.scope.to_string(), g.domain_id.clone());
        groups.entry(k).or_insert_with(|| (g, Vec::new())).1.push(e);
    }
    groups.into_values().collect()
}

/// Decides on (and removes) the archives of one group, keeping its newest archive that
/// verifies; when none does, keeps everything.
fn prune_group(
    ctx: &Context,
    remote: Option<&Remote>,
    opts: &PruneOptions,
    group: &Group,
    entries: &[Entry],
    items: &mut Vec<PruneItem>,
) {
    let candidates: Vec<Candidate> = entries
        .iter()
        .map(|e| Candidate {
            id: e.inspection.header.id,
            created_at: e.inspection.header.created_at.clone(),
        })
        .collect();
    let mut decisions = retention::apply(&opts.policy, &candidates);
    let by_id = |id: &Uuid| {
        entries
            .iter()
            .find(|e| e.inspection.header.id == *id)
            .expect("decided on an entry")
    };
    if decisions.iter().any(|d| !d.keep()) {
        // Newest first: the first that verifies is kept whatever the policy says.
        let verified = decisions
            .iter()
            .position(|d| verify(ctx, remote, by_id(&d.id)).is_ok());
        match verified {
            Some(i) => decisions[i].reasons.push(Reason::NewestVerified),
            None => {
                for d in &mut decisions {
                    d.reasons.push(Reason::GroupUnverified);
                }
            }
        }
    }
    for d in decisions {
        let e = by_id(&d.id);
        let object = match (remote, &e.key) {
            (Some(r), Some(k)) => Some(format!("s3://{}/{k}", r.url.bucket)),
            _ => None,
        };
        let action = if d.keep() {
            Action::Keep
        } else {
            remove(ctx, remote, e, opts.dry_run)
        };
        items.push(PruneItem {
            id: d.id,
            group: group.clone(),
            created_at: e.inspection.header.created_at.clone(),
            reasons: d.reasons,
            action,
            object,
        });
    }
}

fn group_of(i: &Inspection) -> Group {
    let src = i.header.source.as_ref();
    let bmc = src
        .and_then(|s| s.serial_number.clone().or_else(|| s.bmc_host.clone()))
        .unwrap_or_default();
    Group {
        bmc,
        scope: i.header.scope,
        domain_id: i.header.domain_id.clone(),
    }
}

/// Full authentication of one archive with the keys of this home.
fn verify(ctx: &Context, remote: Option<&Remote>, e: &Entry) -> Result<(), OpsError> {
    let ks = KeyStore::new(ctx.home());
    let lookup = |k: &Uuid| {
        ks.material(k, false)
            .ok()
            .map(|(info, key)| envelope::OpeningKey::new(key, info.scope, info.domain_id))
    };
    let id = e.inspection.header.id;
    match (remote, &e.key) {
        (Some(r), Some(key)) => {
            let dir = tempfile::tempdir_in(ctx.home().dir()).map_err(|source| OpsError::Write {
                what: "a temporary directory",
                path: ctx.home().dir().to_path_buf(),
                source,
            })?;
            let dest = dir.path().join(format!("{id}.vault"));
            let mut tmp = AtomicFile::create(&dest, 0o600).map_err(|source| OpsError::Write {
                what: "a temporary file",
                path: dest.clone(),
                source,
            })?;
            r.fetch_into(&id, key, &mut tmp, &lookup)?;
            Ok(())
        }
        _ => {
            let store = ArchiveStore::new(ctx.home());
            let path = store.path_of(&id);
            let f = File::open(&path).map_err(OpsError::file(&path))?;
            envelope::verify(BufReader::with_capacity(envelope::READ_BUFFER, f), &lookup)
                .map_err(crate::store::archive_err(&path))?;
            Ok(())
        }
    }
}

fn remove(ctx: &Context, remote: Option<&Remote>, e: &Entry, dry_run: bool) -> Action {
    let id = e.inspection.header.id;
    // A remote object under a retention date in the future cannot go: say so.
    let mut version = None;
    if let (Some(r), Some(key)) = (remote, &e.key) {
        match r.client().head(key) {
            Ok(Some(h)) => {
                if let Some(until) = &h.retain_until
                    && still_locked(until)
                {
                    return Action::Locked {
                        until: until.clone(),
                    };
                }
                version = h.version_id;
            }
            Ok(None) => {
                return Action::Failed {
                    error: "the object is no longer there".into(),
                };
            }
            Err(err) => {
                return Action::Failed {
                    error: err.to_string(),
                };
            }
        }
    }
    if dry_run {
        return Action::Remove;
    }
    let subject = Subject {
        archive_id: Some(id.to_string()),
        detail: Some(match (remote, &e.key) {
            (Some(r), Some(k)) => format!("s3://{}/{k}", r.url.bucket),
            _ => "home".into(),
        }),
        ..Subject::default()
    };
    let r = ctx.audited("backup.prune", subject, |s| match (remote, &e.key) {
        (Some(r), Some(key)) => Ok(r.delete_version(key, version.as_deref())?),
        _ => {
            let lock = ctx.home().lock()?;
            s.intent()?;
            Ok(ArchiveStore::new(ctx.home()).delete(&lock, &id)?)
        }
    });
    match r {
        Ok(()) => Action::Remove,
        Err(err) => Action::Failed {
            error: err.to_string(),
        },
    }
}

/// Whether an RFC 3339 retain-until date is still in the future.
fn still_locked(until: &str) -> bool {
    use time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(until, &Rfc3339) {
        Ok(t) => t > crate::clock::now(),
        // A date we cannot read: assume the store means it.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{ArchiveHeader, Source};

    /// A home with a system key and archives of two BMCs at chosen times.
    fn home_with(archives: &[(&str, &str)]) -> (tempfile::TempDir, Context, Vec<Uuid>) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::open(&dir.path().join("home"), "tester").unwrap();
        let lock = ctx.home().lock().unwrap();
        let ks = KeyStore::new(ctx.home());
        let k = ks
            .create(&lock, Scope::System, None, true, "", "tester")
            .unwrap();
        let (_, key) = ks.material(&k.id, true).unwrap();
        let store = ArchiveStore::new(ctx.home());
        let ids = archives
            .iter()
            .map(|(serial, at)| {
                let mut h = ArchiveHeader::new(
                    Scope::System,
                    None,
                    "tester",
                    "",
                    Some(Source {
                        serial_number: Some(serial.to_string()),
                        ..Source::default()
                    }),
                );
                h.created_at = at.to_string();
                store
                    .seal_new(
                        &lock,
                        &h,
                        crate::envelope::SealOptions::new(k.id, &key),
                        &b"config"[..],
                    )
                    .unwrap();
                h.id
            })
            .collect();
        drop(lock);
        (dir, ctx, ids)
    }

    fn actions(r: &PruneReport) -> Vec<(Uuid, Action)> {
        r.items.iter().map(|i| (i.id, i.action.clone())).collect()
    }

    #[test]
    fn dry_run_changes_nothing_then_prune_removes_per_bmc_and_audits() {
        let (_d, ctx, ids) = home_with(&[
            ("SER-A", "2026-11-01T10:00:00Z"),
            ("SER-A", "2026-11-02T10:00:00Z"),
            ("SER-A", "2026-11-03T10:00:00Z"),
            ("SER-B", "2026-10-01T10:00:00Z"),
        ]);
        let opts = PruneOptions {
            policy: Policy {
                keep_last: Some(1),
                ..Policy::default()
            },
            dry_run: true,
        };
        let store = ArchiveStore::new(ctx.home());
        let before = store.list().unwrap().len();
        let r = prune(&ctx, None, &opts).unwrap();
        assert_eq!(
            store.list().unwrap().len(),
            before,
            "dry run removed something"
        );
        let acts = actions(&r);
        // Per BMC: SER-A keeps its newest, SER-B (one archive) keeps it.
        assert!(acts.contains(&(ids[2], Action::Keep)));
        assert!(acts.contains(&(ids[3], Action::Keep)));
        assert!(acts.contains(&(ids[0], Action::Remove)));
        assert!(acts.contains(&(ids[1], Action::Remove)));
        let log = std::fs::read_to_string(ctx.home().dir().join("audit.log")).unwrap_or_default();
        assert!(
            !log.contains("backup.prune"),
            "a dry run wrote audit records"
        );

        let real = prune(
            &ctx,
            None,
            &PruneOptions {
                dry_run: false,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(real.count(|a| *a == Action::Remove), 2);
        let left: Vec<Uuid> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|s| s.inspection.unwrap().header.id)
            .collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&ids[2]) && left.contains(&ids[3]));
        let log = std::fs::read_to_string(ctx.home().dir().join("audit.log")).unwrap();
        for id in &ids[..2] {
            assert!(
                log.lines()
                    .any(|l| l.contains("backup.prune") && l.contains(&id.to_string())),
                "no audit record for {id}"
            );
        }
    }

    #[test]
    fn the_newest_verified_archive_is_kept_when_the_newest_is_damaged() {
        let (_d, ctx, ids) = home_with(&[
            ("SER-A", "2026-11-01T10:00:00Z"),
            ("SER-A", "2026-11-02T10:00:00Z"),
            ("SER-A", "2026-11-03T10:00:00Z"),
        ]);
        // Damage the newest archive's payload: it still inspects, but no longer verifies.
        let store = ArchiveStore::new(ctx.home());
        let path = store.path_of(&ids[2]);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let opts = PruneOptions {
            policy: Policy {
                keep_last: Some(1),
                ..Policy::default()
            },
            dry_run: false,
        };
        let r = prune(&ctx, None, &opts).unwrap();
        let item = |id: Uuid| r.items.iter().find(|i| i.id == id).unwrap();
        assert_eq!(item(ids[2]).action, Action::Keep);
        assert_eq!(item(ids[2]).reasons, vec![Reason::Last]);
        assert_eq!(item(ids[1]).action, Action::Keep);
        assert_eq!(item(ids[1]).reasons, vec![Reason::NewestVerified]);
        assert_eq!(item(ids[0]).action, Action::Remove);
    }

    #[test]
    fn nothing_of_a_bmc_goes_when_none_of_its_archives_verifies() {
        let (_d, ctx, ids) = home_with(&[
            ("SER-A", "2026-11-01T10:00:00Z"),
            ("SER-A", "2026-11-02T10:00:00Z"),
        ]);
        // Without the key nothing can be authenticated.
        let lock = ctx.home().lock().unwrap();
        let ks = KeyStore::new(ctx.home());
        let k = ks.list(None, None).unwrap()[0].id;
        ks.delete(&lock, &k, true, &[]).unwrap();
        drop(lock);
        let opts = PruneOptions {
            policy: Policy {
                keep_last: Some(1),
                ..Policy::default()
            },
            dry_run: false,
        };
        let r = prune(&ctx, None, &opts).unwrap();
        assert!(r.items.iter().all(|i| i.action == Action::Keep));
        assert!(
            r.items
                .iter()
                .all(|i| i.reasons.contains(&Reason::GroupUnverified))
        );
        assert_eq!(
            ArchiveStore::new(ctx.home()).list().unwrap().len(),
            ids.len()
        );
    }

    #[test]
    fn a_policy_that_keeps_nothing_is_refused() {
        let (_d, ctx, _) = home_with(&[("SER-A", "2026-11-01T10:00:00Z")]);
        let opts = PruneOptions {
            policy: Policy::default(),
            dry_run: false,
        };
        assert!(matches!(
            prune(&ctx, None, &opts),
            Err(OpsError::PolicyKeepsNothing)
        ));
    }
}

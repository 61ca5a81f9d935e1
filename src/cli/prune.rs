//! `vault backup prune`: retention policies (restic's `forget`) over the home or a remote.
use clap::Args;
use serde::Serialize;
use uuid::Uuid;

use super::remote::credential_env;
use super::{CliError, CliResult, Ctx};
use crate::errors::Kind;
use crate::ops::prune::{self, Action, PruneOptions};
use crate::ops::remote as ops_remote;
use crate::retention::Policy;
use crate::scope::Scope;

#[derive(Args)]
#[command(
    long_about = "Remove archives that a retention policy no longer keeps, per BMC (serial \
number, else host), scope and domain, as restic's 'forget' does: --keep-last N keeps the N \
newest; --keep-daily/--keep-weekly/--keep-monthly N keep the newest archive of each of the N \
most recent days/ISO weeks/months that have one (UTC). An archive kept by any rule stays. The \
newest archive of each BMC that verifies (fully authenticated with this home's keys; on a \
remote, downloaded and checked end to end) is never removed, and if none verifies nothing of \
that BMC is. --dry-run lists what would go and why. Every removal is audited. On a remote, \
objects under S3 Object Lock are reported as locked, not as errors."
)]
pub struct PruneArgs {
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    #[arg(long, value_name = "D")]
    keep_daily: Option<u32>,
    #[arg(long, value_name = "W")]
    keep_weekly: Option<u32>,
    #[arg(long, value_name = "M")]
    keep_monthly: Option<u32>,
    /// Prune this remote instead of the home.
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// Show what would be removed and why; change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl PruneArgs {
    fn resolve(&self) -> PruneOptions {
        PruneOptions {
            policy: Policy {
                keep_last: self.keep_last,
                keep_daily: self.keep_daily,
                keep_weekly: self.keep_weekly,
                keep_monthly: self.keep_monthly,
            },
            dry_run: self.dry_run,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned<'a> {
    pub dry_run: bool,
    pub removed: usize,
    pub kept: usize,
    pub locked: usize,
    pub failed: usize,
    pub resources: Vec<PrunedItem<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrunedItem<'a> {
    pub id: Uuid,
    pub bmc: &'a str,
    pub scope: Scope,
    #[serde(rename = "domainID", skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<&'a str>,
    pub created_at: &'a str,
    /// keep, remove (removed), would-remove (--dry-run), locked, failed.
    pub action: &'static str,
    pub reasons: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<&'a str>,
}

pub fn run(ctx: &Ctx, a: PruneArgs) -> CliResult {
    let mut opts = a.resolve();
    // No --keep-* at all: the retention of config.toml (keep-last …), if any.
    if opts.policy == Policy::default() {
        opts.policy = super::everyday::retention_defaults(ctx)?;
    }
    let ops = ctx.ops()?;
    let remote = match &a.remote {
        Some(name) => Some(ops_remote::connect(&ops, name, &credential_env())?),
        None => None,
    };
    let report = prune::prune(&ops, remote.as_ref(), &opts)?;
    let items: Vec<PrunedItem> = report
        .items
        .iter()
        .map(|i| PrunedItem {
            id: i.id,
            bmc: &i.group.bmc,
            scope: i.group.scope,
            domain_id: i.group.domain_id.as_deref(),
            created_at: &i.created_at,
            action: match (&i.action, report.dry_run) {
                (Action::Keep, _) => "keep",
                (Action::Remove, true) => "would-remove",
                (Action::Remove, false) => "remove",
                (Action::Locked { .. }, _) => "locked",
                (Action::Failed { .. }, _) => "failed",
            },
            reasons: i.reasons.iter().map(|r| r.as_str()).collect(),
            retain_until: match &i.action {
                Action::Locked { until } => Some(until),
                _ => None,
            },
            error: match &i.action {
                Action::Failed { error } => Some(error),
                _ => None,
            },
            object: i.object.as_deref(),
        })
        .collect();
    let failed = report.count(|a| matches!(a, Action::Failed { .. }));
    ctx.print(&Pruned {
        dry_run: report.dry_run,
        removed: report.count(|a| *a == Action::Remove),
        kept: report.count(|a| *a == Action::Keep),
        locked: report.count(|a| matches!(a, Action::Locked { .. })),
        failed,
        resources: items,
    })?;
    if failed > 0 {
        return Err(CliError::new(
            Kind::Io,
            format!(
                "{failed} archive(s) could not be removed; see their 'error' above and the audit log"
            ),
        ));
    }
    Ok(())
}

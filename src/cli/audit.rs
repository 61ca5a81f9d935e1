//! `vault audit …`: the operations log and archive sweeps, read-only (nothing here
//! appends to the log or changes an archive). Each command resolves its arguments,
//! calls one operation of [`crate::ops::audit`] and prints one record; the verdict
//! (exit status 5 for a broken chain or an integrity failure) comes after the record,
//! so scripts get both.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time};

use super::output::Format;
use super::records::{AuditRecords, AuditVerified};
use super::{CliError, CliResult, Ctx};
use crate::audit::AuditFilter;
use crate::errors::Kind;
use crate::ops::audit::{self as ops_audit, Anchor, ArchiveSweep};
use crate::sweep;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Show audit records (oldest first), optionally filtered.
    Log(LogArgs),
    /// Check the hash chain of the audit log and print the anchor to keep elsewhere.
    #[command(
        long_about = "Check the hash chain of the audit log from its first record.\n\n\
Prints the number of intact records, the last hash and an anchor 'SEQ:HASH'. Keep the anchor \
somewhere an attacker cannot write (a ticket, a SIEM, another host): the chain alone cannot show \
that records were removed from its end, or that someone with write access rewrote it; \
'vault audit verify --anchor SEQ:HASH' can.\n\n\
Exit status: 0 if the chain (and the anchor, if given) checks out; 5 if a record was edited, \
deleted, inserted or moved (the first such record is named), or the anchor does not match."
    )]
    Verify {
        /// An anchor 'SEQ:HASH' printed by an earlier verify: check that records 1..SEQ are
        /// unchanged and still present.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Option<String>,
    },
    /// Sweep archive files and directories for integrity and policy findings, without keys.
    Archives(ArchivesArgs),
}

#[derive(Args)]
pub struct LogArgs {
    /// Records at or after this time: RFC 3339 (2026-11-21T08:00:00Z), a UTC date
    /// (2026-11-21) or an age (90m, 24h, 7d, 2w).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// An operation (keys.create) or a group (keys).
    #[arg(long, value_name = "OP")]
    operation: Option<String>,
    /// Records about this key id.
    #[arg(long = "key", value_name = "ID")]
    key_id: Option<String>,
    /// Records about this archive id.
    #[arg(long = "archive", value_name = "ID")]
    archive_id: Option<String>,
}

#[derive(Args)]
#[command(
    long_about = "Sweep archive files and directories (recursively) and report, for each file, \
the archive id, scope, key, creation time and findings. Without --verify only headers and \
trailers are read (no key needed, the same cost for any archive size); key state comes from \
this home's key store.\n\n\
Finding codes: unreadable, not-an-archive, unsupported-version, malformed, truncated, \
authentication-failed (--verify), key-missing, key-retired, key-rotation-overdue \
(--rotation-days), archive-too-old (--max-age).\n\n\
Symbolic links inside the directories are not followed, '.tmp-*' files (interrupted writes) \
are skipped, and directories deeper than 64 levels are not entered; each path not examined is \
listed under \"skipped\" with its reason (symlink, temporary, too-deep, special-file).\n\n\
Exit status: 5 if any file failed an integrity check (unreadable, not-an-archive, malformed, \
truncated, authentication-failed): a file in an archive directory that is not an intact archive \
is something to look at. Policy findings alone (key-missing, key-retired, key-rotation-overdue, \
archive-too-old) and unsupported-version (a newer vault can check it) exit 0: read the summary. \
3 if a named path does not exist."
)]
pub struct ArchivesArgs {
    /// Archive files and/or directories, or s3://BUCKET/PREFIX of a remote of this home.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Report archives created more than DAYS days ago (archive-too-old).
    #[arg(long, value_name = "DAYS")]
    max_age: Option<u64>,
    /// Report active keys created more than DAYS days ago (key-rotation-overdue).
    #[arg(long, value_name = "DAYS")]
    rotation_days: Option<u64>,
    /// On s3:// arguments: report objects whose Object Lock ends sooner than DAYS days
    /// from now, or that have none (retention-too-short).
    #[arg(long, value_name = "DAYS")]
    min_retention: Option<u32>,
    /// Also authenticate every archive whose key is in this home (reads whole files).
    #[arg(long)]
    verify: bool,
    /// A home public key file to trust (repeatable; from 'vault home public-key'): read
    /// every archive in full and report its signature as valid, invalid, unknown signer
    /// or unsigned, without any backup key.
    #[arg(long, value_name = "FILE")]
    trust: Vec<PathBuf>,
    /// Worker threads (default: the number of CPUs, at most 4).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    metrics: super::everyday::MetricsArgs,
}

pub fn run(ctx: &Ctx, c: AuditCmd) -> CliResult {
    match c {
        AuditCmd::Log(a) => log(ctx, &a),
        AuditCmd::Verify { anchor } => verify(ctx, anchor.as_deref()),
        AuditCmd::Archives(a) => archives(ctx, a),
    }
}

fn log(ctx: &Ctx, a: &LogArgs) -> CliResult {
    let since = a
        .since
        .as_deref()
        .map(|s| parse_since(s, crate::clock::now()))
        .transpose()
        .map_err(|e| CliError::new(Kind::Usage, e))?;
    let filter = AuditFilter {
        since,
        operation: a.operation.clone(),
        key_id: a.key_id.clone(),
        archive_id: a.archive_id.clone(),
    };
    // A table leaves the hashes out of its rows ('vault audit verify' checks them).
    let records = ops_audit::records(ctx.home_dir(), &filter)?;
    ctx.print(&AuditRecords {
        total: records.len(),
        records: &records,
    })
}

/// `--since`: RFC 3339, a date (midnight UTC), or an age `N{s,m,h,d,w}` before `now`.
fn parse_since(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return Ok(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc());
    }
    let bad = || {
        format!(
            "--since '{s}' is not a time: use RFC 3339 (2026-11-21T08:00:00Z), a date (2026-11-21) or an age (90m, 24h, 7d, 2w)"
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return Err(bad()),
    };
    now.checked_sub(d).ok_or_else(bad)
}

fn verify(ctx: &Ctx, anchor: Option<&str>) -> CliResult {
    let anchor = anchor.map(parse_anchor).transpose()?;
    let v = ops_audit::verify(ctx.home_dir(), anchor)?;
    ctx.print(&AuditVerified::new(&v))?;
    if let Some(t) = &v.report.torn_tail
        && v.report.is_intact()
    {
        ctx.notice(&format!(
            "the log ends with {} unterminated byte(s) at line {} (an interrupted append, not a record); the next operation removes them and records that it did",
            t.bytes, t.line
        ));
    }
    match v.problem {
        Some(p) => Err(p.into()),
        None => Ok(()),
    }
}

fn parse_anchor(s: &str) -> CliResult<Anchor> {
    let bad = || {
        CliError::new(
            Kind::Usage,
            format!(
                "--anchor '{s}' is not SEQ:HASH (e.g. 42:<64 hex digits>, as printed by 'vault audit verify')"
            ),
        )
    };
    let (seq, hash) = s.trim().split_once(':').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    let hash = hash.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(Anchor { seq, hash })
}

impl ArchivesArgs {
    /// The sweep asked for. s3://BUCKET/PREFIX arguments are swept on the remote of this
    /// home on that bucket (keyless, ranged reads).
    fn resolve(self, ctx: &Ctx) -> CliResult<ArchiveSweep> {
        let metrics = super::everyday::metrics_path(ctx, &self.metrics)?;
        let (s3, local): (Vec<PathBuf>, Vec<PathBuf>) = self
            .paths
            .into_iter()
            .partition(|p| p.to_str().is_some_and(|s| s.starts_with("s3://")));
        if !self.trust.is_empty() && !s3.is_empty() {
            // A remote sweep reads header and trailer only; --trust needs every byte.
            return Err(CliError::new(
                Kind::Usage,
                "--trust reads every byte of each archive and is not supported on s3:// paths; fetch them with 'vault backup fetch' and sweep the files, or sweep the remote without --trust",
            ));
        }
        ops_audit::check_paths(&local)?;
        let remotes = s3
            .iter()
            .map(|url| super::remote::remote_for_url(ctx, url.to_str().unwrap_or_default()))
            .collect::<CliResult<Vec<_>>>()?;
        Ok(ArchiveSweep {
            paths: local,
            remotes,
            max_age_days: self.max_age,
            rotation_days: self.rotation_days,
            min_retention_days: self.min_retention,
            verify: self.verify,
            trust: self.trust,
            threads: self.jobs,
            metrics,
            now: crate::clock::now(),
        })
    }
}

fn archives(ctx: &Ctx, a: ArchivesArgs) -> CliResult {
    let req = a.resolve(ctx)?;
    // A sweep must not create a vault home as a side effect: without one, no key is here.
    let home = if ctx.home_dir().exists() {
        Some(ctx.home()?)
    } else {
        None
    };
    let swept = ops_audit::sweep_archives(home.as_ref(), &req, &super::Notices)?;
    let report = super::hints::sweep_report(swept.report);
    ctx.print(&report)?;
    if swept.too_deep > 0 {
        ctx.notice(&format!(
            "{} director(ies) at the depth limit of {} levels were not entered; their paths are under \"skipped\" (reason \"too-deep\"): sweep them by name",
            swept.too_deep,
            sweep::MAX_DEPTH
        ));
    }
    let s = &report.summary;
    if ctx.format == Format::Table {
        ctx.notice(&format!(
            "{} file(s), {} archive(s): {} ok, {} with findings, {} integrity failure(s)",
            s.files, s.archives, s.ok, s.with_findings, s.integrity_failures
        ));
    }
    if s.integrity_failures > 0 {
        return Err(CliError::new(
            Kind::Integrity,
            format!(
                "{} of {} file(s) failed an integrity check (see their findings); do not restore them, use other copies",
                s.integrity_failures, s.files
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_dates_and_ages() {
        let now = OffsetDateTime::parse("2026-11-21T12:00:00Z", &Rfc3339).unwrap();
        let at = |s: &str| {
            let t = parse_since(s, now).unwrap();
            t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap()
        };
        assert_eq!(at("2026-11-20T08:00:00+01:00"), "2026-11-20T07:00:00Z");
        assert_eq!(at("2026-11-21"), "2026-11-21T00:00:00Z");
        assert_eq!(at("24h"), "2026-11-20T12:00:00Z");
        assert_eq!(at("7d"), "2026-11-14T12:00:00Z");
        assert_eq!(at("90m"), "2026-11-21T10:30:00Z");
        for bad in ["", "yesterday", "7", "d", "7y", "-1d", "2026-13-01"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn anchors_parse_strictly() {
        let h = "ab".repeat(32);
        assert_eq!(
            parse_anchor(&format!("7:{h}")).unwrap(),
            Anchor {
                seq: 7,
                hash: h.clone()
            }
        );
        assert_eq!(
            parse_anchor(&format!("7:{}", h.to_uppercase()))
                .unwrap()
                .hash,
            h
        );
        for bad in [
            "7",
            &format!("x:{h}"),
            "7:abc",
            &format!("7:{}zz", &h[..62]),
        ] {
            assert!(parse_anchor(bad).is_err(), "{bad}");
        }
    }
}

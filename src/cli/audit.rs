//! `vault audit …`: the operations log and archive sweeps. Read-only: nothing here
//! appends to the log or changes an archive.
use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time};
use uuid::Uuid;

use super::backup::key_lookup;
use super::output::Format;
use super::{CliError, CliResult, Ctx};
use crate::audit::{AnchorCheck, AuditError, AuditFilter, AuditLog, Broken, VerifyReport};
use crate::errors::Kind;
use crate::keystore::KeyStore;
use crate::sweep::{self, KeyStatus, SweepKeys, SweepOptions};

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
        AuditCmd::Archives(a) => archives(ctx, &a),
    }
}

fn audit_err(e: AuditError) -> CliError {
    e.into()
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
    let records = AuditLog::open(ctx.home_dir())
        .query(&filter)
        .map_err(audit_err)?;
    let mut rows: Vec<Value> = records
        .iter()
        .map(|r| serde_json::to_value(r).expect("records serialize"))
        .collect();
    if ctx.format == Format::Table {
        // Hashes make rows unreadably wide; 'vault audit verify' is what checks them.
        for r in &mut rows {
            if let Some(o) = r.as_object_mut() {
                o.remove("prevHash");
                o.remove("hash");
            }
        }
    }
    ctx.print(&json!({"total": rows.len(), "records": rows}))
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

fn verify_json(report: &VerifyReport) -> Value {
    json!({
        "intact": report.is_intact(),
        "records": report.records,
        "lastSeq": report.records,
        "lastHash": report.last_hash,
        "firstBroken": report.first_broken,
        "tornTail": report.torn_tail,
        "unfinished": report.unfinished,
        "anchor": format!("{}:{}", report.records, report.last_hash),
        "anchorNote": "record the anchor somewhere an attacker cannot write; 'vault audit verify --anchor SEQ:HASH' then detects a truncated or rewritten log",
    })
}

fn broken_sentence(log: &AuditLog, b: &Broken, intact: u64) -> String {
    let seq = b.seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
    format!(
        "audit log {} is broken at line {}{seq}: {}; the {intact} record(s) before it chain correctly, records from there on cannot be trusted. Keep the file as evidence and compare it with your last anchor or a backup copy",
        log.path().display(),
        b.line,
        b.reason
    )
}

fn verify(ctx: &Ctx, anchor: Option<&str>) -> CliResult {
    let anchor = anchor.map(parse_anchor).transpose()?;
    let log = AuditLog::open(ctx.home_dir());
    let report = log.verify().map_err(audit_err)?;
    let mut out = verify_json(&report);
    let mut failure = report
        .first_broken
        .as_ref()
        .map(|b| broken_sentence(&log, b, report.records));
    if let Some((seq, hash)) = &anchor {
        let check = log.verify_against_anchor(*seq, hash).map_err(audit_err)?;
        let problem = match &check {
            AnchorCheck::Found => None,
            AnchorCheck::HashDiffers { found, .. } => Some(format!(
                "record {seq} of audit log {} now has hash {found}, not the anchored {hash}: the log up to it was rewritten",
                log.path().display()
            )),
            AnchorCheck::Truncated { records } => Some(format!(
                "audit log {} ends after {records} intact record(s), before the anchored seq {seq}: records were removed from its end",
                log.path().display()
            )),
            AnchorCheck::ChainBroken { broken } => {
                Some(broken_sentence(&log, broken, broken.line.saturating_sub(1)))
            }
        };
        out["anchorCheck"] = json!({
            "anchor": format!("{seq}:{hash}"),
            "matches": problem.is_none(),
            "result": check,
        });
        if failure.is_none() {
            failure = problem;
        }
    }
    ctx.print(&out)?;
    if let Some(t) = &report.torn_tail
        && report.is_intact()
    {
        ctx.notice(&format!(
            "the log ends with {} unterminated byte(s) at line {} (an interrupted append, not a record); the next operation removes them and records that it did",
            t.bytes, t.line
        ));
    }
    match failure {
        Some(msg) => Err(CliError::new(Kind::Integrity, msg)),
        None => Ok(()),
    }
}

fn parse_anchor(s: &str) -> CliResult<(u64, String)> {
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
    Ok((seq, hash))
}

fn archives(ctx: &Ctx, a: &ArchivesArgs) -> CliResult {
    let metrics = super::everyday::metrics_path(ctx, &a.metrics)?;
    let started = std::time::Instant::now();
    // s3://BUCKET/PREFIX arguments are swept on the remote (keyless, ranged reads).
    let (s3, local): (Vec<PathBuf>, Vec<PathBuf>) = a
        .paths
        .iter()
        .cloned()
        .partition(|p| p.to_str().is_some_and(|s| s.starts_with("s3://")));
    if !a.trust.is_empty() && !s3.is_empty() {
        // A remote sweep reads header and trailer only; --trust needs every byte.
        return Err(CliError::new(
            Kind::Usage,
            "--trust reads every byte of each archive and is not supported on s3:// paths; fetch them with 'vault backup fetch' and sweep the files, or sweep the remote without --trust",
        ));
    }
    for p in &local {
        if std::fs::metadata(p).is_err() {
            return Err(CliError::new(
                Kind::NotFound,
                format!(
                    "{} does not exist (or cannot be reached); check the path",
                    p.display()
                ),
            ));
        }
    }
    // A sweep must not create a vault home as a side effect: without one, no key is here.
    let home = if ctx.home_dir().exists() {
        Some(ctx.home()?)
    } else {
        None
    };
    let statuses: HashMap<Uuid, KeyStatus> = match &home {
        Some(h) => {
            let deps = KeyStore::new(h).dependencies()?;
            KeyStore::new(h)
                .list(None, None)?
                .into_iter()
                .map(|k| {
                    (
                        k.id,
                        KeyStatus {
                            state: k.state,
                            created_at: k.created_at,
                            depends_on: deps.of(&k.id),
                        },
                    )
                })
                .collect()
        }
        None => HashMap::new(),
    };
    let status = |id: &Uuid| statuses.get(id).cloned();
    let threads = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get().min(4))
            .unwrap_or(1)
    });
    let opts = SweepOptions {
        trusted: super::backup::trusted_keys(&a.trust)?,
        max_age_days: a.max_age,
        rotation_days: a.rotation_days,
        now: crate::clock::now(),
        threads,
    };
    let report = match (&home, a.verify) {
        (Some(h), true) => {
            let ks = KeyStore::new(h);
            let material = key_lookup(&ks)?;
            let keys = SweepKeys {
                status: &status,
                material: Some(&material),
            };
            sweep::sweep(&local, &keys, &opts)
        }
        _ => {
            let keys = SweepKeys {
                status: &status,
                material: None,
            };
            sweep::sweep(&local, &keys, &opts)
        }
    };
    let report = if s3.is_empty() {
        report
    } else {
        let keys = SweepKeys {
            status: &status,
            material: None,
        };
        let mut all = report.archives;
        for url in &s3 {
            let remote = super::remote::remote_for_url(ctx, url.to_str().unwrap_or_default())?;
            all.extend(crate::ops::remote::sweep(
                &remote,
                &keys,
                &opts,
                a.min_retention,
            )?);
        }
        sweep::summarize(all, report.skipped)
    };
    let mut out = serde_json::to_value(&report).expect("sweep report serializes");
    if ctx.format == Format::Table {
        // Nested findings do not fit a table cell: show their codes.
        if let Some(rows) = out["archives"].as_array_mut() {
            for (row, a) in rows.iter_mut().zip(&report.archives) {
                let codes: Vec<&str> = a.findings.iter().map(|f| f.code.as_str()).collect();
                row["findings"] = json!(codes.join(","));
            }
        }
    }
    if let Some(m) = &metrics {
        super::everyday::write_sweep_metrics(ctx, m, &report.summary, started);
    }
    ctx.print(&out)?;
    let too_deep = report
        .skipped
        .iter()
        .filter(|k| k.reason == sweep::SkipReason::TooDeep)
        .count();
    if too_deep > 0 {
        ctx.notice(&format!(
            "{too_deep} director(ies) at the depth limit of {} levels were not entered; their paths are under \"skipped\" (reason \"too-deep\"): sweep them by name",
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
        assert_eq!(parse_anchor(&format!("7:{h}")).unwrap(), (7, h.clone()));
        assert_eq!(
            parse_anchor(&format!("7:{}", h.to_uppercase())).unwrap().1,
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

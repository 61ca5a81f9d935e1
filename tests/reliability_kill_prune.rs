//! Issue #16, crash safety of `backup prune`: the real binary is killed with SIGKILL at
//! random moments while it applies a retention policy to the home; after every kill:
//! - every archive the policy keeps (as `--dry-run` listed it just before) is still there
//!   and verifies: a kill never removes what the policy keeps;
//! - every archive left under `archives/` is whole (`backup list` reads each one, none is
//!   skipped as unreadable), and only archives the policy removes are gone;
//! - the audit chain verifies, and at most one removal (the one the kill cut between the
//!   unlink and its record) lacks its `backup.prune` record;
//! - running the same prune again to the end leaves exactly the kept set.
//!
//! A kill before the first removal or after the last proves little, so the campaign runs
//! until `VAULT_PRUNE_KILL_MIN_MIDWAY` kills (default 3) landed between the two (some but
//! not all of the archives to remove were gone), and fails if `VAULT_PRUNE_KILL_RUNS`
//! rounds (default 40) are not enough.
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn archives(home: &Path) -> BTreeSet<String> {
    std::fs::read_dir(home.join("archives"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".vault")
                .map(str::to_string)
        })
        .collect()
}

/// Ids the policy keeps and removes, as `--dry-run` says.
fn plan(v: &Vault, policy: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut args = vec!["backup", "prune", "--dry-run"];
    args.extend_from_slice(policy);
    let out = v.ok(&args);
    let mut keep = BTreeSet::new();
    let mut remove = BTreeSet::new();
    for item in out["resources"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap().to_string();
        match item["action"].as_str().unwrap() {
            "keep" => keep.insert(id),
            "would-remove" => remove.insert(id),
            other => panic!("unexpected action {other} in a local dry run: {item}"),
        };
    }
    (keep, remove)
}

/// Runs prune, killing it with SIGKILL after `delay` unless it finished first.
fn run_prune(v: &Vault, policy: &[&str], delay: Option<Duration>) -> (bool, Duration) {
    let start = Instant::now();
    let mut child = v
        .cmd(&[&["backup", "prune"], policy].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let Some(delay) = delay else {
        assert!(child.wait().unwrap().success(), "prune failed");
        return (false, start.elapsed());
    };
    std::thread::sleep(delay);
    let killed = match child.try_wait().unwrap() {
        Some(_) => false,
        None => {
            child.kill().unwrap(); // SIGKILL
            true
        }
    };
    child.wait().unwrap();
    (killed, start.elapsed())
}

fn audited_prunes(home: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(home.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["operation"] == "backup.prune" && r["result"] == "success")
        .filter_map(|r| r["archiveId"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn sigkill_during_prune_never_removes_what_the_policy_keeps() {
    let rounds = env_u64("VAULT_PRUNE_KILL_RUNS", 40);
    let min_midway = env_u64("VAULT_PRUNE_KILL_MIN_MIDWAY", 3);
    let per_round = 10;
    let policy = ["--keep-last", "3"];
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    let input = v.path("config.bak");
    let mut seed = 1u64;
    let add_archives = |seed: &mut u64| {
        for _ in 0..per_round {
            *seed += 1;
            std::fs::write(&input, bytes(20_000, *seed)).unwrap();
            v.ok(&["backup", "create", "--file", s(&input)]);
        }
    };

    // Calibration: one prune run to the end tells how long a run takes.
    add_archives(&mut seed);
    let (keep, _) = plan(&v, &policy);
    let (_, full) = run_prune(&v, &policy, None);
    assert_eq!(archives(&v.home), keep);

    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let (mut kills, mut midway) = (0u64, 0u64);
    let mut round = 0;
    while midway < min_midway {
        round += 1;
        assert!(
            round <= rounds,
            "{rounds} rounds gave {midway} kills between the first and the last removal (of {kills} kills); raise VAULT_PRUNE_KILL_RUNS"
        );
        add_archives(&mut seed);
        let before = archives(&v.home);
        let (keep, remove) = plan(&v, &policy);
        assert_eq!(keep.len(), 3);
        assert_eq!(&keep | &remove, before);
        let audited_before = audited_prunes(&v.home);

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = full.mul_f64((x % 1000) as f64 / 1000.0 * 1.2);
        let (killed, _) = run_prune(&v, &policy, Some(delay));
        kills += u64::from(killed);

        let after = archives(&v.home);
        let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
        assert!(
            keep.is_subset(&after),
            "round {round}: a kept archive is gone: {:?}",
            keep.difference(&after).collect::<Vec<_>>()
        );
        assert!(gone.is_subset(&remove), "round {round}: {gone:?}");
        if killed && !gone.is_empty() && gone.len() < remove.len() {
            midway += 1;
        }
        // Everything left is whole: the listing reads every file and skips none.
        let listed = v.run(&["backup", "list"]);
        assert!(listed.status.success());
        let err = String::from_utf8_lossy(&listed.stderr);
        assert!(!err.contains("skipping"), "round {round}: {err}");
        let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert_eq!(json["total"].as_u64(), Some(after.len() as u64));
        for id in &keep {
            v.ok(&["backup", "verify", "--id", id]);
        }
        let report = vault::audit::AuditLog::open(&v.home).verify().unwrap();
        assert!(report.is_intact(), "round {round}: audit chain broken");
        let audited: BTreeSet<String> = audited_prunes(&v.home)
            .difference(&audited_before)
            .cloned()
            .collect();
        let unaudited = gone.difference(&audited).count();
        assert!(
            unaudited <= 1,
            "round {round}: {unaudited} removals without their audit record"
        );

        // The same prune, run to the end, leaves exactly what the policy keeps.
        run_prune(&v, &policy, None);
        assert_eq!(archives(&v.home), keep, "round {round}");
        let audited_now = audited_prunes(&v.home);
        let finished: BTreeSet<String> = remove.difference(&gone).cloned().collect();
        assert!(finished.is_subset(&audited_now), "round {round}");
    }
    eprintln!(
        "prune kill campaign: {round} rounds, {kills} kills, {midway} between the first and the last removal (a full run: {full:?})"
    );
}

//! Issue #7, concurrency: several processes doing random mixed operations on one home
//! for a while leave it consistent — every key present and usable, every archive
//! verifying, exactly one default per scope/domain, and an intact audit chain holding
//! exactly one record per audited operation the workers ran (success or failure), so no
//! append was lost or duplicated and no two processes forked the chain.
//!
//! Every kind of operation must have succeeded at least `VAULT_SOAK_MIN_PER_KIND` times
//! (default 3) while others ran: past the time budget the workers run only the kinds
//! still short of it, and the test fails if they cannot reach it within a hard limit.
//!
//! Default `cargo test`: 6 workers for 8 s. Full soak:
//! `VAULT_SOAK_SECS=60 cargo test --release --test reliability_concurrency -- --nocapture`.
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

const SCOPES: [&[&str]; 3] = [
    &[],
    &["--scope", "domain", "--domain", "dom-a"],
    &["--scope", "domain", "--domain", "dom-b"],
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    /// Operations run, by name: (succeeded, failed).
    ops: BTreeMap<&'static str, (u64, u64)>,
    /// Audit records the operations must have appended.
    audit_records: u64,
    /// Failures that must not happen whatever the interleaving.
    anomalies: Vec<String>,
}

fn archive_ids(home: &Path) -> Vec<String> {
    std::fs::read_dir(home.join("archives"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    (!n.starts_with(".tmp-"))
                        .then(|| n.strip_suffix(".vault").map(str::to_string))
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A failure that only a concurrent deletion can explain.
fn gone(stderr: &str) -> bool {
    stderr.contains("No such file") || stderr.contains("no archive with id")
}

/// Every kind the workers run, with the selector value that picks it.
const KINDS: [(&str, u64); 9] = [
    ("keys create", 0),
    ("keys rotate", 2),
    ("keys set-default", 3),
    ("backup create", 4),
    ("backup rewrap", 7),
    ("backup verify", 8),
    ("backup extract", 10),
    ("backup delete", 11),
    ("keys download", 12),
];

/// The kinds that have not yet succeeded `min` times.
fn short_of(tally: &Mutex<Tally>, min: u64) -> Vec<u64> {
    let t = tally.lock().unwrap();
    KINDS
        .iter()
        .filter(|(k, _)| t.ops.get(k).map_or(0, |c| c.0) < min)
        .map(|(_, sel)| *sel)
        .collect()
}

fn worker(
    v: &Vault,
    n: usize,
    secs: u64,
    min: u64,
    plain: &BTreeMap<String, String>,
    tally: &Mutex<Tally>,
) {
    let mut rng = n as u64 * 0x9E37_79B9 + 7;
    let mut next = move |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    // Past the time budget, only the kinds still short of `min`, up to a hard limit.
    let hard_limit = deadline + Duration::from_secs(60 + 3 * secs);
    let pw = v.path(&format!("pw-worker-{n}"));
    std::fs::write(&pw, PASSWORD).unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = v.path(&format!("out-{n}"));
    let kf = v.path(&format!("key-{n}.vkey"));
    let input = v.path(&format!("in-{n}"));
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        let pick = if now < deadline {
            next(13)
        } else {
            let short = short_of(tally, min);
            if short.is_empty() || now > hard_limit {
                break;
            }
            short[next(short.len() as u64) as usize]
        };
        seq += 1;
        let scope = SCOPES[next(3) as usize];
        let ids = archive_ids(&v.home);
        let some_archive = (!ids.is_empty()).then(|| ids[next(ids.len() as u64) as usize].clone());
        let archive_file = |id: &str| {
            v.home
                .join("archives")
                .join(format!("{id}.vault"))
                .display()
                .to_string()
        };
        let mut args: Vec<String> = Vec::new();
        let mut push = |a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
        let name: &'static str = match pick {
            0 | 1 => {
                push(&["keys", "create"]);
                push(scope);
                if next(3) == 0 {
                    push(&["--default"]);
                }
                "keys create"
            }
            2 => {
                push(&["keys", "rotate"]);
                push(scope);
                "keys rotate"
            }
            3 => {
                let keys = v.ok(&["keys", "list"]);
                let all = keys["resources"].as_array().unwrap();
                let k = &all[next(all.len() as u64) as usize];
                push(&["keys", "set-default", "--id", k["id"].as_str().unwrap()]);
                "keys set-default"
            }
            4..=6 => {
                let body = bytes(1000 + next(200_000) as usize, n as u64 * 1_000_003 + seq);
                std::fs::write(&input, &body).unwrap();
                let desc = format!("{:x}", Sha256::digest(&body));
                push(&[
                    "backup",
                    "create",
                    "--file",
                    s(&input),
                    "--description",
                    &desc,
                ]);
                push(scope);
                "backup create"
            }
            7 => {
                push(&["backup", "rewrap", "--all"]);
                if next(8) == 0 {
                    push(&["--reencrypt"]);
                }
                "backup rewrap"
            }
            8 | 9 => match &some_archive {
                Some(id) => {
                    push(&["backup", "verify", "--file", &archive_file(id)]);
                    "backup verify"
                }
                None => continue,
            },
            10 => match &some_archive {
                Some(id) => {
                    push(&[
                        "backup",
                        "extract",
                        "--file",
                        &archive_file(id),
                        "--out",
                        s(&out),
                    ]);
                    "backup extract"
                }
                None => continue,
            },
            11 => match &some_archive {
                Some(id) if ids.len() > 4 => {
                    push(&["backup", "delete", "--id", id]);
                    "backup delete"
                }
                _ => continue,
            },
            _ => {
                let keys = v.ok(&["keys", "list"]);
                let all = keys["resources"].as_array().unwrap();
                let k = &all[next(all.len() as u64) as usize];
                push(&[
                    "keys",
                    "download",
                    "--id",
                    k["id"].as_str().unwrap(),
                    "--file",
                    s(&kf),
                ]);
                push(&["--password-file", s(&pw)]);
                push(&FAST_KDF);
                "keys download"
            }
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = v.run(&argv);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let ok = o.status.success();
        let mut t = tally.lock().unwrap();
        let e = t.ops.entry(name).or_default();
        if ok {
            e.0 += 1
        } else {
            e.1 += 1
        }
        // Exactly one record per invocation, except rewrap: one per archive it handled
        // (its JSON lists them, on success and on partial failure alike).
        t.audit_records += if name == "backup rewrap" {
            serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .map(|j| j["total"].as_u64().unwrap())
                .unwrap_or(0)
        } else {
            1
        };
        if o.status.code().is_none() || o.status.code() == Some(101) {
            t.anomalies.push(format!("{argv:?} crashed: {stderr}"));
        }
        if stderr.contains("could not append to the audit log") {
            t.anomalies.push(format!("{argv:?}: {stderr}"));
        }
        let must_work = matches!(
            name,
            "keys create" | "keys rotate" | "backup create" | "keys download"
        );
        if !ok && (must_work || name == "backup rewrap") {
            t.anomalies.push(format!("{argv:?} failed: {stderr}"));
        }
        if !ok
            && matches!(name, "backup verify" | "backup extract" | "backup delete")
            && !gone(&stderr)
        {
            t.anomalies.push(format!("{argv:?} failed: {stderr}"));
        }
        if ok && name == "backup extract" {
            // The plaintext must be the one sealed (its SHA-256 is the description).
            let id = some_archive.as_deref().unwrap();
            let got = format!("{:x}", Sha256::digest(std::fs::read(&out).unwrap()));
            let want = plain.get(id).cloned().or_else(|| {
                let i = vault::store::inspect_file(Path::new(&archive_file(id))).ok()?;
                Some(i.header.description)
            });
            if want.is_some_and(|w| w != got) {
                t.anomalies
                    .push(format!("extract of {id}: wrong plaintext"));
            }
        }
    }
}

#[test]
fn concurrent_mixed_operations_leave_a_consistent_home() {
    let secs = env_u64("VAULT_SOAK_SECS", 8);
    let workers = env_u64("VAULT_SOAK_WORKERS", 6) as usize;
    let min = env_u64("VAULT_SOAK_MIN_PER_KIND", 3);
    let v = Arc::new(Vault::new());
    for scope in SCOPES {
        let mut a = vec!["keys", "create"];
        a.extend_from_slice(scope);
        v.ok(&a);
    }
    let mut plain = BTreeMap::new();
    for (i, scope) in SCOPES.iter().enumerate() {
        let f = v.path(&format!("seed-{i}"));
        let body = bytes(70_000, i as u64);
        std::fs::write(&f, &body).unwrap();
        let desc = format!("{:x}", Sha256::digest(&body));
        let mut a = vec!["backup", "create", "--file", s(&f), "--description", &desc];
        a.extend_from_slice(scope);
        let id = v.ok(&a)["id"].as_str().unwrap().to_string();
        plain.insert(id, desc);
    }
    let base = vault::audit::AuditLog::open(&v.home)
        .verify()
        .unwrap()
        .records;
    let plain = Arc::new(plain);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let handles: Vec<_> = (0..workers)
        .map(|n| {
            let (v, plain, tally) = (v.clone(), plain.clone(), tally.clone());
            std::thread::spawn(move || worker(&v, n, secs, min, &plain, &tally))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let t = tally.lock().unwrap();

    // The audit chain: intact, no torn tail, and exactly the records the workers caused.
    let report = vault::audit::AuditLog::open(&v.home).verify().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.records, base + t.audit_records, "audit records");

    // Keys: all usable, exactly one default per scope/domain.
    let keys = v.ok(&["keys", "list"]);
    let keys = keys["resources"].as_array().unwrap();
    let home = vault::keystore::Home::open(&v.home).unwrap();
    let ks = vault::keystore::KeyStore::new(&home);
    for k in keys {
        let id = uuid::Uuid::parse_str(k["id"].as_str().unwrap()).unwrap();
        ks.material(&id, false).unwrap();
    }
    for scope in ["", "dom-a", "dom-b"] {
        let defaults = keys
            .iter()
            .filter(|k| k["domainID"].as_str().unwrap_or("") == scope && k["isDefault"] == true)
            .count();
        assert_eq!(defaults, 1, "defaults of {scope:?}");
    }
    // Archives: all listed, all verify; no temporaries left behind.
    let ids = archive_ids(&v.home);
    let listed = v.ok(&["backup", "list"]);
    assert_eq!(listed["total"].as_u64().unwrap() as usize, ids.len());
    for id in &ids {
        v.ok(&["backup", "verify", "--id", id]);
    }
    let temps = std::fs::read_dir(v.home.join("archives"))
        .unwrap()
        .chain(std::fs::read_dir(&v.home).unwrap())
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(temps, 0);

    let total: u64 = t.ops.values().map(|(a, b)| a + b).sum();
    println!(
        "soak summary: {workers} processes for {secs} s, {total} operations {:?}, \
         {} keys, {} archives, {} audit records, anomalies {}",
        t.ops,
        keys.len(),
        ids.len(),
        report.records,
        t.anomalies.len()
    );
    assert!(t.anomalies.is_empty(), "{:#?}", t.anomalies);
    for (kind, _) in KINDS {
        let done = t.ops.get(kind).map_or(0, |c| c.0);
        assert!(
            done >= min,
            "{kind}: only {done} successful operations (minimum {min}): {:?}",
            t.ops
        );
    }
}

//! `vault audit …` through the real binary (issue #5): every operation leaves a record and
//! no secret; tampering with the log is detected and located; concurrent processes keep
//! one valid chain; a sweep over 1,000 archives plus junk reports each file correctly.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use uuid::Uuid;
use vault::audit::AuditRecord;
use vault::envelope::{self, ArchiveHeader, Scope};
use vault::keystore::{Home, KeyStore};

const BIN: &str = env!("CARGO_BIN_EXE_vault");

fn run_env(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("--home").arg(home).args(args);
    c.env_remove("VAULT_HOME")
        .env_remove("VAULT_KEY_PASSWORD")
        .env("USER", "auditor");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("vault runs")
}

fn run(home: &Path, args: &[&str]) -> Output {
    run_env(home, args, &[])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

/// Runs and expects success; returns stdout as JSON.
fn ok(home: &Path, args: &[&str]) -> Value {
    let o = run(home, args);
    assert!(o.status.success(), "vault {args:?} failed: {}", stderr(&o));
    json_of(&o)
}

fn records(home: &Path, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "log"];
    args.extend_from_slice(filter);
    let v = ok(home, &args);
    let recs = v["records"].as_array().unwrap().clone();
    assert_eq!(v["total"], recs.len());
    recs
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn every_operation_appends_a_record_and_no_secret() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let k1 = str_of(&ok(&home, &["keys", "create"])["id"]).to_string();
    let input = t.path().join("ilo.bak");
    fs::write(&input, b"iLO configuration backup bytes").unwrap();
    let a = str_of(
        &ok(
            &home,
            &["backup", "create", "--file", input.to_str().unwrap()],
        )["id"],
    )
    .to_string();
    ok(&home, &["backup", "verify", "--id", &a]);
    let out = t.path().join("out.bak");
    ok(
        &home,
        &[
            "backup",
            "extract",
            "--id",
            &a,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let k2 = str_of(&ok(&home, &["keys", "rotate"])["newKeyId"]).to_string();
    ok(&home, &["backup", "rewrap", "--id", &a]);
    let password = "correct horse battery staple 7f3a";
    let kf = t.path().join("k2.key");
    let mut download = vec![
        "keys",
        "download",
        "--id",
        &k2,
        "--file",
        kf.to_str().unwrap(),
    ];
    download.extend(common::FAST_KDF);
    let o = run_env(&home, &download, &[("VAULT_KEY_PASSWORD", password)]);
    assert!(o.status.success(), "{}", stderr(&o));

    let recs = records(&home, &[]);
    let want: [(&str, Option<&str>, Option<&str>); 7] = [
        ("keys.create", Some(&k1), None),
        ("backup.create", Some(&k1), Some(&a)),
        ("backup.verify", Some(&k1), Some(&a)),
        ("backup.extract", None, Some(&a)),
        ("keys.rotate", Some(&k2), None),
        ("backup.rewrap", Some(&k2), Some(&a)),
        ("keys.download", Some(&k2), None),
    ];
    assert_eq!(recs.len(), want.len(), "{recs:#?}");
    for (i, (r, (op, key, archive))) in recs.iter().zip(want).enumerate() {
        assert_eq!(r["seq"], i as u64 + 1);
        assert_eq!(r["operation"], op, "{r}");
        assert_eq!(r["result"], "success", "{r}");
        assert_eq!(r["account"], "auditor");
        if let Some(k) = key {
            assert_eq!(r["keyId"], k, "{r}");
        }
        if let Some(a) = archive {
            assert_eq!(r["archiveId"], a, "{r}");
        }
    }
    // Filters.
    assert_eq!(records(&home, &["--operation", "keys"]).len(), 3);
    assert_eq!(records(&home, &["--operation", "backup.rewrap"]).len(), 1);
    assert_eq!(records(&home, &["--key", &k1]).len(), 3);
    assert_eq!(records(&home, &["--archive", &a]).len(), 4);
    assert_eq!(records(&home, &["--since", "1h"]).len(), 7);
    assert_eq!(records(&home, &["--since", "2999-01-01"]).len(), 0);
    let o = run(&home, &["audit", "log", "--since", "last tuesday"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // No secret in the log: neither the key-file password nor any key material.
    let log = fs::read(home.join("audit.log")).unwrap();
    let log_text = String::from_utf8_lossy(&log);
    assert!(!log_text.contains(password));
    assert!(!log_text.contains("correct horse"));
    let h = Home::open(&home).unwrap();
    let ks = KeyStore::new(&h);
    for k in [&k1, &k2] {
        let id: Uuid = k.parse().unwrap();
        let (_, key) = ks.material(&id, false).unwrap();
        let raw = key.expose();
        assert!(!log.windows(raw.len()).any(|w| w == raw));
        assert!(!log_text.contains(&hex::encode(raw)));
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(!log_text.contains(&b64[..40]));
    }
    let root = fs::read(home.join("root.key")).unwrap();
    assert!(!log.windows(32).any(|w| w == &root[root.len() - 32..]));

    let v = ok(&home, &["audit", "verify"]);
    assert_eq!(v["intact"], true);
    assert_eq!(v["records"], 7);
}

/// A home whose log holds `n` records (one `keys create` each).
fn home_with_records(n: usize) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    for _ in 0..n {
        ok(&home, &["keys", "create"]);
    }
    let lines = read_lines(&home);
    assert_eq!(lines.len(), n);
    (t, home, lines)
}

fn read_lines(home: &Path) -> Vec<String> {
    fs::read_to_string(home.join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(home: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    fs::write(home.join("audit.log"), s).unwrap();
}

/// Expects `vault audit verify` to fail with exit 5 and name `line` (and `seq`).
fn assert_verify_names(home: &Path, line: u64, seq: u64, kind: &str, case: &str) {
    let o = run(home, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(5), "{case}: {}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["intact"], false, "{case}");
    assert_eq!(v["firstBroken"]["line"], line, "{case}: {v}");
    assert_eq!(v["firstBroken"]["seq"], seq, "{case}: {v}");
    assert_eq!(v["firstBroken"]["kind"], kind, "{case}: {v}");
    assert_eq!(v["records"], line - 1, "{case}: intact prefix");
    let err = stderr(&o);
    assert!(
        err.contains(&format!("broken at line {line} (seq {seq})")),
        "{case}: {err}"
    );
}

#[test]
fn edited_deleted_inserted_and_reordered_records_fail_verify_and_are_named() {
    let (_t, home, orig) = home_with_records(5);
    let v = ok(&home, &["audit", "verify"]);
    assert_eq!(v["intact"], true);
    let anchor = str_of(&v["anchor"]).to_string();
    assert!(anchor.starts_with("5:"), "{anchor}");

    // Edit: change who did record 3.
    let mut lines = orig.clone();
    lines[2] = lines[2].replace("\"account\":\"auditor\"", "\"account\":\"mallory\"");
    assert_ne!(lines[2], orig[2]);
    write_lines(&home, &lines);
    assert_verify_names(&home, 3, 3, "hash-mismatch", "edit");

    // Delete record 3: line 3 now holds seq 4.
    let mut lines = orig.clone();
    lines.remove(2);
    write_lines(&home, &lines);
    assert_verify_names(&home, 3, 4, "seq-gap", "delete");

    // Insert a copy of record 2 after it (its own hash is valid).
    let mut lines = orig.clone();
    lines.insert(2, orig[1].clone());
    write_lines(&home, &lines);
    assert_verify_names(&home, 3, 2, "seq-gap", "insert copy");

    // Insert a forged record that fits the chain as seq 3 (hash recomputed): the
    // displaced original record 3 at line 4 no longer fits.
    let mut forged: AuditRecord = serde_json::from_str(&orig[2]).unwrap();
    forged.operation = "keys.delete".into();
    forged.hash = forged.compute_hash();
    let mut lines = orig.clone();
    lines.insert(2, serde_json::to_string(&forged).unwrap());
    write_lines(&home, &lines);
    assert_verify_names(&home, 4, 3, "seq-gap", "insert forged");

    // Reorder records 2 and 3.
    let mut lines = orig.clone();
    lines.swap(1, 2);
    write_lines(&home, &lines);
    assert_verify_names(&home, 2, 3, "seq-gap", "reorder");

    // Truncating the tail leaves a valid chain: only the anchor shows it.
    write_lines(&home, &orig[..4]);
    let v = ok(&home, &["audit", "verify"]);
    assert_eq!(v["records"], 4);
    let o = run(&home, &["audit", "verify", "--anchor", &anchor]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(json_of(&o)["anchorCheck"]["result"]["status"], "truncated");
    assert!(
        stderr(&o).contains("removed from its end"),
        "{}",
        stderr(&o)
    );

    // The untouched log matches its anchor.
    write_lines(&home, &orig);
    let v = ok(&home, &["audit", "verify", "--anchor", &anchor]);
    assert_eq!(v["anchorCheck"]["matches"], true);
    let o = run(&home, &["audit", "verify", "--anchor", "5:nothex"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn eight_concurrent_processes_leave_one_valid_chain_with_every_record() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    ok(&home, &["keys", "create"]); // creates the home and the first record
    const PROCS: usize = 8;
    const EACH: usize = 4;
    let input = t.path().join("in.bin");
    fs::write(&input, b"config").unwrap();
    std::thread::scope(|s| {
        for p in 0..PROCS {
            let home = &home;
            let input = &input;
            s.spawn(move || {
                for i in 0..EACH {
                    // Mixed operations: key creation and archive sealing.
                    let o = if (p + i) % 2 == 0 {
                        run(home, &["keys", "create", "--domain", &format!("d{p}")])
                    } else {
                        run(
                            home,
                            &["backup", "create", "--file", input.to_str().unwrap()],
                        )
                    };
                    assert!(o.status.success(), "{}", stderr(&o));
                }
            });
        }
    });
    let total = 1 + PROCS * EACH;
    let v = ok(&home, &["audit", "verify"]);
    assert_eq!(v["intact"], true, "{v}");
    assert_eq!(v["records"], total);
    let recs = records(&home, &[]);
    assert_eq!(recs.len(), total);
    assert_eq!(
        records(&home, &["--operation", "keys.create"]).len(),
        1 + 16
    );
    assert_eq!(records(&home, &["--operation", "backup.create"]).len(), 16);
    // Every archive and key that exists has its record.
    let archives = ok(&home, &["backup", "list"]);
    for a in archives["resources"].as_array().unwrap() {
        assert_eq!(records(&home, &["--archive", str_of(&a["id"])]).len(), 1);
    }
    let keys = ok(&home, &["keys", "list"]);
    assert_eq!(keys["resources"].as_array().unwrap().len(), 17);
}

/// Seals `n` archives of `plaintext` under the home's default system key into `dir`.
fn seal_many(home: &Path, dir: &Path, n: usize, plaintext: &[u8]) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    let h = Home::open(home).unwrap();
    let ks = KeyStore::new(&h);
    let info = ks.default_key(Scope::System, None).unwrap().unwrap();
    let (_, key) = ks.material(&info.id, true).unwrap();
    (0..n)
        .map(|i| {
            let header = ArchiveHeader::new(Scope::System, None, "auditor", "bench", None);
            let mut out = Vec::new();
            envelope::seal(&header, info.id, &key, plaintext, &mut out).unwrap();
            let p = dir.join(format!("{i:05}-{}.vault", header.id));
            fs::write(&p, out).unwrap();
            p
        })
        .collect()
}

fn finding_codes(a: &Value) -> Vec<String> {
    a["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| str_of(&f["code"]).to_string())
        .collect()
}

fn sweep(home: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["audit", "archives"];
    all.extend_from_slice(args);
    let o = run(home, &all);
    (o.status.code(), json_of(&o))
}

fn entry<'a>(rep: &'a Value, name: &str) -> &'a Value {
    rep["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| str_of(&a["path"]).ends_with(name))
        .unwrap_or_else(|| panic!("{name} not in the sweep"))
}

/// Issue #18: the sweep's depth limit is reported, not silent. An archive 66 levels deep
/// is not examined; the directory where the walk stopped is listed under `skipped` with
/// reason `too-deep`, counted in `summary.skipped`, and said on stderr; sweeping that
/// directory by name finds the archive.
#[test]
fn sweep_says_what_the_depth_limit_left_out() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    ok(&home, &["keys", "create"]);
    let top = t.path().join("deep");
    let mut dir = top.clone();
    for i in 0..66 {
        dir = dir.join(format!("{i}"));
    }
    let sealed = seal_many(&home, &dir, 1, b"deep down");
    seal_many(&home, &top, 1, b"at the top");
    let o = run(&home, &["audit", "archives", top.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rep = json_of(&o);
    assert_eq!(
        rep["summary"]["files"], 1,
        "the deep archive is not examined"
    );
    assert_eq!(rep["summary"]["skipped"], 1);
    let k = &rep["skipped"][0];
    assert_eq!(k["reason"], "too-deep", "{rep}");
    // Depth 0 is `top`, so the walk stops at the directory 64 levels below it.
    let stopped = PathBuf::from(str_of(&k["path"]));
    assert_eq!(stopped.strip_prefix(&top).unwrap().components().count(), 64);
    assert!(sealed[0].starts_with(&stopped));
    let err = stderr(&o);
    assert!(
        err.contains("1 director(ies) at the depth limit of 64 levels were not entered"),
        "{err}"
    );
    let (code, rep) = sweep(&home, &[stopped.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(rep["summary"]["files"], 1, "swept by name, it is found");
}

#[test]
fn sweep_of_1000_archives_and_junk_reports_each_file() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let dir = t.path().join("sweep");
    // One archive under the key that will be retired, then rotate.
    ok(&home, &["keys", "create"]);
    let retired = seal_many(&home, &dir.join("old"), 1, b"sealed before rotation");
    fs::rename(&retired[0], dir.join("retired.vault")).unwrap();
    ok(&home, &["keys", "rotate"]);
    // 1,000 good archives in two subdirectories.
    seal_many(&home, &dir.join("a"), 500, b"cfg");
    seal_many(&home, &dir.join("b/c"), 500, b"cfg");
    // A three-chunk archive to damage two ways.
    let big: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let damaged = seal_many(&home, &dir.join("tmp"), 2, &big);
    let bytes = fs::read(&damaged[0]).unwrap();
    fs::write(dir.join("truncated.vault"), &bytes[..bytes.len() / 2]).unwrap();
    let mut bytes = fs::read(&damaged[1]).unwrap();
    let mid = bytes.len() / 2; // inside the payload: only full authentication sees it
    bytes[mid] ^= 0x01;
    fs::write(dir.join("tampered.vault"), &bytes).unwrap();
    // Newer format version (bytes 8..10 of the preamble).
    let mut bytes = fs::read(
        dir.join("a")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    bytes[8..10].copy_from_slice(&3u16.to_be_bytes());
    fs::write(dir.join("newer.vault"), &bytes).unwrap();
    // Sealed under a key that only another home has.
    let other = t.path().join("other-home");
    ok(&other, &["keys", "create"]);
    let absent = seal_many(&other, &dir.join("tmp"), 1, b"elsewhere");
    fs::rename(&absent[0], dir.join("absent-key.vault")).unwrap();
    fs::remove_dir_all(dir.join("tmp")).unwrap();
    fs::remove_dir_all(dir.join("old")).unwrap();
    // Junk.
    fs::write(dir.join("empty.vault"), b"").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(dir.join("random.bin"), &random).unwrap();
    // Never examined: an interrupted write and a link out of the tree.
    fs::write(dir.join(".tmp-abc123"), b"partial").unwrap();
    std::os::unix::fs::symlink(&home, dir.join("link-to-home")).unwrap();

    let files = 1000 + 7;
    let expect = |rep: &Value, verify: bool| {
        let s = &rep["summary"];
        assert_eq!(s["files"], files, "{s}");
        assert_eq!(s["skipped"], 2, "{s}");
        // ... and says which and why.
        let skipped: Vec<(String, String)> = rep["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    str_of(&k["path"]).rsplit('/').next().unwrap().to_string(),
                    str_of(&k["reason"]).to_string(),
                )
            })
            .collect();
        assert_eq!(
            skipped,
            [
                (".tmp-abc123".to_string(), "temporary".to_string()),
                ("link-to-home".to_string(), "symlink".to_string())
            ]
        );
        assert_eq!(s["archives"], files - 2, "{s}");
        let f = &s["findings"];
        assert_eq!(f["not-an-archive"], 2, "{s}");
        assert_eq!(f["truncated"], 1, "{s}");
        assert_eq!(f["unsupported-version"], 1, "{s}");
        assert_eq!(f["key-retired"], 1, "{s}");
        assert_eq!(f["key-missing"], 1, "{s}");
        assert_eq!(f["authentication-failed"], u64::from(verify), "{s}");
        assert_eq!(f["malformed"], 0, "{s}");
        assert_eq!(f["unreadable"], 0, "{s}");
        assert_eq!(s["integrityFailures"], 3 + u64::from(verify), "{s}");
        assert_eq!(s["withFindings"], 6 + u64::from(verify), "{s}");
        assert_eq!(s["ok"], files - 6 - u64::from(verify), "{s}");
        assert_eq!(s["verified"], if verify { 1001 } else { 0 }, "{s}");

        assert_eq!(finding_codes(entry(rep, "empty.vault")), ["not-an-archive"]);
        assert_eq!(finding_codes(entry(rep, "random.bin")), ["not-an-archive"]);
        assert_eq!(finding_codes(entry(rep, "truncated.vault")), ["truncated"]);
        let newer = entry(rep, "newer.vault");
        assert_eq!(finding_codes(newer), ["unsupported-version"]);
        assert!(str_of(&newer["findings"][0]["message"]).contains("upgrade vault"));
        let r = entry(rep, "retired.vault");
        assert_eq!(finding_codes(r), ["key-retired"]);
        assert_eq!(r["keyState"], "retired");
        assert_eq!(r["keyPresent"], true);
        assert!(str_of(&r["findings"][0]["message"]).contains("vault backup rewrap"));
        let a = entry(rep, "absent-key.vault");
        assert_eq!(finding_codes(a), ["key-missing"]);
        assert_eq!(a["keyPresent"], false);
        assert_eq!(a["keyState"], Value::Null);
        let tampered = entry(rep, "tampered.vault");
        if verify {
            assert_eq!(finding_codes(tampered), ["authentication-failed"]);
            assert_eq!(tampered["verified"], false);
        } else {
            assert!(finding_codes(tampered).is_empty());
        }
        // The good ones: described, no findings.
        let good: Vec<&Value> = rep["archives"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| str_of(&a["path"]).contains("/a/") || str_of(&a["path"]).contains("/b/c/"))
            .collect();
        assert_eq!(good.len(), 1000);
        let mut ids = std::collections::HashSet::new();
        for g in good {
            assert!(finding_codes(g).is_empty(), "{g}");
            assert_eq!(g["keyState"], "active");
            assert_eq!(g["scope"], "system");
            assert_eq!(g["size"], 3);
            // Issue 12: a keyless sweep's key id is a claim; --verify confirms it.
            assert_eq!(g["keyIdClaimed"], !verify, "{g}");
            assert!(ids.insert(str_of(&g["id"]).to_string()), "distinct ids");
        }
    };

    let dir_s = dir.to_str().unwrap();
    let (code, rep) = sweep(&home, &[dir_s]);
    assert_eq!(code, Some(5), "junk in the directory fails integrity");
    expect(&rep, false);
    let (code, rep) = sweep(&home, &[dir_s, "--verify", "--jobs", "2"]);
    assert_eq!(code, Some(5));
    expect(&rep, true);

    // Policy findings alone exit 0; ages come from createdAt of archives and keys.
    let good = dir.join("a");
    let (code, rep) = sweep(&home, &[good.to_str().unwrap(), "--max-age", "30"]);
    assert_eq!(code, Some(0), "{}", rep["summary"]);
    assert_eq!(rep["summary"]["ok"], 500);
    let old = t.path().join("old");
    // A key created in 2021: keys.json authenticates createdAt, so it comes in through
    // a key file that says so (as a key escrowed years ago would).
    let h = Home::open(&home).unwrap();
    let ks = KeyStore::new(&h);
    let old_key = vault::secret::Key32::random();
    let pw = vault::secret::Password::new("an escrow password".into());
    let file = vault::keystore::keyfile::export(
        &old_key,
        &vault::keystore::keyfile::ExportMeta {
            id: Uuid::new_v4(),
            scope: Scope::System,
            domain_id: None,
            created_at: "2021-01-01T00:00:00Z".into(),
            state: vault::keystore::KeyState::Active,
            description: String::new(),
        },
        &pw,
        vault::keystore::kdf::KdfParams {
            memory_kib: vault::keystore::kdf::MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        },
    )
    .unwrap();
    let lock = h.lock().unwrap();
    let vault::keystore::Imported::New(info) = ks
        .import(&lock, &file, Scope::System, &pw, "auditor")
        .unwrap()
    else {
        panic!("a new key")
    };
    drop(lock);
    let (_, key) = ks.material(&info.id, true).unwrap();
    let mut header = ArchiveHeader::new(Scope::System, None, "auditor", "", None);
    header.created_at = "2020-01-01T00:00:00Z".into();
    let mut out = Vec::new();
    envelope::seal(&header, info.id, &key, &b"x"[..], &mut out).unwrap();
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("2020.vault"), out).unwrap();
    let (code, rep) = sweep(
        &home,
        &[
            old.to_str().unwrap(),
            "--max-age",
            "365",
            "--rotation-days",
            "90",
        ],
    );
    assert_eq!(code, Some(0));
    let e = entry(&rep, "2020.vault");
    assert_eq!(
        finding_codes(e),
        ["key-rotation-overdue", "archive-too-old"],
        "{e}"
    );
    assert!(str_of(&e["findings"][0]["message"]).contains("vault keys rotate"));
    assert_eq!(rep["summary"]["integrityFailures"], 0);

    // A named path that does not exist is a usage problem, not an integrity one.
    let o = run(&home, &["audit", "archives", "/nonexistent/vault-sweep"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Table output renders the findings as codes.
    let o = run(&home, &["--output", "table", "audit", "archives", dir_s]);
    assert_eq!(o.status.code(), Some(5));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("key-retired"), "{table}");
}

/// Not a test: creates the archives `benches/sweep.sh` times. Run with
/// `VAULT_BENCH_DIR=<dir> VAULT_BENCH_N=<n> cargo test --release --test audit_cli -- --ignored make_bench_archives`.
#[test]
#[ignore]
fn make_bench_archives() {
    let dir = PathBuf::from(std::env::var("VAULT_BENCH_DIR").expect("VAULT_BENCH_DIR"));
    let n: usize = std::env::var("VAULT_BENCH_N")
        .expect("VAULT_BENCH_N")
        .parse()
        .unwrap();
    let home = dir.join("home");
    ok(&home, &["keys", "create"]);
    // 100 archives per directory, like a fleet's per-host folders.
    let mut done = 0;
    while done < n {
        let batch = (n - done).min(100);
        seal_many(
            &home,
            &dir.join("archives").join(format!("{:04}", done / 100)),
            batch,
            &[0x5a; 2048],
        );
        done += batch;
    }
}

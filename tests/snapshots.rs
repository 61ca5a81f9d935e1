//! Whole-output snapshots of the command line (issue #18): every command's `--help`, and
//! the JSON and table output of the main flows in a fresh home, compared in full (stdout,
//! stderr and exit status) with the files under `tests/snapshots/`.
//!
//! What changes from run to run is redacted before the comparison: ids (`[ID1]`, `[ID2]`,
//! … numbered in order of first appearance, so the same key is the same token everywhere,
//! its 8-digit short form in tables included), SHA-256 values (`[HASH1]`, …), signer
//! fingerprints (`[FP1]`, …), timestamps (`[TIME]`), the scratch directory and the home
//! (`[DIR]`, `[HOME]`), the account (`uid:[UID]`), temporaries' pids (`.tmp-[PID]-[RND]`).
//! Tables are aligned to their widest cell, so runs of spaces inside a table line are
//! compared as two spaces (a redacted token has another width than the value).
//!
//! A changed output fails with the snapshot's name and both texts. When the change is
//! intended, rewrite the snapshots and review them with git:
//!
//! ```sh
//! SNAPSHOTS=overwrite cargo test --test snapshots
//! git diff tests/snapshots/
//! ```
//!
//! A snapshot file that no case writes any more (a removed command) fails too, and is
//! deleted by the overwrite run.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::CommandFactory;
use common::{BIN, FAST_KDF, PASSWORD, bytes};

fn overwrite() -> bool {
    std::env::var("SNAPSHOTS").is_ok_and(|v| v == "overwrite")
}

/// Numbered tokens for values that differ per run but repeat within one.
#[derive(Default)]
struct Tokens {
    map: BTreeMap<String, String>,
    counts: BTreeMap<&'static str, usize>,
    /// 8-digit short forms of the ids seen (tables print those).
    short: BTreeMap<String, String>,
}

impl Tokens {
    fn token(&mut self, kind: &'static str, value: &str) -> String {
        if let Some(t) = self.map.get(value) {
            return t.clone();
        }
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        let t = format!("[{kind}{n}]");
        self.map.insert(value.to_string(), t.clone());
        if kind == "ID" {
            self.short.insert(value[..8].to_string(), t.clone());
        }
        t
    }
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Whether `s[i..]` starts with a lowercase UUID (8-4-4-4-12).
fn uuid_at(s: &[u8], i: usize) -> bool {
    let groups = [8, 4, 4, 4, 12];
    let mut j = i;
    for (g, len) in groups.iter().enumerate() {
        if j + len > s.len() || !s[j..j + len].iter().all(|&b| is_hex(b)) {
            return false;
        }
        j += len;
        if g < 4 {
            if s.get(j) != Some(&b'-') {
                return false;
            }
            j += 1;
        }
    }
    !s.get(j).is_some_and(|&b| is_hex(b))
}

/// The length of a run of lowercase hex digits at `i` (0 if it continues a word).
fn hex_run(s: &[u8], i: usize) -> usize {
    if i > 0 && s[i - 1].is_ascii_alphanumeric() {
        return 0;
    }
    let n = s[i..].iter().take_while(|&&b| is_hex(b)).count();
    if s.get(i + n).is_some_and(|b| b.is_ascii_alphanumeric()) {
        0
    } else {
        n
    }
}

/// Length of an RFC 3339 UTC time (`2026-12-01T14:47:43.966518104Z`) or a table time
/// (`2026-12-01 14:47`, `2026-12-01 14:47:43 UTC`, then ` (now)`, ` (3 min ago)`, …) at `i`.
fn time_at(s: &str, i: usize) -> usize {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| {
        from + n <= b.len() && b[from..from + n].iter().all(u8::is_ascii_digit)
    };
    let at = |j: usize, c: u8| b.get(j) == Some(&c);
    if !(digits(i, 4) && at(i + 4, b'-') && digits(i + 5, 2) && at(i + 7, b'-') && digits(i + 8, 2))
    {
        return 0;
    }
    let mut j = i + 10;
    let rfc = at(j, b'T');
    if !(rfc || at(j, b' ')) || !digits(j + 1, 2) || !at(j + 3, b':') || !digits(j + 4, 2) {
        return 0;
    }
    j += 6;
    if at(j, b':') && digits(j + 1, 2) {
        j += 3;
    }
    if rfc {
        if at(j, b'.') {
            j += 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        }
        if at(j, b'Z') {
            j += 1;
        }
        return j - i;
    }
    if s[j..].starts_with(" UTC") {
        j += 4;
    }
    if s[j..].starts_with(" (")
        && let Some(end) = s[j..].find(')')
    {
        let age = &s[j + 2..j + end];
        if age == "now" || age.ends_with(" ago") || age.starts_with("in ") {
            j += end + 1;
        }
    }
    j - i
}

/// Replaces what differs per run (see the module comment).
fn redact(text: &str, tokens: &mut Tokens, paths: &[(&Path, &str)]) -> String {
    let mut s = text.to_string();
    for (p, name) in paths {
        s = s.replace(&p.display().to_string(), name);
    }
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &s[i..];
        if uuid_at(b, i) && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            out.push_str(&tokens.token("ID", &rest[..36]));
            i += 36;
            continue;
        }
        let t = time_at(&s, i);
        if t > 0 && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            out.push_str("[TIME]");
            i += t;
            continue;
        }
        match hex_run(b, i) {
            64 => {
                out.push_str(&tokens.token("HASH", &rest[..64]));
                i += 64;
                continue;
            }
            16 => {
                out.push_str(&tokens.token("FP", &rest[..16]));
                i += 16;
                continue;
            }
            8 if tokens.short.contains_key(&rest[..8]) => {
                out.push_str(&tokens.short[&rest[..8]].clone());
                i += 8;
                // An id cut short in a table cell (`4bd6ec63-4…`): the rest of it too.
                let cut = s[i..]
                    .bytes()
                    .take_while(|&c| c == b'-' || is_hex(c))
                    .count();
                if cut > 0 && s[i + cut..].starts_with('…') {
                    out.push('…');
                    i += cut + '…'.len_utf8();
                }
                continue;
            }
            _ => {}
        }
        if let Some(r) = rest.strip_prefix("uid:")
            && r.starts_with(|c: char| c.is_ascii_digit())
        {
            out.push_str("uid:[UID]");
            i += 4 + r.bytes().take_while(u8::is_ascii_digit).count();
            continue;
        }
        if let Some(r) = rest.strip_prefix(".tmp-")
            && let Some(dash) = r.find('-')
            && dash > 0
            && r[..dash].bytes().all(|c| c.is_ascii_digit())
        {
            let rnd = r[dash + 1..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            out.push_str(".tmp-[PID]-[RND]");
            i += 5 + dash + 1 + rnd;
            continue;
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Runs of two or more spaces inside a line (not its indentation) as two spaces.
fn squeeze_columns(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        out.push_str(&line[..indent]);
        let mut spaces = 0;
        for c in line[indent..].chars() {
            if c == ' ' {
                spaces += 1;
                continue;
            }
            if spaces > 0 {
                out.push_str(if spaces > 1 { "  " } else { " " });
                spaces = 0;
            }
            out.push(c);
        }
    }
    out
}

/// One snapshot directory (`tests/snapshots/<group>/`), the cases written to it and the
/// mismatches found.
struct Snapshots {
    dir: PathBuf,
    written: BTreeSet<String>,
    failures: Vec<String>,
    tokens: Tokens,
}

/// What a case runs, and in which home/directory.
struct Case<'a> {
    name: &'a str,
    args: Vec<String>,
    env: Vec<(&'a str, String)>,
    table: bool,
}

impl Snapshots {
    fn new(group: &str) -> Snapshots {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(group);
        std::fs::create_dir_all(&dir).unwrap();
        Snapshots {
            dir,
            written: BTreeSet::new(),
            failures: Vec::new(),
            tokens: Tokens::default(),
        }
    }

    /// Runs `vault ARGS` in `cwd` with a clean environment and compares (or writes) its
    /// snapshot; returns the raw stdout.
    fn check(&mut self, case: Case<'_>, cwd: &Path, paths: &[(&Path, &str)]) -> Vec<u8> {
        let mut c = Command::new(BIN);
        c.args(&case.args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", cwd)
            .env("TZ", "UTC")
            .env("COLUMNS", "100")
            .env("LANG", "C")
            .stdin(Stdio::null());
        for (k, v) in &case.env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let shown_args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        let text = format!(
            "$ vault {}\n? {}\n--- stdout\n{}--- stderr\n{}",
            shown_args.join(" "),
            out.status
                .code()
                .map_or_else(|| format!("{:?}", out.status), |c| c.to_string()),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let mut text = redact(&text, &mut self.tokens, paths);
        if case.table {
            text = squeeze_columns(&text);
        }
        let file = format!("{}.txt", case.name);
        assert!(
            self.written.insert(file.clone()),
            "two cases named {}",
            case.name
        );
        let path = self.dir.join(&file);
        let old = std::fs::read_to_string(&path).ok();
        if old.as_deref() != Some(text.as_str()) {
            if overwrite() {
                std::fs::write(&path, &text).unwrap();
            } else {
                self.failures.push(match old {
                    None => format!("{}: no snapshot yet; output:\n{text}", path.display()),
                    Some(old) => format!(
                        "{}: output differs\n--- expected\n{old}\n--- actual\n{text}",
                        path.display()
                    ),
                });
            }
        }
        out.stdout
    }

    /// Fails on mismatches and on snapshot files no case wrote (deleted when overwriting).
    fn finish(mut self) {
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !self.written.contains(&name) {
                if overwrite() {
                    std::fs::remove_file(e.path()).unwrap();
                } else {
                    self.failures.push(format!(
                        "{}: no case writes this snapshot any more",
                        e.path().display()
                    ));
                }
            }
        }
        assert!(
            self.failures.is_empty(),
            "{} snapshot(s) differ; if the change is intended: \
             SNAPSHOTS=overwrite cargo test --test snapshots, then review git diff tests/snapshots/\n\n{}",
            self.failures.len(),
            self.failures.join("\n\n")
        );
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Every command path of the CLI (`["keys", "create"]`, …), clap's `help` excluded.
fn command_paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut p = prefix.to_vec();
        p.push(sub.get_name().to_string());
        out.push(p.clone());
        command_paths(sub, &p, out);
    }
}

#[test]
fn every_help_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::new("help");
    let mut paths = vec![Vec::new()];
    command_paths(&vault::cli::Cli::command(), &[], &mut paths);
    assert!(paths.len() > 30, "{paths:?}");
    for p in &paths {
        let mut args = p.clone();
        args.push("--help".into());
        let name = if p.is_empty() {
            "vault".to_string()
        } else {
            format!("vault-{}", p.join("-"))
        };
        snaps.check(
            Case {
                name: &name,
                args,
                env: vec![],
                table: false,
            },
            dir.path(),
            &[(dir.path(), "[DIR]")],
        );
    }
    snaps.check(
        Case {
            name: "vault-version",
            args: words("--version"),
            env: vec![],
            table: false,
        },
        dir.path(),
        &[(dir.path(), "[DIR]")],
    );
    snaps.finish();
}

/// A fresh home through its main flows, JSON then table, and one failure per exit status
/// class (2 usage … 9 local I/O; 1, an internal error, has no deliberate trigger).
#[test]
fn main_flows_and_one_error_per_exit_class() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let home = d.join("home");
    let mut snaps = Snapshots::new("flows");
    let pw = d.join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wrong = d.join("wrong-pw");
    std::fs::write(&wrong, "not the password of that file\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(d.join("config.xml"), bytes(40_000, 18)).unwrap();

    let home_s = home.display().to_string();
    let mut step = 0;
    let mut run = |snaps: &mut Snapshots, name: &str, args: &str, env: Vec<(&str, String)>| {
        step += 1;
        let table = args.starts_with("--output table");
        let mut a = vec!["--home".to_string(), home_s.clone()];
        a.extend(words(args));
        snaps.check(
            Case {
                name: &format!("{step:02}-{name}"),
                args: a,
                env,
                table,
            },
            d,
            &[(&home, "[HOME]"), (d, "[DIR]")],
        )
    };
    let json = |b: Vec<u8>| -> serde_json::Value {
        serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&b)))
    };

    run(&mut snaps, "home-init", "home init", vec![]);
    run(&mut snaps, "home-show", "home show", vec![]);
    run(
        &mut snaps,
        "home-show-table",
        "--output table home show",
        vec![],
    );
    let key = json(run(
        &mut snaps,
        "keys-create",
        "keys create --description first",
        vec![],
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    run(
        &mut snaps,
        "keys-create-domain",
        "keys create --scope domain --domain rack-7 --description second",
        vec![],
    );
    run(&mut snaps, "keys-list", "keys list", vec![]);
    run(
        &mut snaps,
        "keys-list-table",
        "--output table keys list",
        vec![],
    );
    run(
        &mut snaps,
        "keys-get",
        &format!("keys get --id {key}"),
        vec![],
    );
    run(
        &mut snaps,
        "keys-get-table",
        &format!("--output table keys get --id {key}"),
        vec![],
    );
    let kdf = FAST_KDF.join(" ");
    run(
        &mut snaps,
        "keys-download",
        &format!("keys download --id {key} --file first.vkey --password-file pw {kdf}"),
        vec![],
    );
    run(
        &mut snaps,
        "keys-inspect",
        "keys inspect --file first.vkey",
        vec![],
    );
    run(
        &mut snaps,
        "keys-inspect-table",
        "--output table keys inspect --file first.vkey",
        vec![],
    );
    let archive = json(run(
        &mut snaps,
        "backup-create",
        "backup create --file config.xml --description snapshot-test",
        vec![],
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    run(&mut snaps, "backup-list", "backup list", vec![]);
    run(
        &mut snaps,
        "backup-list-table",
        "--output table backup list",
        vec![],
    );
    run(
        &mut snaps,
        "backup-get",
        &format!("backup get --id {archive}"),
        vec![],
    );
    run(
        &mut snaps,
        "backup-get-table",
        &format!("--output table backup get --id {archive}"),
        vec![],
    );
    let file = format!("home/archives/{archive}.vault");
    run(
        &mut snaps,
        "inspect",
        &format!("inspect --file {file}"),
        vec![],
    );
    run(
        &mut snaps,
        "inspect-table",
        &format!("--output table inspect --file {file}"),
        vec![],
    );
    run(
        &mut snaps,
        "backup-verify",
        &format!("backup verify --id {archive}"),
        vec![],
    );
    run(
        &mut snaps,
        "backup-verify-table",
        &format!("--output table backup verify --id {archive}"),
        vec![],
    );
    run(
        &mut snaps,
        "backup-extract",
        &format!("backup extract --id {archive} --out config.out"),
        vec![],
    );
    assert_eq!(
        std::fs::read(d.join("config.out")).unwrap(),
        bytes(40_000, 18)
    );
    // README "Audit": the `vault audit` commands only read (the log is unchanged).
    let log_path = home.join("audit.log");
    let log_before = std::fs::read(&log_path).unwrap();
    let anchor = json(run(&mut snaps, "audit-verify", "audit verify", vec![]))["anchor"]
        .as_str()
        .unwrap()
        .to_string();
    run(
        &mut snaps,
        "audit-verify-table",
        "--output table audit verify",
        vec![],
    );
    run(
        &mut snaps,
        "audit-verify-anchor",
        &format!("audit verify --anchor {anchor}"),
        vec![],
    );
    assert_eq!(
        std::fs::read(&log_path).unwrap(),
        log_before,
        "audit verify changed the log"
    );

    // One failure per exit status class.
    run(
        &mut snaps,
        "exit2-usage-unknown-flag",
        "keys create --bogus",
        vec![],
    );
    // README "Audit": an argument error stops the command before it starts and appends
    // nothing.
    assert_eq!(
        std::fs::read(&log_path).unwrap(),
        log_before,
        "an argument error appended to the log"
    );
    run(
        &mut snaps,
        "exit2-usage-not-an-archive",
        "inspect --file config.xml",
        vec![],
    );
    run(
        &mut snaps,
        "exit3-not-found-key",
        "keys get --id 00000000-0000-4000-8000-000000000000",
        vec![],
    );
    run(
        &mut snaps,
        "exit4-auth-wrong-password",
        "keys upload --file first.vkey --password-file wrong-pw",
        vec![],
    );
    let orig = std::fs::read(home.join("archives").join(format!("{archive}.vault"))).unwrap();
    let mut flipped = orig.clone();
    let n = flipped.len();
    flipped[n - 300] ^= 1; // inside the last chunk
    std::fs::write(d.join("flipped.vault"), &flipped).unwrap();
    run(
        &mut snaps,
        "exit5-integrity-flipped-byte",
        "backup verify --file flipped.vault",
        vec![],
    );
    let mut newer = orig.clone();
    newer[9] = 3; // the format version byte: a version this build does not know
    std::fs::write(d.join("newer.vault"), &newer).unwrap();
    run(
        &mut snaps,
        "exit6-unsupported-version",
        "inspect --file newer.vault",
        vec![],
    );
    run(
        &mut snaps,
        "exit7-policy-key-in-use",
        &format!("keys delete --id {key}"),
        vec![],
    );
    run(
        &mut snaps,
        "exit8-bmc-unreachable",
        "backup pull --bmc https://127.0.0.1:1 --bmc-user admin --timeout 2 --retries 0",
        vec![("VAULT_BMC_PASSWORD", "bmc-password-of-the-test".to_string())],
    );
    run(
        &mut snaps,
        "exit9-io-unwritable-out",
        &format!("backup extract --id {archive} --out /sys/vault-snapshot.out"),
        vec![],
    );
    // The anchor statuses of README "What `vault audit verify` proves": a record that
    // exists with another hash (`hashDiffers`), then an edit before the anchor
    // (`chainBroken`, and verify names the first broken record).
    let zeros = "0".repeat(64);
    run(
        &mut snaps,
        "exit5-audit-anchor-hash-differs",
        &format!("audit verify --anchor 1:{zeros}"),
        vec![],
    );
    let log = String::from_utf8(std::fs::read(&log_path).unwrap()).unwrap();
    let at = log.find("\"time\":\"20").expect("a time field") + "\"time\":\"".len();
    let mut edited = log.into_bytes();
    edited[at + 1] = b'1'; // 20xx -> 21xx in the first record
    std::fs::write(&log_path, &edited).unwrap();
    run(
        &mut snaps,
        "exit5-audit-edited-record",
        "audit verify",
        vec![],
    );
    run(
        &mut snaps,
        "exit5-audit-anchor-chain-broken",
        &format!("audit verify --anchor {anchor}"),
        vec![],
    );
    snaps.finish();
}

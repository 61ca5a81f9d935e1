//! README "Audit" and issue 13.5: every audited operation appends exactly one record on
//! success and on failure, and the record names what the operation was asked for — the
//! key id, the archive id (the one given, even when no such archive exists, or the one in
//! the named file's header), the file path (`detail: "file PATH"`) and the BMC host —
//! with `errorKind` the class of the exit code. Table-driven: one row per invocation.
mod common;

use std::process::Stdio;

use common::*;
use serde_json::Value;
use vault::bmc::{SimConfig, SimHandle};

/// What the record of one invocation must say. `None` fields are not checked.
struct Row {
    operation: &'static str,
    args: Vec<String>,
    code: i32,
    key_id: Option<String>,
    archive_id: Option<String>,
    bmc_host: Option<String>,
    detail: Option<String>,
    /// Run in the second home (whose key store is damaged) instead of the first.
    damaged_home: bool,
}

fn row(operation: &'static str, args: &[&str], code: i32) -> Row {
    Row {
        operation,
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        key_id: None,
        archive_id: None,
        bmc_host: None,
        detail: None,
        damaged_home: false,
    }
}

impl Row {
    fn key(mut self, id: &str) -> Self {
        self.key_id = Some(id.to_string());
        self
    }
    fn archive(mut self, id: &str) -> Self {
        self.archive_id = Some(id.to_string());
        self
    }
    fn bmc(mut self, host: &str) -> Self {
        self.bmc_host = Some(host.to_string());
        self
    }
    fn detail(mut self, d: &str) -> Self {
        self.detail = Some(d.to_string());
        self
    }
    fn in_damaged_home(mut self) -> Self {
        self.damaged_home = true;
        self
    }
}

fn audit_records(v: &Vault) -> Vec<Value> {
    v.ok(&["audit", "log"])["records"]
        .as_array()
        .unwrap()
        .clone()
}

/// The operations README.md says are audited; every one appears below with a success
/// and a failure row.
const AUDITED: [&str; 15] = [
    "keys.create",
    "keys.rotate",
    "keys.set-default",
    "keys.delete",
    "keys.download",
    "keys.upload",
    "backup.create",
    "backup.verify",
    "backup.extract",
    "backup.rewrap",
    "backup.download",
    "backup.upload",
    "backup.delete",
    "backup.pull",
    "backup.restore",
];

#[test]
fn every_audited_operation_records_success_and_failure_naming_what_was_asked() {
    let v = Vault::new();
    let key = v.create_key(&[]);
    let input = v.path("config.bak");
    std::fs::write(&input, bytes(30_000, 4)).unwrap();
    let archive = v.ok(&["backup", "create", "--file", s(&input)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let doomed = v.ok(&["backup", "create", "--file", s(&input)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let archive_file = v.home.join("archives").join(format!("{archive}.vault"));
    let mut tampered = std::fs::read(&archive_file).unwrap();
    let n = tampered.len();
    tampered[n - 100] ^= 1;
    let bad = v.path("tampered.vault");
    std::fs::write(&bad, &tampered).unwrap();
    let bad_detail = format!("file {}", bad.display());
    // A home whose key store is damaged: operations that need it fail (integrity).
    let damaged = Vault::new();
    damaged.create_key(&[]);
    std::fs::write(damaged.home.join("keys.json"), "{\"broken").unwrap();
    // A key file from another home, and the passwords.
    let donor = Vault::new();
    let foreign = donor.create_key(&[]);
    let pw = v.password_file(PASSWORD);
    let wrong = v.password_file("not the password at all");
    let kf = v.path("foreign.vkey");
    let mut dl = vec!["keys", "download", "--id", &foreign, "--file", s(&kf)];
    dl.extend(["--password-file", s(&pw)]);
    dl.extend(FAST_KDF);
    donor.ok(&dl);
    // A cut-short archive that is not in the home yet (upload checks structure only).
    donor.ok(&["backup", "create", "--file", s(&input)]);
    let donor_archive = donor.ok(&["backup", "list"])["resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut foreign_bad = std::fs::read(
        donor
            .home
            .join("archives")
            .join(format!("{donor_archive}.vault")),
    )
    .unwrap();
    foreign_bad.truncate(foreign_bad.len() - 100);
    let foreign_bad_file = v.path("foreign-tampered.vault");
    std::fs::write(&foreign_bad_file, &foreign_bad).unwrap();
    // A BMC.
    let cfg = SimConfig::default();
    let sim = SimHandle::start(cfg.clone()).unwrap();
    let url = sim.base_url();
    let host = url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let ca = sim.ca_cert_path().display().to_string();
    let bmc_pw = v.path("bmc.pw");
    std::fs::write(&bmc_pw, &cfg.password).unwrap();
    std::fs::set_permissions(&bmc_pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let bmc_wrong = v.path("bmc-wrong.pw");
    std::fs::write(&bmc_wrong, "not-the-bmc-password").unwrap();
    std::fs::set_permissions(
        &bmc_wrong,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let bmc_args = |pwfile: &std::path::Path| -> Vec<String> {
        [
            "--bmc",
            &url,
            "--bmc-user",
            &cfg.user,
            "--bmc-password-file",
            s(pwfile),
            "--ca-cert",
            &ca,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let bmc = &bmc_args;
    // An archive pulled from this BMC, so that it can be restored there.
    let mut pull = vec!["backup".to_string(), "pull".to_string()];
    pull.extend(bmc(&bmc_pw));
    let pull: Vec<&str> = pull.iter().map(String::as_str).collect();
    let pulled = v.ok(&pull)["id"].as_str().unwrap().to_string();
    let with = |mut r: Row, extra: Vec<String>| {
        r.args.extend(extra);
        r
    };

    let unknown = "0badc0de-0000-4000-8000-000000000001";
    let out = v.path("plain.out");
    let kf_out = v.path("exported.vkey");
    let copy = v.path("copy.vault");
    let missing = v.path("no-such-input");
    let (out, kf_out, copy, missing, kf) = (s(&out), s(&kf_out), s(&copy), s(&missing), s(&kf));
    let (pw, wrong) = (s(&pw), s(&wrong));
    let fast: Vec<String> = FAST_KDF.iter().map(|a| a.to_string()).collect();
    let rows: Vec<Row> = vec![
        // keys
        row(
            "keys.create",
            &["keys", "create", "--scope", "domain", "--domain", "d1"],
            0,
        ),
        row("keys.create", &["keys", "create"], 5).in_damaged_home(),
        row(
            "keys.rotate",
            &["keys", "rotate", "--scope", "domain", "--domain", "d1"],
            0,
        ),
        row(
            "keys.rotate",
            &["keys", "rotate", "--scope", "domain", "--domain", "none"],
            3,
        ),
        row(
            "keys.set-default",
            &["keys", "set-default", "--id", &key],
            0,
        )
        .key(&key),
        row(
            "keys.set-default",
            &["keys", "set-default", "--id", unknown],
            3,
        )
        .key(unknown),
        with(
            row(
                "keys.download",
                &[
                    "keys",
                    "download",
                    "--id",
                    &key,
                    "--file",
                    kf_out,
                    "--password-file",
                    pw,
                ],
                0,
            )
            .key(&key),
            fast.clone(),
        ),
        with(
            row(
                "keys.download",
                &[
                    "keys",
                    "download",
                    "--id",
                    unknown,
                    "--file",
                    kf_out,
                    "--password-file",
                    pw,
                ],
                3,
            )
            .key(unknown),
            fast.clone(),
        ),
        row(
            "keys.upload",
            &["keys", "upload", "--file", kf, "--password-file", wrong],
            4,
        )
        .key(&foreign),
        row(
            "keys.upload",
            &["keys", "upload", "--file", kf, "--password-file", pw],
            0,
        )
        .key(&foreign),
        row(
            "keys.delete",
            &["keys", "delete", "--id", unknown, "--force"],
            3,
        )
        .key(unknown),
        row(
            "keys.delete",
            &["keys", "delete", "--id", &foreign, "--force"],
            0,
        )
        .key(&foreign),
        // backups
        row(
            "backup.create",
            &["backup", "create", "--file", s(&input)],
            0,
        )
        .key(&key),
        row("backup.create", &["backup", "create", "--file", missing], 3)
            .detail(&format!("file {missing}")),
        row("backup.verify", &["backup", "verify", "--id", &archive], 0).archive(&archive),
        row("backup.verify", &["backup", "verify", "--id", unknown], 3).archive(unknown),
        row("backup.verify", &["backup", "verify", "--file", s(&bad)], 5)
            .archive(&archive)
            .detail(&bad_detail),
        row(
            "backup.extract",
            &["backup", "extract", "--id", &archive, "--out", out],
            0,
        )
        .archive(&archive),
        row(
            "backup.extract",
            &["backup", "extract", "--id", unknown, "--out", out],
            3,
        )
        .archive(unknown),
        row(
            "backup.extract",
            &["backup", "extract", "--file", s(&bad), "--out", out],
            5,
        )
        .archive(&archive)
        .detail(&bad_detail),
        row("backup.rewrap", &["backup", "rewrap", "--id", &archive], 0).archive(&archive),
        row("backup.rewrap", &["backup", "rewrap", "--id", unknown], 3).archive(unknown),
        row(
            "backup.download",
            &["backup", "download", "--id", &archive, "--file", copy],
            0,
        )
        .archive(&archive),
        row(
            "backup.download",
            &["backup", "download", "--id", unknown, "--file", copy],
            3,
        )
        .archive(unknown),
        row("backup.upload", &["backup", "upload", "--file", copy], 0).archive(&archive),
        row(
            "backup.upload",
            &["backup", "upload", "--file", s(&foreign_bad_file)],
            5,
        )
        .detail(&format!("file {}", foreign_bad_file.display())),
        row("backup.delete", &["backup", "delete", "--id", &doomed], 0).archive(&doomed),
        row("backup.delete", &["backup", "delete", "--id", unknown], 3).archive(unknown),
        // BMCs
        with(
            row("backup.pull", &["backup", "pull"], 0).bmc(&host),
            bmc(&bmc_pw),
        ),
        with(
            row("backup.pull", &["backup", "pull"], 4).bmc(&host),
            bmc(&bmc_wrong),
        ),
        with(
            row(
                "backup.restore",
                &["backup", "restore", "--id", &archive],
                2,
            )
            .archive(&archive)
            .bmc(&host),
            bmc(&bmc_pw),
        ),
        with(
            row(
                "backup.restore",
                &["backup", "restore", "--id", &pulled, "--yes"],
                0,
            )
            .archive(&pulled)
            .bmc(&host),
            bmc(&bmc_pw),
        ),
    ];

    let mut bad_rows = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for r in &rows {
        let v = if r.damaged_home { &damaged } else { &v };
        let before = audit_records(v).len();
        let argv: Vec<&str> = r.args.iter().map(String::as_str).collect();
        let o = v.cmd(&argv).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let what = format!("vault {}", r.args.join(" "));
        if o.status.code() != Some(r.code) {
            bad_rows.push(format!(
                "{what}: exit {:?}, expected {}: {err}",
                o.status.code(),
                r.code
            ));
            continue;
        }
        let recs = audit_records(v);
        if recs.len() != before + 1 {
            bad_rows.push(format!(
                "{what}: {} records appended, expected 1",
                recs.len() - before
            ));
            continue;
        }
        let rec = &recs[before];
        let failed = r.code != 0;
        covered.insert((r.operation, failed));
        let mut want = vec![
            ("operation", Value::from(r.operation)),
            (
                "result",
                Value::from(if failed { "failure" } else { "success" }),
            ),
        ];
        let kind = match r.code {
            0 => Value::Null,
            2 => "usage".into(),
            3 => "not-found".into(),
            4 => "auth".into(),
            5 => "integrity".into(),
            c => panic!("no kind for exit {c}"),
        };
        want.push(("errorKind", kind));
        for (field, v) in [
            ("keyId", &r.key_id),
            ("archiveId", &r.archive_id),
            ("bmcHost", &r.bmc_host),
            ("detail", &r.detail),
        ] {
            if let Some(v) = v {
                want.push((field, Value::from(v.as_str())));
            }
        }
        for (field, value) in want {
            let got = rec.get(field).cloned().unwrap_or(Value::Null);
            if got != value {
                bad_rows.push(format!("{what}: {field} is {got}, expected {value}"));
            }
        }
        // A success that names an archive or key is the one it printed.
        if !failed
            && r.archive_id.is_none()
            && r.key_id.is_none()
            && r.bmc_host.is_none()
            && let Ok(j) = serde_json::from_slice::<Value>(&o.stdout)
            && let Some(id) = j["id"].as_str()
        {
            let named = [&rec["keyId"], &rec["archiveId"]];
            if !named.iter().any(|n| n.as_str() == Some(id)) {
                bad_rows.push(format!("{what}: record {rec} does not name {id}"));
            }
        }
    }
    for op in AUDITED {
        for failed in [false, true] {
            if !covered.contains(&(op, failed)) {
                bad_rows.push(format!(
                    "{op}: no {} row ran",
                    if failed { "failure" } else { "success" }
                ));
            }
        }
    }
    let verify = v.ok(&["audit", "verify"]);
    assert_eq!(verify["intact"], true, "{verify}");
    assert!(
        bad_rows.is_empty(),
        "{} problems:\n{}",
        bad_rows.len(),
        bad_rows.join("\n")
    );
}

//! Issue 17, "tables for people": every list command's `--output table` fits 100
//! columns, shows short ids that `--id` accepts, human sizes and local times with their
//! age; the JSON is unchanged.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::{Vault, s};
use serde_json::Value;
use unicode_width::UnicodeWidthStr;
use vault::bmc::{SimConfig, SimHandle};

fn table(v: &Vault, args: &[&str]) -> String {
    let mut all = vec!["--output", "table"];
    all.extend_from_slice(args);
    let out: Output = v.cmd(&all).env("TZ", "Asia/Kolkata").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for line in text.lines() {
        assert!(
            UnicodeWidthStr::width(line) <= 100,
            "vault {args:?}: {} columns:\n{line}",
            UnicodeWidthStr::width(line)
        );
    }
    assert!(!text.trim().is_empty(), "vault {args:?} printed no table");
    text
}

/// A home with keys in several scopes and domains and archives with long descriptions.
fn busy_home() -> (Vault, Vec<Value>) {
    let v = Vault::new();
    v.create_key(&[
        "--description",
        "the nightly system key, rotated every quarter by the custodians",
    ]);
    for d in ["rack-01", "rack-02-with-a-rather-long-domain-name"] {
        v.create_key(&[
            "--scope",
            "domain",
            "--domain",
            d,
            "--description",
            "domain key",
        ]);
    }
    let input = v.path("in.bin");
    std::fs::write(&input, vec![7u8; 3 * 1024 * 1024 + 17]).unwrap();
    let mut created = Vec::new();
    for i in 0..6 {
        let desc = format!(
            "backup of BMC ilo-rack1-u{i:02}.datacenter-east.example.net:443 before the iLO 6 firmware update"
        );
        created.push(v.ok(&[
            "backup",
            "create",
            "--file",
            s(&input),
            "--description",
            &desc,
        ]));
    }
    (v, created)
}

#[test]
fn key_and_backup_lists_fit_and_their_short_ids_work_with_get() {
    let (v, created) = busy_home();
    let keys = table(&v, &["keys", "list"]);
    let backups = table(&v, &["backup", "list"]);
    assert!(backups.starts_with("ID "), "{backups}");
    assert!(backups.contains("3.0 MiB"), "{backups}");
    assert!(
        !backups.contains("skip:") && !backups.contains("limit:"),
        "{backups}"
    );
    // createdAt in IST (+05:30) with its age.
    let created_at: jiff::Timestamp = created[0]["createdAt"].as_str().unwrap().parse().unwrap();
    let local = created_at
        .to_zoned(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
        .strftime("%Y-%m-%d %H:%M")
        .to_string();
    assert!(
        backups.contains(&format!("{local} (now)")),
        "{local}: {backups}"
    );

    for (list, what) in [(&keys, "keys"), (&backups, "backup")] {
        let short = list
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert_eq!(short.len(), 8, "{list}");
        let got = v.ok(&[what, "get", "--id", short]);
        assert!(got["id"].as_str().unwrap().starts_with(short));
    }
    // The JSON is as it was: full ids, raw sizes, RFC 3339 UTC.
    let j = v.ok(&["backup", "list"]);
    let first = &j["resources"][0];
    assert_eq!(first["id"].as_str().unwrap().len(), 36);
    assert!(first["size"].is_u64());
    assert!(first["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(j["total"], 6);
}

#[test]
fn audit_log_sweep_and_records_fit() {
    let (v, created) = busy_home();
    let log = table(&v, &["audit", "log"]);
    assert!(log.lines().count() >= 10, "{log}");
    table(&v, &["audit", "verify"]);
    let sweep = table(&v, &["audit", "archives", s(&v.home.join("archives"))]);
    assert_eq!(sweep.lines().count(), 1 + created.len(), "{sweep}");
    let id = created[0]["id"].as_str().unwrap();
    let get = table(&v, &["backup", "get", "--id", id]);
    assert!(get.contains(id), "single records show the full id: {get}");
    assert!(get.contains("(3145745 bytes)"), "{get}");
    let archive = v.home.join("archives").join(format!("{id}.vault"));
    table(&v, &["inspect", "--file", s(&archive)]);
    table(&v, &["backup", "verify", "--id", &id[..8]]);
}

#[test]
fn fleet_results_fit() {
    let v = Vault::new();
    v.create_key(&[]);
    let pw = v.path("bmc.pw");
    std::fs::write(&pw, "sim-pw").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sims: Vec<SimHandle> = (0..3)
        .map(|i| {
            SimHandle::start(SimConfig {
                user: "admin".into(),
                // The third BMC refuses the password.
                password: if i == 2 {
                    "other".into()
                } else {
                    "sim-pw".into()
                },
                ..SimConfig::default()
            })
            .unwrap()
        })
        .collect();
    let mut inv = String::new();
    for sim in &sims {
        inv.push_str(&format!(
            "[[bmc]]\nurl = \"{}\"\nca_cert = \"{}\"\n\n",
            sim.base_url(),
            sim.ca_cert_path().display()
        ));
    }
    let inv_path = v.path("fleet.toml");
    std::fs::write(&inv_path, inv).unwrap();
    let t = table(
        &v,
        &[
            "backup",
            "pull",
            "--inventory",
            s(&inv_path),
            "--bmc-user",
            "admin",
            "--bmc-password-file",
            s(&pw),
            "--retries",
            "0",
        ],
    );
    assert_eq!(
        t.lines()
            .filter(|l| l.contains(" ok ") || l.ends_with(" ok"))
            .count(),
        2,
        "{t}"
    );
    assert!(t.contains("failed"), "{t}");
}

//! The shipped systemd units (dist/systemd/) and cron example (dist/cron/): verified by
//! `systemd-analyze`, hardened as issue 17 asks, and the overlap behaviour they document.
mod common;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::BIN;

fn dist(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(dist(rel)).unwrap()
}

/// Every `Key=` line of a unit, in order (comments and sections dropped).
fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value<'a>(set: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    set.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn service_is_hardened_with_the_home_as_only_writable_path() {
    let set = settings(&read("systemd/vault-pull.service"));
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("User", "vault"),
        ("Group", "vault"),
        ("StateDirectory", "vault"),
        ("StateDirectoryMode", "0700"),
        ("Environment", "VAULT_HOME=/var/lib/vault"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
        ("Type", "oneshot"),
    ] {
        assert!(
            value(&set, key).contains(&want),
            "{key}={want} missing from vault-pull.service"
        );
    }
    // Nothing but the StateDirectory (the home) may be writable.
    for key in [
        "ReadWritePaths",
        "LogsDirectory",
        "CacheDirectory",
        "RuntimeDirectory",
    ] {
        assert!(value(&set, key).is_empty(), "{key}= adds a writable path");
    }
    // The BMC password arrives as a credential file, never on argv or in the environment.
    assert!(value(&set, "LoadCredential").contains(&"bmc-password:/etc/vault/bmc-password"));
    let exec = value(&set, "ExecStart").join(" ");
    assert!(exec.contains("--bmc-password-file ${CREDENTIALS_DIRECTORY}/bmc-password"));
    assert!(
        !value(&set, "Environment")
            .iter()
            .any(|e| e.contains("PASSWORD"))
    );
    let sysusers = read("systemd/vault.sysusers");
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with("u vault - ") && l.ends_with(" /var/lib/vault"))
    );
}

#[test]
fn units_pass_systemd_analyze_verify_and_security() {
    let Some(analyze) = tools::require("systemd-analyze", ".ci/install.d/40-systemd.sh") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // `verify` checks that ExecStart= is executable and that Documentation=man: pages exist,
    // so the test points it at the binary under test and at the man pages it generates.
    // That path is the only change made to the shipped files.
    let service = read("systemd/vault-pull.service");
    assert_eq!(service.matches("/usr/local/bin/vault ").count(), 1);
    let units = tmp.path().join("units");
    std::fs::create_dir(&units).unwrap();
    std::fs::write(
        units.join("vault-pull.service"),
        service.replace("/usr/local/bin/vault ", &format!("{BIN} ")),
    )
    .unwrap();
    std::fs::copy(
        dist("systemd/vault-pull.timer"),
        units.join("vault-pull.timer"),
    )
    .unwrap();
    let man = tmp.path().join("man");
    let out = Command::new(BIN)
        .args(["manpages", "--dir"])
        .arg(man.join("man1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(&analyze)
        .arg("verify")
        .arg(units.join("vault-pull.service"))
        .arg(units.join("vault-pull.timer"))
        .env("MANPATH", &man)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Unknown or misspelt settings are only warnings: they must fail the test too.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );

    // The exposure score of the offline security analysis (0 = locked down, 10 = none):
    // below 2 is systemd's "OK" band.
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(units.join("vault-pull.service"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for vault-pull.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(score < 2.0, "exposure {score}:\n{text}");
}

#[test]
fn timer_runs_nightly_and_catches_up() {
    let set = settings(&read("systemd/vault-pull.timer"));
    assert_eq!(value(&set, "Unit"), ["vault-pull.service"]);
    assert_eq!(value(&set, "Persistent"), ["true"]);
    assert_eq!(value(&set, "WantedBy"), ["timers.target"]);
    assert_eq!(value(&set, "OnCalendar").len(), 1);
}

/// The cron example's command line, with `vault` replaced by `program`.
fn cron_command(program: &str) -> String {
    let cron = read("cron/vault");
    let line = cron
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .expect("a cron line");
    // m h dom mon dow user command
    let cmd = line
        .split_whitespace()
        .skip(6)
        .collect::<Vec<_>>()
        .join(" ");
    cmd.replace("/usr/local/bin/vault", program)
}

#[test]
fn overlapping_cron_run_exits_cleanly_without_running() {
    let Some(_) = tools::require("flock", ".ci/install.d/40-systemd.sh") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let marker = tmp.path().join("ran");
    // A stand-in for vault that records that it ran.
    let fake = tmp.path().join("fake-vault");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmd =
        cron_command(fake.to_str().unwrap()).replace("/var/lib/vault", home.to_str().unwrap());
    assert!(
        cmd.contains("flock"),
        "the cron example must guard against overlap: {cmd}"
    );

    // Nobody holds the lock: it runs.
    let st = Command::new("sh").arg("-c").arg(&cmd).status().unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);

    // A first run still holds the lock: the second exits 0 at once and does not run.
    let lock = home.join(".cron.lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    // Wait (bounded) until the holder has the lock: a non-blocking try then fails.
    for _ in 0..500 {
        let free = Command::new("flock")
            .args(["-n"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        if !free.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let st = Command::new("sh").arg("-c").arg(&cmd).status().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        st.success(),
        "an overlapping run must exit 0 (cron mails otherwise)"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().lines().count(),
        1,
        "the overlapping run must not start vault"
    );
}

//! Issue #16: a fleet served by ONE simulator process (`vault bmc-simulator --count N`,
//! one port per BMC, one accept thread for all) and pulled by one `backup pull
//! --inventory` run: every BMC is archived exactly once under its own serial, the BMCs
//! that have a fault fail and only they do, and every pull is audited in one intact
//! chain.
//!
//! Default `cargo test`: 40 BMCs at --parallel 8. The fleet of the issue:
//! `VAULT_FLEET_BMCS=10000 VAULT_FLEET_PARALLEL=256 cargo test --release --test fleet -- --nocapture`
//! (speed is measured by `benches/fleet.sh`, not here).
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Vault, s};
use serde_json::Value;

const PASSWORD: &str = "fleet-password";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The simulator process; stopped by its pid (SIGTERM) on drop.
struct Fleet(Child);

impl Fleet {
    /// `vault bmc-simulator --count n`, returned once every BMC listens.
    fn start(n: usize, inventory: &Path, pw: &Path, extra: &[&str]) -> Fleet {
        let mut child = Command::new(BIN)
            .args(["bmc-simulator", "--count", &n.to_string(), "--inventory"])
            .arg(inventory)
            .args(["--password-file", s(pw), "--serial", "CZFLEET"])
            .args(["--backup-size", "8192"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let fleet = Fleet(child);
        // The banner comes once every BMC listens and the inventory is written.
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines().take(3) {
            banner.push_str(&line.unwrap());
            banner.push('\n');
        }
        assert!(
            banner.contains(&format!("fleet: {n} BMCs")),
            "simulator banner: {banner}"
        );
        fleet
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn one_simulator_process_serves_a_fleet_pulled_in_one_run() {
    let n = env_usize("VAULT_FLEET_BMCS", 40);
    let parallel = env_usize("VAULT_FLEET_PARALLEL", 8);
    let fault_every = 7;
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    let pw = v.path("bmc.pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let inventory = v.path("fleet.toml");

    let fleet = Fleet::start(
        n,
        &inventory,
        &pw,
        &[
            "--fault",
            "server-error",
            "--fault-every",
            &fault_every.to_string(),
        ],
    );
    let inv = std::fs::read_to_string(&inventory).unwrap();
    assert_eq!(inv.matches("[[bmc]]").count(), n);
    let ports: std::collections::BTreeSet<&str> = inv
        .lines()
        .filter_map(|l| l.strip_prefix("url = \"https://127.0.0.1:"))
        .collect();
    assert_eq!(ports.len(), n, "one port per BMC");

    let started = Instant::now();
    let out = v
        .cmd(&[
            "backup",
            "pull",
            "--inventory",
            s(&inventory),
            "--bmc-password-file",
            s(&pw),
            "--parallel",
            &parallel.to_string(),
            "--retries",
            "0",
        ])
        .output()
        .unwrap();
    let wall = started.elapsed();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let faulty = n / fault_every;
    assert_eq!(doc["total"], n);
    assert_eq!(doc["failed"], faulty, "{}", doc["failed"]);
    assert_eq!(out.status.code(), Some(if faulty > 0 { 8 } else { 0 }));

    // Every healthy BMC archived once under its own serial; the faulty ones (the 7th,
    // 14th, …) failed and only they did.
    let mut serials: BTreeMap<String, usize> = BTreeMap::new();
    for r in doc["results"].as_array().unwrap() {
        if r["status"] == "ok" {
            *serials
                .entry(r["serialNumber"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(serials.len(), n - faulty);
    assert!(serials.values().all(|&c| c == 1));
    for i in 1..=n {
        let serial = format!("CZFLEET-{i:05}");
        assert_eq!(
            serials.contains_key(&serial),
            i % fault_every != 0,
            "{serial}"
        );
    }
    let archives = std::fs::read_dir(v.home.join("archives"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".vault")
        })
        .count();
    assert_eq!(archives, n - faulty);

    // One intact audit chain with a record per BMC.
    let report = vault::audit::AuditLog::open(&v.home).verify().unwrap();
    assert!(report.is_intact() && report.torn_tail.is_none());
    let log = std::fs::read_to_string(v.home.join("audit.log")).unwrap();
    let pulls: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["operation"] == "backup.pull")
        .collect();
    assert_eq!(pulls.len(), n);
    assert_eq!(
        pulls.iter().filter(|r| r["result"] == "success").count(),
        n - faulty
    );
    drop(fleet);
    eprintln!("fleet of {n} BMCs from one simulator process, --parallel {parallel}: {wall:?}");
}

/// Group commit keeps the crash guarantees: a fleet pull killed with SIGKILL at random
/// moments leaves only whole archives, an intact audit chain, and a `backup.pull` success
/// record only for an archive that is there (the archive is committed before its record).
/// `VAULT_FLEET_KILLS` runs (default 6).
#[test]
fn a_fleet_pull_killed_midway_leaves_whole_archives_and_an_intact_chain() {
    let kills = env_usize("VAULT_FLEET_KILLS", 6);
    let n = 60;
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    let pw = v.path("bmc.pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let inventory = v.path("fleet.toml");
    let _fleet = Fleet::start(n, &inventory, &pw, &["--latency-ms", "20"]);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut midway = 0;
    let mut verified = std::collections::BTreeSet::new();
    // At least `kills` rounds, and more (up to three times as many) until a kill has
    // landed while archives were being committed.
    for round in 0..kills * 3 {
        if round >= kills && midway > 0 {
            break;
        }
        let before = archives(&v.home).len();
        let mut child = v
            .cmd(&[
                "backup",
                "pull",
                "--inventory",
                s(&inventory),
                "--bmc-password-file",
                s(&pw),
                "--parallel",
                "16",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(150 + x % 1200));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let present = archives(&v.home);
        if present.len() > before && present.len() < before + n {
            midway += 1;
        }
        // Every archive this round put under its final name is whole and authentic.
        for id in present.difference(&verified) {
            v.ok(&["backup", "verify", "--id", id]);
        }
        verified.clone_from(&present);
        let report = vault::audit::AuditLog::open(&v.home).verify().unwrap();
        assert!(report.is_intact(), "round {round}: audit chain broken");
        let log = std::fs::read_to_string(v.home.join("audit.log")).unwrap();
        for r in log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["operation"] == "backup.pull" && r["result"] == "success")
        {
            let id = r["archiveId"].as_str().unwrap();
            assert!(
                present.contains(id),
                "round {round}: audited pull {id} has no archive"
            );
        }
    }
    assert!(
        midway > 0,
        "no kill landed while archives were being committed"
    );
}

fn archives(home: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(home.join("archives"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .strip_suffix(".vault")
                .map(str::to_string)
        })
        .collect()
}

//! Issue 17: the README's copy-paste examples work. Every ```bash block of README.md that
//! follows a `<!-- tested: tests/readme.rs runs this block -->` line is run, in README
//! order, by `bash -euo pipefail` in one scratch directory, with `vault` (this build) on
//! PATH, a fresh `VAULT_HOME`, a temporary `PREFIX` and `ROOT` for install steps (with
//! `VAULT_SRC` the checkout and `VAULT_BIN` this build); each must exit 0.
mod common;

use std::path::Path;
use std::process::Command;

const MARKER: &str = "<!-- tested: tests/readme.rs runs this block -->";

fn tested_blocks(readme: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == MARKER {
            assert_eq!(
                lines.get(i + 1).map(|l| l.trim()),
                Some("```bash"),
                "README.md line {}: the marker must be followed by a ```bash block",
                i + 1
            );
            let start = i + 2;
            let end = (start..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap_or_else(|| panic!("README.md line {}: unterminated block", i + 2));
            out.push((start, lines[start..end].join("\n")));
            i = end;
        }
        i += 1;
    }
    out
}

#[test]
fn every_tested_readme_example_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = tested_blocks(&readme);
    // Scheduling, fleet, config, metrics, syslog, man pages and completions, tables.
    assert!(blocks.len() >= 7, "only {} tested blocks", blocks.len());
    let scratch = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(common::BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (line, script) in &blocks {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(scratch.path())
            .env("PATH", &path)
            .env("VAULT_HOME", scratch.path().join("home"))
            .env("PREFIX", scratch.path().join("prefix"))
            .env("ROOT", scratch.path().join("root"))
            .env("VAULT_SRC", root)
            .env("VAULT_BIN", common::BIN)
            .env_remove("VAULT_SYSLOG")
            .env_remove("VAULT_PARALLEL")
            .env_remove("VAULT_METRICS_FILE")
            .env_remove("VAULT_BMC_PASSWORD")
            .env_remove("VAULT_BMC_USER")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README.md block at line {line} failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // What the blocks claim to leave behind.
    let sysroot = scratch.path().join("root");
    for installed in [
        "usr/local/bin/vault",
        "etc/systemd/system/vault-pull.service",
        "etc/systemd/system/timers.target.wants/vault-pull.timer",
        "etc/cron.d/vault",
    ] {
        assert!(
            sysroot.join(installed).symlink_metadata().is_ok(),
            "the scheduling install left no {installed}"
        );
    }
    let passwd = std::fs::read_to_string(sysroot.join("etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("vault:")),
        "systemd-sysusers made no vault user: {passwd}"
    );
    assert!(
        scratch
            .path()
            .join("prefix/share/man/man1/vault-backup-pull.1")
            .exists()
    );
    let prom = std::fs::read_to_string(scratch.path().join("vault.prom")).unwrap();
    assert!(prom.contains("vault_sweep_timestamp_seconds"), "{prom}");
    let fleet: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch.path().join("fleet-result.json")).unwrap())
            .unwrap();
    assert_eq!(
        (fleet["total"].as_u64(), fleet["succeeded"].as_u64()),
        (Some(200), Some(200))
    );
}

//! `--metrics-file`: what vault writes passes `promtool check metrics` (Debian's
//! prometheus package), for pulls, sweeps and both in one file.
mod tools;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use vault::metrics::{self, PullOutcome, PullSample, SweepSample};

/// Runs `promtool check metrics` on the file; panics with its complaints.
pub fn promtool_check(path: &Path) {
    let Some(promtool) = tools::require("promtool", ".ci/install.d/41-prometheus.sh") else {
        return;
    };
    let text = std::fs::read(path).unwrap();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    // promtool prints lint problems (and exits 3 on them), or nothing at all.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics rejects {}:\n{}{}\n--- file ---\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&text)
    );
}

#[test]
fn pull_and_sweep_metrics_pass_promtool() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("vault.prom");
    let now = SystemTime::now();
    let pulls: Vec<PullSample> = (0..20)
        .map(|i| PullSample {
            bmc: format!("ilo-{i}.example:443"),
            outcome: if i % 3 == 0 {
                PullOutcome::Failure {
                    kind: ["bmc", "auth", "io"][i % 9 / 3].into(),
                }
            } else {
                PullOutcome::Success {
                    bytes: 1000 + i as u64,
                }
            },
            duration: Duration::from_millis(250 * i as u64),
            finished: now,
        })
        .collect();
    metrics::write_pulls(&p, &pulls, Duration::from_secs(7), now).unwrap();
    promtool_check(&p);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("# TYPE vault_bmc_pull_failures_total counter"));
    assert!(text.contains("vault_bmc_last_success{bmc=\"ilo-1.example:443\"} 1"));

    let sweep = SweepSample {
        files: 12,
        archives: 11,
        ok: 2,
        skipped: 1,
        verified: 0,
        integrity_failures: 5,
        findings: vault::sweep::FindingCode::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), 1))
            .collect(),
        duration: Duration::from_millis(1234),
        finished: now,
    };
    metrics::write_sweep(&p, &sweep).unwrap();
    promtool_check(&p);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("vault_sweep_findings{finding=\"authentication-failed\"} 1"));
    assert!(text.contains("vault_bmc_last_success{bmc=\"ilo-1.example:443\"} 1"));
}

#[test]
fn promtool_is_a_real_check() {
    // The same check rejects a file that breaks the exposition format's rules, so the
    // test above cannot pass vacuously.
    let Some(promtool) = tools::require("promtool", ".ci/install.d/41-prometheus.sh") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.prom");
    std::fs::write(&bad, "# TYPE vault_x counter\nvault_x 1\n").unwrap();
    let out = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&bad).unwrap())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a counter without _total passed promtool"
    );
}

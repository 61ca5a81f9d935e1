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

mod cli {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use vault::bmc::{SimConfig, SimHandle};

    fn vault(home: &std::path::Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vault"));
        c.arg("--home").arg(home);
        c.env_remove("VAULT_METRICS_FILE")
            .env_remove("VAULT_SYSLOG")
            .env_remove("VAULT_HOME");
        c
    }

    fn ok(c: &mut Command) -> String {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A fleet of three (one refuses the password) pulled with --metrics-file, then a sweep
    /// into the same file named by config.toml: promtool accepts both, and the values are
    /// the fleet's.
    #[test]
    fn fleet_pull_and_sweep_write_checked_metrics() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        ok(vault(&home).args(["keys", "create"]));
        let pw = d.path().join("bmc.pw");
        std::fs::write(&pw, "sim-pw").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let sims: Vec<SimHandle> = (0..3)
            .map(|i| {
                SimHandle::start(SimConfig {
                    user: "admin".into(),
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
        for s in &sims {
            inv.push_str(&format!(
                "[[bmc]]\nurl = \"{}\"\nca_cert = \"{}\"\n\n",
                s.base_url(),
                s.ca_cert_path().display()
            ));
        }
        let inv_path = d.path().join("fleet.toml");
        std::fs::write(&inv_path, inv).unwrap();
        let prom = d.path().join("vault.prom");
        let out = vault(&home)
            .args(["backup", "pull", "--inventory"])
            .arg(&inv_path)
            .args([
                "--bmc-user",
                "admin",
                "--retries",
                "0",
                "--bmc-password-file",
            ])
            .arg(&pw)
            .arg("--metrics-file")
            .arg(&prom)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(8),
            "one BMC fails: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        super::promtool_check(&prom);
        let text = std::fs::read_to_string(&prom).unwrap();
        let host = |s: &SimHandle| s.base_url().trim_start_matches("https://").to_string();
        assert!(
            text.contains(&format!(
                "vault_bmc_last_success{{bmc=\"{}\"}} 1",
                host(&sims[0])
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "vault_bmc_pull_failures_total{{bmc=\"{}\",kind=\"auth\"}} 1",
                host(&sims[2])
            )),
            "{text}"
        );
        assert!(
            text.contains("vault_pull_run_bmcs{result=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("vault_bmc_last_backup_bytes{"), "{text}");

        // The sweep takes the file from config.toml (relative to the home).
        std::fs::write(
            home.join("config.toml"),
            "metrics-file = \"../vault.prom\"\n",
        )
        .unwrap();
        std::fs::set_permissions(
            home.join("config.toml"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        ok(vault(&home)
            .args(["audit", "archives"])
            .arg(home.join("archives")));
        super::promtool_check(&prom);
        let text = std::fs::read_to_string(&prom).unwrap();
        assert!(text.contains("vault_sweep_archives 2"), "{text}");
        assert!(
            text.contains("vault_sweep_findings{finding=\"key-missing\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("vault_pull_run_bmcs{result=\"ok\"} 2"),
            "pull samples kept: {text}"
        );
    }

    /// Flag > environment > config.toml, for --metrics-file.
    #[test]
    fn metrics_file_precedence() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        ok(vault(&home).args(["keys", "create"]));
        std::fs::write(
            home.join("config.toml"),
            "metrics-file = \"from-file.prom\"\n",
        )
        .unwrap();
        std::fs::set_permissions(
            home.join("config.toml"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let archives = home.join("archives");
        let sweep = |flag: Option<&str>, env: Option<&str>| {
            let mut c = vault(&home);
            c.args(["audit", "archives"]).arg(&archives);
            if let Some(f) = flag {
                c.arg("--metrics-file").arg(d.path().join(f));
            }
            if let Some(e) = env {
                c.env("VAULT_METRICS_FILE", d.path().join(e));
            }
            ok(&mut c);
        };
        sweep(None, None);
        assert!(home.join("from-file.prom").exists());
        sweep(None, Some("from-env.prom"));
        assert!(d.path().join("from-env.prom").exists());
        sweep(Some("from-flag.prom"), Some("not-this.prom"));
        assert!(d.path().join("from-flag.prom").exists());
        assert!(!d.path().join("not-this.prom").exists());

        let shown: serde_json::Value = serde_json::from_str(&ok(vault(&home)
            .args(["config", "show"])
            .env("VAULT_SYSLOG", "udp://127.0.0.1:5514")))
        .unwrap();
        let s = &shown["settings"];
        assert_eq!(s[0]["name"], "metrics-file");
        assert_eq!(s[0]["value"], home.join("from-file.prom").to_str().unwrap());
        assert_eq!(
            s[0]["source"],
            format!("file {}", home.join("config.toml").display())
        );
        assert_eq!(s[1]["name"], "syslog");
        assert_eq!(s[1]["value"], "udp://127.0.0.1:5514");
        assert_eq!(s[1]["source"], "env VAULT_SYSLOG");
    }
}

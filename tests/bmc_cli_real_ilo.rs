//! Issue #14 (and 13.1, 13.9) through the real binary: the CLI side of a client that
//! copes with real BMCs. In-process simulators on 127.0.0.1; every test checks that no
//! BMC session is left open.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use vault::bmc::{SimConfig, SimHandle};

const PASSWORD: &str = "sim-password-14";
const FILE_PASSWORD: &str = "ilo-file-pass-14";

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let h = Home {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = h.vault(&["keys", "create"]);
        assert!(out.status.success(), "{}", stderr(&out));
        h
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vault"));
        c.arg("--home")
            .arg(self.dir.path().join("home"))
            .args(args)
            .env_remove("VAULT_HOME")
            .env_remove("VAULT_BMC_PASSWORD")
            .env_remove("VAULT_BMC_USER")
            .env_remove("VAULT_ILO_FILE_PASSWORD")
            .stdin(Stdio::null());
        c
    }

    fn vault(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `backup restore --yes` of archive `id` to `bmc` plus `extra`.
    fn restore(&self, id: &str, bmc: &str, extra: &[&str]) -> Output {
        let pw = self.file("bmc.pw", PASSWORD);
        let mut args = vec!["backup", "restore", "--id", id, "--bmc", bmc];
        let pw = s(&pw);
        args.extend(["--bmc-user", "admin", "--bmc-password-file", &pw, "--yes"]);
        args.extend_from_slice(extra);
        self.vault(&args)
    }

    /// `backup pull` of `sim` plus `extra`.
    fn pull(&self, sim: &SimHandle, extra: &[&str]) -> Output {
        let pw = self.file("bmc.pw", PASSWORD);
        let mut args = vec![
            "backup".to_string(),
            "pull".into(),
            "--bmc".into(),
            sim.base_url(),
            "--bmc-user".into(),
            "admin".into(),
            "--bmc-password-file".into(),
            s(&pw),
        ];
        args.extend(extra.iter().map(|x| x.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vault(&refs)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn sim_with(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig {
        user: "admin".into(),
        password: PASSWORD.into(),
        ..SimConfig::default()
    };
    f(&mut cfg);
    SimHandle::start(cfg).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout then stderr.
fn both(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o))
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// Issue 13.1: http:// is refused without --allow-http (nothing sent), and warned about
/// on every use with it.
#[test]
fn plain_http_needs_allow_http_and_is_warned_about() {
    let h = Home::new();
    let sim = sim_with(|c| c.tls = false);
    let out = h.pull(&sim, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-http"), "{}", stderr(&out));
    assert_eq!(sim.request_count(), 0, "nothing went over plain HTTP");
    for _ in 0..2 {
        let out = h.pull(&sim, &["--allow-http"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("warning: --allow-http: plain HTTP to BMC 127.0.0.1:"),
            "{}",
            stderr(&out)
        );
    }
    // The inventory field works the same way.
    let inv = h.file(
        "fleet.toml",
        &format!("[[bmc]]\nurl = \"{}\"\nallow_http = true\n", sim.base_url()),
    );
    let pw = h.file("bmc.pw", PASSWORD);
    let out = h.vault(&[
        "backup",
        "pull",
        "--inventory",
        &s(&inv),
        "--bmc-user",
        "admin",
        "--bmc-password-file",
        &s(&pw),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: --allow-http"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sim.open_sessions(), 0);
}

/// Defect 2 through the CLI: `pull --file-password-file` asks iLO for a protected
/// backup, keeps the password encrypted in the archive, and `restore` gives it back
/// without being told; the password is in no output and not in the archive in clear.
#[test]
fn file_password_is_sealed_with_the_backup_and_used_by_restore() {
    let h = Home::new();
    let sim = sim_with(|c| c.get_download = false);
    let fpw = h.file("file.pw", FILE_PASSWORD);
    let ca = s(sim.ca_cert_path());
    let out = h.pull(&sim, &["--ca-cert", &ca, "--file-password-file", &s(&fpw)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(FILE_PASSWORD));
    assert!(!stderr(&out).contains(FILE_PASSWORD));
    let posts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.target.starts_with("/bkupdata/"))
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].form_fields, ["sessionKey", "password"]);
    for entry in std::fs::read_dir(h.dir.path().join("home/archives")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(FILE_PASSWORD.len())
                .any(|w| w == FILE_PASSWORD.as_bytes()),
            "the file password is in an archive in clear"
        );
    }

    let out = h.restore(&id, &sim.base_url(), &["--ca-cert", &ca]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restores = sim.restores();
    assert_eq!(restores.len(), 1);
    assert!(
        restores[0].with_password,
        "restore sent the sealed password"
    );
    assert_eq!(sim.open_sessions(), 0);

    // More than iLO's 32 characters is refused before anything is sent.
    let long = h.file("long.pw", &"x".repeat(33));
    let before = sim.request_count();
    let out = h.pull(&sim, &["--ca-cert", &ca, "--file-password-file", &s(&long)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("at most 32"), "{}", stderr(&out));
    assert_eq!(sim.request_count(), before);
}

/// Defect 3 through the CLI: a CA:TRUE self-signed certificate as --ca-cert, and
/// --tls-fingerprint alone; a wrong pin fails.
#[test]
fn ca_flag_certificate_and_fingerprint_pin() {
    let h = Home::new();
    let sim = sim_with(|c| c.ca_flag_certificate = true);
    let out = h.pull(&sim, &["--ca-cert", &s(sim.ca_cert_path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = h.pull(&sim, &["--tls-fingerprint", &sim.cert_fingerprint()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wrong = format!("sha256:{}", "00".repeat(32));
    let out = h.pull(&sim, &["--tls-fingerprint", &wrong]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not match --tls-fingerprint"),
        "{}",
        stderr(&out)
    );
    let out = h.pull(&sim, &["--tls-fingerprint", "md5:abc"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(sim.open_sessions(), 0);
}

/// Defects 4 and 5 through the CLI: no sessions suggests --auth basic; a failing
/// Manager is a note, and the pull works.
#[test]
fn no_sessions_and_failing_manager_are_explained() {
    let h = Home::new();
    let sim = sim_with(|c| c.sessions_uri = None);
    let ca = s(sim.ca_cert_path());
    let out = h.pull(&sim, &["--ca-cert", &ca]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--auth basic"), "{}", stderr(&out));
    let out = h.pull(&sim, &["--ca-cert", &ca, "--auth", "basic"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let sim = sim_with(|c| c.failing_first_manager = Some(500));
    let out = h.pull(&sim, &["--ca-cert", &s(sim.ca_cert_path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("note: BMC 127.0.0.1:") && stderr(&out).contains("Managers/0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        sim.backups_built(),
        1,
        "one read of the BackupRestoreService"
    );
    assert_eq!(sim.open_sessions(), 0);
}

/// Issue 13.9: a URL with credentials is refused, and neither stderr nor the fleet JSON
/// repeats the password (the fleet JSON names BMCs by host and port only).
#[test]
fn url_credentials_are_never_echoed() {
    let h = Home::new();
    let sim = sim_with(|_| {});
    let port = sim.base_url().rsplit(':').next().unwrap().to_string();
    let bad = format!("https://admin:hunter2-secret@127.0.0.1:{port}");
    let pw = h.file("bmc.pw", PASSWORD);
    let out = h.vault(&[
        "backup",
        "pull",
        "--bmc",
        &bad,
        "--bmc-password-file",
        &s(&pw),
    ]);
    assert!(!out.status.success());
    let all = both(&out);
    assert!(!all.contains("hunter2") && !all.contains("admin:"), "{all}");
    assert!(stderr(&out).contains(&format!("127.0.0.1:{port}")), "{all}");
    // The same for a proxy URL with credentials.
    let out = h.pull(
        &sim,
        &[
            "--ca-cert",
            &s(sim.ca_cert_path()),
            "--proxy",
            "socks5://proxyuser:hunter2-proxy@127.0.0.1:1080",
        ],
    );
    assert!(!out.status.success());
    let all = both(&out);
    assert!(all.contains("SOCKS proxies are not supported"), "{all}");
    assert!(
        !all.contains("hunter2") && !all.contains("proxyuser"),
        "{all}"
    );
    let inv = h.file(
        "fleet.json",
        &format!(
            r#"[{{"url": "{bad}"}}, {{"url": "{}", "ca_cert": "{}"}}]"#,
            sim.base_url(),
            s(sim.ca_cert_path())
        ),
    );
    let out = h.vault(&[
        "backup",
        "pull",
        "--inventory",
        &s(&inv),
        "--bmc-user",
        "admin",
        "--bmc-password-file",
        &s(&pw),
    ]);
    let all = both(&out);
    assert!(!all.contains("hunter2"), "{all}");
    let v = json(&out);
    assert_eq!(v["results"][0]["bmc"], format!("127.0.0.1:{port}"));
    assert_eq!(v["results"][1]["bmc"], format!("127.0.0.1:{port}"));
    assert_eq!(v["results"][1]["status"], "ok");
    // And for restore, of an archive that exists, to the URL with credentials.
    let id = v["results"][1]["archiveId"].as_str().unwrap().to_string();
    let out = h.restore(&id, &bad, &[]);
    assert!(!out.status.success());
    let all = both(&out);
    assert!(all.contains("invalid BMC URL"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
    let audit = std::fs::read_to_string(h.dir.path().join("home/audit.log")).unwrap_or_default();
    assert!(!audit.contains("hunter2"));
    assert_eq!(sim.open_sessions(), 0);
}

/// Logins (`POST` to the session collection) that `sim` received.
fn logins(sim: &SimHandle) -> Vec<u16> {
    sim.requests()
        .iter()
        .filter(|r| {
            r.method == "POST" && r.target.starts_with("/redfish/v1/SessionService/Sessions")
        })
        .map(|r| r.status)
        .collect()
}

/// Issue 14: in a fleet, a BMC that answers `SessionLimitExceeded` is tried again after
/// the others, at most 3 times in all, instead of failing at once.
#[test]
fn fleet_tries_a_full_bmc_again_after_the_others() {
    let h = Home::new();
    // Refuses the first attempt's login and its 2 in-fleet retries, then has a slot.
    let full = sim_with(|c| c.refused_logins = 3);
    let other = sim_with(|_| {});
    let never = sim_with(|c| c.refused_logins = u32::MAX);
    let entry = |sim: &SimHandle| {
        format!(
            r#"{{"url": "{}", "ca_cert": "{}"}}"#,
            sim.base_url(),
            s(sim.ca_cert_path())
        )
    };
    let inv = h.file(
        "fleet.json",
        &format!("[{}, {}, {}]", entry(&full), entry(&other), entry(&never)),
    );
    let pw = h.file("bmc.pw", PASSWORD);
    let out = h.vault(&[
        "backup",
        "pull",
        "--inventory",
        &s(&inv),
        "--parallel",
        "1",
        "--bmc-user",
        "admin",
        "--bmc-password-file",
        &s(&pw),
    ]);
    assert!(!out.status.success(), "one BMC never had a slot");
    let v = json(&out);
    let host = |sim: &SimHandle| sim.base_url().trim_start_matches("https://").to_string();
    let r = &v["results"];
    assert_eq!(r[0]["bmc"], host(&full));
    assert_eq!(
        (&r[0]["status"], &r[0]["attempts"]),
        (&"ok".into(), &2.into())
    );
    assert_eq!(
        (&r[1]["status"], &r[1]["attempts"]),
        (&"ok".into(), &1.into())
    );
    assert_eq!(
        (&r[2]["status"], &r[2]["attempts"]),
        (&"failed".into(), &3.into())
    );
    let err = r[2]["error"].as_str().unwrap();
    assert!(err.contains("no free session slot"), "{err}");
    assert_eq!(
        (v["succeeded"].clone(), v["failed"].clone()),
        (2.into(), 1.into())
    );
    assert!(
        stderr(&out).contains("trying it again after the other BMCs"),
        "{}",
        stderr(&out)
    );
    // 1 + 2 retries per attempt: the full BMC refused 3 and then took the 4th login; the
    // other never got more than its 3 attempts of 3.
    assert_eq!(logins(&full), [503, 503, 503, 201]);
    assert_eq!(logins(&other), [201]);
    assert_eq!(logins(&never), [503; 9]);
    // Order, from the audit log: the full BMCs went again only after the others.
    let audit = std::fs::read_to_string(h.dir.path().join("home/audit.log")).unwrap();
    let order: Vec<(String, bool)> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["operation"] == "backup.pull")
        .map(|r| {
            let ok = r.to_string().contains("\"success\"");
            (r["bmcHost"].as_str().unwrap_or_default().to_string(), ok)
        })
        .collect();
    let (f, o, n) = (host(&full), host(&other), host(&never));
    assert_eq!(
        order,
        [
            (f.clone(), false),
            (o, true),
            (n.clone(), false),
            (f, true),
            (n.clone(), false),
            (n, false),
        ],
        "{audit}"
    );
    for sim in [&full, &other, &never] {
        assert_eq!(sim.open_sessions(), 0);
    }
}

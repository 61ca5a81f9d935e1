//! Issue #4: `vault backup pull` / `restore`, fleets, `vault bmc-simulator` and `vault demo`,
//! run as the real binary against in-process simulators on 127.0.0.1.
//!
//! Every test has its own home; simulators stop when their handle drops. Nothing here
//! asserts wall-clock time: deadlines only bound waits so a bug cannot hang the suite.
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vault::bmc::{Fault, SimConfig, SimHandle};

const PASSWORD: &str = "sim-password-4";

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A fresh home with a default system key.
    fn new() -> Home {
        let h = Home {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = h.vault(&["keys", "create"]);
        assert!(out.status.success(), "{}", stderr(&out));
        h
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn pw(&self) -> PathBuf {
        self.file("bmc.pw", PASSWORD)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vault"));
        c.arg("--home")
            .arg(self.path().join("home"))
            .args(args)
            .env_remove("VAULT_HOME")
            .env_remove("VAULT_BMC_PASSWORD")
            .env_remove("VAULT_BMC_USER")
            .env_remove("VAULT_KEY_PASSWORD")
            .stdin(Stdio::null());
        c
    }

    fn vault(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Every entry of archives/, temporary files included.
    fn archive_files(&self) -> Vec<String> {
        std::fs::read_dir(self.path().join("home/archives"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn listed(&self) -> usize {
        let out = self.vault(&["backup", "list"]);
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out)["total"].as_u64().unwrap() as usize
    }

    /// `backup pull` arguments for `sim` over verified HTTPS.
    fn pull_args(&self, sim: &SimHandle) -> Vec<String> {
        vec![
            "backup".into(),
            "pull".into(),
            "--bmc".into(),
            sim.base_url(),
            "--bmc-user".into(),
            "admin".into(),
            "--bmc-password-file".into(),
            self.pw().display().to_string(),
            "--ca-cert".into(),
            sim.ca_cert_path().display().to_string(),
        ]
    }

    fn run(&self, args: &[String], extra: &[&str]) -> Output {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        self.vault(&all)
    }
}

fn sim_with(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig {
        password: PASSWORD.into(),
        ..SimConfig::default()
    };
    f(&mut cfg);
    SimHandle::start(cfg).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn host(sim: &SimHandle) -> String {
    sim.base_url().trim_start_matches("https://").to_string()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ n as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Issue #4: pull then extract gives exactly the simulator's .bak bytes; restore delivers
/// exactly those bytes; no session is left behind.
#[test]
fn pull_extract_and_restore_round_trip_over_https() {
    let bytes = random_bytes(300 * 1024 + 17);
    let sim = sim_with(|c| {
        c.backup_bytes = bytes.clone();
        c.user = "admin".into();
    });
    let h = Home::new();
    let out = h.run(
        &h.pull_args(&sim),
        &["--description", "before firmware update"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sim.open_sessions(), 0);
    let v = json(&out);
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["size"], bytes.len() as u64);
    assert_eq!(v["description"], "before firmware update");
    let src = &v["source"];
    assert_eq!(src["bmcHost"], host(&sim));
    assert_eq!(src["managerModel"], "iLO 6");
    assert_eq!(src["firmwareVersion"], "iLO 6 v1.59");
    assert_eq!(src["serialNumber"], "CZ2D1234XY");
    let name = src["fileName"].as_str().unwrap();
    assert!(
        name.starts_with("HPE_CZ2D1234XY_") && name.ends_with(".bak"),
        "{name}"
    );
    assert_eq!(src["backupFileLocation"], format!("/bkupdata/{name}"));

    let extracted = h.path().join("out.bak");
    let out = h.vault(&[
        "backup",
        "extract",
        "--id",
        &id,
        "--out",
        extracted.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&extracted).unwrap(), bytes);

    let pw = h.pw();
    let out = h.vault(&[
        "backup",
        "restore",
        "--id",
        &id,
        "--bmc",
        &sim.base_url(),
        "--bmc-user",
        "admin",
        "--bmc-password-file",
        pw.to_str().unwrap(),
        "--ca-cert",
        sim.ca_cert_path().to_str().unwrap(),
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["restored"], true);
    assert_eq!(v["bytes"], bytes.len() as u64);
    assert!(v["note"].as_str().unwrap().contains("reset"));
    assert_eq!(sim.restored(), vec![bytes]);
    assert_eq!(sim.open_sessions(), 0);

    let log = vault::audit::AuditLog::open(&h.path().join("home"));
    assert!(log.verify().unwrap().is_intact());
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.contains("backup.pull") && text.contains("backup.restore"),
        "{text}"
    );
    assert!(text.contains(&host(&sim)) && !text.contains(PASSWORD));
}

/// Issue #4: for every injected fault the pull fails with a clear message naming the BMC,
/// stores nothing (not even a temporary file), and leaves no session open.
#[test]
fn every_fault_fails_cleanly_and_stores_nothing() {
    let sim = sim_with(|c| c.user = "admin".into());
    let h = Home::new();
    let args = h.pull_args(&sim);
    let faults: Vec<(Fault, &str)> = vec![
        (Fault::ServerError, "Base.1.12.InternalError"),
        (
            Fault::Slow(Duration::from_secs(30)),
            "did not answer in time",
        ),
        (Fault::SlowDrip, "stalled"),
        (Fault::CutMidDownload, "broke off"),
        (Fault::MalformedJson, "malformed"),
        (Fault::HtmlErrorPage, "HTML page"),
        (Fault::HugeContentLength, "larger than the limit"),
        (Fault::EndlessBody, "larger than the limit"),
        (Fault::RedirectLoop, "redirected"),
    ];
    for (fault, expect) in faults {
        sim.set_fault(fault.clone());
        let (sessions, fired) = (sim.sessions_created(), sim.faults_served());
        let out = h.run(
            &args,
            &["--timeout", "1", "--retries", "0", "--max-size", "1048576"],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(8), "{fault:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{fault:?}: one error line: {err}");
        assert!(
            err.contains(&host(&sim)),
            "{fault:?} must name the BMC: {err}"
        );
        assert!(
            err.contains(expect),
            "{fault:?}: expected {expect:?} in {err}"
        );
        assert!(out.stdout.is_empty(), "{fault:?}");
        assert_eq!(h.archive_files(), Vec::<String>::new(), "{fault:?}");
        // The fault was reached, inside a session that was opened, and closed again.
        assert!(
            sim.faults_served() > fired,
            "{fault:?} never fired: the pull failed before reaching it"
        );
        assert!(
            sim.sessions_created() > sessions,
            "{fault:?}: no session was opened, so none could leak"
        );
        assert_eq!(sim.open_sessions(), 0, "{fault:?} leaked a session");
    }
    assert_eq!(h.listed(), 0);
    sim.set_fault(Fault::None);
    let out = h.run(&args, &["--timeout", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(h.listed(), 1);
}

/// `--max-size` itself: an honest 2 MiB backup (below the 512 MiB default) is refused
/// under `--max-size 1048576` with nothing stored and the session closed, and pulled
/// without the flag.
#[test]
fn max_size_refuses_an_honest_backup_above_it() {
    let sim = sim_with(|c| {
        c.user = "admin".into();
        c.backup_bytes = (0..2u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
    });
    let h = Home::new();
    let args = h.pull_args(&sim);
    let out = h.run(&args, &["--max-size", "1048576"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains("larger than the limit"), "{err}");
    assert!(sim.sessions_created() > 0);
    assert_eq!(sim.open_sessions(), 0, "session leaked");
    assert_eq!(h.archive_files(), Vec::<String>::new());
    assert_eq!(sim.faults_served(), 0, "no fault was configured");
    let out = h.run(&args, &["--max-size", "4194304"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out)["size"],
        2 << 20,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = h.run(&args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(h.listed(), 2);
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue #4: Ctrl-C (SIGINT) during a slow download logs out and leaves nothing behind.
#[test]
fn sigint_during_a_slow_download_leaves_no_session_and_no_file() {
    let sim = sim_with(|c| {
        c.user = "admin".into();
        c.fault = Fault::SlowDrip;
    });
    let h = Home::new();
    let args = h.pull_args(&sim);
    let mut child = h
        .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Service root, login, discovery (one service GET) and the .bak GET: under way.
    wait_until("the download to start", || {
        sim.request_count() >= 8 && sim.open_sessions() == 1
    });
    wait_until("the temporary archive", || !h.archive_files().is_empty());
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = wait_exit(&mut child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert_eq!(sim.open_sessions(), 0);
    assert_eq!(sim.sessions_created(), 1);
    assert_eq!(h.archive_files(), Vec::<String>::new());
}

/// Issue 13.8: SIGTERM (systemd, `timeout`) and SIGHUP (a closed terminal) log out of the
/// BMC too, in a single pull and in a fleet, and leave nothing behind.
#[test]
fn sigterm_and_sighup_log_out_of_every_session_in_pulls_and_fleets() {
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        // A single pull.
        let sim = sim_with(|c| {
            c.user = "admin".into();
            c.fault = Fault::SlowDrip;
        });
        let h = Home::new();
        let args = h.pull_args(&sim);
        let child = h
            .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until("the download to start", || {
            sim.request_count() >= 8 && sim.open_sessions() == 1
        });
        let out = signal_and_wait(child, signal);
        assert_eq!(out.status.code(), Some(code), "{signal}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("SIG{signal}")),
            "{}",
            stderr(&out)
        );
        assert_eq!(sim.sessions_created(), 1, "{signal}");
        assert_eq!(sim.open_sessions(), 0, "{signal}: a session leaked");
        assert_eq!(h.archive_files(), Vec::<String>::new(), "{signal}");

        // A fleet of two BMCs, both downloading when the signal arrives.
        let sims = [0, 1].map(|_| {
            sim_with(|c| {
                c.user = "admin".into();
                c.fault = Fault::SlowDrip;
            })
        });
        let h = Home::new();
        let mut inv = String::new();
        for s in &sims {
            inv.push_str(&format!(
                "[[bmc]]\nurl = \"{}\"\nuser = \"admin\"\npassword_file = \"{}\"\nca_cert = \"{}\"\n\n",
                s.base_url(),
                h.pw().display(),
                s.ca_cert_path().display()
            ));
        }
        let inventory = h.file("fleet.toml", &inv);
        let child = h
            .cmd(&["backup", "pull", "--inventory", inventory.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until("both downloads to start", || {
            sims.iter()
                .all(|s| s.request_count() >= 8 && s.open_sessions() == 1)
        });
        let out = signal_and_wait(child, signal);
        assert_eq!(
            out.status.code(),
            Some(code),
            "fleet {signal}: {}",
            stderr(&out)
        );
        for s in &sims {
            assert_eq!(s.sessions_created(), 1, "fleet {signal}");
            assert_eq!(s.open_sessions(), 0, "fleet {signal}: a session leaked");
        }
        assert_eq!(h.archive_files(), Vec::<String>::new(), "fleet {signal}");
    }
}

/// Issue 13.8: a restore interrupted by SIGTERM or SIGHUP after its login logs out of the
/// BMC before exiting, and nothing is restored. The BMC answers each request after
/// 1 s, so the signal arrives while discovery (three more requests) is still going on.
#[test]
fn sigterm_and_sighup_during_a_restore_log_out() {
    let origin = sim_with(|c| c.user = "admin".into());
    let h = Home::new();
    let out = h.run(&h.pull_args(&origin), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    let pw = h.pw();
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let slow = sim_with(|c| {
            c.user = "admin".into();
            c.latency = Duration::from_secs(1);
        });
        let mut args = restore_args(&h, &id, &slow, &pw);
        args.push("--yes".into());
        let child = h
            .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until("the restore's login", || slow.open_sessions() == 1);
        let out = signal_and_wait(child, signal);
        assert_eq!(out.status.code(), Some(code), "{signal}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("SIG{signal}")),
            "{}",
            stderr(&out)
        );
        assert_eq!(slow.sessions_created(), 1, "{signal}");
        assert_eq!(slow.open_sessions(), 0, "{signal}: a session leaked");
        assert!(slow.restored().is_empty(), "{signal}");
        let deletes = slow
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.target.contains("/Sessions/"))
            .count();
        assert_eq!(deletes, 1, "{signal}: logged out by the handler");
    }
}

fn signal_and_wait(mut child: Child, signal: &str) -> Output {
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_exit(&mut child);
    child.wait_with_output().unwrap()
}

/// Issue #4: a wrong password gives a clear authentication error (exit 4).
#[test]
fn wrong_password_is_an_authentication_error() {
    let sim = sim_with(|c| c.user = "admin".into());
    let h = Home::new();
    let mut args = h.pull_args(&sim);
    args[7] = h.file("wrong.pw", "not-it").display().to_string();
    let out = h.run(&args, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("refused the login"), "{err}");
    assert!(err.contains("Base.1.12.NoValidSession"), "{err}");
    assert!(err.contains(&host(&sim)), "{err}");
    assert!(!err.contains("not-it"));
    assert_eq!(sim.open_sessions(), 0);
    assert_eq!(h.archive_files(), Vec::<String>::new());
}

/// Issue #4: an untrusted certificate is refused without --ca-cert/--insecure; --insecure
/// works and warns.
#[test]
fn untrusted_certificate_is_refused_unless_insecure() {
    let sim = sim_with(|c| c.user = "admin".into());
    let h = Home::new();
    let args: Vec<String> = h.pull_args(&sim)[..8].to_vec();
    let out = h.run(&args, &["--retries", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");
    assert_eq!(
        sim.sessions_created(),
        0,
        "no credentials to an unverified BMC"
    );

    let out = h.run(&args, &["--insecure"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: --insecure"),
        "{}",
        stderr(&out)
    );
    assert_eq!(h.listed(), 1);
    assert_eq!(sim.open_sessions(), 0);
}

fn restore_args<'a>(h: &Home, id: &'a str, sim: &SimHandle, pw: &'a Path) -> Vec<String> {
    let _ = h;
    vec![
        "backup".into(),
        "restore".into(),
        "--id".into(),
        id.into(),
        "--bmc".into(),
        sim.base_url(),
        "--bmc-user".into(),
        "admin".into(),
        "--bmc-password-file".into(),
        pw.display().to_string(),
        "--ca-cert".into(),
        sim.ca_cert_path().display().to_string(),
    ]
}

/// Restore goes only to the same system unless told otherwise, needs confirmation, and a
/// tampered archive is refused before anything reaches the BMC.
#[test]
fn restore_checks_serial_confirmation_and_integrity_first() {
    let origin = sim_with(|c| c.user = "admin".into());
    let other = sim_with(|c| {
        c.user = "admin".into();
        c.serial = "OTHER00001".into();
    });
    let h = Home::new();
    let out = h.run(&h.pull_args(&origin), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    let pw = h.pw();

    // No --yes and no terminal: refused before anything happens.
    let out = h.run(&restore_args(&h, &id, &origin, &pw), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"));
    assert!(origin.restored().is_empty());

    // Another server: refused, then allowed with --allow-different-system.
    let out = h.run(&restore_args(&h, &id, &other, &pw), &["--yes"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains("OTHER00001") && err.contains("--allow-different-system"),
        "{err}"
    );
    assert!(other.restored().is_empty());
    assert_eq!(other.open_sessions(), 0);
    let out = h.run(
        &restore_args(&h, &id, &other, &pw),
        &["--yes", "--allow-different-system"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(other.restored(), vec![SimConfig::default().backup_bytes]);

    // Tamper with one payload byte: refused before any session or byte.
    let path = h.path().join(format!("home/archives/{id}.vault"));
    let mut raw = std::fs::read(&path).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x01;
    std::fs::write(&path, &raw).unwrap();
    let before = origin.sessions_created();
    let out = h.run(&restore_args(&h, &id, &origin, &pw), &["--yes"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(origin.restored().is_empty());
    assert_eq!(
        origin.sessions_created(),
        before,
        "nothing may reach the BMC"
    );
    assert_eq!(origin.open_sessions(), 0);
}

/// Issue #4: a fleet of 50 simulated BMCs, some failing, pulled with --parallel 8.
#[test]
fn fleet_of_fifty_with_failures() {
    let h = Home::new();
    let good_pw = h.pw();
    let bad_pw = h.file("bad.pw", "wrong-password");
    let mut sims = Vec::new();
    let mut toml = String::new();
    let mut expected_fail = Vec::new();
    for i in 0..50 {
        let fault = match i % 10 {
            3 => Fault::ServerError,
            6 => Fault::CutMidDownload,
            9 => Fault::HtmlErrorPage,
            _ => Fault::None,
        };
        let sim = sim_with(|c| {
            c.user = "admin".into();
            c.serial = format!("SIM{i:05}");
            c.fault = fault.clone();
            c.backup_bytes = random_bytes(4096 + i);
        });
        let wrong_password = i == 17;
        if fault != Fault::None || wrong_password {
            expected_fail.push(sim.base_url());
        }
        let pw = if wrong_password { &bad_pw } else { &good_pw };
        toml.push_str(&format!(
            "[[bmc]]\nurl = \"{}\"\nca_cert = \"{}\"\npassword_file = \"{}\"\n\n",
            sim.base_url(),
            sim.ca_cert_path().display(),
            pw.file_name().unwrap().to_string_lossy()
        ));
        sims.push(sim);
    }
    let inv = h.file("fleet.toml", &toml);
    let out = h.vault(&[
        "backup",
        "pull",
        "--inventory",
        inv.to_str().unwrap(),
        "--parallel",
        "8",
        "--bmc-user",
        "admin",
        "--timeout",
        "5",
        "--retries",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let v = json(&out);
    let healthy = 50 - expected_fail.len();
    assert_eq!(v["total"], 50);
    assert_eq!(v["succeeded"], healthy as u64);
    assert_eq!(v["failed"], expected_fail.len() as u64);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    for (i, (r, sim)) in results.iter().zip(&sims).enumerate() {
        assert_eq!(
            r["bmc"],
            host(sim),
            "the fleet JSON names BMCs by host:port"
        );
        if expected_fail.contains(&sim.base_url()) {
            assert_eq!(r["status"], "failed", "{r}");
            let e = r["error"].as_str().unwrap();
            assert!(e.contains(&host(sim)), "{e}");
            let kind = if i == 17 { "auth" } else { "bmc" };
            assert_eq!(r["errorKind"], kind, "{r}");
        } else {
            assert_eq!(r["status"], "ok", "{r}");
            assert_eq!(r["serialNumber"], format!("SIM{i:05}"));
            let id = r["archiveId"].as_str().unwrap();
            assert!(h.path().join(format!("home/archives/{id}.vault")).exists());
        }
    }
    assert_eq!(h.listed(), healthy);
    assert_eq!(h.archive_files().len(), healthy, "no temporary file left");
    for (i, sim) in sims.iter().enumerate() {
        assert_eq!(sim.open_sessions(), 0, "BMC {i} has a session left");
    }
}

/// `vault bmc-simulator` serves until killed and `vault backup pull` works against it.
#[test]
fn bmc_simulator_subcommand_serves_pulls() {
    let h = Home::new();
    let pw = h.pw();
    let mut sim = Command::new(env!("CARGO_BIN_EXE_vault"))
        .args(["bmc-simulator", "--user", "admin", "--serial", "CLISIM0001"])
        .arg("--password-file")
        .arg(&pw)
        .args(["--backup-size", "10000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    let url = next()
        .strip_prefix("BMC simulator listening on ")
        .map(str::to_string);
    let ca = next().strip_prefix("CA certificate: ").map(str::to_string);
    let (Some(url), Some(ca)) = (url, ca) else {
        let _ = sim.kill();
        panic!("unexpected banner");
    };
    let out = h.vault(&[
        "backup",
        "pull",
        "--bmc",
        &url,
        "--bmc-user",
        "admin",
        "--bmc-password-file",
        pw.to_str().unwrap(),
        "--ca-cert",
        &ca,
    ]);
    // Issue 14: stopped by SIGTERM, it exits cleanly and removes its certificate directory.
    let ca_dir = std::path::Path::new(&ca).parent().unwrap().to_path_buf();
    assert!(
        ca_dir.is_dir(),
        "{} missing while serving",
        ca_dir.display()
    );
    let stopped = signal_and_wait(sim, "TERM");
    assert!(
        stopped.status.success(),
        "simulator exit: {:?}",
        stopped.status
    );
    assert!(
        !ca_dir.exists(),
        "{} left behind after SIGTERM",
        ca_dir.display()
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["size"], 10000);
    assert_eq!(v["source"]["serialNumber"], "CLISIM0001");
}

/// Issue #4: `vault demo` runs to completion.
#[test]
fn demo_runs_to_completion() {
    let h = Home::new();
    let out = h.cmd(&["demo"]).env("CI", "true").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert!(
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ok"] == true)
    );
    assert!(stderr(&out).contains("every step passed"));
}

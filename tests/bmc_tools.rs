//! Issue #14: HPE's and DMTF's own Redfish software against `vault bmc-simulator`.
//!
//! The tools come from PyPI, installed by `.ci/install.d/50-python-redfish.sh` into
//! `$VAULT_PY_REDFISH/{hpe,dmtf}` (default `/opt/vault-py-redfish`). With `CI=true` a
//! missing tool fails the test; elsewhere the test says so and passes without running.
//!
//! The tools are judged by what the simulator received (its documented state route,
//! `/vault-simulator/state`) and by what the files they wrote contain, never by their exit
//! codes alone: iLOrest's `login` exits 0 when its iLO detection fails, and its
//! `backuprestore backup` saves an HTTP error body as the `.bak` and exits 0.
//!
//! Every test runs the simulator as a child process on 127.0.0.1, bounds each tool run in
//! time, stops the simulator by its pid, and checks that no BMC session is left open.
//! iLOrest's CLI runs on port 443: python-ilorest-library 7.4 strips the scheme and host,
//! but not the port, from the session `Location`, so its logout only works on the default
//! port. Those tests hold a lock so that only one of them uses the port at a time.
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

const BMC_USER: &str = "Administrator";
const BMC_PASSWORD: &str = "tool-test-password-7";
/// Longest any one tool run may take before it is killed (the validators take ~20 s).
const TOOL_DEADLINE: Duration = Duration::from_secs(240);
/// The iLOrest CLI tests share port 443.
static PORT_443: Mutex<()> = Mutex::new(());

/// The venv with HPE's (`hpe`) or DMTF's (`dmtf`) tools, or `None` (outside CI) if absent.
fn venv(kind: &str, program: &str) -> Option<PathBuf> {
    let root = std::env::var_os("VAULT_PY_REDFISH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/vault-py-redfish"));
    let bin = root.join(kind).join("bin");
    if bin.join(program).is_file() {
        return Some(bin);
    }
    let msg = format!(
        "{} is missing: run `bash .ci/install` (it runs .ci/install.d/50-python-redfish.sh)",
        bin.join(program).display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    eprintln!("NOT RUN: {msg}");
    None
}

/// `vault bmc-simulator` as a child process, stopped (SIGTERM, then SIGKILL) on drop.
struct Sim {
    child: Child,
    url: String,
    ca: PathBuf,
    state_url: String,
    dir: tempfile::TempDir,
}

impl Sim {
    fn start(port: u16, extra: &[&str]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("bmc.pw");
        std::fs::write(&pw, BMC_PASSWORD).unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("backup.bak"), backup_bytes()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vault"))
            .arg("bmc-simulator")
            .args(["--port", &port.to_string(), "--user", BMC_USER])
            .arg("--password-file")
            .arg(&pw)
            .arg("--backup-file")
            .arg(dir.path().join("backup.bak"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        for _ in 0..5 {
            banner.push(lines.next().and_then(Result::ok).unwrap_or_default());
        }
        let field = |prefix: &str| {
            banner
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::to_string)
        };
        let (Some(url), Some(ca), Some(state_url)) = (
            field("BMC simulator listening on "),
            field("CA certificate: "),
            field("state: "),
        ) else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the simulator did not start: {banner:?} {err}");
        };
        Sim {
            child,
            url,
            ca: PathBuf::from(ca),
            state_url,
            dir,
        }
    }

    /// What the simulator saw so far (its documented state route).
    fn state(&self) -> Value {
        let pem = std::fs::read(&self.ca).unwrap();
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            .build();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .tls_config(tls)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        let body = agent
            .get(&self.state_url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn open_sessions(&self) -> u64 {
        self.state()["openSessions"].as_u64().unwrap()
    }

    /// The requests received whose method and path (case-insensitive) match.
    fn requests_to(&self, method: &str, path_prefix: &str) -> Vec<Value> {
        self.state()["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["method"] == method
                    && r["target"]
                        .as_str()
                        .unwrap()
                        .to_ascii_lowercase()
                        .starts_with(&path_prefix.to_ascii_lowercase())
            })
            .cloned()
            .collect()
    }

    fn restores(&self) -> Vec<Value> {
        self.state()["restores"].as_array().unwrap().clone()
    }

    /// A tool's command with the environment this machine needs: `requests` lets
    /// REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify=`, so both
    /// point at the simulator's CA. Runs in `cwd` with its own HOME.
    fn tool(&self, program: &Path, cwd: &Path) -> Command {
        let mut c = Command::new(program);
        c.current_dir(cwd)
            .env("HOME", cwd)
            .env("REQUESTS_CA_BUNDLE", &self.ca)
            .env("CURL_CA_BUNDLE", &self.ca)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .stdin(Stdio::null());
        c
    }

    /// Stops the simulator with SIGTERM and checks that it removed its CA directory.
    fn stop(mut self) {
        let ca_dir = self.ca.parent().unwrap().to_path_buf();
        terminate(&mut self.child);
        assert!(
            !ca_dir.exists(),
            "the simulator left {} behind after SIGTERM",
            ca_dir.display()
        );
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// SIGTERM by pid, up to 10 s to exit, then SIGKILL.
fn terminate(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a tool to completion within [`TOOL_DEADLINE`] (killed by pid after that).
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + TOOL_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {TOOL_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The backup the simulator serves: recognisable, binary, not an error page.
fn backup_bytes() -> Vec<u8> {
    let mut v = b"\x00\x01HPE iLO backup (test)\x00".to_vec();
    v.extend((0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    v
}

fn bak_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "bak"))
        .collect();
    v.sort();
    v
}

fn ilorest(sim: &Sim, bin: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut c = sim.tool(&bin.join("ilorest"), cwd);
    c.arg("--nologo")
        .arg("--cache-dir")
        .arg(sim.dir.path().join("ilorest-cache"))
        .args(args);
    run(c)
}

fn ilorest_login(sim: &Sim, bin: &Path, cwd: &Path) {
    let before = sim
        .requests_to("POST", "/redfish/v1/SessionService/Sessions")
        .len();
    let o = ilorest(
        sim,
        bin,
        cwd,
        // iLOrest's logout only works when the URL has no port (see the module doc).
        &[
            "login",
            sim.url.trim_end_matches(":443"),
            "-u",
            BMC_USER,
            "-p",
            BMC_PASSWORD,
        ],
    );
    // Exit code 0 proves nothing (see the module doc): a session must have been made.
    let logins = sim.requests_to("POST", "/redfish/v1/SessionService/Sessions");
    assert_eq!(
        logins.len(),
        before + 1,
        "iLOrest did not log in: {}",
        text(&o)
    );
    assert_eq!(logins.last().unwrap()["status"], 201, "{}", text(&o));
    assert_eq!(sim.open_sessions(), 1, "{}", text(&o));
}

/// iLOrest's `login`, `backuprestore backup` (with and without `--filepass`),
/// `backuprestore restore` (right, wrong and no password, empty file) and `logout`.
#[test]
fn ilorest_cli_backs_up_restores_and_logs_out() {
    let Some(bin) = venv("hpe", "ilorest") else {
        return;
    };
    let _port = PORT_443.lock().unwrap_or_else(PoisonError::into_inner);
    let sim = Sim::start(443, &[]);
    let work = sim.dir.path().join("work");
    let plain_dir = work.join("plain");
    let protected_dir = work.join("protected");
    std::fs::create_dir_all(&plain_dir).unwrap();
    std::fs::create_dir_all(&protected_dir).unwrap();

    // Backup without a file password: iLOrest POSTs a sessionKey form field to the
    // BackupFileLocation and saves the answer.
    ilorest_login(&sim, &bin, &plain_dir);
    let o = ilorest(&sim, &bin, &plain_dir, &["backuprestore", "backup"]);
    let posts = sim.requests_to("POST", "/bkupdata/");
    assert_eq!(posts.len(), 1, "{}", text(&o));
    assert_eq!(posts[0]["status"], 200);
    assert_eq!(posts[0]["formFields"], serde_json::json!(["sessionKey"]));
    let files = bak_files(&plain_dir);
    assert_eq!(files.len(), 1, "{}", text(&o));
    assert_eq!(std::fs::read(&files[0]).unwrap(), backup_bytes());

    // With --filepass: a password field goes with it and the file is protected.
    let o = ilorest(
        &sim,
        &bin,
        &protected_dir,
        &["backuprestore", "backup", "--filepass", "file-pass-32"],
    );
    let posts = sim.requests_to("POST", "/bkupdata/");
    assert_eq!(posts.len(), 2, "{}", text(&o));
    assert_eq!(
        posts[1]["formFields"],
        serde_json::json!(["sessionKey", "password"])
    );
    let protected = bak_files(&protected_dir);
    assert_eq!(protected.len(), 1, "{}", text(&o));
    let protected_bytes = std::fs::read(&protected[0]).unwrap();
    assert!(protected_bytes.len() > backup_bytes().len());
    assert!(protected_bytes.ends_with(&backup_bytes()));

    let o = ilorest(&sim, &bin, &plain_dir, &["logout"]);
    assert_eq!(
        sim.open_sessions(),
        0,
        "logout left a session: {}",
        text(&o)
    );

    // Restore of the protected file with a wrong password, then without one: iLO's
    // `invalid_restore_password`, nothing restored, and iLOrest says so.
    ilorest_login(&sim, &bin, &protected_dir);
    let file = protected[0].to_str().unwrap();
    for pass in [&["--filepass", "wrong-password"][..], &[][..]] {
        let mut args = vec!["backuprestore", "restore", "-f", file];
        args.extend_from_slice(pass);
        let o = ilorest(&sim, &bin, &protected_dir, &args);
        assert!(sim.restores().is_empty(), "{}", text(&o));
        assert_eq!(
            sim.requests_to("POST", "/cgi-bin/uploadRestoreFile")
                .last()
                .unwrap()["status"],
            400
        );
        assert!(
            text(&o).contains("Invalid or no password supplied"),
            "{}",
            text(&o)
        );
    }
    // An empty file is refused as well.
    let empty = protected_dir.join("empty.bak");
    std::fs::write(&empty, b"").unwrap();
    let o = ilorest(
        &sim,
        &bin,
        &protected_dir,
        &["backuprestore", "restore", "-f", empty.to_str().unwrap()],
    );
    assert!(sim.restores().is_empty(), "{}", text(&o));
    assert!(text(&o).contains("Error while uploading"), "{}", text(&o));

    // The right password: restored, and iLOrest logs out (iLO resets after a restore).
    let o = ilorest(
        &sim,
        &bin,
        &protected_dir,
        &[
            "backuprestore",
            "restore",
            "-f",
            file,
            "--filepass",
            "file-pass-32",
        ],
    );
    let restores = sim.restores();
    assert_eq!(restores.len(), 1, "{}", text(&o));
    assert_eq!(restores[0]["bytes"], protected_bytes.len());
    assert_eq!(restores[0]["withPassword"], true);
    assert_eq!(
        sim.requests_to("POST", "/cgi-bin/uploadRestoreFile")
            .last()
            .unwrap()["formFields"],
        serde_json::json!(["sessionKey", "password", "file"])
    );
    assert_eq!(sim.open_sessions(), 0, "{}", text(&o));

    // The unprotected file restores without a password.
    ilorest_login(&sim, &bin, &plain_dir);
    let o = ilorest(
        &sim,
        &bin,
        &plain_dir,
        &["backuprestore", "restore", "-f", files[0].to_str().unwrap()],
    );
    let restores = sim.restores();
    assert_eq!(restores.len(), 2, "{}", text(&o));
    assert_eq!(restores[1]["bytes"], backup_bytes().len());
    assert_eq!(restores[1]["withPassword"], false);
    assert_eq!(sim.open_sessions(), 0, "{}", text(&o));
    sim.stop();
}

/// python-ilorest-library's `RedfishClient`: log in, GET, POST the restore, log out.
/// Runs on a free port, so it logs out through a raw DELETE of the session path (the
/// library's own `logout` is broken on ports other than 443, see the module doc).
#[test]
fn ilorest_library_logs_in_gets_restores_and_logs_out() {
    let Some(bin) = venv("hpe", "python") else {
        return;
    };
    let sim = Sim::start(0, &[]);
    let work = sim.dir.path().join("lib");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("restore.bak"), backup_bytes()).unwrap();
    let script = r#"
import json, sys
from redfish import RedfishClient
url, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
client = RedfishClient(base_url=url, username=user, password=password, timeout=30)
client.login(auth="session")
out["session_key_set"] = bool(client.session_key)
root = client.get("/redfish/v1/")
out["root_status"] = root.status
out["ilo"] = root.dict["Oem"]["Hpe"]["Manager"][0]["ManagerType"]
svc = client.get("/redfish/v1/Managers/1/BackupRestoreService/")
out["svc_status"] = svc.status
push = svc.dict["HttpPushUri"]
with open("restore.bak", "rb") as f:
    data = f.read()
resp = client.post(push, [("sessionKey", client.session_key),
                          ("file", ("restore.bak", data, "application/octet-stream"))],
                   headers={"Cookie": "sessionKey=" + client.session_key})
out["restore_status"] = resp.status
# The library leaves ":<port>" in front of the path (its logout bug): take the path.
loc = client.session_location
out["session_location_broken"] = not loc.startswith("/redfish/")
path = loc[loc.index("/redfish/"):]
out["delete_status"] = client.delete(path).status
print(json.dumps(out))
"#;
    let mut c = sim.tool(&bin.join("python"), &work);
    c.args(["-c", script, &sim.url, BMC_USER, BMC_PASSWORD]);
    let o = run(c);
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let v: Value = serde_json::from_str(&last).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(v["session_key_set"], true, "{}", text(&o));
    assert_eq!(v["root_status"], 200);
    assert_eq!(v["ilo"], "iLO 6");
    assert_eq!(v["svc_status"], 200);
    assert_eq!(v["restore_status"], 200, "{}", text(&o));
    assert_eq!(v["delete_status"], 200, "{}", text(&o));
    let restores = sim.restores();
    assert_eq!(restores.len(), 1);
    assert_eq!(restores[0]["bytes"], backup_bytes().len());
    assert_eq!(sim.open_sessions(), 0);
    assert_eq!(
        sim.requests_to("DELETE", "/redfish/v1/SessionService/Sessions/")
            .len(),
        1
    );
    sim.stop();
}

/// Every file under `dir`, recursively.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `PASS: n, WARN: n, FAIL: n, NOT_TESTED: n` from the protocol validator's summary.
fn protocol_summary(out: &str) -> Option<[u64; 4]> {
    let line = out.lines().find(|l| l.starts_with("Summary - PASS:"))?;
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    nums.try_into().ok()
}

/// DMTF's redfish-protocol-validator finds no failure and no warning. Measured here:
/// PASS 261, WARN 0, FAIL 0, NOT_TESTED 52 (before issue #14: 123 pass, 29 fail, 64 not
/// tested). What stays "not tested" needs account creation, PATCH,
/// event subscriptions, SSE or SSDP, none of which iLO's backup and restore use.
#[test]
fn dmtf_protocol_validator_finds_no_failure() {
    let Some(bin) = venv("dmtf", "rf_protocol_validator") else {
        return;
    };
    let sim = Sim::start(0, &[]);
    let work = sim.dir.path().join("protocol");
    std::fs::create_dir_all(&work).unwrap();
    let mut c = sim.tool(&bin.join("rf_protocol_validator"), &work);
    c.args(["-r", &sim.url, "-u", BMC_USER, "-p", BMC_PASSWORD])
        .arg("--ca-bundle")
        .arg(&sim.ca)
        .args(["--report-dir", "reports", "--report-type", "tsv"])
        .arg("--avoid-http-redirect");
    let o = run(c);
    let all = text(&o);
    let Some([pass, warn, fail, not_tested]) = protocol_summary(&all) else {
        panic!("no summary from the validator: {all}");
    };
    let failures: Vec<String> = std::fs::read_dir(work.join("reports"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "tsv"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .filter(|l| l.contains("\tFAIL\t") || l.contains("\tWARN\t"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    eprintln!("protocol validator: PASS {pass}, WARN {warn}, FAIL {fail}, NOT_TESTED {not_tested}");
    assert_eq!((fail, warn), (0, 0), "{failures:#?}");
    assert!(pass >= 250, "only {pass} assertions passed: {all}");
    assert!(o.status.success(), "{all}");
    assert_eq!(sim.open_sessions(), 0);
    sim.stop();
}

/// DMTF's redfish-service-validator walks every linked resource without a failure.
///
/// What this does *not* show: without network access the validator cannot fetch DMTF's
/// schema files, so it checks no property against a schema (PASS 0 here). Each resource
/// it reaches gives exactly one warning, "unable to locate the schema definition"; the
/// test requires that and nothing else, so any other warning or failure fails it.
/// Measured here: PASS 0, WARN 18, FAIL 0, NOT TESTED 0 over 18 resources. (Before issue
/// #14: 10 failures, missing `@odata.type` and `Name` on the collections, the Manager
/// and the ComputerSystem.)
#[test]
fn dmtf_service_validator_walks_every_resource_without_failure() {
    let Some(bin) = venv("dmtf", "rf_service_validator") else {
        return;
    };
    let sim = Sim::start(0, &[]);
    let work = sim.dir.path().join("service");
    std::fs::create_dir_all(&work).unwrap();
    let mut c = sim.tool(&bin.join("rf_service_validator"), &work);
    c.args(["-r", &sim.url, "-u", BMC_USER, "-p", BMC_PASSWORD])
        .args(["--logdir", "logs", "--timeout", "10"]);
    let o = run(c);
    let all = text(&o);
    // The summary table: a header row, a rule, then "| pass | warn | fail | not tested |".
    let counts: Vec<u64> = all
        .lines()
        .skip_while(|l| !l.contains("NOT TESTED"))
        .nth(2)
        .map(|l| l.split('|').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_default();
    let [pass, warn, fail, not_tested] = counts[..] else {
        panic!("no summary from the validator: {all}");
    };
    eprintln!("service validator: PASS {pass}, WARN {warn}, FAIL {fail}, NOT TESTED {not_tested}");
    assert_eq!((fail, not_tested), (0, 0), "{all}");
    let validated = all.matches("Validating /redfish/v1/").count();
    assert!(validated >= 15, "only {validated} resources reached: {all}");
    // One warning per resource, and every warning is the missing schema.
    assert_eq!(warn as usize, validated, "{all}");
    let warnings: Vec<String> = walk_files(&work.join("logs"))
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.contains(" - WARNING - ") || l.contains(" - ERROR - "))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(warnings.len(), validated, "{warnings:#?}");
    for w in &warnings {
        assert!(
            w.contains("WARN - Schema Error: Unable to locate the schema definition"),
            "a warning other than the missing schema: {w}"
        );
    }
    for uri in [
        "/redfish/v1/Managers/1/BackupRestoreService/",
        "/redfish/v1/SessionService/",
        "/redfish/v1/AccountService/Roles/",
    ] {
        assert!(
            all.contains(&format!("Validating {uri}...")),
            "{uri} not reached: {all}"
        );
    }
    assert_eq!(sim.open_sessions(), 0);
    sim.stop();
}

//! Issue #7, secret hygiene: no flag takes a password; files holding secrets are 0600
//! and refused when group/world readable; no secret appears in stdout, stderr, the audit
//! log or any file written outside the key store; core dumps are off while keys are in
//! memory.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::CommandFactory;
use common::*;

/// Exit status of a fleet run in which some BMCs failed.
const FLEET_PARTIAL_EXIT: i32 = 8;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// (a) Every argument of every subcommand: nothing that names a password, passphrase,
/// secret or token takes a value unless it is a `*-file` path.
#[test]
fn no_flag_takes_a_password() {
    fn walk(cmd: &clap::Command, path: &str, checked: &mut usize, files: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            *checked += 1;
            let name = arg
                .get_long()
                .map(str::to_string)
                .unwrap_or_else(|| arg.get_id().to_string())
                .to_ascii_lowercase();
            // `--pkcs11-token LABEL` names a PKCS#11 token by its (public) label.
            let secretish = ["pass", "secret", "token", "pin", "credential", "material"]
                .iter()
                .any(|w| name.contains(w))
                && name != "pkcs11-token";
            if secretish && arg.get_action().takes_values() {
                assert!(
                    name.ends_with("-file") || name.ends_with("_file"),
                    "{path} --{name} takes a secret on the command line"
                );
                files.push(format!("{path} --{name}"));
            }
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    !env.contains("PASSWORD"),
                    "{path} --{name} reads {env} through clap"
                );
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), checked, files);
        }
    }
    let (mut checked, mut files) = (0, Vec::new());
    walk(
        &vault::cli::Cli::command(),
        "vault",
        &mut checked,
        &mut files,
    );
    println!("checked {checked} arguments; password inputs: {files:?}");
    assert!(
        files
            .iter()
            .any(|f| f == "vault keys download --password-file")
    );
    assert!(
        files
            .iter()
            .any(|f| f == "vault keys upload --password-file")
    );
}

/// (b) Secret files are created 0600 in 0700 directories; loosened ones are refused.
#[test]
fn secret_files_are_private_and_loose_ones_refused() {
    let v = Vault::new();
    let key = v.create_key(&[]);
    let plain = v.path("plain");
    std::fs::write(&plain, bytes(20_000, 1)).unwrap();
    let id = v.ok(&["backup", "create", "--file", s(&plain)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pw = v.password_file(PASSWORD);
    let kf = v.path("key.vkey");
    let mut a = vec![
        "keys",
        "download",
        "--id",
        &key,
        "--file",
        s(&kf),
        "--password-file",
        s(&pw),
    ];
    a.extend(FAST_KDF);
    v.ok(&a);
    let out = v.path("out");
    v.ok(&["backup", "extract", "--id", &id, "--out", s(&out)]);
    let copy = v.path("copy.vault");
    v.ok(&["backup", "download", "--id", &id, "--file", s(&copy)]);

    assert_eq!(mode(&v.home), 0o700);
    assert_eq!(mode(&v.home.join("archives")), 0o700);
    let archive = v.home.join("archives").join(format!("{id}.vault"));
    for f in [
        v.home.join("root.key"),
        v.home.join("keys.json"),
        v.home.join("audit.log"),
        archive,
        kf.clone(),
        out,
        copy,
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }

    // Loosened secret files: one clear error that says how to fix it.
    let keys = v.home.join("keys.json");
    chmod(&keys, 0o640);
    let err = v.fails(&["keys", "list"], 9);
    assert!(
        err.contains("chmod 600") && err.contains("keys.json"),
        "{err}"
    );
    chmod(&keys, 0o600);
    let root = v.home.join("root.key");
    chmod(&root, 0o644);
    let err = v.fails(&["backup", "create", "--file", s(&plain)], 9);
    assert!(
        err.contains("chmod 600") && err.contains("root.key"),
        "{err}"
    );
    chmod(&root, 0o600);
    chmod(&pw, 0o604);
    let other = Vault::new();
    let out = other.run(&[
        "keys",
        "upload",
        "--file",
        s(&kf),
        "--password-file",
        s(&pw),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chmod 600"), "{err}");
    chmod(&pw, 0o600);
    other.ok(&[
        "keys",
        "upload",
        "--file",
        s(&kf),
        "--password-file",
        s(&pw),
    ]);
}

/// Everything a leak could look like: raw bytes, hex (both cases), base64 (standard and
/// URL-safe, at each of the 3 alignments a substring can have).
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut f = vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
    ];
    for off in 0..3 {
        let t = &secret[off..];
        let t = &t[..t.len() / 3 * 3];
        f.push(STANDARD.encode(t).into_bytes());
        f.push(URL_SAFE_NO_PAD.encode(t).into_bytes());
    }
    f
}

struct Scan {
    secrets: Vec<(String, Vec<Vec<u8>>)>,
    commands: usize,
    bytes: usize,
    hits: Vec<String>,
}

impl Scan {
    fn add(&mut self, name: &str, secret: &[u8]) {
        self.secrets.push((name.to_string(), forms(secret)));
    }

    fn scan(&mut self, what: &str, data: &[u8], skip: Option<&str>) {
        self.bytes += data.len();
        for (name, forms) in &self.secrets {
            if skip.is_some_and(|s| name.starts_with(s)) {
                continue;
            }
            if forms
                .iter()
                .any(|f| data.windows(f.len()).any(|w| w == &f[..]))
            {
                self.hits.push(format!("{name} in {what}"));
            }
        }
    }
}

/// Runs one step of the scan and checks it ended as planned (`expect`: its exit status),
/// so a step that fails early cannot silently shrink what is scanned.
fn run_cmd(
    v: &Vault,
    args: &[&str],
    env: Option<&str>,
    expect: i32,
    log: &mut Vec<(String, Output)>,
) -> Output {
    let mut c = v.cmd(args);
    if let Some(pw) = env {
        c.env("VAULT_KEY_PASSWORD", pw);
    }
    let o = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(expect),
        "scan step vault {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    log.push((format!("{args:?}"), o.clone()));
    o
}

fn key_ids(v: &Vault) -> Vec<String> {
    v.ok(&["keys", "list"])["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// (c) Every command with known secrets; all output and every file written outside the
/// key store are scanned for them.
#[test]
fn no_secret_in_output_audit_or_files() {
    const FILE_PW: &str = "file-pw: Zq8#unique-secret-7731";
    const ENV_PW: &str = "env-pw: Kx4!unique-secret-9902";
    const WRONG_PW: &str = "wrong-pw: Mj2$unique-secret-5518";
    let a = Vault::new();
    let b = Vault::new();
    let mut log = Vec::new();
    let pw = a.path("pw-file");
    std::fs::write(&pw, format!("{FILE_PW}\n")).unwrap();
    chmod(&pw, 0o600);
    let wrong = a.path("pw-wrong");
    std::fs::write(&wrong, WRONG_PW).unwrap();
    chmod(&wrong, 0o600);
    let mut plaintext = bytes(150_000, 77);
    plaintext[1000..1040].copy_from_slice(b"DISTINCTIVE-PLAINTEXT-MARKER-0xC0FFEE-42");
    let plain = a.path("plain.bin");
    std::fs::write(&plain, &plaintext).unwrap();
    let p = s(&plain);
    let out_a = a.path("extracted-a");
    let out_b = a.path("extracted-b");
    let out_c = a.path("extracted-c");
    let kf1 = a.path("key1.vkey");
    let kf2 = a.path("key2.vkey");
    let copy = a.path("copy.vault");

    let r =
        |v: &Vault, args: &[&str], log: &mut Vec<(String, Output)>| run_cmd(v, args, None, 0, log);
    let sys = r(&a, &["keys", "create", "--description", "scan"], &mut log);
    let sys: serde_json::Value = serde_json::from_slice(&sys.stdout).unwrap();
    let sys = sys["id"].as_str().unwrap().to_string();
    let dom = r(
        &a,
        &["keys", "create", "--scope", "domain", "--domain", "d1"],
        &mut log,
    );
    let dom: serde_json::Value = serde_json::from_slice(&dom.stdout).unwrap();
    let dom = dom["id"].as_str().unwrap().to_string();
    r(&a, &["keys", "list"], &mut log);
    r(&a, &["--output", "table", "keys", "list"], &mut log);
    r(&a, &["keys", "get", "--id", &sys], &mut log);
    let created = r(
        &a,
        &["backup", "create", "--file", p, "--description", "scan"],
        &mut log,
    );
    let arch: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let arch = arch["id"].as_str().unwrap().to_string();
    r(
        &a,
        &["backup", "create", "--file", p, "--domain", "d1"],
        &mut log,
    );
    let archive_path = a.home.join("archives").join(format!("{arch}.vault"));
    let ap = s(&archive_path);
    r(&a, &["backup", "list"], &mut log);
    r(&a, &["backup", "get", "--id", &arch], &mut log);
    r(&a, &["inspect", "--file", ap], &mut log);
    r(&a, &["backup", "inspect", "--file", ap], &mut log);
    r(&a, &["backup", "verify", "--id", &arch], &mut log);
    r(
        &a,
        &["backup", "extract", "--id", &arch, "--out", s(&out_a)],
        &mut log,
    );
    r(
        &a,
        &["backup", "download", "--id", &arch, "--file", s(&copy)],
        &mut log,
    );
    let mut dl = vec![
        "keys",
        "download",
        "--id",
        &sys,
        "--file",
        s(&kf1),
        "--password-file",
        s(&pw),
    ];
    dl.extend(FAST_KDF);
    r(&a, &dl, &mut log);
    let mut dl2 = vec!["keys", "download", "--id", &sys, "--file", s(&kf2)];
    dl2.extend(FAST_KDF);
    run_cmd(&a, &dl2, Some(ENV_PW), 0, &mut log);
    r(&a, &["keys", "inspect", "--file", s(&kf1)], &mut log);
    // Material of every key before some are retired or deleted.
    let mut scan = Scan {
        secrets: Vec::new(),
        commands: 0,
        bytes: 0,
        hits: Vec::new(),
    };
    let collect_keys = |v: &Vault, scan: &mut Scan| {
        let home = vault::keystore::Home::open(&v.home).unwrap();
        let ks = vault::keystore::KeyStore::new(&home);
        for id in key_ids(v) {
            let (_, k) = ks
                .material(&uuid::Uuid::parse_str(&id).unwrap(), false)
                .unwrap();
            scan.add(&format!("backup key {id}"), k.expose());
        }
        let root = home.root_key().unwrap();
        scan.add(&format!("root key of {}", v.home.display()), root.expose());
    };
    collect_keys(&a, &mut scan);
    r(&a, &["keys", "rotate"], &mut log);
    r(&a, &["backup", "rewrap", "--all"], &mut log);
    r(
        &a,
        &["backup", "rewrap", "--id", &arch, "--reencrypt"],
        &mut log,
    );
    r(&a, &["keys", "set-default", "--id", &dom], &mut log);
    // The retired key cannot be made the default: a refusal that names it.
    run_cmd(
        &a,
        &["keys", "set-default", "--id", &sys],
        None,
        7,
        &mut log,
    );
    // Import elsewhere: password from a file, from the environment, and wrong ones.
    run_cmd(
        &b,
        &[
            "keys",
            "upload",
            "--file",
            s(&kf1),
            "--password-file",
            s(&wrong),
        ],
        None,
        4,
        &mut log,
    );
    run_cmd(
        &b,
        &["keys", "upload", "--file", s(&kf2)],
        Some(WRONG_PW),
        4,
        &mut log,
    );
    r(
        &b,
        &[
            "keys",
            "upload",
            "--file",
            s(&kf1),
            "--password-file",
            s(&pw),
        ],
        &mut log,
    );
    run_cmd(
        &b,
        &["keys", "upload", "--file", s(&kf2)],
        Some(ENV_PW),
        0,
        &mut log,
    );
    r(&b, &["backup", "upload", "--file", s(&copy)], &mut log);
    r(&b, &["backup", "verify", "--id", &arch], &mut log);
    r(
        &b,
        &["backup", "extract", "--id", &arch, "--out", s(&out_b)],
        &mut log,
    );
    // Failure paths: a key that is missing, a tampered archive, a loose password file.
    let c = Vault::new();
    run_cmd(
        &c,
        &["backup", "extract", "--file", s(&copy), "--out", s(&out_c)],
        None,
        3,
        &mut log,
    );
    let mut tampered = std::fs::read(&copy).unwrap();
    let n = tampered.len();
    tampered[n - 200] ^= 1;
    let bad = a.path("tampered.vault");
    std::fs::write(&bad, &tampered).unwrap();
    run_cmd(
        &b,
        &["backup", "verify", "--file", s(&bad)],
        None,
        5,
        &mut log,
    );
    run_cmd(
        &b,
        &["backup", "extract", "--file", s(&bad), "--out", s(&out_c)],
        None,
        5,
        &mut log,
    );
    chmod(&pw, 0o644);
    run_cmd(
        &b,
        &[
            "keys",
            "upload",
            "--file",
            s(&kf1),
            "--password-file",
            s(&pw),
        ],
        None,
        9,
        &mut log,
    );
    chmod(&pw, 0o600);
    // Issue 13: fleet errors. One BMC answers, one refuses the password given, one is
    // not listening; the BMC passwords must appear in no output, log or file.
    const BMC_PW: &str = "bmc-pw: Qv7%unique-secret-4406";
    const BMC_WRONG_PW: &str = "bmc-wrong: Tn3&unique-secret-8127";
    let sim = vault::bmc::SimHandle::start(vault::bmc::SimConfig {
        user: "scan".into(),
        password: BMC_PW.into(),
        ..vault::bmc::SimConfig::default()
    })
    .unwrap();
    let bmc_pw = a.path("bmc-pw");
    std::fs::write(&bmc_pw, BMC_PW).unwrap();
    chmod(&bmc_pw, 0o600);
    let bmc_wrong = a.path("bmc-wrong");
    std::fs::write(&bmc_wrong, BMC_WRONG_PW).unwrap();
    chmod(&bmc_wrong, 0o600);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("https://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let ca = sim.ca_cert_path().display().to_string();
    let inventory = a.path("fleet.toml");
    let bmc = |url: &str, pwf: &Path| {
        format!(
            "[[bmc]]\nurl = \"{url}\"\nuser = \"scan\"\npassword_file = \"{}\"\n\
             ca_cert = \"{ca}\"\ntimeout = 2\nretries = 1\n\n",
            pwf.display()
        )
    };
    let url = sim.base_url();
    std::fs::write(
        &inventory,
        bmc(&url, &bmc_pw) + &bmc(&url, &bmc_wrong) + &bmc(&closed_url, &bmc_pw),
    )
    .unwrap();
    let fleet = run_cmd(
        &a,
        &[
            "backup",
            "pull",
            "--inventory",
            s(&inventory),
            "--parallel",
            "3",
        ],
        None,
        FLEET_PARTIAL_EXIT,
        &mut log,
    );
    let fleet: serde_json::Value = serde_json::from_slice(&fleet.stdout).unwrap();
    assert_eq!(
        (fleet["succeeded"].as_u64(), fleet["failed"].as_u64()),
        (Some(1), Some(2)),
        "{fleet}"
    );
    assert_eq!(sim.open_sessions(), 0);
    drop(sim);
    // Issue 13: an interrupted extract. Killed at once, it leaves nothing named; if it
    // finished first, its output is the intended plaintext (not scanned for it).
    let out_d = a.path("extracted-d");
    let mut killed = a
        .cmd(&["backup", "extract", "--id", &arch, "--out", s(&out_d)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3));
    let _ = killed.kill();
    let _ = killed.wait();
    let extract_finished = out_d.exists();

    r(&a, &["keys", "delete", "--id", &sys, "--force"], &mut log);
    r(&a, &["backup", "delete", "--id", &arch], &mut log);
    r(&a, &["audit", "verify"], &mut log);
    collect_keys(&a, &mut scan);
    collect_keys(&b, &mut scan);
    scan.add("file password", FILE_PW.as_bytes());
    scan.add("env password", ENV_PW.as_bytes());
    scan.add("wrong password", WRONG_PW.as_bytes());
    scan.add("BMC password", BMC_PW.as_bytes());
    scan.add("wrong BMC password", BMC_WRONG_PW.as_bytes());
    for (i, w) in [0usize, 1000, 75_000, 149_900].iter().enumerate() {
        scan.add(&format!("plaintext window {i}"), &plaintext[*w..*w + 48]);
    }

    scan.commands = log.len();
    for (args, o) in &log {
        scan.scan(&format!("stdout of {args}"), &o.stdout, None);
        scan.scan(&format!("stderr of {args}"), &o.stderr, None);
    }
    // Every file written: the scratch directories of all three homes, walked (the homes
    // are inside them), except root.key (the key store's root secret itself) and the
    // inputs that hold a secret by design (the password files, the plaintext); the
    // intended --out plaintexts are scanned for everything but the plaintext.
    let inputs = [&pw, &wrong, &plain, &bmc_pw, &bmc_wrong];
    let mut files = Vec::new();
    for v in [&a, &b, &c] {
        files_under(v.dir.path(), &mut files);
    }
    for f in [&kf1, &kf2, &copy, &out_a, &out_b, &a.home.join("audit.log")] {
        assert!(files.contains(f), "{} was not written", f.display());
    }
    let mut scanned_files = 0;
    for f in files {
        if f.file_name().unwrap() == "root.key" || inputs.contains(&&f) {
            continue;
        }
        let data = std::fs::read(&f).unwrap();
        let intended = [&out_a, &out_b].contains(&&f) || (extract_finished && f == out_d);
        let skip = intended.then_some("plaintext");
        scan.scan(&f.display().to_string(), &data, skip);
        scanned_files += 1;
    }
    assert!(!out_c.exists());
    println!(
        "secret scan: {} commands run, {scanned_files} files, {} secrets x {} forms, \
         {} bytes scanned, {} hits",
        scan.commands,
        scan.secrets.len(),
        scan.secrets[0].1.len(),
        scan.bytes,
        scan.hits.len()
    );
    assert!(scan.hits.is_empty(), "{:#?}", scan.hits);
}

/// (d) A vault process blocked on the home lock, with a key file and its password in
/// memory, runs with RLIMIT_CORE = 0 even though it was started with core dumps allowed.
#[test]
fn core_dumps_are_off_while_keys_are_in_memory() {
    let probe = Command::new("prlimit")
        .args(["--core=unlimited", "--", "sh", "-c", "ulimit -c"])
        .output();
    let Ok(probe) = probe else {
        cannot_run("prlimit (util-linux) not installed");
        return;
    };
    if String::from_utf8_lossy(&probe.stdout).trim() != "unlimited" {
        cannot_run(&format!("cannot raise RLIMIT_CORE here: {probe:?}"));
        return;
    }
    let donor = Vault::new();
    let id = donor.create_key(&[]);
    let kf = donor.path("key.vkey");
    let pw = donor.password_file(PASSWORD);
    let mut a = vec![
        "keys",
        "download",
        "--id",
        &id,
        "--file",
        s(&kf),
        "--password-file",
        s(&pw),
    ];
    a.extend(FAST_KDF);
    donor.ok(&a);

    let v = Vault::new();
    v.create_key(&[]);
    let lock = std::fs::File::options()
        .write(true)
        .open(v.home.join("lock"))
        .unwrap();
    lock.lock().unwrap();
    let mut child = Command::new("prlimit")
        .args(["--core=unlimited", "--", BIN, "--home", s(&v.home)])
        .args([
            "keys",
            "upload",
            "--file",
            s(&kf),
            "--password-file",
            s(&pw),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait (bounded) until it sleeps on the lock: password read, key file parsed. The
    // kernel says so in the task's wait channel, or as a blocked waiter ("->") in
    // /proc/locks where wchan is hidden.
    let start = Instant::now();
    let mut blocked = false;
    while start.elapsed() < Duration::from_secs(20) {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let waiter = std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().any(|w| w == pid.to_string()));
        if wchan.contains("lock") || waiter {
            blocked = true;
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "vault exited before blocking on the home lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        blocked,
        "vault (pid {pid}) never blocked on the home lock: its limits would not be read \
         while the key file and password are in memory"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_string();
    drop(lock);
    assert!(
        child.wait().unwrap().success(),
        "the upload failed once unblocked"
    );
    println!("blocked on the home lock: {blocked}; {core}");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

/// Issue 15: the root passphrase (from a file, the environment, a wrong one, a new one)
/// and the token PIN (configured file, environment, wrong) appear nowhere: not in any
/// output, the audit log, or any file outside the key store; and in modes passphrase and
/// pkcs11 not even root.key holds the root key.
#[test]
fn no_root_passphrase_or_pin_in_output_audit_or_files() {
    const ROOT_PW: &str = "root-pw: Qa7%unique-secret-4410";
    const NEW_ROOT_PW: &str = "new-root-pw: Wd3^unique-secret-8823";
    const WRONG_ROOT_PW: &str = "wrong-root-pw: Ex9&unique-secret-1187";
    const PIN: &str = "80917263544";
    const WRONG_PIN: &str = "11223344556";
    struct Unlock(&'static str);
    impl vault::home::root::Unlocker for Unlock {
        fn passphrase(&self) -> Result<vault::secret::Password, vault::home::root::RootError> {
            Ok(vault::secret::Password::new(self.0.into()))
        }
        fn pin(
            &self,
            _: &vault::home::token::TokenConfig,
        ) -> Result<vault::secret::Password, vault::home::root::RootError> {
            Ok(vault::secret::Password::new(PIN.into()))
        }
    }
    let mut log = Vec::new();
    let mut scan = Scan {
        secrets: Vec::new(),
        commands: 0,
        bytes: 0,
        hits: Vec::new(),
    };
    let secret_file = |v: &Vault, name: &str, text: &str| {
        let p = v.path(name);
        std::fs::write(&p, format!("{text}\n")).unwrap();
        chmod(&p, 0o600);
        p
    };
    let with_env = |v: &Vault,
                    args: &[&str],
                    env: &[(&str, &str)],
                    expect: i32,
                    log: &mut Vec<(String, Output)>| {
        let mut c = v.cmd(args);
        c.env_remove("VAULT_ROOT_PASSWORD")
            .env_remove("VAULT_PKCS11_PIN");
        for (k, val) in env {
            c.env(k, val);
        }
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(expect),
            "scan step vault {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        log.push((format!("{args:?}"), o.clone()));
        o
    };

    // Passphrase mode.
    let a = Vault::new();
    let rpw = secret_file(&a, "root-pw", ROOT_PW);
    let plain = a.path("plain");
    std::fs::write(&plain, b"passphrase-mode archive").unwrap();
    let mut init = vec![
        "home",
        "init",
        "--protect",
        "passphrase",
        "--new-password-file",
        s(&rpw),
    ];
    init.extend(FAST_KDF);
    with_env(&a, &init, &[], 0, &mut log);
    let key = with_env(
        &a,
        &["--root-password-file", s(&rpw), "keys", "create"],
        &[],
        0,
        &mut log,
    );
    let key: serde_json::Value = serde_json::from_slice(&key.stdout).unwrap();
    let key = key["id"].as_str().unwrap().to_string();
    let env_ok = [("VAULT_ROOT_PASSWORD", ROOT_PW)];
    let made = with_env(
        &a,
        &["backup", "create", "--file", s(&plain)],
        &env_ok,
        0,
        &mut log,
    );
    let arch: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let arch = arch["id"].as_str().unwrap().to_string();
    with_env(
        &a,
        &["backup", "verify", "--id", &arch],
        &[("VAULT_ROOT_PASSWORD", WRONG_ROOT_PW)],
        4,
        &mut log,
    );
    with_env(&a, &["backup", "verify", "--id", &arch], &[], 2, &mut log);
    with_env(&a, &["keys", "list"], &env_ok, 0, &mut log);
    with_env(&a, &["home", "show"], &[], 0, &mut log);
    with_env(&a, &["home", "rotate-root"], &env_ok, 0, &mut log);
    let home = vault::home::Home::open(&a.home)
        .unwrap()
        .with_unlocker(Box::new(Unlock(ROOT_PW)));
    scan.add(
        "root key (passphrase mode)",
        home.root_key().unwrap().expose(),
    );
    let ks = vault::keystore::KeyStore::new(&home);
    let (_, m) = ks
        .material(&uuid::Uuid::parse_str(&key).unwrap(), false)
        .unwrap();
    scan.add("backup key (passphrase mode)", m.expose());
    drop(home);
    let mut change = vec!["home", "protect", "--protect", "passphrase"];
    change.extend(FAST_KDF);
    with_env(
        &a,
        &change,
        &[
            ("VAULT_ROOT_PASSWORD", ROOT_PW),
            ("VAULT_NEW_ROOT_PASSWORD", NEW_ROOT_PW),
        ],
        0,
        &mut log,
    );
    with_env(
        &a,
        &["backup", "verify", "--id", &arch],
        &[("VAULT_ROOT_PASSWORD", ROOT_PW)],
        4,
        &mut log,
    );
    with_env(
        &a,
        &["backup", "verify", "--id", &arch],
        &[("VAULT_ROOT_PASSWORD", NEW_ROOT_PW)],
        0,
        &mut log,
    );
    let home = vault::home::Home::open(&a.home)
        .unwrap()
        .with_unlocker(Box::new(Unlock(NEW_ROOT_PW)));
    scan.add(
        "root key (new passphrase)",
        home.root_key().unwrap().expose(),
    );
    drop(home);
    with_env(&a, &["audit", "verify"], &[], 0, &mut log);

    // PKCS#11 mode, when SoftHSM2 is here (a failure under CI=true when it is not).
    let mut scanned_token = false;
    let p = Vault::new();
    let q = Vault::new();
    if let Some(hsm) = common::softhsm::softhsm() {
        scanned_token = true;
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &hsm.conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                "scan",
                "--pin",
                PIN,
                "--so-pin",
                "99887766",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let conf = hsm.conf.display().to_string();
        let henv = [("SOFTHSM2_CONF", conf.as_str())];
        let pin = secret_file(&p, "pin", PIN);
        let base = [
            "home",
            "init",
            "--protect",
            "pkcs11",
            "--pkcs11-module",
            common::softhsm::MODULE,
            "--pkcs11-token",
            "scan",
        ];
        let mut init = base.to_vec();
        init.extend(["--pkcs11-pin-file", s(&pin)]);
        with_env(&p, &init, &henv, 0, &mut log);
        with_env(&p, &["keys", "create"], &henv, 0, &mut log);
        with_env(&p, &["keys", "create", "--tied-to-hsm"], &henv, 0, &mut log);
        let made = with_env(
            &p,
            &["backup", "create", "--file", s(&plain)],
            &henv,
            0,
            &mut log,
        );
        let arch: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
        let arch = arch["id"].as_str().unwrap().to_string();
        with_env(&p, &["backup", "verify", "--id", &arch], &henv, 0, &mut log);
        with_env(&p, &["keys", "list"], &henv, 0, &mut log);
        with_env(&p, &["home", "rotate-root"], &henv, 0, &mut log);
        with_env(&p, &["audit", "verify"], &henv, 0, &mut log);
        // A second home with the PIN from the environment, and a wrong one.
        let pin_env = [("SOFTHSM2_CONF", conf.as_str()), ("VAULT_PKCS11_PIN", PIN)];
        with_env(&q, &base, &pin_env, 0, &mut log);
        with_env(&q, &["keys", "create"], &pin_env, 0, &mut log);
        let wrong = [
            ("SOFTHSM2_CONF", conf.as_str()),
            ("VAULT_PKCS11_PIN", WRONG_PIN),
        ];
        with_env(&q, &["keys", "list"], &wrong, 4, &mut log);
        with_env(&q, &["home", "rotate-root"], &wrong, 4, &mut log);
        with_env(&q, &["keys", "list"], &henv, 2, &mut log);
        // SAFETY of the scan: the token's own directory belongs to the HSM, not to vault.
    }

    scan.add("root passphrase", ROOT_PW.as_bytes());
    scan.add("new root passphrase", NEW_ROOT_PW.as_bytes());
    scan.add("wrong root passphrase", WRONG_ROOT_PW.as_bytes());
    scan.add("PIN", PIN.as_bytes());
    scan.add("wrong PIN", WRONG_PIN.as_bytes());
    scan.commands = log.len();
    for (args, o) in &log {
        scan.scan(&format!("stdout of {args}"), &o.stdout, None);
        scan.scan(&format!("stderr of {args}"), &o.stderr, None);
    }
    let mut files = Vec::new();
    for v in [&a, &p, &q] {
        files_under(v.dir.path(), &mut files);
    }
    assert!(files.contains(&a.home.join("audit.log")));
    let mut scanned = 0;
    for f in files {
        // The inputs that hold a secret by design.
        if [&rpw, &p.path("pin")].contains(&&f) {
            continue;
        }
        // keys.json holds wrapped keys; root.key in these modes must hold no key at all.
        scan.scan(&f.display().to_string(), &std::fs::read(&f).unwrap(), None);
        scanned += 1;
    }
    println!(
        "root secret scan: {} commands, {scanned} files, {} secrets, {} bytes, token part run: {scanned_token}, {} hits",
        scan.commands,
        scan.secrets.len(),
        scan.bytes,
        scan.hits.len()
    );
    assert!(scan.hits.is_empty(), "{:#?}", scan.hits);
}

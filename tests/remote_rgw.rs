//! The remote (S3) archive stores against a real Ceph RADOS Gateway on loopback.
//!
//! Each test starts its own single-node cluster (`tests/support/rgw.sh`, Debian 12's
//! ceph packages, installed by `.ci/install.d/45-ceph.sh`) in a temporary directory and
//! stops it by pid when done; the tests of this file run one at a time. Without ceph the
//! tests are skipped, except under CI=true, where that is a failure.
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use common::{Vault, bytes, s};
use serde_json::Value;
use vault::remote::{CredentialEnv, LockMode, Remote, RemoteConfig, s3::PutOptions};

const ACCESS_KEY: &str = "vaulttestaccesskey";
const SECRET_KEY: &str = "vaulttestsecretkey0123456789abcdefghij";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running cluster; stopped (by the pids in its directory) on drop.
struct Rgw {
    dir: tempfile::TempDir,
    endpoint: String,
    /// With TLS: the CA that signed the gateway's certificate.
    ca_cert: Option<String>,
    _serial: MutexGuard<'static, ()>,
}

impl Rgw {
    fn start() -> Option<Rgw> {
        Self::start_with(false)
    }

    /// A gateway that speaks only HTTPS, its certificate signed by a CA of its own.
    fn start_tls() -> Option<Rgw> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<Rgw> {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/rgw.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir.path())
            .env("RGW_TLS", if tls { "1" } else { "0" })
            .output()
            .unwrap();
        if out.status.code() == Some(3) {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                !common::in_ci(),
                "ceph is required under CI=true (run .ci/install): {why}"
            );
            eprintln!("skipping: {why}");
            return None;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "rgw.sh start failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let endpoint = stdout
            .lines()
            .find_map(|l| l.strip_prefix("endpoint="))
            .expect("an endpoint line")
            .to_string();
        let scheme = if tls { "https" } else { "http" };
        assert!(
            endpoint.starts_with(&format!("{scheme}://127.0.0.1:")),
            "{endpoint}"
        );
        let ca_cert = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ca_cert="))
            .map(str::to_string);
        assert_eq!(ca_cert.is_some(), tls, "{stdout}");
        Some(Rgw {
            dir,
            endpoint,
            ca_cert,
            _serial: serial,
        })
    }

    /// `vault` with the S3 credentials in its environment.
    fn vault(&self, v: &Vault, args: &[&str]) -> std::process::Output {
        v.cmd(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .output()
            .unwrap()
    }

    /// Runs `vault ARGS` with the credentials, SIGKILLs it after `ms` milliseconds and
    /// returns whether it was still running then.
    fn killed_after(&self, v: &Vault, args: &[&str], ms: u64) -> bool {
        let mut child = v
            .cmd(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let still_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        still_running
    }

    fn ok(&self, v: &Vault, args: &[&str]) -> (Value, String) {
        let out = self.vault(v, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "vault {args:?} failed: {err}");
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "vault {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (json, err)
    }

    fn fails(&self, v: &Vault, args: &[&str], code: i32) -> String {
        let out = self.vault(v, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "vault {args:?}: {err}");
        err
    }

    /// `vault remote add NAME` for `s3://BUCKET/PREFIX` on this gateway.
    fn add(&self, v: &Vault, name: &str, url: &str, extra: &[&str]) {
        let mut args = vec![
            "remote",
            "add",
            name,
            "--url",
            url,
            "--endpoint",
            &self.endpoint,
        ];
        args.extend_from_slice(extra);
        self.ok(v, &args);
    }

    /// A client of our own, as a user of the bucket would have (for direct S3 calls).
    fn direct(&self, url: &str) -> Remote {
        let cfg = RemoteConfig {
            name: "direct".into(),
            url: url.into(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            path_style: true,
            ca_cert: None,
            profile: None,
            credentials_file: None,
        };
        let env = CredentialEnv {
            access_key_id: Some(ACCESS_KEY.to_string().into()),
            secret_access_key: Some(SECRET_KEY.to_string().into()),
            ..Default::default()
        };
        Remote::connect(cfg, &env, std::time::Duration::from_secs(30)).unwrap()
    }
}

impl Drop for Rgw {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/rgw.sh");
        let _ = Command::new("bash")
            .arg(&script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A home with a default system key and archives sealed from `sizes` bytes each.
fn home_with_archives(sizes: &[usize]) -> (Vault, Vec<String>) {
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    let ids = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let f = v.path(&format!("in-{i}"));
            std::fs::write(&f, bytes(n, i as u64 + 1)).unwrap();
            v.ok(&["backup", "create", "--file", s(&f)])["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    (v, ids)
}

/// A new machine: a home holding only the key of `v` (moved by `keys download` and
/// `keys upload`, as an operator would), with remote `rgw` at `url` configured.
fn new_machine_with_the_key(rgw: &Rgw, v: &Vault, url: &str) -> Vault {
    let pw = v.password_file(common::PASSWORD);
    let key_file = v.path("system.key");
    let key_id = v.ok(&["keys", "list"])["resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    v.ok(&[
        "keys",
        "download",
        "--id",
        &key_id,
        "--file",
        s(&key_file),
        "--password-file",
        s(&pw),
    ]);
    let fresh = Vault::new();
    let pw2 = fresh.password_file(common::PASSWORD);
    fresh.ok(&[
        "keys",
        "upload",
        "--file",
        s(&key_file),
        "--password-file",
        s(&pw2),
    ]);
    rgw.add(&fresh, "rgw", url, &[]);
    fresh
}

/// Overwrites the object of archive `id` (pushed from `v` to `url`) with its bytes with
/// one bit flipped in the middle, keeping the SHA-256 metadata of the original (as bit
/// rot or a careless writer would); returns the flipped bytes.
fn flip_a_byte_in_the_store(rgw: &Rgw, url: &str, v: &Vault, id: &str) -> Vec<u8> {
    let direct = rgw.direct(url);
    let id: uuid::Uuid = id.parse().unwrap();
    let key = direct.object_key(&id);
    let mut flipped = std::fs::read(v.home.join(format!("archives/{id}.vault"))).unwrap();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let head = direct.client().head(&key).unwrap().unwrap();
    direct
        .client()
        .put_object(
            &key,
            &flipped,
            &PutOptions {
                sha256_hex: head.sha256.clone(),
                lock: None,
            },
        )
        .unwrap();
    flipped
}

fn resources(v: &Value) -> &Vec<Value> {
    v["resources"].as_array().unwrap()
}

/// Requests and object bytes from the notice `vault backup list --remote` prints.
fn list_stats(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("listed "))
        .unwrap_or_else(|| panic!("no stats line in {stderr}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    (nums[1], nums[2])
}

#[test]
fn push_list_keyless_fetch_and_restore_on_a_new_machine() {
    let Some(rgw) = Rgw::start() else { return };
    // 200 KB goes up in one PUT, 12 MB by a multipart upload (8 MiB parts).
    let (v, ids) = home_with_archives(&[1000, 200_000, 12_000_000]);
    rgw.add(&v, "rgw", "s3://vault-test/site-a", &["--create-bucket"]);
    let (pushed, _) = rgw.ok(&v, &["backup", "push", "--all", "--remote", "rgw"]);
    let pushed = resources(&pushed);
    assert_eq!(pushed.len(), 3);
    let parts: Vec<u64> = pushed
        .iter()
        .map(|p| p["parts"].as_u64().unwrap())
        .collect();
    assert!(
        parts.contains(&2),
        "the 12 MB archive went up in 2 parts: {parts:?}"
    );
    assert!(pushed.iter().all(|p| p["uploaded"] == true));
    // Pushing again sends nothing: the same bytes are already there.
    let (again, _) = rgw.ok(&v, &["backup", "push", "--all", "--remote", "rgw"]);
    assert!(resources(&again).iter().all(|p| p["uploaded"] == false));

    // Keyless listing from a home that holds no key at all.
    let stranger = Vault::new();
    rgw.add(&stranger, "rgw", "s3://vault-test/site-a", &[]);
    let (listed, err) = rgw.ok(&stranger, &["backup", "list", "--remote", "rgw"]);
    let listed = resources(&listed);
    assert_eq!(listed.len(), 3);
    let mut got: Vec<&str> = listed.iter().map(|a| a["id"].as_str().unwrap()).collect();
    got.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(got, want);
    let big = listed.iter().find(|a| a["size"] == 12_000_000).unwrap();
    assert!(big["objectSize"].as_u64().unwrap() > 12_000_000);
    // Issue 12: to a home that did not sign them, the key ids are claims; to the home
    // that sealed them (its signature on every slot), facts.
    assert!(
        listed.iter().all(|a| a["backupKeyClaimed"] == true),
        "{listed:?}"
    );
    let (own, _) = rgw.ok(&v, &["backup", "list", "--remote", "rgw"]);
    assert!(
        resources(&own)
            .iter()
            .all(|a| a.get("backupKeyClaimed").is_none()),
        "{own}"
    );
    // O(header): one LIST, then per archive two ranged reads (a 4 KiB header block and
    // the 80-byte trailer), or one when the whole archive fits in the first block (the
    // 1 KB one): the 200 KB and the 12 MB archive cost the same.
    let (requests, bytes_read) = list_stats(&err);
    assert_eq!(requests, 1 + 1 + 2 * 2, "{err}");
    assert!(bytes_read <= 4096 + 2 * (4096 + 80), "{err}");

    // Restore on a new machine: the key comes by download/upload, the archive from S3.
    let fresh = new_machine_with_the_key(&rgw, &v, "s3://vault-test/site-a");
    let big_id = big["id"].as_str().unwrap();
    let (fetched, _) = rgw.ok(
        &fresh,
        &["backup", "fetch", "--remote", "rgw", "--id", &big_id[..8]],
    );
    assert_eq!(fetched["verified"], true);
    assert_eq!(fetched["added"], true);
    let out = fresh.path("restored");
    fresh.ok(&["backup", "extract", "--id", big_id, "--out", s(&out)]);
    let idx = ids.iter().position(|i| i == big_id).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        bytes(12_000_000, idx as u64 + 1)
    );
    // A second fetch changes nothing.
    let (again, _) = rgw.ok(
        &fresh,
        &["backup", "fetch", "--remote", "rgw", "--id", big_id],
    );
    assert_eq!(again["added"], false);
    // The fetch is audited.
    let log = std::fs::read_to_string(fresh.home.join("audit.log")).unwrap();
    assert!(log.contains("backup.fetch"), "{log}");
}

#[test]
fn a_corrupted_object_is_caught_on_fetch_and_nothing_reaches_the_home() {
    let Some(rgw) = Rgw::start() else { return };
    let (v, ids) = home_with_archives(&[300_000]);
    rgw.add(&v, "rgw", "s3://vault-corrupt/p", &["--create-bucket"]);
    rgw.ok(&v, &["backup", "push", "--all", "--remote", "rgw"]);
    let direct = rgw.direct("s3://vault-corrupt/p");
    let id: uuid::Uuid = ids[0].parse().unwrap();
    let key = direct.object_key(&id);

    // 1. Bytes flipped in the store, checksum metadata left as it was.
    let flipped = flip_a_byte_in_the_store(&rgw, "s3://vault-corrupt/p", &v, &ids[0]);
    let home2 = Vault::new();
    home2.create_key(&["--scope", "system"]);
    rgw.add(&home2, "rgw", "s3://vault-corrupt/p", &[]);
    let err = rgw.fails(
        &home2,
        &["backup", "fetch", "--remote", "rgw", "--id", &ids[0]],
        5,
    );
    assert!(err.contains("corrupted in the store"), "{err}");
    // 2. Bytes flipped and the checksum recomputed (someone with write access): the
    //    archive's own authentication catches it (here in the home that holds the key).
    let (_, sha) = {
        let t = v.path("flipped");
        std::fs::write(&t, &flipped).unwrap();
        vault::remote::sha256_file(&t).unwrap()
    };
    direct
        .client()
        .put_object(
            &key,
            &flipped,
            &PutOptions {
                sha256_hex: Some(sha),
                lock: None,
            },
        )
        .unwrap();
    rgw.ok(&v, &["backup", "delete", "--id", &ids[0]]);
    let err = rgw.fails(
        &v,
        &["backup", "fetch", "--remote", "rgw", "--id", &ids[0]],
        5,
    );
    assert!(err.contains("s3://vault-corrupt/p/"), "{err}");
    // Nothing was left in either home, not even a temporary file.
    for h in [&v.home, &home2.home] {
        let left: Vec<_> = std::fs::read_dir(h.join("archives"))
            .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// `backup verify --remote`: on a machine that has only the key, the archive is fetched
/// from the bucket (checked end to end), opened and verified; a corrupted object fails
/// the verify and nothing of it reaches the home.
#[test]
fn backup_verify_remote_verifies_from_the_bucket_and_refuses_a_corrupted_object() {
    let Some(rgw) = Rgw::start() else { return };
    let url = "s3://vault-verify/site";
    let (v, ids) = home_with_archives(&[5_000, 300_000]);
    rgw.add(&v, "rgw", url, &["--create-bucket"]);
    rgw.ok(&v, &["backup", "push", "--all", "--remote", "rgw"]);
    let listed = v.ok(&["backup", "list"]);
    let checksum_of = |id: &str| {
        resources(&listed)
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["checksum"].as_str().unwrap().to_string())
            .unwrap()
    };
    let fresh = new_machine_with_the_key(&rgw, &v, url);
    let archive = |id: &str| fresh.home.join(format!("archives/{id}.vault"));
    assert!(!archive(&ids[1]).exists());

    // By a prefix of its id, as on the local store.
    let (verified, err) = rgw.ok(
        &fresh,
        &["backup", "verify", "--remote", "rgw", "--id", &ids[1][..8]],
    );
    assert_eq!(verified["verified"], true, "{verified}");
    assert_eq!(verified["id"], ids[1].as_str());
    assert_eq!(verified["size"], 300_000);
    assert_eq!(verified["checksum"].as_str().unwrap(), checksum_of(&ids[1]));
    assert!(err.contains("fetched from rgw and verified"), "{err}");
    assert!(
        archive(&ids[1]).exists(),
        "the verified archive is in the home"
    );
    // Once here it is verified from the home (nothing is fetched again).
    let (again, err) = rgw.ok(
        &fresh,
        &["backup", "verify", "--remote", "rgw", "--id", &ids[1]],
    );
    assert_eq!(again["verified"], true);
    assert!(!err.contains("fetched from"), "{err}");

    // One byte flipped in the store, the checksum metadata left as it was.
    flip_a_byte_in_the_store(&rgw, url, &v, &ids[0]);
    let err = rgw.fails(
        &fresh,
        &["backup", "verify", "--remote", "rgw", "--id", &ids[0]],
        5,
    );
    assert!(err.contains("corrupted in the store"), "{err}");
    assert!(!archive(&ids[0]).exists());
    let left: Vec<_> = std::fs::read_dir(fresh.home.join("archives"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        left,
        vec![format!("{}.vault", ids[1])],
        "no temporary is left"
    );
    // The verify that fetched is audited as a fetch and a verify.
    let log = std::fs::read_to_string(fresh.home.join("audit.log")).unwrap();
    assert!(
        log.contains("backup.fetch") && log.contains("backup.verify"),
        "{log}"
    );
}

#[test]
fn a_compliance_locked_object_cannot_be_deleted_by_vault_or_s3() {
    let Some(rgw) = Rgw::start() else { return };
    let (v, ids) = home_with_archives(&[50_000]);
    rgw.add(
        &v,
        "locked",
        "s3://vault-locked/p",
        &["--create-bucket", "--object-lock"],
    );
    let (pushed, _) = rgw.ok(
        &v,
        &[
            "backup",
            "push",
            "--id",
            &ids[0],
            "--remote",
            "locked",
            "--retain",
            "2d",
            "--lock",
            "compliance",
        ],
    );
    let p = &resources(&pushed)[0];
    assert_eq!(p["lockMode"], "compliance");
    let direct = rgw.direct("s3://vault-locked/p");
    let id: uuid::Uuid = ids[0].parse().unwrap();
    let key = direct.object_key(&id);
    let head = direct.client().head(&key).unwrap().unwrap();
    assert_eq!(head.lock_mode, Some(LockMode::Compliance), "{head:?}");
    assert!(head.retain_until.is_some());
    // A direct delete of the version is refused by the store itself.
    let err = direct
        .client()
        .delete(&key, head.version_id.as_deref())
        .unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    // Still there, still whole.
    let again = direct.client().head(&key).unwrap().unwrap();
    assert_eq!(again.sha256, head.sha256);
}

#[test]
fn prune_on_a_remote_dry_run_then_for_real_and_a_locked_object_is_reported() {
    let Some(rgw) = Rgw::start() else { return };
    // Three archives of one group, a second apart (createdAt has whole seconds).
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    let mut ids = Vec::new();
    for i in 0..3u64 {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        let f = v.path(&format!("in-{i}"));
        std::fs::write(&f, bytes(20_000, i)).unwrap();
        ids.push(
            v.ok(&["backup", "create", "--file", s(&f)])["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (oldest, middle, newest) = (&ids[0], &ids[1], &ids[2]);
    rgw.add(
        &v,
        "r",
        "s3://vault-prune/p",
        &["--create-bucket", "--object-lock"],
    );
    rgw.ok(
        &v,
        &[
            "backup",
            "push",
            "--id",
            oldest,
            "--remote",
            "r",
            "--retain",
            "1",
            "--lock",
            "compliance",
        ],
    );
    rgw.ok(&v, &["backup", "push", "--id", middle, "--remote", "r"]);
    rgw.ok(&v, &["backup", "push", "--id", newest, "--remote", "r"]);
    let action = |r: &Value, id: &str| {
        resources(r)
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["action"].as_str().unwrap().to_string())
            .unwrap()
    };

    let (dry, _) = rgw.ok(
        &v,
        &[
            "backup",
            "prune",
            "--remote",
            "r",
            "--keep-last",
            "1",
            "--dry-run",
        ],
    );
    assert_eq!(dry["dryRun"], true);
    assert_eq!(action(&dry, newest), "keep");
    assert_eq!(action(&dry, middle), "would-remove");
    assert_eq!(action(&dry, oldest), "locked");
    let newest_item = resources(&dry)
        .iter()
        .find(|i| i["id"] == newest.as_str())
        .unwrap();
    let reasons: Vec<&str> = newest_item["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    // It was downloaded and authenticated before anything else of the group could go.
    assert_eq!(reasons, ["last", "newest verified"]);
    let direct = rgw.direct("s3://vault-prune/p");
    let key = |id: &str| direct.object_key(&id.parse().unwrap());
    for id in &ids {
        assert!(
            direct.client().head(&key(id)).unwrap().is_some(),
            "dry run removed {id}"
        );
    }

    let (real, _) = rgw.ok(
        &v,
        &["backup", "prune", "--remote", "r", "--keep-last", "1"],
    );
    assert_eq!(real["removed"], 1);
    assert_eq!(real["locked"], 1);
    assert_eq!(action(&real, middle), "remove");
    assert!(direct.client().head(&key(middle)).unwrap().is_none());
    assert!(direct.client().head(&key(oldest)).unwrap().is_some());
    assert!(direct.client().head(&key(newest)).unwrap().is_some());
    // The home's own archives are untouched by a remote prune; the removal is audited.
    assert_eq!(v.ok(&["backup", "list"])["total"], 3);
    let log = std::fs::read_to_string(v.home.join("audit.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("backup.prune") && l.contains(middle.as_str())),
        "{log}"
    );
}

#[test]
fn a_push_killed_midway_leaves_no_object() {
    let Some(rgw) = Rgw::start() else { return };
    // 30 MB: a multipart upload of four 8 MiB parts, long enough to be killed inside.
    let (v, ids) = home_with_archives(&[30_000_000]);
    let id: uuid::Uuid = ids[0].parse().unwrap();
    let local = v.home.join(format!("archives/{id}.vault"));
    let (_, want_sha) = vault::remote::sha256_file(&local).unwrap();
    let direct = rgw.direct("s3://vault-kill/p");
    let key = direct.object_key(&id);
    let mut killed_before_the_end = 0;
    for (round, delay_ms) in [50u64, 150, 300, 500, 800, 1200].into_iter().enumerate() {
        let prefix = format!("s3://vault-kill/p{round}");
        let name = format!("r{round}");
        let extra: &[&str] = if round == 0 {
            &["--create-bucket"]
        } else {
            &[]
        };
        rgw.add(&v, &name, &prefix, extra);
        let direct = rgw.direct(&prefix);
        let key = direct.object_key(&id);
        let still_running = rgw.killed_after(
            &v,
            &["backup", "push", "--id", &ids[0], "--remote", &name],
            delay_ms,
        );
        let seen = direct.client().head(&key).unwrap();
        eprintln!(
            "round {round}: killed after {delay_ms} ms, running={still_running}, object={}",
            seen.is_some()
        );
        match seen {
            None => {
                if still_running {
                    killed_before_the_end += 1;
                }
            }
            // Whatever is visible is whole: the same bytes as the archive.
            Some(h) => assert_eq!(
                h.sha256.as_deref(),
                Some(want_sha.as_str()),
                "round {round}"
            ),
        }
    }
    assert!(
        killed_before_the_end > 0,
        "no kill landed before the push finished; the test proved nothing"
    );
    // And a push after the kills completes normally.
    rgw.add(&v, "final", "s3://vault-kill/p", &[]);
    rgw.ok(
        &v,
        &["backup", "push", "--id", &ids[0], "--remote", "final"],
    );
    let h = direct.client().head(&key).unwrap().unwrap();
    assert_eq!(h.sha256.as_deref(), Some(want_sha.as_str()));
}

#[test]
fn audit_archives_sweeps_a_bucket_keylessly_and_reports_short_retention() {
    let Some(rgw) = Rgw::start() else { return };
    let (v, ids) = home_with_archives(&[10_000, 10_000]);
    rgw.add(
        &v,
        "r",
        "s3://vault-sweep/p",
        &["--create-bucket", "--object-lock"],
    );
    rgw.ok(
        &v,
        &[
            "backup", "push", "--id", &ids[0], "--remote", "r", "--retain", "3",
        ],
    );
    rgw.ok(&v, &["backup", "push", "--id", &ids[1], "--remote", "r"]);
    let findings = |r: &Value, id: &str| -> Vec<String> {
        r["archives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {r}"))["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["code"].as_str().unwrap().to_string())
            .collect()
    };
    let (r, _) = rgw.ok(
        &v,
        &[
            "audit",
            "archives",
            "s3://vault-sweep/p",
            "--min-retention",
            "2",
        ],
    );
    assert_eq!(r["summary"]["archives"], 2, "{r}");
    assert!(findings(&r, &ids[0]).is_empty(), "{r}");
    assert_eq!(findings(&r, &ids[1]), ["retention-too-short"]);
    let (r, _) = rgw.ok(
        &v,
        &[
            "audit",
            "archives",
            "s3://vault-sweep/p",
            "--min-retention",
            "30",
        ],
    );
    assert_eq!(r["summary"]["findings"]["retention-too-short"], 2, "{r}");
    let path = r["archives"][0]["path"].as_str().unwrap();
    assert!(path.starts_with("s3://vault-sweep/p/"), "{path}");
}

#[test]
fn https_is_verified_by_default_and_a_private_ca_is_trusted_with_ca_cert() {
    let Some(rgw) = Rgw::start_tls() else { return };
    let ca = rgw.ca_cert.clone().expect("a TLS gateway has a CA");
    let (v, ids) = home_with_archives(&[3000]);

    // Without --ca-cert the gateway's certificate is checked against the system roots,
    // which do not know this CA: nothing is created, and the error says why.
    let err = rgw.fails(
        &v,
        &[
            "remote",
            "add",
            "tls",
            "--url",
            "s3://vault-tls/p",
            "--endpoint",
            &rgw.endpoint,
            "--create-bucket",
        ],
        8,
    );
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(
        !err.contains(SECRET_KEY) && !err.contains("X-Amz-Signature"),
        "{err}"
    );
    let (remotes, _) = rgw.ok(&v, &["remote", "list"]);
    assert!(resources(&remotes).is_empty(), "a failed add left a remote");

    // A CA that did not sign the gateway's certificate is no better.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=not the gateway's CA"])
        .arg("-keyout")
        .arg(other.path().join("k.pem"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(made.status.success());
    rgw.fails(
        &v,
        &[
            "remote",
            "add",
            "tls",
            "--url",
            "s3://vault-tls/p",
            "--endpoint",
            &rgw.endpoint,
            "--create-bucket",
            "--ca-cert",
            s(&other_ca),
        ],
        8,
    );

    // With the right CA: bucket, push, keyless list and a verified fetch, all over TLS.
    rgw.add(
        &v,
        "tls",
        "s3://vault-tls/p",
        &["--create-bucket", "--ca-cert", &ca],
    );
    let (remotes, _) = rgw.ok(&v, &["remote", "list"]);
    assert_eq!(resources(&remotes)[0]["caCert"].as_str(), Some(ca.as_str()));
    let (pushed, _) = rgw.ok(&v, &["backup", "push", "--all", "--remote", "tls"]);
    assert_eq!(resources(&pushed)[0]["uploaded"], true);
    let (listed, _) = rgw.ok(&v, &["backup", "list", "--remote", "tls"]);
    assert_eq!(resources(&listed)[0]["id"].as_str(), Some(ids[0].as_str()));
    rgw.ok(&v, &["backup", "delete", "--id", &ids[0]]);
    let (fetched, _) = rgw.ok(&v, &["backup", "fetch", "--remote", "tls", "--id", &ids[0]]);
    assert_eq!(fetched["verified"], true);
    assert_eq!(fetched["added"], true);
}

/// `backup pull --push-to`: every archive of a fleet lands on the remote as it is sealed;
/// a new machine then extracts and restores straight from the bucket (`--remote`).
#[test]
fn a_fleet_pull_pushes_each_archive_and_a_new_machine_restores_from_the_bucket() {
    use std::os::unix::fs::PermissionsExt;
    use vault::bmc::{SimConfig, SimHandle};
    let Some(rgw) = Rgw::start() else { return };
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    rgw.add(
        &v,
        "rgw",
        "s3://vault-fleet/ilo",
        &["--create-bucket", "--object-lock"],
    );
    let pw = v.path("bmc.pw");
    std::fs::write(&pw, "simulator-password").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sims: Vec<SimHandle> = (0..3)
        .map(|i| {
            SimHandle::start(SimConfig {
                user: "Administrator".into(),
                password: "simulator-password".into(),
                serial: format!("CZPUSH{i:04}"),
                backup_bytes: bytes(30_000 + i, 40 + i as u64),
                ..SimConfig::default()
            })
            .unwrap()
        })
        .collect();
    let mut toml = String::new();
    for sim in &sims {
        toml.push_str(&format!(
            "[[bmc]]\nurl = \"{}\"\nca_cert = \"{}\"\n\n",
            sim.base_url(),
            sim.ca_cert_path().display()
        ));
    }
    let inv = v.path("fleet.toml");
    std::fs::write(&inv, toml).unwrap();
    let (out, _) = rgw.ok(
        &v,
        &[
            "backup",
            "pull",
            "--inventory",
            s(&inv),
            "--bmc-password-file",
            s(&pw),
            "--push-to",
            "rgw",
            "--retain",
            "1d",
            "--lock",
            "governance",
        ],
    );
    assert_eq!(out["succeeded"], 3, "{out}");
    assert_eq!(out["pushFailed"], 0, "{out}");
    let results = out["results"].as_array().unwrap();
    for r in results {
        assert_eq!(r["pushed"]["uploaded"], true, "{r}");
        assert_eq!(r["pushed"]["lockMode"], "governance", "{r}");
        assert_eq!(r["pushed"]["id"], r["archiveId"], "{r}");
    }
    // Each object is there under Object Lock, with the bytes of the home's archive.
    let direct = rgw.direct("s3://vault-fleet/ilo");
    for r in results {
        let id = r["archiveId"].as_str().unwrap();
        let head = direct
            .client()
            .head(&format!("ilo/{id}.vault"))
            .unwrap()
            .expect("pushed");
        assert_eq!(head.lock_mode, Some(LockMode::Governance));
        let local = v.home.join("archives").join(format!("{id}.vault"));
        let (_, sha) = vault::remote::sha256_file(&local).unwrap();
        assert_eq!(head.sha256.as_deref(), Some(sha.as_str()));
    }
    // A single pull pushes too, and says so in its record.
    let (one, _) = rgw.ok(
        &v,
        &[
            "backup",
            "pull",
            "--bmc",
            &sims[0].base_url(),
            "--ca-cert",
            s(sims[0].ca_cert_path()),
            "--bmc-password-file",
            s(&pw),
            "--push-to",
            "rgw",
        ],
    );
    assert_eq!(one["pushed"]["uploaded"], true, "{one}");
    // An unknown remote is refused before any BMC is contacted.
    let before = sims[1].request_count();
    rgw.fails(
        &v,
        &[
            "backup",
            "pull",
            "--bmc",
            &sims[1].base_url(),
            "--ca-cert",
            s(sims[1].ca_cert_path()),
            "--bmc-password-file",
            s(&pw),
            "--push-to",
            "nowhere",
        ],
        3,
    );
    assert_eq!(sims[1].request_count(), before);

    // A new machine with the key: extract and restore read from the remote.
    let fresh = new_machine_with_the_key(&rgw, &v, "s3://vault-fleet/ilo");
    let second = results
        .iter()
        .find(|r| r["serialNumber"] == "CZPUSH0001")
        .unwrap();
    let id = second["archiveId"].as_str().unwrap();
    let out_file = fresh.path("extracted.bak");
    rgw.ok(
        &fresh,
        &[
            "backup",
            "extract",
            "--remote",
            "rgw",
            "--id",
            &id[..8],
            "--out",
            s(&out_file),
        ],
    );
    assert_eq!(std::fs::read(&out_file).unwrap(), bytes(30_001, 41));
    // Restore onto the third BMC from a machine that does not have the archive yet.
    let third = new_machine_with_the_key(&rgw, &v, "s3://vault-fleet/ilo");
    let target = &sims[2];
    let third_id = results
        .iter()
        .find(|r| r["serialNumber"] == "CZPUSH0002")
        .unwrap()["archiveId"]
        .as_str()
        .unwrap();
    rgw.ok(
        &third,
        &[
            "backup",
            "restore",
            "--remote",
            "rgw",
            "--id",
            third_id,
            "--bmc",
            &target.base_url(),
            "--ca-cert",
            s(target.ca_cert_path()),
            "--bmc-password-file",
            s(&pw),
            "--yes",
        ],
    );
    assert_eq!(target.restored(), vec![bytes(30_002, 42)]);
    let log = std::fs::read_to_string(third.home.join("audit.log")).unwrap();
    assert!(
        log.contains("backup.fetch") && log.contains("backup.restore"),
        "{log}"
    );
}

/// `backup pull --push-to` killed with SIGKILL at several moments of a fleet run: every
/// object in the bucket is whole (its stored SHA-256 is that of the home's archive of the
/// same id, which exists: an archive is pushed only after its local commit), and the
/// archives in the home are whole (they verify). A push interrupted by the kill leaves no
/// object at all.
#[test]
fn a_fleet_pull_with_push_to_killed_midway_leaves_only_whole_objects() {
    use std::os::unix::fs::PermissionsExt;
    use vault::bmc::SimConfig;
    use vault::bmc::simulator::SimFleet;
    let Some(rgw) = Rgw::start() else { return };
    let url = "s3://vault-pushkill/ilo";
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    rgw.add(&v, "rgw", url, &["--create-bucket"]);
    let pw = v.path("bmc.pw");
    std::fs::write(&pw, "simulator-password").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let n = 40;
    let fleet = SimFleet::start(
        (0..n)
            .map(|i| SimConfig {
                user: "Administrator".into(),
                password: "simulator-password".into(),
                serial: format!("CZKILL{i:04}"),
                backup_bytes: bytes(20_000 + i, 60 + i as u64),
                latency: std::time::Duration::from_millis(20),
                ..SimConfig::default()
            })
            .collect(),
    )
    .unwrap();
    let inv = v.path("fleet.toml");
    let mut toml = Vec::new();
    fleet.write_inventory(&mut toml).unwrap();
    std::fs::write(&inv, toml).unwrap();
    let direct = rgw.direct(url);
    let (mut midway, mut before) = (0, 0);
    for (round, delay_ms) in [300u64, 600, 900, 1500].into_iter().enumerate() {
        let args = [
            "backup",
            "pull",
            "--inventory",
            s(&inv),
            "--bmc-password-file",
            s(&pw),
            "--parallel",
            "8",
            "--push-to",
            "rgw",
        ];
        let still_running = rgw.killed_after(&v, &args, delay_ms);
        let objects = direct.client().list("ilo/").unwrap();
        let local: Vec<String> = std::fs::read_dir(v.home.join("archives"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".vault").map(str::to_string)
            })
            .filter(|id| id.parse::<uuid::Uuid>().is_ok())
            .collect();
        eprintln!(
            "round {round}: killed after {delay_ms} ms (running: {still_running}), {} objects, {} archives",
            objects.len(),
            local.len()
        );
        // Killed while this run was pushing: it had pushed some, and was not done.
        if still_running && objects.len() > before {
            midway += 1;
        }
        before = objects.len();
        for o in &objects {
            let id = o
                .key
                .strip_prefix("ilo/")
                .and_then(|k| k.strip_suffix(".vault"))
                .unwrap_or_else(|| panic!("unexpected object {}", o.key));
            let archive = v.home.join(format!("archives/{id}.vault"));
            assert!(
                archive.exists(),
                "round {round}: object {id} has no archive"
            );
            let (_, sha) = vault::remote::sha256_file(&archive).unwrap();
            let head = direct.client().head(&o.key).unwrap().unwrap();
            assert_eq!(head.sha256.as_deref(), Some(sha.as_str()), "round {round}");
            assert_eq!(head.size, o.size);
        }
        for id in &local {
            v.ok(&["backup", "verify", "--id", id]);
        }
    }
    assert!(
        midway > 0,
        "no kill landed while archives were being pushed; the test proved nothing"
    );
}

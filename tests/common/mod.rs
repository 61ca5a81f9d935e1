//! Helpers for tests that run the real `vault` binary against temporary homes.
#![allow(dead_code)]

pub mod softhsm;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_vault");
pub const PASSWORD: &str = "correct horse battery staple";
/// The cheapest KDF cost the vault accepts (OWASP floor), to keep tests fast.
pub const FAST_KDF: [&str; 6] = [
    "--kdf-memory",
    "19",
    "--kdf-time",
    "2",
    "--kdf-parallelism",
    "1",
];

/// A temporary vault home plus a scratch directory.
pub struct Vault {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
}

impl Vault {
    pub fn new() -> Vault {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        Vault { dir, home }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--home").arg(&self.home).args(args);
        c.env_remove("VAULT_KEY_PASSWORD").env_remove("VAULT_HOME");
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout parsed as JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vault {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "vault {args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs and expects failure with `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "vault {args:?}: stderr {err}"
        );
        // Notices ("vault: …", e.g. the KDF cost said before a key file is opened) may
        // come first; the error itself is one line, the last.
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines
                .last()
                .is_some_and(|l| l.starts_with("vault: error: "))
                && lines.iter().all(|l| l.starts_with("vault: "))
                && lines
                    .iter()
                    .filter(|l| l.starts_with("vault: error: "))
                    .count()
                    == 1,
            "one clear error line expected, got {err:?}"
        );
        err
    }

    /// Runs with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// A 0600 password file holding `pw`.
    pub fn password_file(&self, pw: &str) -> PathBuf {
        let p = self.dir.path().join(format!("pw-{}", pw.len()));
        std::fs::write(&p, format!("{pw}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    pub fn create_key(&self, extra: &[&str]) -> String {
        let mut args = vec!["keys", "create"];
        args.extend_from_slice(extra);
        self.ok(&args)["id"].as_str().unwrap().to_string()
    }

    /// Everything in the home that describes its state (keys, archives), for
    /// "unchanged" assertions.
    pub fn state(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for name in ["keys.json"] {
            if let Ok(b) = std::fs::read(self.home.join(name)) {
                out.push((name.to_string(), b));
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.home.join("archives")) {
            let mut v: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
            v.sort();
            for p in v {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
        out
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Whether this run is CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test cannot run here (`why`: a missing tool, no root). Under `CI=true` that is a
/// failure (`.ci/install.d/` installs what the suite needs and CI runs as root); on a
/// developer machine it says so on stderr (visible with `--nocapture`) and the caller
/// returns.
pub fn cannot_run(why: &str) {
    assert!(
        !in_ci(),
        "CI=true and this test cannot run: {why} (see .ci/install.d/)"
    );
    eprintln!("SKIPPED (not CI): {why}");
}

/// xorshift64*: seeded, so a campaign can be replayed from its printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A campaign knob: `name` from the environment as a number, else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A campaign's seed: `name` from the environment (to replay one), else the clock.
pub fn campaign_seed(name: &str) -> u64 {
    env_u64(
        name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    )
}

/// Runs the binary on `home` with `args` and, with `delay`, SIGKILLs it after that long
/// unless it finished. Returns whether it was killed and how long it ran.
pub fn run_killed_after(
    home: &Path,
    args: &[&str],
    delay: Option<std::time::Duration>,
) -> (bool, std::time::Duration) {
    let start = std::time::Instant::now();
    let mut child = Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("VAULT_HOME")
        .env_remove("VAULT_KEY_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut killed = false;
    if let Some(d) = delay {
        std::thread::sleep(d);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    child.wait().unwrap();
    (killed, start.elapsed())
}

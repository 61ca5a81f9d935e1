//! SoftHSM2 for the tests that need a PKCS#11 token: installed by
//! `.ci/install.d/30-softhsm.sh`; each `Hsm` keeps its token state in its own temporary
//! directory (`SOFTHSM2_CONF`). Missing under `CI=true` is a failure, not a skip.
use std::path::{Path, PathBuf};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "246813579";

/// A SoftHSM2 configuration with its own token directory.
pub struct Hsm {
    _dir: tempfile::TempDir,
    pub conf: PathBuf,
}

pub fn softhsm() -> Option<Hsm> {
    let present = Path::new(MODULE).exists()
        && std::process::Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok();
    if !present {
        assert!(
            !super::in_ci(),
            "SoftHSM2 ({MODULE}, softhsm2-util) is missing: .ci/install.d/30-softhsm.sh installs it"
        );
        println!("SKIPPED: SoftHSM2 is not installed (apt-get install softhsm2)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        ),
    )
    .unwrap();
    Some(Hsm { _dir: dir, conf })
}

impl Hsm {
    /// Initialises a token (the PIN on softhsm2-util's argv is test setup, not vault).
    pub fn init_token(&self, label: &str) {
        let out = std::process::Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", "1357924680"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets CKF_USER_PIN_LOCKED in a SoftHSM2 token's flags (attribute 0x8000534b of
    /// token.object: u64 type, u64 kind = 2, u64 value), as a token does after too many
    /// wrong PINs; SoftHSM2 itself never locks.
    pub fn lock_user_pin(&self) {
        let tokens = self.conf.parent().unwrap().join("tokens");
        for d in std::fs::read_dir(tokens).unwrap() {
            let p = d.unwrap().path().join("token.object");
            let mut b = std::fs::read(&p).unwrap();
            let pat = [0, 0, 0, 0, 0x80, 0, 0x53, 0x4b, 0, 0, 0, 0, 0, 0, 0, 2];
            let i = b
                .windows(pat.len())
                .position(|w| w == pat)
                .expect("token flags attribute")
                + pat.len();
            let mut flags = u64::from_be_bytes(b[i..i + 8].try_into().unwrap());
            flags |= 0x0004_0000; // CKF_USER_PIN_LOCKED
            b[i..i + 8].copy_from_slice(&flags.to_be_bytes());
            std::fs::write(&p, b).unwrap();
        }
    }
}

//! Issue 15: the root key under a passphrase or a PKCS#11 token (SoftHSM2), keys tied to
//! the token, root rotation and mode changes, and the distinct token errors.
//!
//! SoftHSM2 is installed by `.ci/install.d/30-softhsm.sh`; its token state lives in a
//! temporary directory named by `SOFTHSM2_CONF`. Without it these tests fail under
//! `CI=true` and print SKIPPED otherwise.
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::softhsm::{Hsm, MODULE, PIN, softhsm};
use common::{Vault, s};
use serde_json::Value;

const ROOT_PW: &str = "root passphrase for tests";

fn run(v: &Vault, hsm: &Hsm, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = v.cmd(args);
    c.env("SOFTHSM2_CONF", &hsm.conf)
        .env_remove("VAULT_ROOT_PASSWORD")
        .env_remove("VAULT_PKCS11_PIN");
    for (k, val) in env {
        c.env(k, val);
    }
    c.output().unwrap()
}

fn ok(v: &Vault, hsm: &Hsm, env: &[(&str, &str)], args: &[&str]) -> Value {
    let out = run(v, hsm, env, args);
    assert!(
        out.status.success(),
        "vault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fails(v: &Vault, hsm: &Hsm, env: &[(&str, &str)], args: &[&str], code: i32) -> String {
    let out = run(v, hsm, env, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "vault {args:?}: {err}");
    assert!(err.starts_with("vault: error: "), "{err}");
    err
}

fn secret_file(v: &Vault, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = v.path(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = ["root.key", "keys.json"]
        .iter()
        .filter_map(|n| std::fs::read(dir.join(n)).ok().map(|b| (n.to_string(), b)))
        .collect();
    v.sort();
    v
}

fn init_pkcs11(v: &Vault, hsm: &Hsm, label: &str) -> PathBuf {
    let pin = secret_file(v, "pin", PIN);
    let r = ok(
        v,
        hsm,
        &[],
        &[
            "home",
            "init",
            "--protect",
            "pkcs11",
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            label,
            "--pkcs11-pin-file",
            s(&pin),
        ],
    );
    assert_eq!(r["protection"]["mode"], "pkcs11");
    assert_eq!(r["protection"]["dependsOn"], format!("pkcs11:{label}"));
    pin
}

fn seal(v: &Vault, hsm: &Hsm, env: &[(&str, &str)], key: &str, data: &[u8]) -> String {
    let input = v.path(&format!("in-{key}"));
    std::fs::write(&input, data).unwrap();
    ok(
        v,
        hsm,
        env,
        &["backup", "create", "--file", s(&input), "--key", key],
    )["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn extract(v: &Vault, hsm: &Hsm, env: &[(&str, &str)], id: &str) -> Vec<u8> {
    let out = v.path(&format!("out-{id}"));
    let _ = std::fs::remove_file(&out);
    ok(
        v,
        hsm,
        env,
        &["backup", "extract", "--id", id, "--out", s(&out)],
    );
    std::fs::read(out).unwrap()
}

#[test]
fn pkcs11_home_tied_key_rotation_mode_changes_and_a_copy_without_the_token() {
    let Some(hsm) = softhsm() else { return };
    hsm.init_token("vault-ci");
    let v = Vault::new();
    init_pkcs11(&v, &hsm, "vault-ci");
    // No PIN anywhere but the configured file; the root key file holds no key.
    let root = std::fs::read(v.home.join("root.key")).unwrap();
    assert!(root.starts_with(b"VAULTRKW"));

    let plain = v.create_key_env(&hsm);
    let tied = ok(&v, &hsm, &[], &["keys", "create", "--tied-to-hsm"]);
    assert_eq!(tied["tiedToHSM"], true);
    let tied = tied["id"].as_str().unwrap().to_string();
    let err = fails(
        &v,
        &hsm,
        &[],
        &["keys", "create", "--tied-to-hsm", "--scope", "domain"],
        7,
    );
    assert!(err.contains("only system keys"), "{err}");
    let list = ok(&v, &hsm, &[], &["keys", "list"]);
    let deps: Vec<(String, String)> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_string(),
                k["dependsOn"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(deps.contains(&(plain.clone(), "pkcs11:vault-ci".into())));
    assert!(deps.contains(&(tied.clone(), "hsm:vault-ci".into())));

    let a = seal(&v, &hsm, &[], &plain, b"plain archive");
    let b = seal(&v, &hsm, &[], &tied, b"tied archive");
    for id in [&a, &b] {
        ok(&v, &hsm, &[], &["backup", "verify", "--id", id]);
    }
    assert_eq!(extract(&v, &hsm, &[], &b), b"tied archive");
    // Which archives depend on what: list, get and the keyless inspect.
    let listed = ok(&v, &hsm, &[], &["backup", "list"]);
    for r in listed["resources"].as_array().unwrap() {
        let tied = r["id"] == b.as_str();
        assert_eq!(r["tiedToHSM"], tied, "{r}");
        let dep = if tied {
            "hsm:vault-ci"
        } else {
            "pkcs11:vault-ci"
        };
        assert_eq!(r["dependsOn"], dep, "{r}");
    }
    assert_eq!(
        ok(&v, &hsm, &[], &["backup", "get", "--id", &b])["tiedToHSM"],
        true
    );
    let path = v.home.join("archives").join(format!("{b}.vault"));
    let insp = ok(&v, &hsm, &[], &["inspect", "--file", s(&path)]);
    assert_eq!(insp["isHSMBacked"], true, "{insp}");
    let path = v.home.join("archives").join(format!("{a}.vault"));
    assert_eq!(
        ok(&v, &hsm, &[], &["inspect", "--file", s(&path)])["isHSMBacked"],
        false
    );

    // A tied key never leaves the token.
    let pw = v.password_file(common::PASSWORD);
    let err = fails(
        &v,
        &hsm,
        &[],
        &[
            "keys",
            "download",
            "--id",
            &tied,
            "--file",
            s(&v.path("tied.key")),
            "--password-file",
            s(&pw),
        ],
        7,
    );
    assert!(err.contains("cannot be exported"), "{err}");
    assert!(!v.path("tied.key").exists());

    // Rotate the root: a new id, everything still opens, the tied key unchanged.
    let before = ok(&v, &hsm, &[], &["home", "show"])["protection"]["rootId"].clone();
    let r = ok(&v, &hsm, &[], &["home", "rotate-root"]);
    assert_eq!(r["rewrappedKeys"], 1);
    assert_eq!(r["tiedKeys"], 1);
    assert_ne!(r["current"]["rootId"], before);
    assert_eq!(extract(&v, &hsm, &[], &a), b"plain archive");
    assert_eq!(extract(&v, &hsm, &[], &b), b"tied archive");

    // A copy of the home where the token is not: nothing opens, and the error names it.
    let elsewhere = softhsm().unwrap();
    let copy = Vault::new();
    copy_dir(&v.home, &copy.home);
    let pin2 = secret_file(&copy, "pin", PIN);
    for args in [
        vec!["keys", "list"],
        vec!["backup", "verify", "--id", &a],
        vec!["backup", "verify", "--id", &b],
    ] {
        let err = fails(&copy, &elsewhere, &[("VAULT_PKCS11_PIN", PIN)], &args, 3);
        assert!(
            err.contains("no PKCS#11 token labelled \"vault-ci\""),
            "{err}"
        );
    }
    drop(pin2);

    // Mode changes: tied keys keep the root in the token.
    let rpw = secret_file(&v, "rootpw", ROOT_PW);
    let state = files_of(&v.home);
    let err = fails(
        &v,
        &hsm,
        &[],
        &[
            "home",
            "protect",
            "--protect",
            "passphrase",
            "--new-password-file",
            s(&rpw),
            "--kdf-memory",
            "19",
            "--kdf-time",
            "2",
            "--kdf-parallelism",
            "1",
        ],
        7,
    );
    assert!(err.contains("tied to the HSM"), "{err}");
    assert_eq!(
        files_of(&v.home),
        state,
        "a refused mode change changed nothing"
    );
    ok(&v, &hsm, &[], &["keys", "delete", "--id", &tied, "--force"]);
    let r = ok(
        &v,
        &hsm,
        &[],
        &[
            "home",
            "protect",
            "--protect",
            "passphrase",
            "--new-password-file",
            s(&rpw),
            "--kdf-memory",
            "19",
            "--kdf-time",
            "2",
            "--kdf-parallelism",
            "1",
        ],
    );
    assert_eq!(r["current"]["mode"], "passphrase");
    let with_pw = [("VAULT_ROOT_PASSWORD", ROOT_PW)];
    let err = fails(&v, &hsm, &[], &["backup", "verify", "--id", &a], 2);
    assert!(err.contains("passphrase"), "{err}");
    let err = fails(
        &v,
        &hsm,
        &[("VAULT_ROOT_PASSWORD", "not the passphrase")],
        &["backup", "verify", "--id", &a],
        4,
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(extract(&v, &hsm, &with_pw, &a), b"plain archive");
    ok(
        &v,
        &hsm,
        &[],
        &[
            "--root-password-file",
            s(&rpw),
            "backup",
            "verify",
            "--id",
            &a,
        ],
    );
    ok(&v, &hsm, &with_pw, &["home", "rotate-root"]);
    let r = ok(
        &v,
        &hsm,
        &with_pw,
        &["home", "protect", "--protect", "file"],
    );
    assert_eq!(r["current"]["mode"], "file");
    assert_eq!(extract(&v, &hsm, &[], &a), b"plain archive");
    // And back into the token.
    let pin = v.path("pin");
    let r = ok(
        &v,
        &hsm,
        &[],
        &[
            "home",
            "protect",
            "--protect",
            "pkcs11",
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            "vault-ci",
            "--pkcs11-pin-file",
            s(&pin),
        ],
    );
    assert_eq!(r["current"]["dependsOn"], "pkcs11:vault-ci");
    assert_eq!(extract(&v, &hsm, &[], &a), b"plain archive");
}

#[test]
fn wrong_pin_missing_module_missing_token_and_locked_token_are_distinct() {
    let Some(hsm) = softhsm() else { return };
    hsm.init_token("vault-err");
    let v = Vault::new();
    let pin = init_pkcs11(&v, &hsm, "vault-err");
    let key = v.create_key_env(&hsm);
    let id = seal(&v, &hsm, &[], &key, b"x");
    let state = files_of(&v.home);

    std::fs::write(&pin, "111111\n").unwrap();
    let err = fails(&v, &hsm, &[], &["backup", "verify", "--id", &id], 4);
    assert!(
        err.contains("wrong PIN for PKCS#11 token \"vault-err\""),
        "{err}"
    );
    let err = fails(&v, &hsm, &[], &["home", "rotate-root"], 4);
    assert!(err.contains("wrong PIN"), "{err}");
    assert_eq!(files_of(&v.home), state);
    std::fs::write(&pin, format!("{PIN}\n")).unwrap();

    // The module and token named in the home's root key file.
    let root = std::fs::read_to_string(v.home.join("root.key")).unwrap();
    for (from, to, code, says) in [
        (
            MODULE,
            "/usr/lib/softhsm/libnot-there.so",
            3,
            "cannot load the PKCS#11 module /usr/lib/softhsm/libnot-there.so",
        ),
        (
            "\"vault-err\"",
            "\"vault-gone\"",
            3,
            "no PKCS#11 token labelled \"vault-gone\"",
        ),
    ] {
        std::fs::write(v.home.join("root.key"), root.replace(from, to)).unwrap();
        let err = fails(&v, &hsm, &[], &["backup", "verify", "--id", &id], code);
        assert!(err.contains(says), "{err}");
        let err = fails(&v, &hsm, &[], &["home", "rotate-root"], code);
        assert!(err.contains(says), "{err}");
    }
    std::fs::write(v.home.join("root.key"), &root).unwrap();
    assert_eq!(files_of(&v.home), state, "no failure changed anything");
    ok(&v, &hsm, &[], &["backup", "verify", "--id", &id]);

    hsm.lock_user_pin();
    let err = fails(&v, &hsm, &[], &["backup", "verify", "--id", &id], 7);
    assert!(err.contains("is locked"), "{err}");
    assert_eq!(files_of(&v.home), state);

    // `home init` against a module that is not there creates nothing.
    let w = Vault::new();
    let p = secret_file(&w, "pin", PIN);
    let err = fails(
        &w,
        &hsm,
        &[],
        &[
            "home",
            "init",
            "--protect",
            "pkcs11",
            "--pkcs11-module",
            "/nonexistent/libpkcs11.so",
            "--pkcs11-token",
            "vault-err",
            "--pkcs11-pin-file",
            s(&p),
        ],
        3,
    );
    assert!(err.contains("cannot load the PKCS#11 module"), "{err}");
    assert!(!w.home.join("root.key").exists());
}

fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

trait CreateKey {
    fn create_key_env(&self, hsm: &Hsm) -> String;
}

impl CreateKey for Vault {
    fn create_key_env(&self, hsm: &Hsm) -> String {
        ok(self, hsm, &[], &["keys", "create"])["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

//! Issue 17: the BMC defaults of config.toml (`bmc-user`, `ca-cert`, `parallel`,
//! `timeout`, `retries`) and its retention (`keep-*`) act on the commands, with a flag
//! beating the environment beating the file beating the built-in default.
mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Vault, s};
use serde_json::Value;
use vault::bmc::{SimConfig, SimHandle};

const PASSWORD: &str = "config-test-password";

fn write_private(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn setting<'a>(shown: &'a Value, name: &str) -> &'a Value {
    shown["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {shown}"))
}

#[test]
fn bmc_user_and_ca_cert_come_from_flag_env_file_then_default() {
    let sim = SimHandle::start(SimConfig {
        user: "backup".into(),
        password: PASSWORD.into(),
        ..SimConfig::default()
    })
    .unwrap();
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    let pw = v.path("bmc.pw");
    write_private(&pw, PASSWORD);
    let url = sim.base_url();
    let pull = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "backup",
            "pull",
            "--bmc",
            &url,
            "--bmc-password-file",
            s(&pw),
            "--retries",
            "0",
        ];
        args.extend_from_slice(extra);
        let mut c = v.cmd(&args);
        c.env_remove("VAULT_BMC_USER").env_remove("VAULT_CA_CERT");
        for (k, val) in env {
            c.env(k, val);
        }
        c.output().unwrap()
    };
    // Built-in defaults: user Administrator (refused here) and no CA (the simulator's
    // self-signed certificate is refused).
    let out = pull(&[], &[]);
    assert!(!out.status.success());
    // The file gives both.
    let ca = sim.ca_cert_path().to_str().unwrap().to_string();
    write_private(
        &v.home.join("config.toml"),
        &format!("bmc-user = \"backup\"\nca-cert = \"{ca}\"\nparallel = 12\ntimeout = 7\n"),
    );
    let out = pull(&[], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The environment beats the file, the flag beats the environment.
    let out = pull(&[], &[("VAULT_BMC_USER", "intruder")]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pull(&["--bmc-user", "backup"], &[("VAULT_BMC_USER", "intruder")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --insecure is not overridden by the file's CA, and a wrong CA from the env loses
    // to the right one on the command line.
    let out = pull(
        &["--ca-cert", &ca],
        &[("VAULT_CA_CERT", "/nonexistent/ca.pem")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pull(&[], &[("VAULT_CA_CERT", "/nonexistent/ca.pem")]);
    assert!(!out.status.success());

    // config show says where each value came from.
    let shown = v.ok(&["config", "show"]);
    assert_eq!(setting(&shown, "bmc-user")["value"], "backup");
    assert!(
        setting(&shown, "bmc-user")["source"]
            .as_str()
            .unwrap()
            .starts_with("file ")
    );
    assert_eq!(setting(&shown, "parallel")["value"], 12);
    assert_eq!(setting(&shown, "timeout")["value"], 7);
    assert_eq!(setting(&shown, "retries")["value"], 2);
    assert_eq!(setting(&shown, "retries")["source"], "default");
    let out = v
        .cmd(&["config", "show"])
        .env("VAULT_PARALLEL", "64")
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(setting(&shown, "parallel")["value"], 64);
    assert_eq!(setting(&shown, "parallel")["source"], "env VAULT_PARALLEL");
    // An out-of-range environment value is refused, not ignored.
    let out = v
        .cmd(&["backup", "pull", "--bmc", &sim.base_url()])
        .env("VAULT_PARALLEL", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn prune_without_keep_flags_uses_the_retention_of_the_file() {
    let v = Vault::new();
    v.create_key(&["--scope", "system", "--default"]);
    let input = v.path("in");
    for i in 0..4 {
        std::fs::write(&input, format!("backup {i}")).unwrap();
        v.ok(&["backup", "create", "--file", s(&input)]);
    }
    // Without a policy anywhere, prune refuses (it would keep nothing).
    let out = v.run(&["backup", "prune", "--dry-run"]);
    assert!(!out.status.success());
    write_private(&v.home.join("config.toml"), "keep-last = 2\n");
    let plan = v.ok(&["backup", "prune", "--dry-run"]);
    let actions: Vec<&str> = plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "keep").count(), 2);
    // A flag replaces the file's policy entirely.
    let plan = v.ok(&["backup", "prune", "--dry-run", "--keep-last", "3"]);
    assert_eq!(plan["kept"], 3);
}

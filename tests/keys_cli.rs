//! Issue #2: the vault home and backup keys, through the real binary.
mod common;

use common::*;
use serde_json::Value;

#[test]
fn create_list_get_set_default_and_domain_defaults() {
    let v = Vault::new();
    let k1 = v.ok(&["keys", "create", "--description", "first"]);
    assert_eq!(k1["scope"], "system");
    assert_eq!(
        k1["isDefault"], true,
        "first key of a scope becomes its default"
    );
    assert_eq!(k1["state"], "active");
    assert_eq!(k1["version"], "1");
    assert!(k1["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(
        k1.get("domainID").is_none(),
        "system keys carry no domainID"
    );
    let k2 = v.ok(&["keys", "create"]);
    assert_eq!(k2["isDefault"], false);
    let d = v.ok(&["keys", "create", "--scope", "domain"]);
    assert_eq!(d["domainID"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(d["isDefault"], true);
    let d2 = v.ok(&[
        "keys",
        "create",
        "--scope",
        "domain",
        "--domain",
        "dept-a",
        "--default",
    ]);
    assert_eq!(d2["domainID"], "dept-a");

    let list = v.ok(&["keys", "list"]);
    assert_eq!(list["total"], 4);
    assert_eq!(list["skip"], 0);
    assert_eq!(list["resources"].as_array().unwrap().len(), 4);
    let sys = v.ok(&["keys", "list", "--scope", "system"]);
    assert_eq!(sys["total"], 2);
    let dom = v.ok(&["keys", "list", "--scope", "domain", "--domain", "dept-a"]);
    assert_eq!(dom["total"], 1);

    let id2 = k2["id"].as_str().unwrap();
    assert_eq!(v.ok(&["keys", "get", "--id", id2])["id"], id2);
    let sd = v.ok(&["keys", "set-default", "--id", id2]);
    assert_eq!(sd["isDefault"], true);
    let k1_now = v.ok(&["keys", "get", "--id", k1["id"].as_str().unwrap()]);
    assert_eq!(k1_now["isDefault"], false);

    let table = v
        .cmd(&["--output", "table", "keys", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.lines().next().unwrap().contains("ID"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("active")).count(), 4);
}

#[test]
fn rotate_leaves_one_default_per_scope_and_retires_the_old_key() {
    let v = Vault::new();
    let old_sys = v.create_key(&[]);
    let old_dom = v.create_key(&["--scope", "domain", "--domain", "d1"]);
    let other_dom = v.create_key(&["--scope", "domain", "--domain", "d2"]);
    let r = v.ok(&["keys", "rotate"]);
    assert_eq!(r["retiredKeyId"], old_sys.as_str());
    let new_sys = r["newKeyId"].as_str().unwrap().to_string();
    let r2 = v.ok(&["keys", "rotate", "--scope", "domain", "--domain", "d1"]);
    assert_eq!(r2["retiredKeyId"], old_dom.as_str());

    let list = v.ok(&["keys", "list"]);
    let keys = list["resources"].as_array().unwrap();
    assert_eq!(keys.len(), 5);
    for (scope, domain) in [
        ("system", None),
        ("domain", Some("d1")),
        ("domain", Some("d2")),
    ] {
        let defaults: Vec<_> = keys
            .iter()
            .filter(|k| {
                k["scope"] == scope && k["domainID"].as_str() == domain && k["isDefault"] == true
            })
            .collect();
        assert_eq!(defaults.len(), 1, "{scope} {domain:?}: {defaults:?}");
        assert_eq!(defaults[0]["state"], "active");
    }
    let get = |id: &str| v.ok(&["keys", "get", "--id", id]);
    assert_eq!(get(&old_sys)["state"], "retired");
    assert_eq!(get(&old_dom)["state"], "retired");
    assert_eq!(get(&other_dom)["state"], "active");
    assert_eq!(get(&new_sys)["isDefault"], true);
    // A retired key cannot become the default again.
    let err = v.fails(&["keys", "set-default", "--id", &old_sys], 7);
    assert!(err.contains("retired"), "{err}");
    // Rotating a scope with no key says what to do.
    let err = v.fails(
        &["keys", "rotate", "--scope", "domain", "--domain", "nokeys"],
        3,
    );
    assert!(err.contains("vault keys create"), "{err}");
}

#[test]
fn delete_key_refuses_default_and_referenced_keys_without_force() {
    let v = Vault::new();
    let a = v.create_key(&[]);
    let b = v.create_key(&[]);
    let input = v.path("in.bin");
    std::fs::write(&input, b"data").unwrap();
    let arch = v.ok(&["backup", "create", "--file", s(&input), "--key", &b]);
    let err = v.fails(&["keys", "delete", "--id", &b], 7);
    assert!(
        err.contains(arch["id"].as_str().unwrap()),
        "names the archive: {err}"
    );
    let err = v.fails(&["keys", "delete", "--id", &a], 7);
    assert!(err.contains("default"), "{err}");
    v.ok(&["backup", "delete", "--id", arch["id"].as_str().unwrap()]);
    let d = v.ok(&["keys", "delete", "--id", &b]);
    assert_eq!(d["deleted"], true);
    v.fails(&["keys", "get", "--id", &b], 3);
    v.ok(&["keys", "delete", "--id", &a, "--force"]);
    assert_eq!(v.ok(&["keys", "list"])["total"], 0);
}

#[test]
fn download_inspect_upload_reproduces_the_key_in_an_empty_home() {
    let a = Vault::new();
    let b = Vault::new();
    let id = a.create_key(&[
        "--scope",
        "domain",
        "--domain",
        "ops",
        "--description",
        "escrow",
    ]);
    let pw = a.password_file(PASSWORD);
    let file = a.path("ops.key");
    let mut args = vec![
        "keys",
        "download",
        "--id",
        &id,
        "--file",
        s(&file),
        "--password-file",
        s(&pw),
    ];
    args.extend_from_slice(&FAST_KDF);
    a.ok(&args);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let meta = b.ok(&["keys", "inspect", "--file", s(&file)]);
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["keyid"], id.as_str());
    assert_eq!(meta["scope"], "domain");
    assert_eq!(meta["domainID"], "ops");
    assert_eq!(meta["kdf"]["algorithm"], "argon2id");
    assert_eq!(meta["kdf"]["memoryKiB"], 19 * 1024);
    assert!(meta["createdAt"].is_string());

    // Password from the environment this time.
    let up = b
        .cmd(&["keys", "upload", "--file", s(&file), "--scope", "domain"])
        .env("VAULT_KEY_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["domainID"], "ops");
    assert_eq!(got["description"], "escrow");
    assert_eq!(b.ok(&["keys", "list"])["total"], 1);

    // The same key again: a no-op with a notice.
    let before = b.state();
    let again = b
        .cmd(&[
            "keys",
            "upload",
            "--file",
            s(&file),
            "--scope",
            "domain",
            "--password-file",
            s(&pw),
        ])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "notice expected"
    );
    assert_eq!(before, b.state());
}

#[test]
fn default_kdf_cost_is_rfc9106_second_recommendation() {
    let v = Vault::new();
    let id = v.create_key(&[]);
    let pw = v.password_file(PASSWORD);
    let file = v.path("k.key");
    v.ok(&[
        "keys",
        "download",
        "--id",
        &id,
        "--file",
        s(&file),
        "--password-file",
        s(&pw),
    ]);
    let meta = v.ok(&["keys", "inspect", "--file", s(&file)]);
    assert_eq!(meta["kdf"]["memoryKiB"], 64 * 1024);
    assert_eq!(meta["kdf"]["iterations"], 3);
    assert_eq!(meta["kdf"]["parallelism"], 4);
    // Below the OWASP floor is refused and writes nothing.
    let file2 = v.path("weak.key");
    let err = v.fails(
        &[
            "keys",
            "download",
            "--id",
            &id,
            "--file",
            s(&file2),
            "--password-file",
            s(&pw),
            "--kdf-memory",
            "8",
        ],
        2,
    );
    assert!(err.contains("below the minimum"), "{err}");
    assert!(!file2.exists());
}

/// Builds a key file in `src`'s home for upload tests.
fn exported(src: &Vault, scope: &[&str]) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let id = src.create_key(scope);
    let pw = src.password_file(PASSWORD);
    let file = src.path(&format!("{id}.key"));
    let mut args = vec![
        "keys",
        "download",
        "--id",
        &id,
        "--file",
        s(&file),
        "--password-file",
        s(&pw),
    ];
    args.extend_from_slice(&FAST_KDF);
    src.ok(&args);
    (id, file, pw)
}

#[test]
fn bad_uploads_fail_clearly_and_leave_the_home_unchanged() {
    let src = Vault::new();
    let (_, file, pw) = exported(&src, &[]);
    let (_, dom_file, _) = exported(&src, &["--scope", "domain"]);
    let dst = Vault::new();
    dst.create_key(&[]);
    let before = dst.state();
    let bytes = std::fs::read(&file).unwrap();

    // Wrong password.
    let wrong = dst.password_file("not the password");
    let err = dst.fails(
        &[
            "keys",
            "upload",
            "--file",
            s(&file),
            "--password-file",
            s(&wrong),
        ],
        4,
    );
    assert!(err.contains("wrong password"), "{err}");
    assert_eq!(before, dst.state());

    // Any single flipped byte (outer checksum left as it was): corrupted or tampered,
    // never "wrong password". This is the unkeyed SHA-256 at work; forgeries that
    // recompute it are `forged_key_files_with_a_recomputed_checksum_are_refused`.
    let t = dst.path("tampered.key");
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        std::fs::write(&t, &b).unwrap();
        let out = dst.run(&["keys", "upload", "--file", s(&t), "--password-file", s(&pw)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "byte {i} flipped was accepted");
        assert!(
            err.contains("corrupted") || err.contains("not a vault key file"),
            "byte {i}: {err}"
        );
        assert!(!err.contains("wrong password"), "byte {i}: {err}");
    }
    assert_eq!(before, dst.state());

    // Truncated.
    for len in [0, 5, 13, 40, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&t, &bytes[..len]).unwrap();
        let out = dst.run(&["keys", "upload", "--file", s(&t), "--password-file", s(&pw)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "len {len} accepted");
        assert!(
            err.contains("truncated") || err.contains("not a vault key file"),
            "len {len}: {err}"
        );
    }
    assert_eq!(before, dst.state());

    // Wrong --scope (domain key file without --scope domain, and the reverse).
    let err = dst.fails(
        &[
            "keys",
            "upload",
            "--file",
            s(&dom_file),
            "--password-file",
            s(&pw),
        ],
        7,
    );
    assert!(err.contains("--scope domain"), "{err}");
    let err = dst.fails(
        &[
            "keys",
            "upload",
            "--file",
            s(&file),
            "--scope",
            "domain",
            "--password-file",
            s(&pw),
        ],
        7,
    );
    assert!(err.contains("--scope system"), "{err}");

    // Missing file.
    let err = dst.fails(
        &[
            "keys",
            "upload",
            "--file",
            s(&dst.path("nope.key")),
            "--password-file",
            s(&pw),
        ],
        3,
    );
    assert!(err.contains("nope.key"), "{err}");
    // Not a key file at all.
    std::fs::write(&t, b"hello, world: definitely not a key").unwrap();
    let err = dst.fails(
        &["keys", "upload", "--file", s(&t), "--password-file", s(&pw)],
        2,
    );
    assert!(err.contains("not a vault key file"), "{err}");
    assert_eq!(before, dst.state());
}

#[test]
fn absurd_kdf_parameters_are_refused_before_any_allocation() {
    let src = Vault::new();
    let (_, file, pw) = exported(&src, &[]);
    let bytes = std::fs::read(&file).unwrap();
    let dst = Vault::new();
    let before = dst.state();
    for (field, value) in [
        ("memoryKib", u32::MAX as u64),
        ("iterations", 1000),
        ("parallelism", 255),
        ("memoryKib", 1024),
    ] {
        let forged = forge_kdf(&bytes, field, value);
        let t = dst.path("forged.key");
        std::fs::write(&t, &forged).unwrap();
        // m = 4 TiB would abort on allocation; a clean refusal proves the check came first.
        let out = dst.run(&["keys", "upload", "--file", s(&t), "--password-file", s(&pw)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{field}={value} accepted");
        assert!(
            err.contains("Argon2id parameters"),
            "{field}={value}: {err}"
        );
        let meta = dst.run(&["keys", "inspect", "--file", s(&t)]);
        assert!(!meta.status.success(), "inspect must refuse too");
    }
    assert_eq!(before, dst.state());
}

/// Rewrites a KDF field and recomputes the outer checksum, as a deliberate forger would.
fn forge_kdf(bytes: &[u8], field: &str, value: u64) -> Vec<u8> {
    use sha2::Digest;
    let ml = u32::from_be_bytes(bytes[10..14].try_into().unwrap()) as usize;
    let mut meta: serde_json::Value = serde_json::from_slice(&bytes[14..14 + ml]).unwrap();
    meta["kdf"][field] = serde_json::json!(value);
    let meta = serde_json::to_vec(&meta).unwrap();
    let mut out = bytes[..10].to_vec();
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&bytes[14 + ml..bytes.len() - 32]);
    let sum = sha2::Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

#[test]
fn same_id_with_different_material_is_refused() {
    let a = Vault::new();
    let (id, file, pw) = exported(&a, &[]);
    // Home B holds a key of the same id but other material (simulated by importing into
    // B, then swapping B's wrapped blob for one of another key of B with the same AAD is
    // impossible by design; instead build a second key file with that id via the library).
    let b = Vault::new();
    let home = vault::keystore::Home::open(&b.home).unwrap();
    let ks = vault::keystore::KeyStore::new(&home);
    let other = vault::keystore::keyfile::export(
        &vault::secret::Key32::random(),
        &vault::keystore::keyfile::ExportMeta {
            id: id.parse().unwrap(),
            scope: vault::keystore::Scope::System,
            domain_id: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            state: vault::keystore::KeyState::Active,
            description: String::new(),
        },
        &vault::secret::Password::new(PASSWORD.into()),
        vault::keystore::kdf::KdfParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        },
    )
    .unwrap();
    let lock = home.lock().unwrap();
    ks.import(
        &lock,
        &other,
        vault::keystore::Scope::System,
        &vault::secret::Password::new(PASSWORD.into()),
        "t",
    )
    .unwrap();
    drop(lock);
    let before = b.state();
    let err = b.fails(
        &[
            "keys",
            "upload",
            "--file",
            s(&file),
            "--password-file",
            s(&pw),
        ],
        7,
    );
    assert!(err.contains("different key"), "{err}");
    assert_eq!(before, b.state());
}

#[test]
fn password_files_readable_by_others_are_refused() {
    let v = Vault::new();
    let id = v.create_key(&[]);
    let pw = v.password_file(PASSWORD);
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let file = v.path("k.key");
    let mut args = vec![
        "keys",
        "download",
        "--id",
        &id,
        "--file",
        s(&file),
        "--password-file",
        s(&pw),
    ];
    args.extend_from_slice(&FAST_KDF);
    let err = v.fails(&args, 9);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!file.exists());
    // No password source and no terminal: a clear instruction.
    let mut args = vec!["keys", "download", "--id", &id, "--file", s(&file)];
    args.extend_from_slice(&FAST_KDF);
    let err = v.fails(&args, 2);
    assert!(
        err.contains("--password-file") && err.contains("VAULT_KEY_PASSWORD"),
        "{err}"
    );
}

#[test]
fn home_is_private_and_keys_are_not_stored_in_plaintext() {
    let v = Vault::new();
    let id = v.create_key(&[]);
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&v.home), 0o700);
    assert_eq!(mode(&v.home.join("root.key")), 0o600);
    assert_eq!(mode(&v.home.join("keys.json")), 0o600);
    // Export the key and compare its material with what rests in keys.json.
    let home = vault::keystore::Home::open(&v.home).unwrap();
    let (_, key) = vault::keystore::KeyStore::new(&home)
        .material(&id.parse().unwrap(), false)
        .unwrap();
    let stored = std::fs::read(v.home.join("keys.json")).unwrap();
    let hexkey = hex::encode(key.expose());
    assert!(!String::from_utf8_lossy(&stored).contains(&hexkey));
    assert!(!stored.windows(32).any(|w| w == key.expose()));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.expose());
    assert!(!String::from_utf8_lossy(&stored).contains(&b64));
}

#[test]
fn twenty_concurrent_creates_leave_twenty_valid_keys() {
    let v = Vault::new();
    v.ok(&["keys", "list"]); // create the home first
    let children: Vec<_> = (0..20)
        .map(|_| {
            v.cmd(&["keys", "create"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let k: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.insert(k["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 20);
    let list = v.ok(&["keys", "list"]);
    assert_eq!(list["total"], 20);
    let listed: std::collections::HashSet<String> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids);
    assert_eq!(
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["isDefault"] == true)
            .count(),
        1
    );
    // Every key is usable: its material unwraps under the root key.
    let home = vault::keystore::Home::open(&v.home).unwrap();
    let ks = vault::keystore::KeyStore::new(&home);
    for id in &ids {
        ks.material(&id.parse().unwrap(), false).unwrap();
    }
}

#[test]
fn usage_errors_say_what_to_do() {
    let v = Vault::new();
    let err = v.fails(&["keys", "create", "--scope", "system", "--domain", "x"], 2);
    assert!(err.contains("--scope domain"), "{err}");
    let err = v.fails(
        &[
            "keys",
            "create",
            "--scope",
            "domain",
            "--domain",
            "../../etc",
        ],
        2,
    );
    assert!(err.contains("invalid domain id"), "{err}");
    let err = v.fails(&["keys", "get", "--id", "0000"], 3);
    assert!(err.contains("vault keys list"), "{err}");
}

/// Rebuilds a key file with `edit` applied to its metadata JSON and/or the binary part
/// after it (check value, nonce, wrapped key), and the outer SHA-256 recomputed: what a
/// forger who knows the format produces.
fn forge(bytes: &[u8], edit_meta: impl Fn(&mut Value), tail_flip: Option<usize>) -> Vec<u8> {
    use sha2::Digest;
    let m = u32::from_be_bytes(bytes[10..14].try_into().unwrap()) as usize;
    let mut meta: Value = serde_json::from_slice(&bytes[14..14 + m]).unwrap();
    edit_meta(&mut meta);
    let meta = serde_json::to_vec(&meta).unwrap();
    let mut b = bytes[..10].to_vec();
    b.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    b.extend_from_slice(&meta);
    let mut tail = bytes[14 + m..bytes.len() - 32].to_vec();
    if let Some(i) = tail_flip {
        tail[i] ^= 0x01;
    }
    b.extend_from_slice(&tail);
    let sum = sha2::Sha256::digest(&b);
    b.extend_from_slice(&sum);
    b
}

/// SECURITY.md, key files: no edit is ever accepted, even with the outer checksum
/// recomputed. Edits of what the GCM tag covers (id, scope, dates, state, nonce, wrapped
/// key) are reported as tampering (exit 5); edits of the KDF inputs (salt, cost) or of the
/// check value change what the password derives, so they read as a wrong password (exit
/// 4): a limit SECURITY.md states.
#[test]
fn forged_key_files_with_a_recomputed_checksum_are_refused() {
    let src = Vault::new();
    let (_, file, pw) = exported(&src, &[]);
    let bytes = std::fs::read(&file).unwrap();
    let dst = Vault::new();
    dst.create_key(&[]);
    let before = dst.state();
    let set = |k: &'static str, v: Value| move |m: &mut Value| m[k] = v.clone();
    let kdf = |k: &'static str, v: Value| move |m: &mut Value| m["kdf"][k] = v.clone();
    let salt = |m: &mut Value| {
        let s = m["kdf"]["salt"].as_str().unwrap().to_string();
        let first = if s.starts_with('A') { "B" } else { "A" };
        m["kdf"]["salt"] = Value::from(format!("{first}{}", &s[1..]));
    };
    let none = |_: &mut Value| {};
    type Edit = Box<dyn Fn(&mut Value)>;
    // (what, metadata edit, byte flipped after the metadata, exit, message)
    let cases: Vec<(&str, Edit, Option<usize>, i32, &str)> = vec![
        (
            "key id",
            Box::new(set("keyid", Value::from(uuid::Uuid::new_v4().to_string()))),
            None,
            5,
            "tampered",
        ),
        (
            "createdAt",
            Box::new(set("createdAt", Value::from("2020-01-01T00:00:00Z"))),
            None,
            5,
            "tampered",
        ),
        (
            "state",
            Box::new(set("state", Value::from("retired"))),
            None,
            5,
            "tampered",
        ),
        ("nonce", Box::new(none), Some(16 + 3), 5, "tampered"),
        (
            "wrapped key",
            Box::new(none),
            Some(16 + 12 + 20),
            5,
            "tampered",
        ),
        ("KDF salt", Box::new(salt), None, 4, "wrong password"),
        (
            "KDF iterations",
            Box::new(kdf("iterations", Value::from(3))),
            None,
            4,
            "wrong password",
        ),
        (
            "KDF memory",
            Box::new(kdf("memoryKib", Value::from(19_457))),
            None,
            4,
            "wrong password",
        ),
        (
            "KDF parallelism",
            Box::new(kdf("parallelism", Value::from(2))),
            None,
            4,
            "wrong password",
        ),
        ("check value", Box::new(none), Some(5), 4, "wrong password"),
    ];
    let t = dst.path("forged.key");
    for (what, edit, flip, code, message) in cases {
        let forged = forge(&bytes, edit, flip);
        assert_ne!(forged, bytes, "{what}: nothing was changed");
        std::fs::write(&t, &forged).unwrap();
        // The forgery passes the checksum: inspect (no password) shows it.
        dst.ok(&["keys", "inspect", "--file", s(&t)]);
        let err = dst.fails(
            &["keys", "upload", "--file", s(&t), "--password-file", s(&pw)],
            code,
        );
        assert!(err.contains(message), "{what}: {err}");
        assert_eq!(before, dst.state(), "{what}: the home changed");
    }
    // The untouched file, rebuilt the same way, still imports: the forge is faithful.
    std::fs::write(&t, forge(&bytes, none, None)).unwrap();
    dst.ok(&["keys", "upload", "--file", s(&t), "--password-file", s(&pw)]);
}

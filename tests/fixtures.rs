//! Golden fixtures of released format versions: they must open forever.
mod common;

use common::*;

const V1_PASSWORD: &str = "vault fixture password v1";
const V1_KEY: &str = "46c34b34-6c3b-42eb-8735-6379657e6b6a";
const V1_ARCHIVE: &str = "be670cd8-cbde-468b-82af-bd5d38010da9";

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

#[test]
fn v1_key_file_imports_and_v1_archive_opens() {
    let v = Vault::new();
    let key_file = fixture("v1/system-key.vaultkey");
    let meta = v.ok(&["keys", "inspect", "--file", s(&key_file)]);
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["keyid"], V1_KEY);
    assert_eq!(meta["scope"], "system");

    let archive = fixture("v1/archive.vault");
    let i = v.ok(&["inspect", "--file", s(&archive)]);
    assert_eq!(i["version"], 1);
    assert_eq!(i["id"], V1_ARCHIVE);
    assert_eq!(i["backupKeyId"], V1_KEY);
    assert_eq!(
        i["checksum"],
        "be72ae16d9202946326a211ca5dc19b3e7bac2419b31bdadaf792939ad9ce8e1"
    );

    let pw = v.password_file(V1_PASSWORD);
    let up = v.ok(&[
        "keys",
        "upload",
        "--file",
        s(&key_file),
        "--password-file",
        s(&pw),
    ]);
    assert_eq!(up["id"], V1_KEY);
    v.ok(&["backup", "upload", "--file", s(&archive)]);
    assert_eq!(
        v.ok(&["backup", "verify", "--id", V1_ARCHIVE])["verified"],
        true
    );
    let out = v.path("plain");
    v.ok(&["backup", "extract", "--file", s(&archive), "--out", s(&out)]);
    assert_eq!(
        std::fs::read(out).unwrap(),
        std::fs::read(fixture("v1/plaintext.bin")).unwrap()
    );
}

#[test]
fn v1_key_file_refuses_the_wrong_password() {
    let v = Vault::new();
    let pw = v.password_file("not the fixture password");
    let err = v.fails(
        &[
            "keys",
            "upload",
            "--file",
            s(&fixture("v1/system-key.vaultkey")),
            "--password-file",
            s(&pw),
        ],
        4,
    );
    assert!(err.contains("wrong password"), "{err}");
}

// --- format 2 (fixtures/v2/README: how they were made) ----------------------------------

const V2_PASSWORD: &str = "vault fixture password v2";
const V2_SYSTEM_KEY: &str = "fe0424cf-78ea-4302-9256-db860dddf8c8";
const V2_DOMAIN_KEY: &str = "a74c66e3-7cae-4336-8988-22e5279f79a2";
/// (file, archive id, scope, domain, slot that holds the key, its generation, plaintext)
const V2_ARCHIVES: [(&str, &str, &str, &str, usize, u64, &str); 4] = [
    (
        "v2/system.vault",
        "d3cb9af5-5e10-4e8d-bc84-6b3187703f2a",
        "system",
        "",
        0,
        1,
        "v2/plaintext.bin",
    ),
    (
        "v2/domain.vault",
        "267c0fc3-a7f9-4c5b-af98-48b95377df4c",
        "domain",
        "lab",
        0,
        1,
        "v2/plaintext.bin",
    ),
    (
        "v2/rewrapped.vault",
        "a5d21cd2-4f7e-4995-aba6-af146c3d433a",
        "system",
        "",
        1,
        2,
        "v2/plaintext.bin",
    ),
    (
        "v2/upgraded-v1.vault",
        V1_ARCHIVE,
        "system",
        "",
        0,
        2,
        "v1/plaintext.bin",
    ),
];

fn v2_home() -> Vault {
    let v = Vault::new();
    let pw = v.password_file(V2_PASSWORD);
    for (file, id, scope) in [
        ("v2/system-key.vaultkey", V2_SYSTEM_KEY, &[][..]),
        (
            "v2/domain-key.vaultkey",
            V2_DOMAIN_KEY,
            &["--scope", "domain"][..],
        ),
    ] {
        let f = fixture(file);
        let mut args = vec!["keys", "upload", "--file", s(&f), "--password-file", s(&pw)];
        args.extend_from_slice(scope);
        let up = v.ok(&args);
        assert_eq!(up["id"], id);
    }
    v
}

#[test]
fn v2_key_files_import_and_every_v2_archive_opens_and_proves_its_origin() {
    let v = v2_home();
    let domain = v.ok(&["keys", "get", "--id", V2_DOMAIN_KEY]);
    assert_eq!(
        (&domain["scope"], &domain["domainID"]),
        (&"domain".into(), &"lab".into())
    );
    let trust = fixture("v2/home.pub");
    for (file, id, scope, domain, slot, generation, plain) in V2_ARCHIVES {
        let f = fixture(file);
        let i = v.ok(&["inspect", "--file", s(&f), "--trust", s(&trust)]);
        assert_eq!(i["version"], 2, "{file}");
        assert_eq!(i["id"], id, "{file}");
        assert_eq!(i["scope"], scope, "{file}");
        assert_eq!(i["domainID"], domain, "{file}");
        assert_eq!(i["keySlots"][slot]["state"], "occupied", "{file}");
        assert_eq!(i["keySlots"][slot]["generation"], generation, "{file}");
        assert_eq!(i["keySlots"][1 - slot]["state"], "empty", "{file}");
        assert_eq!(i["signature"], "valid", "{file}");
        let key = if scope == "system" {
            V2_SYSTEM_KEY
        } else {
            V2_DOMAIN_KEY
        };
        assert_eq!(i["keySlots"][slot]["keyId"], key, "{file}");
        let out = v.path("plain.out");
        let e = v.ok(&["backup", "extract", "--file", s(&f), "--out", s(&out)]);
        assert_eq!(e["id"], id, "{file}");
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(fixture(plain)).unwrap(),
            "{file}: plaintext differs"
        );
        std::fs::remove_file(&out).unwrap();
        v.ok(&["backup", "upload", "--file", s(&f)]);
        assert_eq!(
            v.ok(&["backup", "verify", "--id", id])["verified"],
            true,
            "{file}"
        );
    }
}

/// Tampered copies of the v2 fixtures, each edited at an offset SECURITY.md gives: every
/// one fails `verify` with its own error (exit code and message) and is `invalid` to the
/// keyless `--trust` check.
#[test]
fn tampered_v2_fixtures_fail_with_their_specific_error() {
    let v = v2_home();
    let trust = fixture("v2/home.pub");
    let sys = std::fs::read(fixture("v2/system.vault")).unwrap();
    let rew = std::fs::read(fixture("v2/rewrapped.vault")).unwrap();
    let h = u32::from_be_bytes(sys[12..16].try_into().unwrap()) as usize;
    let hr = u32::from_be_bytes(rew[12..16].try_into().unwrap()) as usize;
    let flip = |b: &[u8], at: usize| {
        let mut c = b.to_vec();
        c[at] ^= 0x04;
        c
    };
    let header_edit = {
        let text = String::from_utf8_lossy(&sys[16..16 + h]).to_string();
        let at = 16 + text.find("fixture v2 system archive").unwrap();
        let mut c = sys.clone();
        c[at] = b'F';
        c
    };
    let forged_slot = {
        // Slot 0 copied into the empty slot 1 with generation 2: well-formed, not vouched.
        let mut c = sys.clone();
        let s0 = c[40 + h..296 + h].to_vec();
        c[296 + h..552 + h].copy_from_slice(&s0);
        c[296 + h + 3] = 2;
        c
    };
    let swapped = {
        let mut c = rew.clone();
        let (a, b) = (
            c[40 + hr..296 + hr].to_vec(),
            c[296 + hr..552 + hr].to_vec(),
        );
        c[40 + hr..296 + hr].copy_from_slice(&b);
        c[296 + hr..552 + hr].copy_from_slice(&a);
        c
    };
    let payload = 826 + h;
    let cases: Vec<(&str, Vec<u8>, i32, &str)> = vec![
        ("header byte", header_edit, 5, "does not open with it"),
        ("forged empty slot", forged_slot, 5, "does not vouch for"),
        ("swapped slots", swapped, 5, "does not open with it"),
        (
            "slot MAC",
            flip(&sys, 40 + h + 130),
            5,
            "not authenticated by the data key",
        ),
        (
            "slot signature",
            flip(&sys, 40 + h + 180),
            5,
            "signature of key slot 0",
        ),
        (
            "secret block",
            flip(&sys, 552 + h + 100),
            5,
            "secret block does not authenticate",
        ),
        (
            "commitment",
            flip(&sys, payload + 5),
            5,
            "key commitment mismatch",
        ),
        (
            "chunk 1",
            flip(&sys, payload + 32 + 16_400 + 9),
            5,
            "chunk 1",
        ),
        (
            "trailer digest",
            flip(&sys, sys.len() - 208 + 60),
            5,
            "trailer MAC",
        ),
        (
            "trailer signature",
            flip(&sys, sys.len() - 30),
            5,
            "trailer's signature",
        ),
        (
            "cut at chunk 2",
            sys[..payload + 32 + 2 * 16_400].to_vec(),
            5,
            "truncated",
        ),
    ];
    for (what, bytes, code, message) in cases {
        let f = v.path("t.vault");
        std::fs::write(&f, &bytes).unwrap();
        let err = v.fails(&["backup", "verify", "--file", s(&f)], code);
        assert!(err.contains(message), "{what}: {err}");
        let out = v.run(&["inspect", "--file", s(&f), "--trust", s(&trust)]);
        if out.status.success() {
            let i: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(i["signature"], "invalid", "{what}: {i}");
        } else {
            // Refused outright (truncation): never reported valid.
            assert_eq!(out.status.code(), Some(5), "{what}");
        }
    }
    // A version 3 archive: "upgrade vault", to verify and to inspect alike.
    let mut v3 = sys.clone();
    v3[9] = 3;
    let f = v.path("v3.vault");
    std::fs::write(&f, &v3).unwrap();
    for args in [
        vec!["backup", "verify", "--file", s(&f)],
        vec!["inspect", "--file", s(&f)],
    ] {
        let err = v.fails(&args, 6);
        assert!(err.contains("upgrade vault"), "{err}");
    }
}

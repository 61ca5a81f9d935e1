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

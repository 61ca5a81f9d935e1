//! Archive format 2 through the command line: the home's signing key and `--trust`,
//! store identity (`--id`, upload, clash), and compromised keys (issue 12's findings 3,
//! 6 and the compromise rule, replayed with the binary).
mod common;

use common::*;

fn seal_file(v: &Vault, data: &[u8]) -> (String, std::path::PathBuf) {
    let f = v.path("input.bin");
    std::fs::write(&f, data).unwrap();
    let id = v.ok(&["backup", "create", "--file", s(&f)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = v.home.join("archives").join(format!("{id}.vault"));
    (id, path)
}

#[test]
fn archives_prove_their_origin_to_whoever_trusts_the_home_public_key() {
    let v = Vault::new();
    v.create_key(&[]);
    let (_, path) = seal_file(&v, &bytes(40_000, 1));
    let pk = v.path("home.pub");
    let shown = v.ok(&["home", "public-key", "--file", s(&pk)]);
    let line = std::fs::read_to_string(&pk).unwrap();
    assert!(line.starts_with("vault-home-ed25519 "), "{line}");
    assert_eq!(shown["publicKey"], line.trim_end());
    // Keyless, in another home (no backup key at all): valid with --trust.
    let other = Vault::new();
    let i = other.ok(&["inspect", "--file", s(&path), "--trust", s(&pk)]);
    assert_eq!(i["signature"], "valid", "{i}");
    assert_eq!(i["keySlots"][0]["claimed"], true);
    // A stranger's key: unknown signer. A flipped payload bit: invalid.
    let stranger = Vault::new();
    stranger.create_key(&[]);
    let spk = stranger.path("s.pub");
    stranger.ok(&["home", "public-key", "--file", s(&spk)]);
    let i = other.ok(&["inspect", "--file", s(&path), "--trust", s(&spk)]);
    assert_eq!(i["signature"], "unknown signer");
    let mut b = std::fs::read(&path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    let bad = other.path("bad.vault");
    std::fs::write(&bad, &b).unwrap();
    let i = other.ok(&["inspect", "--file", s(&bad), "--trust", s(&pk)]);
    assert_eq!(i["signature"], "invalid");
    // The sweep says the same per file, without keys.
    let dir = other.path("sweep");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&path, dir.join("good.vault")).unwrap();
    std::fs::copy(&bad, dir.join("bad.vault")).unwrap();
    let out = other.run(&["audit", "archives", s(&dir), "--trust", s(&pk)]);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["summary"]["findings"]["signature-invalid"], 1, "{rep}");
    // A remote sweep reads header and trailer only: --trust there is refused, not ignored.
    let err = other.fails(
        &["audit", "archives", "s3://bucket/prefix", "--trust", s(&pk)],
        2,
    );
    assert!(err.contains("--trust") && err.contains("s3://"), "{err}");
    // The v1 fixture is reported unsigned, not valid.
    let v1 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/archive.vault");
    let i = other.ok(&["inspect", "--file", s(&v1), "--trust", s(&pk)]);
    assert_eq!(i["signature"], "unsigned");
}

#[test]
fn an_id_opens_only_the_archive_whose_header_says_that_id() {
    let v = Vault::new();
    v.create_key(&[]);
    let (old, old_path) = seal_file(&v, b"old configuration");
    let (new, new_path) = seal_file(&v, b"new configuration");
    // Copy the older archive over the newer one's file: a silent rollback before.
    std::fs::copy(&old_path, &new_path).unwrap();
    for cmd in ["verify", "extract"] {
        let out = v.path("out.bin");
        let mut args = vec!["backup", cmd, "--id", new.as_str()];
        if cmd == "extract" {
            args.extend(["--out", s(&out)]);
        }
        let err = v.fails(&args, 5);
        assert!(err.contains(&new) && err.contains(&old), "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn upload_authenticates_when_it_can_and_a_clash_names_both_files() {
    let v = Vault::new();
    v.create_key(&[]);
    let (id, path) = seal_file(&v, &bytes(40_000, 2));
    let genuine = v.path("genuine.vault");
    std::fs::copy(&path, &genuine).unwrap();
    v.ok(&["backup", "delete", "--id", &id]);
    // Junk carrying the genuine id: refused (its key is here), nothing stored.
    let mut junk = std::fs::read(&genuine).unwrap();
    let n = junk.len();
    junk[n / 2] ^= 1;
    let j = v.path("junk.vault");
    std::fs::write(&j, &junk).unwrap();
    v.fails(&["backup", "upload", "--file", s(&j)], 5);
    assert!(!path.exists());
    let up = v.ok(&["backup", "upload", "--file", s(&genuine)]);
    assert_eq!(up["verified"], true);
    // A different file with the same id (here: the junk, in a home without the key).
    let keyless = Vault::new();
    keyless.ok(&["keys", "list"]);
    let up = keyless.ok(&["backup", "upload", "--file", s(&genuine)]);
    assert_eq!(up["verified"], false, "stored, and said to be unverified");
    let err = keyless.fails(&["backup", "upload", "--file", s(&j)], 7);
    assert!(
        err.contains("junk.vault") && err.contains(&format!("{id}.vault")),
        "{err}"
    );
}

#[test]
fn a_compromised_key_needs_re_encryption_and_the_sweep_says_so() {
    let v = Vault::new();
    let k1 = v.create_key(&[]);
    let (id, path) = seal_file(&v, &bytes(20_000, 3));
    v.ok(&["keys", "rotate"]);
    v.ok(&["keys", "compromise", "--id", &k1]);
    let before = std::fs::read(&path).unwrap();
    let err = v.fails(&["backup", "rewrap", "--from", &k1, "--all"], 7);
    assert!(
        err.contains("compromised") && err.contains("--reencrypt"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing changed");
    let rep = v.run(&["audit", "archives", s(&v.home.join("archives"))]);
    let rep: serde_json::Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(rep["summary"]["findings"]["key-compromised"], 1, "{rep}");
    let r = v.ok(&["backup", "rewrap", "--from", &k1, "--all", "--reencrypt"]);
    assert_eq!(r["total"], 1, "{r}");
    v.ok(&["backup", "verify", "--id", &id]);
}

/// Moves `id`'s key from `from` into `to` through a key file.
fn move_key(from: &Vault, to: &Vault, id: &str) {
    let pw = from.password_file("a fixture password");
    let kf = from.path("k.vaultkey");
    let mut args = vec!["keys", "download", "--id", id, "--file", s(&kf)];
    args.extend(["--password-file", s(&pw)]);
    args.extend_from_slice(&FAST_KDF);
    from.ok(&args);
    to.ok(&[
        "keys",
        "upload",
        "--file",
        s(&kf),
        "--password-file",
        s(&pw),
    ]);
}

#[test]
fn an_archive_uploaded_without_its_key_stays_unverified_until_a_verify() {
    let v = Vault::new();
    let key = v.create_key(&[]);
    let (id, path) = seal_file(&v, &bytes(30_000, 4));
    let keyless = Vault::new();
    keyless.ok(&["keys", "list"]);
    let up = keyless.ok(&["backup", "upload", "--file", s(&path)]);
    assert_eq!(up["verified"], false);
    // Persisted: every later list and get says so, and the key id is only claimed.
    for _ in 0..2 {
        let l = keyless.ok(&["backup", "list"]);
        assert_eq!(l["resources"][0]["status"], "Unverified", "{l}");
        assert_eq!(l["resources"][0]["backupKeyClaimed"], true, "{l}");
        let g = keyless.ok(&["backup", "get", "--id", &id]);
        assert_eq!(g["status"], "Unverified", "{g}");
    }
    // Verify needs the key: without it the status does not change.
    keyless.fails(&["backup", "verify", "--id", &id], 3);
    assert_eq!(
        keyless.ok(&["backup", "get", "--id", &id])["status"],
        "Unverified"
    );
    move_key(&v, &keyless, &key);
    keyless.ok(&["backup", "verify", "--id", &id]);
    let g = keyless.ok(&["backup", "get", "--id", &id]);
    assert_eq!(g["status"], "Completed", "{g}");
    assert!(g.get("backupKeyClaimed").is_none(), "{g}");
    // In the home that sealed it, or uploaded with its key present: never unverified.
    assert_eq!(v.ok(&["backup", "get", "--id", &id])["status"], "Completed");
    let third = Vault::new();
    move_key(&v, &third, &key);
    assert_eq!(
        third.ok(&["backup", "upload", "--file", s(&path)])["verified"],
        true
    );
    assert_eq!(
        third.ok(&["backup", "get", "--id", &id])["status"],
        "Completed"
    );
}

#[test]
fn a_file_named_for_another_archive_is_an_integrity_finding_in_list_and_sweep() {
    let v = Vault::new();
    v.create_key(&[]);
    let (old, old_path) = seal_file(&v, b"old configuration");
    let (new, new_path) = seal_file(&v, b"new configuration");
    std::fs::copy(&old_path, &new_path).unwrap();
    let out = v.run(&["backup", "list"]);
    assert!(out.status.success());
    let l: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("name-id-mismatch"), "{stderr}");
    let statuses: Vec<(String, String)> = l["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    // Both files now hold `old`: the genuine one Completed, the misnamed one IdMismatch.
    assert_eq!(statuses.len(), 2, "{l}");
    assert!(statuses.iter().all(|(i, _)| *i == old), "{l}");
    assert!(statuses.contains(&(old.clone(), "Completed".into())), "{l}");
    assert!(
        statuses.contains(&(old.clone(), "IdMismatch".into())),
        "{l}"
    );
    let out = v.run(&["audit", "archives", s(&v.home.join("archives"))]);
    assert_eq!(out.status.code(), Some(5), "an integrity finding");
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["summary"]["findings"]["name-id-mismatch"], 1, "{rep}");
    let bad = rep["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"].as_str().unwrap().contains(&new))
        .unwrap();
    assert_eq!(bad["findings"][0]["code"], "name-id-mismatch", "{bad}");
}

#[test]
fn keys_delete_is_held_up_only_by_archives_its_key_really_opens() {
    let v = Vault::new();
    let a = v.create_key(&[]);
    let (id, path) = seal_file(&v, &bytes(20_000, 5));
    let b = v.create_key(&[]);
    v.create_key(&["--default"]);
    // Without any key, forge the empty slot 1: slot 0's bytes, key id B, generation 2.
    let mut bytes = std::fs::read(&path).unwrap();
    let h = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let s0 = bytes[40 + h..296 + h].to_vec();
    bytes[296 + h..552 + h].copy_from_slice(&s0);
    bytes[296 + h..300 + h].copy_from_slice(&2u32.to_be_bytes());
    let b_raw = uuid::Uuid::parse_str(&b).unwrap();
    bytes[300 + h..316 + h].copy_from_slice(b_raw.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let i = v.ok(&["inspect", "--file", s(&path)]);
    assert_eq!(i["keySlots"][1]["keyId"], b.as_str(), "{i}");
    assert_eq!(i["keySlots"][1]["claimed"], true, "{i}");
    // The genuine key: confirmed by its slot, so its deletion is refused.
    let err = v.fails(&["keys", "delete", "--id", &a], 7);
    assert!(err.contains(&id), "{err}");
    // The key the forged slot names: a claim, not a fact; deleted, and the claim named.
    let out = v.run(&["keys", "delete", "--id", &b]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&id) && stderr.contains("does not open with it"),
        "{stderr}"
    );
    // And the archive itself is refused as tampered, not opened.
    let err = v.fails(&["backup", "verify", "--id", &id], 5);
    assert!(err.contains("does not vouch for"), "{err}");
}

/// Issue 12 finding 1, replayed: the holder of a domain-B key seals, under that key, an
/// archive whose header claims domain A (or system). A home holding both keys refuses it
/// on upload and verify, never lists it under domain A, and restores nothing.
#[test]
fn a_domain_b_key_never_opens_an_archive_that_claims_domain_a_or_system() {
    let v = Vault::new();
    v.create_key(&["--scope", "domain", "--domain", "A"]);
    let b = v.create_key(&["--scope", "domain", "--domain", "B"]);
    v.create_key(&[]);
    // The attacker's copy of key B (here: read from the home, as its holder would have it).
    let home = vault::keystore::Home::open(&v.home).unwrap();
    let b_id = uuid::Uuid::parse_str(&b).unwrap();
    let (_, material) = vault::keystore::KeyStore::new(&home)
        .material(&b_id, false)
        .unwrap();
    for (scope, domain, what) in [
        (
            vault::scope::Scope::Domain,
            Some("A"),
            "a domain archive of domain A",
        ),
        (vault::scope::Scope::System, None, "a system archive"),
    ] {
        let header = vault::envelope::ArchiveHeader::new(
            scope,
            domain.map(str::to_string),
            "uid:0",
            "forged",
            None,
        );
        let mut forged = Vec::new();
        vault::envelope::seal(&header, b_id, &material, &b"evil config"[..], &mut forged).unwrap();
        let f = v.path("forged.vault");
        std::fs::write(&f, &forged).unwrap();
        // Keyless, it claims what it claims.
        let i = v.ok(&["inspect", "--file", s(&f)]);
        assert_eq!(i["scope"], scope.to_string(), "{i}");
        for cmd in [
            vec!["backup", "upload", "--file", s(&f)],
            vec!["backup", "verify", "--file", s(&f)],
        ] {
            let err = v.fails(&cmd, 5);
            assert!(err.contains(&b) && err.contains(what), "{err}");
        }
        let out = v.path("out.bin");
        v.fails(&["backup", "extract", "--file", s(&f), "--out", s(&out)], 5);
        assert!(!out.exists());
        assert_eq!(
            v.ok(&["backup", "list", "--scope", "domain", "--domain", "A"])["total"],
            0
        );
        assert_eq!(v.ok(&["backup", "list"])["total"], 0, "nothing was stored");
    }
}

/// A file whose writes fail after its first `sync`: a rewrap "killed" between writing the
/// new slot and wiping the old one.
struct DiesAfterFirstSync {
    file: std::fs::File,
    synced: bool,
}

impl std::io::Read for DiesAfterFirstSync {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(b)
    }
}
impl std::io::Write for DiesAfterFirstSync {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.synced {
            return Err(std::io::Error::other("killed"));
        }
        self.file.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
impl std::io::Seek for DiesAfterFirstSync {
    fn seek(&mut self, p: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(p)
    }
}
impl vault::envelope::ArchiveFile for DiesAfterFirstSync {
    fn sync(&mut self) -> std::io::Result<()> {
        self.synced = true;
        self.file.sync_data()
    }
}

#[test]
fn an_interrupted_rewrap_is_reported_and_the_next_rewrap_completes_it() {
    let v = Vault::new();
    let old = v.create_key(&[]);
    let (id, path) = seal_file(&v, &bytes(30_000, 6));
    let new = v.create_key(&["--default"]);
    let home = vault::keystore::Home::open(&v.home).unwrap();
    let ks = vault::keystore::KeyStore::new(&home);
    let opening = |k: &str| {
        let u = uuid::Uuid::parse_str(k).unwrap();
        let (_, m) = ks.material(&u, false).unwrap();
        vault::envelope::OpeningKey::new(m, vault::scope::Scope::System, None)
    };
    let old_u = uuid::Uuid::parse_str(&old).unwrap();
    let lookup = |u: &uuid::Uuid| (*u == old_u).then(|| opening(&old));
    let mut f = DiesAfterFirstSync {
        file: std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap(),
        synced: false,
    };
    let new_u = uuid::Uuid::parse_str(&new).unwrap();
    assert!(
        vault::envelope::rewrap_in_place(&mut f, &lookup, new_u, &opening(&new), None).is_err()
    );
    drop(f);
    // Both slots occupied: said by inspect and the sweep; it still verifies.
    let i = v.ok(&["inspect", "--file", s(&path)]);
    assert_eq!(i["interruptedRewrap"], true, "{i}");
    let rep = v.run(&["audit", "archives", s(&v.home.join("archives"))]);
    assert_eq!(rep.status.code(), Some(0), "not an integrity failure");
    let rep: serde_json::Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(rep["summary"]["findings"]["rewrap-interrupted"], 1, "{rep}");
    v.ok(&["backup", "verify", "--id", &id]);
    // The next rewrap completes it: one slot, under the new key.
    v.ok(&["backup", "rewrap", "--id", &id]);
    let i = v.ok(&["inspect", "--file", s(&path)]);
    assert!(i.get("interruptedRewrap").is_none(), "{i}");
    let occupied: Vec<&serde_json::Value> = i["keySlots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "occupied")
        .collect();
    assert_eq!(occupied.len(), 1, "{i}");
    assert_eq!(occupied[0]["keyId"], new.as_str());
    let rep = v.run(&["audit", "archives", s(&v.home.join("archives"))]);
    let rep: serde_json::Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(rep["summary"]["findings"]["rewrap-interrupted"], 0, "{rep}");
}

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
/// The material of key `id` as its holder has it (read from the home), with its id.
fn key_copy(v: &Vault, id: &str) -> (uuid::Uuid, vault::secret::Key32) {
    let home = vault::keystore::Home::open(&v.home).unwrap();
    let id = uuid::Uuid::parse_str(id).unwrap();
    let (_, material) = vault::keystore::KeyStore::new(&home)
        .material(&id, false)
        .unwrap();
    (id, material)
}

/// The scopes a holder of a domain-B key forges into a header, and how the refusal names
/// each.
const FORGED_SCOPES: [(vault::scope::Scope, Option<&str>, &str); 2] = [
    (
        vault::scope::Scope::Domain,
        Some("A"),
        "a domain archive of domain A",
    ),
    (vault::scope::Scope::System, None, "a system archive"),
];

#[test]
fn a_domain_b_key_never_opens_an_archive_that_claims_domain_a_or_system() {
    let v = Vault::new();
    v.create_key(&["--scope", "domain", "--domain", "A"]);
    let b = v.create_key(&["--scope", "domain", "--domain", "B"]);
    v.create_key(&[]);
    // The attacker's copy of key B (here: read from the home, as its holder would have it).
    let (b_id, material) = key_copy(&v, &b);
    for (scope, domain, what) in FORGED_SCOPES {
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

/// Issue 12 finding 1 at the BMC: a forged-scope archive planted in the store (a domain-B
/// key sealing a header that claims domain A with the A server's serial; a system header
/// under the domain-B key) is refused by `backup restore --yes` with the scope error, and
/// the built-in BMC simulator sees no session and no restore.
#[test]
fn a_forged_scope_archive_is_never_restored_onto_the_bmc() {
    use vault::bmc::{SimConfig, SimHandle};
    let sim = SimHandle::start(SimConfig {
        password: "sim-password-12".into(),
        user: "admin".into(),
        ..SimConfig::default()
    })
    .unwrap();
    let serial = SimConfig::default().serial;
    let v = Vault::new();
    v.create_key(&["--scope", "domain", "--domain", "A"]);
    let b = v.create_key(&["--scope", "domain", "--domain", "B"]);
    v.create_key(&[]);
    let pw = v.path("bmc.pw");
    std::fs::write(&pw, "sim-password-12").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (b_id, material) = key_copy(&v, &b);
    for (scope, domain, what) in FORGED_SCOPES {
        let source = vault::envelope::Source {
            serial_number: Some(serial.clone()),
            file_name: Some("forged.bak".into()),
            ..Default::default()
        };
        let header = vault::envelope::ArchiveHeader::new(
            scope,
            domain.map(str::to_string),
            "uid:0",
            "forged",
            Some(source),
        );
        let id = header.id.to_string();
        let mut forged = Vec::new();
        vault::envelope::seal(&header, b_id, &material, &b"evil config"[..], &mut forged).unwrap();
        // Planted where the store keeps its archives (whoever can write there can).
        let path = v.home.join("archives").join(format!("{id}.vault"));
        std::fs::write(&path, &forged).unwrap();
        let err = v.fails(
            &[
                "backup",
                "restore",
                "--id",
                &id,
                "--bmc",
                &sim.base_url(),
                "--bmc-user",
                "admin",
                "--bmc-password-file",
                s(&pw),
                "--ca-cert",
                s(sim.ca_cert_path()),
                "--yes",
            ],
            5,
        );
        assert!(
            err.contains(&b) && err.contains(what) && err.contains("do not restore it"),
            "{what}: {err}"
        );
        assert!(sim.restored().is_empty(), "{what}: the BMC got a restore");
        assert_eq!(
            sim.sessions_created(),
            0,
            "{what}: nothing may reach the BMC"
        );
        std::fs::remove_file(&path).unwrap();
    }
}

/// Without any key, fills archive `path`'s empty slot 1 with a well-formed forged slot:
/// the next generation, key id `claim`, random nonce, wrap, MAC and signature, and the
/// keyless hint (`allowed_other`, the SHA-256 of slot 0) recomputed, so that the slot
/// region passes every keyless check. Returns the forged bytes written.
fn forge_empty_slot(path: &std::path::Path, claim: &str) -> Vec<u8> {
    use sha2::Digest;
    let mut b = std::fs::read(path).unwrap();
    let h = u32::from_be_bytes(b[12..16].try_into().unwrap()) as usize;
    let (s0, s1) = (40 + h, 296 + h);
    assert!(b[s1..s1 + 256].iter().all(|&x| x == 0), "slot 1 is empty");
    let generation = u32::from_be_bytes(b[s0..s0 + 4].try_into().unwrap()) + 1;
    let mut slot = bytes(256, u64::from(generation) * 7919);
    slot[0..4].copy_from_slice(&generation.to_be_bytes());
    slot[4..20].copy_from_slice(uuid::Uuid::parse_str(claim).unwrap().as_bytes());
    let hint: [u8; 32] = sha2::Sha256::digest(&b[s0..s0 + 256]).into();
    slot[80..112].copy_from_slice(&hint);
    slot[240..256].fill(0);
    b[s1..s1 + 256].copy_from_slice(&slot);
    std::fs::write(path, &b).unwrap();
    b
}

/// Issue 12 finding 2: `rewrap --all --from OLD` (plain and `--reencrypt`) on an archive
/// whose empty slot was forged without any key must not skip it (`total: 0`) while it
/// stays under OLD. A forged slot naming a key of this home is tampering: both refuse
/// it (exit 5, the archive named, the file unchanged). A forged slot naming a stranger's
/// key: `--reencrypt` refuses it (its region MAC fails), and a plain rewrap, which
/// overwrites a slot that the region does not vouch for, rewraps the archive onto the
/// new key, forged slot gone.
#[test]
fn rewrap_from_old_reports_an_archive_with_a_forged_slot_instead_of_skipping_it() {
    let v = Vault::new();
    let old = v.create_key(&[]);
    let (id, path) = seal_file(&v, &bytes(30_000, 12));
    let new = v.ok(&["keys", "rotate"])["newKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let stranger = uuid::Uuid::new_v4().to_string();
    let refused = |args: &[&str], forged: &[u8], names: &[&str]| {
        let out = v.run(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(5), "{args:?}: {err}");
        assert!(err.contains("could not be rewrapped"), "{err}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["total"], 1, "{args:?} skipped it: {r}");
        assert_eq!(r["rewrapped"].as_array().unwrap().len(), 0, "{r}");
        assert_eq!(r["failed"][0]["id"], id.as_str(), "{r}");
        let why = r["failed"][0]["error"].as_str().unwrap();
        for n in names {
            assert!(why.contains(n), "{args:?}: {why}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), forged, "{args:?} changed it");
    };
    // A forged slot naming the new key (which this home holds).
    let forged = forge_empty_slot(&path, &new);
    let i = v.ok(&["inspect", "--file", s(&path)]);
    assert_eq!(i["keySlots"][1]["keyId"], new.as_str(), "{i}");
    assert_eq!(i["keySlots"][1]["claimed"], true, "{i}");
    let plain = ["backup", "rewrap", "--all", "--from", old.as_str()];
    let reenc = [&plain[..], &["--reencrypt"]].concat();
    refused(&reenc, &forged, &[&new, "does not open with it"]);
    refused(&plain, &forged, &[&new, "slot was modified"]);
    // Put slot 1 back: the archive is intact under OLD.
    let h = u32::from_be_bytes(forged[12..16].try_into().unwrap()) as usize;
    let mut clean = forged.clone();
    clean[296 + h..552 + h].fill(0);
    std::fs::write(&path, &clean).unwrap();
    assert_eq!(
        v.ok(&["backup", "verify", "--id", &id])["backupKeyId"],
        old.as_str()
    );
    // A forged slot naming a key that is nowhere here.
    let forged = forge_empty_slot(&path, &stranger);
    refused(&reenc, &forged, &["region"]);
    let r = v.ok(&plain);
    assert_eq!(r["total"], 1, "{r}");
    assert_eq!(r["rewrapped"][0]["id"], id.as_str(), "{r}");
    assert_eq!(r["rewrapped"][0]["to"], new.as_str(), "{r}");
    let i = v.ok(&["inspect", "--file", s(&path)]);
    let slots = i["keySlots"].as_array().unwrap();
    assert!(
        slots.iter().all(|s| s["keyId"] != stranger.as_str()),
        "the forged slot survived: {i}"
    );
    assert_eq!(
        v.ok(&["backup", "verify", "--id", &id])["backupKeyId"],
        new.as_str()
    );
}

/// `backupKeyClaimed` of archive `id` in `backup list` and `backup get`, which must agree;
/// `false` when the field is absent (the key id is confirmed).
fn listed_claim(v: &Vault, id: &str) -> bool {
    let l = v.ok(&["backup", "list"]);
    let row = l["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {l}"))
        .clone();
    let g = v.ok(&["backup", "get", "--id", id]);
    assert_eq!(row, g, "list and get describe {id} alike");
    match g.get("backupKeyClaimed") {
        None => false,
        Some(serde_json::Value::Bool(true)) => true,
        Some(other) => panic!("backupKeyClaimed is {other} (true or absent): {g}"),
    }
}

/// The table views of `backup list` and `backup get` mark the key as claimed exactly when
/// the JSON does.
fn table_claim(v: &Vault, id: &str) -> bool {
    let list = v.run(&["--output", "table", "backup", "list"]);
    let list = String::from_utf8(list.stdout).unwrap();
    let row = list
        .lines()
        .find(|l| l.starts_with(&id[..8]))
        .unwrap_or_else(|| panic!("{id} not in the table: {list}"));
    let get = v.run(&["--output", "table", "backup", "get", "--id", id]);
    let get = String::from_utf8(get.stdout).unwrap();
    let line = get.lines().find(|l| l.starts_with("backupKey")).unwrap();
    assert_eq!(
        row.contains("(claimed)"),
        line.ends_with("(claimed)"),
        "{list}\n{get}"
    );
    row.contains("(claimed)")
}

/// `keyId` and `keyIdClaimed` of the sweep of `v`'s archive directory for archive `id`.
fn swept_claim(v: &Vault, id: &str) -> (String, bool) {
    let out = v.run(&["audit", "archives", s(&v.home.join("archives"))]);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = rep["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("{id} not swept: {rep}"));
    (
        a["keyId"].as_str().unwrap().to_string(),
        a["keyIdClaimed"].as_bool().unwrap(),
    )
}

const SLOT0: usize = 40;
const SLOT1: usize = 296;

fn header_len(b: &[u8]) -> usize {
    u32::from_be_bytes(b[12..16].try_into().unwrap()) as usize
}

/// Issue 12: nothing keyless treats an unauthenticated key id as fact. A genuine archive
/// of this home is confirmed by this home's signature on its slot; a slot forged without
/// a key, swapped, or copied from another archive is not, and `backup list`/`get`, their
/// table view and the sweep show its key id as claimed.
#[test]
fn a_key_id_is_claimed_unless_this_home_signed_the_slot() {
    let v = Vault::new();
    let key = v.create_key(&[]);
    let other = v.create_key(&[]);
    let (id, path) = seal_file(&v, &bytes(20_000, 21));
    let (_, second) = seal_file(&v, &bytes(20_000, 22));
    assert!(!listed_claim(&v, &id), "a genuine archive lists confirmed");
    assert!(!table_claim(&v, &id));
    assert_eq!(swept_claim(&v, &id), (key.clone(), false));
    let genuine = std::fs::read(&path).unwrap();
    let h = header_len(&genuine);

    // The empty slot forged to name another key of this home (the newest slot now).
    forge_empty_slot(&path, &other);
    assert!(listed_claim(&v, &id), "a forged slot listed as fact");
    assert_eq!(
        v.ok(&["backup", "get", "--id", &id])["backupKey"],
        other.as_str()
    );
    assert!(table_claim(&v, &id));
    assert_eq!(swept_claim(&v, &id), (other.clone(), true));
    // A failed verify confirms nothing.
    v.fails(&["backup", "verify", "--id", &id], 5);
    assert!(listed_claim(&v, &id));

    // The genuine slot moved to slot 1 (its signature covers its index).
    let mut swapped = genuine.clone();
    swapped.copy_within(SLOT0 + h..SLOT0 + h + 256, SLOT1 + h);
    swapped[SLOT0 + h..SLOT0 + h + 256].fill(0);
    std::fs::write(&path, &swapped).unwrap();
    assert!(listed_claim(&v, &id), "a swapped slot listed as fact");
    assert_eq!(swept_claim(&v, &id), (key.clone(), true));

    // The slot of another archive of this home, under the same key, copied in.
    let donor = std::fs::read(&second).unwrap();
    let hd = header_len(&donor);
    let mut copied = genuine.clone();
    copied[SLOT0 + h..SLOT0 + h + 256].copy_from_slice(&donor[SLOT0 + hd..SLOT0 + hd + 256]);
    std::fs::write(&path, &copied).unwrap();
    assert!(listed_claim(&v, &id), "a copied-in slot listed as fact");
    assert!(table_claim(&v, &id));
    assert_eq!(swept_claim(&v, &id), (key.clone(), true));

    // The genuine bytes back: confirmed again.
    std::fs::write(&path, &genuine).unwrap();
    assert!(!listed_claim(&v, &id));
    assert_eq!(swept_claim(&v, &id), (key, false));
}

/// An archive this home did not sign (copied into its store from another home, or
/// uploaded while its key was absent) shows its key id as claimed until a key of this
/// home opens it; the record of that confirmation covers exactly those bytes, so a slot
/// forged afterwards is claimed again. The v1 fixture (unsigned) likewise.
#[test]
fn a_foreign_archive_is_claimed_until_a_key_of_this_home_confirms_it() {
    let a = Vault::new();
    let key = a.create_key(&[]);
    let (id, path) = seal_file(&a, &bytes(25_000, 23));
    let b = Vault::new();
    move_key(&a, &b, &key);
    // Copied straight into b's store: Completed (its name is its id), but not signed by b.
    let stored = b.home.join("archives").join(format!("{id}.vault"));
    std::fs::copy(&path, &stored).unwrap();
    assert_eq!(b.ok(&["backup", "get", "--id", &id])["status"], "Completed");
    assert!(listed_claim(&b, &id), "another home's slot listed as fact");
    assert!(table_claim(&b, &id));
    assert_eq!(swept_claim(&b, &id), (key.clone(), true));
    b.ok(&["backup", "verify", "--id", &id]);
    assert!(!listed_claim(&b, &id), "confirmed by b's key");
    assert!(!table_claim(&b, &id));
    assert_eq!(swept_claim(&b, &id), (key.clone(), false));
    // A slot forged after the confirmation is not covered by it.
    let stranger = uuid::Uuid::new_v4().to_string();
    forge_empty_slot(&stored, &stranger);
    assert!(listed_claim(&b, &id));
    assert_eq!(
        b.ok(&["backup", "get", "--id", &id])["backupKey"],
        stranger.as_str()
    );
    // (The sweep names the newest slot whose key is here: b's key, no longer confirmed.)
    assert_eq!(swept_claim(&b, &id), (key.clone(), true));

    // Uploaded without its key: claimed (and Unverified) until a verify succeeds.
    let c = Vault::new();
    c.ok(&["keys", "list"]);
    c.ok(&["backup", "upload", "--file", s(&path)]);
    assert!(listed_claim(&c, &id));
    move_key(&a, &c, &key);
    assert!(
        listed_claim(&c, &id),
        "the key's presence confirms nothing by itself"
    );
    c.ok(&["backup", "verify", "--id", &id]);
    assert!(!listed_claim(&c, &id));

    // The v1 fixture, copied in: unsigned, claimed until its key opens it.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1");
    let v1 = fixtures.join("archive.vault");
    let v1_id = c.ok(&["inspect", "--file", s(&v1)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::copy(&v1, c.home.join("archives").join(format!("{v1_id}.vault"))).unwrap();
    assert!(listed_claim(&c, &v1_id), "a v1 slot listed as fact");
    let (_, claimed) = swept_claim(&c, &v1_id);
    assert!(claimed);
    let pw = c.password_file("vault fixture password v1");
    let kf = fixtures.join("system-key.vaultkey");
    c.ok(&[
        "keys",
        "upload",
        "--file",
        s(&kf),
        "--password-file",
        s(&pw),
    ]);
    c.ok(&["backup", "verify", "--id", &v1_id]);
    assert!(!listed_claim(&c, &v1_id));
    assert!(!swept_claim(&c, &v1_id).1);
}

/// Issue 12 finding 2: a forged slot at generation 0xFFFFFFFF (the u32 maximum), naming a
/// key that is not here, claims nothing: a plain rewrap overwrites it (the new slot's
/// generation continues from the genuine one) instead of refusing with an exhausted
/// counter, and the archive then verifies under the new key.
#[test]
fn a_forged_maximum_generation_does_not_block_rewrap() {
    let v = Vault::new();
    v.create_key(&[]);
    let (id, path) = seal_file(&v, &bytes(10_000, 24));
    let new = v.ok(&["keys", "rotate"])["newKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut b = forge_empty_slot(&path, &uuid::Uuid::new_v4().to_string());
    let h = header_len(&b);
    b[SLOT1 + h..SLOT1 + h + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    let i = v.ok(&["inspect", "--file", s(&path)]);
    assert_eq!(i["keySlots"][1]["generation"], u32::MAX, "{i}");
    let r = v.ok(&["backup", "rewrap", "--id", &id]);
    assert_eq!(r["rewrapped"][0]["to"], new.as_str(), "{r}");
    let i = v.ok(&["inspect", "--file", s(&path)]);
    let gens: Vec<&serde_json::Value> = i["keySlots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.get("generation"))
        .collect();
    assert_eq!(gens, [&serde_json::json!(2)], "{i}");
    assert_eq!(
        v.ok(&["backup", "verify", "--id", &id])["backupKeyId"],
        new.as_str()
    );
}

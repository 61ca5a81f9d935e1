//! Issue 12 (SECURITY.md "Key file format, version 1", "Rules a second implementation
//! needs"): every key-file rule the independent reader had to guess, pinned to the verdict
//! SECURITY.md states, through the binary (`vault keys inspect`, which parses without a
//! password, and `vault keys upload`, which runs the KDF and unwraps). Key files are
//! written here from the spec alone (Argon2id, HKDF-Expand-SHA-256, AES-256-GCM with the
//! clear part as AAD, the outer SHA-256), so that an edited metadata JSON is a file whose
//! every other check passes: what is refused is refused for the rule under test.
//!
//! Also the password bytes: what a password file, `VAULT_KEY_PASSWORD` and the length
//! rules make of them.
mod common;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use common::*;
use sha2::{Digest, Sha256};

const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const PW: &str = "key-file password";
const MATERIAL: [u8; 32] = [0x5a; 32];
/// The cheapest parameters the bounds allow (m = 19456 KiB, t = 2, p = 1).
const M: u32 = 19_456;
const T: u32 = 2;

/// A JSON object from `(name, raw JSON value)` members, in order; `"<absent>"` drops one.
fn object(members: &[(&str, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .filter(|(_, v)| v != "<absent>")
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// `base` with `fields` replacing members of the same name, or appended.
fn edit(base: Vec<(&'static str, String)>, fields: &[(&'static str, &str)]) -> String {
    let mut members = base;
    for (k, v) in fields {
        match members.iter_mut().find(|(n, _)| n == k) {
            Some(m) => m.1 = v.to_string(),
            None => members.push((k, v.to_string())),
        }
    }
    object(&members)
}

fn salt16() -> Vec<u8> {
    (0..16u8).map(|i| i.wrapping_mul(37) ^ 0xfb).collect()
}

/// The `kdf` object with `fields` edited.
fn kdf(fields: &[(&'static str, &str)]) -> String {
    edit(
        vec![
            ("algorithm", "\"argon2id\"".into()),
            ("argon2Version", "19".into()),
            ("memoryKib", M.to_string()),
            ("iterations", T.to_string()),
            ("parallelism", "1".into()),
            ("salt", format!("\"{}\"", STANDARD.encode(salt16()))),
        ],
        fields,
    )
}

/// The metadata with `fields` edited (`kdf` from [`kdf`] unless given).
fn meta(fields: &[(&'static str, &str)]) -> String {
    edit(
        vec![
            ("version", "1".into()),
            ("keyid", format!("\"{ID}\"")),
            ("scope", "\"system\"".into()),
            ("createdAt", "\"2026-01-01T00:00:00Z\"".into()),
            ("state", "\"active\"".into()),
            ("kdf", kdf(&[])),
        ],
        fields,
    )
}

/// A key file written from the spec: `meta` as the metadata bytes (as given, duplicates
/// and all), the KDF run with `salt` and the cheapest parameters, `version` at offset 8.
fn key_file(meta: &str, salt: &[u8], version: u16, password: &str) -> Vec<u8> {
    let mut out = b"VAULTKEY".to_vec();
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(meta.as_bytes());
    let params = argon2::Params::new(M, T, 1, Some(32)).unwrap();
    let mut k = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut k)
        .unwrap();
    let prk = hkdf::Hkdf::<Sha256>::from_prk(&k).unwrap();
    let mut check = [0u8; 16];
    prk.expand(b"vault.keyfile.v1 password-check", &mut check)
        .unwrap();
    let mut wrap = [0u8; 32];
    prk.expand(b"vault.keyfile.v1 wrap", &mut wrap).unwrap();
    let nonce = [7u8; 12];
    let mut ct = MATERIAL.to_vec();
    let tag = Aes256Gcm::new((&wrap).into())
        .encrypt_inout_detached((&nonce).into(), &out, ct.as_mut_slice().into())
        .unwrap();
    out.extend_from_slice(&check);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// What `vault keys inspect` makes of a file: its JSON, or the exit code and stderr.
fn inspect(v: &Vault, bytes: &[u8]) -> Result<serde_json::Value, (i32, String)> {
    let f = v.path("edited.vaultkey");
    std::fs::write(&f, bytes).unwrap();
    let out = v.run(&["keys", "inspect", "--file", s(&f)]);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err((
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

fn accepted(v: &Vault, what: &str, meta: &str) -> serde_json::Value {
    inspect(v, &key_file(meta, &salt16(), 1, PW))
        .unwrap_or_else(|(c, e)| panic!("{what}: refused (exit {c}): {e}\n{meta}"))
}

/// Refused as *corrupted* (exit 5), the spec's verdict for a metadata rule.
fn corrupted(v: &Vault, what: &str, meta: &str) {
    match inspect(v, &key_file(meta, &salt16(), 1, PW)) {
        Ok(j) => panic!("{what}: accepted as {j}\n{meta}"),
        Err((code, err)) => {
            assert_eq!(code, 5, "{what}: {err}");
            assert!(err.contains("corrupted"), "{what}: {err}");
        }
    }
}

/// `vault keys upload` of `bytes` into a fresh home, with a password file holding
/// `password_file` (exact bytes).
fn upload(bytes: &[u8], password_file: &[u8], scope: &str) -> (Vault, std::process::Output) {
    let v = Vault::new();
    let f = v.path("k.vaultkey");
    std::fs::write(&f, bytes).unwrap();
    let pw = v.path("pw");
    std::fs::write(&pw, password_file).unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = v.run(&[
        "keys",
        "upload",
        "--file",
        s(&f),
        "--password-file",
        s(&pw),
        "--scope",
        scope,
    ]);
    (v, out)
}

/// The uploaded key is the material written (it opens an archive sealed under it).
fn holds_material(v: &Vault) {
    let header =
        vault::envelope::ArchiveHeader::new(vault::scope::Scope::System, None, "t", "t", None);
    let mut archive = Vec::new();
    let key = vault::secret::Key32::from_slice(&MATERIAL).unwrap();
    let id = uuid::Uuid::parse_str(ID).unwrap();
    vault::envelope::seal(&header, id, &key, &b"payload"[..], &mut archive).unwrap();
    let f = v.path("a.vault");
    std::fs::write(&f, &archive).unwrap();
    v.ok(&["backup", "verify", "--file", s(&f)]);
}

#[test]
fn the_spec_writer_makes_files_vault_opens() {
    let (v, out) = upload(
        &key_file(&meta(&[]), &salt16(), 1, PW),
        PW.as_bytes(),
        "system",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    holds_material(&v);
    let j = accepted(&v, "base", &meta(&[]));
    assert_eq!(j["keyid"], ID);
}

#[test]
fn required_fields_are_required_and_optional_ones_default() {
    let v = Vault::new();
    for f in ["version", "keyid", "scope", "createdAt", "kdf"] {
        corrupted(&v, &format!("no {f}"), &meta(&[(f, "<absent>")]));
    }
    for f in [
        "algorithm",
        "argon2Version",
        "memoryKib",
        "iterations",
        "parallelism",
        "salt",
    ] {
        corrupted(
            &v,
            &format!("no kdf.{f}"),
            &meta(&[("kdf", &kdf(&[(f, "<absent>")]))]),
        );
    }
    // state defaults to active; description to "".
    let j = accepted(&v, "no state", &meta(&[("state", "<absent>")]));
    assert_eq!(j["state"], "active");
    assert!(j.get("description").is_none_or(|d| d == ""), "{j}");
    for state in ["active", "retired", "compromised"] {
        let j = accepted(&v, state, &meta(&[("state", &format!("\"{state}\""))]));
        assert_eq!(j["state"], state);
    }
    corrupted(&v, "state bogus", &meta(&[("state", "\"bogus\"")]));
    corrupted(&v, "scope bogus", &meta(&[("scope", "\"global\"")]));
    // createdAt is a string, not checked.
    let j = accepted(
        &v,
        "createdAt free text",
        &meta(&[("createdAt", "\"yesterday\"")]),
    );
    assert_eq!(j["createdAt"], "yesterday");
    corrupted(&v, "createdAt a number", &meta(&[("createdAt", "5")]));
    // KDF identity.
    corrupted(
        &v,
        "argon2i",
        &meta(&[("kdf", &kdf(&[("algorithm", "\"argon2i\"")]))]),
    );
    corrupted(
        &v,
        "argon2 v16",
        &meta(&[("kdf", &kdf(&[("argon2Version", "16")]))]),
    );
    corrupted(&v, "metadata version 2", &meta(&[("version", "2")]));
    corrupted(&v, "metadata an array", "[1,2]");
}

#[test]
fn domain_id_belongs_to_domain_keys_only() {
    let v = Vault::new();
    let j = accepted(
        &v,
        "domain key",
        &meta(&[("scope", "\"domain\""), ("domainID", "\"ops\"")]),
    );
    assert_eq!(j["domainID"], "ops");
    // null counts as absent.
    accepted(&v, "system, domainID null", &meta(&[("domainID", "null")]));
    corrupted(
        &v,
        "domain key without domainID",
        &meta(&[("scope", "\"domain\"")]),
    );
    corrupted(
        &v,
        "domain key, domainID null",
        &meta(&[("scope", "\"domain\""), ("domainID", "null")]),
    );
    corrupted(
        &v,
        "system key with a domainID",
        &meta(&[("domainID", "\"ops\"")]),
    );
    corrupted(
        &v,
        "system key with domainID \"\"",
        &meta(&[("domainID", "\"\"")]),
    );
}

#[test]
fn unknown_fields_are_ignored_at_the_top_and_refused_inside_kdf() {
    let v = Vault::new();
    let m = meta(&[("comment", "\"written by hand\""), ("extra", "{\"a\":[1]}")]);
    accepted(&v, "unknown top-level fields", &m);
    // Ignored, but authenticated: the file with them imports and the key works.
    let (home, out) = upload(&key_file(&m, &salt16(), 1, PW), PW.as_bytes(), "system");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    holds_material(&home);
    corrupted(
        &v,
        "unknown kdf field",
        &meta(&[("kdf", &kdf(&[("extra", "1")]))]),
    );
    // The one field spelled two ways: the file says memoryKib only.
    corrupted(
        &v,
        "memoryKiB instead of memoryKib",
        &meta(&[(
            "kdf",
            &kdf(&[("memoryKib", "<absent>"), ("memoryKiB", "19456")]),
        )]),
    );
    corrupted(
        &v,
        "memoryKiB beside memoryKib",
        &meta(&[("kdf", &kdf(&[("memoryKiB", "19456")]))]),
    );
    let j = accepted(&v, "base", &meta(&[]));
    assert_eq!(j["kdf"]["memoryKiB"], M, "inspect prints memoryKiB: {j}");
    assert!(j["kdf"].get("memoryKib").is_none(), "{j}");
}

#[test]
fn duplicate_fields_are_refused_where_they_mean_something() {
    let v = Vault::new();
    for (name, value) in [
        ("version", "1".to_string()),
        ("keyid", format!("\"{ID}\"")),
        ("scope", "\"system\"".into()),
        ("createdAt", "\"2026-01-01T00:00:00Z\"".into()),
        ("state", "\"retired\"".into()),
        ("description", "\"x\"".into()),
        ("domainID", "null".into()),
        ("kdf", kdf(&[])),
    ] {
        let once = meta(&[(name, value.as_str())]);
        let dup = once.replacen('{', &format!("{{\"{name}\":{value},"), 1);
        corrupted(&v, &format!("duplicate {name}"), &dup);
    }
    let inner = kdf(&[]);
    for (name, value) in [
        ("algorithm", "\"argon2id\"".to_string()),
        ("argon2Version", "19".into()),
        ("memoryKib", "65536".into()),
        ("iterations", "2".into()),
        ("parallelism", "1".into()),
        ("salt", format!("\"{}\"", STANDARD.encode(salt16()))),
    ] {
        let dup = inner.replacen('{', &format!("{{\"{name}\":{value},"), 1);
        corrupted(
            &v,
            &format!("duplicate kdf.{name}"),
            &meta(&[("kdf", &dup)]),
        );
    }
    // An unknown field means nothing, twice or once.
    let dup = meta(&[]).replacen('{', "{\"note\":1,\"note\":2,", 1);
    accepted(&v, "duplicate unknown field", &dup);
}

#[test]
fn numbers_are_json_integers_that_fit_their_width() {
    let v = Vault::new();
    for (what, field, value) in [
        ("memoryKib 19456.0", "memoryKib", "19456.0"),
        ("memoryKib 1.9456e4", "memoryKib", "1.9456e4"),
        ("memoryKib as a string", "memoryKib", "\"19456\""),
        ("memoryKib negative", "memoryKib", "-19456"),
        ("memoryKib 2^32 + 19456", "memoryKib", "4294986752"),
        ("memoryKib leading zero", "memoryKib", "019456"),
        ("iterations 2.0", "iterations", "2.0"),
        ("parallelism 1e0", "parallelism", "1e0"),
        ("argon2Version 19.0", "argon2Version", "19.0"),
    ] {
        corrupted(&v, what, &meta(&[("kdf", &kdf(&[(field, value)]))]));
    }
    for (what, value) in [
        ("version 1.0", "1.0"),
        ("version 1e0", "1e0"),
        ("version 65537", "65537"),
        ("version \"1\"", "\"1\""),
    ] {
        corrupted(&v, what, &meta(&[("version", value)]));
    }
}

#[test]
fn uuid_spellings_are_those_of_the_uuid_crate() {
    let v = Vault::new();
    for spelling in [
        ID.to_uppercase(),
        ID.replace('-', ""),
        format!("{{{ID}}}"),
        format!("urn:uuid:{ID}"),
    ] {
        let j = accepted(
            &v,
            &spelling,
            &meta(&[("keyid", &format!("\"{spelling}\""))]),
        );
        assert_eq!(j["keyid"], ID, "{spelling}");
    }
    // Accepted end to end: the key is imported under its canonical id.
    let m = meta(&[("keyid", &format!("\"{}\"", ID.to_uppercase()))]);
    let (home, out) = upload(&key_file(&m, &salt16(), 1, PW), PW.as_bytes(), "system");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    holds_material(&home);
    for bad in ["0f8fad5b-d9cb-469f-a165-70867728950", "", "not a uuid"] {
        corrupted(&v, bad, &meta(&[("keyid", &format!("\"{bad}\""))]));
    }
}

#[test]
fn the_salt_is_padded_standard_base64_of_16_to_64_bytes() {
    let v = Vault::new();
    let with_salt = |salt: String| meta(&[("kdf", &kdf(&[("salt", &salt)]))]);
    // 16 and 64 bytes: accepted, and the 64-byte one imports with that salt.
    accepted(
        &v,
        "16 bytes",
        &with_salt(format!("\"{}\"", STANDARD.encode(salt16()))),
    );
    let long: Vec<u8> = (0..64u8).collect();
    let m = with_salt(format!("\"{}\"", STANDARD.encode(&long)));
    accepted(&v, "64 bytes", &m);
    let (home, out) = upload(&key_file(&m, &long, 1, PW), PW.as_bytes(), "system");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    holds_material(&home);
    let s16 = salt16();
    assert!(
        STANDARD.encode(&s16).contains(['+', '/']),
        "the sample salt exercises the alphabet"
    );
    for (what, salt) in [
        ("unpadded", format!("\"{}\"", STANDARD_NO_PAD.encode(&s16))),
        (
            "URL-safe alphabet",
            format!("\"{}\"", URL_SAFE.encode(&s16)),
        ),
        ("15 bytes", format!("\"{}\"", STANDARD.encode(&s16[..15]))),
        (
            "65 bytes",
            format!("\"{}\"", STANDARD.encode(vec![1u8; 65])),
        ),
        ("8 bytes", format!("\"{}\"", STANDARD.encode(&s16[..8]))),
        ("empty", "\"\"".into()),
        (
            "a line break inside",
            format!(
                "\"{}\\n{}\"",
                &STANDARD.encode(&s16)[..12],
                &STANDARD.encode(&s16)[12..]
            ),
        ),
        ("a number", "16".into()),
    ] {
        corrupted(&v, &format!("salt {what}"), &with_salt(salt));
    }
}

#[test]
fn versions_count_from_the_newest_this_vault_writes() {
    let v = Vault::new();
    let m = meta(&[]);
    // Version 0 and 2 in both places (header and metadata agree), checksum recomputed.
    let zero = key_file(&meta(&[("version", "0")]), &salt16(), 0, PW);
    let (code, err) = inspect(&v, &zero).unwrap_err();
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("too old"), "{err}");
    let two = key_file(&meta(&[("version", "2")]), &salt16(), 2, PW);
    let (code, err) = inspect(&v, &two).unwrap_err();
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("upgrade vault"), "{err}");
    // A flipped version byte without the checksum recomputed: corrupted, not a version.
    let mut flipped = key_file(&m, &salt16(), 1, PW);
    flipped[9] ^= 2;
    let (code, err) = inspect(&v, &flipped).unwrap_err();
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("checksum"), "{err}");
}

/// SECURITY.md: a password file loses exactly one trailing "\n" or "\r\n"; nothing else
/// is trimmed or normalized; `VAULT_KEY_PASSWORD` is taken as given; empty passwords are
/// refused; a new key file needs at least 8 characters.
#[test]
fn password_bytes_are_exactly_what_security_md_says() {
    let file = key_file(&meta(&[]), &salt16(), 1, PW);
    let same_key = [PW.to_string(), format!("{PW}\n"), format!("{PW}\r\n")];
    for pw in &same_key {
        let (home, out) = upload(&file, pw.as_bytes(), "system");
        assert!(
            out.status.success(),
            "{pw:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        holds_material(&home);
    }
    for pw in [
        format!("{PW}\n\n"),
        format!("{PW}\r"),
        format!("{PW}\n\r\n"),
        format!(" {PW}"),
        format!("{PW} "),
        format!("{PW}\t\n"),
        PW.to_uppercase(),
    ] {
        let (_, out) = upload(&file, pw.as_bytes(), "system");
        assert_eq!(
            out.status.code(),
            Some(4),
            "{pw:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
    }
    for empty in [&b""[..], b"\n", b"\r\n"] {
        let (_, out) = upload(&file, empty, "system");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{empty:?}: {err}");
        assert!(err.contains("empty"), "{empty:?}: {err}");
    }
    // From the environment: the bytes as given, no newline removed.
    let env_upload = |pw: &str| {
        let v = Vault::new();
        let f = v.path("k.vaultkey");
        std::fs::write(&f, &file).unwrap();
        v.cmd(&["keys", "upload", "--file", s(&f), "--scope", "system"])
            .env("VAULT_KEY_PASSWORD", pw)
            .output()
            .unwrap()
    };
    assert!(env_upload(PW).status.success());
    assert_eq!(env_upload(&format!("{PW}\n")).status.code(), Some(4));

    // New key files: at least 8 characters (Unicode scalar values, not bytes), counted
    // after the one newline is removed.
    let v = Vault::new();
    let key = v.create_key(&[]);
    let download = |pw: &str| {
        let p = v.path("new.pw");
        std::fs::write(&p, pw).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let kf = v.path("new.vaultkey");
        let mut args = vec!["keys", "download", "--id", &key, "--file", s(&kf)];
        args.extend(["--password-file", s(&p)]);
        args.extend(FAST_KDF);
        v.run(&args)
    };
    for short in ["1234567\n", "1234567", "ééééééé", "1234567\r\n"] {
        let out = download(short);
        assert_eq!(out.status.code(), Some(2), "{short:?} accepted");
    }
    for long_enough in ["12345678\n", "éééééééé", "1234567\r"] {
        let out = download(long_enough);
        assert!(
            out.status.success(),
            "{long_enough:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

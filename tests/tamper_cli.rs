//! Issue 12's tamper matrix through the product's own binary: tampered copies of a v2
//! archive sealed by `vault backup create` (single-bit flips sampled in every field of
//! every region, and the structural edits: slot swap, slots and a trailer copied from
//! another archive, forged empty slots, chunk swap and drop, truncation at every chunk
//! boundary, header splice) are written into one directory. ONE `vault audit archives
//! DIR --trust PUB --verify` must report every copy with a finding (none ok, none
//! verified), so must one keyless `--trust` sweep from a home holding no key at all, and
//! `vault backup verify --file` must refuse each copy.
//!
//! Default: the first and last byte and four seeded random bytes of every field (fewer
//! where a field is shorter), one random bit each: about 190 copies, a few seconds.
//! `VAULT_TAMPER_CLI_PER_FIELD=N` samples N bytes per field; `VAULT_TAMPER_CLI_SEED=N`
//! replays another sample; `VAULT_TAMPER_CLI_ALL=1` flips every bit of every byte (about
//! half a million copies and as many verify processes: hours, for a manual run).
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

const CHUNK: usize = 16_384;
/// An encrypted chunk: plaintext and its 16-byte tag.
const ENC_CHUNK: usize = CHUNK + 16;
const SLOT: usize = 256;
const SECRET_BLOCK: usize = 2 + 256 + 16;
const COMMITMENT: usize = 32;
const TRAILER: usize = 208;

/// Byte ranges of a v2 archive with header length `h` and total length `n` (SECURITY.md
/// v2 §1): every field, named.
fn fields(h: usize, n: usize) -> Vec<(String, std::ops::Range<usize>)> {
    let mut f: Vec<(String, std::ops::Range<usize>)> = vec![
        ("magic".into(), 0..8),
        ("version".into(), 8..10),
        ("flags".into(), 10..12),
        ("header-length".into(), 12..16),
        ("header".into(), 16..16 + h),
        ("salt".into(), 16 + h..40 + h),
    ];
    let slot_fields = [
        ("generation", 0..4),
        ("key-id", 4..20),
        ("nonce", 20..32),
        ("wrapped-key", 32..80),
        ("allowed-other", 80..112),
        ("region-mac", 112..144),
        ("signer", 144..176),
        ("signature", 176..240),
        ("reserved", 240..256),
    ];
    let s0 = 40 + h;
    for (name, r) in slot_fields {
        f.push((format!("slot0-{name}"), s0 + r.start..s0 + r.end));
    }
    f.push(("slot1-empty".into(), s0 + SLOT..s0 + 2 * SLOT));
    let secret = s0 + 2 * SLOT;
    f.push(("secret-block".into(), secret..secret + SECRET_BLOCK));
    let payload = secret + SECRET_BLOCK;
    f.push(("commitment".into(), payload..payload + COMMITMENT));
    let chunks = payload + COMMITMENT;
    let trailer = n - TRAILER;
    let mut c = chunks;
    let mut k = 0;
    while c < trailer {
        let end = (c + ENC_CHUNK).min(trailer);
        f.push((format!("chunk{k}"), c..end));
        c = end;
        k += 1;
    }
    let trailer_fields = [
        ("magic", 0..8),
        ("size", 8..16),
        ("plaintext-sha256", 16..48),
        ("ciphertext-blake3", 48..80),
        ("mac", 80..112),
        ("signer", 112..144),
        ("signature", 144..208),
    ];
    for (name, r) in trailer_fields {
        f.push((
            format!("trailer-{name}"),
            trailer + r.start..trailer + r.end,
        ));
    }
    f
}

fn header_len(b: &[u8]) -> usize {
    u32::from_be_bytes(b[12..16].try_into().unwrap()) as usize
}

fn sealed(v: &Vault, size: usize, seed: u64, description: &str) -> Vec<u8> {
    let input = v.path(&format!("input-{seed}.bin"));
    std::fs::write(&input, bytes(size, seed)).unwrap();
    let id = v.ok(&[
        "backup",
        "create",
        "--file",
        s(&input),
        "--description",
        description,
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::read(v.home.join("archives").join(format!("{id}.vault"))).unwrap()
}

/// Fills the empty slot 1 with a well-formed forged slot naming `claim` (next
/// generation, the keyless hint recomputed), as an attacker without any key can.
fn forge_empty_slot(b: &[u8], claim: uuid::Uuid) -> Vec<u8> {
    use sha2::Digest;
    let mut b = b.to_vec();
    let h = header_len(&b);
    let (s0, s1) = (40 + h, 40 + h + SLOT);
    let generation = u32::from_be_bytes(b[s0..s0 + 4].try_into().unwrap()) + 1;
    let mut slot = bytes(SLOT, 7919);
    slot[0..4].copy_from_slice(&generation.to_be_bytes());
    slot[4..20].copy_from_slice(claim.as_bytes());
    let hint: [u8; 32] = sha2::Sha256::digest(&b[s0..s0 + SLOT]).into();
    slot[80..112].copy_from_slice(&hint);
    slot[240..].fill(0);
    b[s1..s1 + SLOT].copy_from_slice(&slot);
    b
}

/// The structural edits of the matrix, each named.
fn structural(a: &[u8], donor: &[u8], home_key: uuid::Uuid) -> Vec<(String, Vec<u8>)> {
    let (h, hd, n) = (header_len(a), header_len(donor), a.len());
    let (s0, s1) = (40 + h, 40 + h + SLOT);
    let d0 = 40 + hd;
    let payload = s1 + SLOT + SECRET_BLOCK;
    let chunks = payload + COMMITMENT;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut swapped = a.to_vec();
    swapped.copy_within(s0..s0 + SLOT, s1);
    swapped[s0..s0 + SLOT].fill(0);
    out.push(("slot-swap".into(), swapped));
    for (what, at) in [("slot0", s0), ("slot1", s1)] {
        let mut copied = a.to_vec();
        copied[at..at + SLOT].copy_from_slice(&donor[d0..d0 + SLOT]);
        out.push((format!("{what}-from-another-archive"), copied));
    }
    out.push(("forged-slot-home-key".into(), forge_empty_slot(a, home_key)));
    out.push((
        "forged-slot-stranger-key".into(),
        forge_empty_slot(a, uuid::Uuid::new_v4()),
    ));
    let mut swapped = a.to_vec();
    let (x, y) = swapped[chunks..chunks + 2 * ENC_CHUNK].split_at_mut(ENC_CHUNK);
    x.swap_with_slice(y);
    out.push(("chunk-swap".into(), swapped));
    let mut dropped = a[..chunks + ENC_CHUNK].to_vec();
    dropped.extend_from_slice(&a[chunks + 2 * ENC_CHUNK..]);
    out.push(("chunk-drop".into(), dropped));
    out.push(("cut-before-commitment".into(), a[..payload].to_vec()));
    let mut k = 0;
    while chunks + k * ENC_CHUNK < n - TRAILER {
        out.push((
            format!("cut-at-chunk{k}"),
            a[..chunks + k * ENC_CHUNK].to_vec(),
        ));
        k += 1;
    }
    out.push(("cut-before-trailer".into(), a[..n - TRAILER].to_vec()));
    out.push(("cut-in-trailer".into(), a[..n - 1].to_vec()));
    let mut spliced = donor[..16 + hd].to_vec();
    spliced.extend_from_slice(&a[16 + h..]);
    out.push(("header-splice".into(), spliced));
    let mut trailer = a[..n - TRAILER].to_vec();
    trailer.extend_from_slice(&donor[donor.len() - TRAILER..]);
    out.push(("trailer-from-another-archive".into(), trailer));
    out
}

/// The single-bit flips: a sample of every field, or every bit with the knob.
fn flips(a: &[u8], seed: u64, all: bool) -> Vec<(String, Vec<u8>)> {
    let per_field = env_u64("VAULT_TAMPER_CLI_PER_FIELD", 6).max(2);
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for (name, r) in fields(header_len(a), a.len()) {
        let mut at: Vec<usize> = if all {
            r.clone().collect()
        } else {
            let len = r.len() as u64;
            let mut at = vec![r.start, r.end - 1];
            at.extend((2..per_field).map(|_| r.start + rng.below(len) as usize));
            at
        };
        at.sort_unstable();
        at.dedup();
        for i in at {
            let bits: Vec<u8> = if all {
                (0..8).collect()
            } else {
                vec![(rng.below(8)) as u8]
            };
            for bit in bits {
                let mut b = a.to_vec();
                b[i] ^= 1 << bit;
                out.push((format!("flip-{name}-{i}.{bit}"), b));
            }
        }
    }
    out
}

/// A sweep's exit code, and per file name its finding codes and `verified`.
type Swept = (Option<i32>, BTreeMap<String, (Vec<String>, Value)>);

/// The sweep's findings per file name.
fn swept(v: &Vault, dir: &Path, extra: &[&str]) -> Swept {
    let mut args = vec!["audit", "archives", s(dir)];
    args.extend_from_slice(extra);
    let out = v.run(&args);
    let rep: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let mut files = BTreeMap::new();
    for a in rep["archives"].as_array().unwrap() {
        let name = Path::new(a["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let codes = a["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["code"].as_str().unwrap().to_string())
            .collect();
        files.insert(name, (codes, a["verified"].clone()));
    }
    (out.status.code(), files)
}

/// Findings that say "this file is not an intact archive" (`is_integrity_failure`), and
/// the one that says "a newer vault may read it" (a flipped version field).
const INTEGRITY: [&str; 7] = [
    "unreadable",
    "not-an-archive",
    "malformed",
    "truncated",
    "authentication-failed",
    "signature-invalid",
    "name-id-mismatch",
];

fn check_sweep(what: &str, result: Swept, names: &[String]) {
    let (code, files) = result;
    assert_eq!(code, Some(5), "{what}: integrity failures exit 5");
    assert_eq!(files.len(), names.len(), "{what}: every copy reported");
    for n in names {
        let (codes, verified) = &files[n];
        assert_ne!(verified, &Value::Bool(true), "{what}: {n} verified");
        let version_flip = n.contains("-flip-version-");
        let found = codes.iter().any(|c| INTEGRITY.contains(&c.as_str()))
            || (version_flip && codes.iter().any(|c| c == "unsupported-version"));
        assert!(found, "{what}: {n} not found tampered: {codes:?}");
    }
}

#[test]
fn every_tampered_copy_is_found_by_one_sweep_and_refused_by_verify() {
    let all = std::env::var("VAULT_TAMPER_CLI_ALL").is_ok_and(|v| v == "1");
    let seed = env_u64("VAULT_TAMPER_CLI_SEED", 0x7a3e_5eed);
    let v = Vault::new();
    let key = uuid::Uuid::parse_str(&v.create_key(&[])).unwrap();
    let a = sealed(&v, 4 * CHUNK + 10, 31, "tamper matrix");
    let donor = sealed(&v, 4 * CHUNK + 10, 32, "another archive, longer header");
    let pk = v.path("home.pub");
    v.ok(&["home", "public-key", "--file", s(&pk)]);

    // The control: the genuine copy passes every check the tampered ones must fail.
    let control = v.path("control");
    std::fs::create_dir(&control).unwrap();
    std::fs::write(control.join("genuine.vault"), &a).unwrap();
    let (code, files) = swept(&v, &control, &["--trust", s(&pk), "--verify"]);
    assert_eq!(code, Some(0));
    assert_eq!(files["genuine.vault"], (vec![], Value::Bool(true)));
    v.ok(&[
        "backup",
        "verify",
        "--file",
        s(&control.join("genuine.vault")),
    ]);

    let dir = v.path("tampered");
    std::fs::create_dir(&dir).unwrap();
    let mut cases = structural(&a, &donor, key);
    cases.extend(flips(&a, seed, all));
    let mut names = Vec::new();
    for (i, (what, b)) in cases.iter().enumerate() {
        assert_ne!(b, &a, "{what} changed nothing");
        let name = format!("{i:06}-{what}.vault");
        std::fs::write(dir.join(&name), b).unwrap();
        names.push(name);
    }
    println!(
        "{} tampered copies ({} structural), seed {seed:#x}",
        names.len(),
        names.len() - flips(&a, seed, all).len()
    );

    check_sweep(
        "--trust --verify",
        swept(&v, &dir, &["--trust", s(&pk), "--verify"]),
        &names,
    );
    // Keyless: a home with no backup key at all, only the public key.
    let keyless = Vault::new();
    check_sweep(
        "keyless --trust",
        swept(&keyless, &dir, &["--trust", s(&pk)]),
        &names,
    );

    let mut exits: BTreeMap<i32, usize> = BTreeMap::new();
    for n in &names {
        let out = v.run(&["backup", "verify", "--file", s(&dir.join(n))]);
        let code = out.status.code().expect("verify was not killed");
        assert!(
            [2, 3, 5, 6].contains(&code),
            "verify of {n} exited {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "verify of {n} printed a result");
        *exits.entry(code).or_default() += 1;
    }
    println!("backup verify --file exit codes: {exits:?}");
}

//! Issue 12: the upgrade of a format 1 archive to format 2 by `backup rewrap` is
//! crash-safe. The real binary is SIGKILLed at random instants while it upgrades a
//! multi-MiB v1 archive (a re-encryption into a temporary file renamed over the archive);
//! after every run the archive must be exactly the old v1 file or a complete v2 archive
//! that verifies to the same plaintext, never missing, never partial.
//!
//! The v1 archive is written here from SECURITY.md's "Archive format, version 1" (vault
//! no longer writes format 1), under a key of the home, so the test also checks that the
//! v1 specification still describes what vault reads.
//!
//! A kill that lands before the upgrade wrote anything proves little, so kills are
//! classified: a temporary in `archives/` (the re-encryption was being written) or the
//! file already replaced (killed after the rename, e.g. before the audit record). The
//! campaign needs `VAULT_UPGRADE_MIN_MIDWRITE` (default: a quarter of the kills) kills
//! with a temporary present. Default: 24 kills on a 6 MiB archive
//! (`VAULT_UPGRADE_KILLS`, `VAULT_UPGRADE_MIB`, `VAULT_UPGRADE_SEED`).
mod common;

use std::path::Path;
use std::time::Duration;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use common::*;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

fn gcm_seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut buf = msg.to_vec();
    let tag = Aes256Gcm::new(key.into())
        .encrypt_inout_detached(nonce.into(), aad, buf.as_mut_slice().into())
        .unwrap();
    buf.extend_from_slice(&tag);
    buf
}

fn hmac512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// A format 1 archive of `plaintext` under backup key (`key_id`, `bk`), per SECURITY.md
/// v1 §§1–5 and §7.
fn seal_v1(
    archive_id: &uuid::Uuid,
    key_id: &uuid::Uuid,
    bk: &[u8; 32],
    plaintext: &[u8],
) -> Vec<u8> {
    let header = format!(
        r#"{{"id":"{archive_id}","scope":"system","createdAt":"2026-01-02T03:04:05Z","creatorAccount":"uid:0","description":"v1 archive for the upgrade campaign","productVersion":"0.1.0","chunkSize":16384,"cipher":"cobblestone-256"}}"#
    );
    let mut out = b"VAULTARC".to_vec();
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header.as_bytes());
    let header_hash: [u8; 32] = Sha256::digest(&out).into();
    let dk: [u8; 32] = rand::random();
    let salt: [u8; 24] = rand::random();
    let nonce: [u8; 12] = rand::random();
    out.extend_from_slice(&salt);
    // Slot 0: generation 1; slot 1 empty.
    let mut slot = Vec::with_capacity(128);
    slot.extend_from_slice(&1u32.to_be_bytes());
    slot.extend_from_slice(key_id.as_bytes());
    slot.extend_from_slice(&nonce);
    let aad = [
        &b"vault.archive.v1 keyslot"[..],
        archive_id.as_bytes(),
        key_id.as_bytes(),
        &1u32.to_be_bytes(),
        &header_hash,
    ]
    .concat();
    slot.extend_from_slice(&gcm_seal(bk, &nonce, &aad, &dk));
    slot.extend_from_slice(&[0u8; 16]);
    let hint: [u8; 32] = Sha256::digest(&slot).into();
    slot.extend_from_slice(&hint);
    out.extend_from_slice(&slot);
    out.extend_from_slice(&[0u8; 128]);
    // Cobblestone-256.
    let context = [&b"vault.archive.v1"[..], &header_hash].concat();
    let info = [
        &b"c2sp.org/chunked-encryption@v1+"[..],
        b"AEAD_AES_256_GCM",
        &[0],
        &salt,
        &context,
    ]
    .concat();
    let t1 = hmac512(&dk, &[&info, &[1]]);
    let t2 = hmac512(&dk, &[&t1, &info, &[2]]);
    let okm = [&t1[..], &t2[..]].concat();
    let ck: [u8; 32] = okm[..32].try_into().unwrap();
    out.extend_from_slice(&okm[44..76]);
    let full = plaintext.len() / 16384;
    for k in 0..=full {
        let chunk = &plaintext[k * 16384..(k * 16384 + 16384).min(plaintext.len())];
        let mut n: [u8; 12] = okm[32..44].try_into().unwrap();
        for (b, c) in n[4..].iter_mut().zip((k as u64).to_be_bytes()) {
            *b ^= c;
        }
        out.extend_from_slice(&gcm_seal(&ck, &n, &[], chunk));
    }
    // Trailer.
    let sha: [u8; 32] = Sha256::digest(plaintext).into();
    let mut mk = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(&salt), &dk)
        .expand(b"vault.archive.v1 trailer", &mut mk)
        .unwrap();
    let size = (plaintext.len() as u64).to_be_bytes();
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&mk).unwrap();
    m.update(&header_hash);
    m.update(&size);
    m.update(&sha);
    out.extend_from_slice(b"VAULTEND");
    out.extend_from_slice(&size);
    out.extend_from_slice(&sha);
    out.extend_from_slice(&m.finalize().into_bytes());
    out
}

fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

#[test]
fn upgrade_by_rewrap_survives_sigkill_old_or_new_never_lost() {
    let target_kills = env_u64("VAULT_UPGRADE_KILLS", 24);
    let mib = env_u64("VAULT_UPGRADE_MIB", 6);
    let seed = campaign_seed("VAULT_UPGRADE_SEED");
    println!("upgrade kill campaign: seed {seed}, {mib} MiB");
    let mut rng = seed | 1;
    let mut below = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n.max(1)
    };

    let v = Vault::new();
    let old_key = v.create_key(&[]);
    let home = vault::keystore::Home::open(&v.home).unwrap();
    let old_uuid = uuid::Uuid::parse_str(&old_key).unwrap();
    let (_, material) = vault::keystore::KeyStore::new(&home)
        .material(&old_uuid, false)
        .unwrap();
    let plaintext = bytes((mib as usize) << 20, seed);
    let plain_sha = hex::encode(Sha256::digest(&plaintext));
    let id = uuid::Uuid::new_v4();
    let v1 = seal_v1(&id, &old_uuid, material.expose(), &plaintext);
    drop(plaintext);
    let src = v.path("v1.vault");
    std::fs::write(&src, &v1).unwrap();
    // The spec-written v1 archive is accepted as v1 and opens.
    v.ok(&["backup", "upload", "--file", s(&src)]);
    let id = id.to_string();
    let i = v.ok(&["backup", "get", "--id", &id]);
    assert_eq!(i["version"], "1", "{i}");
    assert_eq!(
        v.ok(&["backup", "verify", "--id", &id])["checksum"],
        plain_sha
    );
    let new_key = v.create_key(&["--default"]);
    let dir = v.home.join("archives");
    let path = dir.join(format!("{id}.vault"));
    let args = ["backup", "rewrap", "--id", &id, "--key", &new_key];

    let run = |delay: Option<Duration>| run_killed_after(&v.home, &args, delay);
    // Puts the v1 archive back (as a copy would), outside the binary.
    let reset = || {
        let t = dir.join("v1-reset");
        std::fs::write(&t, &v1).unwrap();
        std::fs::rename(&t, &path).unwrap();
    };
    // One un-killed upgrade: how long it takes (aims the kills), and that it upgrades.
    let (_, mut estimate) = run(None);
    assert_eq!(v.ok(&["backup", "get", "--id", &id])["version"], "2");

    let min_midwrite = env_u64("VAULT_UPGRADE_MIN_MIDWRITE", target_kills / 4);
    let (mut runs, mut kills, mut midwrite, mut after_rename, mut stayed_v1) = (0, 0, 0, 0, 0);
    let mut bad = Vec::new();
    while (kills < target_kills || midwrite < min_midwrite) && runs < target_kills * 10 {
        reset();
        let before = temps(&dir);
        let est = estimate.as_micros() as u64;
        let delay = Duration::from_micros(below(est + est / 4));
        let (killed, took) = run(Some(delay));
        runs += 1;
        if !killed {
            estimate = took;
        }
        kills += u64::from(killed);
        // Look before anything else runs (a locked operation removes dead temporaries).
        let new_temps = temps(&dir).into_iter().any(|t| !before.contains(&t));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                bad.push(format!("run {runs}: the archive is gone: {e}"));
                continue;
            }
        };
        let is_old = bytes == v1;
        if killed {
            midwrite += u64::from(new_temps);
            after_rename += u64::from(!is_old);
            stayed_v1 += u64::from(is_old);
        }
        if !is_old {
            // The new archive: format 2, complete, under the new key, same plaintext.
            let i = v.ok(&["backup", "get", "--id", &id]);
            let out = v.run(&["backup", "verify", "--id", &id]);
            let verified: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or_default();
            if i["version"] != "2"
                || !out.status.success()
                || verified["checksum"] != plain_sha
                || verified["backupKeyId"] != new_key.as_str()
            {
                bad.push(format!(
                    "run {runs} (killed {killed} after {delay:?}): neither the old v1 file nor a good v2 archive: {i} {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let listed = v.ok(&["backup", "list"]);
        if listed["total"] != 1 {
            bad.push(format!("run {runs}: backup list shows {}", listed["total"]));
        }
    }
    // A locked operation removes what killed runs left in archives/.
    v.create_key(&[]);
    let left = temps(&dir);
    println!(
        "upgrade kill campaign: runs {runs}, kills {kills}, with a temporary being written {midwrite}, \
         killed after the rename {after_rename}, left as v1 {stayed_v1}, problems {}",
        bad.len()
    );
    assert!(bad.is_empty(), "seed {seed}: {bad:#?}");
    assert!(
        left.is_empty(),
        "temporaries survived a locked operation: {left:?}"
    );
    assert!(kills >= target_kills, "only {kills} kills in {runs} runs");
    assert!(
        midwrite >= min_midwrite,
        "only {midwrite} of {kills} kills hit the upgrade while it was writing (minimum {min_midwrite})"
    );
    assert!(stayed_v1 > 0, "no kill left the v1 archive in place");
}

//! A second reader of archive format 2 and key-file format 1, written from SECURITY.md
//! ("Key file format, version 1" and "Archive format, version 2") alone: it uses no
//! parsing, key-derivation or cipher code of vault, only the primitives the spec names
//! (SHA-256, HMAC, HKDF, AES-256-GCM, Argon2id, Ed25519, BLAKE3) and the byte offsets
//! the spec gives. It opens every committed `fixtures/v2/` archive with the committed
//! key files; if vault and its specification ever disagree, this test fails.
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

const PASSWORD: &[u8] = b"vault fixture password v2";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .unwrap()
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes(b[..2].try_into().unwrap())
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}
fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    b[..N].try_into().unwrap()
}
fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}
fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}
/// HKDF-SHA-256, Extract then Expand to 32 bytes; `salt: None` = 32 zero bytes.
fn hkdf256(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, &mut out)
        .unwrap();
    out
}
/// AES-256-GCM open of `ct || tag` (tag = last 16 bytes).
fn gcm_open(key: &[u8; 32], nonce: &[u8], aad: &[u8], ct_tag: &[u8]) -> Option<Vec<u8>> {
    let (ct, tag) = ct_tag.split_at(ct_tag.len() - 16);
    let mut buf = ct.to_vec();
    let nonce: &[u8; 12] = nonce.try_into().unwrap();
    let tag: &[u8; 16] = tag.try_into().unwrap();
    Aes256Gcm::new(key.into())
        .decrypt_inout_detached(nonce.into(), aad, buf.as_mut_slice().into(), tag.into())
        .ok()?;
    Some(buf)
}
fn uuid_bytes(s: &str) -> [u8; 16] {
    arr(&hex::decode(s.replace('-', "")).unwrap())
}

/// A backup key as a home records it: id, scope byte input and material.
#[derive(Clone)]
struct Key {
    id: [u8; 16],
    domain: Option<String>,
    material: [u8; 32],
}

/// Key file format 1, steps 1–7 of the spec.
fn open_key_file(bytes: &[u8], password: &[u8]) -> Key {
    assert_eq!(&bytes[..8], b"VAULTKEY");
    assert_eq!(be16(&bytes[8..]), 1);
    let m = be32(&bytes[10..]) as usize;
    assert_eq!(bytes.len(), 14 + m + 16 + 12 + 32 + 16 + 32);
    assert_eq!(sha256(&[&bytes[..90 + m]]), arr::<32>(&bytes[90 + m..]));
    let meta: serde_json::Value = serde_json::from_slice(&bytes[14..14 + m]).unwrap();
    let kdf = &meta["kdf"];
    assert_eq!(kdf["algorithm"], "argon2id");
    assert_eq!(kdf["argon2Version"], 19);
    let salt = B64.decode(kdf["salt"].as_str().unwrap()).unwrap();
    let n = |f: &str| u32::try_from(kdf[f].as_u64().unwrap()).unwrap();
    let params =
        argon2::Params::new(n("memoryKib"), n("iterations"), n("parallelism"), Some(32)).unwrap();
    let mut k = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(password, &salt, &mut k)
        .unwrap();
    let prk = hkdf::Hkdf::<Sha256>::from_prk(&k).unwrap();
    let mut check = [0u8; 16];
    prk.expand(b"vault.keyfile.v1 password-check", &mut check)
        .unwrap();
    assert_eq!(check, arr::<16>(&bytes[14 + m..]), "wrong password");
    let mut wrap = [0u8; 32];
    prk.expand(b"vault.keyfile.v1 wrap", &mut wrap).unwrap();
    let material = gcm_open(
        &wrap,
        &bytes[30 + m..42 + m],
        &bytes[..14 + m],
        &bytes[42 + m..90 + m],
    )
    .expect("the wrapped key authenticates");
    Key {
        id: uuid_bytes(meta["keyid"].as_str().unwrap()),
        domain: match meta["scope"].as_str().unwrap() {
            "system" => None,
            "domain" => Some(meta["domainID"].as_str().unwrap().to_string()),
            s => panic!("scope {s}"),
        },
        material: arr(&material),
    }
}

/// What a successful open gives.
struct Opened {
    header: serde_json::Value,
    plaintext: Vec<u8>,
    secret: Vec<u8>,
    /// Public keys that signed the occupied slots and the trailer.
    signers: Vec<[u8; 32]>,
    /// (slot index, generation) of the slot that opened.
    opened_slot: (usize, u32),
}

fn verify_sig(public: &[u8], sig: &[u8], message: &[&[u8]]) -> Result<(), String> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&arr(public)).map_err(|e| e.to_string())?;
    let sig = ed25519_dalek::Signature::from_bytes(&arr(sig));
    vk.verify_strict(&message.concat(), &sig)
        .map_err(|e| format!("signature: {e}"))
}

/// Archive format 2, "v2 §7 Reading", with the keys of a home.
fn open_v2(b: &[u8], keys: &[Key]) -> Result<Opened, String> {
    let err = |m: &str| Err(m.to_string());
    if b.len() < 16 || &b[..8] != b"VAULTARC" {
        return err("not an archive");
    }
    if be16(&b[8..]) != 2 || be16(&b[10..]) != 0 {
        return err("version or flags");
    }
    let h = be32(&b[12..]) as usize;
    if h == 0 || h > 65536 || b.len() < 826 + h + 32 + 16 + 208 {
        return err("length");
    }
    let header: serde_json::Value =
        serde_json::from_slice(&b[16..16 + h]).map_err(|e| e.to_string())?;
    let header_hash = sha256(&[&b[..16 + h]]);
    let salt = &b[16 + h..40 + h];
    let slots = [&b[40 + h..296 + h], &b[296 + h..552 + h]];
    let secret_block = &b[552 + h..826 + h];
    let payload = &b[826 + h..b.len() - 208];
    let trailer = &b[b.len() - 208..];
    let signed_hash = sha256(&[&b[..40 + h], secret_block]);
    let archive_id = uuid_bytes(header["id"].as_str().unwrap());
    let (scope, domain) = (header["scope"].as_str().unwrap(), &header["domainID"]);

    // v2 §3: classification and the region rule.
    let empty = |s: &[u8]| s.iter().all(|&x| x == 0);
    let occupied: Vec<usize> = (0..2).filter(|&i| !empty(slots[i])).collect();
    for &i in &occupied {
        if be32(slots[i]) == 0 || !empty(&slots[i][240..]) {
            return err("damaged slot");
        }
    }
    let newest = match occupied.as_slice() {
        [] => return err("both slots empty"),
        [i] => *i,
        _ => {
            let (g0, g1) = (be32(slots[0]), be32(slots[1]));
            if g0 == g1 {
                return err("equal generations");
            }
            usize::from(g1 > g0)
        }
    };
    let other = 1 - newest;
    if !empty(slots[other]) && slots[newest][80..112] != sha256(&[slots[other]]) {
        return err("the newest slot does not vouch for the other");
    }

    // v2 §7.4: every slot whose key is here must open, to the same DK.
    let mut by_generation = occupied.clone();
    by_generation.sort_by_key(|&i| std::cmp::Reverse(be32(slots[i])));
    let mut dk: Option<([u8; 32], usize)> = None;
    for &i in &by_generation {
        let s = slots[i];
        let Some(key) = keys.iter().find(|k| k.id == s[4..20]) else {
            continue;
        };
        let fits = match (&key.domain, scope) {
            (None, "system") => true,
            (Some(d), "domain") => domain.as_str() == Some(d.as_str()),
            _ => false,
        };
        if !fits {
            return err("scope mismatch");
        }
        let kek = kek(&key.material, key.domain.as_deref());
        let aad = slot_aad(&archive_id, s, i, &header_hash);
        let Some(k) = gcm_open(&kek, &s[20..32], &aad, &s[32..80]) else {
            return err("a slot whose key is here does not open");
        };
        match dk {
            None => dk = Some((arr(&k), i)),
            Some((d, _)) if d[..] == k[..] => {}
            Some(_) => return err("slots wrap different data keys"),
        }
    }
    let Some((dk, opened)) = dk else {
        return err("key unavailable");
    };

    // v2 §7.5: region MACs, the secret block, slot signatures.
    let rk = hkdf256(&dk, Some(salt), b"vault.archive.v2 slot-region");
    let mut signers = Vec::new();
    for &i in &occupied {
        let s = slots[i];
        if hmac256(&rk, &[&header_hash, salt, &[i as u8], &s[..112]]) != s[112..144] {
            return err("region MAC");
        }
    }
    let sk = hkdf256(&dk, Some(salt), b"vault.archive.v2 secret");
    let secret_plain = gcm_open(
        &sk,
        &[0u8; 12],
        &[&b"vault.archive.v2 secret"[..], &header_hash, salt].concat(),
        secret_block,
    )
    .ok_or("secret block")?;
    let len = be16(&secret_plain) as usize;
    if len > 256 || secret_plain[2 + len..].iter().any(|&x| x != 0) {
        return err("secret padding");
    }
    for &i in &occupied {
        let s = slots[i];
        if !empty(&s[144..240]) {
            verify_sig(
                &s[144..176],
                &s[176..240],
                &[
                    b"vault.archive.v2 slot-signature",
                    &signed_hash,
                    &[i as u8],
                    &s[..176],
                ],
            )?;
            signers.push(arr(&s[144..176]));
        }
    }

    // v2 §4 (v1 §4 with the v2 context): Cobblestone-256.
    let context = [&b"vault.archive.v2"[..], &header_hash].concat();
    let info = [
        &b"c2sp.org/chunked-encryption@v1+"[..],
        b"AEAD_AES_256_GCM",
        &[0],
        salt,
        &context,
    ]
    .concat();
    let t1 = hmac512(&dk, &[&info, &[1]]);
    let t2 = hmac512(&dk, &[&t1, &info, &[2]]);
    let okm = [&t1[..], &t2[..]].concat();
    let (ck, base_nonce, commitment) = (arr::<32>(&okm), &okm[32..44], &okm[44..76]);
    if payload[..32] != *commitment {
        return err("commitment");
    }
    let chunks = &payload[32..];
    let mut plaintext = Vec::new();
    let full = chunks.len() / 16400;
    let last = chunks.len() % 16400;
    if last < 16 {
        return err("truncated: no final chunk");
    }
    for k in 0..=full {
        let piece = &chunks[k * 16400..(k * 16400 + 16400).min(chunks.len())];
        let mut nonce = arr::<12>(base_nonce);
        for (n, c) in nonce[4..].iter_mut().zip((k as u64).to_be_bytes()) {
            *n ^= c;
        }
        plaintext.extend(gcm_open(&ck, &nonce, &[], piece).ok_or(format!("chunk {k}"))?);
    }

    // v2 §6: the trailer.
    if &trailer[..8] != b"VAULTEND" {
        return err("trailer magic");
    }
    let tk = hkdf256(&dk, Some(salt), b"vault.archive.v2 trailer");
    if hmac256(&tk, &[&header_hash, salt, &trailer[8..80]]) != trailer[80..112] {
        return err("trailer MAC");
    }
    if be64(&trailer[8..]) != plaintext.len() as u64 || sha256(&[&plaintext]) != trailer[16..48] {
        return err("size or SHA-256");
    }
    if blake3::hash(payload).as_bytes()[..] != trailer[48..80] {
        return err("ciphertext digest");
    }
    if !empty(&trailer[112..208]) {
        verify_sig(
            &trailer[112..144],
            &trailer[144..208],
            &[
                b"vault.archive.v2 trailer-signature",
                &signed_hash,
                &trailer[..144],
            ],
        )?;
        signers.push(arr(&trailer[112..144]));
    }
    Ok(Opened {
        header,
        plaintext,
        secret: secret_plain[2..2 + len].to_vec(),
        signers,
        opened_slot: (opened, be32(slots[opened])),
    })
}

/// v2 §3: the key-encryption key, from the scope and domain the home records.
fn kek(material: &[u8; 32], domain: Option<&str>) -> [u8; 32] {
    let mut info = b"vault.archive.v2 kek".to_vec();
    match domain {
        None => info.push(1),
        Some(d) => {
            info.push(2);
            info.extend_from_slice(d.as_bytes());
        }
    }
    hkdf256(material, None, &info)
}

fn slot_aad(archive_id: &[u8; 16], slot: &[u8], index: usize, header_hash: &[u8]) -> Vec<u8> {
    [
        &b"vault.archive.v2 keyslot"[..],
        archive_id,
        &slot[4..20],
        &slot[0..4],
        &[index as u8],
        header_hash,
    ]
    .concat()
}

fn hmac512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn home_public_key() -> [u8; 32] {
    let text = String::from_utf8(fixture("v2/home.pub")).unwrap();
    let b64 = text.trim_end().strip_prefix("vault-home-ed25519 ").unwrap();
    arr(&B64.decode(b64).unwrap())
}

#[test]
fn a_reader_written_from_the_spec_opens_every_v2_fixture() {
    let system = open_key_file(&fixture("v2/system-key.vaultkey"), PASSWORD);
    let domain = open_key_file(&fixture("v2/domain-key.vaultkey"), PASSWORD);
    assert_eq!(domain.domain.as_deref(), Some("lab"));
    let keys = [system.clone(), domain.clone()];
    let plaintext = fixture("v2/plaintext.bin");
    let home = home_public_key();
    for (file, expected, slot) in [
        ("v2/system.vault", &plaintext, (0, 1)),
        ("v2/domain.vault", &plaintext, (0, 1)),
        ("v2/rewrapped.vault", &plaintext, (1, 2)),
        ("v2/upgraded-v1.vault", &fixture("v1/plaintext.bin"), (0, 2)),
    ] {
        let o = open_v2(&fixture(file), &keys).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(o.plaintext == *expected, "{file}: plaintext differs");
        assert_eq!(o.opened_slot, slot, "{file}");
        assert!(o.secret.is_empty(), "{file}: no secret was sealed");
        // Two signatures (the occupied slot and the trailer), both by the home.
        assert_eq!(o.signers, vec![home, home], "{file}");
        assert!(o.header["id"].is_string());
    }
}

/// The reader is not a rubber stamp: it refuses what the spec says to refuse.
#[test]
fn the_spec_reader_refuses_tampering_and_a_key_of_the_wrong_scope() {
    let system = open_key_file(&fixture("v2/system-key.vaultkey"), PASSWORD);
    let domain = open_key_file(&fixture("v2/domain-key.vaultkey"), PASSWORD);
    let b = fixture("v2/domain.vault");
    let h = be32(&b[12..]) as usize;
    let flip = |at: usize| {
        let mut c = b.clone();
        c[at] ^= 1;
        c
    };
    let keys = [domain.clone()];
    for (what, at, expected) in [
        ("salt", 16 + h, "region MAC"),
        (
            "slot 0 wrap",
            40 + h + 40,
            "a slot whose key is here does not open",
        ),
        ("slot 0 MAC", 40 + h + 120, "region MAC"),
        ("slot 0 signature", 40 + h + 200, "signature"),
        ("empty slot 1", 296 + h + 7, "damaged slot"),
        ("secret block", 552 + h + 3, "secret block"),
        ("commitment", 826 + h, "commitment"),
        ("a chunk", 826 + h + 32 + 20_000, "chunk 1"),
        ("trailer digest", b.len() - 208 + 50, "trailer MAC"),
        ("trailer signature", b.len() - 1, "signature"),
    ] {
        let e = open_v2(&flip(at), &keys)
            .err()
            .unwrap_or_else(|| panic!("{what}"));
        assert!(e.contains(expected), "{what}: {e}");
    }
    // The domain key recorded as a system key (its material alone): the KEK differs.
    let as_system = Key {
        domain: None,
        ..domain.clone()
    };
    assert_eq!(open_v2(&b, &[as_system]).err().unwrap(), "scope mismatch");
    // The binding itself: the KEK derived for another domain (or for system) from the
    // same material does not unwrap the slot; the one for "lab" does.
    let header_hash = sha256(&[&b[..16 + h]]);
    let header: serde_json::Value = serde_json::from_slice(&b[16..16 + h]).unwrap();
    let id = uuid_bytes(header["id"].as_str().unwrap());
    let slot = &b[40 + h..296 + h];
    let aad = slot_aad(&id, slot, 0, &header_hash);
    let unwraps = |d: Option<&str>| {
        gcm_open(
            &kek(&domain.material, d),
            &slot[20..32],
            &aad,
            &slot[32..80],
        )
        .is_some()
    };
    assert!(unwraps(Some("lab")));
    assert!(!unwraps(Some("lab2")) && !unwraps(None));
    // At index 1 (the slots swapped) the AAD differs: it does not unwrap either.
    let moved = slot_aad(&id, slot, 1, &header_hash);
    assert!(
        gcm_open(
            &kek(&domain.material, Some("lab")),
            &slot[20..32],
            &moved,
            &slot[32..80]
        )
        .is_none()
    );
    // And the system key opens nothing of the domain archive (not its key).
    assert_eq!(open_v2(&b, &[system]).err().unwrap(), "key unavailable");
    let mut flags = b.clone();
    flags[11] = 1;
    assert_eq!(open_v2(&flags, &keys).err().unwrap(), "version or flags");
}

//! The password-protected key file (`vault keys download` / `upload`), format version 1.
//!
//! Layout (integers big-endian), specified byte for byte in SECURITY.md:
//! `"VAULTKEY" | version u16 | meta_len u32 | metadata JSON | check[16] | nonce[12] |
//! wrapped key[48] | SHA-256 of all preceding bytes[32]`.
//!
//! Invariants:
//! - The clear metadata is the GCM associated data, so editing it (scope, id, KDF cost)
//!   makes the unwrap fail even if the outer checksum is recomputed.
//! - The outer SHA-256 is checked first, without the password: accidental corruption and
//!   naive tampering are reported as such, never as "wrong password", and cost no KDF run.
//! - The password check value comes from the Argon2id output through HKDF with its own
//!   label, so it reveals nothing the GCM tag would not, and lets "wrong password" be told
//!   apart from "tampered" (check matches but GCM fails).
//! - Every length is bounded before allocation; KDF parameters are bounded before Argon2 runs.
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hkdf::Hkdf;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::kdf::{self, KdfError, KdfParams};
use super::{KeyState, Scope};
use crate::errors::{Classify, Kind};
use crate::secret::{Key32, Password};

pub const MAGIC: &[u8; 8] = b"VAULTKEY";
pub const CURRENT_VERSION: u16 = 1;
/// A reader of version N reads N-3..=N.
pub const MIN_READ_VERSION: u16 = if CURRENT_VERSION > 3 {
    CURRENT_VERSION - 3
} else {
    1
};
/// Metadata is a few hundred bytes; anything near this is hostile.
pub const MAX_META_LEN: usize = 16 * 1024;
pub const MAX_FILE_LEN: usize = 14 + MAX_META_LEN + 16 + 12 + 48 + 32;

const CHECK_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const WRAPPED_LEN: usize = 48;
const SUM_LEN: usize = 32;
const PREFIX_LEN: usize = 8 + 2 + 4;
const LABEL_CHECK: &[u8] = b"vault.keyfile.v1 password-check";
const LABEL_WRAP: &[u8] = b"vault.keyfile.v1 wrap";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Zero bytes (the same words as `EnvelopeError::Empty`).
    #[error(
        "the file is empty (0 bytes), so it is not a vault key file; an interrupted copy or download leaves this, use a complete copy"
    )]
    Empty,
    #[error("this is not a vault key file (bad magic bytes)")]
    NotAKeyFile,
    #[error(
        "key file format version {found} is newer than this vault supports (max {CURRENT_VERSION}); upgrade vault"
    )]
    TooNew { found: u16 },
    #[error(
        "key file format version {found} is too old for this vault (oldest readable: {MIN_READ_VERSION}); import it with an older vault release and export it again"
    )]
    TooOld { found: u16 },
    #[error("key file is truncated or corrupted ({0}); get a complete copy from its source")]
    Truncated(&'static str),
    #[error("key file is corrupted or tampered ({0}); get a fresh copy from its source")]
    Corrupted(&'static str),
    #[error("wrong password for this key file")]
    WrongPassword,
    #[error(transparent)]
    Kdf(#[from] KdfError),
}

impl Classify for KeyFileError {
    fn kind(&self) -> Kind {
        match self {
            KeyFileError::Empty | KeyFileError::NotAKeyFile => Kind::Usage,
            KeyFileError::TooNew { .. } | KeyFileError::TooOld { .. } => Kind::Unsupported,
            KeyFileError::Truncated(_) | KeyFileError::Corrupted(_) => Kind::Integrity,
            KeyFileError::WrongPassword => Kind::Auth,
            KeyFileError::Kdf(KdfError::TooCostly { .. }) => Kind::Unsupported,
            KeyFileError::Kdf(KdfError::CostlyImport { .. }) => Kind::Refused,
            KeyFileError::Kdf(KdfError::TooWeak { .. }) => Kind::Usage,
            KeyFileError::Kdf(KdfError::Argon2(_)) => Kind::Internal,
        }
    }
}

/// The `kdf` object of the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdfInfo {
    /// Always "argon2id".
    pub algorithm: String,
    /// Argon2 version number, 19 (0x13).
    pub argon2_version: u32,
    #[serde(flatten)]
    pub params: KdfParams,
    /// Base64 of the 16-byte salt.
    pub salt: String,
}

/// Clear, authenticated metadata; also what `vault keys inspect` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyFileMeta {
    pub version: u16,
    pub keyid: Uuid,
    pub scope: Scope,
    #[serde(rename = "domainID", skip_serializing_if = "Option::is_none", default)]
    pub domain_id: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub state: KeyState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub kdf: KdfInfo,
}

/// A parsed key file whose outer checksum and bounds have been checked, but whose
/// password-protected part has not been opened yet.
pub struct ParsedKeyFile {
    pub meta: KeyFileMeta,
    aad: Vec<u8>,
    check: [u8; CHECK_LEN],
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

/// Seals `key` under `password` into the key-file bytes.
pub fn export(
    key: &Key32,
    meta_in: &ExportMeta,
    password: &Password,
    params: KdfParams,
) -> Result<Vec<u8>, KeyFileError> {
    params.check()?;
    let mut salt = [0u8; kdf::SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let meta = KeyFileMeta {
        version: CURRENT_VERSION,
        keyid: meta_in.id,
        scope: meta_in.scope,
        domain_id: meta_in.domain_id.clone(),
        created_at: meta_in.created_at.clone(),
        state: meta_in.state,
        description: meta_in.description.clone(),
        kdf: KdfInfo {
            algorithm: "argon2id".into(),
            argon2_version: 0x13,
            params,
            salt: B64.encode(salt),
        },
    };
    let meta_json = serde_json::to_vec(&meta).expect("metadata serializes");
    let mut out = Vec::with_capacity(PREFIX_LEN + meta_json.len() + 108);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
    out.extend_from_slice(&(meta_json.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta_json);
    let aad_len = out.len();

    let (check, wrap_key) = derive_keys(password, &salt, &params)?;
    // nonce[12] ‖ wrapped key[32] ‖ tag[16], with the clear part of the file as AAD.
    let wrapped = crate::aead::wrap_key(&wrap_key, &out[..aad_len], key);
    out.extend_from_slice(&check);
    out.extend_from_slice(&wrapped);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// What `export` needs to know about the key besides its bytes.
pub struct ExportMeta {
    pub id: Uuid,
    pub scope: Scope,
    pub domain_id: Option<String>,
    pub created_at: String,
    pub state: KeyState,
    pub description: String,
}

/// Parses and checks structure, bounds and the outer checksum; needs no password.
pub fn parse(bytes: &[u8]) -> Result<ParsedKeyFile, KeyFileError> {
    if bytes.is_empty() {
        return Err(KeyFileError::Empty);
    }
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        if bytes.len() < 8 && MAGIC.starts_with(bytes) {
            return Err(KeyFileError::Truncated("shorter than its magic bytes"));
        }
        return Err(KeyFileError::NotAKeyFile);
    }
    if bytes.len() < PREFIX_LEN {
        return Err(KeyFileError::Truncated("header cut short"));
    }
    let version = u16::from_be_bytes([bytes[8], bytes[9]]);
    let meta_len = u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
    if meta_len > MAX_META_LEN {
        return Err(KeyFileError::Corrupted("metadata length out of bounds"));
    }
    let expected = PREFIX_LEN + meta_len + CHECK_LEN + NONCE_LEN + WRAPPED_LEN + SUM_LEN;
    if bytes.len() < expected {
        return Err(KeyFileError::Truncated("file ends before its wrapped key"));
    }
    if bytes.len() > expected {
        return Err(KeyFileError::Corrupted("trailing bytes after the checksum"));
    }
    let (body, sum) = bytes.split_at(expected - SUM_LEN);
    if !bool::from(Sha256::digest(body).as_slice().ct_eq(sum)) {
        return Err(KeyFileError::Corrupted("checksum mismatch"));
    }
    // Version checks come after the checksum so that a flipped version byte reads as
    // corruption, not as a request to upgrade.
    if version > CURRENT_VERSION {
        return Err(KeyFileError::TooNew { found: version });
    }
    if version < MIN_READ_VERSION {
        return Err(KeyFileError::TooOld { found: version });
    }
    let aad_len = PREFIX_LEN + meta_len;
    let meta: KeyFileMeta = serde_json::from_slice(&bytes[PREFIX_LEN..aad_len])
        .map_err(|_| KeyFileError::Corrupted("metadata is not valid JSON"))?;
    if meta.version != version {
        return Err(KeyFileError::Corrupted(
            "metadata version disagrees with header",
        ));
    }
    // A system key has no domain and a domain key always names one (vault never writes
    // either otherwise): a file that says both, or a domain key without its domain, is
    // ambiguous and refused rather than guessed (issue 12).
    match (meta.scope, &meta.domain_id) {
        (Scope::System, Some(_)) => {
            return Err(KeyFileError::Corrupted("a system key with a domainID"));
        }
        (Scope::Domain, None) => {
            return Err(KeyFileError::Corrupted("a domain key without its domainID"));
        }
        _ => {}
    }
    if meta.kdf.algorithm != "argon2id" || meta.kdf.argon2_version != 0x13 {
        return Err(KeyFileError::Corrupted("unknown KDF"));
    }
    meta.kdf.params.check()?;
    let salt = B64
        .decode(&meta.kdf.salt)
        .map_err(|_| KeyFileError::Corrupted("salt is not base64"))?;
    // Issue 13.11: 8-byte salts were accepted; RFC 9106 asks for 16.
    if salt.len() < kdf::SALT_LEN || salt.len() > kdf::MAX_SALT_LEN {
        return Err(KeyFileError::Corrupted(
            "salt length out of bounds (16 to 64 bytes)",
        ));
    }
    let mut rest = &bytes[aad_len..];
    let check = take::<CHECK_LEN>(&mut rest);
    let nonce = take::<NONCE_LEN>(&mut rest);
    let wrapped = take::<WRAPPED_LEN>(&mut rest);
    Ok(ParsedKeyFile {
        meta,
        aad: bytes[..aad_len].to_vec(),
        check,
        nonce,
        wrapped,
    })
}

fn take<const N: usize>(rest: &mut &[u8]) -> [u8; N] {
    let (head, tail) = rest.split_at(N);
    *rest = tail;
    head.try_into().expect("length checked by parse")
}

impl ParsedKeyFile {
    /// Runs Argon2id and unwraps the key.
    pub fn open(&self, password: &Password) -> Result<Key32, KeyFileError> {
        let salt = B64
            .decode(&self.meta.kdf.salt)
            .map_err(|_| KeyFileError::Corrupted("salt is not base64"))?;
        if salt.len() < kdf::SALT_LEN || salt.len() > kdf::MAX_SALT_LEN {
            return Err(KeyFileError::Corrupted("salt length out of bounds"));
        }
        let (check, wrap_key) = derive_keys(password, &salt, &self.meta.kdf.params)?;
        if !bool::from(check.ct_eq(&self.check)) {
            return Err(KeyFileError::WrongPassword);
        }
        let mut blob = [0u8; NONCE_LEN + WRAPPED_LEN];
        blob[..NONCE_LEN].copy_from_slice(&self.nonce);
        blob[NONCE_LEN..].copy_from_slice(&self.wrapped);
        crate::aead::unwrap_key(&wrap_key, &self.aad, &blob)
            .ok_or(KeyFileError::Corrupted("wrapped key does not authenticate"))
    }
}

fn derive_keys(
    password: &Password,
    salt: &[u8],
    params: &KdfParams,
) -> Result<([u8; CHECK_LEN], Key32), KeyFileError> {
    let master = kdf::derive(password.expose().as_bytes(), salt, params)?;
    let hk = Hkdf::<Sha256>::from_prk(master.as_ref()).expect("32-byte PRK");
    let mut check = [0u8; CHECK_LEN];
    hk.expand(LABEL_CHECK, &mut check).expect("short output");
    let mut wrap = Zeroizing::new([0u8; 32]);
    hk.expand(LABEL_WRAP, wrap.as_mut()).expect("short output");
    Ok((check, Key32::from_slice(wrap.as_ref()).expect("32 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            memory_kib: kdf::MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        }
    }

    fn sample(key: &Key32) -> Vec<u8> {
        let meta = ExportMeta {
            id: Uuid::new_v4(),
            scope: Scope::Domain,
            domain_id: Some("00000000-0000-0000-0000-000000000000".into()),
            created_at: "2026-11-21T00:00:00Z".into(),
            state: KeyState::Active,
            description: "test".into(),
        };
        export(key, &meta, &Password::new("hunter22-long".into()), fast()).unwrap()
    }

    #[test]
    fn round_trip() {
        let key = Key32::random();
        let bytes = sample(&key);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.meta.scope, Scope::Domain);
        let back = parsed.open(&Password::new("hunter22-long".into())).unwrap();
        assert!(back.ct_eq(&key));
    }

    #[test]
    fn wrong_password_is_distinct() {
        let bytes = sample(&Key32::random());
        let err = parse(&bytes)
            .unwrap()
            .open(&Password::new("nope-nope".into()))
            .err()
            .unwrap();
        assert!(matches!(err, KeyFileError::WrongPassword), "{err}");
    }

    /// What the unkeyed outer SHA-256 catches: any flipped byte, before any password
    /// is asked for. Forgeries that recompute it are
    /// `tampered_metadata_with_recomputed_checksum_fails_unwrap` below and
    /// `tests/keys_cli.rs::forged_key_files_with_a_recomputed_checksum_are_refused`.
    #[test]
    fn every_flipped_byte_fails_the_outer_checksum() {
        let bytes = sample(&Key32::random());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            match parse(&b) {
                Err(KeyFileError::Corrupted("checksum mismatch")) => {}
                Err(KeyFileError::NotAKeyFile) if i < 8 => {}
                Err(KeyFileError::Corrupted(_) | KeyFileError::Truncated(_))
                    if (10..14).contains(&i) => {}
                Err(e) => panic!("byte {i}: unexpected {e}"),
                Ok(_) => panic!("byte {i}: flipped file accepted"),
            }
        }
    }

    /// With the checksum recomputed: edits the GCM tag covers are tampering; edits of the
    /// KDF inputs or the check value read as a wrong password (SECURITY.md says so).
    #[test]
    fn forged_fields_with_recomputed_checksum_are_refused() {
        let bytes = sample(&Key32::random());
        let m = u32::from_be_bytes(bytes[10..14].try_into().unwrap()) as usize;
        let reseal = |mut b: Vec<u8>| {
            let n = b.len();
            let sum = Sha256::digest(&b[..n - 32]);
            b[n - 32..].copy_from_slice(&sum);
            b
        };
        let text = String::from_utf8_lossy(&bytes[..14 + m]).into_owned();
        let at = |needle: &str| text.find(needle).unwrap() + needle.len();
        let (salt, created) = (at("\"salt\":\"") + 2, at("\"createdAt\":\"") + 3);
        let other = |x: u8, a: u8, b: u8| if x == a { b } else { a };
        // (what, offset, replacement byte, reads as a wrong password)
        let cases = [
            ("salt", salt, other(bytes[salt], b'A', b'B'), true),
            ("iterations", at("\"iterations\":"), b'3', true),
            ("check value", 14 + m + 3, bytes[14 + m + 3] ^ 1, true),
            ("nonce", 14 + m + 17, bytes[14 + m + 17] ^ 1, false),
            ("wrapped key", 14 + m + 37, bytes[14 + m + 37] ^ 1, false),
            (
                "createdAt",
                created,
                other(bytes[created], b'1', b'2'),
                false,
            ),
        ];
        for (what, i, new, wrong_password) in cases {
            let mut b = bytes.clone();
            assert_ne!(b[i], new, "{what}");
            b[i] = new;
            let err = parse(&reseal(b))
                .unwrap_or_else(|e| panic!("{what}: forged file must parse, got {e}"))
                .open(&Password::new("hunter22-long".into()))
                .err()
                .unwrap_or_else(|| panic!("{what}: forged file opened"));
            if wrong_password {
                assert!(matches!(err, KeyFileError::WrongPassword), "{what}: {err}");
            } else {
                assert!(matches!(err, KeyFileError::Corrupted(_)), "{what}: {err}");
            }
        }
    }

    #[test]
    fn tampered_metadata_with_recomputed_checksum_fails_unwrap() {
        let bytes = sample(&Key32::random());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let pos = text.find("\"test\"").unwrap() + 1;
        let mut b = bytes.clone();
        b[pos] = b'T';
        let n = b.len();
        let sum = Sha256::digest(&b[..n - 32]);
        b[n - 32..].copy_from_slice(&sum);
        let err = parse(&b)
            .unwrap()
            .open(&Password::new("hunter22-long".into()))
            .err()
            .unwrap();
        assert!(matches!(err, KeyFileError::Corrupted(_)), "{err}");
    }

    #[test]
    fn every_truncation_is_reported() {
        let bytes = sample(&Key32::random());
        for len in 0..bytes.len() {
            let err = parse(&bytes[..len]).err().expect("truncated accepted");
            assert!(
                matches!(
                    err,
                    KeyFileError::Truncated(_)
                        | KeyFileError::NotAKeyFile
                        | KeyFileError::Corrupted(_)
                ) && len > 0
                    || matches!(err, KeyFileError::Empty) && len == 0,
                "len {len}: {err}"
            );
            if len >= PREFIX_LEN {
                assert!(
                    matches!(err, KeyFileError::Truncated(_)),
                    "len {len}: {err}"
                );
            }
        }
    }

    #[test]
    fn huge_meta_len_is_refused_before_allocating() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse(&b), Err(KeyFileError::Corrupted(_))));
    }

    #[test]
    fn newer_version_says_upgrade() {
        let bytes = sample(&Key32::random());
        let mut b = bytes.clone();
        b[9] = 2;
        let n = b.len();
        let sum = Sha256::digest(&b[..n - 32]);
        b[n - 32..].copy_from_slice(&sum);
        let err = parse(&b).err().unwrap();
        assert!(err.to_string().contains("upgrade vault"), "{err}");
    }

    #[test]
    fn absurd_kdf_params_refused_at_parse() {
        // m = u32::MAX KiB is about 4 TiB: it must be refused before Argon2 allocates.
        let bytes = sample(&Key32::random());
        let mut meta: serde_json::Value =
            serde_json::from_slice(&bytes[PREFIX_LEN..PREFIX_LEN + meta_len(&bytes)]).unwrap();
        meta["kdf"]["memoryKib"] = serde_json::json!(u32::MAX);
        let b = rebuild(&bytes, &serde_json::to_vec(&meta).unwrap());
        let err = parse(&b).err().unwrap();
        assert!(
            matches!(err, KeyFileError::Kdf(KdfError::TooCostly { .. })),
            "{err}"
        );
    }

    /// Issue 13.11: a salt shorter than 16 bytes is refused before any password is asked.
    #[test]
    fn short_salt_is_refused_at_parse() {
        let bytes = sample(&Key32::random());
        for n in [0usize, 8, 15] {
            let mut meta: serde_json::Value =
                serde_json::from_slice(&bytes[PREFIX_LEN..PREFIX_LEN + meta_len(&bytes)]).unwrap();
            meta["kdf"]["salt"] = serde_json::json!(B64.encode(vec![7u8; n]));
            let b = rebuild(&bytes, &serde_json::to_vec(&meta).unwrap());
            let err = parse(&b).err().expect("short salt accepted");
            assert!(err.to_string().contains("salt length"), "{n}: {err}");
        }
    }

    fn meta_len(b: &[u8]) -> usize {
        u32::from_be_bytes([b[10], b[11], b[12], b[13]]) as usize
    }

    /// Replaces the metadata and recomputes the outer checksum (what a deliberate
    /// tamperer would do).
    fn rebuild(orig: &[u8], meta: &[u8]) -> Vec<u8> {
        let ml = meta_len(orig);
        let mut b = orig[..10].to_vec();
        b.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        b.extend_from_slice(meta);
        b.extend_from_slice(&orig[PREFIX_LEN + ml..orig.len() - 32]);
        let sum = Sha256::digest(&b);
        b.extend_from_slice(&sum);
        b
    }

    #[test]
    fn over_limit_kdf_values_refused() {
        let bytes = sample(&Key32::random());
        for (field, v) in [
            ("memoryKib", 2u64 * 1024 * 1024 + 1),
            ("iterations", 11),
            ("parallelism", 17),
        ] {
            let mut meta: serde_json::Value =
                serde_json::from_slice(&bytes[PREFIX_LEN..PREFIX_LEN + meta_len(&bytes)]).unwrap();
            meta["kdf"][field] = serde_json::json!(v);
            let b = rebuild(&bytes, &serde_json::to_vec(&meta).unwrap());
            let err = parse(&b).err().unwrap();
            assert!(
                matches!(err, KeyFileError::Kdf(KdfError::TooCostly { .. })),
                "{field}: {err}"
            );
        }
    }
}

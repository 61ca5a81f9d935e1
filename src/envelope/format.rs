//! Byte layout of archive format v1 (preamble, JSON header, key slots, trailer), and the
//! preamble and JSON header that format v2 shares (its slots and trailer: [`super::v2`]).
//!
//! Pure functions from bytes to structs and back: no keys, no files, no I/O. Every length
//! taken from input is checked against a fixed bound *before* anything is allocated, and
//! every parser returns an error instead of panicking, so any byte string is safe to feed
//! in. The exact layout is specified in `SECURITY-archive.md`; changing any constant or
//! encoding here breaks every archive already written and needs a new format version.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::EnvelopeError;

/// First 8 bytes of every archive.
pub const MAGIC: [u8; 8] = *b"VAULTARC";
/// First 8 bytes of the trailer (the last 80 bytes of every archive).
pub const TRAILER_MAGIC: [u8; 8] = *b"VAULTEND";
/// The format version this code writes.
pub const CURRENT_VERSION: u16 = 2;
/// The oldest format version this code still reads: three versions back, never below 1.
pub const MIN_READ_VERSION: u16 = {
    let v = CURRENT_VERSION.saturating_sub(3);
    if v < 1 { 1 } else { v }
};

/// magic (8) | version u16 | flags u16 | header_len u32.
pub const PREAMBLE_LEN: usize = 16;
/// Upper bound on the JSON header, checked before the header buffer is allocated.
pub const MAX_HEADER_LEN: u32 = 65_536;
/// Cobblestone salt.
pub const SALT_LEN: usize = 24;
/// Bytes per key slot.
pub const SLOT_LEN: usize = 128;
/// Number of key slots (two: one live, one to write the next wrapping into).
pub const SLOT_COUNT: usize = 2;
/// Bytes of a slot covered by its SHA-256 integrity hint.
const SLOT_BODY_LEN: usize = 96;
/// The data key wrapped by AES-256-GCM: 32 bytes ciphertext + 16 bytes tag.
pub const WRAPPED_KEY_LEN: usize = 48;
/// magic (8) | plaintext size u64 | plaintext SHA-256 (32) | HMAC-SHA-256 (32).
pub const TRAILER_LEN: usize = 80;
/// The only chunk size of v1 (Cobblestone fixes it at 16 KiB).
pub const CHUNK_SIZE_V1: u32 = 16_384;
/// The only cipher of v1.
pub const CIPHER_V1: &str = "cobblestone-256";

/// Domain-separation prefix of the Cobblestone context, the slot AAD and the trailer key.
pub const LABEL: &[u8] = b"vault.archive.v1";
pub const SLOT_AAD_LABEL: &[u8] = b"vault.archive.v1 keyslot";
pub const TRAILER_INFO: &[u8] = b"vault.archive.v1 trailer";

/// The fixed-size start of every archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub version: u16,
    pub flags: u16,
    pub header_len: u32,
}

impl Preamble {
    /// Parses and validates the preamble. Version dispatch lives here: a future v2 reader
    /// adds its number to the accepted range and branches on `version` in the caller.
    pub fn parse(bytes: &[u8; PREAMBLE_LEN]) -> Result<Self, EnvelopeError> {
        let (magic, rest) = bytes.split_at(8);
        if magic != MAGIC {
            return Err(EnvelopeError::NotAnArchive);
        }
        let version = u16::from_be_bytes([rest[0], rest[1]]);
        let flags = u16::from_be_bytes([rest[2], rest[3]]);
        let header_len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        match version {
            v if v > CURRENT_VERSION => {
                return Err(EnvelopeError::UnsupportedVersion {
                    found: v,
                    max: CURRENT_VERSION,
                });
            }
            v if v < MIN_READ_VERSION => {
                return Err(EnvelopeError::Malformed(format!(
                    "format version {v} is older than the oldest readable version {MIN_READ_VERSION}"
                )));
            }
            // v1 and v2 share the preamble; the caller branches on `version` for the
            // slot region and the trailer.
            _ => {}
        }
        if flags != 0 {
            return Err(EnvelopeError::Malformed(format!(
                "reserved flags are {flags:#06x}, must be 0 in format version {version}"
            )));
        }
        if header_len == 0 || header_len > MAX_HEADER_LEN {
            return Err(EnvelopeError::Malformed(format!(
                "header length {header_len} is outside 1..={MAX_HEADER_LEN}"
            )));
        }
        Ok(Preamble {
            version,
            flags,
            header_len,
        })
    }

    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&self.version.to_be_bytes());
        out[10..12].copy_from_slice(&self.flags.to_be_bytes());
        out[12..16].copy_from_slice(&self.header_len.to_be_bytes());
        out
    }

    /// Offset of the salt (right after the header).
    pub fn salt_offset(&self) -> u64 {
        PREAMBLE_LEN as u64 + u64::from(self.header_len)
    }

    /// Offset of the first key slot.
    pub fn slots_offset(&self) -> u64 {
        self.salt_offset() + SALT_LEN as u64
    }

    /// Offset of the payload (the Cobblestone commitment, then the chunks) in v1.
    pub fn payload_offset(&self) -> u64 {
        self.slots_offset() + (SLOT_COUNT * SLOT_LEN) as u64
    }
}

pub use crate::scope::Scope;

/// Where the plaintext came from (all optional: a file sealed by hand has none of these).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_file_location: Option<String>,
}

/// The clear-text, authenticated metadata of an archive. Unknown JSON fields are ignored
/// on read (forward compatibility within a version); they stay authenticated because the
/// header hash covers the raw bytes, not this struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveHeader {
    pub id: Uuid,
    pub scope: Scope,
    #[serde(rename = "domainID", default, skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub creator_account: String,
    pub description: String,
    pub product_version: String,
    pub chunk_size: u32,
    pub cipher: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub source: Option<Source>,
}

/// `source` is a JSON object or `null` (SECURITY.md v2 §2): serde would also take a
/// struct from a JSON array, positionally.
fn object_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Source>, D::Error> {
    let Some(map) = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? else {
        return Ok(None);
    };
    serde_json::from_value(serde_json::Value::Object(map))
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl ArchiveHeader {
    /// A header for a new archive: fresh random id, `createdAt` = now (UTC), this vault's
    /// version, and the v1 chunk size and cipher.
    pub fn new(
        scope: Scope,
        domain_id: Option<String>,
        creator_account: &str,
        description: &str,
        source: Option<Source>,
    ) -> Self {
        let created_at = crate::clock::now_rfc3339(crate::clock::Precision::Seconds);
        ArchiveHeader {
            id: Uuid::new_v4(),
            scope,
            domain_id,
            created_at,
            creator_account: creator_account.to_string(),
            description: description.to_string(),
            product_version: env!("CARGO_PKG_VERSION").to_string(),
            chunk_size: CHUNK_SIZE_V1,
            cipher: CIPHER_V1.to_string(),
            source,
        }
    }

    /// The v1 rules a header must satisfy (the id is checked by parsing, as a `Uuid`).
    pub fn validate(&self) -> Result<(), String> {
        match (self.scope, &self.domain_id) {
            (Scope::System, None) => {}
            (Scope::System, Some(_)) => {
                return Err("a system-scope archive must not carry a domainID".into());
            }
            (Scope::Domain, Some(d)) if !d.is_empty() => {}
            (Scope::Domain, _) => {
                return Err("a domain-scope archive needs a non-empty domainID".into());
            }
        }
        if self.chunk_size != CHUNK_SIZE_V1 {
            return Err(format!(
                "chunkSize is {}, format version 1 requires {CHUNK_SIZE_V1}",
                self.chunk_size
            ));
        }
        if self.cipher != CIPHER_V1 {
            return Err(format!(
                "cipher is {:?}, format version 1 requires {CIPHER_V1:?}",
                self.cipher
            ));
        }
        Ok(())
    }

    /// Parses header bytes (UTF-8 JSON) and validates them.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| EnvelopeError::Malformed(format!("header is not UTF-8 ({e})")))?;
        // A JSON object (serde would also take the struct from an array, positionally).
        if !text.trim_start().starts_with('{') {
            return Err(EnvelopeError::Malformed(
                "header JSON is not an object".into(),
            ));
        }
        let header: ArchiveHeader = serde_json::from_str(text)
            .map_err(|e| EnvelopeError::Malformed(format!("header JSON is invalid ({e})")))?;
        header
            .validate()
            .map_err(|e| EnvelopeError::Malformed(format!("header: {e}")))?;
        Ok(header)
    }

    /// Serializes a validated header to the bytes stored in the archive.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        self.validate().map_err(EnvelopeError::InvalidHeader)?;
        let bytes = serde_json::to_vec(self)
            .map_err(|e| EnvelopeError::InvalidHeader(format!("cannot serialize: {e}")))?;
        if bytes.len() > MAX_HEADER_LEN as usize {
            return Err(EnvelopeError::InvalidHeader(format!(
                "header is {} bytes, at most {MAX_HEADER_LEN} are allowed",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// SHA-256(preamble || header bytes): what the context, slot AAD and trailer MAC bind.
pub fn header_hash(preamble: &[u8; PREAMBLE_LEN], header: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(preamble);
    h.update(header);
    h.finalize().into()
}

/// The Cobblestone context: `vault.archive.v1 || header_hash`.
pub fn cobblestone_context(header_hash: &[u8; 32]) -> [u8; 48] {
    let mut ctx = [0u8; 48];
    ctx[..16].copy_from_slice(LABEL);
    ctx[16..].copy_from_slice(header_hash);
    ctx
}

/// An occupied key slot: the data key wrapped under one backup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// Strictly increasing across rewraps; 0 is reserved for "empty".
    pub generation: u32,
    pub key_id: Uuid,
    pub nonce: [u8; 12],
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
}

/// What a 128-byte slot region holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// All 128 bytes are zero.
    Empty,
    /// Nonzero generation, zero reserved bytes, and the SHA-256 hint matches.
    Occupied(KeySlot),
    /// Anything else: a torn write or a modified byte.
    Damaged,
}

impl KeySlot {
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[0..4].copy_from_slice(&self.generation.to_be_bytes());
        out[4..20].copy_from_slice(self.key_id.as_bytes());
        out[20..32].copy_from_slice(&self.nonce);
        out[32..80].copy_from_slice(&self.wrapped_key);
        // 80..96 reserved, zero.
        let digest: [u8; 32] = Sha256::digest(&out[..SLOT_BODY_LEN]).into();
        out[SLOT_BODY_LEN..].copy_from_slice(&digest);
        out
    }

    /// AAD of the slot's AES-256-GCM wrapping:
    /// label || archive id || key id || generation (u32 BE) || header_hash.
    pub fn aad(&self, archive_id: &Uuid, header_hash: &[u8; 32]) -> [u8; 92] {
        let mut aad = [0u8; 92];
        aad[..24].copy_from_slice(SLOT_AAD_LABEL);
        aad[24..40].copy_from_slice(archive_id.as_bytes());
        aad[40..56].copy_from_slice(self.key_id.as_bytes());
        aad[56..60].copy_from_slice(&self.generation.to_be_bytes());
        aad[60..92].copy_from_slice(header_hash);
        aad
    }
}

/// Classifies one slot region. Never fails: a bad slot is `Damaged`, and the caller
/// decides whether that is fatal.
pub fn parse_slot(bytes: &[u8; SLOT_LEN]) -> SlotState {
    if bytes.iter().all(|&b| b == 0) {
        return SlotState::Empty;
    }
    let (body, hint) = bytes.split_at(SLOT_BODY_LEN);
    let digest: [u8; 32] = Sha256::digest(body).into();
    if digest.as_slice() != hint {
        return SlotState::Damaged;
    }
    let mut generation = [0u8; 4];
    let mut key_id = [0u8; 16];
    let mut nonce = [0u8; 12];
    let mut wrapped_key = [0u8; WRAPPED_KEY_LEN];
    generation.copy_from_slice(&body[0..4]);
    key_id.copy_from_slice(&body[4..20]);
    nonce.copy_from_slice(&body[20..32]);
    wrapped_key.copy_from_slice(&body[32..80]);
    let generation = u32::from_be_bytes(generation);
    if generation == 0 || body[80..96].iter().any(|&b| b != 0) {
        return SlotState::Damaged;
    }
    SlotState::Occupied(KeySlot {
        generation,
        key_id: Uuid::from_bytes(key_id),
        nonce,
        wrapped_key,
    })
}

/// The last 80 bytes of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub plaintext_size: u64,
    pub plaintext_sha256: [u8; 32],
    pub tag: [u8; 32],
}

impl Trailer {
    /// Parses the trailer. A missing magic means the bytes read are not a trailer at all,
    /// which in practice is a file cut short (or a damaged trailer): `Truncated`.
    pub fn parse(bytes: &[u8; TRAILER_LEN]) -> Result<Self, EnvelopeError> {
        if bytes[..8] != TRAILER_MAGIC {
            return Err(EnvelopeError::Truncated(
                "the last 80 bytes are not a trailer (no \"VAULTEND\" magic): the file ends early or its trailer is damaged"
                    .into(),
            ));
        }
        let mut size = [0u8; 8];
        let mut sha = [0u8; 32];
        let mut tag = [0u8; 32];
        size.copy_from_slice(&bytes[8..16]);
        sha.copy_from_slice(&bytes[16..48]);
        tag.copy_from_slice(&bytes[48..80]);
        Ok(Trailer {
            plaintext_size: u64::from_be_bytes(size),
            plaintext_sha256: sha,
            tag,
        })
    }

    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..8].copy_from_slice(&TRAILER_MAGIC);
        out[8..16].copy_from_slice(&self.plaintext_size.to_be_bytes());
        out[16..48].copy_from_slice(&self.plaintext_sha256);
        out[48..80].copy_from_slice(&self.tag);
        out
    }

    /// The MAC input: header_hash || plaintext size (u64 BE) || plaintext SHA-256.
    pub fn mac_input(
        header_hash: &[u8; 32],
        plaintext_size: u64,
        plaintext_sha256: &[u8; 32],
    ) -> [u8; 72] {
        let mut m = [0u8; 72];
        m[..32].copy_from_slice(header_hash);
        m[32..40].copy_from_slice(&plaintext_size.to_be_bytes());
        m[40..72].copy_from_slice(plaintext_sha256);
        m
    }
}

/// Payload length (commitment + chunks) of a plaintext of `size` bytes, or `None` if it
/// does not fit in a u64.
pub fn payload_len_for(size: u64) -> Option<u64> {
    let chunk = u64::from(CHUNK_SIZE_V1);
    let full = size / chunk;
    let last = size % chunk;
    full.checked_mul(chunk + 16)?
        .checked_add(last + 16)?
        .checked_add(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preamble_bytes(version: u16, flags: u16, header_len: u32) -> [u8; PREAMBLE_LEN] {
        Preamble {
            version,
            flags,
            header_len,
        }
        .encode()
    }

    #[test]
    fn preamble_round_trips() {
        let p = Preamble::parse(&preamble_bytes(1, 0, 300)).unwrap();
        assert_eq!((p.version, p.flags, p.header_len), (1, 0, 300));
        assert_eq!(p.payload_offset(), 16 + 300 + 24 + 256);
    }

    #[test]
    fn newer_version_says_upgrade() {
        let err = Preamble::parse(&preamble_bytes(CURRENT_VERSION + 1, 0, 10)).unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::UnsupportedVersion { found: 3, max: 2 }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("version 3 is newer") && msg.contains("upgrade vault"),
            "{msg}"
        );
        for v in [1, 2] {
            assert_eq!(
                Preamble::parse(&preamble_bytes(v, 0, 10)).unwrap().version,
                v
            );
        }
    }

    #[test]
    fn version_zero_flags_and_lengths_are_malformed() {
        for bytes in [
            preamble_bytes(0, 0, 10),
            preamble_bytes(1, 1, 10),
            preamble_bytes(1, 0, 0),
            preamble_bytes(1, 0, MAX_HEADER_LEN + 1),
            preamble_bytes(1, 0, u32::MAX),
        ] {
            assert!(matches!(
                Preamble::parse(&bytes),
                Err(EnvelopeError::Malformed(_))
            ));
        }
        assert!(Preamble::parse(&preamble_bytes(1, 0, MAX_HEADER_LEN)).is_ok());
    }

    #[test]
    fn bad_magic_is_not_an_archive() {
        let mut b = preamble_bytes(1, 0, 10);
        b[0] = b'X';
        assert!(matches!(
            Preamble::parse(&b),
            Err(EnvelopeError::NotAnArchive)
        ));
    }

    #[test]
    fn min_read_version_saturates_at_one() {
        assert_eq!(MIN_READ_VERSION, 1);
    }

    #[test]
    fn header_json_uses_the_documented_names_and_ignores_unknown_fields() {
        let mut h = ArchiveHeader::new(
            Scope::Domain,
            Some("lab".into()),
            "alice",
            "nightly",
            Some(Source {
                serial_number: Some("CZ123".into()),
                ..Source::default()
            }),
        );
        h.created_at = "2026-01-02T03:04:05Z".into();
        let bytes = h.encode().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        for name in [
            "\"id\"",
            "\"scope\":\"domain\"",
            "\"domainID\":\"lab\"",
            "\"createdAt\"",
            "\"creatorAccount\"",
            "\"productVersion\"",
            "\"chunkSize\":16384",
            "\"cipher\":\"cobblestone-256\"",
            "\"serialNumber\":\"CZ123\"",
        ] {
            assert!(text.contains(name), "{name} missing in {text}");
        }
        assert_eq!(ArchiveHeader::parse(&bytes).unwrap(), h);
        let extended = text.replacen('{', "{\"futureField\":[1,2,3],", 1);
        assert_eq!(ArchiveHeader::parse(extended.as_bytes()).unwrap(), h);
    }

    #[test]
    fn header_validation_rejects_bad_values() {
        let good = ArchiveHeader::new(Scope::System, None, "a", "d", None);
        let text = String::from_utf8(good.encode().unwrap()).unwrap();
        for bad in [
            text.replace("16384", "65536"),
            text.replace("\"system\"", "\"galaxy\""),
            text.replace("cobblestone-256", "rot13"),
            text.replace(&good.id.to_string(), "not-a-uuid"),
            text.replace("\"scope\":\"system\"", "\"scope\":\"domain\""),
            "[]".to_string(),
            "{".to_string(),
        ] {
            assert!(
                matches!(
                    ArchiveHeader::parse(bad.as_bytes()),
                    Err(EnvelopeError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            ArchiveHeader::parse(&[0xff, 0xfe]),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn slots_round_trip_and_any_flip_damages_them() {
        let slot = KeySlot {
            generation: 7,
            key_id: Uuid::new_v4(),
            nonce: [3; 12],
            wrapped_key: [9; WRAPPED_KEY_LEN],
        };
        let bytes = slot.encode();
        assert_eq!(parse_slot(&bytes), SlotState::Occupied(slot));
        assert_eq!(parse_slot(&[0u8; SLOT_LEN]), SlotState::Empty);
        for i in 0..SLOT_LEN {
            let mut b = bytes;
            b[i] ^= 0x01;
            assert_eq!(parse_slot(&b), SlotState::Damaged, "flip at {i}");
            let mut e = [0u8; SLOT_LEN];
            e[i] = 0x80;
            assert_eq!(parse_slot(&e), SlotState::Damaged, "empty flip at {i}");
        }
    }

    #[test]
    fn trailer_round_trips_and_needs_magic() {
        let t = Trailer {
            plaintext_size: 42,
            plaintext_sha256: [1; 32],
            tag: [2; 32],
        };
        let b = t.encode();
        assert_eq!(Trailer::parse(&b).unwrap(), t);
        let mut bad = b;
        bad[3] ^= 1;
        assert!(matches!(
            Trailer::parse(&bad),
            Err(EnvelopeError::Truncated(_))
        ));
    }

    #[test]
    fn payload_length_formula() {
        assert_eq!(payload_len_for(0), Some(32 + 16));
        assert_eq!(payload_len_for(16_383), Some(32 + 16_383 + 16));
        assert_eq!(payload_len_for(16_384), Some(32 + 16_400 + 16));
        assert_eq!(payload_len_for(u64::MAX), None);
    }
}

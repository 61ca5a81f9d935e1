//! Byte layout of archive format v2: the key-slot region, the secret field and the
//! trailer (the preamble and the JSON header are those of v1, see [`super::format`]).
//!
//! Pure functions from bytes to structs and back: no keys, no files, no I/O, and every
//! parser total (a bad slot is `Damaged`, never a panic). The specification is
//! SECURITY.md, "Archive format 2"; changing a constant here breaks every v2 archive.
//!
//! What v2 adds over v1, and why:
//! - Each slot states what the *other* slot may hold besides zeros (`allowed_other`,
//!   the SHA-256 of the exact 256 bytes, or zeros for "must be empty") and carries a MAC
//!   under a key derived from the data key over its own bytes and index: with any key of
//!   the archive, the whole slot region is authenticated (filling, swapping, copying in
//!   or editing a slot fails), and an interrupted rewrap (two occupied slots) is a state
//!   the newest slot vouches for.
//! - Each slot and the trailer carry an Ed25519 signature by the home that wrote them,
//!   over every byte before the payload (through `signed_hash`) and their own bytes; the
//!   trailer also carries a digest of the whole ciphertext. With the signer's public key,
//!   every byte of a v2 archive can be checked without any backup key.
//! - A small secret field (at most [`MAX_SECRET_LEN`] bytes, always present and padded,
//!   so its presence and length are hidden) encrypted under the data key.
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Bytes per v2 key slot.
pub const SLOT_LEN: usize = 256;
/// Bytes of a slot covered by its region MAC (everything before the MAC).
pub const SLOT_MAC_INPUT: usize = 112;
/// Bytes of a slot covered by its signature (everything before the signature).
pub const SLOT_SIGNED: usize = 176;
/// The secret field's plaintext capacity.
pub const MAX_SECRET_LEN: usize = 256;
/// length u16 || secret || zero padding, encrypted (AES-256-GCM, 16-byte tag).
pub const SECRET_BLOCK_LEN: usize = 2 + MAX_SECRET_LEN + 16;
/// magic (8) | size u64 | plaintext SHA-256 | ciphertext BLAKE3 | MAC | signer | signature.
pub const TRAILER_LEN: usize = 208;
/// Bytes of the trailer covered by its MAC (after the magic, before the MAC).
const TRAILER_MAC_INPUT: std::ops::Range<usize> = 8..80;
/// Bytes of the trailer covered by its signature.
pub const TRAILER_SIGNED: usize = 144;
pub const PUBLIC_KEY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;

/// Domain-separation labels of v2 (each used for exactly one purpose).
pub const LABEL: &[u8] = b"vault.archive.v2";
pub const KEK_INFO: &[u8] = b"vault.archive.v2 kek";
pub const SLOT_AAD_LABEL: &[u8] = b"vault.archive.v2 keyslot";
pub const REGION_INFO: &[u8] = b"vault.archive.v2 slot-region";
pub const SECRET_INFO: &[u8] = b"vault.archive.v2 secret";
pub const TRAILER_INFO: &[u8] = b"vault.archive.v2 trailer";
pub const SLOT_SIG_LABEL: &[u8] = b"vault.archive.v2 slot-signature";
pub const TRAILER_SIG_LABEL: &[u8] = b"vault.archive.v2 trailer-signature";

/// Who signed a slot or a trailer: an Ed25519 public key and signature, or nothing
/// (all 96 bytes zero: sealed by a caller without a home, e.g. a library user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    pub public_key: [u8; PUBLIC_KEY_LEN],
    pub signature: [u8; SIGNATURE_LEN],
}

impl Signature {
    pub const NONE: Signature = Signature {
        public_key: [0; PUBLIC_KEY_LEN],
        signature: [0; SIGNATURE_LEN],
    };

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    fn read(bytes: &[u8]) -> Self {
        let mut s = Signature::NONE;
        s.public_key.copy_from_slice(&bytes[..PUBLIC_KEY_LEN]);
        s.signature
            .copy_from_slice(&bytes[PUBLIC_KEY_LEN..PUBLIC_KEY_LEN + SIGNATURE_LEN]);
        s
    }

    fn write(&self, out: &mut [u8]) {
        out[..PUBLIC_KEY_LEN].copy_from_slice(&self.public_key);
        out[PUBLIC_KEY_LEN..PUBLIC_KEY_LEN + SIGNATURE_LEN].copy_from_slice(&self.signature);
    }
}

/// An occupied v2 key slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Strictly increasing across rewraps (and re-encryptions); never 0.
    pub generation: u32,
    pub key_id: Uuid,
    pub nonce: [u8; 12],
    /// The data key under the slot's key-encryption key: 32 bytes ciphertext, 16 tag.
    pub wrapped_key: [u8; 48],
    /// SHA-256 of the 256 bytes the other slot may hold instead of zeros; all zero:
    /// the other slot must be empty.
    pub allowed_other: [u8; 32],
    /// HMAC-SHA-256 under the region key over label, hashes, index and bytes 0..112.
    pub region_mac: [u8; 32],
    pub signature: Signature,
}

/// What a 256-byte slot holds, before any key is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// All 256 bytes zero.
    Empty,
    Occupied(Box<Slot>),
    /// Neither: generation 0 with other bytes set, or reserved bytes set.
    Damaged,
}

impl Slot {
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[0..4].copy_from_slice(&self.generation.to_be_bytes());
        out[4..20].copy_from_slice(self.key_id.as_bytes());
        out[20..32].copy_from_slice(&self.nonce);
        out[32..80].copy_from_slice(&self.wrapped_key);
        out[80..112].copy_from_slice(&self.allowed_other);
        out[112..144].copy_from_slice(&self.region_mac);
        self.signature.write(&mut out[144..240]);
        // 240..256 reserved, zero.
        out
    }

    /// AAD of the data-key wrapping: label || archive id || key id || generation (u32
    /// BE) || slot index (u8) || header hash.
    pub fn aad(&self, archive_id: &Uuid, index: usize, header_hash: &[u8; 32]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SLOT_AAD_LABEL.len() + 69);
        aad.extend_from_slice(SLOT_AAD_LABEL);
        aad.extend_from_slice(archive_id.as_bytes());
        aad.extend_from_slice(self.key_id.as_bytes());
        aad.extend_from_slice(&self.generation.to_be_bytes());
        aad.push(index as u8);
        aad.extend_from_slice(header_hash);
        aad
    }

    /// Input of the region MAC: header hash || salt || index || bytes 0..112.
    pub fn mac_input(&self, header_hash: &[u8; 32], salt: &[u8; 24], index: usize) -> Vec<u8> {
        let bytes = self.encode();
        let mut m = Vec::with_capacity(32 + 24 + 1 + SLOT_MAC_INPUT);
        m.extend_from_slice(header_hash);
        m.extend_from_slice(salt);
        m.push(index as u8);
        m.extend_from_slice(&bytes[..SLOT_MAC_INPUT]);
        m
    }

    /// The message the slot's signature signs: label || signed hash || index || bytes
    /// 0..176 (so the region MAC is signed too).
    pub fn signed_message(&self, signed_hash: &[u8; 32], index: usize) -> Vec<u8> {
        let bytes = self.encode();
        let mut m = Vec::with_capacity(SLOT_SIG_LABEL.len() + 33 + SLOT_SIGNED);
        m.extend_from_slice(SLOT_SIG_LABEL);
        m.extend_from_slice(signed_hash);
        m.push(index as u8);
        m.extend_from_slice(&bytes[..SLOT_SIGNED]);
        m
    }
}

/// Classifies one 256-byte slot. Never fails.
pub fn parse_slot(bytes: &[u8; SLOT_LEN]) -> SlotState {
    if bytes.iter().all(|&b| b == 0) {
        return SlotState::Empty;
    }
    let generation = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if generation == 0 || bytes[240..].iter().any(|&b| b != 0) {
        return SlotState::Damaged;
    }
    let mut s = Slot {
        generation,
        key_id: Uuid::nil(),
        nonce: [0; 12],
        wrapped_key: [0; 48],
        allowed_other: [0; 32],
        region_mac: [0; 32],
        signature: Signature::read(&bytes[144..240]),
    };
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[4..20]);
    s.key_id = Uuid::from_bytes(id);
    s.nonce.copy_from_slice(&bytes[20..32]);
    s.wrapped_key.copy_from_slice(&bytes[32..80]);
    s.allowed_other.copy_from_slice(&bytes[80..112]);
    s.region_mac.copy_from_slice(&bytes[112..144]);
    SlotState::Occupied(Box::new(s))
}

/// SHA-256 of a slot's bytes (what `allowed_other` names).
pub fn slot_digest(bytes: &[u8; SLOT_LEN]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The keyless rule of the slot region, checked before any key is used: at least one
/// slot occupied, no damaged slot, distinct generations, and the newest slot's statement
/// about the other one holds. Returns the index of the newest slot.
pub fn check_region(raw: &[[u8; SLOT_LEN]; 2], slots: &[SlotState; 2]) -> Result<usize, String> {
    if let Some(i) = slots.iter().position(|s| *s == SlotState::Damaged) {
        return Err(format!(
            "key slot {i} is neither empty nor a well-formed slot"
        ));
    }
    let newest = match (&slots[0], &slots[1]) {
        (SlotState::Empty, SlotState::Empty) => return Err("both key slots are empty".into()),
        (SlotState::Occupied(_), SlotState::Empty) => 0,
        (SlotState::Empty, SlotState::Occupied(_)) => 1,
        (SlotState::Occupied(a), SlotState::Occupied(b)) => {
            if a.generation == b.generation {
                return Err(format!("both key slots claim generation {}", a.generation));
            }
            usize::from(b.generation > a.generation)
        }
        _ => unreachable!("damaged slots were refused above"),
    };
    let SlotState::Occupied(n) = &slots[newest] else {
        unreachable!("the newest slot is occupied")
    };
    let other = 1 - newest;
    if slots[other] != SlotState::Empty && n.allowed_other != slot_digest(&raw[other]) {
        return Err(format!(
            "key slot {other} holds bytes that the newest slot {newest} does not vouch for (filled, copied in or edited)"
        ));
    }
    Ok(newest)
}

/// SHA-256(preamble || header || salt || slot-independent prefix bytes): everything
/// before the slots plus the secret block, which every signature covers.
pub fn signed_hash(
    preamble: &[u8],
    header: &[u8],
    salt: &[u8; 24],
    secret_block: &[u8; SECRET_BLOCK_LEN],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(preamble);
    h.update(header);
    h.update(salt);
    h.update(secret_block);
    h.finalize().into()
}

/// The last 208 bytes of a v2 archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub plaintext_size: u64,
    pub plaintext_sha256: [u8; 32],
    /// BLAKE3 of the payload as stored: commitment || every encrypted chunk.
    pub ciphertext_digest: [u8; 32],
    pub tag: [u8; 32],
    pub signature: Signature,
}

impl Trailer {
    /// Parses the trailer (only the magic can be wrong here).
    pub fn parse(bytes: &[u8; TRAILER_LEN]) -> Result<Self, super::EnvelopeError> {
        if bytes[..8] != super::format::TRAILER_MAGIC {
            return Err(super::EnvelopeError::Truncated(
                "the last 208 bytes are not a trailer (no \"VAULTEND\" magic): the file ends early or its trailer is damaged"
                    .into(),
            ));
        }
        let mut t = Trailer {
            plaintext_size: u64::from_be_bytes(bytes[8..16].try_into().unwrap_or([0; 8])),
            plaintext_sha256: [0; 32],
            ciphertext_digest: [0; 32],
            tag: [0; 32],
            signature: Signature::read(&bytes[112..208]),
        };
        t.plaintext_sha256.copy_from_slice(&bytes[16..48]);
        t.ciphertext_digest.copy_from_slice(&bytes[48..80]);
        t.tag.copy_from_slice(&bytes[80..112]);
        Ok(t)
    }

    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..8].copy_from_slice(&super::format::TRAILER_MAGIC);
        out[8..16].copy_from_slice(&self.plaintext_size.to_be_bytes());
        out[16..48].copy_from_slice(&self.plaintext_sha256);
        out[48..80].copy_from_slice(&self.ciphertext_digest);
        out[80..112].copy_from_slice(&self.tag);
        self.signature.write(&mut out[112..208]);
        out
    }

    /// MAC input: header hash || salt || bytes 8..80 (size, plaintext SHA-256,
    /// ciphertext digest).
    pub fn mac_input(&self, header_hash: &[u8; 32], salt: &[u8; 24]) -> Vec<u8> {
        let bytes = self.encode();
        let mut m = Vec::with_capacity(32 + 24 + 72);
        m.extend_from_slice(header_hash);
        m.extend_from_slice(salt);
        m.extend_from_slice(&bytes[TRAILER_MAC_INPUT]);
        m
    }

    /// The signed message: label || signed hash || bytes 0..144 (MAC included).
    pub fn signed_message(&self, signed_hash: &[u8; 32]) -> Vec<u8> {
        let bytes = self.encode();
        let mut m = Vec::with_capacity(TRAILER_SIG_LABEL.len() + 32 + TRAILER_SIGNED);
        m.extend_from_slice(TRAILER_SIG_LABEL);
        m.extend_from_slice(signed_hash);
        m.extend_from_slice(&bytes[..TRAILER_SIGNED]);
        m
    }
}

/// The scope part of the key-encryption key's HKDF info: 0x01 for system, 0x02 and the
/// domain id's UTF-8 bytes for a domain.
pub fn kek_info(scope: super::Scope, domain_id: Option<&str>) -> Vec<u8> {
    let mut info = KEK_INFO.to_vec();
    match scope {
        super::Scope::System => info.push(1),
        super::Scope::Domain => {
            info.push(2);
            info.extend_from_slice(domain_id.unwrap_or("").as_bytes());
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(generation: u32) -> Slot {
        Slot {
            generation,
            key_id: Uuid::new_v4(),
            nonce: [1; 12],
            wrapped_key: [2; 48],
            allowed_other: [0; 32],
            region_mac: [3; 32],
            signature: Signature {
                public_key: [4; 32],
                signature: [5; 64],
            },
        }
    }

    #[test]
    fn slots_and_trailers_round_trip() {
        let s = slot(9);
        assert_eq!(
            parse_slot(&s.encode()),
            SlotState::Occupied(Box::new(s.clone()))
        );
        assert_eq!(parse_slot(&[0; SLOT_LEN]), SlotState::Empty);
        let mut reserved = s.encode();
        reserved[250] = 1;
        assert_eq!(parse_slot(&reserved), SlotState::Damaged);
        let mut zero_gen = s.encode();
        zero_gen[..4].fill(0);
        assert_eq!(parse_slot(&zero_gen), SlotState::Damaged);
        let t = Trailer {
            plaintext_size: 77,
            plaintext_sha256: [6; 32],
            ciphertext_digest: [7; 32],
            tag: [8; 32],
            signature: Signature::NONE,
        };
        assert_eq!(Trailer::parse(&t.encode()).unwrap(), t);
    }

    #[test]
    fn the_region_rule_needs_the_newest_slot_to_vouch_for_the_other() {
        let a = slot(1);
        let raw_a = a.encode();
        let mut b = slot(2);
        b.allowed_other = slot_digest(&raw_a);
        let raw_b = b.encode();
        let parse = |r: &[[u8; SLOT_LEN]; 2]| [parse_slot(&r[0]), parse_slot(&r[1])];
        // One slot, the other empty; an interrupted rewrap; the same after the wipe.
        for (raw, newest) in [
            ([raw_a, [0; SLOT_LEN]], 0),
            ([raw_a, raw_b], 1),
            ([[0; SLOT_LEN], raw_b], 1),
        ] {
            assert_eq!(check_region(&raw, &parse(&raw)), Ok(newest));
        }
        // A slot the newest does not vouch for, both empty, equal generations.
        let c = slot(1).encode();
        for raw in [
            [c, raw_b],
            [raw_a, slot(3).encode()],
            [[0; SLOT_LEN], [0; SLOT_LEN]],
            [raw_a, slot(1).encode()],
        ] {
            assert!(check_region(&raw, &parse(&raw)).is_err());
        }
    }
}

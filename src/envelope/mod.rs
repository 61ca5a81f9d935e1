//! The archive ("envelope") format: seal, open, inspect, rewrap and re-encrypt.
//!
//! An archive is `preamble | JSON header | salt | 2 key slots | [v2: secret block] |
//! Cobblestone-256 payload | trailer`. Format 2 is written; format 1 is still read (and
//! upgraded to 2 by rewrap). Byte layout in SECURITY.md, parsing in [`format`] (v1 and
//! the shared preamble and header) and [`v2`].
//!
//! Invariants:
//! - Every archive has its own random data key and salt; the backup key only wraps the
//!   data key (in a key slot). Reusing a data key across archives would let one leaked
//!   archive key decrypt others, and reusing key + salt would reuse AES-GCM nonces.
//! - Every header byte is bound three times: into the Cobblestone context (so the key
//!   commitment fails before any chunk is decrypted), into the slot AAD and into the
//!   trailer MAC. An edited header can never be opened.
//! - v2: the opening key's scope and domain must be the header's (checked before any
//!   slot is tried) and are bound into the key-encryption key (HKDF info), so a key can
//!   only ever open archives of its own scope and domain. The whole slot region is
//!   authenticated under the data key, and a slot whose key this home holds but that does
//!   not open is tampering, never a reason to try the other slot.
//! - Plaintext leaves `open` chunk by chunk, each authenticated, but the archive as a
//!   whole is only known good when `open` returns `Ok`. Callers write the plaintext to a
//!   temporary file (`crate::fsutil::AtomicFile`) and commit it only on success;
//!   `verify` is `open` into `std::io::sink()`.
//! - Rewrapping touches only the slot region and is crash-safe: the new wrapping goes
//!   into the slot that did *not* yield the data key and is fsynced before that slot is
//!   wiped. A v1 archive is upgraded instead: re-encrypted into a temporary file that
//!   replaces it atomically.
pub mod cobblestone;
mod error;
pub mod format;
mod stream;
pub mod v2;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v2;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use error::EnvelopeError;
pub use format::{ArchiveHeader, CURRENT_VERSION, MIN_READ_VERSION, Scope, Source};
pub use stream::{Opener, SealOptions, Sealer};
pub use v2::MAX_SECRET_LEN;

/// Capacity of the `BufReader` to put in front of `seal`, `open` and `verify`: enough for
/// an archive header in one read. Payload reads are a batch (1 MiB) each and bypass the
/// buffer, so a larger one would only add a copy and fresh pages to fault in.
pub const READ_BUFFER: usize = 64 << 10;

use cobblestone::{
    COMMITMENT_LEN, DecryptStream, Decryptor, Encryptor, NONCE_LEN, TAG_LEN, gcm, gcm_open,
    gcm_seal,
};
use error::eof_is_truncation;
use format::{MAGIC, PREAMBLE_LEN, Preamble, SALT_LEN, SLOT_COUNT, header_hash, payload_len_for};

use crate::secret::Key32;

/// A backup key as the home holds it: its material and the scope and domain it belongs
/// to (from the home's authenticated key entry, never from the archive).
pub struct OpeningKey {
    pub material: Key32,
    pub scope: Scope,
    pub domain_id: Option<String>,
}

impl OpeningKey {
    pub fn new(material: Key32, scope: Scope, domain_id: Option<String>) -> Self {
        OpeningKey {
            material,
            scope,
            domain_id,
        }
    }

    /// Whether this key may open (or seal, or rewrap) an archive with this header.
    fn fits(&self, header: &ArchiveHeader) -> bool {
        self.scope == header.scope && self.domain_id == header.domain_id
    }

    fn describe(&self) -> String {
        match (&self.scope, &self.domain_id) {
            (Scope::Domain, Some(d)) => format!("a key of domain {d}"),
            (scope, _) => format!("a {scope} key"),
        }
    }
}

/// Looks up a backup key by id; `None` if this home does not hold it.
pub type KeyLookup<'a> = &'a dyn Fn(&Uuid) -> Option<OpeningKey>;

/// The secret field of a v2 archive (at most [`MAX_SECRET_LEN`] bytes), e.g. the BMC's
/// own backup-file password. Zeroized on drop; its `Debug` shows only the length.
pub struct SealedSecret(Zeroizing<Vec<u8>>);

impl SealedSecret {
    /// `None` if longer than [`MAX_SECRET_LEN`].
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (bytes.len() <= MAX_SECRET_LEN).then(|| SealedSecret(Zeroizing::new(bytes.to_vec())))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedSecret({} bytes, redacted)", self.0.len())
    }
}

/// Result of [`seal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSummary {
    pub archive_id: Uuid,
    pub key_id: Uuid,
    pub plaintext_size: u64,
    pub sha256: [u8; 32],
    /// Total archive bytes written.
    pub bytes_written: u64,
}

/// Who signed the parts of a v2 archive, as verified by `open` (each signature checked
/// against the public key it names; whether that key is *trusted* is for the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signers {
    /// Per slot: the public key that signed it, if it is occupied and signed.
    pub slots: [Option<[u8; 32]>; SLOT_COUNT],
    pub trailer: Option<[u8; 32]>,
}

/// Result of [`open`].
#[derive(Debug)]
pub struct OpenSummary {
    pub version: u16,
    pub header: ArchiveHeader,
    /// The key whose slot unlocked the archive, that slot's index and generation.
    pub key_id: Uuid,
    pub slot: usize,
    pub generation: u32,
    pub plaintext_size: u64,
    pub sha256: [u8; 32],
    /// Both slots hold a wrapping (a rewrap was interrupted; the next one completes it).
    pub two_slots: bool,
    /// v2: the secret field (`None` when empty, and always for v1).
    pub secret: Option<SealedSecret>,
    /// v2: who signed what (all `None` for v1).
    pub signers: Signers,
    /// SHA-256 of every byte before the payload ([`Inspection::prefix_sha256`]).
    pub prefix_sha256: [u8; 32],
}

/// What one key slot holds, as far as can be told without a key. The key id and
/// generation are *claimed*: only a key that opens the slot confirms them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotInfo {
    Empty,
    Occupied {
        key_id: Uuid,
        generation: u32,
    },
    /// Neither empty nor well-formed (v1: its SHA-256 hint does not match): torn or
    /// modified.
    Damaged,
}

/// A signature found in a v2 archive, checked against the public key it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureInfo {
    /// `Some(i)` for slot `i`, `None` for the trailer.
    pub slot: Option<usize>,
    pub public_key: [u8; 32],
    /// The signature verifies under `public_key` over what it covers.
    pub valid: bool,
}

/// Result of [`inspect`]: everything readable without a key. Nothing here is verified
/// by a key; only `open` authenticates. Signatures are checked, but a valid signature
/// means something only if its public key is trusted ([`Inspection::provenance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub version: u16,
    pub header: ArchiveHeader,
    pub header_len: u32,
    pub slots: [SlotInfo; SLOT_COUNT],
    /// Occupied slots' claimed (key id, generation), newest first.
    pub key_ids: Vec<(Uuid, u32)>,
    /// Plaintext size and SHA-256 as claimed by the (unverified) trailer.
    pub plaintext_size: u64,
    pub sha256: [u8; 32],
    /// Bytes of commitment + chunks.
    pub payload_len: u64,
    pub file_len: u64,
    /// Whether `payload_len` is exactly what `plaintext_size` requires (a cheap,
    /// keyless consistency check for sweeps; a mismatch means damage).
    pub length_consistent: bool,
    /// v2: the keyless rule of the slot region (`Err` says what breaks it). v1: the
    /// slots' integrity hints only.
    pub region: Result<(), String>,
    /// v2: every signature present (occupied slots and trailer). Empty for v1.
    pub signatures: Vec<SignatureInfo>,
    /// v2: the trailer's digest of the whole ciphertext (checked by [`check_keyless`]).
    pub ciphertext_digest: Option<[u8; 32]>,
    /// SHA-256 of every byte before the payload (preamble, header, salt, both key slots
    /// and, v2, the secret block): what a record of a key's confirmation names, so that
    /// any later change to a slot or the header is not covered by it.
    pub prefix_sha256: [u8; 32],
}

/// An archive's provenance against a set of trusted home public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Every occupied slot and the trailer carry a valid signature by a trusted key.
    Valid,
    /// A signature does not verify, a part is unsigned while others are signed, or the
    /// slot region breaks its rule: modified after signing.
    Invalid,
    /// Signatures verify, but at least one signer is not trusted.
    UnknownSigner,
    /// No signature at all (format 1, or sealed without a home).
    Unsigned,
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provenance::Valid => "valid",
            Provenance::Invalid => "invalid",
            Provenance::UnknownSigner => "unknown signer",
            Provenance::Unsigned => "unsigned",
        })
    }
}

impl Inspection {
    /// The provenance of this archive's header, slots and trailer against `trusted`.
    /// Covers the payload only through the trailer's ciphertext digest, which
    /// [`check_keyless`] compares with the bytes.
    pub fn provenance(&self, trusted: &[[u8; 32]]) -> Provenance {
        if self.version < 2 {
            return Provenance::Unsigned;
        }
        let occupied = self
            .slots
            .iter()
            .filter(|s| matches!(s, SlotInfo::Occupied { .. }))
            .count();
        if self.signatures.is_empty() && self.region.is_ok() {
            return Provenance::Unsigned;
        }
        let trailer_signed = self.signatures.iter().any(|s| s.slot.is_none());
        let slots_signed = self.signatures.iter().filter(|s| s.slot.is_some()).count();
        if self.region.is_err()
            || self.signatures.iter().any(|s| !s.valid)
            || !trailer_signed
            || slots_signed != occupied
        {
            return Provenance::Invalid;
        }
        if self
            .signatures
            .iter()
            .all(|s| trusted.contains(&s.public_key))
        {
            Provenance::Valid
        } else {
            Provenance::UnknownSigner
        }
    }
}

/// Result of [`rewrap_in_place`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapSummary {
    pub archive_id: Uuid,
    /// Key id of the slot that yielded the data key.
    pub previous_key_id: Uuid,
    pub new_key_id: Uuid,
    /// Generation of the slot now holding the wrapping under `new_key_id`.
    pub generation: u32,
    /// False when the archive was already sealed under `new_key_id` alone (no write).
    pub changed: bool,
    /// The archive was format 1 and was upgraded (re-encrypted) to format 2.
    pub upgraded: bool,
}

/// Result of [`reencrypt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencryptSummary {
    pub archive_id: Uuid,
    pub previous_key_id: Uuid,
    pub new_key_id: Uuid,
    pub plaintext_size: u64,
    pub sha256: [u8; 32],
    pub bytes_written: u64,
    /// The version of the source archive (the output is always [`CURRENT_VERSION`]).
    pub source_version: u16,
}

/// Lower-case hex of a SHA-256 (for display).
pub fn hex_digest(d: &[u8; 32]) -> String {
    hex::encode(d)
}

/// A file that can be rewritten in place and flushed to stable storage.
pub trait ArchiveFile: Read + Write + Seek {
    /// Makes every write so far durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
}

impl ArchiveFile for File {
    fn sync(&mut self) -> io::Result<()> {
        // The file size never changes during a rewrap, so data sync is enough.
        self.sync_data()
    }
}

/// Seals `input` into a (format 2, unsigned, no secret) archive written to `output`,
/// under a fresh data key wrapped for `backup_key` (id `key_id`). Single pass, constant
/// memory. `output` should be a temporary file that the caller commits only on `Ok`
/// (e.g. `fsutil::AtomicFile`). A thin wrapper over [`Sealer`].
pub fn seal<R: Read, W: Write>(
    header: &ArchiveHeader,
    key_id: Uuid,
    backup_key: &Key32,
    input: R,
    output: W,
) -> Result<SealSummary, EnvelopeError> {
    let mut sealer = Sealer::new(header, SealOptions::new(key_id, backup_key), output)?;
    sealer.read_from(input)?;
    Ok(sealer.finish()?.1)
}

/// Opens (decrypts and fully verifies) an archive from a stream, which need not be
/// seekable: the trailer is recognized by holding back its length.
///
/// Plaintext is written to `output` chunk by chunk as chunks authenticate; the archive
/// as a whole is verified only when this returns `Ok`. On `Err`, whatever was written
/// must be discarded: write to a temporary file and commit on success. A thin wrapper
/// over [`Opener`].
pub fn open<R: Read, W: Write>(
    input: R,
    keys: KeyLookup<'_>,
    output: W,
) -> Result<OpenSummary, EnvelopeError> {
    Opener::new(input, keys)?.open_into(output)
}

/// Verifies an archive completely without keeping the plaintext.
pub fn verify<R: Read>(input: R, keys: KeyLookup<'_>) -> Result<OpenSummary, EnvelopeError> {
    open(input, keys, io::sink())
}

/// Reads only the preamble, header, salt, key slots (and secret block) and the trailer
/// (the same few hundred bytes whatever the archive size). Needs no key; checks the
/// slot region's keyless rule and the signatures, but trusts nothing.
pub fn inspect<R: Read + Seek>(mut input: R) -> Result<Inspection, EnvelopeError> {
    input.seek(SeekFrom::Start(0))?;
    let prefix = read_prefix(&mut input)?;
    let file_len = input.seek(SeekFrom::End(0))?;
    let trailer_len = prefix.trailer_len();
    let payload_offset = prefix.payload_offset();
    let min_len = payload_offset + (COMMITMENT_LEN + TAG_LEN + trailer_len) as u64;
    if file_len < min_len {
        return Err(EnvelopeError::Truncated(format!(
            "the file is {file_len} bytes, an archive with this header needs at least {min_len}"
        )));
    }
    input.seek(SeekFrom::End(-(trailer_len as i64)))?;
    let mut tail = vec![0u8; trailer_len];
    input
        .read_exact(&mut tail)
        .map_err(eof_is_truncation("trailer"))?;
    let trailer = AnyTrailer::parse(&prefix, &tail)?;
    let payload_len = file_len - payload_offset - trailer_len as u64;
    Ok(describe(prefix, &trailer, payload_len, file_len))
}

/// Confirms with a key what a slot claims, reading only what comes before the payload
/// (O(header)): unwraps the data key as a rewrap does (a broken *other* slot is
/// tolerated) and authenticates the slot that opened (its region MAC and signature, v2).
/// Returns that slot's key id, which is then a fact, not a claim. Says nothing about the
/// payload: that is `verify`.
pub fn confirm_key<R: Read>(mut input: R, keys: KeyLookup<'_>) -> Result<Uuid, EnvelopeError> {
    let prefix = read_prefix(&mut input)?;
    Ok(unlock(&prefix, keys, false)?.key_id)
}

/// Result of [`check_keyless`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylessCheck {
    pub inspection: Inspection,
    /// v2: whether the ciphertext read matches the trailer's digest. `None` for v1.
    pub ciphertext_matches: Option<bool>,
}

impl KeylessCheck {
    /// The provenance of every byte: [`Inspection::provenance`], and `Invalid` if the
    /// ciphertext does not match the signed trailer.
    pub fn provenance(&self, trusted: &[[u8; 32]]) -> Provenance {
        match (self.inspection.provenance(trusted), self.ciphertext_matches) {
            (Provenance::Unsigned, _) => Provenance::Unsigned,
            (_, Some(false)) => Provenance::Invalid,
            (p, _) => p,
        }
    }
}

/// [`inspect`] plus a full read of the payload, hashed (BLAKE3) and compared with the
/// trailer's ciphertext digest: with a trusted signer, every byte of a v2 archive is
/// checked without any backup key.
pub fn check_keyless<R: Read>(mut input: R) -> Result<KeylessCheck, EnvelopeError> {
    let prefix = read_prefix(&mut input)?;
    let trailer_len = prefix.trailer_len();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_BUFFER + trailer_len];
    let mut filled = 0;
    let mut payload_len = 0u64;
    loop {
        let n = match input.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        filled += n;
        if n == 0 || filled == buf.len() {
            // Everything but the last `trailer_len` bytes is payload.
            let keep = filled.min(trailer_len);
            let payload = filled - keep;
            hasher.update(&buf[..payload]);
            payload_len += payload as u64;
            buf.copy_within(payload..filled, 0);
            filled = keep;
            if n == 0 {
                break;
            }
        }
    }
    if filled < trailer_len || payload_len < (COMMITMENT_LEN + TAG_LEN) as u64 {
        return Err(EnvelopeError::Truncated(
            "input ends before the payload and trailer".into(),
        ));
    }
    let trailer = AnyTrailer::parse(&prefix, &buf[..trailer_len])?;
    let file_len = prefix.payload_offset() + payload_len + trailer_len as u64;
    let ciphertext_matches = match &trailer {
        AnyTrailer::V1(_) => None,
        AnyTrailer::V2(t) => Some(<[u8; 32]>::from(hasher.finalize()) == t.ciphertext_digest),
    };
    Ok(KeylessCheck {
        inspection: describe(prefix, &trailer, payload_len, file_len),
        ciphertext_matches,
    })
}

/// What the key-slot region says, keylessly: each slot, whether the region is
/// consistent, and the slots' signatures (format 2).
fn describe_slots(
    region: &Region,
) -> (
    [SlotInfo; SLOT_COUNT],
    Result<(), String>,
    Vec<SignatureInfo>,
) {
    match region {
        Region::V1 { slots } => {
            let info = slots.clone().map(|s| match s {
                format::SlotState::Empty => SlotInfo::Empty,
                format::SlotState::Damaged => SlotInfo::Damaged,
                format::SlotState::Occupied(k) => SlotInfo::Occupied {
                    key_id: k.key_id,
                    generation: k.generation,
                },
            });
            let region = match info.iter().position(|s| *s == SlotInfo::Damaged) {
                Some(i) => Err(format!("key slot {i} is damaged")),
                None => Ok(()),
            };
            (info, region, Vec::new())
        }
        Region::V2(r) => {
            let info = r.slots.clone().map(|s| match s {
                v2::SlotState::Empty => SlotInfo::Empty,
                v2::SlotState::Damaged => SlotInfo::Damaged,
                v2::SlotState::Occupied(k) => SlotInfo::Occupied {
                    key_id: k.key_id,
                    generation: k.generation,
                },
            });
            let region = v2::check_region(&r.raw, &r.slots).map(|_| ());
            let sigs = r
                .occupied()
                .filter(|(_, s)| !s.signature.is_none())
                .map(|(i, s)| SignatureInfo {
                    slot: Some(i),
                    public_key: s.signature.public_key,
                    valid: signature_valid(&s.signature, &s.signed_message(&r.signed_hash, i)),
                })
                .collect();
            (info, region, sigs)
        }
    }
}

fn describe(prefix: Prefix, trailer: &AnyTrailer, payload_len: u64, file_len: u64) -> Inspection {
    let (slots, region, mut signatures) = describe_slots(&prefix.region);
    let (plaintext_size, sha256, ciphertext_digest) = match trailer {
        AnyTrailer::V1(t) => (t.plaintext_size, t.plaintext_sha256, None),
        AnyTrailer::V2(t) => {
            if let Region::V2(r) = &prefix.region
                && !t.signature.is_none()
            {
                signatures.push(SignatureInfo {
                    slot: None,
                    public_key: t.signature.public_key,
                    valid: signature_valid(&t.signature, &t.signed_message(&r.signed_hash)),
                });
            }
            (
                t.plaintext_size,
                t.plaintext_sha256,
                Some(t.ciphertext_digest),
            )
        }
    };
    let mut key_ids: Vec<(Uuid, u32)> = slots
        .iter()
        .filter_map(|s| match s {
            SlotInfo::Occupied { key_id, generation } => Some((*key_id, *generation)),
            _ => None,
        })
        .collect();
    key_ids.sort_by_key(|k| std::cmp::Reverse(k.1));
    Inspection {
        version: prefix.preamble.version,
        header_len: prefix.preamble.header_len,
        header: prefix.header,
        slots,
        key_ids,
        plaintext_size,
        sha256,
        payload_len,
        file_len,
        length_consistent: payload_len_for(plaintext_size) == Some(payload_len),
        region,
        signatures,
        ciphertext_digest,
        prefix_sha256: prefix.digest,
    }
}

fn signature_valid(sig: &v2::Signature, message: &[u8]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(&sig.public_key) else {
        return false;
    };
    vk.verify_strict(
        message,
        &ed25519_dalek::Signature::from_bytes(&sig.signature),
    )
    .is_ok()
}

/// The signature of `signer` over `message(public key)`: the signed bytes include the
/// signer's public key field, so it is set before the message is built.
fn sign(signer: Option<&SigningKey>, message: impl Fn(v2::Signature) -> Vec<u8>) -> v2::Signature {
    match signer {
        None => v2::Signature::NONE,
        Some(k) => {
            let mut sig = v2::Signature {
                public_key: k.verifying_key().to_bytes(),
                signature: [0; v2::SIGNATURE_LEN],
            };
            sig.signature = k.sign(&message(sig)).to_bytes();
            sig
        }
    }
}

/// The key for slot key id `id`: `new_key` when it is `new_key_id`, else what `keys` has.
fn with_new_key(
    keys: KeyLookup<'_>,
    new_key_id: Uuid,
    new_key: &OpeningKey,
    id: &Uuid,
) -> Option<OpeningKey> {
    if *id == new_key_id {
        Some(OpeningKey::new(
            new_key.material.duplicate(),
            new_key.scope,
            new_key.domain_id.clone(),
        ))
    } else {
        keys(id)
    }
}

/// The newest generation among the slots of `region`. A slot the region rule does not
/// vouch for claims nothing, its generation included: then only `unlocked`'s counts.
fn newest_generation(region: &RegionV2, unlocked: &Unlocked) -> u32 {
    if unlocked.region_ok {
        region
            .occupied()
            .map(|(_, s)| s.generation)
            .max()
            .unwrap_or(unlocked.generation)
    } else {
        unlocked.generation
    }
}

/// Re-wraps the archive's data key under `new_key` (id `new_key_id`), in place, touching
/// only the key-slot region (O(header), never the payload). Format 2 only (a format 1
/// archive is upgraded by [`rewrap_file`]). The new slot is signed by `signer`.
///
/// Crash safety: the new wrapping (generation = newest + 1, vouching for the slot that
/// yielded the data key) is written into the *other* slot and fsynced; only then is the
/// slot that yielded the data key zeroed and fsynced. A kill between the two leaves two
/// valid slots (either key opens the archive); running the rewrap again completes it.
/// A damaged slot that the working slot does not vouch for (a torn write) is tolerated
/// here, where it is overwritten, while `open` refuses it.
///
/// Already sealed under `new_key_id` alone: no write (`changed == false`).
pub fn rewrap_in_place<F: ArchiveFile>(
    file: &mut F,
    keys: KeyLookup<'_>,
    new_key_id: Uuid,
    new_key: &OpeningKey,
    signer: Option<&SigningKey>,
) -> Result<RewrapSummary, EnvelopeError> {
    file.seek(SeekFrom::Start(0))?;
    let prefix = read_prefix(&mut *file)?;
    let Region::V2(region) = &prefix.region else {
        return Err(EnvelopeError::NeedsUpgrade);
    };
    let archive_id = prefix.header.id;
    let slots_offset = prefix.preamble.slots_offset();
    if !new_key.fits(&prefix.header) {
        return Err(scope_mismatch(new_key_id, new_key, &prefix.header));
    }
    // The new key opens its own slot too (finishing an interrupted rewrap, or checking
    // that an archive already under it really is), whether or not `keys` holds it.
    let with_new = |id: &Uuid| with_new_key(keys, new_key_id, new_key, id);
    // A slot naming a key of this home that does not open with it is tampered (v2 §7.4),
    // the new key's own slot included: never a reason to fall back to the other slot.
    let unlocked = unlock(&prefix, &with_new, false)?;
    let used = unlocked.slot;
    let other = 1 - used;
    let newest_generation = newest_generation(region, &unlocked);

    if unlocked.key_id == new_key_id {
        // Nothing to wrap; finish an interrupted rewrap (or clear an unvouched slot) by
        // wiping the other slot.
        let leftover = region.slots[other] != v2::SlotState::Empty;
        if leftover {
            write_slot(file, slots_offset, other, &[0u8; v2::SLOT_LEN])?;
        }
        return Ok(RewrapSummary {
            archive_id,
            previous_key_id: unlocked.key_id,
            new_key_id,
            generation: unlocked.generation,
            changed: leftover,
            upgraded: false,
        });
    }

    let generation = newest_generation.checked_add(1).ok_or_else(|| {
        EnvelopeError::Malformed(
            "key slot generation counter is exhausted; re-encrypt instead".into(),
        )
    })?;
    let slot = wrap_slot_v2(
        &unlocked.data_key,
        new_key,
        SlotParams {
            key_id: new_key_id,
            generation,
            index: other,
            allowed_other: v2::slot_digest(&region.raw[used]),
        },
        &prefix,
        signer,
    )?;
    write_slot(file, slots_offset, other, &slot.encode())?;
    write_slot(file, slots_offset, used, &[0u8; v2::SLOT_LEN])?;
    Ok(RewrapSummary {
        archive_id,
        previous_key_id: unlocked.key_id,
        new_key_id,
        generation,
        changed: true,
        upgraded: false,
    })
}

/// [`rewrap_in_place`] on a file path (opened read-write; never truncated or renamed),
/// or, for a format 1 archive, an upgrade: [`reencrypt`] into a temporary file in the
/// same directory that replaces the archive atomically (a kill at any point leaves the
/// old archive or the new one, complete).
pub fn rewrap_file(
    path: &Path,
    keys: KeyLookup<'_>,
    new_key_id: Uuid,
    new_key: &OpeningKey,
    signer: Option<&SigningKey>,
) -> Result<RewrapSummary, EnvelopeError> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    // Readers hold a shared lock on the archive file (`store::open_archive`) for as long
    // as they read it, so none can see a slot half-written by the in-place rewrite below.
    file.lock()?;
    match rewrap_in_place(&mut file, keys, new_key_id, new_key, signer) {
        Err(EnvelopeError::NeedsUpgrade) => {}
        other => return other,
    }
    file.seek(SeekFrom::Start(0))?;
    let mut out = crate::fsutil::AtomicFile::create(path, 0o600)?;
    let s = reencrypt(
        io::BufReader::with_capacity(READ_BUFFER, &file),
        keys,
        new_key_id,
        new_key,
        signer,
        &mut out,
    )?;
    out.commit()?;
    Ok(RewrapSummary {
        archive_id: s.archive_id,
        previous_key_id: s.previous_key_id,
        new_key_id,
        generation: 1,
        changed: true,
        upgraded: true,
    })
}

/// Decrypts the archive from `input` (any readable version) and re-seals it to `output`
/// as format 2 under a fresh data key and salt, wrapped for `new_key` and signed by
/// `signer`, with the same header bytes (same archive id) and the same secret field.
/// The generation continues from the source's newest slot (+1; 1 if that would
/// overflow). Use it when the old backup key (and so possibly the data key) may be
/// compromised. O(file), single pass; `output` is complete and trustworthy only on
/// `Ok`, so the caller writes it to a temporary file and renames it over the original.
pub fn reencrypt<R: Read, W: Write>(
    mut input: R,
    keys: KeyLookup<'_>,
    new_key_id: Uuid,
    new_key: &OpeningKey,
    signer: Option<&SigningKey>,
    output: W,
) -> Result<ReencryptSummary, EnvelopeError> {
    let prefix = read_prefix(&mut input)?;
    if !new_key.fits(&prefix.header) {
        return Err(scope_mismatch(new_key_id, new_key, &prefix.header));
    }
    let unlocked = unlock(&prefix, keys, true)?;
    let newest = match &prefix.region {
        Region::V1 { slots } => slots
            .iter()
            .filter_map(|s| match s {
                format::SlotState::Occupied(k) => Some(k.generation),
                _ => None,
            })
            .max(),
        Region::V2(r) => r.occupied().map(|(_, s)| s.generation).max(),
    };
    let generation = newest.and_then(|g| g.checked_add(1)).unwrap_or(1);
    let sealing = SealParams {
        key_id: new_key_id,
        key: &new_key.material,
        generation,
        signer,
        secret: unlocked.secret.as_ref().map(|s| s.expose()),
    };
    let mut state = begin_seal(&prefix.header_bytes, &prefix.header, sealing, output)?;
    let mut payload = PayloadOpener::new(&prefix, &unlocked.data_key, input)?;
    let old = loop {
        if let Some(summary) = payload.step(&mut state.enc)? {
            break summary;
        }
    };
    let (_, sealed) = finish_seal(state, new_key_id)?;
    if sealed.sha256 != old.sha256 || sealed.plaintext_size != old.size {
        return Err(io::Error::other("re-encryption saw different plaintext than it wrote").into());
    }
    Ok(ReencryptSummary {
        archive_id: prefix.header.id,
        previous_key_id: unlocked.key_id,
        new_key_id,
        plaintext_size: sealed.plaintext_size,
        sha256: sealed.sha256,
        bytes_written: sealed.bytes_written,
        source_version: prefix.preamble.version,
    })
}

// ---------------------------------------------------------------------------------------

/// Everything before the payload, parsed.
struct Prefix {
    preamble: Preamble,
    header_bytes: Vec<u8>,
    header: ArchiveHeader,
    hash: [u8; 32],
    salt: [u8; SALT_LEN],
    region: Region,
    /// SHA-256 of every byte before the payload, as read.
    digest: [u8; 32],
}

enum Region {
    V1 {
        slots: [format::SlotState; SLOT_COUNT],
    },
    V2(Box<RegionV2>),
}

struct RegionV2 {
    raw: [[u8; v2::SLOT_LEN]; SLOT_COUNT],
    slots: [v2::SlotState; SLOT_COUNT],
    secret_block: [u8; v2::SECRET_BLOCK_LEN],
    signed_hash: [u8; 32],
}

impl RegionV2 {
    fn occupied(&self) -> impl Iterator<Item = (usize, &v2::Slot)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            v2::SlotState::Occupied(k) => Some((i, &**k)),
            _ => None,
        })
    }
}

impl Prefix {
    fn trailer_len(&self) -> usize {
        match self.region {
            Region::V1 { .. } => format::TRAILER_LEN,
            Region::V2(_) => v2::TRAILER_LEN,
        }
    }

    fn payload_offset(&self) -> u64 {
        match self.region {
            Region::V1 { .. } => self.preamble.payload_offset(),
            Region::V2(_) => {
                self.preamble.slots_offset()
                    + (SLOT_COUNT * v2::SLOT_LEN + v2::SECRET_BLOCK_LEN) as u64
            }
        }
    }

    fn context(&self) -> [u8; 48] {
        match self.region {
            Region::V1 { .. } => format::cobblestone_context(&self.hash),
            Region::V2(_) => context_v2(&self.hash),
        }
    }
}

fn context_v2(hash: &[u8; 32]) -> [u8; 48] {
    let mut ctx = [0u8; 48];
    ctx[..16].copy_from_slice(v2::LABEL);
    ctx[16..].copy_from_slice(hash);
    ctx
}

/// The 16 preamble bytes. Nothing at all is [`EnvelopeError::Empty`]; fewer bytes are a
/// cut-short archive if they start like one, else not an archive.
fn read_preamble<R: Read>(input: &mut R) -> Result<[u8; PREAMBLE_LEN], EnvelopeError> {
    let mut pre = [0u8; PREAMBLE_LEN];
    let mut got = 0;
    while got < PREAMBLE_LEN {
        match input.read(&mut pre[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(EnvelopeError::Io(e)),
        }
    }
    if got == 0 {
        return Err(EnvelopeError::Empty);
    }
    if got < PREAMBLE_LEN {
        // Shorter than a preamble: a cut-short archive if it starts like one.
        let n = got.min(MAGIC.len());
        if pre[..n] != MAGIC[..n] {
            return Err(EnvelopeError::NotAnArchive);
        }
        return Err(EnvelopeError::Truncated(
            "input is shorter than the 16-byte preamble".into(),
        ));
    }
    Ok(pre)
}

/// Reads preamble, header, salt, slots (and for v2 the secret block) sequentially
/// (works on any stream). Version dispatch happens here.
fn read_prefix<R: Read>(input: &mut R) -> Result<Prefix, EnvelopeError> {
    let pre = read_preamble(input)?;
    let preamble = Preamble::parse(&pre)?;
    // `header_len` was bounded by `Preamble::parse`, so this allocation is at most 64 KiB.
    let mut header_bytes = vec![0u8; preamble.header_len as usize];
    input
        .read_exact(&mut header_bytes)
        .map_err(eof_is_truncation("header"))?;
    let header = ArchiveHeader::parse(&header_bytes)?;
    let hash = header_hash(&pre, &header_bytes);
    let mut salt = [0u8; SALT_LEN];
    input
        .read_exact(&mut salt)
        .map_err(eof_is_truncation("salt"))?;
    let mut digest = Sha256::new();
    digest.update(pre);
    digest.update(&header_bytes);
    digest.update(salt);
    let region = if preamble.version == 1 {
        let mut raw = [[0u8; format::SLOT_LEN]; SLOT_COUNT];
        for r in raw.iter_mut() {
            input
                .read_exact(r)
                .map_err(eof_is_truncation("key slots"))?;
            digest.update(&r[..]);
        }
        Region::V1 {
            slots: raw.map(|r| format::parse_slot(&r)),
        }
    } else {
        let mut raw = [[0u8; v2::SLOT_LEN]; SLOT_COUNT];
        for r in raw.iter_mut() {
            input
                .read_exact(r)
                .map_err(eof_is_truncation("key slots"))?;
            digest.update(&r[..]);
        }
        let mut secret_block = [0u8; v2::SECRET_BLOCK_LEN];
        input
            .read_exact(&mut secret_block)
            .map_err(eof_is_truncation("secret block"))?;
        digest.update(secret_block);
        let signed_hash = v2::signed_hash(&pre, &header_bytes, &salt, &secret_block);
        Region::V2(Box::new(RegionV2 {
            slots: [v2::parse_slot(&raw[0]), v2::parse_slot(&raw[1])],
            raw,
            secret_block,
            signed_hash,
        }))
    };
    Ok(Prefix {
        preamble,
        header_bytes,
        header,
        hash,
        salt,
        region,
        digest: digest.finalize().into(),
    })
}

struct Unlocked {
    data_key: Key32,
    slot: usize,
    key_id: Uuid,
    generation: u32,
    two_slots: bool,
    /// The slot region satisfies its rule (always true when `unlock` was strict).
    region_ok: bool,
    secret: Option<SealedSecret>,
    signers: [Option<[u8; 32]>; SLOT_COUNT],
}

fn scope_mismatch(key_id: Uuid, key: &OpeningKey, header: &ArchiveHeader) -> EnvelopeError {
    let archive = match (&header.scope, &header.domain_id) {
        (Scope::Domain, Some(d)) => format!("a domain archive of domain {d}"),
        (scope, _) => format!("a {scope} archive"),
    };
    EnvelopeError::ScopeMismatch {
        key_id,
        key: key.describe(),
        archive,
    }
}

/// Unwraps the data key. `strict` (open, verify, re-encrypt) refuses any damaged or
/// unvouched slot; rewrap is lenient about a damaged slot the working one does not
/// vouch for, so that it can overwrite a torn write.
fn unlock(prefix: &Prefix, keys: KeyLookup<'_>, strict: bool) -> Result<Unlocked, EnvelopeError> {
    match &prefix.region {
        Region::V1 { slots } => unlock_v1(prefix, slots, keys, strict),
        Region::V2(r) => unlock_v2(prefix, r, keys, strict),
    }
}

fn unlock_v1(
    prefix: &Prefix,
    slots: &[format::SlotState; SLOT_COUNT],
    keys: KeyLookup<'_>,
    strict: bool,
) -> Result<Unlocked, EnvelopeError> {
    if let Some(i) = slots.iter().position(|s| *s == format::SlotState::Damaged)
        && strict
    {
        return Err(EnvelopeError::Tampered(format!(
            "key slot {i} is damaged (torn write or modification); if a rewrap was interrupted, running it again repairs the slot"
        )));
    }
    let mut occupied: Vec<(usize, &format::KeySlot)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            format::SlotState::Occupied(k) => Some((i, k)),
            _ => None,
        })
        .collect();
    if occupied.is_empty() {
        return Err(EnvelopeError::Tampered("both key slots are empty".into()));
    }
    occupied.sort_by_key(|(_, k)| std::cmp::Reverse(k.generation));
    if let [(_, a), (_, b)] = occupied.as_slice()
        && a.generation == b.generation
    {
        return Err(EnvelopeError::Tampered(format!(
            "both key slots claim generation {}",
            a.generation
        )));
    }
    let two_slots = occupied.len() == 2;
    let mut unavailable = Vec::new();
    let mut wrong = None;
    for (index, slot) in occupied {
        match keys(&slot.key_id) {
            None => unavailable.push(slot.key_id),
            Some(key) => {
                if !key.fits(&prefix.header) {
                    return Err(scope_mismatch(slot.key_id, &key, &prefix.header));
                }
                match unwrap_slot_v1(&key.material, slot, &prefix.header.id, &prefix.hash) {
                    Ok(data_key) => {
                        return Ok(Unlocked {
                            data_key,
                            slot: index,
                            key_id: slot.key_id,
                            generation: slot.generation,
                            two_slots,
                            region_ok: true,
                            secret: None,
                            signers: [None, None],
                        });
                    }
                    Err(()) => {
                        wrong.get_or_insert(slot.key_id);
                    }
                }
            }
        }
    }
    Err(match wrong {
        Some(key_id) => EnvelopeError::WrongKey { key_id },
        None => EnvelopeError::KeyUnavailable {
            key_ids: unavailable,
        },
    })
}

fn unlock_v2(
    prefix: &Prefix,
    r: &RegionV2,
    keys: KeyLookup<'_>,
    strict: bool,
) -> Result<Unlocked, EnvelopeError> {
    let region = v2::check_region(&r.raw, &r.slots);
    if let Err(e) = &region
        && strict
    {
        return Err(EnvelopeError::Tampered(format!(
            "{e}; if a rewrap was interrupted by a torn write, running it again repairs it"
        )));
    }
    let mut occupied: Vec<(usize, &v2::Slot)> = r.occupied().collect();
    if occupied.is_empty() {
        return Err(EnvelopeError::Tampered("both key slots are empty".into()));
    }
    occupied.sort_by_key(|(_, s)| std::cmp::Reverse(s.generation));
    // Every slot whose key this home holds must open, and to the same data key.
    let mut found: Option<(Key32, usize, &v2::Slot)> = None;
    let mut unavailable = Vec::new();
    for &(index, slot) in &occupied {
        let Some(key) = keys(&slot.key_id) else {
            unavailable.push(slot.key_id);
            continue;
        };
        if !key.fits(&prefix.header) {
            return Err(scope_mismatch(slot.key_id, &key, &prefix.header));
        }
        let data_key = unwrap_slot_v2(&key, slot, index, prefix).map_err(|()| {
            EnvelopeError::Tampered(format!(
                "key slot {index} names key {}, which this home holds, but does not open with it: the slot was modified, or that key's material differs from the one that sealed the archive",
                slot.key_id
            ))
        })?;
        match &found {
            None => found = Some((data_key, index, slot)),
            Some((dk, _, _)) if dk.ct_eq(&data_key) => {}
            Some(_) => {
                return Err(EnvelopeError::Tampered(
                    "the two key slots wrap different data keys".into(),
                ));
            }
        }
    }
    let Some((data_key, index, slot)) = found else {
        return Err(EnvelopeError::KeyUnavailable {
            key_ids: unavailable,
        });
    };
    // Lenient (rewrap) with a broken region: only the slot that opened is checked below;
    // the other one, whatever it holds (a torn write, a forged slot), is the slot the
    // rewrap overwrites with an authenticated one.
    // Order of the checks, so that the error names what was damaged: the slots' data-key
    // MACs (which cover the salt), then the secret block, then the signatures (which
    // cover everything before the payload).
    let region_key = subkey(&data_key, &prefix.salt, v2::REGION_INFO)?;
    let mut region_ok = region.is_ok();
    let mut authentic = [false; SLOT_COUNT];
    for (i, s) in r.occupied() {
        match slot_mac_valid(&region_key, prefix, i, s) {
            Ok(()) => authentic[i] = true,
            // Strict, or the slot that opened: fatal. Lenient (rewrap), the other slot:
            // it claims nothing and is the one the rewrap overwrites.
            Err(e) if strict || i == index => return Err(e),
            Err(_) => region_ok = false,
        }
    }
    let secret = open_secret(&data_key, prefix, &r.secret_block)?;
    let mut signers = [None, None];
    for (i, s) in r.occupied().filter(|(i, _)| authentic[*i]) {
        match slot_signer(r, i, s) {
            Ok(signer) => signers[i] = signer,
            Err(e) if strict || i == index => return Err(e),
            Err(_) => region_ok = false,
        }
    }
    Ok(Unlocked {
        data_key,
        slot: index,
        key_id: slot.key_id,
        generation: slot.generation,
        two_slots: occupied.len() == 2,
        region_ok,
        secret,
        signers,
    })
}

/// Checks slot `i`'s region MAC (under the data key).
fn slot_mac_valid(
    region_key: &Key32,
    prefix: &Prefix,
    i: usize,
    s: &v2::Slot,
) -> Result<(), EnvelopeError> {
    let expected = hmac32(region_key, &s.mac_input(&prefix.hash, &prefix.salt, i));
    if !bool::from(expected.ct_eq(&s.region_mac)) {
        return Err(EnvelopeError::Tampered(format!(
            "key slot {i} is not authenticated by the data key (slot region modified)"
        )));
    }
    Ok(())
}

/// Checks slot `i`'s signature, if any; returns the signer.
fn slot_signer(r: &RegionV2, i: usize, s: &v2::Slot) -> Result<Option<[u8; 32]>, EnvelopeError> {
    if s.signature.is_none() {
        return Ok(None);
    }
    if !signature_valid(&s.signature, &s.signed_message(&r.signed_hash, i)) {
        return Err(EnvelopeError::Tampered(format!(
            "the signature of key slot {i} does not verify"
        )));
    }
    Ok(Some(s.signature.public_key))
}

/// HKDF-SHA-256(ikm = data key, salt = archive salt, info) → 32 bytes.
fn subkey(data_key: &Key32, salt: &[u8; SALT_LEN], info: &[u8]) -> Result<Key32, EnvelopeError> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), data_key.expose());
    let mut k = [0u8; 32];
    hk.expand(info, &mut k)
        .map_err(|_| io::Error::other("HKDF-SHA-256 rejected a 32-byte output"))?;
    Ok(Key32::from_bytes(&mut k))
}

/// HMAC-SHA-256 with a 32-byte key.
fn hmac32(key: &Key32, message: &[u8]) -> [u8; 32] {
    // HMAC-SHA-256 zero-pads keys to its 64-byte block; padding here keeps it infallible.
    let mut padded = Zeroizing::new([0u8; 64]);
    padded[..32].copy_from_slice(key.expose());
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(padded.as_ref().into());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The v2 key-encryption key: HKDF-SHA-256(ikm = backup key, no salt, info =
/// "vault.archive.v2 kek" || scope byte || domain id), so the key's scope and domain
/// (as the home records them) are part of the wrapping.
fn kek(key: &OpeningKey) -> Result<Key32, EnvelopeError> {
    let hk = hkdf::Hkdf::<Sha256>::new(None, key.material.expose());
    let mut k = [0u8; 32];
    hk.expand(&v2::kek_info(key.scope, key.domain_id.as_deref()), &mut k)
        .map_err(|_| io::Error::other("HKDF-SHA-256 rejected a 32-byte output"))?;
    Ok(Key32::from_bytes(&mut k))
}

struct SlotParams {
    key_id: Uuid,
    generation: u32,
    index: usize,
    allowed_other: [u8; 32],
}

fn wrap_slot_v2(
    data_key: &Key32,
    key: &OpeningKey,
    p: SlotParams,
    prefix: &Prefix,
    signer: Option<&SigningKey>,
) -> Result<v2::Slot, EnvelopeError> {
    let Region::V2(r) = &prefix.region else {
        return Err(EnvelopeError::NeedsUpgrade);
    };
    wrap_slot_parts(
        data_key,
        key,
        p,
        &prefix.header.id,
        &prefix.hash,
        &prefix.salt,
        &r.signed_hash,
        signer,
    )
}

#[allow(clippy::too_many_arguments)]
fn wrap_slot_parts(
    data_key: &Key32,
    key: &OpeningKey,
    p: SlotParams,
    archive_id: &Uuid,
    hash: &[u8; 32],
    salt: &[u8; SALT_LEN],
    signed_hash: &[u8; 32],
    signer: Option<&SigningKey>,
) -> Result<v2::Slot, EnvelopeError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let mut slot = v2::Slot {
        generation: p.generation,
        key_id: p.key_id,
        nonce,
        wrapped_key: [0u8; 48],
        allowed_other: p.allowed_other,
        region_mac: [0u8; 32],
        signature: v2::Signature::NONE,
    };
    let aad = slot.aad(archive_id, p.index, hash);
    let mut buf = Zeroizing::new(*data_key.expose());
    let tag = gcm_seal(&gcm(&kek(key)?), &nonce, &aad, buf.as_mut())?;
    slot.wrapped_key[..32].copy_from_slice(buf.as_ref());
    slot.wrapped_key[32..].copy_from_slice(&tag);
    let region_key = subkey(data_key, salt, v2::REGION_INFO)?;
    slot.region_mac = hmac32(&region_key, &slot.mac_input(hash, salt, p.index));
    slot.signature = sign(signer, |sig| {
        let mut unsigned = slot.clone();
        unsigned.signature = sig;
        unsigned.signed_message(signed_hash, p.index)
    });
    Ok(slot)
}

fn unwrap_slot_v2(
    key: &OpeningKey,
    slot: &v2::Slot,
    index: usize,
    prefix: &Prefix,
) -> Result<Key32, ()> {
    let kek = kek(key).map_err(|_| ())?;
    let aad = slot.aad(&prefix.header.id, index, &prefix.hash);
    let mut buf = Zeroizing::new([0u8; 32]);
    buf.copy_from_slice(&slot.wrapped_key[..32]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&slot.wrapped_key[32..]);
    gcm_open(&gcm(&kek), &slot.nonce, &aad, buf.as_mut(), &tag).map_err(|_| ())?;
    Ok(Key32::from_bytes(&mut buf))
}

fn unwrap_slot_v1(
    backup_key: &Key32,
    slot: &format::KeySlot,
    archive_id: &Uuid,
    hash: &[u8; 32],
) -> Result<Key32, ()> {
    let aad = slot.aad(archive_id, hash);
    let mut buf = Zeroizing::new([0u8; 32]);
    buf.copy_from_slice(&slot.wrapped_key[..32]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&slot.wrapped_key[32..]);
    gcm_open(&gcm(backup_key), &slot.nonce, &aad, buf.as_mut(), &tag).map_err(|_| ())?;
    Ok(Key32::from_bytes(&mut buf))
}

/// The secret block: AES-256-GCM under HKDF(data key, salt, "vault.archive.v2 secret")
/// with an all-zero nonce (that key encrypts exactly one message: the data key is fresh
/// per archive and rewrap never rewrites the block), AAD = header hash || salt, over
/// length (u16 BE) || secret || zero padding to 256 bytes.
fn seal_secret(
    data_key: &Key32,
    salt: &[u8; SALT_LEN],
    hash: &[u8; 32],
    secret: Option<&[u8]>,
) -> Result<[u8; v2::SECRET_BLOCK_LEN], EnvelopeError> {
    let secret = secret.unwrap_or_default();
    if secret.len() > MAX_SECRET_LEN {
        return Err(EnvelopeError::InvalidHeader(format!(
            "the secret field holds at most {MAX_SECRET_LEN} bytes, {} were given",
            secret.len()
        )));
    }
    let mut block = Zeroizing::new([0u8; v2::SECRET_BLOCK_LEN]);
    block[..2].copy_from_slice(&(secret.len() as u16).to_be_bytes());
    block[2..2 + secret.len()].copy_from_slice(secret);
    let key = subkey(data_key, salt, v2::SECRET_INFO)?;
    let body = v2::SECRET_BLOCK_LEN - TAG_LEN;
    let tag = gcm_seal(
        &gcm(&key),
        &[0u8; NONCE_LEN],
        &secret_aad(hash, salt),
        &mut block[..body],
    )?;
    let mut out = *block;
    out[body..].copy_from_slice(&tag);
    Ok(out)
}

fn secret_aad(hash: &[u8; 32], salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut aad = v2::SECRET_INFO.to_vec();
    aad.extend_from_slice(hash);
    aad.extend_from_slice(salt);
    aad
}

fn open_secret(
    data_key: &Key32,
    prefix: &Prefix,
    block: &[u8; v2::SECRET_BLOCK_LEN],
) -> Result<Option<SealedSecret>, EnvelopeError> {
    let key = subkey(data_key, &prefix.salt, v2::SECRET_INFO)?;
    let body = v2::SECRET_BLOCK_LEN - TAG_LEN;
    let mut buf = Zeroizing::new(*block);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&block[body..]);
    let aad = secret_aad(&prefix.hash, &prefix.salt);
    gcm_open(&gcm(&key), &[0u8; NONCE_LEN], &aad, &mut buf[..body], &tag)
        .map_err(|_| EnvelopeError::Tampered("the secret block does not authenticate".into()))?;
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    if len > MAX_SECRET_LEN || buf[2 + len..body].iter().any(|&b| b != 0) {
        return Err(EnvelopeError::Malformed(
            "the secret block's length or padding is invalid".into(),
        ));
    }
    Ok((len > 0).then(|| SealedSecret(Zeroizing::new(buf[2..2 + len].to_vec()))))
}

fn write_slot<F: ArchiveFile>(
    file: &mut F,
    slots_offset: u64,
    index: usize,
    bytes: &[u8],
) -> Result<(), EnvelopeError> {
    file.seek(SeekFrom::Start(slots_offset + (index * bytes.len()) as u64))?;
    file.write_all(bytes)?;
    file.flush()?;
    file.sync()?;
    Ok(())
}

/// v1 trailer MAC key = HKDF-SHA-256(ikm = data key, salt = archive salt, info = label).
fn trailer_tag_v1(
    data_key: &Key32,
    salt: &[u8; SALT_LEN],
    hash: &[u8; 32],
    size: u64,
    sha256: &[u8; 32],
) -> Result<[u8; 32], EnvelopeError> {
    let key = subkey(data_key, salt, format::TRAILER_INFO)?;
    Ok(hmac32(
        &key,
        &format::Trailer::mac_input(hash, size, sha256),
    ))
}

enum AnyTrailer {
    V1(format::Trailer),
    V2(v2::Trailer),
}

impl AnyTrailer {
    fn parse(prefix: &Prefix, bytes: &[u8]) -> Result<Self, EnvelopeError> {
        match prefix.region {
            Region::V1 { .. } => {
                let b: &[u8; format::TRAILER_LEN] = bytes
                    .try_into()
                    .map_err(|_| EnvelopeError::Truncated("trailer".into()))?;
                Ok(AnyTrailer::V1(format::Trailer::parse(b)?))
            }
            Region::V2(_) => {
                let b: &[u8; v2::TRAILER_LEN] = bytes
                    .try_into()
                    .map_err(|_| EnvelopeError::Truncated("trailer".into()))?;
                Ok(AnyTrailer::V2(v2::Trailer::parse(b)?))
            }
        }
    }
}

fn trailer_is_v1(t: &[u8; format::TRAILER_LEN]) -> Result<(), EnvelopeError> {
    format::Trailer::parse(t).map(|_| ())
}

fn trailer_is_v2(t: &[u8; v2::TRAILER_LEN]) -> Result<(), EnvelopeError> {
    v2::Trailer::parse(t).map(|_| ())
}

enum PayloadStream<R> {
    V1(DecryptStream<R, { format::TRAILER_LEN }>),
    V2(DecryptStream<R, { v2::TRAILER_LEN }>),
}

/// The payload of an unlocked archive being decrypted, one batch per [`Self::step`].
struct PayloadOpener<R> {
    stream: PayloadStream<R>,
    data_key: Key32,
    salt: [u8; SALT_LEN],
    hash: [u8; 32],
    signed_hash: Option<[u8; 32]>,
    /// v2: who signed the trailer (set by the last step).
    trailer_signer: Option<[u8; 32]>,
}

impl<R: Read> PayloadOpener<R> {
    /// Reads the commitment and checks it (before any chunk is read).
    fn new(prefix: &Prefix, data_key: &Key32, mut input: R) -> Result<Self, EnvelopeError> {
        let mut commitment = [0u8; COMMITMENT_LEN];
        input
            .read_exact(&mut commitment)
            .map_err(eof_is_truncation("payload commitment"))?;
        let dec = Decryptor::new(data_key, &prefix.salt, &prefix.context(), &commitment)?;
        let (stream, signed_hash) = match &prefix.region {
            Region::V1 { .. } => (
                PayloadStream::V1(dec.into_stream(input, trailer_is_v1)),
                None,
            ),
            Region::V2(r) => (
                PayloadStream::V2(dec.into_stream_hashing(input, trailer_is_v2, &commitment)),
                Some(r.signed_hash),
            ),
        };
        Ok(PayloadOpener {
            stream,
            data_key: data_key.duplicate(),
            salt: prefix.salt,
            hash: prefix.hash,
            signed_hash,
            trailer_signer: None,
        })
    }

    /// One batch; at the end of the input, the trailer checks.
    fn step<W: Write>(
        &mut self,
        output: &mut W,
    ) -> Result<Option<cobblestone::PlaintextSummary>, EnvelopeError> {
        match &mut self.stream {
            PayloadStream::V1(s) => {
                let Some((summary, tail)) = s.step(output)? else {
                    return Ok(None);
                };
                let trailer = format::Trailer::parse(&tail)?;
                let expected = trailer_tag_v1(
                    &self.data_key,
                    &self.salt,
                    &self.hash,
                    trailer.plaintext_size,
                    &trailer.plaintext_sha256,
                )?;
                if !bool::from(expected.ct_eq(&trailer.tag)) {
                    return Err(EnvelopeError::Tampered(
                        "trailer MAC does not verify".into(),
                    ));
                }
                check_plaintext(trailer.plaintext_size, &trailer.plaintext_sha256, &summary)?;
                Ok(Some(summary))
            }
            PayloadStream::V2(s) => {
                let Some((summary, tail)) = s.step(output)? else {
                    return Ok(None);
                };
                let trailer = v2::Trailer::parse(&tail)?;
                let key = subkey(&self.data_key, &self.salt, v2::TRAILER_INFO)?;
                let expected = hmac32(&key, &trailer.mac_input(&self.hash, &self.salt));
                if !bool::from(expected.ct_eq(&trailer.tag)) {
                    return Err(EnvelopeError::Tampered(
                        "trailer MAC does not verify".into(),
                    ));
                }
                check_plaintext(trailer.plaintext_size, &trailer.plaintext_sha256, &summary)?;
                let digest = s.ciphertext_digest();
                if digest != Some(trailer.ciphertext_digest) {
                    return Err(EnvelopeError::Tampered(
                        "the trailer's ciphertext digest does not match the payload".into(),
                    ));
                }
                if !trailer.signature.is_none() {
                    let signed_hash = self.signed_hash.unwrap_or_default();
                    if !signature_valid(&trailer.signature, &trailer.signed_message(&signed_hash)) {
                        return Err(EnvelopeError::Tampered(
                            "the trailer's signature does not verify".into(),
                        ));
                    }
                    self.trailer_signer = Some(trailer.signature.public_key);
                }
                Ok(Some(summary))
            }
        }
    }
}

fn check_plaintext(
    size: u64,
    sha256: &[u8; 32],
    summary: &cobblestone::PlaintextSummary,
) -> Result<(), EnvelopeError> {
    if size != summary.size || *sha256 != summary.sha256 {
        return Err(EnvelopeError::Tampered(
            "trailer size or SHA-256 does not match the decrypted plaintext".into(),
        ));
    }
    Ok(())
}

/// A writer that hashes (BLAKE3) everything written through it: the sealer's output
/// after the prefix, so the digest covers the commitment and every encrypted chunk.
struct Digesting<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct SealState<W: Write> {
    enc: Encryptor<Digesting<W>>,
    data_key: Key32,
    salt: [u8; SALT_LEN],
    hash: [u8; 32],
    signed_hash: [u8; 32],
    prefix_len: u64,
    archive_id: Uuid,
    signer: Option<SigningKey>,
}

struct SealParams<'a> {
    key_id: Uuid,
    key: &'a Key32,
    generation: u32,
    signer: Option<&'a SigningKey>,
    secret: Option<&'a [u8]>,
}

/// Writes preamble, header, salt, slots (slot 0 = the wrapping, slot 1 empty) and the
/// secret block, and returns an encryptor positioned at the payload. The key-encryption
/// key is bound to the header's scope and domain (the caller has checked that the
/// sealing key belongs to them).
fn begin_seal<W: Write>(
    header_bytes: &[u8],
    header: &ArchiveHeader,
    p: SealParams<'_>,
    mut output: W,
) -> Result<SealState<W>, EnvelopeError> {
    let header_len = u32::try_from(header_bytes.len())
        .ok()
        .filter(|&n| n > 0 && n <= format::MAX_HEADER_LEN)
        .ok_or_else(|| EnvelopeError::InvalidHeader("header length out of bounds".into()))?;
    let pre = Preamble {
        version: CURRENT_VERSION,
        flags: 0,
        header_len,
    }
    .encode();
    let hash = header_hash(&pre, header_bytes);
    let data_key = Key32::random();
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let secret_block = seal_secret(&data_key, &salt, &hash, p.secret)?;
    let signed_hash = v2::signed_hash(&pre, header_bytes, &salt, &secret_block);
    let key = OpeningKey::new(p.key.duplicate(), header.scope, header.domain_id.clone());
    let slot = wrap_slot_parts(
        &data_key,
        &key,
        SlotParams {
            key_id: p.key_id,
            generation: p.generation,
            index: 0,
            allowed_other: [0; 32],
        },
        &header.id,
        &hash,
        &salt,
        &signed_hash,
        p.signer,
    )?;
    let mut prefix = Vec::with_capacity(
        PREAMBLE_LEN
            + header_bytes.len()
            + SALT_LEN
            + SLOT_COUNT * v2::SLOT_LEN
            + v2::SECRET_BLOCK_LEN,
    );
    prefix.extend_from_slice(&pre);
    prefix.extend_from_slice(header_bytes);
    prefix.extend_from_slice(&salt);
    prefix.extend_from_slice(&slot.encode());
    prefix.extend_from_slice(&[0u8; v2::SLOT_LEN]);
    prefix.extend_from_slice(&secret_block);
    output.write_all(&prefix)?;
    let out = Digesting {
        inner: output,
        hasher: blake3::Hasher::new(),
    };
    let enc = Encryptor::new(&data_key, &salt, &context_v2(&hash), out)?;
    Ok(SealState {
        enc,
        data_key,
        salt,
        hash,
        signed_hash,
        prefix_len: prefix.len() as u64,
        archive_id: header.id,
        signer: p.signer.cloned(),
    })
}

fn finish_seal<W: Write>(
    state: SealState<W>,
    key_id: Uuid,
) -> Result<(W, SealSummary), EnvelopeError> {
    let (out, summary, payload_len) = state.enc.finish()?;
    let Digesting { mut inner, hasher } = out;
    let mut trailer = v2::Trailer {
        plaintext_size: summary.size,
        plaintext_sha256: summary.sha256,
        ciphertext_digest: hasher.finalize().into(),
        tag: [0; 32],
        signature: v2::Signature::NONE,
    };
    let key = subkey(&state.data_key, &state.salt, v2::TRAILER_INFO)?;
    trailer.tag = hmac32(&key, &trailer.mac_input(&state.hash, &state.salt));
    trailer.signature = sign(state.signer.as_ref(), |sig| {
        let mut unsigned = trailer.clone();
        unsigned.signature = sig;
        unsigned.signed_message(&state.signed_hash)
    });
    inner.write_all(&trailer.encode())?;
    inner.flush()?;
    let summary = SealSummary {
        archive_id: state.archive_id,
        key_id,
        plaintext_size: summary.size,
        sha256: summary.sha256,
        bytes_written: state.prefix_len + payload_len + v2::TRAILER_LEN as u64,
    };
    Ok((inner, summary))
}

/// Test support: a format 1 archive, written the way vault 0.1 wrote them (the v1 writer
/// is gone from the product; v1 archives are only read and upgraded).
#[cfg(test)]
pub(crate) fn seal_v1<R: Read, W: Write>(
    header: &ArchiveHeader,
    key_id: Uuid,
    backup_key: &Key32,
    input: R,
    mut output: W,
) -> Result<SealSummary, EnvelopeError> {
    let header_bytes = header.encode()?;
    let pre = Preamble {
        version: 1,
        flags: 0,
        header_len: header_bytes.len() as u32,
    }
    .encode();
    let hash = header_hash(&pre, &header_bytes);
    let data_key = Key32::random();
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let mut slot = format::KeySlot {
        generation: 1,
        key_id,
        nonce,
        wrapped_key: [0u8; format::WRAPPED_KEY_LEN],
    };
    let aad = slot.aad(&header.id, &hash);
    let mut buf = Zeroizing::new(*data_key.expose());
    let tag = gcm_seal(&gcm(backup_key), &nonce, &aad, buf.as_mut())?;
    slot.wrapped_key[..32].copy_from_slice(buf.as_ref());
    slot.wrapped_key[32..].copy_from_slice(&tag);
    output.write_all(&pre)?;
    output.write_all(&header_bytes)?;
    output.write_all(&salt)?;
    output.write_all(&slot.encode())?;
    output.write_all(&[0u8; format::SLOT_LEN])?;
    let mut enc = Encryptor::new(
        &data_key,
        &salt,
        &format::cobblestone_context(&hash),
        output,
    )?;
    enc.encrypt_from(input)?;
    let (mut out, summary, payload_len) = enc.finish()?;
    let trailer = format::Trailer {
        plaintext_size: summary.size,
        plaintext_sha256: summary.sha256,
        tag: trailer_tag_v1(&data_key, &salt, &hash, summary.size, &summary.sha256)?,
    };
    out.write_all(&trailer.encode())?;
    out.flush()?;
    Ok(SealSummary {
        archive_id: header.id,
        key_id,
        plaintext_size: summary.size,
        sha256: summary.sha256,
        bytes_written: (PREAMBLE_LEN + header_bytes.len() + SALT_LEN + 2 * format::SLOT_LEN) as u64
            + payload_len
            + format::TRAILER_LEN as u64,
    })
}

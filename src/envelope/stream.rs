//! The streaming faces of the archive format: a [`Sealer`] that *is* a `Write` (with a
//! mandatory [`Sealer::finish`], as age's `StreamWriter`) and an [`Opener`] that *is* a
//! `Read` or writes into any `Write`.
//!
//! Invariants:
//! - A `Sealer` dropped without `finish` leaves an archive with no trailer, which never
//!   opens (`Truncated`); callers seal into a temporary file and commit it only after
//!   `finish` returned `Ok`, so a dropped sealer leaves nothing under a final name.
//! - An `Opener` releases plaintext only from chunks that authenticated, and its `read`
//!   returns `Ok(0)` (end of stream) only once the whole archive, trailer included, has
//!   verified. Any failure is an `Err` from `read` (kind `InvalidData` for damage), and
//!   every later call fails the same way: a reader that stops at `Ok(0)` has verified
//!   plaintext, one that saw an `Err` must discard what it read.
//! - The sealing and opening pipelines (hashing and AES-GCM on their own thread) are
//!   those of [`super::seal`] and [`super::open`], which are thin wrappers over these.
use std::io::{self, Read, Write};

use ed25519_dalek::SigningKey;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    ArchiveHeader, EnvelopeError, KeyLookup, OpenSummary, PayloadOpener, SealParams, SealState,
    SealSummary, SealedSecret, Signers, begin_seal, finish_seal, read_prefix, unlock,
};
use crate::secret::Key32;

/// What to seal under: the backup key that wraps the archive's data key (it must belong
/// to the header's scope and domain, which the key-encryption key is bound to), and
/// optionally the home's signing key and a secret field.
pub struct SealOptions<'a> {
    pub(super) key_id: Uuid,
    pub(super) key: &'a Key32,
    pub(super) signer: Option<&'a SigningKey>,
    pub(super) secret: Option<&'a [u8]>,
}

impl<'a> SealOptions<'a> {
    /// Seal for backup key `key_id` with material `key`, unsigned, no secret.
    pub fn new(key_id: Uuid, key: &'a Key32) -> Self {
        SealOptions {
            key_id,
            key,
            signer: None,
            secret: None,
        }
    }

    /// Sign the key slot and the trailer with the home's signing key.
    pub fn signed_by(mut self, signer: &'a SigningKey) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Keep `secret` (at most [`super::MAX_SECRET_LEN`] bytes; longer is refused by
    /// `Sealer::new`) in the archive, encrypted and authenticated under its data key:
    /// whoever opens the archive gets it back in [`OpenSummary::secret`].
    pub fn with_secret(mut self, secret: &'a [u8]) -> Self {
        self.secret = Some(secret);
        self
    }
}

/// An archive being sealed into `W`: write the plaintext into it, then call
/// [`Sealer::finish`], which writes the final chunk and the trailer. Until `finish`
/// returns `Ok` the output is not an archive.
#[must_use = "an archive is complete only after Sealer::finish returned Ok"]
pub struct Sealer<W: Write> {
    state: SealState<W>,
    key_id: Uuid,
}

impl<W: Write> Sealer<W> {
    /// Writes the preamble, header, salt and key slots to `output` (under a fresh data
    /// key and salt) and returns a sealer positioned at the first chunk.
    pub fn new(
        header: &ArchiveHeader,
        options: SealOptions<'_>,
        output: W,
    ) -> Result<Self, EnvelopeError> {
        let header_bytes = header.encode()?;
        let params = SealParams {
            key_id: options.key_id,
            key: options.key,
            generation: 1,
            signer: options.signer,
            secret: options.secret,
        };
        let state = begin_seal(&header_bytes, header, params, output)?;
        Ok(Sealer {
            state,
            key_id: options.key_id,
        })
    }

    /// Reads `input` to its end into the archive. Faster than `io::copy` into the
    /// sealer: the reads land directly in the chunk buffers (no intermediate copy).
    pub fn read_from<R: Read>(&mut self, input: R) -> Result<(), EnvelopeError> {
        self.state.enc.encrypt_from(input)
    }

    /// The output being written to.
    pub fn get_ref(&self) -> &W {
        &self.state.enc.get_ref().inner
    }

    /// Completes the archive (final chunk, trailer, flush) and gives the output back.
    pub fn finish(self) -> Result<(W, SealSummary), EnvelopeError> {
        finish_seal(self.state, self.key_id)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.state.enc.write(buf)
    }

    /// Flushes the output only: a partial chunk cannot be emitted before `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.state.enc.flush()
    }
}

enum State {
    Running,
    Done(Box<OpenSummary>),
    Failed(EnvelopeError),
    /// `Failed` whose error was handed out by [`Opener::finish`] (never reached by `read`).
    Spent,
}

/// An archive being opened: its header is parsed, a key slot unlocked and the key
/// commitment checked by [`Opener::new`]; the plaintext then comes out through
/// [`Read`] (or [`Opener::open_into`]), each chunk only after it authenticated.
pub struct Opener<R> {
    payload: PayloadOpener<R>,
    version: u16,
    header: ArchiveHeader,
    key_id: Uuid,
    slot: usize,
    generation: u32,
    two_slots: bool,
    secret: Option<SealedSecret>,
    slot_signers: [Option<[u8; 32]>; 2],
    prefix_sha256: [u8; 32],
    /// Plaintext that authenticated and was not read yet (at most the batches the
    /// pipeline finishes in one step: a few MiB).
    buf: PlainBuf,
    pos: usize,
    state: State,
}

impl<R: Read> Opener<R> {
    /// Reads everything before the payload, unwraps the data key with a key from `keys`
    /// and checks the key commitment. No plaintext has been produced when this fails.
    pub fn new(mut input: R, keys: KeyLookup<'_>) -> Result<Self, EnvelopeError> {
        let prefix = read_prefix(&mut input)?;
        let unlocked = unlock(&prefix, keys, true)?;
        let payload = PayloadOpener::new(&prefix, &unlocked.data_key, input)?;
        Ok(Opener {
            payload,
            version: prefix.preamble.version,
            header: prefix.header,
            key_id: unlocked.key_id,
            slot: unlocked.slot,
            generation: unlocked.generation,
            two_slots: unlocked.two_slots,
            secret: unlocked.secret,
            slot_signers: unlocked.signers,
            prefix_sha256: prefix.digest,
            buf: PlainBuf::default(),
            pos: 0,
            state: State::Running,
        })
    }

    /// The archive's header (authenticated: the commitment, which binds it, matched).
    pub fn header(&self) -> &ArchiveHeader {
        &self.header
    }

    /// The key whose slot unlocked the archive.
    pub fn key_id(&self) -> Uuid {
        self.key_id
    }

    /// The secret field (v2; `None` when empty).
    pub fn secret(&self) -> Option<&SealedSecret> {
        self.secret.as_ref()
    }

    /// The generation of the slot that unlocked the archive.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// Decrypts the rest of the archive into `output` (no copy through the opener's
    /// buffer) and returns the summary once everything verified. As with [`super::open`],
    /// on `Err` whatever reached `output` must be discarded.
    pub fn open_into<W: Write>(mut self, mut output: W) -> Result<OpenSummary, EnvelopeError> {
        output.write_all(&self.buf.0[self.pos..])?;
        self.pos = self.buf.0.len();
        while let State::Running = self.state {
            self.step(&mut output);
        }
        if let State::Done(_) = self.state {
            output.flush()?;
        }
        self.finish()
    }

    /// Verifies whatever was not read yet (discarding it) and returns the summary: `Ok`
    /// only if the whole archive authenticated.
    pub fn finish(mut self) -> Result<OpenSummary, EnvelopeError> {
        while let State::Running = self.state {
            self.step(&mut io::sink());
        }
        match std::mem::replace(&mut self.state, State::Spent) {
            State::Done(s) => Ok(*s),
            State::Failed(e) => Err(e),
            State::Running | State::Spent => Err(io::Error::other("the opener failed").into()),
        }
    }

    /// One batch into `out`; records the end or the failure in `self.state` (which is
    /// then where the error is: callers look there).
    fn step<W: Write>(&mut self, out: &mut W) {
        match self.payload.step(out) {
            Ok(None) => {}
            Ok(Some(summary)) => {
                self.state = State::Done(Box::new(OpenSummary {
                    version: self.version,
                    header: self.header.clone(),
                    key_id: self.key_id,
                    slot: self.slot,
                    generation: self.generation,
                    plaintext_size: summary.size,
                    sha256: summary.sha256,
                    two_slots: self.two_slots,
                    secret: self.secret.take(),
                    signers: Signers {
                        slots: self.slot_signers,
                        trailer: self.payload.trailer_signer,
                    },
                    prefix_sha256: self.prefix_sha256,
                }));
            }
            Err(e) => self.state = State::Failed(e),
        }
    }
}

/// The opener's buffer of plaintext: grown by hand into a fresh block (never by
/// `realloc`, which would free the old block unwiped) and wiped when dropped (issue 13.11).
#[derive(Default)]
struct PlainBuf(Zeroizing<Vec<u8>>);

impl Write for PlainBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let need = self.0.len() + data.len();
        if need > self.0.capacity() {
            let mut bigger = Vec::with_capacity(need.max(2 * self.0.capacity()));
            bigger.extend_from_slice(&self.0);
            // The old block is wiped (its whole capacity) as it is dropped here.
            self.0 = Zeroizing::new(bigger);
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An `io::Error` that says what `e` says (kind `InvalidData` unless it is an I/O error).
fn io_copy(e: &EnvelopeError) -> io::Error {
    let kind = match e {
        EnvelopeError::Io(io) => io.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e.to_string())
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.0.len() {
                let n = out.len().min(self.buf.0.len() - self.pos);
                out[..n].copy_from_slice(&self.buf.0[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.state {
                State::Done(_) => return Ok(0),
                State::Failed(e) => return Err(io_copy(e)),
                State::Spent => return Err(io::Error::other("the opener failed")),
                State::Running => {}
            }
            let mut buf = std::mem::take(&mut self.buf);
            buf.0.clear();
            self.pos = 0;
            self.step(&mut buf);
            self.buf = buf;
            if let State::Failed(_) = self.state {
                // Earlier batches may have reached the buffer before the failure: never
                // hand them out after an error.
                self.buf.0.clear();
            }
        }
    }
}

//! Batches of Cobblestone chunks and the stages that process them, inline or on threads.
//!
//! A batch is one buffer of up to [`BATCH_CHUNKS`] chunk slots of `ENCRYPTED_CHUNK_SIZE`
//! bytes: chunk `i` of the batch keeps its plaintext at `i * ENCRYPTED_CHUNK_SIZE` and its
//! tag right after it, so the ciphertext is contiguous and nothing is ever compacted.
//! The stages are SHA-256 over the plaintext and AES-GCM (seal: hash, then encrypt in
//! place; open: decrypt in place, then hash). Reading and writing stay on the caller's
//! thread, because the caller's `Read`/`Write` need not be `Send`.
//!
//! Invariants:
//! - Batches leave in the order they entered: each stage is one thread and the stages
//!   form a chain of FIFO channels. SHA-256 therefore sees the plaintext in stream order,
//!   and output is written in stream order. AES-GCM needs no order at all: a chunk's
//!   nonce depends only on its counter, fixed when the batch is formed.
//! - Memory is bounded: at most `MAX_IN_FLIGHT + 1` buffers ever exist, and they are
//!   recycled, not reallocated.
//! - Threads start only when more than `INLINE_BATCHES` batches turn out not to be the
//!   last one (so inputs up to about a batch never pay for them), and never outlive the
//!   pipeline: dropping it closes the first channel, each stage finishes the batch in
//!   hand and exits, and `Drop` joins them.
//! - An error stays attached to its batch and surfaces when that batch reaches the front,
//!   so the error reported is the one a sequential reader would have met first.
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};

use crate::aead::Aes256Gcm;
use sha2::{Digest, Sha256};

use super::{
    CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, NONCE_LEN, TAG_LEN, chunk_nonce, gcm_open, gcm_seal,
};
use crate::envelope::error::EnvelopeError;

/// Chunks per batch: 1 MiB of plaintext. Large enough to amortize system calls and the
/// hand-over between threads, small enough to keep memory flat.
pub(super) const BATCH_CHUNKS: usize = 64;
/// Bytes of the chunk slots of one batch.
pub(super) const BATCH_BYTES: usize = BATCH_CHUNKS * ENCRYPTED_CHUNK_SIZE;
/// Batches processed on the caller's thread before any thread is started.
const INLINE_BATCHES: u64 = 1;
/// Batches handed to the stages and not yet written: enough to keep both stages and the
/// I/O busy at once, with one spare to absorb jitter.
const MAX_IN_FLIGHT: usize = 4;

/// One batch of consecutive chunks.
pub(super) struct Batch {
    pub(super) buf: Vec<u8>,
    /// Counter of the first chunk.
    pub(super) first: u64,
    /// Chunks in the batch (the final chunk included, even when empty).
    pub(super) chunks: usize,
    /// Plaintext bytes in the batch.
    pub(super) plain_len: usize,
    /// Set by a stage; later stages skip the batch and the pipeline returns the error.
    error: Option<EnvelopeError>,
}

impl Batch {
    pub(super) fn new(buf: Vec<u8>, first: u64, chunks: usize, plain_len: usize) -> Self {
        Batch {
            buf,
            first,
            chunks,
            plain_len,
            error: None,
        }
    }

    fn chunk_len(&self, i: usize) -> usize {
        (self.plain_len - i * CHUNK_SIZE).min(CHUNK_SIZE)
    }

    /// The ciphertext (chunks with their tags), contiguous.
    pub(super) fn ciphertext(&self) -> &[u8] {
        &self.buf[..self.plain_len + self.chunks * TAG_LEN]
    }

    fn plaintexts(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.chunks).map(|i| {
            let off = i * ENCRYPTED_CHUNK_SIZE;
            &self.buf[off..off + self.chunk_len(i)]
        })
    }

    /// Writes the plaintexts (which sit between the tags) with vectored writes.
    pub(super) fn write_plaintext<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let mut it = self.plaintexts().map(IoSlice::new);
        let mut slices: [IoSlice<'_>; BATCH_CHUNKS] =
            std::array::from_fn(|_| it.next().unwrap_or_else(|| IoSlice::new(&[])));
        write_all_vectored(out, &mut slices)
    }

    fn hash(&self, hasher: &mut Sha256) {
        for p in self.plaintexts() {
            hasher.update(p);
        }
    }

    fn seal(&mut self, cipher: &Aes256Gcm, base: &[u8; NONCE_LEN]) -> Result<(), EnvelopeError> {
        for i in 0..self.chunks {
            let len = self.chunk_len(i);
            let (body, rest) = self.buf[i * ENCRYPTED_CHUNK_SIZE..].split_at_mut(len);
            let nonce = chunk_nonce(base, self.first + i as u64);
            let tag = gcm_seal(cipher, &nonce, b"", body)?;
            rest[..TAG_LEN].copy_from_slice(&tag);
        }
        Ok(())
    }

    fn open(&mut self, cipher: &Aes256Gcm, base: &[u8; NONCE_LEN]) -> Result<(), EnvelopeError> {
        for i in 0..self.chunks {
            let len = self.chunk_len(i);
            let (body, rest) = self.buf[i * ENCRYPTED_CHUNK_SIZE..].split_at_mut(len);
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&rest[..TAG_LEN]);
            let counter = self.first + i as u64;
            if gcm_open(cipher, &chunk_nonce(base, counter), b"", body, &tag).is_err() {
                return Err(EnvelopeError::Tampered(format!(
                    "chunk {counter} does not authenticate (modified, reordered or truncated payload)"
                )));
            }
        }
        Ok(())
    }
}

/// The plaintext slots of `buf` from plaintext offset `from` on, for a vectored read.
pub(super) fn plaintext_slots_mut(buf: &mut [u8], from: usize) -> [IoSliceMut<'_>; BATCH_CHUNKS] {
    let (first, skip) = (from / CHUNK_SIZE, from % CHUNK_SIZE);
    let mut it = buf
        .chunks_mut(ENCRYPTED_CHUNK_SIZE)
        .skip(first)
        .enumerate()
        .map(|(j, slot)| {
            let start = if j == 0 { skip } else { 0 };
            IoSliceMut::new(&mut slot[start..CHUNK_SIZE])
        });
    std::array::from_fn(|_| it.next().unwrap_or_else(|| IoSliceMut::new(&mut [])))
}

/// `Write::write_all_vectored` (unstable in std).
fn write_all_vectored<W: Write>(out: &mut W, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One step applied to every batch.
pub(super) enum Stage {
    Hash(Sha256),
    Seal {
        cipher: Aes256Gcm,
        base_nonce: [u8; NONCE_LEN],
    },
    Open {
        cipher: Aes256Gcm,
        base_nonce: [u8; NONCE_LEN],
    },
}

impl Stage {
    fn run(&mut self, batch: &mut Batch) {
        if batch.error.is_some() {
            return;
        }
        let result = match self {
            Stage::Hash(h) => {
                batch.hash(h);
                Ok(())
            }
            Stage::Seal { cipher, base_nonce } => batch.seal(cipher, base_nonce),
            Stage::Open { cipher, base_nonce } => batch.open(cipher, base_nonce),
        };
        batch.error = result.err();
    }

    fn name(&self) -> &'static str {
        match self {
            Stage::Hash(_) => "vault-sha256",
            Stage::Seal { .. } => "vault-seal",
            Stage::Open { .. } => "vault-open",
        }
    }
}

/// Runs batches through the stages, inline at first and on one thread per stage once
/// the input is long enough; hands finished batches, in order, to a sink.
pub(super) struct Pipeline {
    /// The stages while running inline (empty while threads hold them).
    stages: Vec<Stage>,
    threads: Option<Threads>,
    free: Vec<Vec<u8>>,
    allocated: usize,
    buf_len: usize,
    submitted: u64,
}

struct Threads {
    input: Sender<Batch>,
    output: Receiver<Batch>,
    handles: Vec<JoinHandle<Stage>>,
    in_flight: usize,
}

impl Pipeline {
    /// `buf_len` bytes per buffer (at least `BATCH_BYTES`).
    pub(super) fn new(stages: Vec<Stage>, buf_len: usize) -> Self {
        Pipeline {
            stages,
            threads: None,
            free: Vec::new(),
            allocated: 0,
            buf_len,
            submitted: 0,
        }
    }

    /// A buffer to fill: a recycled one, or a new one (never more than the bound, since
    /// `submit` returns only once a buffer is free or may be allocated).
    pub(super) fn take_buffer(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_else(|| {
            self.allocated += 1;
            vec![0u8; self.buf_len]
        })
    }

    /// Processes `batch` (and passes every batch that finished, in order, to `sink`).
    /// `last` batches never start threads. On `Err`, the pipeline is unusable; drop it.
    pub(super) fn submit(
        &mut self,
        mut batch: Batch,
        last: bool,
        sink: &mut impl FnMut(&Batch) -> Result<(), EnvelopeError>,
    ) -> Result<(), EnvelopeError> {
        self.submitted += 1;
        if self.threads.is_none() && !last && self.submitted > INLINE_BATCHES {
            self.start()?;
        }
        let Some(threads) = self.threads.as_mut() else {
            for stage in &mut self.stages {
                stage.run(&mut batch);
            }
            return self.complete(batch, sink);
        };
        threads
            .input
            .send(batch)
            .map_err(|_| io::Error::other("a pipeline thread stopped early"))?;
        threads.in_flight += 1;
        // Write whatever is ready, then wait only if every buffer is in flight.
        loop {
            let Some(threads) = self.threads.as_mut() else {
                return Ok(());
            };
            let done = if threads.in_flight >= MAX_IN_FLIGHT {
                threads.output.recv().map_err(|_| stopped())?
            } else {
                match threads.output.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty) => return Ok(()),
                    Err(TryRecvError::Disconnected) => return Err(stopped().into()),
                }
            };
            threads.in_flight -= 1;
            self.complete(done, sink)?;
        }
    }

    /// Passes every batch still in flight to `sink`, stops the threads and returns the
    /// SHA-256 state (which has then seen every batch).
    pub(super) fn finish(
        &mut self,
        sink: &mut impl FnMut(&Batch) -> Result<(), EnvelopeError>,
    ) -> Result<Sha256, EnvelopeError> {
        while let Some(threads) = self.threads.as_mut()
            && threads.in_flight > 0
        {
            let done = threads.output.recv().map_err(|_| stopped())?;
            threads.in_flight -= 1;
            self.complete(done, sink)?;
        }
        self.stop()?;
        self.stages
            .iter_mut()
            .find_map(|s| match s {
                Stage::Hash(h) => Some(std::mem::take(h)),
                _ => None,
            })
            .ok_or_else(|| io::Error::other("pipeline has no SHA-256 stage").into())
    }

    fn complete(
        &mut self,
        mut batch: Batch,
        sink: &mut impl FnMut(&Batch) -> Result<(), EnvelopeError>,
    ) -> Result<(), EnvelopeError> {
        if let Some(e) = batch.error.take() {
            return Err(e);
        }
        sink(&batch)?;
        self.free.push(batch.buf);
        Ok(())
    }

    /// Moves each stage onto its own thread, chained by channels.
    fn start(&mut self) -> Result<(), EnvelopeError> {
        let (input, mut rx) = mpsc::channel::<Batch>();
        let mut handles = Vec::with_capacity(self.stages.len());
        for mut stage in std::mem::take(&mut self.stages) {
            let (tx, next_rx) = mpsc::channel::<Batch>();
            let handle = thread::Builder::new()
                .name(stage.name().into())
                .spawn(move || {
                    for mut batch in rx {
                        stage.run(&mut batch);
                        if tx.send(batch).is_err() {
                            break;
                        }
                    }
                    stage
                })?;
            handles.push(handle);
            rx = next_rx;
        }
        self.threads = Some(Threads {
            input,
            output: rx,
            handles,
            in_flight: 0,
        });
        Ok(())
    }

    /// Closes the first channel and joins the threads, taking the stages back.
    fn stop(&mut self) -> Result<(), EnvelopeError> {
        let Some(Threads {
            input,
            output,
            handles,
            ..
        }) = self.threads.take()
        else {
            return Ok(());
        };
        drop(input);
        drop(output);
        let mut panicked = false;
        for h in handles {
            match h.join() {
                Ok(stage) => self.stages.push(stage),
                Err(_) => panicked = true,
            }
        }
        if panicked {
            return Err(io::Error::other("a pipeline thread panicked").into());
        }
        Ok(())
    }
}

fn stopped() -> io::Error {
    io::Error::other("a pipeline thread stopped early")
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Errors were already reported (or are moot): this only guarantees that no
        // thread outlives the pipeline.
        let _ = self.stop();
    }
}

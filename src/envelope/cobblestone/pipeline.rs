//! Batches of Cobblestone chunks and the stages that process them, inline or on threads.
//!
//! A batch is one buffer of up to [`BATCH_CHUNKS`] chunk slots of `ENCRYPTED_CHUNK_SIZE`
//! bytes: chunk `i` of the batch keeps its plaintext at `i * ENCRYPTED_CHUNK_SIZE` and its
//! tag right after it, so the ciphertext is contiguous and nothing is ever compacted.
//! The stages are SHA-256 over the plaintext and AES-GCM (seal: hash, then encrypt in
//! place; open: decrypt in place, then hash). Reading and writing stay on the caller's
//! thread, because the caller's `Read`/`Write` need not be `Send`. Once threaded, one
//! worker runs SHA-256 and AES-GCM is split per batch between the worker and the
//! caller's thread (see `Pipeline::start`), so two threads keep two cores busy.
//!
//! Invariants:
//! - Batches leave in the order they entered: one worker thread, fed and drained through
//!   FIFO channels. SHA-256 therefore sees the plaintext in stream order,
//!   and output is written in stream order. AES-GCM needs no order at all: a chunk's
//!   nonce depends only on its counter, fixed when the batch is formed.
//! - Memory is bounded: at most `MAX_IN_FLIGHT + 1` buffers ever exist, and they are
//!   recycled, not reallocated.
//! - Threads start only with the first full-size batch that is not the last one (so
//!   inputs up to about 2 MiB never pay for them: their small batches run inline in one
//!   recycled buffer), and never outlive the pipeline: dropping it closes the first
//!   channel, the worker finishes the batch in hand and exits, and `Drop` joins them.
//! - An error stays attached to its batch and surfaces when that batch reaches the front,
//!   so the error reported is the one a sequential reader would have met first.
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};

use crate::aead::Aes256Gcm;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, NONCE_LEN, TAG_LEN, chunk_nonce, gcm_open, gcm_seal,
};
use crate::envelope::error::EnvelopeError;

/// Chunks per batch: 1 MiB of plaintext. Large enough to amortize system calls and the
/// hand-over between threads, small enough to keep memory flat.
pub(super) const BATCH_CHUNKS: usize = 64;
/// Chunks per batch while the stream is young (see [`batch_chunks`]).
const RAMP_BATCH_CHUNKS: usize = 16;
/// Chunks that go in `RAMP_BATCH_CHUNKS` batches before batches are full size; they are
/// processed inline, and threads start with the first full batch.
const RAMP_CHUNKS: u64 = 64;

/// Chunks in the batch that starts at chunk `first`. The first MiB goes in quarter
/// batches, processed inline in one recycled buffer: a BMC-sized input then faults in a
/// quarter of a buffer's fresh pages and starts no thread, which is what a process start
/// to end costs for it. Later batches are full, to amortize the hand-overs between threads.
pub(super) fn batch_chunks(first: u64) -> usize {
    if first < RAMP_CHUNKS {
        RAMP_BATCH_CHUNKS
    } else {
        BATCH_CHUNKS
    }
}
/// Bytes of the chunk slots of one batch.
pub(super) const BATCH_BYTES: usize = BATCH_CHUNKS * ENCRYPTED_CHUNK_SIZE;
/// Batches handed to the stages and not yet written: enough to keep both stages and the
/// I/O busy at once, with one spare to absorb jitter.
const MAX_IN_FLIGHT: usize = 4;
/// Batches the caller keeps handed to the worker before it turns to finished ones, so
/// that the worker has the next batch at hand when it finishes one.
const FEED_AHEAD: usize = 2;

/// One batch of consecutive chunks.
pub(super) struct Batch {
    pub(super) buf: Vec<u8>,
    /// Counter of the first chunk.
    pub(super) first: u64,
    /// Chunks in the batch (the final chunk included, even when empty).
    pub(super) chunks: usize,
    /// Plaintext bytes in the batch.
    pub(super) plain_len: usize,
    /// Where AES-GCM is split between the two threads: chunks `..mid` are the head.
    mid: usize,
    /// Set by a stage; later stages skip the batch and the pipeline returns the error.
    error: Option<EnvelopeError>,
    /// Bytes at the start of `buf` wiped when the batch is dropped: all of it, until the
    /// pipeline learns how far its buffers were ever written (see `Pipeline::dirty`).
    wipe: usize,
}

impl Batch {
    pub(super) fn new(buf: Vec<u8>, first: u64, chunks: usize, plain_len: usize) -> Self {
        Batch {
            buf,
            first,
            chunks,
            plain_len,
            mid: chunks / 2,
            error: None,
            wipe: usize::MAX,
        }
    }

    /// The bytes of `buf` its chunks occupy (plaintext or ciphertext, with the tags):
    /// no stage writes past them.
    fn region(&self) -> usize {
        (self.chunks * ENCRYPTED_CHUNK_SIZE).min(self.buf.len())
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

    fn hash(&self, hasher: &mut PlainHasher) {
        for p in self.plaintexts() {
            hasher.update(p);
        }
    }

    /// The chunks of `part` of the batch.
    fn range(&self, part: Part) -> Range<usize> {
        match part {
            Part::All => 0..self.chunks,
            Part::Head => 0..self.mid,
            Part::Tail => self.mid..self.chunks,
        }
    }

    fn seal(
        &mut self,
        cipher: &Aes256Gcm,
        base: &[u8; NONCE_LEN],
        chunks: Range<usize>,
    ) -> Result<(), EnvelopeError> {
        for i in chunks {
            let len = self.chunk_len(i);
            let (body, rest) = self.buf[i * ENCRYPTED_CHUNK_SIZE..].split_at_mut(len);
            let nonce = chunk_nonce(base, self.first + i as u64);
            let tag = gcm_seal(cipher, &nonce, b"", body)?;
            rest[..TAG_LEN].copy_from_slice(&tag);
        }
        Ok(())
    }

    fn open(
        &mut self,
        cipher: &Aes256Gcm,
        base: &[u8; NONCE_LEN],
        chunks: Range<usize>,
    ) -> Result<(), EnvelopeError> {
        for i in chunks {
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

/// SHA-256 of the plaintext that keeps no plaintext inside the `Sha256` (issue 13.11).
/// A `Sha256` buffers a partial block inline, and the stage holding it is moved between
/// vectors and the worker thread, each move leaving an unwiped copy in memory that is
/// then freed. Here only whole 64-byte blocks reach the `Sha256`; a partial block (only
/// the final chunk's tail, as a chunk is a whole number of blocks) waits in a heap buffer
/// of its own, wiped on drop, and joins the hash only in [`PlainHasher::finalize`], on
/// the caller's stack.
pub(super) struct PlainHasher {
    sha: Sha256,
    /// At most one partial block; its capacity is reserved once and never grows.
    tail: Zeroizing<Vec<u8>>,
}

const SHA256_BLOCK: usize = 64;

impl Default for PlainHasher {
    fn default() -> Self {
        PlainHasher {
            sha: Sha256::new(),
            tail: Zeroizing::new(Vec::with_capacity(SHA256_BLOCK)),
        }
    }
}

impl PlainHasher {
    pub(super) fn update(&mut self, mut data: &[u8]) {
        if !self.tail.is_empty() {
            let n = (SHA256_BLOCK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.tail.len() < SHA256_BLOCK {
                return;
            }
            self.sha.update(&self.tail[..]);
            self.tail.clear();
        }
        let whole = data.len() / SHA256_BLOCK * SHA256_BLOCK;
        self.sha.update(&data[..whole]);
        self.tail.extend_from_slice(&data[whole..]);
    }

    pub(super) fn finalize(self) -> [u8; 32] {
        let PlainHasher { mut sha, tail } = self;
        sha.update(&tail[..]);
        sha.finalize().into()
    }
}

/// One step applied to every batch.
pub(super) enum Stage {
    Hash(PlainHasher),
    Seal {
        cipher: Aes256Gcm,
        base_nonce: [u8; NONCE_LEN],
    },
    Open {
        cipher: Aes256Gcm,
        base_nonce: [u8; NONCE_LEN],
    },
}

/// Which chunks of a batch a stage processes: AES-GCM is split between the two threads.
#[derive(Clone, Copy)]
enum Part {
    All,
    Head,
    Tail,
}

impl Stage {
    fn run(&mut self, batch: &mut Batch) {
        self.run_part(batch, Part::All);
    }

    fn run_part(&mut self, batch: &mut Batch, part: Part) {
        if batch.error.is_some() {
            return;
        }
        let chunks = batch.range(part);
        let result = match self {
            Stage::Hash(h) => {
                batch.hash(h);
                Ok(())
            }
            Stage::Seal { cipher, base_nonce } => batch.seal(cipher, base_nonce, chunks),
            Stage::Open { cipher, base_nonce } => batch.open(cipher, base_nonce, chunks),
        };
        batch.error = result.err();
    }

    /// The same AES-GCM stage for another thread (`None` for SHA-256, which is stateful).
    fn aead_clone(&self) -> Option<Stage> {
        match self {
            Stage::Hash(_) => None,
            Stage::Seal { cipher, base_nonce } => Some(Stage::Seal {
                cipher: cipher.clone(),
                base_nonce: *base_nonce,
            }),
            Stage::Open { cipher, base_nonce } => Some(Stage::Open {
                cipher: cipher.clone(),
                base_nonce: *base_nonce,
            }),
        }
    }
}

/// Runs batches through the stages, inline at first and split between the caller's
/// thread and one worker once the input is long enough; hands finished batches, in
/// order, to a sink.
pub(super) struct Pipeline {
    /// The stages while running inline (empty while threads hold them).
    stages: Vec<Stage>,
    threads: Option<Threads>,
    free: Vec<Vec<u8>>,
    allocated: usize,
    buf_len: usize,
    /// How far any of its buffers ever held plaintext: the largest chunk region of a
    /// batch submitted so far. Buffers start zeroed, and plaintext only ever sits in the
    /// chunk region of a batch (filled there before it is submitted, or decrypted there
    /// in place), so wiping this prefix wipes every plaintext byte; a BMC-sized archive
    /// thus wipes the few chunks it used, not the whole 1 MiB buffer.
    dirty: usize,
    /// The worker's share of AES-GCM when threads start (see `Threads::worker_share`).
    initial_share: usize,
}

struct Threads {
    /// Run on the caller's thread, on the head of each batch, before it is sent (open:
    /// AES-GCM of the first half, so a failure there is the first in stream order).
    pre: Vec<Stage>,
    /// Run on the caller's thread, on the tail of each batch, after it comes back (seal:
    /// AES-GCM of the second half, once SHA-256 has seen the plaintext).
    post: Vec<Stage>,
    input: Sender<Batch>,
    output: Receiver<Batch>,
    /// The worker returns its stages; only SHA-256 is kept (the rest are clones).
    handle: JoinHandle<Vec<Stage>>,
    in_flight: usize,
    /// The worker's share of each batch's AES-GCM, in chunks of a full batch: raised when
    /// the worker has run dry, lowered when the caller has to wait for it, so it settles
    /// where neither waits (two threads, two cores: the fastest the batch can go).
    worker_share: usize,
    /// Whether the worker's share is the head of a batch (seal) or its tail (open).
    worker_has_head: bool,
    /// How many times the worker found no batch waiting, and the count last acted on.
    worker_idle: Arc<AtomicU64>,
    worker_idle_seen: u64,
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
            dirty: 0,
            initial_share: BATCH_CHUNKS / 2,
        }
    }

    /// A buffer to fill: a recycled one, or a new one (never more than the bound, since
    /// `submit` returns only once a buffer is free or may be allocated).
    pub(super) fn take_buffer(&mut self) -> Vec<u8> {
        self.take_buffer_for(self.buf_len)
    }

    /// A buffer of at least `len` bytes (at most `buf_len`): a recycled one if it is large
    /// enough, else a new one of `len` bytes (a recycled one too small is wiped and freed).
    /// The first batches of a stream are short (see [`batch_chunks`]): a BMC-sized input
    /// then never allocates, zeroes and frees a full MiB batch.
    pub(super) fn take_buffer_for(&mut self, len: usize) -> Vec<u8> {
        let len = len.min(self.buf_len);
        match self.free.pop() {
            Some(b) if b.len() >= len => b,
            small => {
                if let Some(mut b) = small {
                    let n = self.dirty.min(b.len());
                    zeroize::Zeroize::zeroize(&mut b[..n]);
                    self.allocated -= 1;
                }
                self.allocated += 1;
                vec![0u8; len]
            }
        }
    }

    /// Processes `batch` (and passes every batch that finished, in order, to `sink`).
    /// Threads start with the first full-size batch that is not `last`. On `Err`, the
    /// pipeline is unusable; drop it.
    pub(super) fn submit(
        &mut self,
        mut batch: Batch,
        last: bool,
        sink: &mut impl FnMut(&Batch) -> Result<(), EnvelopeError>,
    ) -> Result<(), EnvelopeError> {
        self.dirty = self.dirty.max(batch.region());
        batch.wipe = self.dirty;
        if self.threads.is_none() && !last && batch.first >= RAMP_CHUNKS {
            self.start()?;
        }
        let Some(threads) = self.threads.as_mut() else {
            for stage in &mut self.stages {
                stage.run(&mut batch);
            }
            return self.complete(batch, sink);
        };
        // The worker ran dry since the last batch: give it more.
        let idle = threads.worker_idle.load(Ordering::Relaxed);
        if idle != threads.worker_idle_seen {
            threads.worker_idle_seen = idle;
            threads.worker_share = (threads.worker_share + 1).min(BATCH_CHUNKS);
        }
        let share = batch.chunks * threads.worker_share / BATCH_CHUNKS;
        batch.mid = if threads.worker_has_head {
            share
        } else {
            batch.chunks - share
        };
        for stage in &mut threads.pre {
            stage.run_part(&mut batch, Part::Head);
        }
        threads
            .input
            .send(batch)
            .map_err(|_| io::Error::other("a pipeline thread stopped early"))?;
        threads.in_flight += 1;
        // Leave FEED_AHEAD batches with the worker; past that, finish (and write) what is
        // back, and wait only if every buffer is in flight. Finishing batches first instead
        // would leave the worker idle while this thread runs their AES-GCM share.
        loop {
            let Some(threads) = self.threads.as_mut() else {
                return Ok(());
            };
            let done = if threads.in_flight >= MAX_IN_FLIGHT {
                match threads.output.try_recv() {
                    Ok(b) => b,
                    // Every buffer is in flight and none is back: the worker is behind.
                    Err(_) => {
                        threads.worker_share = threads.worker_share.saturating_sub(1);
                        threads.output.recv().map_err(|_| stopped())?
                    }
                }
            } else if threads.in_flight > FEED_AHEAD {
                match threads.output.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty) => return Ok(()),
                    Err(TryRecvError::Disconnected) => return Err(stopped().into()),
                }
            } else {
                return Ok(());
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
    ) -> Result<PlainHasher, EnvelopeError> {
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
        if let Some(threads) = self.threads.as_mut() {
            for stage in &mut threads.post {
                stage.run_part(&mut batch, Part::Tail);
            }
        }
        if let Some(e) = batch.error.take() {
            return Err(e);
        }
        sink(&batch)?;
        self.free.push(std::mem::take(&mut batch.buf));
        Ok(())
    }

    /// Moves SHA-256 onto one worker thread and splits AES-GCM of each batch between the
    /// worker and the caller's thread, so that two threads share the work evenly on two
    /// cores. Seal: the worker hashes the batch and encrypts its head, the caller then
    /// encrypts its tail. Open: the caller decrypts the head, the worker decrypts the
    /// tail and hashes the batch. Each chunk is still hashed as plaintext in stream order.
    /// Where the split falls adapts as batches go (see `Threads::worker_share`): the
    /// caller also reads and writes, and how that compares with SHA-256 depends on the
    /// machine and the file system, so no fixed ratio is right everywhere.
    fn start(&mut self) -> Result<(), EnvelopeError> {
        let mut stages = std::mem::take(&mut self.stages);
        let split = stages
            .iter()
            .position(|s| matches!(s, Stage::Hash(_)))
            .unwrap_or(stages.len());
        let post = stages.split_off((split + 1).min(stages.len()));
        let hash = stages.split_off(split);
        let pre = stages;
        // The worker runs: tails of the `pre` stages, SHA-256, heads of the `post` ones.
        let mut worker: Vec<(Stage, Part)> = Vec::new();
        worker.extend(
            pre.iter()
                .filter_map(|s| Some((s.aead_clone()?, Part::Tail))),
        );
        worker.extend(hash.into_iter().map(|s| (s, Part::All)));
        worker.extend(
            post.iter()
                .filter_map(|s| Some((s.aead_clone()?, Part::Head))),
        );
        let worker_has_head = !post.is_empty();
        let worker_idle = Arc::new(AtomicU64::new(0));
        let idle = Arc::clone(&worker_idle);
        let (input, rx) = mpsc::channel::<Batch>();
        let (tx, output) = mpsc::channel::<Batch>();
        let handle = thread::Builder::new()
            .name("vault-pipeline".into())
            .spawn(move || {
                let next = || match rx.try_recv() {
                    Ok(b) => Some(b),
                    Err(TryRecvError::Empty) => {
                        idle.fetch_add(1, Ordering::Relaxed);
                        rx.recv().ok()
                    }
                    Err(TryRecvError::Disconnected) => None,
                };
                while let Some(mut batch) = next() {
                    for (stage, part) in &mut worker {
                        stage.run_part(&mut batch, *part);
                    }
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
                worker
                    .into_iter()
                    .filter_map(|(s, _)| matches!(s, Stage::Hash(_)).then_some(s))
                    .collect()
            })?;
        self.threads = Some(Threads {
            pre,
            post,
            input,
            output,
            handle,
            in_flight: 0,
            worker_share: self.initial_share,
            worker_has_head,
            worker_idle,
            worker_idle_seen: 0,
        });
        Ok(())
    }

    /// Closes the first channel and joins the threads, taking the stages back.
    fn stop(&mut self) -> Result<(), EnvelopeError> {
        let Some(Threads {
            pre,
            post,
            input,
            output,
            handle,
            ..
        }) = self.threads.take()
        else {
            return Ok(());
        };
        drop(input);
        drop(output);
        self.stages = pre;
        let joined = handle.join();
        let panicked = joined.is_err();
        self.stages.extend(joined.unwrap_or_default());
        self.stages.extend(post);
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
        // Recycled buffers held plaintext (issue 13.11): wiped when released, as far as
        // any batch ever wrote (`dirty`; past it they are as allocated, zeroed).
        for b in &mut self.free {
            let n = self.dirty.min(b.len());
            zeroize::Zeroize::zeroize(&mut b[..n]);
        }
    }
}

impl Drop for Batch {
    /// A batch's buffer holds plaintext before sealing and after opening: wiped when a
    /// batch is dropped instead of recycled (an error, the end of a stream).
    fn drop(&mut self) {
        let n = self.wipe.min(self.buf.len());
        zeroize::Zeroize::zeroize(&mut self.buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Key32;

    /// Full batches of varied bytes, all past the ramp so that threads start.
    fn batches(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|b| {
                (0..BATCH_BYTES)
                    .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(b as u32) as u8)
                    .collect()
            })
            .collect()
    }

    /// Runs `input` through a pipeline of `stages()`, threaded with the worker's share
    /// starting at `share` (or inline), and returns the output bytes and the SHA-256.
    fn run(
        stages: impl Fn() -> Vec<Stage>,
        input: &[Vec<u8>],
        share: Option<usize>,
    ) -> (Vec<u8>, [u8; 32]) {
        let mut p = Pipeline::new(stages(), BATCH_BYTES);
        p.initial_share = share.unwrap_or(0);
        let mut out = Vec::new();
        let opening = matches!(stages()[0], Stage::Open { .. });
        let mut sink = |b: &Batch| -> Result<(), EnvelopeError> {
            if opening {
                b.write_plaintext(&mut out)?;
            } else {
                out.extend_from_slice(b.ciphertext());
            }
            Ok(())
        };
        for (i, data) in input.iter().enumerate() {
            let mut buf = p.take_buffer();
            buf.copy_from_slice(data);
            let first = RAMP_CHUNKS + (i * BATCH_CHUNKS) as u64;
            let batch = Batch::new(buf, first, BATCH_CHUNKS, BATCH_CHUNKS * CHUNK_SIZE);
            // `last` batches never start threads: the inline reference.
            p.submit(batch, share.is_none(), &mut sink).unwrap();
        }
        let h = p.finish(&mut sink).unwrap();
        assert!(p.threads.is_none() && p.allocated <= MAX_IN_FLIGHT + 1);
        (out, h.finalize())
    }

    /// However the AES-GCM of each batch is split between the threads (all on one side,
    /// all on the other, and wherever the controller moves it from there), the output
    /// and the hash are those of the inline pipeline, sealing and opening.
    #[test]
    fn any_split_gives_the_inline_result() {
        let cipher = crate::aead::cipher(&Key32::from_slice(&[3; 32]).unwrap());
        let base_nonce = [7u8; NONCE_LEN];
        let seal = || {
            vec![
                Stage::Hash(PlainHasher::default()),
                Stage::Seal {
                    cipher: cipher.clone(),
                    base_nonce,
                },
            ]
        };
        let open = || {
            vec![
                Stage::Open {
                    cipher: cipher.clone(),
                    base_nonce,
                },
                Stage::Hash(PlainHasher::default()),
            ]
        };
        let plain = batches(9);
        let want = run(seal, &plain, None);
        let sealed: Vec<Vec<u8>> = want.0.chunks(BATCH_BYTES).map(<[u8]>::to_vec).collect();
        let opened = run(open, &sealed, None);
        let bodies: Vec<u8> = plain
            .iter()
            .flat_map(|b| {
                b.chunks(ENCRYPTED_CHUNK_SIZE)
                    .flat_map(|c| &c[..CHUNK_SIZE])
            })
            .copied()
            .collect();
        assert!(opened.0 == bodies, "open does not give the plaintext back");
        assert_eq!(opened.1, want.1);
        for share in [0, 1, BATCH_CHUNKS / 2, BATCH_CHUNKS - 1, BATCH_CHUNKS] {
            assert!(
                run(seal, &plain, Some(share)) == want,
                "seal, share {share}"
            );
            assert!(
                run(open, &sealed, Some(share)) == opened,
                "open, share {share}"
            );
        }
    }
}

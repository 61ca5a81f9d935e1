//! Issue 13.11: plaintext buffers are zeroised when released.
//!
//! This test binary runs every allocation of the process through a global allocator that,
//! before a block is released (`dealloc`, and the old block of every `realloc`, whether it
//! moves or not), scans it for a 16-byte marker and counts the blocks that still hold it.
//! The plaintext sealed and opened here is nothing but that marker, repeated: it is
//! generated on the fly by a `Read` that writes straight into vault's buffers, and what
//! comes out of an archive goes into a `Write` that only hashes it (on the stack). The test
//! itself therefore never holds plaintext in heap memory it frees, and any hit is a block
//! of vault's (or of a library it drives) that held plaintext and was handed back to the
//! allocator without being wiped.
//!
//! The operations are those the CLI runs, through the library: `ops::backup::create` from a
//! stream (`backup create --file -`), `envelope::open` into a writer, an `Opener` read as a
//! `Read` (how `backup restore` feeds the BMC), `ops::backup::verify`, `ops::backup::extract`
//! and `ops::backup::rewrap --reencrypt`.
//!
//! One `#[test]` runs the phases in turn, because the counter is process-wide.
//!
//! The only `unsafe` of the package (Cargo.toml denies it, src/ forbids it): a global
//! allocator must be `unsafe`, and reading a block before it is released is the test.
#![allow(unsafe_code)]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use sha2::{Digest, Sha256};
use vault::envelope::{self, Opener};
use vault::keystore::KeyStore;
use vault::ops::backup::{self, Input, NewArchive, RewrapPlan, Target};
use vault::ops::{Context, Silent};
use vault::scope::Scope;

/// The plaintext's period; random-looking so that no other data of the process has it.
const MARKER: [u8; 16] = [
    0x9e, 0x37, 0x79, 0xb9, 0x7f, 0x4a, 0x7c, 0x15, 0xf3, 0x9c, 0xc0, 0x60, 0x5c, 0xed, 0xc8, 0x34,
];

static ARMED: AtomicBool = AtomicBool::new(false);
/// Released blocks that held the marker, and the size of the largest of them.
static HITS: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Sizes of the first hits, for the failure message.
static SIZES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

struct Scanning;

/// Whether the `len` bytes at `p` contain the marker. Volatile reads: the block may never
/// have been written in full, and the compiler must not reason about its contents.
///
/// # Safety
/// `p..p + len` must be a live allocation.
unsafe fn holds_marker(p: *const u8, len: usize) -> bool {
    let at = |i: usize| unsafe { std::ptr::read_volatile(p.add(i)) };
    let mut i = 0;
    while i + MARKER.len() <= len {
        if at(i) == MARKER[0] && (1..MARKER.len()).all(|k| at(i + k) == MARKER[k]) {
            return true;
        }
        i += 1;
    }
    false
}

fn scan(p: *const u8, len: usize) {
    if ARMED.load(Ordering::Relaxed) && unsafe { holds_marker(p, len) } {
        let n = HITS.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = SIZES.get(n) {
            s.store(len, Ordering::Relaxed);
        }
        LARGEST.fetch_max(len, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        scan(ptr, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The old block is released (or, grown in place, was a buffer of plaintext that
        // grew by reallocation, which may as well have moved): scanned as released.
        scan(ptr, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

/// Plaintext of the archive: `MARKER` repeated over `len` bytes, served in reads of
/// uneven sizes (so that a buffering reader in front of the sealer would fill its buffer
/// instead of being bypassed).
struct MarkerSource {
    pos: u64,
    len: u64,
    reads: usize,
}

impl MarkerSource {
    fn new(len: u64) -> Self {
        MarkerSource {
            pos: 0,
            len,
            reads: 0,
        }
    }
}

impl Read for MarkerSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        const SIZES: [usize; 4] = [10_007, 65_536 + 13, 1_000, 300_001];
        self.reads += 1;
        let n = buf
            .len()
            .min(SIZES[self.reads % SIZES.len()])
            .min((self.len - self.pos) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = MARKER[((self.pos + i as u64) % MARKER.len() as u64) as usize];
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Counts and hashes what it is given, keeping none of it.
struct HashSink {
    hasher: Sha256,
    len: u64,
}

impl HashSink {
    fn new() -> Self {
        HashSink {
            hasher: Sha256::new(),
            len: 0,
        }
    }
    fn done(self) -> (u64, [u8; 32]) {
        (self.len, self.hasher.finalize().into())
    }
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Length and SHA-256 of the expected plaintext, generated through a stack buffer.
fn expected(len: u64) -> (u64, [u8; 32]) {
    let mut src = MarkerSource::new(len);
    let mut sink = HashSink::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sink.write_all(&buf[..n]).unwrap();
    }
    sink.done()
}

/// Runs `f` with the scanner armed and fails naming `phase` if a released block held
/// plaintext.
fn phase<T>(phase: &str, f: impl FnOnce() -> T) -> T {
    HITS.store(0, Ordering::SeqCst);
    LARGEST.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let r = f();
    ARMED.store(false, Ordering::SeqCst);
    let hits = HITS.load(Ordering::SeqCst);
    assert_eq!(
        hits,
        0,
        "{phase}: {hits} released heap block(s) still held plaintext (largest {} bytes; sizes {:?})",
        LARGEST.load(Ordering::SeqCst),
        SIZES
            .iter()
            .take(hits)
            .map(|s| s.load(Ordering::SeqCst))
            .collect::<Vec<_>>()
    );
    r
}

/// Reads `r` to its end into `sink` through a stack buffer (as the BMC upload reads the
/// opener in `backup restore`).
fn drain(mut r: impl Read, sink: &mut HashSink) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(()),
            n => sink.write_all(&buf[..n])?,
        }
    }
}

#[test]
fn plaintext_buffers_are_wiped_before_release() {
    // Past the first MiB, so the pipeline's threads start; a final chunk that is short
    // and not a multiple of the hash block.
    let len: u64 = 6 * 1024 * 1024 + 12_345;
    let want = expected(len);

    // A home with a system key, made by the binary (another process).
    let v = Vault::new();
    v.create_key(&[]);
    let ctx = Context::open(&v.home, "zeroize-test").unwrap();

    let new = NewArchive {
        scope: Scope::System,
        domain: None,
        key: None,
        description: "marker".into(),
    };
    // The source is boxed before arming: its allocation holds no plaintext.
    let source: Box<dyn Read> = Box::new(MarkerSource::new(len));
    let sealed = phase("backup create (seal from a stream)", || {
        backup::create(&ctx, &new, Input::Stream(source), &Silent).unwrap()
    });
    let id = sealed.header.id.to_string();
    let path = v.home.join("archives").join(format!("{id}.vault"));

    let ks = KeyStore::new(ctx.home());
    let lookup = backup::key_lookup(&ks).unwrap();

    let got = phase("envelope::open into a writer", || {
        let f = std::fs::File::open(&path).unwrap();
        let mut sink = HashSink::new();
        envelope::open(
            BufReader::with_capacity(envelope::READ_BUFFER, f),
            &lookup,
            &mut sink,
        )
        .unwrap();
        sink.done()
    });
    assert_eq!(got, want, "envelope::open returned other plaintext");

    let got = phase("Opener read as a Read (backup restore)", || {
        let f = std::fs::File::open(&path).unwrap();
        let mut opener =
            Opener::new(BufReader::with_capacity(envelope::READ_BUFFER, f), &lookup).unwrap();
        let mut sink = HashSink::new();
        drain(&mut opener, &mut sink).unwrap();
        opener.finish().unwrap();
        sink.done()
    });
    assert_eq!(got, want, "the opener read other plaintext");

    let verified = phase("backup verify", || {
        backup::verify(&ctx, &Target::Id(id.clone()), &Silent).unwrap()
    });
    assert_eq!(verified.plaintext_size, len);

    let out = v.path("extracted.bin");
    phase("backup extract", || {
        backup::extract(&ctx, &Target::Id(id.clone()), &out, &Silent).unwrap()
    });
    let mut sink = HashSink::new();
    drain(std::fs::File::open(&out).unwrap(), &mut sink).unwrap();
    assert_eq!(sink.done(), want, "extract wrote other plaintext");

    let plan = RewrapPlan {
        id: Some(id.clone()),
        from: None,
        key: None,
        reencrypt: true,
    };
    let report = phase("backup rewrap --reencrypt", || {
        backup::rewrap(&ctx, &plan).unwrap()
    });
    assert_eq!(report.rewrapped.len(), 1, "{:?}", report.failed);
    let verified = backup::verify(&ctx, &Target::Id(id), &Silent).unwrap();
    assert_eq!((verified.plaintext_size, verified.sha256), want);

    // The scanner itself finds plaintext: a block released unwiped is counted.
    HITS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let mut leaked = vec![0u8; 4096];
    MarkerSource::new(4096).read_exact(&mut leaked).unwrap();
    drop(leaked);
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(HITS.load(Ordering::SeqCst), 1, "the scanner missed a leak");
}

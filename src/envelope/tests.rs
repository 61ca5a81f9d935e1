//! Whole-archive tests: round trips, tampering, truncation, key handling, inspect and
//! rewrap I/O bounds, crash safety of rewrap, versioning, and fuzzing for panics.
use std::collections::HashMap;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use proptest::prelude::*;
use uuid::Uuid;

use super::format::{PREAMBLE_LEN, Preamble};
use super::v2::{SECRET_BLOCK_LEN, SLOT_LEN, TRAILER_LEN};
use super::*;
use crate::secret::Key32;

const CHUNK: usize = 16_384;
const ENC_CHUNK: usize = CHUNK + 16;

struct Keyring(HashMap<Uuid, Key32>);

impl Keyring {
    fn new(keys: &[(Uuid, &Key32)]) -> Self {
        Keyring(keys.iter().map(|(id, k)| (*id, k.duplicate())).collect())
    }
    /// Every key is a key of the test header's domain.
    fn lookup(&self) -> impl Fn(&Uuid) -> Option<OpeningKey> + '_ {
        |id| self.0.get(id).map(|k| domain_key(k.duplicate()))
    }
}

fn domain_key(k: Key32) -> OpeningKey {
    OpeningKey::new(k, Scope::Domain, Some("datacenter-1".into()))
}

struct Sealed {
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    key_id: Uuid,
    key: Key32,
    summary: SealSummary,
}

impl Sealed {
    fn payload_offset(&self) -> usize {
        self.slots_offset() + 2 * SLOT_LEN + SECRET_BLOCK_LEN
    }
    fn slots_offset(&self) -> usize {
        let pre: [u8; PREAMBLE_LEN] = self.bytes[..PREAMBLE_LEN].try_into().unwrap();
        Preamble::parse(&pre).unwrap().slots_offset() as usize
    }
    fn ring(&self) -> Keyring {
        Keyring::new(&[(self.key_id, &self.key)])
    }
}

fn plaintext(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn header() -> ArchiveHeader {
    ArchiveHeader::new(
        Scope::Domain,
        Some("datacenter-1".into()),
        "alice",
        "nightly iLO backup",
        Some(Source {
            bmc_host: Some("ilo-01.example".into()),
            serial_number: Some("CZ2D0000".into()),
            ..Source::default()
        }),
    )
}

fn seal_len(len: usize) -> Sealed {
    let key = Key32::random();
    let key_id = Uuid::new_v4();
    let pt = plaintext(len);
    let mut bytes = Vec::new();
    let summary = seal(&header(), key_id, &key, pt.as_slice(), &mut bytes).unwrap();
    Sealed {
        bytes,
        plaintext: pt,
        key_id,
        key,
        summary,
    }
}

fn open_bytes(bytes: &[u8], ring: &Keyring) -> Result<(OpenSummary, Vec<u8>), EnvelopeError> {
    let mut out = Vec::new();
    let lookup = ring.lookup();
    let s = open(bytes, &lookup, &mut out)?;
    Ok((s, out))
}

/// A non-seekable reader that hands out data in small, irregular pieces (like a pipe).
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}
impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.step = (self.step * 31 + 7) % 70_001 + 1;
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn round_trips_at_chunk_boundaries_and_large_sizes() {
    for len in [0, 1, 16_383, 16_384, 16_385, 5 * 1024 * 1024 + 123] {
        let s = seal_len(len);
        assert_eq!(s.summary.plaintext_size, len as u64);
        assert_eq!(s.summary.bytes_written, s.bytes.len() as u64);
        let (o, out) = open_bytes(&s.bytes, &s.ring()).unwrap();
        assert!(out == s.plaintext, "len {len}");
        assert_eq!(o.sha256, s.summary.sha256);
        assert_eq!(o.key_id, s.key_id);
        assert_eq!(o.generation, 1);
        assert_eq!(o.header.id, s.summary.archive_id);
        // Same through a non-seekable, trickling reader.
        let mut out2 = Vec::new();
        let ring = s.ring();
        let lookup = ring.lookup();
        let reader = Trickle {
            data: &s.bytes,
            step: len,
        };
        open(reader, &lookup, &mut out2).unwrap();
        assert!(out2 == s.plaintext, "trickle len {len}");
        // And verify (open into a sink).
        assert_eq!(
            verify(s.bytes.as_slice(), &lookup).unwrap().plaintext_size,
            len as u64
        );
    }
}

#[test]
fn sha256_is_of_the_plaintext() {
    use sha2::Digest;
    let s = seal_len(40_000);
    let want: [u8; 32] = sha2::Sha256::digest(&s.plaintext).into();
    assert_eq!(s.summary.sha256, want);
    assert_eq!(hex_digest(&want).len(), 64);
}

/// Every single-byte modification anywhere in the file must make `open` fail. The rule
/// that makes this true for the slot region: a slot must be all-zero (empty) or carry a
/// matching SHA-256 hint, and `open` refuses an archive with any damaged slot, even the
/// unused one. Header bytes are bound by the slot AAD / commitment, the salt by the
/// commitment, chunks by GCM, the trailer by its magic and MAC.
#[test]
fn flipping_any_single_byte_fails_open() {
    let s = seal_len(40 * 1024); // 3 chunks: 16 KiB, 16 KiB, 8 KiB
    let ring = s.ring();
    let mut kinds: HashMap<&'static str, usize> = HashMap::new();
    for i in 0..s.bytes.len() {
        let mut b = s.bytes.clone();
        b[i] ^= 0x01;
        let err = match open_bytes(&b, &ring) {
            Ok(_) => panic!("flip at byte {i} went undetected"),
            Err(e) => e,
        };
        let kind = match err {
            EnvelopeError::NotAnArchive => "not-an-archive",
            EnvelopeError::UnsupportedVersion { .. } => "version",
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::Truncated(_) => "truncated",
            EnvelopeError::Tampered(_) => "tampered",
            EnvelopeError::WrongKey { .. } => "wrong-key",
            EnvelopeError::KeyUnavailable { .. } => "key-unavailable",
            // A flip in the header's domainID: the key is not of that domain.
            EnvelopeError::ScopeMismatch { .. } => "scope",
            other => panic!("flip at {i}: unexpected {other}"),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    // Payload and slot flips are authentication failures.
    assert!(kinds["tampered"] > 40 * 1024, "{kinds:?}");
}

#[test]
fn flipping_a_byte_of_the_empty_slot_is_detected() {
    let s = seal_len(100);
    let empty_slot = s.slots_offset() + SLOT_LEN;
    assert!(
        s.bytes[empty_slot..empty_slot + SLOT_LEN]
            .iter()
            .all(|&b| b == 0)
    );
    let mut b = s.bytes.clone();
    b[empty_slot + 40] = 0x42;
    let err = open_bytes(&b, &s.ring()).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::Tampered(ref m) if m.contains("key slot 1")),
        "{err}"
    );
    // inspect reports it without a key.
    let i = inspect(Cursor::new(&b)).unwrap();
    assert_eq!(i.slots[1], SlotInfo::Damaged);
}

#[test]
fn truncation_is_reported_as_truncated() {
    let s = seal_len(40 * 1024);
    let ring = s.ring();
    let payload = s.payload_offset() + 32;
    let mut cuts: Vec<usize> = (0..=2).map(|k| payload + k * ENC_CHUNK).collect();
    // Inside the preamble, header, salt, slots, commitment, a chunk, a tag and the trailer.
    cuts.extend([
        0,
        5,
        20,
        s.slots_offset() - 3,
        s.slots_offset() + 100,
        payload - 10,
    ]);
    cuts.extend([
        payload + 100,
        payload + CHUNK + 5,
        payload + 2 * ENC_CHUNK + 8200,
    ]);
    cuts.extend([
        s.bytes.len() - TRAILER_LEN,
        s.bytes.len() - TRAILER_LEN + 1,
        s.bytes.len() - 1,
    ]);
    for cut in cuts {
        assert!(cut < s.bytes.len());
        match open_bytes(&s.bytes[..cut], &ring) {
            Err(EnvelopeError::Truncated(_)) if cut > 0 => {}
            // Zero bytes are "empty", the one verdict every reader gives (issue #18).
            Err(EnvelopeError::Empty) if cut == 0 => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn missing_final_chunk_with_intact_trailer_is_truncated() {
    // Remove the final short chunk but keep the trailer: the payload then ends on a
    // chunk boundary, which the spec defines as truncation.
    let s = seal_len(2 * CHUNK + 100);
    let payload = s.payload_offset() + 32;
    let final_start = payload + 2 * ENC_CHUNK;
    let mut b = s.bytes[..final_start].to_vec();
    b.extend_from_slice(&s.bytes[s.bytes.len() - TRAILER_LEN..]);
    let err = open_bytes(&b, &s.ring()).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::Truncated(ref m) if m.contains("final")),
        "{err}"
    );
}

#[test]
fn swapping_two_chunks_fails() {
    let s = seal_len(3 * CHUNK + 10);
    let p = s.payload_offset() + 32;
    let mut b = s.bytes.clone();
    let (c0, c1) = (p..p + ENC_CHUNK, p + ENC_CHUNK..p + 2 * ENC_CHUNK);
    let first = b[c0.clone()].to_vec();
    let second = b[c1.clone()].to_vec();
    b[c0].copy_from_slice(&second);
    b[c1].copy_from_slice(&first);
    let err = open_bytes(&b, &s.ring()).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::Tampered(ref m) if m.contains("chunk 0")),
        "{err}"
    );
}

/// A reader that counts bytes handed out.
struct CountingReader<R> {
    inner: R,
    read: u64,
}
impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}
impl<R: Seek> Seek for CountingReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// A writer that counts bytes written.
#[derive(Default)]
struct CountingWriter(u64);
impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Large enough that seal and open run on their worker threads (more than the batches
/// processed inline), and not a multiple of a batch.
const THREADED_LEN: usize = 7 * 1024 * 1024 + 4321;

/// A writer that accepts `left` bytes, then fails like a full disk.
struct FullDisk {
    left: usize,
}
impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("no space left on device"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that fails after handing out `left` bytes.
struct BadMedium<'a> {
    data: &'a [u8],
    left: usize,
}
impl Read for BadMedium<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("input/output error"));
        }
        let n = buf.len().min(self.left).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.left -= n;
        Ok(n)
    }
}

/// The pipeline must stop (returning the I/O error, not hanging or panicking) when the
/// output fails at any point: in the inline batches, once threads run, and at the end.
#[test]
fn failing_output_or_input_stops_seal_and_open_with_an_io_error() {
    let s = seal_len(THREADED_LEN);
    let ring = s.ring();
    let lookup = ring.lookup();
    for left in [0, 100_000, 3 * 1024 * 1024 + 7, THREADED_LEN - 10] {
        let err = seal(
            &header(),
            s.key_id,
            &s.key,
            s.plaintext.as_slice(),
            FullDisk { left },
        )
        .unwrap_err();
        assert!(matches!(err, EnvelopeError::Io(_)), "seal, {left}: {err}");
        let err = open(s.bytes.as_slice(), &lookup, FullDisk { left }).unwrap_err();
        assert!(matches!(err, EnvelopeError::Io(_)), "open, {left}: {err}");

        let input = BadMedium {
            data: &s.plaintext,
            left,
        };
        let err = seal(&header(), s.key_id, &s.key, input, io::sink()).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Io(_)),
            "seal input, {left}: {err}"
        );
        let input = BadMedium {
            data: &s.bytes,
            left: left + s.payload_offset() + 32,
        };
        let err = verify(input, &lookup).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Io(_)),
            "open input, {left}: {err}"
        );
    }
}

/// Errors are reported in stream order even though later batches are read (and checked)
/// while earlier ones are still being decrypted on another thread.
#[test]
fn the_first_error_in_stream_order_wins_in_large_archives() {
    let s = seal_len(THREADED_LEN);
    let ring = s.ring();
    let p = s.payload_offset() + 32;
    let total_chunks = THREADED_LEN / CHUNK + 1;
    for bad in [0, 63, 64, 200, total_chunks - 2, total_chunks - 1] {
        let mut b = s.bytes.clone();
        b[p + bad * ENC_CHUNK + 5] ^= 0x80;
        let err = open_bytes(&b, &ring).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Tampered(ref m) if m.contains(&format!("chunk {bad} "))),
            "chunk {bad}: {err}"
        );
        // Cut short as well: the earlier modification is still what is reported.
        if bad < total_chunks - 2 {
            let cut = &b[..b.len() - 3 * ENC_CHUNK];
            let err = open_bytes(cut, &ring).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::Tampered(ref m) if m.contains(&format!("chunk {bad} "))),
                "chunk {bad}, cut: {err}"
            );
        }
    }
    for cut in [
        p + 100 * ENC_CHUNK,
        p + 64 * ENC_CHUNK + 80,
        s.bytes.len() - 81,
    ] {
        let err = open_bytes(&s.bytes[..cut], &ring).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Truncated(_)),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn reencrypt_of_a_large_archive_round_trips() {
    let s = seal_len(THREADED_LEN);
    let (new_id, new_key) = (Uuid::new_v4(), Key32::random());
    let ring = s.ring();
    let mut out = Vec::new();
    let r = reencrypt(
        s.bytes.as_slice(),
        &ring.lookup(),
        new_id,
        &domain_key(new_key.duplicate()),
        None,
        &mut out,
    )
    .unwrap();
    assert_eq!(r.sha256, s.summary.sha256);
    let (o, pt) = open_bytes(&out, &Keyring::new(&[(new_id, &new_key)])).unwrap();
    assert!(pt == s.plaintext);
    assert_eq!(o.plaintext_size, THREADED_LEN as u64);
}

#[test]
fn wrong_backup_key_is_wrong_key_before_any_chunk() {
    let s = seal_len(40_000);
    let ring = Keyring::new(&[(s.key_id, &Key32::random())]);
    let lookup = ring.lookup();
    let mut input = CountingReader {
        inner: s.bytes.as_slice(),
        read: 0,
    };
    let mut out = CountingWriter::default();
    let err = open(&mut input, &lookup, &mut out).unwrap_err();
    // v2: a slot whose key this home holds and that does not open is tampering (never a
    // reason to try the other slot); the message names the key.
    assert!(
        matches!(err, EnvelopeError::Tampered(ref m) if m.contains(&s.key_id.to_string())),
        "{err}"
    );
    assert_eq!(out.0, 0, "no plaintext may be produced");
    assert_eq!(
        input.read,
        s.payload_offset() as u64,
        "nothing past the key slots was read"
    );
}

#[test]
fn missing_key_names_the_key_and_the_fix() {
    let s = seal_len(10);
    let err = open_bytes(&s.bytes, &Keyring::new(&[])).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EnvelopeError::KeyUnavailable { .. }));
    assert!(
        // "import it with 'vault keys upload'" is the CLI's hint: cli::hints.
        msg.contains(&s.key_id.to_string()) && msg.contains("not in this home"),
        "{msg}"
    );
}

#[test]
fn inspect_reads_only_header_and_trailer() {
    let s = seal_len(3 * 1024 * 1024 + 7);
    let mut r = CountingReader {
        inner: Cursor::new(&s.bytes),
        read: 0,
    };
    let i = inspect(&mut r).unwrap();
    assert!(r.read < 2048, "inspect read {} bytes", r.read);
    assert_eq!(i.version, CURRENT_VERSION);
    assert_eq!(i.header.id, s.summary.archive_id);
    assert_eq!(i.key_ids, vec![(s.key_id, 1)]);
    assert_eq!(
        i.slots[0],
        SlotInfo::Occupied {
            key_id: s.key_id,
            generation: 1
        }
    );
    assert_eq!(i.slots[1], SlotInfo::Empty);
    assert_eq!(i.plaintext_size, s.plaintext.len() as u64);
    assert_eq!(i.sha256, s.summary.sha256);
    assert_eq!(i.file_len, s.bytes.len() as u64);
    assert_eq!(
        i.payload_len,
        (s.bytes.len() - s.payload_offset() - TRAILER_LEN) as u64
    );
    assert!(i.length_consistent);
}

/// An in-memory file that records which byte ranges were read and written, and can
/// simulate a crash: after `crash_after_syncs` fsyncs, every write fails.
struct TrackedFile {
    data: Cursor<Vec<u8>>,
    reads: Vec<(u64, usize)>,
    writes: Vec<(u64, usize)>,
    syncs: usize,
    crash_after_syncs: Option<usize>,
}
impl TrackedFile {
    fn new(bytes: Vec<u8>) -> Self {
        TrackedFile {
            data: Cursor::new(bytes),
            reads: Vec::new(),
            writes: Vec::new(),
            syncs: 0,
            crash_after_syncs: None,
        }
    }
    fn max_end(ranges: &[(u64, usize)]) -> u64 {
        ranges.iter().map(|(o, n)| o + *n as u64).max().unwrap_or(0)
    }
}
impl Read for TrackedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.data.position();
        let n = self.data.read(buf)?;
        self.reads.push((at, n));
        Ok(n)
    }
}
impl Write for TrackedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.crash_after_syncs.is_some_and(|c| self.syncs >= c) {
            return Err(io::Error::other("simulated crash"));
        }
        let at = self.data.position();
        let n = self.data.write(buf)?;
        self.writes.push((at, n));
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Seek for TrackedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.data.seek(pos)
    }
}
impl ArchiveFile for TrackedFile {
    fn sync(&mut self) -> io::Result<()> {
        self.syncs += 1;
        Ok(())
    }
}

#[test]
fn rewrap_touches_only_the_slot_region_and_switches_keys() {
    let s = seal_len(2 * 1024 * 1024);
    let (new_id, new_key) = (Uuid::new_v4(), Key32::random());
    let ring = s.ring();
    let lookup = ring.lookup();
    let mut f = TrackedFile::new(s.bytes.clone());
    let r = rewrap_in_place(
        &mut f,
        &lookup,
        new_id,
        &domain_key(new_key.duplicate()),
        None,
    )
    .unwrap();
    assert_eq!(
        (r.previous_key_id, r.new_key_id, r.generation, r.changed),
        (s.key_id, new_id, 2, true)
    );
    let slots = s.slots_offset() as u64;
    let payload = s.payload_offset() as u64;
    assert!(
        TrackedFile::max_end(&f.reads) <= payload,
        "rewrap read past the slots"
    );
    let read_total: usize = f.reads.iter().map(|r| r.1).sum();
    assert!(read_total < 2048);
    assert_eq!(f.writes.len(), 2);
    for &(at, n) in &f.writes {
        assert!(
            at >= slots && at + n as u64 <= payload,
            "write outside slots: {at}+{n}"
        );
    }
    assert_eq!(
        f.syncs, 2,
        "one fsync after the new slot, one after the wipe"
    );
    let after = f.data.into_inner();
    assert_eq!(after.len(), s.bytes.len());
    assert_eq!(
        after[s.payload_offset()..],
        s.bytes[s.payload_offset()..],
        "payload changed"
    );
    assert_eq!(
        after[..s.slots_offset()],
        s.bytes[..s.slots_offset()],
        "header changed"
    );

    // New key opens; old key alone fails cleanly, because its slot is wiped.
    let new_ring = Keyring::new(&[(new_id, &new_key)]);
    let (o, out) = open_bytes(&after, &new_ring).unwrap();
    assert!(out == s.plaintext);
    assert_eq!((o.key_id, o.generation), (new_id, 2));
    let err = open_bytes(&after, &s.ring()).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::KeyUnavailable { ref key_ids } if key_ids == &vec![new_id]),
        "{err}"
    );
    let i = inspect(Cursor::new(&after)).unwrap();
    assert_eq!(
        i.slots,
        [
            SlotInfo::Empty,
            SlotInfo::Occupied {
                key_id: new_id,
                generation: 2
            }
        ]
    );

    // A second rewrap alternates back into slot 0 with generation 3.
    let mut f2 = TrackedFile::new(after);
    let r2 = rewrap_in_place(
        &mut f2,
        &new_ring.lookup(),
        s.key_id,
        &domain_key(s.key.duplicate()),
        None,
    )
    .unwrap();
    assert_eq!(r2.generation, 3);
    let after2 = f2.data.into_inner();
    let (o2, _) = open_bytes(&after2, &s.ring()).unwrap();
    assert_eq!((o2.key_id, o2.generation), (s.key_id, 3));
}

#[test]
fn rewrap_killed_between_fsyncs_leaves_both_keys_working_and_can_be_completed() {
    let s = seal_len(50_000);
    let (new_id, new_key) = (Uuid::new_v4(), Key32::random());
    let ring = s.ring();
    let mut f = TrackedFile::new(s.bytes.clone());
    f.crash_after_syncs = Some(1);
    let err = rewrap_in_place(
        &mut f,
        &ring.lookup(),
        new_id,
        &domain_key(new_key.duplicate()),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, EnvelopeError::Io(_)));
    let torn = f.data.into_inner();
    // Both keys open the archive; the new one is preferred when both are present.
    let (o_old, out) = open_bytes(&torn, &s.ring()).unwrap();
    assert!(out == s.plaintext);
    assert_eq!((o_old.key_id, o_old.generation), (s.key_id, 1));
    let (o_new, _) = open_bytes(&torn, &Keyring::new(&[(new_id, &new_key)])).unwrap();
    assert_eq!((o_new.key_id, o_new.generation), (new_id, 2));
    let both = Keyring::new(&[(new_id, &new_key), (s.key_id, &s.key)]);
    assert_eq!(open_bytes(&torn, &both).unwrap().0.key_id, new_id);

    // Running the same rewrap again completes it (wipes the old slot).
    let mut g = TrackedFile::new(torn);
    let r = rewrap_in_place(
        &mut g,
        &ring.lookup(),
        new_id,
        &domain_key(new_key.duplicate()),
        None,
    )
    .unwrap();
    assert!(r.changed);
    let done = g.data.into_inner();
    assert!(open_bytes(&done, &s.ring()).is_err());
    assert!(open_bytes(&done, &Keyring::new(&[(new_id, &new_key)])).is_ok());
    // And once more is a no-op: no writes, no syncs.
    let mut h = TrackedFile::new(done.clone());
    let r = rewrap_in_place(
        &mut h,
        &ring.lookup(),
        new_id,
        &domain_key(new_key.duplicate()),
        None,
    )
    .unwrap();
    assert!(!r.changed);
    assert!(h.writes.is_empty() && h.syncs == 0);
    assert_eq!(h.data.into_inner(), done);
}

#[test]
fn rewrap_to_the_same_key_is_a_no_op_and_checks_the_key() {
    let s = seal_len(1000);
    let mut f = TrackedFile::new(s.bytes.clone());
    let r = rewrap_in_place(
        &mut f,
        &s.ring().lookup(),
        s.key_id,
        &domain_key(s.key.duplicate()),
        None,
    )
    .unwrap();
    assert!(!r.changed && f.writes.is_empty());
    let mut f = TrackedFile::new(s.bytes.clone());
    let err = rewrap_in_place(
        &mut f,
        &s.ring().lookup(),
        s.key_id,
        &domain_key(Key32::random()),
        None,
    )
    .unwrap_err();
    // Its own slot names the new key, which does not open it: tampered (v2 §7.4).
    assert!(
        matches!(&err, EnvelopeError::Tampered(m) if m.contains(&s.key_id.to_string())),
        "{err:?}"
    );
}

#[test]
fn rewrap_repairs_a_damaged_unused_slot() {
    let s = seal_len(1000);
    let mut b = s.bytes.clone();
    b[s.slots_offset() + SLOT_LEN + 3] = 1; // torn write into the empty slot
    assert!(open_bytes(&b, &s.ring()).is_err());
    let (new_id, new_key) = (Uuid::new_v4(), Key32::random());
    let mut f = TrackedFile::new(b);
    rewrap_in_place(
        &mut f,
        &s.ring().lookup(),
        new_id,
        &domain_key(new_key.duplicate()),
        None,
    )
    .unwrap();
    let fixed = f.data.into_inner();
    assert!(open_bytes(&fixed, &Keyring::new(&[(new_id, &new_key)])).is_ok());
}

#[test]
fn rewrap_without_the_current_key_fails_without_writing() {
    let s = seal_len(1000);
    let mut f = TrackedFile::new(s.bytes.clone());
    let err = rewrap_in_place(
        &mut f,
        &Keyring::new(&[]).lookup(),
        Uuid::new_v4(),
        &domain_key(Key32::random()),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, EnvelopeError::KeyUnavailable { .. }));
    assert!(f.writes.is_empty());
}

#[test]
fn rewrap_file_and_atomic_seal_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.vault");
    let key = Key32::random();
    let key_id = Uuid::new_v4();
    let pt = plaintext(70_000);
    let mut af = crate::fsutil::AtomicFile::create(&path, 0o600).unwrap();
    seal(&header(), key_id, &key, pt.as_slice(), &mut af).unwrap();
    af.commit().unwrap();
    let ring = Keyring::new(&[(key_id, &key)]);
    let (new_id, new_key) = (Uuid::new_v4(), Key32::random());
    rewrap_file(
        &path,
        &ring.lookup(),
        new_id,
        &domain_key(new_key.duplicate()),
        None,
    )
    .unwrap();
    let new_ring = Keyring::new(&[(new_id, &new_key)]);
    let f = std::fs::File::open(&path).unwrap();
    let mut out = Vec::new();
    open(f, &new_ring.lookup(), &mut out).unwrap();
    assert!(out == pt);
}

#[test]
fn reencrypt_uses_a_fresh_data_key_and_keeps_the_header() {
    let s = seal_len(100_000);
    let (new_id, new_key) = (Uuid::new_v4(), Key32::random());
    let mut out = Vec::new();
    let r = reencrypt(
        s.bytes.as_slice(),
        &s.ring().lookup(),
        new_id,
        &domain_key(new_key.duplicate()),
        None,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        (r.archive_id, r.previous_key_id, r.new_key_id),
        (s.summary.archive_id, s.key_id, new_id)
    );
    assert_eq!(r.sha256, s.summary.sha256);
    assert_eq!(r.bytes_written, out.len() as u64);
    assert_eq!(out.len(), s.bytes.len());
    // Same header bytes; different salt, slots and payload.
    let slots = s.slots_offset();
    assert_eq!(out[..slots - 24], s.bytes[..slots - 24]);
    assert_ne!(out[slots - 24..slots], s.bytes[slots - 24..slots]);
    assert_ne!(
        out[s.payload_offset()..s.payload_offset() + 64],
        s.bytes[s.payload_offset()..s.payload_offset() + 64]
    );
    let (o, pt) = open_bytes(&out, &Keyring::new(&[(new_id, &new_key)])).unwrap();
    assert!(pt == s.plaintext);
    assert_eq!(o.header.id, s.summary.archive_id);
    assert!(matches!(
        open_bytes(&out, &s.ring()),
        Err(EnvelopeError::KeyUnavailable { .. })
    ));
}

#[test]
fn reencrypt_refuses_a_tampered_source() {
    let s = seal_len(40_000);
    let mut b = s.bytes.clone();
    let n = b.len();
    b[n - 100] ^= 1; // inside the final chunk
    let err = reencrypt(
        b.as_slice(),
        &s.ring().lookup(),
        Uuid::new_v4(),
        &domain_key(Key32::random()),
        None,
        io::sink(),
    )
    .unwrap_err();
    assert!(matches!(err, EnvelopeError::Tampered(_)));
}

#[test]
fn newer_version_asks_for_an_upgrade() {
    let s = seal_len(10);
    for v in [CURRENT_VERSION + 1, 3, u16::MAX] {
        let mut b = s.bytes.clone();
        b[8..10].copy_from_slice(&v.to_be_bytes());
        let err = open_bytes(&b, &s.ring()).unwrap_err();
        assert!(matches!(err, EnvelopeError::UnsupportedVersion { found, max: 2 } if found == v));
        assert!(err.to_string().contains("upgrade"), "{err}");
        assert!(matches!(
            inspect(Cursor::new(&b)),
            Err(EnvelopeError::UnsupportedVersion { .. })
        ));
    }
}

#[test]
fn bad_magic_is_not_an_archive() {
    let err = open_bytes(
        b"PK\x03\x04 this is a zip file, not an archive",
        &Keyring::new(&[]),
    )
    .unwrap_err();
    assert!(matches!(err, EnvelopeError::NotAnArchive));
    assert!(err.to_string().contains("not a vault archive"));
}

/// A reader that fails the test if more than `limit` bytes are requested at once, to
/// prove that a huge header_len is refused before any allocation or read.
struct Stingy<'a>(&'a [u8]);
impl Read for Stingy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        assert!(buf.len() <= 16, "reader asked for {} bytes", buf.len());
        self.0.read(buf)
    }
}

#[test]
fn huge_header_len_is_malformed_without_allocating() {
    let mut b = b"VAULTARC".to_vec();
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    b.extend_from_slice(&[b'{'; 100]);
    let err = open(Stingy(&b), &|_: &Uuid| None, io::sink()).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::Malformed(ref m) if m.contains("header length")),
        "{err}"
    );
    assert!(matches!(
        inspect(Cursor::new(&b)),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn header_edit_with_valid_json_fails() {
    // Change the description without breaking the JSON or its length.
    let s = seal_len(100);
    let text = String::from_utf8_lossy(&s.bytes).to_string();
    let at = text.find("nightly").unwrap();
    let mut b = s.bytes.clone();
    b[at] = b'N';
    let err = open_bytes(&b, &s.ring()).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::Tampered(ref m) if m.contains("does not open")),
        "{err}"
    );
}

/// Every form a key could take in a message: hex (both cases), base64, and the decimal
/// list a derived `Debug` of `[u8; 32]` prints.
fn key_forms(key: &[u8; 32]) -> Vec<String> {
    use base64::Engine;
    let list = |sep: &str| key.iter().map(u8::to_string).collect::<Vec<_>>().join(sep);
    vec![
        hex::encode(key),
        hex::encode_upper(key),
        base64::engine::general_purpose::STANDARD.encode(key),
        list(", "),
        list(","),
    ]
}

#[test]
fn errors_never_show_key_bytes() {
    let s = seal_len(40_000);
    // The keys `open` is given: a wrong one, then the right one on damaged archives
    // (where it unwraps the data key before the damage is found).
    let wrong = Key32::random();
    let mut cases = vec![(
        "wrong key",
        *wrong.expose(),
        open_bytes(&s.bytes, &Keyring::new(&[(s.key_id, &wrong)])).unwrap_err(),
    )];
    let p = s.payload_offset();
    for (what, at) in [
        ("damaged commitment", p + 3),
        ("damaged chunk", p + 32 + 100),
        ("damaged trailer", s.bytes.len() - 5),
    ] {
        let mut b = s.bytes.clone();
        b[at] ^= 1;
        cases.push((
            what,
            *s.key.expose(),
            open_bytes(&b, &s.ring()).unwrap_err(),
        ));
    }
    for (what, key, err) in cases {
        let shown = format!("{err} {err:?} {:?}", err.to_string());
        for form in key_forms(&key) {
            assert!(!shown.contains(&form), "{what}: the key shows in {shown}");
        }
    }
}

fn sample_archive() -> &'static (Vec<u8>, Uuid, [u8; 32]) {
    static CELL: std::sync::OnceLock<(Vec<u8>, Uuid, [u8; 32])> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let s = seal_len(20_000);
        (s.bytes.clone(), s.key_id, *s.key.expose())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), magic in any::<bool>()) {
        let mut b = bytes;
        if magic && b.len() >= 8 {
            b[..8].copy_from_slice(b"VAULTARC");
        }
        let _ = inspect(Cursor::new(&b));
        let _ = open(b.as_slice(), &|_: &Uuid| Some(domain_key(Key32::random())), io::sink());
    }

    #[test]
    fn mutated_archives_never_panic_and_never_open(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let (orig, key_id, key) = sample_archive();
        let mut b = orig.clone();
        for (i, v) in &edits {
            let i = i.index(b.len());
            b[i] ^= v | 1;
        }
        if do_cut {
            b.truncate(cut.index(b.len()));
        }
        let mut kb = *key;
        let k = Key32::from_bytes(&mut kb);
        let id = *key_id;
        let lookup = move |q: &Uuid| (*q == id).then(|| domain_key(k.duplicate()));
        let _ = inspect(Cursor::new(&b));
        prop_assert!(open(b.as_slice(), &lookup, io::sink()).is_err());
    }
}

// --- the streaming API: a sealer that is a `Write`, an opener that is a `Read` ---------

/// Writes `data` into `w` in irregular pieces, from 1 byte to a few chunks.
fn write_in_pieces<W: Write>(w: &mut W, data: &[u8]) {
    let (mut at, mut step) = (0, 1usize);
    while at < data.len() {
        step = (step * 31 + 7) % 70_001 + 1;
        let n = step.min(data.len() - at);
        w.write_all(&data[at..at + n]).unwrap();
        at += n;
    }
}

#[test]
fn a_sealer_written_in_pieces_makes_the_archive_seal_makes() {
    for len in [0, 1, CHUNK, CHUNK + 1, THREADED_LEN + 17] {
        let key = Key32::random();
        let key_id = Uuid::new_v4();
        let pt = plaintext(len);
        let h = header();
        let mut sealer = Sealer::new(&h, SealOptions::new(key_id, &key), Vec::new()).unwrap();
        write_in_pieces(&mut sealer, &pt);
        sealer.flush().unwrap();
        let (bytes, summary) = sealer.finish().unwrap();
        assert_eq!(summary.bytes_written, bytes.len() as u64, "len {len}");
        assert_eq!(summary.plaintext_size, len as u64);
        // Same layout and length as the pull-style seal (fresh keys, so not the same bytes).
        let mut pulled = Vec::new();
        seal(&h, key_id, &key, pt.as_slice(), &mut pulled).unwrap();
        assert_eq!(bytes.len(), pulled.len(), "len {len}");
        let ring = Keyring::new(&[(key_id, &key)]);
        let (o, out) = open_bytes(&bytes, &ring).unwrap();
        assert!(out == pt, "len {len}");
        assert_eq!(o.sha256, summary.sha256);
    }
}

#[test]
fn an_unfinished_sealer_leaves_no_archive_that_opens() {
    let key = Key32::random();
    let key_id = Uuid::new_v4();
    let mut bytes = Vec::new();
    {
        let mut sealer =
            Sealer::new(&header(), SealOptions::new(key_id, &key), &mut bytes).unwrap();
        sealer.write_all(&plaintext(3 * CHUNK)).unwrap();
        // Dropped without finish.
    }
    let ring = Keyring::new(&[(key_id, &key)]);
    assert!(matches!(
        open_bytes(&bytes, &ring),
        Err(EnvelopeError::Truncated(_))
    ));
}

/// Reads `r` to its end in small irregular reads.
fn read_in_pieces<R: Read>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_001];
    let mut step = 3usize;
    loop {
        step = (step * 31 + 7) % 70_001 + 1;
        match r.read(&mut buf[..step])? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn an_opener_read_in_pieces_gives_the_plaintext_and_then_the_summary() {
    for len in [0, 5, CHUNK, THREADED_LEN + 3] {
        let s = seal_len(len);
        let ring = s.ring();
        let mut opener = Opener::new(s.bytes.as_slice(), &ring.lookup()).unwrap();
        assert_eq!(opener.header().id, s.summary.archive_id);
        assert_eq!((opener.key_id(), opener.generation()), (s.key_id, 1));
        let out = read_in_pieces(&mut opener).unwrap();
        assert!(out == s.plaintext, "len {len}");
        // At the end, reads keep saying end of stream, and finish has the summary.
        assert_eq!(opener.read(&mut [0u8; 8]).unwrap(), 0);
        let summary = opener.finish().unwrap();
        assert_eq!(summary.sha256, s.summary.sha256);
        assert_eq!(summary.plaintext_size, len as u64);
    }
}

#[test]
fn an_opener_never_reports_end_of_stream_for_a_damaged_archive() {
    let s = seal_len(THREADED_LEN);
    let ring = s.ring();
    let p = s.payload_offset() + 32;
    let last = THREADED_LEN / CHUNK;
    let mut bad_chunk = s.bytes.clone();
    bad_chunk[p + last * ENC_CHUNK + 1] ^= 1;
    let mut bad_trailer = s.bytes.clone();
    let n = bad_trailer.len();
    bad_trailer[n - 1] ^= 1;
    let cut = &s.bytes[..s.bytes.len() - ENC_CHUNK];
    for (what, bytes) in [
        ("last chunk", bad_chunk.as_slice()),
        ("trailer MAC", bad_trailer.as_slice()),
        ("cut", cut),
    ] {
        let mut opener = Opener::new(bytes, &ring.lookup()).unwrap();
        let err = read_in_pieces(&mut opener).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        // Every later read fails the same way; finish gives the archive-layer error.
        assert!(opener.read(&mut [0u8; 8]).is_err(), "{what}");
        let err = opener.finish().unwrap_err();
        assert!(
            matches!(
                err,
                EnvelopeError::Tampered(_) | EnvelopeError::Truncated(_)
            ),
            "{what}: {err}"
        );
    }
}

#[test]
fn an_opener_can_be_read_partly_then_finished_into_a_writer() {
    let s = seal_len(THREADED_LEN + 99);
    let ring = s.ring();
    let mut opener = Opener::new(s.bytes.as_slice(), &ring.lookup()).unwrap();
    let mut head = vec![0u8; 1000];
    opener.read_exact(&mut head).unwrap();
    let mut rest = Vec::new();
    let summary = opener.open_into(&mut rest).unwrap();
    head.extend_from_slice(&rest);
    assert!(head == s.plaintext);
    assert_eq!(summary.sha256, s.summary.sha256);
    // And the errors of `open_into` are the archive layer's own.
    let mut b = s.bytes.clone();
    b[s.payload_offset() + 32 + 70 * ENC_CHUNK] ^= 4;
    let err = Opener::new(b.as_slice(), &ring.lookup())
        .unwrap()
        .open_into(io::sink())
        .unwrap_err();
    assert!(
        matches!(err, EnvelopeError::Tampered(ref m) if m.contains("chunk 70 ")),
        "{err}"
    );
}

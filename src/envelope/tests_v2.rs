//! Format 2: the attacks that format 1 let through, replayed (each must now fail closed
//! with its own error), the tamper matrix (every bit, with a key and without one), the
//! secret field, provenance, upgrade from format 1, and version 3.
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use ed25519_dalek::SigningKey;
use uuid::Uuid;

use super::format::{PREAMBLE_LEN, Preamble};
use super::v2::{self, SECRET_BLOCK_LEN, SLOT_LEN, TRAILER_LEN};
use super::*;
use crate::secret::Key32;

const CHUNK: usize = 16_384;
const ENC_CHUNK: usize = CHUNK + 16;

fn signer() -> SigningKey {
    SigningKey::generate(&mut OsRng)
}

fn domain(d: &str) -> ArchiveHeader {
    ArchiveHeader::new(Scope::Domain, Some(d.into()), "alice", "nightly", None)
}

/// One archive, its key (as the home records it) and signer.
struct Case {
    bytes: Vec<u8>,
    key_id: Uuid,
    key: Key32,
    scope: Scope,
    domain_id: Option<String>,
    signer: SigningKey,
    plaintext: Vec<u8>,
}

impl Case {
    fn new(header: &ArchiveHeader, len: usize) -> Case {
        Case::with_secret(header, len, None)
    }

    fn with_secret(header: &ArchiveHeader, len: usize, secret: Option<&[u8]>) -> Case {
        let key = Key32::random();
        let key_id = Uuid::new_v4();
        let signer = signer();
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut opts = SealOptions::new(key_id, &key).signed_by(&signer);
        if let Some(s) = secret {
            opts = opts.with_secret(s);
        }
        let mut sealer = Sealer::new(header, opts, Vec::new()).unwrap();
        sealer.write_all(&plaintext).unwrap();
        let (bytes, _) = sealer.finish().unwrap();
        Case {
            bytes,
            key_id,
            key,
            scope: header.scope,
            domain_id: header.domain_id.clone(),
            signer,
            plaintext,
        }
    }

    fn opening_key(&self) -> OpeningKey {
        OpeningKey::new(self.key.duplicate(), self.scope, self.domain_id.clone())
    }

    fn lookup(&self) -> impl Fn(&Uuid) -> Option<OpeningKey> + '_ {
        |id| (*id == self.key_id).then(|| self.opening_key())
    }

    fn open(&self, bytes: &[u8]) -> Result<(OpenSummary, Vec<u8>), EnvelopeError> {
        let mut out = Vec::new();
        let s = open(bytes, &self.lookup(), &mut out)?;
        Ok((s, out))
    }

    fn trusted(&self) -> [[u8; 32]; 1] {
        [self.signer.verifying_key().to_bytes()]
    }

    /// The keyless verdict of a full read with this case's signer trusted.
    fn keyless(&self, bytes: &[u8]) -> Result<Provenance, EnvelopeError> {
        check_keyless(bytes).map(|c| c.provenance(&self.trusted()))
    }

    fn slots_offset(&self) -> usize {
        let pre: [u8; PREAMBLE_LEN] = self.bytes[..PREAMBLE_LEN].try_into().unwrap();
        Preamble::parse(&pre).unwrap().slots_offset() as usize
    }

    fn payload_offset(&self) -> usize {
        self.slots_offset() + 2 * SLOT_LEN + SECRET_BLOCK_LEN
    }
}

/// A file for `rewrap_in_place` over bytes in memory.
struct MemFile(Cursor<Vec<u8>>, Vec<(u64, usize)>);
impl Read for MemFile {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.read(b)
    }
}
impl Write for MemFile {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let at = self.0.position();
        let n = self.0.write(b)?;
        self.1.push((at, n));
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Seek for MemFile {
    fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
        self.0.seek(p)
    }
}
impl ArchiveFile for MemFile {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Rewrapped = (Vec<u8>, RewrapSummary, Vec<(u64, usize)>);

fn rewrap_bytes(
    bytes: &[u8],
    keys: KeyLookup<'_>,
    new_id: Uuid,
    new_key: &OpeningKey,
    signer: &SigningKey,
) -> Result<Rewrapped, EnvelopeError> {
    let mut f = MemFile(Cursor::new(bytes.to_vec()), Vec::new());
    let r = rewrap_in_place(&mut f, keys, new_id, new_key, Some(signer))?;
    Ok((f.0.into_inner(), r, f.1))
}

#[test]
fn a_signed_v2_archive_round_trips_and_names_its_signers() {
    let c = Case::new(&domain("lab"), 3 * CHUNK + 5);
    let (s, out) = c.open(&c.bytes).unwrap();
    assert!(out == c.plaintext);
    assert_eq!(s.version, 2);
    let pk = c.signer.verifying_key().to_bytes();
    assert_eq!(s.signers.slots, [Some(pk), None]);
    assert_eq!(s.signers.trailer, Some(pk));
    assert!(!s.two_slots && s.secret.is_none());
    let i = inspect(Cursor::new(&c.bytes)).unwrap();
    assert_eq!(i.provenance(&c.trusted()), Provenance::Valid);
    assert_eq!(i.provenance(&[]), Provenance::UnknownSigner);
    assert_eq!(c.keyless(&c.bytes).unwrap(), Provenance::Valid);
    // Unsigned (a library caller with no home): says so.
    let mut b = Vec::new();
    seal(&domain("lab"), c.key_id, &c.key, &b"x"[..], &mut b).unwrap();
    assert_eq!(c.keyless(&b).unwrap(), Provenance::Unsigned);
    assert!(c.open(&b).is_ok());
}

// --- finding 1: scope and domain hold on open ------------------------------------------

#[test]
fn a_key_of_another_domain_or_scope_never_opens_what_the_header_claims() {
    // A holder of a domain-B key seals an archive whose header says domain A.
    let c = Case::new(&domain("A"), 100);
    let as_b = |id: &Uuid| {
        (*id == c.key_id)
            .then(|| OpeningKey::new(c.key.duplicate(), Scope::Domain, Some("B".into())))
    };
    let err = open(c.bytes.as_slice(), &as_b, io::sink()).unwrap_err();
    assert!(matches!(err, EnvelopeError::ScopeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("domain B") && err.to_string().contains("domain A"));
    // A system archive sealed under a domain key.
    let sys = Case::new(&ArchiveHeader::new(Scope::System, None, "a", "", None), 100);
    let as_domain = |id: &Uuid| {
        (*id == sys.key_id)
            .then(|| OpeningKey::new(sys.key.duplicate(), Scope::Domain, Some("A".into())))
    };
    assert!(matches!(
        open(sys.bytes.as_slice(), &as_domain, io::sink()),
        Err(EnvelopeError::ScopeMismatch { .. })
    ));
    // And the binding is cryptographic: with the header edited to the key's domain, the
    // slot (whose KEK and AAD are bound to the original header) no longer opens.
    let needle = b"\"domainID\":\"A\"";
    let at = c
        .bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + 12;
    assert_eq!(c.bytes[at], b'A');
    let mut b = c.bytes.clone();
    b[at] = b'B';
    let err = open(b.as_slice(), &as_b, io::sink()).unwrap_err();
    assert!(matches!(err, EnvelopeError::Tampered(_)), "{err}");
    // Rewrap and re-encrypt to a key of another scope are refused too.
    let other = OpeningKey::new(Key32::random(), Scope::System, None);
    assert!(matches!(
        rewrap_bytes(&c.bytes, &c.lookup(), Uuid::new_v4(), &other, &c.signer),
        Err(EnvelopeError::ScopeMismatch { .. })
    ));
    assert!(matches!(
        reencrypt(
            c.bytes.as_slice(),
            &c.lookup(),
            Uuid::new_v4(),
            &other,
            None,
            io::sink()
        ),
        Err(EnvelopeError::ScopeMismatch { .. })
    ));
}

// --- finding 2: the unused slot and slot swaps ----------------------------------------

/// A well-formed slot for `key_id` that an attacker with no key of the archive can make:
/// random wrap, any generation, signed by the attacker's own key.
fn forged_slot(c: &Case, generation: u32, index: usize) -> [u8; SLOT_LEN] {
    let attacker = signer();
    let mut s = v2::Slot {
        generation,
        key_id: Uuid::new_v4(),
        nonce: [7; 12],
        wrapped_key: [9; 48],
        allowed_other: v2::slot_digest(
            c.bytes[c.slots_offset()..c.slots_offset() + SLOT_LEN]
                .try_into()
                .unwrap(),
        ),
        region_mac: [1; 32],
        signature: v2::Signature::NONE,
    };
    let pre: [u8; PREAMBLE_LEN] = c.bytes[..PREAMBLE_LEN].try_into().unwrap();
    let p = Preamble::parse(&pre).unwrap();
    let header = &c.bytes[PREAMBLE_LEN..PREAMBLE_LEN + p.header_len as usize];
    let salt: [u8; 24] = c.bytes[p.salt_offset() as usize..][..24]
        .try_into()
        .unwrap();
    let secret: [u8; SECRET_BLOCK_LEN] = c.bytes[c.payload_offset() - SECRET_BLOCK_LEN..]
        [..SECRET_BLOCK_LEN]
        .try_into()
        .unwrap();
    let signed = v2::signed_hash(&pre, header, &salt, &secret);
    s.signature = sign(Some(&attacker), |sig| {
        let mut u = s.clone();
        u.signature = sig;
        u.signed_message(&signed, index)
    });
    s.encode()
}

#[test]
fn a_forged_slot_in_the_empty_slot_fails_and_is_seen_without_a_key() {
    let c = Case::new(&domain("lab"), 1000);
    let at = c.slots_offset() + SLOT_LEN;
    for generation in [2, u32::MAX] {
        let mut b = c.bytes.clone();
        b[at..at + SLOT_LEN].copy_from_slice(&forged_slot(&c, generation, 1));
        let err = c.open(&b).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Tampered(ref m) if m.contains("region modified")),
            "{err}"
        );
        // Keyless: the forged slot names a key, but it is claimed only, and the signature
        // of an untrusted key makes the archive's provenance not valid.
        let i = inspect(Cursor::new(&b)).unwrap();
        assert!(matches!(i.slots[1], SlotInfo::Occupied { generation: g, .. } if g == generation));
        assert_ne!(i.provenance(&c.trusted()), Provenance::Valid);
        assert_ne!(c.keyless(&b).unwrap(), Provenance::Valid);
        // A rewrap by the key holder overwrites the forgery (generation 0xFFFFFFFF no
        // longer blocks it), and the result verifies again.
        let new_id = Uuid::new_v4();
        let new_key = OpeningKey::new(Key32::random(), Scope::Domain, Some("lab".into()));
        let (fixed, r, _) = rewrap_bytes(&b, &c.lookup(), new_id, &new_key, &c.signer).unwrap();
        assert_eq!(r.generation, 2);
        let lookup = |id: &Uuid| {
            (*id == new_id).then(|| {
                OpeningKey::new(
                    new_key.material.duplicate(),
                    Scope::Domain,
                    Some("lab".into()),
                )
            })
        };
        open(fixed.as_slice(), &lookup, io::sink())
            .unwrap_or_else(|e| panic!("generation {generation}: {e}"));
    }
    // A forged slot with a key-less attacker's own "newest" claim: the region rule alone
    // (no key at all) refuses it, because the real slot is not vouched for.
    let mut b = c.bytes.clone();
    let mut forged = v2::parse_slot(&forged_slot(&c, 5, 1));
    if let v2::SlotState::Occupied(s) = &mut forged {
        s.allowed_other = [0; 32];
        b[at..at + SLOT_LEN].copy_from_slice(&s.encode());
    }
    assert!(inspect(Cursor::new(&b)).unwrap().region.is_err());
}

#[test]
fn swapping_the_slots_or_copying_one_from_another_archive_fails() {
    let c = Case::new(&domain("lab"), 1000);
    let at = c.slots_offset();
    let mut swapped = c.bytes.clone();
    let (a, b) = swapped[at..at + 2 * SLOT_LEN].split_at_mut(SLOT_LEN);
    a.swap_with_slice(b);
    let err = c.open(&swapped).unwrap_err();
    assert!(matches!(err, EnvelopeError::Tampered(_)), "{err}");
    assert_ne!(c.keyless(&swapped).unwrap(), Provenance::Valid);

    // A slot of another archive of the same key and the same home.
    let d = Case::new(&domain("lab"), 1000);
    let mut copied = c.bytes.clone();
    copied[at + SLOT_LEN..at + 2 * SLOT_LEN].copy_from_slice(&d.bytes[at..at + SLOT_LEN]);
    assert!(c.open(&copied).is_err());
    assert_ne!(c.keyless(&copied).unwrap(), Provenance::Valid);
}

// --- finding 4 and 5: rewrap --------------------------------------------------------

#[test]
fn rewrap_writes_into_the_slot_that_did_not_yield_the_data_key() {
    let c = Case::new(&domain("lab"), 1000);
    let k = |m: &Key32| OpeningKey::new(m.duplicate(), Scope::Domain, Some("lab".into()));
    let (k2_id, k2) = (Uuid::new_v4(), Key32::random());
    // Rewrap to K2, interrupted after the first write: {slot 0: K1 g1, slot 1: K2 g2}.
    let mut f = MemFile(Cursor::new(c.bytes.clone()), Vec::new());
    let slots = c.slots_offset() as u64;
    struct Crash<'a>(&'a mut MemFile, usize);
    impl Read for Crash<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.read(b)
        }
    }
    impl Write for Crash<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.1 == 0 {
                return Err(io::Error::other("killed"));
            }
            self.1 -= 1;
            self.0.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Crash<'_> {
        fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
            self.0.seek(p)
        }
    }
    impl ArchiveFile for Crash<'_> {
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert!(
        rewrap_in_place(
            &mut Crash(&mut f, 1),
            &c.lookup(),
            k2_id,
            &k(&k2),
            Some(&c.signer)
        )
        .is_err()
    );
    let torn = f.0.into_inner();
    let (s, _) = c.open(&torn).unwrap();
    assert!(s.two_slots, "an interrupted rewrap is reported");
    assert_eq!(s.slot, 0);
    // This home holds K1 only (the newest slot's key is elsewhere): a rewrap to K3 must
    // write slot 1 (the one that did not yield the data key), never slot 0 first.
    let (k3_id, k3) = (Uuid::new_v4(), Key32::random());
    let (done, r, writes) = rewrap_bytes(&torn, &c.lookup(), k3_id, &k(&k3), &c.signer).unwrap();
    assert_eq!(r.generation, 3);
    assert_eq!(
        writes[0],
        (slots + SLOT_LEN as u64, SLOT_LEN),
        "slot 1 first"
    );
    assert_eq!(writes[1], (slots, SLOT_LEN), "then slot 0 is wiped");
    let lookup3 = |id: &Uuid| (*id == k3_id).then(|| k(&k3));
    let s = open(done.as_slice(), &lookup3, io::sink()).unwrap();
    assert_eq!((s.slot, s.generation, s.two_slots), (1, 3, false));
}

#[test]
fn after_a_rewrap_the_old_key_holder_cannot_forge_a_payload_that_proves_its_origin() {
    // Whoever held the old key can recompute the data key and rewrite payload and
    // trailer MAC; the home's trailer signature they cannot make.
    let c = Case::new(&domain("lab"), 2 * CHUNK);
    let mut b = c.bytes.clone();
    let n = b.len();
    b[n - TRAILER_LEN - 20] ^= 1; // a chunk byte: the digest in the signed trailer breaks
    assert_eq!(c.keyless(&b).unwrap(), Provenance::Invalid);
    // Re-signing with another key is an unknown signer, not valid.
    let mut t = v2::Trailer::parse(c.bytes[n - TRAILER_LEN..].try_into().unwrap()).unwrap();
    let i = inspect(Cursor::new(&c.bytes)).unwrap();
    let pre: [u8; PREAMBLE_LEN] = c.bytes[..PREAMBLE_LEN].try_into().unwrap();
    let p = Preamble::parse(&pre).unwrap();
    let header = &c.bytes[PREAMBLE_LEN..PREAMBLE_LEN + i.header_len as usize];
    let salt: [u8; 24] = c.bytes[p.salt_offset() as usize..][..24]
        .try_into()
        .unwrap();
    let secret: [u8; SECRET_BLOCK_LEN] = c.bytes[c.payload_offset() - SECRET_BLOCK_LEN..]
        [..SECRET_BLOCK_LEN]
        .try_into()
        .unwrap();
    let signed = v2::signed_hash(&pre, header, &salt, &secret);
    t.signature = sign(Some(&signer()), |sig| {
        let mut u = t.clone();
        u.signature = sig;
        u.signed_message(&signed)
    });
    let mut resigned = c.bytes.clone();
    resigned[n - TRAILER_LEN..].copy_from_slice(&t.encode());
    assert_eq!(c.keyless(&resigned).unwrap(), Provenance::UnknownSigner);
}

// --- the tamper matrix ----------------------------------------------------------------

/// Every single-bit flip in the header, both slots, the secret block, the commitment and
/// the trailer (signatures included), and one bit of every payload byte (all 8 with
/// VAULT_TAMPER_ALL_BITS=1): `verify` refuses each, and so does the keyless sweep with
/// the signer trusted.
#[test]
fn tamper_matrix_every_bit_fails_verify_and_the_keyless_sweep() {
    let c = Case::with_secret(&domain("lab"), CHUNK + 100, Some(b"iLO file password"));
    let all = std::env::var("VAULT_TAMPER_ALL_BITS").is_ok_and(|v| v == "1");
    let payload = c.payload_offset() + 32..c.bytes.len() - TRAILER_LEN;
    let mut flips = 0;
    for i in 0..c.bytes.len() {
        let bits: Vec<u8> = if all || !payload.contains(&i) {
            (0..8).collect()
        } else {
            vec![(i % 8) as u8]
        };
        for bit in bits {
            let mut b = c.bytes.clone();
            b[i] ^= 1 << bit;
            assert!(c.open(&b).is_err(), "verify accepted a flip at {i}.{bit}");
            if let Ok(Provenance::Valid) = c.keyless(&b) {
                panic!("keyless sweep accepted a flip at {i}.{bit}");
            }
            flips += 1;
        }
    }
    assert!(flips > c.bytes.len());
}

#[test]
fn tamper_matrix_structural_edits() {
    let c = Case::new(&domain("lab"), 4 * CHUNK + 10);
    let p = c.payload_offset() + 32;
    let n = c.bytes.len();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Chunk swap and chunk drop.
    let mut swapped = c.bytes.clone();
    let (x, y) = swapped[p..p + 2 * ENC_CHUNK].split_at_mut(ENC_CHUNK);
    x.swap_with_slice(y);
    cases.push(("chunk swap".into(), swapped));
    let mut dropped = c.bytes[..p + ENC_CHUNK].to_vec();
    dropped.extend_from_slice(&c.bytes[p + 2 * ENC_CHUNK..]);
    cases.push(("chunk drop".into(), dropped));
    // Truncation at every chunk boundary (and inside the trailer).
    for k in 0..=4 {
        cases.push((
            format!("cut at chunk {k}"),
            c.bytes[..p + k * ENC_CHUNK].to_vec(),
        ));
    }
    cases.push(("cut in trailer".into(), c.bytes[..n - 1].to_vec()));
    // Header splice: the header of another archive of the same length.
    let d = Case::new(&domain("lab"), 4 * CHUNK + 10);
    let hl = c.slots_offset() - 24;
    let mut spliced = c.bytes.clone();
    spliced[..hl].copy_from_slice(&d.bytes[..hl]);
    cases.push(("header splice".into(), spliced));
    // The payload and trailer of another archive under the same key and signer.
    for (what, b) in cases {
        assert!(c.open(&b).is_err(), "{what}: verify accepted it");
        assert!(
            !matches!(c.keyless(&b), Ok(Provenance::Valid)),
            "{what}: the keyless sweep accepted it"
        );
    }
}

// --- the secret field -----------------------------------------------------------------

#[test]
fn the_secret_field_comes_back_only_with_the_key_and_is_bounded() {
    let c = Case::with_secret(&domain("lab"), 10, Some(b"s3cret-filepass"));
    let (s, _) = c.open(&c.bytes).unwrap();
    assert_eq!(s.secret.as_ref().unwrap().expose(), b"s3cret-filepass");
    assert!(
        !format!("{s:?}").contains("s3cret"),
        "Debug must not show it"
    );
    // Not in the file in clear.
    assert!(!c.bytes.windows(6).any(|w| w == b"s3cret"));
    // Through the opener and re-encryption too.
    let o = Opener::new(c.bytes.as_slice(), &c.lookup()).unwrap();
    assert_eq!(o.secret().unwrap().expose(), b"s3cret-filepass");
    let mut out = Vec::new();
    reencrypt(
        c.bytes.as_slice(),
        &c.lookup(),
        c.key_id,
        &c.opening_key(),
        Some(&c.signer),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        c.open(&out).unwrap().0.secret.unwrap().expose(),
        b"s3cret-filepass"
    );
    // 256 bytes fit, 257 do not.
    let max = [b'x'; MAX_SECRET_LEN];
    let big = Case::with_secret(&domain("lab"), 1, Some(&max));
    assert_eq!(
        big.open(&big.bytes)
            .unwrap()
            .0
            .secret
            .unwrap()
            .expose()
            .len(),
        256
    );
    let k = Key32::random();
    let too_long = [b'x'; MAX_SECRET_LEN + 1];
    let r = Sealer::new(
        &domain("lab"),
        SealOptions::new(Uuid::new_v4(), &k).with_secret(&too_long),
        Vec::new(),
    );
    assert!(matches!(r, Err(EnvelopeError::InvalidHeader(_))));
    // Every archive has the same block size, secret or not.
    let none = Case::new(&domain("lab"), 10);
    assert_eq!(none.bytes.len(), c.bytes.len());
    assert!(none.open(&none.bytes).unwrap().0.secret.is_none());
}

// --- versions: v1 opens and upgrades, v3 is refused -----------------------------------

#[test]
fn a_v1_archive_opens_and_rewrap_upgrades_it_to_v2_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.vault");
    let (key_id, key) = (Uuid::new_v4(), Key32::random());
    let h = domain("lab");
    let pt: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    let mut v1 = Vec::new();
    seal_v1(&h, key_id, &key, pt.as_slice(), &mut v1).unwrap();
    std::fs::write(&path, &v1).unwrap();
    let k = |m: &Key32| OpeningKey::new(m.duplicate(), Scope::Domain, Some("lab".into()));
    let lookup = |id: &Uuid| (*id == key_id).then(|| k(&key));
    let s = verify(v1.as_slice(), &lookup).unwrap();
    assert_eq!(s.version, 1);
    // A v1 archive's scope holds on open too.
    let wrong =
        |id: &Uuid| (*id == key_id).then(|| OpeningKey::new(key.duplicate(), Scope::System, None));
    assert!(matches!(
        verify(v1.as_slice(), &wrong),
        Err(EnvelopeError::ScopeMismatch { .. })
    ));
    // In place, a v1 archive cannot be rewrapped: it needs the upgrade.
    let mut f = MemFile(Cursor::new(v1.clone()), Vec::new());
    assert!(matches!(
        rewrap_in_place(&mut f, &lookup, key_id, &k(&key), None),
        Err(EnvelopeError::NeedsUpgrade)
    ));
    let (k2_id, k2) = (Uuid::new_v4(), Key32::random());
    let signer = signer();
    let r = rewrap_file(&path, &lookup, k2_id, &k(&k2), Some(&signer)).unwrap();
    assert!(r.upgraded && r.changed);
    let upgraded = std::fs::read(&path).unwrap();
    let lookup2 = |id: &Uuid| (*id == k2_id).then(|| k(&k2));
    let mut out = Vec::new();
    let s = open(upgraded.as_slice(), &lookup2, &mut out).unwrap();
    assert!(out == pt);
    assert_eq!((s.version, s.header.id, s.generation), (2, h.id, 2));
    assert_eq!(
        check_keyless(upgraded.as_slice())
            .unwrap()
            .provenance(&[signer.verifying_key().to_bytes()]),
        Provenance::Valid
    );
    // Only the archive itself is in the directory (no temporary left behind).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// The upgrade is a re-encryption into a temporary file renamed over the archive: a
/// failure at any write of it (a kill stops writing at one of them) leaves the v1
/// archive in place, byte for byte, and no temporary file once the writer is gone.
#[test]
fn an_upgrade_failing_at_any_write_leaves_the_v1_archive_intact() {
    let (key_id, key) = (Uuid::new_v4(), Key32::random());
    let h = domain("lab");
    let mut v1 = Vec::new();
    seal_v1(&h, key_id, &key, &[5u8; 3 * CHUNK + 7][..], &mut v1).unwrap();
    let k = |m: &Key32| OpeningKey::new(m.duplicate(), Scope::Domain, Some("lab".into()));
    let lookup = |id: &Uuid| (*id == key_id).then(|| k(&key));
    struct FailAt(usize, Vec<u8>);
    impl Write for FailAt {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("killed"));
            }
            self.0 -= 1;
            self.1.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut writes = 0;
    loop {
        let mut out = FailAt(writes, Vec::new());
        match reencrypt(v1.as_slice(), &lookup, key_id, &k(&key), None, &mut out) {
            Ok(_) => break,
            Err(_) => {
                // What was written so far is not an archive that opens.
                assert!(verify(out.1.as_slice(), &lookup).is_err(), "write {writes}");
                writes += 1;
            }
        }
        assert!(writes < 1000);
    }
    assert!(writes >= 3, "the upgrade took {writes} writes");
}

#[test]
fn a_version_3_archive_is_refused_with_upgrade_vault() {
    let c = Case::new(&domain("lab"), 10);
    let mut b = c.bytes.clone();
    b[8..10].copy_from_slice(&3u16.to_be_bytes());
    for err in [
        c.open(&b).unwrap_err(),
        inspect(Cursor::new(&b)).unwrap_err(),
        check_keyless(b.as_slice()).unwrap_err(),
    ] {
        assert!(matches!(
            err,
            EnvelopeError::UnsupportedVersion { found: 3, max: 2 }
        ));
        assert!(err.to_string().contains("upgrade vault"), "{err}");
    }
}

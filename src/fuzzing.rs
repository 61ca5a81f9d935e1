//! Entry points shared by the `cargo fuzz` targets in `fuzz/` and by
//! `tests/fuzz_corpus.rs`, so the committed seed corpus runs in the normal `cargo test`.
//!
//! Invariant: every function here accepts *any* byte string and never panics unless a
//! library invariant is broken. The `assert!`s are oracles (round trips, "what opens must
//! also inspect the same", "an intact audit log stays intact after an append"): a failing
//! one is a bug in the library, not in the input. Each function returns whether the input
//! was *accepted* (the most complete success of its reader), so the corpus test can check
//! that the valid seeds still are.
//!
//! The fixed keys and password below are public test values. They exist so that a mutated
//! valid archive or key file reaches the cryptographic code instead of stopping at
//! "unknown key"; they must never protect anything real.
use std::io::Cursor;

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditFilter, AuditLog, LOG_FILE_NAME, Outcome};
use crate::bmc::redfish;
use crate::envelope::format::{
    self, MAX_HEADER_LEN, PREAMBLE_LEN, Preamble, SLOT_COUNT, SLOT_LEN, SlotState, Trailer,
};
use crate::envelope::{self, ArchiveHeader};
use crate::errors::Classify;
use crate::keystore::kdf::{MIN_ITERATIONS, MIN_MEMORY_KIB, MIN_PARALLELISM};
use crate::keystore::keyfile;
use crate::secret::{Key32, Password};

/// Id of the first fixed fuzzing backup key.
pub const FUZZ_KEY_ID: Uuid = Uuid::from_u128(0x0f0f_f022_0000_4000_8000_0000_0000_0001);
/// Id of the second fixed fuzzing backup key (the target of rewrapped seed archives).
pub const FUZZ_KEY2_ID: Uuid = Uuid::from_u128(0x0f0f_f022_0000_4000_8000_0000_0000_0002);
/// Password of the seed key files (public; test use only).
pub const FUZZ_PASSWORD: &str = "vault fuzzing password, not a secret";

/// The fixed backup key with id [`FUZZ_KEY_ID`].
pub fn fuzz_key() -> Key32 {
    Key32::from_slice(&[0x5a; 32]).expect("32 bytes")
}

/// The fixed backup key with id [`FUZZ_KEY2_ID`].
pub fn fuzz_key2() -> Key32 {
    Key32::from_slice(&[0xa5; 32]).expect("32 bytes")
}

/// Key lookup knowing exactly the two fixed keys.
pub fn fuzz_lookup(id: &Uuid) -> Option<Key32> {
    if *id == FUZZ_KEY_ID {
        Some(fuzz_key())
    } else if *id == FUZZ_KEY2_ID {
        Some(fuzz_key2())
    } else {
        None
    }
}

/// [`fuzz_lookup`] as the archive layer asks for it: the fixed keys, taken to belong to
/// whatever scope and domain `header` claims (so mutated archives of either scope reach
/// the cryptographic code).
pub fn fuzz_opening_lookup(
    header: Option<&ArchiveHeader>,
) -> impl Fn(&Uuid) -> Option<envelope::OpeningKey> + '_ {
    move |id| {
        let key = fuzz_lookup(id)?;
        Some(match header {
            Some(h) => envelope::OpeningKey::new(key, h.scope, h.domain_id.clone()),
            None => envelope::OpeningKey::new(key, envelope::Scope::System, None),
        })
    }
}

/// The byte-layout parsers alone: preamble, JSON header, key slots and trailer, both on
/// the input as a whole and walked the way a reader walks an archive. Accepted: the input
/// starts with a valid preamble followed by a valid header.
pub fn fuzz_archive_header(data: &[u8]) -> bool {
    // Every fixed-size parser on the raw input, so short inputs reach each of them.
    if let Some(b) = data.first_chunk::<PREAMBLE_LEN>() {
        check_preamble(b);
    }
    if let Some(b) = data.first_chunk::<SLOT_LEN>() {
        check_slot(b);
    }
    if let Some(b) = data.last_chunk::<{ format::TRAILER_LEN }>() {
        check_trailer(b);
    }
    check_header(data);

    // The real layout: preamble | header | salt | slots | … | trailer.
    let Some(pre) = data.first_chunk::<PREAMBLE_LEN>() else {
        return false;
    };
    let Some(preamble) = check_preamble(pre) else {
        return false;
    };
    let header_end = PREAMBLE_LEN + preamble.header_len as usize;
    let Some(header_bytes) = data.get(PREAMBLE_LEN..header_end) else {
        return false;
    };
    let accepted = check_header(header_bytes);
    let slots_at = preamble.slots_offset() as usize;
    for i in 0..SLOT_COUNT {
        let at = slots_at + i * SLOT_LEN;
        if let Some(b) = data.get(at..).and_then(<[u8]>::first_chunk::<SLOT_LEN>) {
            check_slot(b);
        }
    }
    accepted
}

fn check_preamble(bytes: &[u8; PREAMBLE_LEN]) -> Option<Preamble> {
    match Preamble::parse(bytes) {
        Ok(p) => {
            assert_eq!(&p.encode(), bytes, "preamble round trip");
            assert!(p.header_len >= 1 && p.header_len <= MAX_HEADER_LEN);
            assert!(p.payload_offset() > p.slots_offset() && p.slots_offset() > p.salt_offset());
            Some(p)
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

fn check_header(bytes: &[u8]) -> bool {
    match ArchiveHeader::parse(bytes) {
        Ok(h) => {
            // What was accepted must be writable again and read back identically, unless
            // the re-encoding outgrows the limit (an input longer than the limit itself).
            match h.encode() {
                Ok(enc) => assert_eq!(
                    ArchiveHeader::parse(&enc).ok(),
                    Some(h),
                    "header round trip"
                ),
                Err(e) => assert!(
                    bytes.len() + 64 > MAX_HEADER_LEN as usize,
                    "a parsed {}-byte header failed to encode: {e}",
                    bytes.len()
                ),
            }
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

fn check_slot(bytes: &[u8; SLOT_LEN]) {
    match format::parse_slot(bytes) {
        SlotState::Empty => assert!(bytes.iter().all(|&b| b == 0)),
        SlotState::Occupied(k) => {
            assert_ne!(k.generation, 0);
            assert_eq!(&k.encode(), bytes, "slot round trip");
        }
        SlotState::Damaged => {}
    }
}

fn check_trailer(bytes: &[u8; format::TRAILER_LEN]) {
    match Trailer::parse(bytes) {
        Ok(t) => assert_eq!(&t.encode(), bytes, "trailer round trip"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The whole archive reader: `inspect` (keyless) and `open` (decrypt and verify; `verify`
/// is `open` into a sink) with the two fixed keys. Accepted: the archive opens.
pub fn fuzz_archive_open(data: &[u8]) -> bool {
    let inspected = envelope::inspect(Cursor::new(data));
    if let Err(e) = &inspected {
        let _ = e.to_string();
    }
    let mut plaintext = Vec::new();
    let claimed = inspected.as_ref().ok().map(|i| i.header.clone());
    let lookup = fuzz_opening_lookup(claimed.as_ref());
    match envelope::open(data, &lookup, &mut plaintext) {
        Ok(s) => {
            assert_eq!(plaintext.len() as u64, s.plaintext_size);
            let digest: [u8; 32] = Sha256::digest(&plaintext).into();
            assert_eq!(digest, s.sha256, "open's digest is the plaintext's");
            let i = inspected.expect("an archive that opens must also inspect");
            assert_eq!(i.header, s.header);
            assert_eq!(i.version, s.version);
            assert_eq!((i.plaintext_size, i.sha256), (s.plaintext_size, s.sha256));
            assert!(
                i.length_consistent,
                "an archive that opens has a consistent length"
            );
            assert!(i.key_ids.contains(&(s.key_id, s.generation)));
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// The key-file parser, twice: on the input as is, and with its trailing SHA-256 fixed up
/// so that mutations reach the version, metadata and KDF checks behind the checksum. Only
/// an input whose own checksum holds and whose Argon2id cost is at the floor is opened
/// with [`FUZZ_PASSWORD`] (the KDF dominates the run time). Accepted: it opens.
pub fn fuzz_keyfile(data: &[u8]) -> bool {
    if data.len() >= 32 {
        let mut fixed = data.to_vec();
        let body_len = fixed.len() - 32;
        let sum = Sha256::digest(&fixed[..body_len]);
        fixed[body_len..].copy_from_slice(&sum);
        check_keyfile(&fixed);
    }
    let Some(parsed) = check_keyfile(data) else {
        return false;
    };
    let p = parsed.meta.kdf.params;
    if (p.memory_kib, p.iterations, p.parallelism)
        != (MIN_MEMORY_KIB, MIN_ITERATIONS, MIN_PARALLELISM)
    {
        return false;
    }
    match parsed.open(&Password::new(FUZZ_PASSWORD.to_string())) {
        Ok(_key) => true,
        Err(e) => {
            let _ = (e.to_string(), e.kind());
            false
        }
    }
}

fn check_keyfile(data: &[u8]) -> Option<keyfile::ParsedKeyFile> {
    match keyfile::parse(data) {
        Ok(p) => {
            assert!(
                p.meta.kdf.params.check().is_ok(),
                "parse bounds the KDF cost"
            );
            assert!(data.len() <= keyfile::MAX_FILE_LEN);
            Some(p)
        }
        Err(e) => {
            let _ = (e.to_string(), e.kind());
            None
        }
    }
}

/// The audit-log readers on `data` as the content of `audit.log`: `records`, `query`,
/// `verify`, `verify_against_anchor`, then an `append` (which reads the tail of the
/// hostile file). Oracle: a log that verifies intact takes an append and still verifies
/// intact, one record longer. Accepted: the log verifies intact.
///
/// Writes to a fresh temporary directory (set `TMPDIR=/dev/shm` to keep fsyncs cheap).
pub fn fuzz_audit_log(data: &[u8]) -> bool {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    std::fs::write(dir.path().join(LOG_FILE_NAME), data).expect("write the log");
    let log = AuditLog::open(dir.path()).with_account("fuzz");

    let mut ok_records = 0u64;
    for item in log.records().expect("open the log") {
        match item {
            Ok(_) => ok_records += 1,
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let report = log.verify().expect("reading a local file does not fail");
    let all = log.query(&AuditFilter::default());
    let _ = log.query(&AuditFilter {
        since: Some(time::OffsetDateTime::UNIX_EPOCH),
        operation: Some("keys".into()),
        key_id: Some(String::new()),
        archive_id: None,
    });
    let intact = report.is_intact();
    if intact {
        assert_eq!(ok_records, report.records, "an intact log is all records");
        assert_eq!(all.map(|r| r.len() as u64).ok(), Some(report.records));
        if report.records > 0 {
            let anchor = log
                .verify_against_anchor(report.records, &report.last_hash)
                .expect("reading a local file does not fail");
            assert_eq!(anchor, crate::audit::AnchorCheck::Found);
        }
    } else if let Some(b) = &report.first_broken {
        let _ = serde_json::to_string(b);
    }

    let appended = log.append(&AuditEvent::new("fuzz.append", Outcome::Success));
    if intact {
        let rec = appended.expect("an intact log takes an append");
        assert_eq!(rec.seq, report.records + 1);
        let after = log.verify().expect("reading a local file does not fail");
        assert!(after.is_intact() && after.torn_tail.is_none(), "{after:?}");
        assert_eq!(after.records, report.records + 1);
        assert_eq!(after.last_hash, rec.hash);
    } else if let Err(e) = appended {
        let _ = e.to_string();
    }
    intact
}

/// What the Redfish client does with a BMC's response body: the bounded JSON parse, the
/// fields and links it follows (and `path_of` on each), the error-body reader and the
/// sanitizer. Accepted: the body parses as JSON.
pub fn fuzz_redfish_json(data: &[u8]) -> bool {
    let info = redfish::parse_error_body(data);
    let _ = redfish::is_session_limit(&info);
    for s in [&info.message_id, &info.message].into_iter().flatten() {
        check_sanitized(s);
    }
    // The same text as a header value or URL would arrive.
    let text = String::from_utf8_lossy(data);
    check_sanitized(&redfish::sanitize(&text));
    check_path(&text);
    let _ = redfish::Origin::parse(&text);

    let v = match redfish::parse_json(data) {
        Ok(v) => v,
        Err(e) => {
            let _ = e.len();
            return false;
        }
    };
    assert!(
        depth(&v) <= redfish::MAX_JSON_DEPTH,
        "parse_json let a deeper document through"
    );
    let origin = redfish::Origin::parse("https://bmc.example").expect("valid origin");
    for link in [
        redfish::link_at(&v, &["Managers"]),
        redfish::link_at(&v, &["Systems"]),
        redfish::link_at(&v, &["Oem", "Hpe", "Links", "BackupRestoreService"]),
        redfish::str_at(&v, &["HttpPushUri"]),
        redfish::str_at(&v, &["BackupFileLocation"]),
        redfish::str_at(&v, &["@odata.id"]),
    ]
    .into_iter()
    .flatten()
    .chain(redfish::members(&v))
    {
        if let Some(p) = check_path(link) {
            let name = redfish::safe_file_name(redfish::last_segment(&p));
            assert!(!name.is_empty() && !name.starts_with('.'));
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            );
            let url = origin.resolve(link).expect("path_of accepted it");
            assert!(url.starts_with("https://bmc.example/"), "{url}");
        }
    }
    for key in ["Model", "FirmwareVersion", "SerialNumber"] {
        if let Some(s) = v.get(key).and_then(Value::as_str) {
            check_sanitized(&redfish::sanitize(s.trim()));
        }
    }
    true
}

/// `path_of`'s promise: an origin-relative path, never a network-path reference.
fn check_path(reference: &str) -> Option<String> {
    let p = redfish::path_of(reference).ok()?;
    assert!(p.starts_with('/') && !p.starts_with("//"), "{p:?}");
    assert!(
        !p.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    );
    Some(p)
}

fn check_sanitized(s: &str) {
    assert!(!s.chars().any(char::is_control), "control character kept");
    assert!(s.chars().count() <= 201, "sanitized text not shortened");
}

/// Nesting depth of a JSON value (a scalar is 0, `[]` is 1).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

//! Runs the committed fuzzing seed corpus (`fuzz/corpus/<target>/`) and any local crash
//! artifacts (`fuzz/artifacts/<target>/`) through the same entry functions as the
//! `cargo fuzz` targets, so every seed and every regression input is checked by the
//! normal `cargo test`, on stable, without libFuzzer.
//!
//! Seed names say what they expect: `valid-*` must be accepted by its target (the archive
//! opens with the fixed fuzzing key, the key file opens with the fixed password, the audit
//! log verifies intact, the JSON parses), `invalid-*` must be refused, anything else
//! (including `regression-*`) must only not panic.
//!
//! The seeds are made by `generate_seed_corpus` below (ignored; run it by hand with
//! `cargo test --test fuzz_corpus -- --ignored generate_seed_corpus`). Archives and key
//! files contain random salts and nonces, so regenerating changes their bytes but not
//! what they expect.
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use vault::fuzzing;

type Entry = fn(&[u8]) -> bool;

const TARGETS: &[(&str, Entry)] = &[
    ("archive_header", fuzzing::fuzz_archive_header),
    ("archive_open", fuzzing::fuzz_archive_open),
    ("keyfile", fuzzing::fuzz_keyfile),
    ("audit_log", fuzzing::fuzz_audit_log),
    ("redfish_json", fuzzing::fuzz_redfish_json),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.expect("read corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn run_target(name: &str, entry: Entry) {
    let corpus = files_in(&fuzz_dir().join("corpus").join(name));
    assert!(
        corpus.iter().any(|p| file_name(p).starts_with("valid-")),
        "fuzz/corpus/{name} has no valid-* seed; run generate_seed_corpus"
    );
    let artifacts = files_in(&fuzz_dir().join("artifacts").join(name));
    for path in corpus.iter().chain(&artifacts) {
        let data = fs::read(path).expect("read seed");
        let accepted = entry(&data);
        let n = file_name(path);
        if n.starts_with("valid-") {
            assert!(accepted, "{name}: seed {n} is no longer accepted");
        } else if n.starts_with("invalid-") {
            assert!(!accepted, "{name}: seed {n} is now accepted");
        }
    }
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

#[test]
fn archive_header_corpus() {
    run_target(TARGETS[0].0, TARGETS[0].1);
}

#[test]
fn archive_open_corpus() {
    run_target(TARGETS[1].0, TARGETS[1].1);
}

#[test]
fn keyfile_corpus() {
    run_target(TARGETS[2].0, TARGETS[2].1);
}

#[test]
fn audit_log_corpus() {
    run_target(TARGETS[3].0, TARGETS[3].1);
}

#[test]
fn redfish_json_corpus() {
    run_target(TARGETS[4].0, TARGETS[4].1);
}

#[test]
fn corpus_stays_small() {
    let total: u64 = TARGETS
        .iter()
        .flat_map(|(name, _)| files_in(&fuzz_dir().join("corpus").join(name)))
        .map(|p| fs::metadata(p).expect("stat seed").len())
        .sum();
    assert!(total < 2 * 1024 * 1024, "seed corpus is {total} bytes");
}

/// Reads the `valid-*` seeds of a target (each at most a few KiB, except two archives).
fn valid_seeds(name: &str) -> Vec<Vec<u8>> {
    files_in(&fuzz_dir().join("corpus").join(name))
        .into_iter()
        .filter(|p| file_name(p).starts_with("valid-"))
        .map(|p| fs::read(p).expect("read seed"))
        .collect()
}

/// A seed with a few bytes changed and maybe cut short.
fn mutate(seed: &[u8], edits: &[(Index, u8)], cut: Option<Index>) -> Vec<u8> {
    let mut b = seed.to_vec();
    if !b.is_empty() {
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] ^= v | 1;
        }
    }
    if let Some(c) = cut {
        b.truncate(c.index(b.len() + 1));
    }
    b
}

// A stable-toolchain stand-in for the fuzzers in every `cargo test`: random bytes and
// mutated valid seeds through the same entry functions and oracles, with its own cases
// for each target (`PROPTEST_CASES` raises them all).
macro_rules! per_target {
    ($($module:ident => $t:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(
                    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)
                ))]

                #[test]
                fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
                    let (name, entry) = TARGETS[$t];
                    // Random bytes are never a valid archive or key file.
                    if name == "archive_open" || name == "keyfile" {
                        prop_assert!(!entry(&bytes), "{name} accepted random bytes");
                    } else {
                        entry(&bytes);
                    }
                }

                #[test]
                fn mutated_seeds_never_panic(
                    pick in any::<Index>(),
                    edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..8),
                    cut in proptest::option::of(any::<Index>()),
                ) {
                    let (name, entry) = TARGETS[$t];
                    let seeds = valid_seeds(name);
                    let seed = &seeds[pick.index(seeds.len())];
                    let b = mutate(seed, &edits, cut);
                    let accepted = entry(&b);
                    if name == "archive_open" || name == "keyfile" {
                        // Authenticated formats: any change is refused. (For key files
                        // this is the outer checksum; `keyfile_forgeries_reach_open_and_fail`
                        // gets past it.)
                        prop_assert!(!accepted || b == *seed, "{name} accepted a modified seed");
                    }
                }
            }
        }
    )*};
}

per_target! {
    archive_header_cases => 0,
    archive_open_cases => 1,
    keyfile_cases => 2,
    audit_log_cases => 3,
    redfish_json_cases => 4,
}

/// Key-file mutations with the outer SHA-256 recomputed (a forger's edit): each one that
/// still parses is opened with the right password and must be refused. Half the edits hit
/// the binary part (check value, nonce, wrapped key), which always parses, so most cases
/// reach `open` (counted and asserted). `VAULT_FUZZ_KEYFILE_CASES` (default 48) sets how
/// many; each open is one Argon2id run at the floor cost.
#[test]
fn keyfile_forgeries_reach_open_and_fail() {
    use sha2::{Digest, Sha256};
    use vault::keystore::keyfile;
    use vault::secret::Password;
    let n: usize = std::env::var("VAULT_FUZZ_KEYFILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let seeds = valid_seeds("keyfile");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    let (mut opened, mut parse_refused) = (0, 0);
    for case in 0..n {
        let seed = &seeds[next(seeds.len())];
        let meta_len = u32::from_be_bytes(seed[10..14].try_into().unwrap()) as usize;
        let body = seed.len() - 32;
        let mut b = seed.clone();
        for _ in 0..1 + next(3) {
            let i = if case % 2 == 0 {
                14 + meta_len + next(body - 14 - meta_len)
            } else {
                14 + next(meta_len)
            };
            b[i] ^= 1 + next(255) as u8;
        }
        let sum = Sha256::digest(&b[..body]);
        b[body..].copy_from_slice(&sum);
        if b == *seed {
            continue;
        }
        match keyfile::parse(&b) {
            Err(_) => parse_refused += 1,
            Ok(parsed) => {
                let p = parsed.meta.kdf.params;
                if p.memory_kib > 64 * 1024 || p.iterations > 4 || p.parallelism > 4 {
                    // A mutated cost too high to run here: refused by nothing we can
                    // afford to run, so not counted.
                    continue;
                }
                let r = parsed.open(&Password::new(vault::fuzzing::FUZZ_PASSWORD.to_string()));
                assert!(r.is_err(), "case {case}: forged key file opened");
                opened += 1;
            }
        }
    }
    println!(
        "key-file forgeries: {n} cases, {opened} opened and refused, {parse_refused} refused by parse"
    );
    assert!(
        opened >= n / 3,
        "only {opened} of {n} forgeries reached open: the test would not see a broken unwrap"
    );
}

/// Writes the seed corpus. Run by hand after a format change; commit the result.
#[test]
#[ignore = "writes fuzz/corpus; run by hand to regenerate the seeds"]
fn generate_seed_corpus() {
    seeds::archives();
    seeds::keyfiles();
    seeds::audit_logs();
    seeds::redfish_bodies();
}

mod seeds {
    use std::fs::{self, OpenOptions};
    use std::path::PathBuf;

    use sha2::{Digest, Sha256};
    use uuid::Uuid;
    use vault::audit::{AuditEvent, AuditLog, LOG_FILE_NAME, Outcome};
    use vault::envelope::{self, ArchiveHeader, Scope, Source};
    use vault::fuzzing::{
        FUZZ_KEY_ID, FUZZ_KEY2_ID, FUZZ_PASSWORD, fuzz_key, fuzz_key2, fuzz_opening_lookup,
    };
    use vault::keystore::kdf::{KdfParams, MIN_ITERATIONS, MIN_MEMORY_KIB, MIN_PARALLELISM};
    use vault::keystore::{self, KeyState, keyfile};
    use vault::secret::{Key32, Password};

    fn dir(target: &str) -> PathBuf {
        let d = super::fuzz_dir().join("corpus").join(target);
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create corpus directory");
        d
    }

    /// Deterministic, mildly compressible plaintext.
    fn plaintext(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
            .collect()
    }

    fn seal(scope: Scope, len: usize, key_id: Uuid, key: &Key32) -> Vec<u8> {
        let (domain, source) = match scope {
            Scope::System => (None, None),
            Scope::Domain => (
                Some("datacenter-1".to_string()),
                Some(Source {
                    bmc_host: Some("10.0.0.5".into()),
                    manager_model: Some("iLO 6".into()),
                    firmware_version: Some("1.58".into()),
                    serial_number: Some("CZ2D1X0ABC".into()),
                    file_name: Some("HPE_CZ2D1X0ABC_20250101_1200.bak".into()),
                    backup_file_location: Some("/bkupdata/HPE_CZ2D1X0ABC_20250101_1200.bak".into()),
                }),
            ),
        };
        let header = ArchiveHeader::new(scope, domain, "fuzz", "seed archive", source);
        let mut out = Vec::new();
        envelope::seal(&header, key_id, key, plaintext(len).as_slice(), &mut out)
            .expect("seal seed");
        out
    }

    pub fn archives() {
        let open = dir("archive_open");
        let hdr = dir("archive_header");
        let small = seal(Scope::System, 0, FUZZ_KEY_ID, &fuzz_key());
        let domain = seal(Scope::Domain, 1, FUZZ_KEY_ID, &fuzz_key());
        for (name, bytes) in [
            ("valid-system-0.varc", small.clone()),
            ("valid-domain-1.varc", domain.clone()),
            (
                "valid-system-1000.varc",
                seal(Scope::System, 1000, FUZZ_KEY_ID, &fuzz_key()),
            ),
            (
                "valid-key2-16384.varc",
                seal(Scope::System, 16384, FUZZ_KEY2_ID, &fuzz_key2()),
            ),
            (
                "valid-system-16385.varc",
                seal(Scope::System, 16385, FUZZ_KEY_ID, &fuzz_key()),
            ),
        ] {
            fs::write(open.join(name), &bytes).expect("write seed");
        }

        // Rewrapped from key 1 to key 2: slot generation 2 in the second slot.
        let tmp = tempfile::NamedTempFile::new().expect("temp file");
        fs::write(tmp.path(), &domain).expect("write");
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(tmp.path())
            .expect("open");
        let header = envelope::inspect(&mut f).expect("inspect seed").header;
        let lookup = fuzz_opening_lookup(Some(&header));
        let key2 = envelope::OpeningKey::new(fuzz_key2(), header.scope, header.domain_id.clone());
        envelope::rewrap_in_place(&mut f, &lookup, FUZZ_KEY2_ID, &key2, None).expect("rewrap seed");
        drop(f);
        fs::write(
            open.join("valid-rewrapped-1.varc"),
            fs::read(tmp.path()).expect("read"),
        )
        .expect("write seed");

        let mut truncated = small.clone();
        truncated.pop();
        fs::write(open.join("invalid-truncated.varc"), truncated).expect("write seed");
        let mut edited = small.clone();
        let at = find(&edited, b"seed archive").expect("description in header");
        edited[at] = b'S';
        fs::write(open.join("invalid-edited-header.varc"), edited).expect("write seed");
        let unknown = seal(Scope::System, 10, Uuid::from_u128(7), &Key32::random());
        fs::write(open.join("invalid-unknown-key.varc"), unknown).expect("write seed");

        // The header target: whole small archives (preamble, header, slots, trailer) and
        // a bare header JSON.
        fs::write(hdr.join("valid-system-0.varc"), &small).expect("write seed");
        fs::write(hdr.join("valid-domain-1.varc"), &domain).expect("write seed");
        let header_len = u32::from_be_bytes(domain[12..16].try_into().expect("4 bytes")) as usize;
        fs::write(hdr.join("header-domain.json"), &domain[16..16 + header_len])
            .expect("write seed");
        let mut bad_version = small.clone();
        bad_version[9] = 9;
        fs::write(hdr.join("invalid-version-9.varc"), bad_version).expect("write seed");
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn export(password: &str, params: KdfParams) -> Vec<u8> {
        let meta = keyfile::ExportMeta {
            id: FUZZ_KEY_ID,
            scope: keystore::Scope::Domain,
            domain_id: Some("datacenter-1".into()),
            created_at: "2025-01-01T12:00:00Z".into(),
            state: KeyState::Active,
            description: "fuzzing seed key".into(),
        };
        keyfile::export(&fuzz_key(), &meta, &Password::new(password.into()), params)
            .expect("export seed key file")
    }

    fn fix_checksum(b: &mut [u8]) {
        let body = b.len() - 32;
        let sum = Sha256::digest(&b[..body]);
        b[body..].copy_from_slice(&sum);
    }

    pub fn keyfiles() {
        let d = dir("keyfile");
        let floor = KdfParams {
            memory_kib: MIN_MEMORY_KIB,
            iterations: MIN_ITERATIONS,
            parallelism: MIN_PARALLELISM,
        };
        let valid = export(FUZZ_PASSWORD, floor);
        fs::write(d.join("valid-floor-cost.vkey"), &valid).expect("write seed");
        fs::write(
            d.join("invalid-wrong-password.vkey"),
            export("not the password", floor),
        )
        .expect("write seed");
        // Costlier than the floor: parsed but, to keep executions fast, never opened.
        let costly = KdfParams {
            memory_kib: MIN_MEMORY_KIB + 1024,
            iterations: 3,
            parallelism: 2,
        };
        fs::write(
            d.join("parse-only-cost.vkey"),
            export(FUZZ_PASSWORD, costly),
        )
        .expect("write seed");

        let mut flipped = valid.clone();
        let n = flipped.len();
        flipped[n - 40] ^= 1;
        fs::write(d.join("invalid-bad-checksum.vkey"), flipped).expect("write seed");
        // Metadata edited and the checksum recomputed: only the GCM tag notices.
        let mut edited = valid.clone();
        let at = find(&edited, b"fuzzing seed key").expect("description in metadata");
        edited[at] = b'F';
        fix_checksum(&mut edited);
        fs::write(d.join("invalid-edited-metadata.vkey"), edited).expect("write seed");
        // Wrapped key edited and the checksum recomputed.
        let mut wrapped = valid;
        let n = wrapped.len();
        wrapped[n - 33] ^= 0x80;
        fix_checksum(&mut wrapped);
        fs::write(d.join("invalid-edited-wrapped-key.vkey"), wrapped).expect("write seed");
    }

    pub fn audit_logs() {
        let d = dir("audit_log");
        let home = tempfile::tempdir().expect("temp dir");
        let log = AuditLog::open(home.path()).with_account("operator");
        let key = FUZZ_KEY_ID.to_string();
        log.append(&AuditEvent::new("keys.create", Outcome::Success).key_id(&key))
            .expect("append");
        log.append(
            &AuditEvent::new("archive.seal", Outcome::Success)
                .key_id(&key)
                .archive_id("5dac1d33-0000-4000-8000-000000000001")
                .bmc_host("10.0.0.5")
                .detail("backup of iLO 6"),
        )
        .expect("append");
        log.append(
            &AuditEvent::new(
                "bmc.backup",
                Outcome::Failure {
                    kind: "network".into(),
                },
            )
            .bmc_host("10.0.0.6")
            .detail("connection refused \"quoted\" \u{e9}"),
        )
        .expect("append");
        let text = fs::read(home.path().join(LOG_FILE_NAME)).expect("read log");
        fs::write(d.join("valid-3-records.log"), &text).expect("write seed");
        fs::write(d.join("valid-empty.log"), b"").expect("write seed");
        let mut torn = text.clone();
        torn.extend_from_slice(b"{\"seq\":4,\"time\":\"2025-");
        fs::write(d.join("valid-torn-tail.log"), torn).expect("write seed");

        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let gap: Vec<u8> = [lines[0], lines[2]].concat();
        fs::write(d.join("invalid-seq-gap.log"), gap).expect("write seed");
        let mut edited = text.clone();
        let at = find(&edited, b"operator").expect("account in log");
        edited[at] = b'O';
        fs::write(d.join("invalid-edited-record.log"), edited).expect("write seed");
        let mut junk = text;
        junk.extend_from_slice(b"not json\n\n");
        fs::write(d.join("invalid-junk-line.log"), junk).expect("write seed");
    }

    pub fn redfish_bodies() {
        let d = dir("redfish_json");
        let bodies: &[(&str, &str)] = &[
            (
                "valid-service-root.json",
                r##"{"@odata.id":"/redfish/v1/","@odata.type":"#ServiceRoot.v1_13_0.ServiceRoot","Id":"RootService","Name":"HPE RESTful Root Service","RedfishVersion":"1.13.0","Managers":{"@odata.id":"/redfish/v1/Managers/"},"Systems":{"@odata.id":"/redfish/v1/Systems/"},"SessionService":{"@odata.id":"/redfish/v1/SessionService/"},"Links":{"Sessions":{"@odata.id":"/redfish/v1/SessionService/Sessions/"}},"Oem":{"Hpe":{"Manager":[{"ManagerType":"iLO 6"}]}}}"##,
            ),
            (
                "valid-managers.json",
                r#"{"@odata.id":"/redfish/v1/Managers/","Members@odata.count":1,"Members":[{"@odata.id":"/redfish/v1/Managers/1/"}]}"#,
            ),
            (
                "valid-manager.json",
                r##"{"@odata.id":"/redfish/v1/Managers/1/","@odata.type":"#Manager.v1_5_1.Manager","Id":"1","ManagerType":"BMC","Model":"iLO 6","FirmwareVersion":"iLO 6 v1.58","Oem":{"Hpe":{"Links":{"BackupRestoreService":{"@odata.id":"/redfish/v1/Managers/1/BackupRestoreService/"}}}}}"##,
            ),
            (
                "valid-backup-service.json",
                r##"{"@odata.context":"/redfish/v1/$metadata#HpeiLOBackupRestoreService.HpeiLOBackupRestoreService","@odata.id":"/redfish/v1/Managers/1/BackupRestoreService/","@odata.type":"#HpeiLOBackupRestoreService.v2_2_0.HpeiLOBackupRestoreService","Id":"BackupRestoreService","Name":"Backup Restore Service","BackupFileLocation":"/bkupdata/HPE_CZ2D1X0ABC_20250101_1200.bak","HttpPushUri":"/cgi-bin/uploadRestoreFile","CustomBackupandRestore":false,"BackupFiles":[]}"##,
            ),
            (
                "valid-absolute-links.json",
                r#"{"BackupFileLocation":"https://16.1.2.3/bkupdata/x.bak?a=b","HttpPushUri":"//evil.example/upload","@odata.id":"HTTPS://other.example"}"#,
            ),
            (
                "valid-system.json",
                r##"{"@odata.id":"/redfish/v1/Systems/1/","@odata.type":"#ComputerSystem.v1_17_0.ComputerSystem","Id":"1","Model":"ProLiant DL380 Gen11","SerialNumber":"  CZ2D1X0ABC\u001b[31m  "}"##,
            ),
            (
                "valid-session.json",
                r##"{"@odata.id":"/redfish/v1/SessionService/Sessions/admin000000000001/","@odata.type":"#Session.v1_0_0.Session","Description":"Manager User Session","Id":"admin000000000001","Name":"User Session","UserName":"admin"}"##,
            ),
            (
                "valid-error-ilo-session-limit.json",
                r#"{"error":{"code":"iLO.0.10.ExtendedInfo","message":"See @Message.ExtendedInfo for more information.","@Message.ExtendedInfo":[{"MessageId":"Base.1.12.SessionLimitExceeded"}]}}"#,
            ),
            (
                "valid-error-dmtf.json",
                r#"{"error":{"code":"Base.1.8.GeneralError","message":"A general error has occurred.","@Message.ExtendedInfo":[{"MessageId":"Base.1.8.PropertyValueNotInList","Message":"The value\n\u0007 is not in the list.","Severity":"Warning"}]}}"#,
            ),
            (
                "valid-error-idrac.json",
                r#"{"error":{"@Message.ExtendedInfo":[{"Message":"The maximum number of user sessions is reached.","MessageId":"IDRAC.2.8.RAC0218"}],"code":"Base.1.12.GeneralError","message":"A general error has occurred."}}"#,
            ),
            ("invalid-truncated.json", r#"{"error":{"code":"iLO.0.10"#),
            (
                "invalid-html.json",
                "<html><body>502 Bad Gateway</body></html>",
            ),
        ];
        for (name, body) in bodies {
            fs::write(d.join(name), body).expect("write seed");
        }
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        fs::write(d.join("invalid-too-deep.json"), deep).expect("write seed");
        let ok_deep = format!("{}1{}", "{\"a\":".repeat(64), "}".repeat(64));
        fs::write(d.join("valid-depth-64.json"), ok_deep).expect("write seed");
    }
}

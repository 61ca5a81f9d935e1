//! Issue #7, hostile inputs: each is refused with one clear error line (never a panic or
//! a signal) and the vault process's peak memory stays under 64 MiB.
//!
//! Peak memory is measured per process without `unsafe` and without external tools: this
//! test binary re-executes itself as a helper (`rss_helper`) whose only child is the
//! measured process, so the helper's `getrusage(RUSAGE_CHILDREN).ru_maxrss` is exactly
//! that child's peak RSS. The BMC cases have no CLI yet (`vault backup pull` is being
//! written); they run the library client against the simulator in a child process
//! (`bmc_fault_child`, this binary again), measured the same way.
//!
//! `--nocapture` prints one `hostile:` line per case with the peak observed.
mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const LIMIT_KIB: u64 = 64 * 1024;

struct Measured {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    peak_kib: u64,
}

/// Runs `program args` as the only child of a helper process and reports its peak RSS.
fn measured(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let spec = json!({
        "program": program,
        "args": args,
        "env": env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "dir": dir.path(),
    });
    let st = Command::new(std::env::current_exe().unwrap())
        .args(["rss_helper", "--exact", "--test-threads=1", "-q"])
        .env("VAULT_RSS_SPEC", spec.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "rss helper failed");
    let r: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("result.json")).unwrap()).unwrap();
    let read =
        |n: &str| String::from_utf8_lossy(&std::fs::read(dir.path().join(n)).unwrap()).into_owned();
    Measured {
        code: r["code"].as_i64().map(|c| c as i32),
        signal: r["signal"].as_i64().map(|c| c as i32),
        stdout: read("stdout"),
        stderr: read("stderr"),
        peak_kib: r["peakKib"].as_u64().unwrap(),
    }
}

/// Not a test of its own: the helper process of [`measured`] (a no-op in a normal run).
#[test]
fn rss_helper() {
    let Ok(spec) = std::env::var("VAULT_RSS_SPEC") else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let dir = PathBuf::from(spec["dir"].as_str().unwrap());
    let mut cmd = Command::new(spec["program"].as_str().unwrap());
    cmd.args(
        spec["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    for kv in spec["env"].as_array().unwrap() {
        cmd.env(kv[0].as_str().unwrap(), kv[1].as_str().unwrap());
    }
    let st = cmd
        .env_remove("VAULT_RSS_SPEC")
        .env_remove("VAULT_KEY_PASSWORD")
        .env_remove("VAULT_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .status()
        .unwrap();
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let result = json!({"code": st.code(), "signal": st.signal(), "peakKib": usage.max_rss()});
    std::fs::write(dir.join("result.json"), result.to_string()).unwrap();
}

/// Asserts a clean refusal within the memory bound; returns the peak for the summary.
fn refused(case: &str, v: &Vault, args: &[&str], expect: &[&str]) -> u64 {
    let mut full = vec!["--home", s(&v.home)];
    full.extend_from_slice(args);
    let m = measured(Path::new(BIN), &full, &[]);
    let what = format!("{case}: vault {args:?}");
    assert_eq!(m.signal, None, "{what} died by a signal");
    assert!(
        m.code.is_some_and(|c| c != 0 && c != 101),
        "{what}: exit {:?}, stderr {}",
        m.code,
        m.stderr
    );
    let line = m.stderr.trim_end();
    assert!(
        line.starts_with("vault: error: ") && !line.contains('\n') && !line.contains("panicked"),
        "{what}: not one clear error line: {line:?}"
    );
    assert!(
        expect.iter().any(|e| line.contains(e)),
        "{what}: {line:?} names none of {expect:?}"
    );
    assert!(
        m.peak_kib < LIMIT_KIB,
        "{what}: peak RSS {} KiB",
        m.peak_kib
    );
    println!(
        "hostile: {case:<36} {:>6} KiB  vault {}  -> {line}",
        m.peak_kib,
        args[..2].join(" ")
    );
    m.peak_kib
}

/// A small valid archive (description `XXXXXXXX`, to be replaced by hostile bytes).
fn archive(v: &Vault) -> Vec<u8> {
    v.create_key(&[]);
    let f = v.path("plain");
    std::fs::write(&f, bytes(50_000, 3)).unwrap();
    let id = v.ok(&[
        "backup",
        "create",
        "--file",
        s(&f),
        "--description",
        "XXXXXXXX",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::read(v.home.join("archives").join(format!("{id}.vault"))).unwrap()
}

/// The archive commands that read `bytes` as an archive file; all must refuse it.
fn archive_refused(case: &str, v: &Vault, bytes: &[u8], expect: &[&str], inspect_ok: bool) -> u64 {
    let f = v.path(&format!("{case}.vault"));
    std::fs::write(&f, bytes).unwrap();
    let out = v.path(&format!("{case}.out"));
    let mut peak = 0;
    for args in [
        vec!["backup", "verify", "--file", s(&f)],
        vec!["backup", "extract", "--file", s(&f), "--out", s(&out)],
        vec!["backup", "upload", "--file", s(&f)],
    ] {
        peak = peak.max(refused(case, v, &args, expect));
    }
    assert!(!out.exists(), "{case}: plaintext written");
    if inspect_ok {
        // Only a claimed size is off: inspect shows the metadata and flags the length.
        let m = measured(Path::new(BIN), &["inspect", "--file", s(&f)], &[]);
        assert_eq!(m.code, Some(0), "{case}: {}", m.stderr);
        assert!(
            m.stdout.contains("\"lengthConsistent\": false")
                || m.stdout.contains("\"lengthConsistent\":false"),
            "{}",
            m.stdout
        );
        assert!(m.peak_kib < LIMIT_KIB);
        println!(
            "hostile: {case:<36} {:>6} KiB  vault inspect  -> lengthConsistent false + warning",
            m.peak_kib
        );
        peak = peak.max(m.peak_kib);
    } else {
        peak = peak.max(refused(case, v, &["inspect", "--file", s(&f)], expect));
    }
    peak
}

fn header_len(a: &[u8]) -> usize {
    u32::from_be_bytes(a[12..16].try_into().unwrap()) as usize
}

/// Replaces the header bytes (and the length field) of an archive.
fn with_header(a: &[u8], header: &[u8]) -> Vec<u8> {
    let h = header_len(a);
    let mut b = a[..12].to_vec();
    b.extend_from_slice(&(header.len() as u32).to_be_bytes());
    b.extend_from_slice(header);
    b.extend_from_slice(&a[16 + h..]);
    b
}

fn with_trailer_size(a: &[u8], size: u64) -> Vec<u8> {
    let mut b = a.to_vec();
    let t = b.len() - 80;
    b[t + 8..t + 16].copy_from_slice(&size.to_be_bytes());
    b
}

#[test]
fn archive_header_length_4gib() {
    let v = Vault::new();
    let mut a = archive(&v);
    a[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    archive_refused(
        "archive_header_length_4gib",
        &v,
        &a,
        &["header length"],
        false,
    );
}

#[test]
fn archive_header_nested_json() {
    let v = Vault::new();
    let a = archive(&v);
    // As deep as the 64 KiB header bound allows, then 100k (refused by the bound).
    let deep = with_header(&a, &[b'['; 65_536]);
    archive_refused(
        "archive_header_nested_json_64k",
        &v,
        &deep,
        &["header", "malformed"],
        false,
    );
    let deeper = with_header(&a, &[b'['; 100_000]);
    archive_refused(
        "archive_header_nested_json_100k",
        &v,
        &deeper,
        &["header length"],
        false,
    );
}

#[test]
fn archive_header_non_utf8() {
    let v = Vault::new();
    let a = archive(&v);
    let h = header_len(&a);
    let mut header = a[16..16 + h].to_vec();
    let at = header.windows(8).position(|w| w == b"XXXXXXXX").unwrap();
    header[at..at + 8].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0]);
    let b = with_header(&a, &header);
    archive_refused(
        "archive_header_non_utf8",
        &v,
        &b,
        &["UTF-8", "utf-8", "header"],
        false,
    );
}

#[test]
fn archive_trailer_claims_1pb() {
    let v = Vault::new();
    let a = archive(&v);
    let b = with_trailer_size(&a, 1_000_000_000_000_000);
    archive_refused(
        "archive_trailer_claims_1pb",
        &v,
        &b,
        &["authentic", "truncat", "length", "size"],
        true,
    );
}

#[test]
fn archive_chunk_count_past_limit() {
    let v = Vault::new();
    let a = archive(&v);
    // More than 2^38 chunks of 16 KiB, then a size whose payload length overflows u64.
    let b = with_trailer_size(&a, (1u64 << 38) * 16_384 + 5);
    archive_refused(
        "archive_chunk_count_past_limit",
        &v,
        &b,
        &["authentic", "truncat", "length", "size"],
        true,
    );
    let c = with_trailer_size(&a, u64::MAX);
    archive_refused(
        "archive_claimed_size_u64_max",
        &v,
        &c,
        &["authentic", "truncat", "length", "size"],
        true,
    );
}

/// A key file exported with the cheapest KDF, description `XXXXXXXX`.
fn key_file(v: &Vault) -> (Vec<u8>, PathBuf) {
    let id = v.create_key(&["--description", "XXXXXXXX"]);
    let f = v.path("key.vkey");
    let pw = v.password_file(PASSWORD);
    let mut a = vec![
        "keys",
        "download",
        "--id",
        &id,
        "--file",
        s(&f),
        "--password-file",
        s(&pw),
    ];
    a.extend(FAST_KDF);
    v.ok(&a);
    (std::fs::read(&f).unwrap(), pw)
}

/// Rebuilds a key file around new metadata, with a recomputed outer SHA-256.
fn with_meta(kf: &[u8], meta: &[u8]) -> Vec<u8> {
    let m = u32::from_be_bytes(kf[10..14].try_into().unwrap()) as usize;
    let mut b = kf[..10].to_vec();
    b.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    b.extend_from_slice(meta);
    b.extend_from_slice(&kf[14 + m..kf.len() - 32]);
    let sum = Sha256::digest(&b);
    b.extend_from_slice(&sum);
    b
}

fn keyfile_refused(case: &str, v: &Vault, bytes: &[u8], pw: &Path, expect: &[&str]) {
    let f = v.path(&format!("{case}.vkey"));
    std::fs::write(&f, bytes).unwrap();
    let before = v.state();
    refused(case, v, &["keys", "inspect", "--file", s(&f)], expect);
    refused(
        case,
        v,
        &["keys", "upload", "--file", s(&f), "--password-file", s(pw)],
        expect,
    );
    assert!(v.state() == before, "{case}: the key store changed");
}

#[test]
fn keyfile_kdf_memory_4tib() {
    let v = Vault::new();
    let (kf, pw) = key_file(&v);
    let m = u32::from_be_bytes(kf[10..14].try_into().unwrap()) as usize;
    let mut meta: Value = serde_json::from_slice(&kf[14..14 + m]).unwrap();
    meta["kdf"]["memoryKib"] = json!(u32::MAX);
    let b = with_meta(&kf, &serde_json::to_vec(&meta).unwrap());
    keyfile_refused(
        "keyfile_kdf_memory_4tib",
        &v,
        &b,
        &pw,
        &["memory", "KiB", "KDF", "kdf"],
    );
}

#[test]
fn keyfile_metadata_nested_json() {
    let v = Vault::new();
    let (kf, pw) = key_file(&v);
    let b = with_meta(&kf, &[b'['; 16_384]);
    keyfile_refused(
        "keyfile_metadata_nested_json",
        &v,
        &b,
        &pw,
        &["metadata", "corrupt", "JSON"],
    );
}

#[test]
fn keyfile_metadata_non_utf8() {
    let v = Vault::new();
    let (kf, pw) = key_file(&v);
    let m = u32::from_be_bytes(kf[10..14].try_into().unwrap()) as usize;
    let mut meta = kf[14..14 + m].to_vec();
    let at = meta.windows(8).position(|w| w == b"XXXXXXXX").unwrap();
    meta[at..at + 8].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0]);
    let b = with_meta(&kf, &meta);
    keyfile_refused(
        "keyfile_metadata_non_utf8",
        &v,
        &b,
        &pw,
        &["metadata", "corrupt", "UTF-8", "utf-8"],
    );
}

// --- The BMC side (library level until `vault backup pull` exists) ---

/// Child process for the BMC cases: the library client against the simulator with one
/// fault injected; succeeds if the download is refused with the expected error.
#[test]
fn bmc_fault_child() {
    use vault::bmc::{BmcError, BmcOptions, BmcSession, Fault, SimConfig, SimHandle};
    let Ok(fault) = std::env::var("VAULT_BMC_FAULT") else {
        return;
    };
    let cfg = SimConfig {
        backup_bytes: bytes(300 * 1024, 9),
        ..SimConfig::default()
    };
    let sim = SimHandle::start(cfg.clone()).unwrap();
    let mut o = BmcOptions::new(
        sim.base_url(),
        cfg.user.clone(),
        vault::secret::Password::new(cfg.password.clone()),
    );
    o.ca_cert = Some(sim.ca_cert_path().to_path_buf());
    o.timeout = Duration::from_secs(2);
    o.retries = 2;
    // Above the 64 MiB bound: a client that buffered the body would exceed it.
    o.max_backup_bytes = 96 << 20;
    let mut s = BmcSession::connect(o).unwrap();
    let svc = s.discover().unwrap();
    sim.set_fault(match fault.as_str() {
        "HugeContentLength" => Fault::HugeContentLength,
        "EndlessBody" => Fault::EndlessBody,
        "RedirectLoop" => Fault::RedirectLoop,
        "SlowDrip" => Fault::SlowDrip,
        f => panic!("unknown fault {f}"),
    });
    struct Count(u64);
    impl Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = Count(0);
    let err = s.download_backup(&svc, &mut sink).unwrap_err();
    drop(s);
    let ok = match fault.as_str() {
        "HugeContentLength" => {
            matches!(
                err,
                BmcError::TooLarge {
                    claimed: Some(_),
                    ..
                }
            ) && sink.0 == 0
        }
        "EndlessBody" => {
            matches!(err, BmcError::TooLarge { claimed: None, .. }) && sink.0 <= 96 << 20
        }
        "RedirectLoop" => matches!(err, BmcError::Redirect { .. }) && sink.0 == 0,
        _ => matches!(err, BmcError::Timeout { .. }),
    };
    assert!(ok, "{fault}: unexpected {err:?} after {} bytes", sink.0);
    assert_eq!(sim.open_sessions(), 0, "session leaked");
    eprintln!("BMC-ERROR: {err} ({} bytes reached the sink)", sink.0);
}

fn bmc_case(case: &str, fault: &str) {
    let exe = std::env::current_exe().unwrap();
    let m = measured(
        &exe,
        &[
            "bmc_fault_child",
            "--exact",
            "--test-threads=1",
            "--nocapture",
            "-q",
        ],
        &[("VAULT_BMC_FAULT", fault)],
    );
    assert_eq!(m.code, Some(0), "{case}: {}{}", m.stdout, m.stderr);
    let line = m
        .stderr
        .lines()
        .find(|l| l.starts_with("BMC-ERROR: "))
        .unwrap_or_default()
        .to_string();
    assert!(!line.is_empty(), "{case}: {}", m.stderr);
    assert!(
        m.peak_kib < LIMIT_KIB,
        "{case}: peak RSS {} KiB",
        m.peak_kib
    );
    println!(
        "hostile: {case:<36} {:>6} KiB  (library client + simulator) -> {line}",
        m.peak_kib
    );
}

#[test]
fn bmc_content_length_10gb() {
    bmc_case("bmc_content_length_10gb", "HugeContentLength");
}

#[test]
fn bmc_endless_body() {
    bmc_case("bmc_endless_body", "EndlessBody");
}

#[test]
fn bmc_redirect_loop() {
    bmc_case("bmc_redirect_loop", "RedirectLoop");
}

#[test]
fn bmc_slow_drip() {
    bmc_case("bmc_slow_drip", "SlowDrip");
}

//! Issue #7, hostile inputs: each is refused with one clear error line (never a panic or
//! a signal) and the vault process's peak memory stays under 64 MiB.
//!
//! Peak memory is measured per process without `unsafe` and without external tools: this
//! test binary re-executes itself in its helper mode (`reliability_hostile rss-helper`,
//! handled by `main` before any test runs; it is not a test) whose only child is the
//! measured process, so the helper's `getrusage(RUSAGE_CHILDREN).ru_maxrss` is exactly
//! that child's peak RSS. The binary has its own `main` (`harness = false`, tests run by
//! `libtest-mimic` with the usual filters and flags). The BMC cases run `vault backup
//! pull` against an in-process simulator with one fault injected, measured the same way.
//!
//! `--nocapture` prints one `hostile:` line per case with the peak observed.
mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vault::bmc::{Fault, SimConfig, SimHandle};

const LIMIT_KIB: u64 = 64 * 1024;

/// `--nocapture`: print the per-case lines (libtest-mimic does not capture output).
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

macro_rules! report {
    ($($t:tt)*) => {
        if VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
            println!($($t)*);
        }
    };
}

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
        .arg(RSS_HELPER)
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

/// The first argument that starts this binary as the helper process of [`measured`].
const RSS_HELPER: &str = "rss-helper";

/// The helper process of [`measured`]: runs the program of `VAULT_RSS_SPEC` as its only
/// child and writes its exit status and peak RSS next to its output.
fn rss_helper() {
    let spec = std::env::var("VAULT_RSS_SPEC").expect("rss-helper needs VAULT_RSS_SPEC");
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
    report!(
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
        report!(
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
    // The trailer is the last 208 bytes in format 2 (80 in format 1).
    let t = b.len() - 208;
    b[t + 8..t + 16].copy_from_slice(&size.to_be_bytes());
    b
}

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

// --- The BMC side: `vault backup pull` against a simulator with one fault ---

fn bmc_case(case: &str, fault: Fault, expect: &str) {
    let cfg = SimConfig {
        backup_bytes: bytes(300 * 1024, 9),
        ..SimConfig::default()
    };
    let sim = SimHandle::start(cfg.clone()).unwrap();
    sim.set_fault(fault.clone());
    let v = Vault::new();
    v.create_key(&[]);
    let pw = v.path("bmc.pw");
    std::fs::write(&pw, &cfg.password).unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (url, ca) = (sim.base_url(), sim.ca_cert_path().display().to_string());
    let args = [
        "backup",
        "pull",
        "--bmc",
        &url,
        "--bmc-user",
        &cfg.user,
        "--bmc-password-file",
        s(&pw),
        "--ca-cert",
        &ca,
        "--timeout",
        "2",
        "--retries",
        "2",
        // Above the 64 MiB bound: a client that buffered the body would exceed it.
        "--max-size",
        "100663296",
    ];
    let before = v.state();
    refused(case, &v, &args, &[expect]);
    assert!(v.state() == before, "{case}: something was stored");
    assert!(sim.faults_served() > 0, "{case}: the fault never fired");
    assert!(sim.sessions_created() > 0, "{case}: no session was opened");
    assert_eq!(sim.open_sessions(), 0, "{case}: session leaked");
}

fn bmc_content_length_10gb() {
    bmc_case(
        "bmc_content_length_10gb",
        Fault::HugeContentLength,
        "larger than the limit",
    );
}

fn bmc_endless_body() {
    bmc_case(
        "bmc_endless_body",
        Fault::EndlessBody,
        "larger than the limit",
    );
}

fn bmc_redirect_loop() {
    bmc_case("bmc_redirect_loop", Fault::RedirectLoop, "redirected");
}

fn bmc_slow_drip() {
    bmc_case("bmc_slow_drip", Fault::SlowDrip, "stalled");
}

/// The bound above means something only if the measurement sees the child: `dd` with a
/// 100 MiB buffer must show at least that, and `vault --version` far less.
fn measured_reports_the_child_not_the_helper() {
    let big = measured(
        Path::new("dd"),
        &["if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
        &[],
    );
    assert_eq!(big.code, Some(0), "{}", big.stderr);
    assert!(big.peak_kib > 100 * 1024, "dd peak {} KiB", big.peak_kib);
    let small = measured(Path::new(BIN), &["--version"], &[]);
    assert_eq!(small.code, Some(0), "{}", small.stderr);
    assert!(
        small.peak_kib > 0 && small.peak_kib < 32 * 1024,
        "vault --version peak {} KiB",
        small.peak_kib
    );
    report!(
        "hostile: measurement check: dd bs=100M {} KiB, vault --version {} KiB",
        big.peak_kib,
        small.peak_kib
    );
}

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some(RSS_HELPER) {
        rss_helper();
        return std::process::ExitCode::SUCCESS;
    }
    let args = libtest_mimic::Arguments::from_args();
    VERBOSE.store(args.nocapture, std::sync::atomic::Ordering::Relaxed);
    let tests: [(&str, fn()); 13] = [
        ("archive_header_length_4gib", archive_header_length_4gib),
        ("archive_header_nested_json", archive_header_nested_json),
        ("archive_header_non_utf8", archive_header_non_utf8),
        ("archive_trailer_claims_1pb", archive_trailer_claims_1pb),
        (
            "archive_chunk_count_past_limit",
            archive_chunk_count_past_limit,
        ),
        ("keyfile_kdf_memory_4tib", keyfile_kdf_memory_4tib),
        ("keyfile_metadata_nested_json", keyfile_metadata_nested_json),
        ("keyfile_metadata_non_utf8", keyfile_metadata_non_utf8),
        ("bmc_content_length_10gb", bmc_content_length_10gb),
        ("bmc_endless_body", bmc_endless_body),
        ("bmc_redirect_loop", bmc_redirect_loop),
        ("bmc_slow_drip", bmc_slow_drip),
        (
            "measured_reports_the_child_not_the_helper",
            measured_reports_the_child_not_the_helper,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            libtest_mimic::Trial::test(name, move || {
                f();
                Ok(())
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

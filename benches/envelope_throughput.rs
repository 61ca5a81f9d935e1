//! Seal/open throughput of `vault::envelope`, file to file, with the SHA-256 included.
//!
//! `cargo bench --bench envelope_throughput` prints MB/s (medians of several runs) for
//! 64 KiB, 1 MiB and 256 MiB inputs, in memory and between files in a temp directory
//! (`VAULT_BENCH_DIR`, default `/dev/shm` when it exists, so the disk does not dominate).
//! Extra arguments pick other sizes, e.g. `-- 1G 4M`.
//!
//! Single operations, for `/usr/bin/time -v` (peak RSS) or comparisons with `age`:
//! `target/release/deps/envelope_throughput-* seal IN OUT` and `... open IN OUT`
//! (the key is fixed, so archives sealed by one run open in another).
use std::fs::File;
use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uuid::Uuid;
use vault::envelope::{self, ArchiveHeader, Scope};
use vault::secret::Key32;

const KEY_ID: Uuid = Uuid::from_u128(0x5dac_1d33_0000_4000_8000_0000_0000_0001);

fn key() -> Key32 {
    Key32::from_slice(&[0x42; 32]).expect("32 bytes")
}

fn header() -> ArchiveHeader {
    ArchiveHeader::new(
        Scope::Domain,
        Some("bench".into()),
        "bench",
        "throughput",
        None,
    )
}

fn lookup(id: &Uuid) -> Option<envelope::OpeningKey> {
    (*id == KEY_ID).then(|| envelope::OpeningKey::new(key(), Scope::Domain, Some("bench".into())))
}

fn parse_size(s: &str) -> Option<usize> {
    let (num, mul) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mul)
}

fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 30 && s % (1 << 30) == 0 => format!("{} GiB", s >> 30),
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// Pseudo-random (incompressible-looking) plaintext.
fn fill(buf: &mut [u8], seed: &mut u64) {
    for b in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let v = seed.to_le_bytes();
        b.copy_from_slice(&v[..b.len()]);
    }
}

fn write_plaintext(path: &Path, size: usize) -> io::Result<()> {
    let mut f = File::create(path)?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len());
        fill(&mut buf[..n], &mut seed);
        f.write_all(&buf[..n])?;
        left -= n;
    }
    f.sync_all()
}

fn seal_file(input: &Path, output: &Path) -> envelope::SealSummary {
    let inp = File::open(input).expect("open plaintext");
    let out = File::create(output).expect("create archive");
    envelope::seal(&header(), KEY_ID, &key(), inp, out).expect("seal")
}

fn open_file(input: &Path, output: &Path) -> envelope::OpenSummary {
    let inp = File::open(input).expect("open archive");
    let out = File::create(output).expect("create plaintext");
    envelope::open(inp, &lookup, out).expect("open")
}

/// Median time of `runs` runs (at least one), bounded to roughly `budget` in total.
fn median(budget: Duration, mut f: impl FnMut()) -> Duration {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed() < budget && times.len() < 51) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn mbps(size: usize, t: Duration) -> f64 {
    size as f64 / t.as_secs_f64() / 1e6
}

fn bench_size(dir: &Path, size: usize) -> io::Result<()> {
    let budget = Duration::from_secs(3);
    let plain = dir.join(format!("vault-bench-{size}.bin"));
    let sealed = dir.join(format!("vault-bench-{size}.varc"));
    let opened = dir.join(format!("vault-bench-{size}.out"));
    write_plaintext(&plain, size)?;

    // In memory: no system calls, just the pipeline.
    let mut pt = vec![0u8; size];
    fill(&mut pt, &mut 1);
    let mut ct = Vec::with_capacity(size + size / 1000 + 4096);
    let t_seal_mem = median(budget, || {
        ct.clear();
        black_box(envelope::seal(&header(), KEY_ID, &key(), pt.as_slice(), &mut ct).unwrap());
    });
    let mut back = Vec::with_capacity(size);
    let t_open_mem = median(budget, || {
        back.clear();
        black_box(envelope::open(ct.as_slice(), &lookup, &mut back).unwrap());
    });
    assert!(back == pt, "round trip mismatch");
    drop((pt, ct, back));

    let t_seal = median(budget, || {
        black_box(seal_file(&plain, &sealed));
    });
    let t_open = median(budget, || {
        black_box(open_file(&sealed, &opened));
    });
    let t_verify = median(budget, || {
        let f = File::open(&sealed).expect("open archive");
        black_box(envelope::verify(f, &lookup).expect("verify"));
    });
    println!(
        "{:>8}  seal mem {:>7.0}  open mem {:>7.0}  seal file {:>7.0}  open file {:>7.0}  verify {:>7.0}  MB/s",
        label(size),
        mbps(size, t_seal_mem),
        mbps(size, t_open_mem),
        mbps(size, t_seal),
        mbps(size, t_open),
        mbps(size, t_verify),
    );
    for p in [&plain, &sealed, &opened] {
        std::fs::remove_file(p)?;
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.as_slice() {
        [cmd, input, output] if cmd == "seal" => {
            let t = Instant::now();
            let s = seal_file(Path::new(input), Path::new(output));
            let dt = t.elapsed();
            eprintln!(
                "sealed {} bytes in {dt:?} ({:.0} MB/s)",
                s.plaintext_size,
                mbps(s.plaintext_size as usize, dt)
            );
            return Ok(());
        }
        [cmd, input, output] if cmd == "open" => {
            let t = Instant::now();
            let s = open_file(Path::new(input), Path::new(output));
            let dt = t.elapsed();
            eprintln!(
                "opened {} bytes in {dt:?} ({:.0} MB/s)",
                s.plaintext_size,
                mbps(s.plaintext_size as usize, dt)
            );
            return Ok(());
        }
        _ => {}
    }
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| parse_size(a)).collect();
    if sizes.is_empty() {
        sizes = vec![64 << 10, 1 << 20, 256 << 20];
    }
    let dir = std::env::var_os("VAULT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        });
    println!(
        "envelope throughput (median MB/s, 1 MB = 10^6 bytes), files in {}",
        dir.display()
    );
    for size in sizes {
        bench_size(&dir, size)?;
    }
    Ok(())
}

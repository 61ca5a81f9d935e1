//! The candidate digests for the archive v2 trailer's ciphertext digest, on one core:
//! SHA-256 (`sha2`, SHA-NI when the CPU has it) against BLAKE3 (`blake3`, SIMD), over
//! 1 MiB batches of a 256 MiB buffer (the shape of the sealing pipeline's batches).
//!
//!     cargo bench --bench digest            # DIGEST_MIB=512 for a longer run
//!
//! Prints the median of 5 runs in MB/s (10^6 bytes/s). Nothing is asserted.
use std::time::Instant;

use sha2::{Digest, Sha256};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mib: usize = std::env::var("DIGEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let data: Vec<u8> = (0..mib << 20)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();
    let batch = 64 * (16_384 + 16);
    let runs = |name: &str, f: &dyn Fn(&[u8]) -> [u8; 32]| {
        let mut rates = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            std::hint::black_box(f(&data));
            rates.push(data.len() as f64 / 1e6 / t.elapsed().as_secs_f64());
        }
        println!(
            "{name:<28} {:>8.0} MB/s (median of 5, {mib} MiB)",
            median(rates)
        );
    };
    runs("SHA-256 (sha2)", &|d| {
        let mut h = Sha256::new();
        for b in d.chunks(batch) {
            h.update(b);
        }
        h.finalize().into()
    });
    runs("BLAKE3 (blake3, one thread)", &|d| {
        let mut h = blake3::Hasher::new();
        for b in d.chunks(batch) {
            h.update(b);
        }
        h.finalize().into()
    });
}

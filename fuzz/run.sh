#!/usr/bin/env bash
# Runs one fuzz target on the stable toolchain for SECONDS (default 600), single job.
#   fuzz/run.sh archive_open 600
# New interesting inputs go to fuzz/corpus-work/<target> (ignored by git); the committed
# seeds in fuzz/corpus/<target> are read, never written. Crashes land in
# fuzz/artifacts/<target>/, which tests/fuzz_corpus.rs replays in `cargo test`.
set -euo pipefail
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
cd "$(dirname "$0")"
case "$target" in
    archive_open) max_len=20000 ;;  # the two-chunk seeds are ~17 KB
    audit_log) max_len=70000 ;;     # room for a line over the 64 KiB limit
    *) max_len=8192 ;;
esac
mkdir -p "corpus-work/$target"
# The audit target writes a temporary log per input; keep its fsyncs in memory.
export TMPDIR=${TMPDIR:-/dev/shm}
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets stable accept them.
# No -jobs/-workers: a plain run is one process, one job (with -jobs=1 libFuzzer would
# fork a worker and send its output to fuzz-0.log instead of stderr).
# `-s none`: the crate forbids unsafe code, so AddressSanitizer would only slow it down.
RUSTC_BOOTSTRAP=1 exec cargo fuzz run -s none "$target" "corpus-work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" \
    -timeout=10 -rss_limit_mb=4096 -print_final_stats=1

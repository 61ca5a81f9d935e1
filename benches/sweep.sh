#!/bin/sh
# Times `vault audit archives DIR` (headers and trailers only, no --verify) over 1,000 and
# 10,000 archives of 2 KiB plaintext each, 100 per directory, with a release build.
#
#   benches/sweep.sh                 # archives in a fresh temp dir
#   VAULT_BENCH_BASE=/tmp/sw benches/sweep.sh   # reuse archives made by an earlier run
#
# Each size is swept once to warm the page cache, then timed RUNS times (default 5) with
# /usr/bin/time; the script prints wall time, CPU time and peak RSS of each run. Pass
# JOBS=1 to measure a single worker thread.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
JOBS=${JOBS:-}
BASE=${VAULT_BENCH_BASE:-$(mktemp -d)}
cargo build --release --quiet --bin vault
VAULT=./target/release/vault

for n in 1000 10000; do
    dir=$BASE/n$n
    if [ ! -d "$dir/archives" ]; then
        echo "creating $n archives in $dir/archives ..." >&2
        # Seals in-process with the library (tests/audit_cli.rs, make_bench_archives).
        VAULT_BENCH_DIR=$dir VAULT_BENCH_N=$n \
            cargo test --quiet --test audit_cli -- --ignored --exact make_bench_archives >/dev/null
    fi
    set -- --home "$dir/home" audit archives "$dir/archives"
    if [ -n "$JOBS" ]; then set -- "$@" --jobs "$JOBS"; fi
    "$VAULT" "$@" >/dev/null
    echo "== $n archives: $VAULT $*"
    i=0
    while [ $i -lt "$RUNS" ]; do
        /usr/bin/time -f "wall %e s  user %U s  sys %S s  maxrss %M KiB" "$VAULT" "$@" >/dev/null
        i=$((i + 1))
    done
done

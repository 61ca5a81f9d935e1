#!/usr/bin/env bash
# Pull and restore data path, before and after the sealer became a `Write` (issue 11):
# the same large simulated backup pulled into a sealed archive and restored to the
# simulator, by the binary of BEFORE_REV (the thread + bounded channel between the BMC
# client and the sealer, two extra copies per 64 KiB) and by this checkout, side by side.
#
#   bash benches/pull_copies.sh                  # 48 MiB backup, 5 runs each (the
#                                                # simulator takes restore bodies up to 64 MiB)
#   BENCH_MIB=16 BENCH_RUNS=3 bash benches/pull_copies.sh
#   BEFORE_REV=6bb98ad^ AFTER_BIN=target/release/vault bash benches/pull_copies.sh
#   BEFORE_BIN=old/vault BEFORE_REV=5d54af4^ bash benches/pull_copies.sh   # already built
#
# BEFORE_REV (default 6bb98ad^, the last commit with the channel) is built in a temporary
# git worktree with its own target directory (a full release build). Prints medians over
# the runs: wall seconds, MB/s (10^6 bytes of plaintext per second), CPU seconds (user +
# system, all threads) and peak RSS, and the after/before ratio. Loopback only; the
# simulators are stopped by pid. Nothing is asserted: these are measurements to read.
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${BENCH_MIB:-48}
RUNS=${BENCH_RUNS:-5}
BEFORE_REV=${BEFORE_REV:-6bb98ad^}
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/vault-pullcopies.XXXXXX)}
BYTES=$((MIB << 20))
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 1; }

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    git worktree remove --force "$WORK/before-src" 2>/dev/null || true
}
trap cleanup EXIT

if [ -z "${AFTER_BIN:-}" ]; then
    cargo build --release --quiet
    AFTER_BIN=$PWD/target/release/vault
fi
if [ -z "${BEFORE_BIN:-}" ]; then
    git worktree add --detach "$WORK/before-src" "$BEFORE_REV" >/dev/null 2>&1
    (cd "$WORK/before-src" && CARGO_TARGET_DIR="$WORK/before-target" cargo build --release --quiet)
    BEFORE_BIN=$WORK/before-target/release/vault
fi

# One simulator per binary (each serves what that binary's client expects), same bytes.
start_sim() {  # start_sim NAME BIN -> sets SIM_URL SIM_CA
    local out="$WORK/sim-$1.out"
    VAULT_BMC_PASSWORD=simulator-password "$2" bmc-simulator --port 0 --backup-size "$BYTES" >"$out" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 200); do grep -q '^CA certificate' "$out" 2>/dev/null && break; sleep 0.05; done
    SIM_URL=$(sed -n 's/^BMC simulator listening on //p' "$out")
    SIM_CA=$(sed -n 's/^CA certificate: //p' "$out")
}

stats() {  # stats FILE -> "median_s MB/s cpu_s peak_MiB"
    python3 - "$1" "$BYTES" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
secs = statistics.median(r[0] for r in rows)
print(f"{secs:.3f} {int(sys.argv[2]) / 1e6 / secs:.1f} {statistics.median(r[2] for r in rows):.3f} {max(r[1] for r in rows) / 1024:.1f}")
PY
}

measure() {  # measure NAME BIN
    local name=$1 bin=$2 home="$WORK/home-$1"
    start_sim "$name" "$bin"
    rm -rf "$home"
    "$bin" --home "$home" keys create >/dev/null
    : >"$WORK/$name.pull"; : >"$WORK/$name.restore"
    local id=""
    for _ in $(seq "$RUNS"); do
        python3 benches/timed.py "$WORK/$name.pull" env VAULT_BMC_PASSWORD=simulator-password \
            "$bin" --home "$home" backup pull --bmc "$SIM_URL" --ca-cert "$SIM_CA"
    done
    id=$("$bin" --home "$home" backup list | python3 -c 'import json,sys; print(json.load(sys.stdin)["resources"][0]["id"])')
    for _ in $(seq "$RUNS"); do
        python3 benches/timed.py "$WORK/$name.restore" env VAULT_BMC_PASSWORD=simulator-password \
            "$bin" --home "$home" backup restore --id "$id" --bmc "$SIM_URL" --ca-cert "$SIM_CA" --yes
    done
}

measure before "$BEFORE_BIN"
measure after "$AFTER_BIN"

echo "== pull and restore of a ${MIB} MiB backup over loopback HTTPS, median of $RUNS (before: $BEFORE_REV, after: $(git rev-parse --short HEAD))"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
printf '%-10s %-8s %10s %10s %10s %10s\n' op binary seconds MB/s cpu_s peak_MiB
for op in pull restore; do
    for b in before after; do
        read -r s m c r < <(stats "$WORK/$b.$op")
        printf '%-10s %-8s %10s %10s %10s %10s\n' "$op" "$b" "$s" "$m" "$c" "$r"
    done
    read -r sb _ cb _ < <(stats "$WORK/before.$op")
    read -r sa _ ca _ < <(stats "$WORK/after.$op")
    python3 -c "import sys; sb,sa,cb,ca=map(float,sys.argv[1:]); print(f'{\"\":10s} after/before: wall {sa/sb:.2f}x, cpu {ca/cb:.2f}x')" "$sb" "$sa" "$cb" "$ca"
done

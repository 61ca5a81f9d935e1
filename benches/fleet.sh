#!/usr/bin/env bash
# Fleet pull benchmark: N simulated BMCs, each adding LATENCY_MS to every request, pulled
# with --parallel 1, 8 and 32, against the ideal time.
#
#   bash benches/fleet.sh [VAULT_BIN] [N=200] [WORKDIR]
#
# "ideal" for --parallel P is ceil(N / P) × t1, where t1 is the measured wall time of
# pulling ONE of these BMCs alone (its requests × latency, plus TLS and sealing): what
# perfect parallelism would give. Simulators run as separate processes on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
VAULT=${1:-$PWD/target/release/vault}
N=${2:-200}
WORK=${3:-$(mktemp -d /var/tmp/vault-fleet.XXXXXX)}
LATENCY_MS=${LATENCY_MS:-50}
[ -x "$VAULT" ] || cargo build --release --quiet
mkdir -p "$WORK"
export VAULT_BMC_PASSWORD=simulator-password

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

for i in $(seq 1 "$N"); do
    "$VAULT" bmc-simulator --port 0 --latency-ms "$LATENCY_MS" --serial "CZFLEET$(printf %04d "$i")" \
        --backup-size 65536 >"$WORK/sim-$i.out" 2>/dev/null &
    pids+=($!)
done
: >"$WORK/fleet.toml"
for i in $(seq 1 "$N"); do
    for _ in $(seq 100); do grep -q '^CA certificate' "$WORK/sim-$i.out" 2>/dev/null && break; sleep 0.05; done
    url=$(sed -n 's/^BMC simulator listening on //p' "$WORK/sim-$i.out")
    ca=$(sed -n 's/^CA certificate: //p' "$WORK/sim-$i.out")
    printf '[[bmc]]\nurl = "%s"\nca_cert = "%s"\n\n' "$url" "$ca" >>"$WORK/fleet.toml"
done

run_pull() {  # run_pull HOME ARGS... -> prints wall seconds
    local home=$1; shift
    rm -rf "$home"; VAULT_HOME=$home "$VAULT" keys create >/dev/null
    python3 - "$home" "$VAULT" "$@" <<'PY'
import os, subprocess, sys, time, json
home, exe, args = sys.argv[1], sys.argv[2], sys.argv[3:]
t = time.perf_counter()
p = subprocess.run([exe, "--home", home, *args], capture_output=True)
wall = time.perf_counter() - t
ok = "?"
try:
    doc = json.loads(p.stdout)
    ok = f'{doc.get("succeeded", 1)}/{doc.get("total", 1)}'
except Exception:
    pass
print(f"{wall:.3f} {ok} {p.returncode}")
PY
}

first_url=$(sed -n 's/^url = "\(.*\)"/\1/p' "$WORK/fleet.toml" | sed -n 1p)
first_ca=$(sed -n 's/^ca_cert = "\(.*\)"/\1/p' "$WORK/fleet.toml" | sed -n 1p)
t1s=()
for _ in 1 2 3; do
    read -r t _ _ < <(run_pull "$WORK/home1" backup pull --bmc "$first_url" --ca-cert "$first_ca")
    t1s+=("$t")
done
t1=$(printf '%s\n' "${t1s[@]}" | sort -n | sed -n 2p)

echo "== fleet pull: $N simulated BMCs, +${LATENCY_MS} ms per request; one BMC alone: ${t1} s (median of 3)"
printf '%-12s %10s %10s %10s %12s\n' "--parallel" "seconds" "ideal" "ratio" "succeeded"
for p in 1 8 32; do
    read -r t ok rc < <(run_pull "$WORK/home-p$p" backup pull --inventory "$WORK/fleet.toml" --parallel "$p")
    ideal=$(python3 -c "import math,sys; print(f'{math.ceil($N/$p)*$t1:.3f}')")
    ratio=$(python3 -c "print(f'{$t/$ideal:.2f}x')")
    printf '%-12s %10s %10s %10s %12s\n' "$p" "$t" "$ideal" "$ratio" "$ok"
    [ "$rc" = 0 ] || echo "  (exit status $rc)"
done

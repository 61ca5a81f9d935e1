#!/usr/bin/env bash
# Fleet pull benchmark: N simulated BMCs served by ONE simulator process (one port each,
# `vault bmc-simulator --count N`), each adding LATENCY_MS to every request, pulled with
# `backup pull --inventory` at each --parallel of PARALLELS, against the ideal time, with
# vault's peak RSS and peak number of open descriptors.
#
#   bash benches/fleet.sh [VAULT_BIN] [N=200] [WORKDIR]
#   N=10000: PARALLELS="32 256" bash benches/fleet.sh target/release/vault 10000
#   COMMITS=group (default "group per-archive": both, side by side; "native": no commit
#   flag at all, for an older binary that predates group commit)
#   SIM_BIN=path/to/vault: serve the fleet with another binary's simulator (an older vault
#   measured against today's simulator)
#
# "ideal" for --parallel P is ceil(N / P) × t1, where t1 is the measured wall time of
# pulling ONE of these BMCs alone (its requests × latency, plus TLS and sealing): what
# perfect parallelism would give. EXTRA_ARGS are added to every pull (e.g.
# "--push-to rgw" with a remote configured by PUSH_SETUP, see below).
#
# CPU: "vault ms" is vault's user+system CPU time per pulled BMC (getrusage of the
# pull), "sim ms" the simulator's over the same run (/proc/PID/stat utime+stime), per
# BMC. Both share the machine's cores, so when their sum × N exceeds what the cores
# give in the ideal time, the ideal cannot be reached whatever the parallelism: the
# ideal above counts the latency of one BMC, not the CPU work of N of them.
#
# PUSH_SETUP, when set, is run with VAULT_HOME set to each fresh home before its pull
# (e.g. to 'vault remote add rgw --url s3://b/p --endpoint URL'), for a fleet pushed to S3.
set -euo pipefail
cd "$(dirname "$0")/.."
VAULT=${1:-$PWD/target/release/vault}
N=${2:-200}
WORK=${3:-$(mktemp -d /var/tmp/vault-fleet.XXXXXX)}
LATENCY_MS=${LATENCY_MS:-50}
PARALLELS=${PARALLELS:-"1 8 32"}
# "group" (the default of vault), "per-archive" (--no-group-commit: one home lock,
# directory sync and audit fsync per archive), or both, side by side.
COMMITS=${COMMITS:-"group per-archive"}
EXTRA_ARGS=${EXTRA_ARGS:-}
[ -x "$VAULT" ] || cargo build --release --quiet
SIM=${SIM_BIN:-$VAULT}
mkdir -p "$WORK"
export VAULT_BMC_PASSWORD=simulator-password

"$SIM" bmc-simulator --count "$N" --inventory "$WORK/fleet.toml" --latency-ms "$LATENCY_MS" \
    --serial CZFLEET --backup-size 65536 --session-limit 4 >"$WORK/sim.out" 2>/dev/null &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true' EXIT
for _ in $(seq 600); do grep -q '^inventory:' "$WORK/sim.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^inventory:' "$WORK/sim.out" || { echo "the simulator did not start" >&2; exit 1; }

run_pull() {  # run_pull HOME ARGS... -> "wall ok rc peak_rss_mib peak_fds cpu_seconds"
    local home=$1; shift
    rm -rf "$home"; VAULT_HOME=$home "$VAULT" keys create >/dev/null
    if [ -n "${PUSH_SETUP:-}" ]; then VAULT_HOME=$home sh -c "$PUSH_SETUP" >/dev/null; fi
    python3 - "$home" "$VAULT" "$@" <<'PY'
import json, os, resource, subprocess, sys, time
home, exe, args = sys.argv[1], sys.argv[2], sys.argv[3:]
t = time.perf_counter()
p = subprocess.Popen([exe, "--home", home, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
fds = 0
out = b""
import threading
def drain():
    global out
    out = p.stdout.read()
th = threading.Thread(target=drain); th.start()
while p.poll() is None:
    try:
        fds = max(fds, len(os.listdir(f"/proc/{p.pid}/fd")))
    except OSError:
        pass
    time.sleep(0.02)
th.join()
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
rss = ru.ru_maxrss / 1024
cpu = ru.ru_utime + ru.ru_stime
ok = "?"
try:
    doc = json.loads(out)
    ok = f'{doc.get("succeeded", 1)}/{doc.get("total", 1)}'
except Exception:
    pass
print(f"{wall:.3f} {ok} {p.returncode} {rss:.0f} {fds} {cpu:.3f}")
PY
}

first_url=$(sed -n 's/^url = "\(.*\)"/\1/p' "$WORK/fleet.toml" | sed -n 1p)
ca=$(sed -n 's/^CA certificate: //p' "$WORK/sim.out")
t1s=()
for _ in 1 2 3; do
    read -r t _ _ _ _ _ < <(run_pull "$WORK/home1" backup pull --bmc "$first_url" --ca-cert "$ca")
    t1s+=("$t")
done
t1=$(printf '%s\n' "${t1s[@]}" | sort -n | sed -n 2p)

echo "== fleet pull: $N simulated BMCs in one simulator process, +${LATENCY_MS} ms per request; one BMC alone: ${t1} s (median of 3)${EXTRA_ARGS:+; extra: $EXTRA_ARGS}"
sim_cpu() {  # the simulator's user+system CPU seconds so far
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$sim/stat"
}
printf '%-10s %-10s %9s %9s %7s %11s %9s %8s %8s %8s\n' "--parallel" "commit" "seconds" "ideal" "ratio" "succeeded" "peak RSS" "peak fds" "vault ms" "sim ms"
for p in $PARALLELS; do
    for mode in $COMMITS; do
        flag=""; [ "$mode" = per-archive ] && flag="--no-group-commit"
        # shellcheck disable=SC2086
        s0=$(sim_cpu)
        read -r t ok rc rss fds cpu < <(run_pull "$WORK/home-p$p" backup pull --inventory "$WORK/fleet.toml" --parallel "$p" $flag $EXTRA_ARGS)
        s1=$(sim_cpu)
        ideal=$(python3 -c "import math; print(f'{math.ceil($N/$p)*$t1:.3f}')")
        ratio=$(python3 -c "print(f'{$t/$ideal:.2f}x')")
        vms=$(python3 -c "print(f'{1000*$cpu/$N:.2f}')")
        sms=$(python3 -c "print(f'{1000*($s1-$s0)/$N:.2f}')")
        printf '%-10s %-10s %9s %9s %7s %11s %7s M %8s %8s %8s\n' "$p" "$mode" "$t" "$ideal" "$ratio" "$ok" "$rss" "$fds" "$vms" "$sms"
        [ "$rc" = 0 ] || echo "  (exit status $rc)"
    done
done

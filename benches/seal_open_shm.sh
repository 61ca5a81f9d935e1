#!/usr/bin/env bash
# Seal and open on tmpfs (/dev/shm, CPU-bound): vault vs age in the same run, medians of
# RUNS (default 5) over MIB (default 512) MiB, wall and CPU seconds and peak RSS. Needs age and GNU time
# and a release build (cargo build --release); installs age and GNU time from Debian if
# missing. Nothing is asserted: these are figures to read (issue 12's targets: seal >= 1.2x
# and open >= 1.5x age's throughput, as medians of several runs).
set -euo pipefail
if ! command -v age >/dev/null 2>&1 || ! [ -x /usr/bin/time ]; then
    echo "installing age and GNU time from Debian..." >&2
    (apt-get update -qq && apt-get install -y -qq age time) >/dev/null
fi
VAULT=${VAULT:-$(dirname "$0")/../target/release/vault}
MIB=${MIB:-512}; RUNS=${RUNS:-5}
D=$(mktemp -d /dev/shm/fmt2-bench.XXXXXX); trap 'rm -rf "$D"' EXIT
export VAULT_HOME="$D/home"
head -c $((MIB << 20)) /dev/urandom > "$D/in"
"$VAULT" keys create >/dev/null
age-keygen -o "$D/age.key" 2>/dev/null; R=$(age-keygen -y "$D/age.key")
t() { /usr/bin/time -f "%e %U %S %M" -o "$D/one" "$@" >/dev/null 2>&1; cat "$D/one"; }
for i in $(seq $RUNS); do
  rm -f "$VAULT_HOME"/archives/*.vault
  echo "vs $(t "$VAULT" backup create --file "$D/in")" >> "$D/times"
  A=$(ls "$VAULT_HOME"/archives/*.vault)
  echo "vo $(t "$VAULT" backup extract --file "$A" --out "$D/out")" >> "$D/times"
  cmp "$D/in" "$D/out"; rm -f "$D/out"
  echo "as $(t age -r "$R" -o "$D/x.age" "$D/in")" >> "$D/times"
  echo "ao $(t age -d -i "$D/age.key" -o "$D/out" "$D/x.age")" >> "$D/times"
  cmp "$D/in" "$D/out"; rm -f "$D/out" "$D/x.age"
done
python3 - "$D/times" "$MIB" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
mb = int(sys.argv[2]) * 1048576 / 1e6
def med(k, i): return st.median(float(r[i]) for r in rows if r[0] == k)
for k, name in (("vs","vault seal"),("as","age encrypt"),("vo","vault open"),("ao","age decrypt")):
    wall = med(k, 1); cpu = st.median(float(r[2]) + float(r[3]) for r in rows if r[0] == k)
    rss = st.median(float(r[4]) for r in rows if r[0] == k) / 1024
    print(f"{name:12} wall {wall:.3f} s {mb/wall:7.0f} MB/s   cpu {cpu:.3f} s ({mb/cpu:6.0f} MB per cpu-s)   peak RSS {rss:5.1f} MiB")
print(f"ratio vault/age wall throughput: seal {med('as',1)/med('vs',1):.2f}x  open {med('ao',1)/med('vo',1):.2f}x")
PY

#!/usr/bin/env bash
# Where seal and open spend their time: a CPU profile of `vault backup create` and
# `vault backup extract` of one big file, grouped by stage and by thread.
#
#   bash benches/profile.sh              # 1 GiB in $BENCH_DIR (default: a new dir in /var/tmp)
#   BENCH_BIG_MIB=256 bash benches/profile.sh
#
# Uses `perf record -e cpu-clock` (this VM has no hardware counters) on the whole system,
# so idle time and kernel write-back threads show too. Installs perf from Debian if
# missing. Prints, for each operation, the share of samples per stage and the
# core-seconds that is (perf's own process start and end are in the recording, as idle or
# "other"). Nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

BIG_MIB=${BENCH_BIG_MIB:-1024}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/vault-profile.XXXXXX)}
trap 'rm -rf "$BENCH_DIR"' EXIT

if ! command -v perf >/dev/null 2>&1; then
    echo "installing perf from Debian..." >&2
    (apt-get update -qq && apt-get install -y -qq linux-perf) >/dev/null
fi
cargo build --release --quiet
VAULT="$PWD/target/release/vault"
export VAULT_HOME="$BENCH_DIR/home"
W="$BENCH_DIR/work"
mkdir -p "$W"
"$VAULT" keys create >/dev/null
head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$W/in"

profile() {  # profile NAME CMD...
    local name=$1; shift
    perf record -q -a -e cpu-clock -F 2000 -o "$W/perf.data" -- "$@" >/dev/null 2>&1
    perf report -i "$W/perf.data" --no-children --sort comm,sym --stdio 2>/dev/null \
        | python3 benches/profile_stages.py "$name" "$(nproc)"
}

sync
profile "seal (backup create, ${BIG_MIB} MiB)" "$VAULT" backup create --file "$W/in"
ARCH=$(ls "$VAULT_HOME"/archives/*.vault | sed -n 1p)
sync
profile "open (backup extract, ${BIG_MIB} MiB)" "$VAULT" backup extract --file "$ARCH" --out "$W/out"
cmp -s "$W/in" "$W/out" || { echo "round trip differs!" >&2; exit 1; }

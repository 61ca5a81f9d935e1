#!/usr/bin/env bash
# Benchmark: vault vs age on the same files, in one run, with the machine's own limits.
#
#   bash benches/compare.sh            # full run (1 GiB file; needs ~5 GiB free in $BENCH_DIR)
#   BENCH_BIG_MIB=256 bash benches/compare.sh    # quicker
#   VAULT_BIN=path/to/vault BEFORE_BIN=path/to/older/vault bash benches/compare.sh
#
# VAULT_BIN skips the release build and measures that binary. BEFORE_BIN adds a second
# vault binary (an older revision, built by the caller) to the seal/open and fleet tables,
# measured in the same run on the same files, so a change is compared side by side.
#
# Prints medians over several runs: throughput (MB/s = 10^6 bytes/s of plaintext), the
# vault/age ratio, and peak resident memory of each process (GNU time %M). Installs what it
# compares against (age, GNU time) from Debian if missing. Nothing here is asserted:
# these are measurements to read. 
set -euo pipefail
cd "$(dirname "$0")/.."

BIG_MIB=${BENCH_BIG_MIB:-1024}
RUNS_BIG=${BENCH_RUNS_BIG:-3}
RUNS_SMALL=${BENCH_RUNS_SMALL:-15}
FLEET_SIZE=${BENCH_FLEET_SIZE:-200}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/vault-bench.XXXXXX)}
trap 'rm -rf "$BENCH_DIR"' EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need age || ! [ -x /usr/bin/time ]; then
    echo "installing age and GNU time from Debian..." >&2
    (apt-get update -qq && apt-get install -y -qq age time) >/dev/null
fi

if [ -n "${VAULT_BIN:-}" ]; then
    VAULT=$(realpath "$VAULT_BIN")
else
    cargo build --release --quiet
    VAULT="$PWD/target/release/vault"
fi
BEFORE=${BEFORE_BIN:+$(realpath "$BEFORE_BIN")}
export VAULT_HOME="$BENCH_DIR/home"
BEFORE_HOME="$BENCH_DIR/home-before"
W="$BENCH_DIR/work"
mkdir -p "$W"

# --- helpers -------------------------------------------------------------------------
# timed LABEL CMD...: appends "seconds peak_rss_kib" of one run of CMD to $W/LABEL.
timed() {
    local label=$1; shift
    python3 benches/timed.py "$W/$label" "$@"
}
# stats LABEL BYTES: prints "median_s MB/s peak_MiB median_cpu_s best_s" for LABEL.
stats() {
    python3 - "$W/$1" "$2" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
secs = statistics.median(r[0] for r in rows)
rss = max(r[1] for r in rows) / 1024
cpu = statistics.median(r[2] for r in rows)
size = int(sys.argv[2])
mbps = size / 1e6 / secs if secs > 0 else float("inf")
best = min(r[0] for r in rows)
print(f"{secs:.5f} {mbps:.1f} {rss:.1f} {cpu:.5f} {best:.5f}")
PY
}
row() { printf '%-34s %10s %10s %10s %10s %10s\n' "$@"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x' if b else 'n/a')" "$1" "$2"; }

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
echo "vault: $($VAULT --version); age: $(age --version)"
[ -z "$BEFORE" ] || echo "before: $($BEFORE --version) ($BEFORE)"

echo
echo "== the machine's own limits (one core)"
openssl speed -elapsed -seconds 2 -bytes 16384 -evp aes-256-gcm 2>/dev/null | grep -E '^(AES-256-GCM|aes-256-gcm)' | awk '{print "openssl AES-256-GCM, 16 KiB blocks: " $NF}'
openssl speed -elapsed -seconds 2 -bytes 16384 -evp sha256 2>/dev/null | grep -E '^(sha256|SHA256)' | awk '{print "openssl SHA-256, 16 KiB blocks:     " $NF}'

"$VAULT" keys create >/dev/null
age-keygen -o "$W/age.key" 2>/dev/null
RECIP=$(age-keygen -y "$W/age.key")
[ -z "$BEFORE" ] || "$BEFORE" --home "$BEFORE_HOME" keys create >/dev/null

bench_size() {  # bench_size NAME BYTES RUNS
    local name=$1 bytes=$2 runs=$3 f="$W/in-$1"
    head -c "$bytes" /dev/urandom >"$f"
    for _ in $(seq "$runs"); do
        rm -rf "$VAULT_HOME/archives"/*.vault
        timed "vault-seal-$name" "$VAULT" backup create --file "$f"
        local arch; arch=$(ls "$VAULT_HOME"/archives/*.vault | sed -n 1p)
        timed "vault-open-$name" "$VAULT" backup extract --file "$arch" --out "$W/out-vault"
        cmp -s "$f" "$W/out-vault" || { echo "vault round trip differs!" >&2; exit 1; }
        rm -f "$W/out-vault"
        if [ -n "$BEFORE" ]; then
            rm -rf "$BEFORE_HOME/archives"/*.vault
            timed "before-seal-$name" "$BEFORE" --home "$BEFORE_HOME" backup create --file "$f"
            arch=$(ls "$BEFORE_HOME"/archives/*.vault | sed -n 1p)
            timed "before-open-$name" "$BEFORE" --home "$BEFORE_HOME" backup extract --file "$arch" --out "$W/out-vault"
            cmp -s "$f" "$W/out-vault" || { echo "before round trip differs!" >&2; exit 1; }
            rm -f "$W/out-vault"
        fi
        timed "age-seal-$name" age -r "$RECIP" -o "$W/x.age" "$f"
        timed "age-open-$name" age -d -i "$W/age.key" -o "$W/out-age" "$W/x.age"
        cmp -s "$f" "$W/out-age" || { echo "age round trip differs!" >&2; exit 1; }
        [ "$name" = big ] || timed "harness-$name" /bin/true
        rm -f "$W/out-age" "$W/x.age"
        if [ "$name" = big ]; then
            timed "copy-$name" cp "$f" "$W/copy"
            rm -f "$W/copy"
        fi
    done
    echo
    echo "== $name: $bytes bytes, median of $runs runs, file to file (vault seal includes SHA-256; open = authenticate + SHA-256 + write)"
    row "" "seconds" "MB/s" "peak MiB" "CPU s" "best s"
    local vs va os oa bvs bva bos boa
    read -r t m r c b < <(stats "vault-seal-$name" "$bytes"); row "vault seal (backup create)" "$t" "$m" "$r" "$c" "$b"; vs=$t; bvs=$b
    read -r t m r c b < <(stats "age-seal-$name" "$bytes"); row "age encrypt (X25519)" "$t" "$m" "$r" "$c" "$b"; va=$t; bva=$b
    read -r t m r c b < <(stats "vault-open-$name" "$bytes"); row "vault open (backup extract)" "$t" "$m" "$r" "$c" "$b"; os=$t; bos=$b
    if [ -n "$BEFORE" ]; then
        read -r t m r c b < <(stats "before-seal-$name" "$bytes"); row "before: vault seal" "$t" "$m" "$r" "$c" "$b"; bs=$t
        read -r t m r c b < <(stats "before-open-$name" "$bytes"); row "before: vault open" "$t" "$m" "$r" "$c" "$b"; bo=$t
    fi
    read -r t m r c b < <(stats "age-open-$name" "$bytes"); row "age decrypt" "$t" "$m" "$r" "$c" "$b"; oa=$t; boa=$b
    if [ "$name" = big ]; then
        read -r t m r c b < <(stats "copy-$name" "$bytes"); row "cp (plain copy, same file)" "$t" "$m" "$r" "$c" "$b"
    else
        read -r t _ r c b < <(stats "harness-$name" 1); row "(harness alone: /bin/true)" "$t" "" "$r" "$c" "$b"
    fi
    # Throughput ratio = age's time / vault's time; "best" compares the fastest runs, which
    # the occasional slow run of a busy VM does not reach.
    echo "ratio vault/age (throughput): seal $(ratio "$va" "$vs"), open $(ratio "$oa" "$os"); best runs: seal $(ratio "$bva" "$bvs"), open $(ratio "$boa" "$bos")"
    [ -z "$BEFORE" ] || echo "ratio after/before (throughput): seal $(ratio "$bs" "$vs"), open $(ratio "$bo" "$os")"
}

bench_size small $((64 * 1024)) "$RUNS_SMALL"
bench_size medium $((1024 * 1024)) "$RUNS_SMALL"
bench_size big $((BIG_MIB * 1024 * 1024)) "$RUNS_BIG"

echo
echo "== inspect and rewrap: header-only work (median of $RUNS_SMALL runs)"
rm -rf "$VAULT_HOME/archives"/*.vault
K1=$("$VAULT" keys list | python3 -c 'import json,sys; print(json.load(sys.stdin)["resources"][0]["id"])')
K2=$("$VAULT" keys create | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
row "" "1 MiB (s)" "big (s)" "big/1MiB" ""
for op in inspect rewrap; do
    declare -A med=()
    for name in medium big; do
        id=$("$VAULT" backup create --file "$W/in-$name" --key "$K1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
        arch="$VAULT_HOME/archives/$id.vault"
        for i in $(seq "$RUNS_SMALL"); do
            if [ "$op" = inspect ]; then
                timed "$op-$name" "$VAULT" inspect --file "$arch"
            else
                # Alternate between the two keys so every run really rewrites a slot.
                if [ $((i % 2)) -eq 1 ]; then k=$K2; else k=$K1; fi
                timed "$op-$name" "$VAULT" backup rewrap --id "$id" --key "$k"
            fi
        done
        med[$name]=$(stats "$op-$name" 1 | cut -d' ' -f1)
        "$VAULT" backup delete --id "$id" >/dev/null
    done
    row "vault $op" "${med[medium]}" "${med[big]}" "$(ratio "${med[big]}" "${med[medium]}")"
done

echo
echo "== key files at the default KDF cost (Argon2id m=64 MiB, t=3, p=4), median of 5"
printf 'bench password 123\n' >"$W/pw"; chmod 600 "$W/pw"
for _ in 1 2 3 4 5; do
    timed kd "$VAULT" keys download --id "$K1" --file "$W/k.vaultkey" --password-file "$W/pw"
    timed ku env VAULT_HOME="$BENCH_DIR/home2" "$VAULT" keys upload --file "$W/k.vaultkey" --password-file "$W/pw"
done
row "" "seconds" "" "peak MiB" "CPU s"
read -r t _ r c _ < <(stats kd 1); row "vault keys download" "$t" "" "$r" "$c"
read -r t _ r c _ < <(stats ku 1); row "vault keys upload" "$t" "" "$r" "$c"

if "$VAULT" bmc-simulator --help >/dev/null 2>&1 && [ -x benches/fleet.sh ]; then
    echo
    bash benches/fleet.sh "$VAULT" "$FLEET_SIZE" "$BENCH_DIR/fleet"
    if [ -n "$BEFORE" ]; then
        echo "-- the same fleet with the before binary"
        SIM_BIN="$VAULT" COMMITS=native bash benches/fleet.sh "$BEFORE" "$FLEET_SIZE" "$BENCH_DIR/fleet-before"
    fi
fi

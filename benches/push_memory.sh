#!/usr/bin/env bash
# Peak RSS of `backup pull --bmc ... --push-to rgw` against the same pull without
# --push-to, for backups of SIZES MiB (one simulated BMC, a Ceph RGW on loopback started
# by tests/support/rgw.sh): a push that streams its parts from the archive file keeps it
# constant in the archive's size.
#
#   bash benches/push_memory.sh [VAULT_BIN]          # SIZES="1 60 200" (MiB, at most 256)
set -euo pipefail
cd "$(dirname "$0")/.."
V=${1:-$PWD/target/release/vault}
[ -x "$V" ] || cargo build --release --quiet
W=$(mktemp -d /var/tmp/vault-pushmem.XXXXXX)
sim=
cleanup() {
    [ -n "$sim" ] && kill "$sim" 2>/dev/null || true
    bash tests/support/rgw.sh stop "$W/rgw" || true
    rm -rf "$W"
}
trap cleanup EXIT
bash tests/support/rgw.sh start "$W/rgw" >"$W/rgw.out"
endpoint=$(sed -n 's/^endpoint=//p' "$W/rgw.out")
export AWS_ACCESS_KEY_ID=vaulttestaccesskey AWS_SECRET_ACCESS_KEY=vaulttestsecretkey0123456789abcdefghij
export VAULT_BMC_PASSWORD=simulator-password
for mib in ${SIZES:-1 60 200}; do
    # --count 2: a fleet simulator writes an inventory with the URL and the CA.
    "$V" bmc-simulator --count 2 --inventory "$W/f$mib.toml" --backup-size $((mib << 20)) \
        >"$W/sim$mib.out" 2>/dev/null &
    sim=$!
    for _ in $(seq 100); do grep -q '^inventory:' "$W/sim$mib.out" 2>/dev/null && break; sleep 0.1; done
    url=$(sed -n 's/^url = "\(.*\)"/\1/p' "$W/f$mib.toml" | sed -n 1p)
    ca=$(sed -n 's/^CA certificate: //p' "$W/sim$mib.out")
    home=$W/home$mib
    VAULT_HOME=$home "$V" keys create >/dev/null
    VAULT_HOME=$home "$V" remote add rgw --url "s3://mem$mib/p" --endpoint "$endpoint" --create-bucket >/dev/null
    for push in no yes; do
        args=(backup pull --bmc "$url" --ca-cert "$ca")
        [ "$push" = yes ] && args+=(--push-to rgw)
        /usr/bin/time -f "%M" -o "$W/rss" env VAULT_HOME="$home" "$V" "${args[@]}" >"$W/out.json" 2>"$W/err" \
            || { echo "pull failed: $(cat "$W/err")" >&2; exit 1; }
        parts=$(grep -o '"parts": *[0-9]*' "$W/out.json" | head -1 | grep -o '[0-9]*$' || true)
        echo "backup ${mib} MiB, push ${push}: peak RSS $(($(tail -1 "$W/rss") / 1024)) MiB${parts:+ ($parts parts)}"
    done
    kill "$sim"; wait "$sim" 2>/dev/null || true; sim=
done

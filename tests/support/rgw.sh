#!/usr/bin/env bash
# A single-node Ceph cluster with its RADOS Gateway, on loopback, for the remote-store
# tests. Everything (config, mon and OSD data, logs, pid files) lives under one directory,
# so two clusters can run side by side and a test removes all of it afterwards.
#
#   rgw.sh start DIR   -> prints "endpoint=http://127.0.0.1:PORT" once S3 answers
#   rgw.sh stop DIR    -> stops radosgw, the OSD and the mon by their pids
#
# With RGW_TLS=1 the gateway speaks only HTTPS, with a certificate for 127.0.0.1 signed
# by a CA made here (openssl); start then prints "endpoint=https://127.0.0.1:PORT" and
# "ca_cert=DIR/tls/ca.pem", the CA a client must be told to trust.
#
# No systemd, mgr, keyrings or disk: auth is off (loopback only), the OSD keeps objects
# in memory (memstore). The S3 user has the fixed keys below (test-only).
set -euo pipefail

ACCESS_KEY=vaulttestaccesskey
SECRET_KEY=vaulttestsecretkey0123456789abcdefghij

cmd=${1:?usage: rgw.sh start|stop DIR}
dir=${2:?usage: rgw.sh start|stop DIR}

stop() {
    local d=$1
    for name in radosgw osd mon; do
        local pidfile="$d/$name.pid"
        [ -f "$pidfile" ] || continue
        local pid
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

free_port() {
    python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

if [ "$cmd" = stop ]; then
    stop "$dir"
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: rgw.sh start|stop DIR" >&2; exit 2; }

for bin in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph; do
    command -v "$bin" >/dev/null || { echo "rgw.sh: $bin is not installed (run .ci/install)" >&2; exit 3; }
done

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
trap 'stop "$dir"' ERR
mon_port=$(free_port)
rgw_port=$(free_port)
while [ "$rgw_port" = "$mon_port" ]; do rgw_port=$(free_port); done
fsid=$(cat /proc/sys/kernel/random/uuid)
scheme=http
frontend="beast endpoint=127.0.0.1:$rgw_port"
if [ "${RGW_TLS:-0}" = 1 ]; then
    command -v openssl >/dev/null || { echo "rgw.sh: openssl is not installed" >&2; exit 3; }
    tls="$dir/tls"
    mkdir -p "$tls"
    # A CA, and a leaf for 127.0.0.1 that is not a CA itself (rustls refuses a CA
    # certificate used as a server's).
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=vault test CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$tls/rgw.key" -out "$tls/rgw.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
    openssl x509 -req -in "$tls/rgw.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 2 -extfile "$tls/ext" -out "$tls/rgw.pem" 2>/dev/null
    scheme=https
    frontend="beast ssl_endpoint=127.0.0.1:$rgw_port ssl_certificate=$tls/rgw.pem ssl_private_key=$tls/rgw.key"
fi
export CEPH_CONF="$dir/ceph.conf"
cat > "$CEPH_CONF" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon data avail crit = 0
mon warn on pool no redundancy = false
paxos propose interval = 0.01
paxos min wait = 0.01
run dir = $dir/run
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.asok
keyring = /dev/null
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = $dir/osd
osd journal size = 0
mon data = $dir/mon
[mon.a]
[osd.0]
[client.rgw]
rgw frontends = $frontend
rgw data = $dir/rgw
rgw dns name = 127.0.0.1
rgw enable usage log = false
CONF
mkdir -p "$dir/run" "$dir/log" "$dir/osd" "$dir/mon" "$dir/rgw"

monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$dir/monmap" >/dev/null
ceph-mon -i a --pid-file "$dir/mon.pid"
osd_id=$(ceph osd create 2>/dev/null)
ceph-osd -i "$osd_id" --mkfs >/dev/null 2>&1
ceph-osd -i "$osd_id" --pid-file "$dir/osd.pid"
for _ in $(seq 1 200); do
    ceph osd stat 2>/dev/null | grep -q '1 up' && break
    sleep 0.1
done
radosgw -n client.rgw --pid-file "$dir/radosgw.pid"
radosgw-admin user create --uid=vault --display-name=vault \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null 2>&1
for _ in $(seq 1 300); do
    if python3 -c "
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile='$dir/tls/ca.pem') if '$scheme' == 'https' else None
urllib.request.urlopen('$scheme://127.0.0.1:$rgw_port/', timeout=1, context=ctx)
" 2>/dev/null; then
        trap - ERR
        echo "endpoint=$scheme://127.0.0.1:$rgw_port"
        [ "$scheme" = https ] && echo "ca_cert=$dir/tls/ca.pem"
        echo "access_key=$ACCESS_KEY"
        echo "secret_key=$SECRET_KEY"
        exit 0
    fi
    sleep 0.1
done
echo "rgw.sh: radosgw did not answer on 127.0.0.1:$rgw_port; logs in $dir/log" >&2
stop "$dir"
exit 1

# Ceph (mon, OSD, RADOS Gateway) from Debian 12's own packages, for tests/remote_rgw.rs:
# tests/support/rgw.sh starts a single-node cluster on loopback per test and stops it
# by pid. About 70 MB; no service is enabled or started by the tests (no systemd).
apt_install ceph-mon ceph-osd radosgw ceph-common

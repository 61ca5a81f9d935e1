# prlimit (RLIMIT_FSIZE / RLIMIT_CORE cases) and mount/umount (tmpfs cases) for
# tests/reliability_writefail.rs and tests/reliability_secrets.rs. The tmpfs cases also
# need root (CI runs as root); under CI=true a missing tool or missing root fails them.
apt_install util-linux mount

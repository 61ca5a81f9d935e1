# systemd-analyze (and man, which `verify` calls for Documentation=man: links): tests/units.rs
# verifies the shipped units in dist/systemd/.
apt_install systemd man-db

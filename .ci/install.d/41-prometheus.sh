# promtool (Debian's prometheus package): tests/metrics.rs checks every --metrics-file
# vault writes with `promtool check metrics`.
apt_install prometheus

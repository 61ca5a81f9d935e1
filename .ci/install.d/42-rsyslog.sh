# rsyslogd: tests/syslog.rs runs a real receiver on loopback (UDP, TCP, a unix socket)
# with a temporary configuration and checks that every audit record arrives intact.
apt_install rsyslog

#!/bin/sh
# Make sure the SIEM tests have a real syslog receiver: Debian's rsyslog, with its TLS
# driver (rsyslog-gnutls). tests/siem/ start their own rsyslogd on loopback ports with
# their own configuration; nothing here starts or configures the system's daemon.
#
# Exit status: 0 when rsyslogd is there (or when it is not and CI is not set: the syslog
# tests then skip with the reason); 1 under CI=true when it cannot be had, so CI fails
# loudly instead of skipping.
set -eu
. "$(dirname "$0")/ensure-lib.sh"

RSYSLOGD="${AOC_RSYSLOGD:-/usr/sbin/rsyslogd}"
have_rsyslog() {
    # the daemon, and its GnuTLS stream driver (the TLS tests need it)
    [ -x "$RSYSLOGD" ] && "$RSYSLOGD" -v >/dev/null 2>&1 &&
        [ -n "$(find /usr/lib -name lmnsd_gtls.so 2>/dev/null | head -n 1)" ]
}

if have_rsyslog; then
    exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
    # policy-rc.d-less containers: the package's service start fails harmlessly, or is skipped
    apt_install ensure-rsyslog "rsyslog and rsyslog-gnutls" --no-install-recommends rsyslog rsyslog-gnutls
fi

if have_rsyslog; then
    echo "ensure-rsyslog: $("$RSYSLOGD" -v 2>/dev/null | head -1)" >&2
    exit 0
fi

missing "ensure-rsyslog: no usable rsyslogd at $RSYSLOGD (install it: apt-get install rsyslog rsyslog-gnutls)" syslog

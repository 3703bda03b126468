#!/bin/sh
# Make sure the SIEM tests have a real syslog receiver: Debian's rsyslog, with its TLS
# driver (rsyslog-gnutls). tests/siem/ start their own rsyslogd on loopback ports with
# their own configuration; nothing here starts or configures the system's daemon.
#
# Exit status: 0 when rsyslogd is there (or when it is not and CI is not set: the syslog
# tests then skip with the reason); 1 under CI=true when it cannot be had, so CI fails
# loudly instead of skipping.
set -eu

RSYSLOGD="${AOC_RSYSLOGD:-/usr/sbin/rsyslogd}"
have_rsyslog() {
    # the daemon, and its GnuTLS stream driver (the TLS tests need it)
    [ -x "$RSYSLOGD" ] && "$RSYSLOGD" -v >/dev/null 2>&1 &&
        [ -n "$(find /usr/lib -name lmnsd_gtls.so 2>/dev/null | head -n 1)" ]
}

in_ci() {
    case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
        1|true|yes) return 0 ;;
        *) return 1 ;;
    esac
}

if have_rsyslog; then
    exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        SUDO="none"
    fi
    if [ "$SUDO" != none ]; then
        echo "ensure-rsyslog: installing Debian's rsyslog and rsyslog-gnutls with apt-get" >&2
        $SUDO apt-get update -q >&2
        # policy-rc.d-less containers: the package's service start fails harmlessly, or is skipped
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends rsyslog rsyslog-gnutls >&2
    fi
fi

if have_rsyslog; then
    echo "ensure-rsyslog: $("$RSYSLOGD" -v 2>/dev/null | head -1)" >&2
    exit 0
fi

message="ensure-rsyslog: no usable rsyslogd at $RSYSLOGD (install it: apt-get install rsyslog rsyslog-gnutls)"
if in_ci; then
    echo "$message; CI=true, so the syslog tests must not be skipped" >&2
    exit 1
fi
echo "$message; the syslog tests will be skipped" >&2
exit 0

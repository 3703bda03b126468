#!/bin/sh
# Make sure the browser tests have Debian's Chromium (DESIGN.md §7): /usr/bin/chromium.
#
# Installs it with apt-get when it is missing and we can (root, or passwordless sudo).
# Playwright never downloads a browser: the tests drive this one.
#
# Exit status: 0 when Chromium is there (or when it is not and CI is not set: the browser
# tests then skip with the reason); 1 under CI=true when it cannot be had, so CI fails
# loudly instead of skipping the browser suite.
set -eu

CHROMIUM="${AOC_CHROMIUM:-/usr/bin/chromium}"

have_chromium() {
    [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1
}

in_ci() {
    case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
        1|true|yes) return 0 ;;
        *) return 1 ;;
    esac
}

if have_chromium; then
    exit 0
fi

if [ "$CHROMIUM" = /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        SUDO="none"
    fi
    if [ "$SUDO" != none ]; then
        echo "ensure-chromium: installing Debian's chromium with apt-get" >&2
        $SUDO apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium >&2
    fi
fi

if have_chromium; then
    echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null)" >&2
    exit 0
fi

message="ensure-chromium: no Chromium at $CHROMIUM (install it: apt-get install chromium)"
if in_ci; then
    echo "$message; CI=true, so the browser tests must not be skipped" >&2
    exit 1
fi
echo "$message; the browser tests will be skipped" >&2
exit 0

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
. "$(dirname "$0")/ensure-lib.sh"

CHROMIUM="${AOC_CHROMIUM:-/usr/bin/chromium}"

have_chromium() {
    [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1
}

if have_chromium; then
    exit 0
fi

if [ "$CHROMIUM" = /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    apt_install ensure-chromium chromium chromium
fi

if have_chromium; then
    echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null)" >&2
    exit 0
fi

missing "ensure-chromium: no Chromium at $CHROMIUM (install it: apt-get install chromium)" browser

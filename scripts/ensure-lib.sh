# What scripts/ensure-*.sh share (sourced, not run): installing a Debian package when we
# can, and how a missing tool ends (fatal only under CI).

in_ci() {
    case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
        1|true|yes) return 0 ;;
        *) return 1 ;;
    esac
}

# apt_install NAME WHAT ARG...: `apt-get install ARG...` as root or with passwordless sudo;
# nothing when neither is possible (the caller checks again and reports).
apt_install() {
    name="$1"
    what="$2"
    shift 2
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        return 0
    fi
    echo "$name: installing Debian's $what with apt-get" >&2
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@" >&2
}

# missing MESSAGE SUITE: say why the SUITE tests cannot run; exit 1 under CI (it must
# not skip them), else 0 (they skip with the reason).
missing() {
    if in_ci; then
        echo "$1; CI=true, so the $2 tests must not be skipped" >&2
        exit 1
    fi
    echo "$1; the $2 tests will be skipped" >&2
    exit 0
}

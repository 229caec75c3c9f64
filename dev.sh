#!/usr/bin/env bash
# Sets everything up, then runs the gateway (./dev.sh run) or the whole test suite (./dev.sh test).
# Works on a fresh Debian machine: as root it installs what is missing with apt-get.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}

need_apt() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing: $*; install it (Debian: apt-get install $*) and retry" >&2
        exit 1
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

python_ok() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

find_python() {
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    need_apt python3 python3-venv
    python_ok python3 || { echo "Python 3.11 or newer is required" >&2; exit 1; }
    echo python3
}

setup_venv() {
    local extras=$1 stamp
    if [ ! -x "$VENV/bin/python" ]; then
        "$(find_python)" -m venv "$VENV"
    fi
    stamp="$VENV/.installed-$extras-$(sha1sum pyproject.toml | cut -c1-12)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".$extras"
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

setup_chromium() {
    # The browser tests drive Debian's Chromium through Playwright (never its own download).
    if [ ! -x /usr/bin/chromium ]; then
        need_apt chromium fonts-dejavu-core
    fi
}

setup_ffprobe() {
    # The recording tests check files with ffprobe too, an independent reader
    # (ffmpeg's own demuxers and decoders, not PyAV's bundled copy).
    if ! command -v ffprobe >/dev/null; then
        need_apt ffmpeg
    fi
}

setup_coturn() {
    # The TURN tests relay media through a real coturn (Debian's turnserver), which each
    # test starts itself on 127.0.0.1. On a systemd host the package also enables and
    # starts its own service on every interface: stop that one, nothing here uses it.
    if ! command -v turnserver >/dev/null; then
        need_apt coturn
        if [ -d /run/systemd/system ]; then
            systemctl disable --now coturn >/dev/null 2>&1 || true
        fi
    fi
}

setup_redis() {
    # The cluster tests share state through a real Redis (Debian's redis-server), which
    # each test starts itself on 127.0.0.1 with no persistence. On a systemd host the
    # package also starts its own service: stop that one, nothing here uses it.
    if ! command -v redis-server >/dev/null; then
        need_apt redis-server
        if [ -d /run/systemd/system ]; then
            systemctl disable --now redis-server >/dev/null 2>&1 || true
        fi
    fi
}

setup_gstreamer() {
    # The interop tests drive Debian's GStreamer webrtcbin from the system python
    # (PyGObject is not in the venv): tests/support/gst_client.py.
    if ! /usr/bin/python3 -c 'import gi; gi.require_version("GstWebRTC", "1.0")' 2>/dev/null \
        || ! command -v gst-inspect-1.0 >/dev/null || ! gst-inspect-1.0 webrtcbin >/dev/null 2>&1 \
        || ! gst-inspect-1.0 x264enc >/dev/null 2>&1; then
        need_apt gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
            gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice \
            gstreamer1.0-libav python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 \
            gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1
    fi
}

setup_network() {
    # The NAT, firewall and rate-limit tests build network namespaces joined by veth
    # pairs (tests/support/netns.py): ip and tc (iproute2), iptables. They need root.
    if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
        need_apt iproute2
    fi
    if ! command -v iptables >/dev/null; then
        need_apt iptables
    fi
}

case "${1:-}" in
run)
    shift
    setup_venv ""
    exec "$VENV/bin/python" -m gateway "$@"
    ;;
test)
    shift
    setup_venv "[test]"
    setup_chromium
    setup_ffprobe
    setup_coturn
    setup_redis
    setup_gstreamer
    setup_network
    "$VENV/bin/ruff" check gateway processors tests bench
    "$VENV/bin/ruff" format --check gateway processors tests bench
    "$VENV/bin/mypy"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
*)
    echo "usage: $0 run [--config PATH] [--host H] [--port P] | test [pytest args]" >&2
    exit 2
    ;;
esac

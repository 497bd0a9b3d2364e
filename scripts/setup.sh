#!/usr/bin/env bash
# Sets up this node for tracedb, idempotently: Debian packages, the venv at
# .venv (which sees Debian's BCC module), tracedb and its Python packages, and
# the kernel environment (tracefs, closest kernel headers: `tracedb doctor --fix`).
# Each step is skipped when already done, so a second run takes a few seconds.
# Needs root (apt, mount, /lib/modules).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(python3-bpfcc python3-venv bpftool gcc libc6-dev)
# Real servers and clients the tests drive.
TEST_PACKAGES=(nginx-light wrk curl postgresql mariadb-server mariadb-client redis-server redis-tools dnsmasq-base bind9-dnsutils iproute2 tmux util-linux)

say() { printf 'setup: %s\n' "$*" >&2; }

install_debian_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: tracedb's set-up installs packages and kernel headers: run it as root (sudo $0)" >&2
    exit 2
fi

install_debian_packages "${DEBIAN_PACKAGES[@]}"
if [ "${1:-}" = "--test" ] && [ ${#TEST_PACKAGES[@]} -gt 0 ]; then
    install_debian_packages "${TEST_PACKAGES[@]}"
fi

# Debian's python3 imports BCC's module (it is not on PyPI); the venv must see it.
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi

stamp=.venv/.tracedb-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    say "installing tracedb into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$wanted" > "$stamp"
fi

if ! .venv/bin/python -c 'import sys; from tracedb.kernel import doctor; sys.exit(1 if doctor.preflight() else 0)'; then
    say "preparing the kernel environment (tracedb doctor --fix)"
    .venv/bin/tracedb doctor --fix
fi

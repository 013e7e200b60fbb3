#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are missing: PostgreSQL's server binaries
# (the store tests start a throwaway server) and Debian's chromium (the web pages are tested in it).
set -euo pipefail

have_postgres() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
have_postgres || missing+=(postgresql)
have_chromium || missing+=(chromium fonts-wqy-zenhei)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages the tests need: ${missing[*]}" >&2
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

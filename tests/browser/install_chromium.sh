#!/usr/bin/env bash
# Debian's Chromium for the browser test (tests/browser/test_lab_widgets.py), installed with apt-get only when
# /usr/bin/chromium is missing. Playwright drives this system browser (executable_path); it never downloads
# one of its own. Needs root (or sudo) and network access to the Debian mirrors.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "error: /usr/bin/chromium is missing and installing it needs root; run as root: apt-get update && apt-get install -y chromium" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y chromium
/usr/bin/chromium --version

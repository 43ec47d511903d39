#!/usr/bin/env bash
# Headless Chromium for the report tests (tests/shell/test_report.py): Debian's package, installed with apt when
# /usr/bin/chromium is missing (CI runs as root on a fresh Debian machine). Idempotent: does nothing when present.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/ensure_chromium.sh: /usr/bin/chromium is missing; install Debian's chromium (needs root)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version

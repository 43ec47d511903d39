#!/usr/bin/env bash
# Debian's chromium for the status-page test (tests/kafka/test_status_page.py drives it headless) and the rollout
# report test (tests/shell/test_report.py renders the page).
# Skipped when /usr/bin/chromium exists; needs root (CI runs as root on a fresh Debian machine). Without it
# the test is skipped, or failed under CI=true.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "scripts/install_browser.sh: no /usr/bin/chromium and cannot apt-get install it (not root on Debian)" >&2
    exit 0
fi
echo "scripts/install_browser.sh: installing chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null

#!/usr/bin/env bash
# The repo's full test run: fetch the jars of the local Kafka broker (cached after the first run), install
# Debian's chromium for the status-page test when it is missing (scripts/install_browser.sh), then the whole
# suite under tests/.  Extra arguments go to pytest.  pytest's exit code is propagated; exit 5 ("no tests
# collected") counts as a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."

python=python3
[[ -x .venv/bin/python ]] && python=.venv/bin/python
"$python" scripts/local_kafka.py fetch
bash scripts/install_browser.sh  # headless Chromium: the status-page and rollout-report tests

status=0
"${PYTEST:-.venv/bin/pytest}" -q tests "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "scripts/test.sh: pytest collected no tests (exit 5); treating that as a failure" >&2
fi
exit "$status"

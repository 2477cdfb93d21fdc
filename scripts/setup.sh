#!/usr/bin/env bash
# Install DTQ and its development tools into ./.venv (idempotent; Python 3.11+).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup.sh: error: Python 3.11+ is required (set PYTHON=...)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# pip < 25.3: chalice 1.34 declares its support up to there.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "pip>=23,<25.3"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
echo "setup: .venv ready ($(.venv/bin/python --version))"

#!/usr/bin/env bash
# The README's first command: set up (scripts/setup.sh), then run the whole stack
# locally with `dtq dev` until Ctrl-C. Arguments go to `dtq dev` (see `dtq dev --help`):
#   bash scripts/dev.sh                      # API on :8000, 2 workers
#   bash scripts/dev.sh --workers 4 --port 8080 --embedded
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
# exec: Ctrl-C and SIGTERM go straight to `dtq dev`, which stops its children in order.
exec .venv/bin/dtq dev "$@"

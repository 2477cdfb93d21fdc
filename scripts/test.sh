#!/usr/bin/env bash
# The test command: set up, make sure Redis and PostgreSQL answer, lint, type-check and
# run the whole suite against them. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
bash scripts/test-tools.sh
# The tests use database 15 of this Redis and the dtq_test database of this PostgreSQL.
DTQ_REDIS_URL=${DTQ_TEST_REDIS_URL:-redis://127.0.0.1:6379/15} \
DTQ_DATABASE_URL=${DTQ_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/dtq_test} \
    bash scripts/ensure-services.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"

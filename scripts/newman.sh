#!/usr/bin/env bash
# Runs docs/postman_collection.json with newman against a running `dtq api`.
# Usage: scripts/newman.sh [BASE_URL]   (credentials from DTQ_ADMIN_* / DTQ_WORKER_*)
set -euo pipefail
cd "$(dirname "$0")/.."
exec newman run docs/postman_collection.json --bail \
  --env-var "baseUrl=${1:-http://127.0.0.1:8000}" \
  --env-var "adminUsername=${DTQ_ADMIN_USERNAME:-admin}" \
  --env-var "adminPassword=${DTQ_ADMIN_PASSWORD:?set DTQ_ADMIN_PASSWORD}" \
  --env-var "workerUsername=${DTQ_WORKER_USERNAME:-worker}" \
  --env-var "workerPassword=${DTQ_WORKER_PASSWORD:?set DTQ_WORKER_PASSWORD}"

#!/usr/bin/env bash
# The system tools some tests call: promtool (metrics text), shellcheck (infra checks),
# chromium (the dashboard's browser tests) and newman (the Postman collection). Installed
# once per machine when missing.
set -euo pipefail

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v newman >/dev/null; then
    if ! command -v npm >/dev/null; then
        echo "test-tools: npm is needed to install newman (apt-get install nodejs npm)" >&2
        exit 1
    fi
    npm install -g --silent newman >/dev/null
fi

#!/bin/bash
# LocalStack READY hook: the JWT signing secret (DTQ_JWT_SECRET_ID=dtq/jwt-secret).
# Created with 48 random bytes (64 base64 characters; DTQ requires >= 32 bytes) only
# if it does not exist yet, so re-running the hook never rotates a live secret.
# The value is never printed; it is handed to the CLI through a private temp file
# rather than on the command line.
set -euo pipefail

secret_id="dtq/jwt-secret"

if out=$(awslocal secretsmanager describe-secret --secret-id "${secret_id}" 2>&1); then
    echo "dtq init: secret ${secret_id} already exists, left unchanged"
    exit 0
elif ! grep -q "ResourceNotFoundException" <<<"${out}"; then
    echo "dtq init: cannot look up secret ${secret_id}: ${out}" >&2
    exit 1
fi

umask 077
value_file=$(mktemp)
trap 'rm -f "${value_file}"' EXIT
head -c 48 /dev/urandom | base64 | tr -d '\n' >"${value_file}"

awslocal secretsmanager create-secret \
    --name "${secret_id}" \
    --description "DTQ JWT signing secret (local development)" \
    --secret-string "file://${value_file}" >/dev/null
echo "dtq init: secret ${secret_id} created"

#!/bin/bash
# LocalStack READY hook: the S3 bucket for large task payloads and results
# (DTQ_PAYLOAD_BUCKET in infra/docker-compose.yml). Created only if missing.
set -euo pipefail

bucket="dtq-payloads"
region="${AWS_DEFAULT_REGION:-us-east-1}"

if awslocal s3api head-bucket --bucket "${bucket}" >/dev/null 2>&1; then
    echo "dtq init: S3 bucket s3://${bucket} already exists"
    exit 0
fi

if [[ "${region}" == "us-east-1" ]]; then
    awslocal s3api create-bucket --bucket "${bucket}" >/dev/null
else
    awslocal s3api create-bucket --bucket "${bucket}" \
        --create-bucket-configuration "LocationConstraint=${region}" >/dev/null
fi
echo "dtq init: S3 bucket s3://${bucket} created"

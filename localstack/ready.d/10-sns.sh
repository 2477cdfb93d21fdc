#!/bin/bash
# LocalStack READY hook: the SNS topic that receives dead-letter events
# (DTQ_NOTIFY_TOPIC_ARN in infra/docker-compose.yml points at it).
# `create-topic` is idempotent: for an existing topic it returns the existing ARN.
set -euo pipefail

topic_name="dtq-dead-letter"

topic_arn=$(awslocal sns create-topic --name "${topic_name}" --query TopicArn --output text)
echo "dtq init: SNS topic ready: ${topic_arn}"

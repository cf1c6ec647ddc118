#!/usr/bin/env bash
# The README's first command: from a fresh machine to a harvested sample catalog.
# Installs LocalStack and the tools (once), starts LocalStack, deploys template.yaml into it,
# then harvests a bundled sample ERDDAP catalog through the local pipeline and prints the
# session summary. LocalStack keeps running so you can look around; stop it with
# `infra/localstack.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."

infra/install.sh
infra/localstack.sh start
infra/deploy.sh
# Built for the whole workspace, so the demo shares the test suite's compiled dependencies.
cargo build -q --workspace --bins
target/debug/trawl-runner demo "$@"
echo
echo "LocalStack is still running (infra/localstack.sh stop to end it)."
bucket=$(python3 -c 'import json; print(json.load(open(".local/stack.json"))["BucketName"])')
echo "Browse:  source infra/env.sh && aws s3 ls --recursive s3://$bucket/records/demo-erddap/"

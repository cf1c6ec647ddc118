#!/usr/bin/env bash
# Lints template.yaml with cfn-lint and `sam validate --lint` (both offline).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export SAM_CLI_TELEMETRY=0
bin=.local/tools-venv/bin
"$bin/cfn-lint" template.yaml
"$bin/sam" validate --lint --template-file template.yaml

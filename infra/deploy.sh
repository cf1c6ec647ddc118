#!/usr/bin/env bash
# Deploys template.yaml into the local emulator without the functions (they cannot run there;
# infra/runner plays Lambda), with short timeouts so retries happen in seconds, then saves the
# stack outputs as a flat JSON object in .local/stack.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/env.sh
stack=${TRAWL_STACK:-trawl-local}
# The local parameters keep the template's rules: visibility >= 6x the harvester timeout,
# the HTTP timeout below it.
params=${TRAWL_LOCAL_PARAMETERS:-DeployFunctions=false HarvesterTimeout=2 WorkVisibilityTimeout=12 HttpTimeoutMs=1000 MaxReceiveCount=3}

# shellcheck disable=SC2086
aws cloudformation deploy \
    --template-file template.yaml \
    --stack-name "$stack" \
    --parameter-overrides $params \
    --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
    --no-fail-on-empty-changeset

aws cloudformation describe-stacks --stack-name "$stack" --output json \
    | python3 -c '
import json, sys
outputs = json.load(sys.stdin)["Stacks"][0].get("Outputs", [])
print(json.dumps({o["OutputKey"]: o["OutputValue"] for o in outputs}, indent=2, sort_keys=True))' \
    >.local/stack.json
echo "stack $stack deployed; outputs in .local/stack.json:"
cat .local/stack.json

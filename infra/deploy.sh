#!/usr/bin/env bash
# Deploys template.yaml into the local emulator without the functions (they cannot run there;
# infra/runner plays Lambda), with short timeouts so retries happen in seconds, then saves the
# stack outputs as a flat JSON object in .local/stack.json.
#
# Then, as the template's DeploySources custom resource does on AWS: a sources document
# (TRAWL_SOURCES_FILE, default sources.yaml, relative to the repository root) is uploaded to
# the bucket and applied (TRAWL_PRUNE_SOURCES=1 also removes sources it does not name), and
# with TRAWL_HARVEST_ON_DEPLOY=1 every enabled source gets a session (trigger "deploy"),
# drained by the local runner. Neither set and no sources.yaml: nothing more is done.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/env.sh
stack=${TRAWL_STACK:-trawl-local}
# The local parameters keep the template's rules: visibility >= 6x the harvester timeout,
# the HTTP timeout below it. The harvester timeout leaves room for LocalStack, which takes
# 2-3 s for a batch of 10 when five batches run at once.
params=${TRAWL_LOCAL_PARAMETERS:-DeployFunctions=false HarvesterTimeout=6 WorkVisibilityTimeout=36 HttpTimeoutMs=1000 MaxReceiveCount=3}

# The SAM transform wants each CodeUri packaged to S3 (`sam build` does that for real
# deployments). With the functions switched off no code is ever fetched, so the local copy
# names a placeholder object instead of uploading the repository.
mkdir -p .local
sed 's|^\( *CodeUri:\) \.$|\1 s3://trawl-local-placeholder/code.zip|' template.yaml >.local/template.deploy.yaml
fingerprint=$( (cat .local/template.deploy.yaml; echo "$stack $params") | sha256sum | cut -c1-16)

status=$(aws cloudformation describe-stacks --stack-name "$stack" --query 'Stacks[0].StackStatus' --output text 2>/dev/null || echo NONE)
case "$status" in
    NONE)
        # shellcheck disable=SC2086
        aws cloudformation deploy \
            --template-file .local/template.deploy.yaml \
            --stack-name "$stack" \
            --parameter-overrides $params \
            --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
            --no-fail-on-empty-changeset
        echo "$fingerprint" >.local/stack.fingerprint
        ;;
    CREATE_COMPLETE | UPDATE_COMPLETE)
        # LocalStack's CloudFormation fails on change sets for an existing stack ("maximum
        # recursion depth exceeded"), and its state lives in memory: an unchanged stack is
        # kept, a changed one needs a fresh LocalStack.
        if [ "$(cat .local/stack.fingerprint 2>/dev/null)" != "$fingerprint" ]; then
            echo "stack $stack exists with another template or parameters;" \
                "reset with infra/localstack.sh stop && infra/localstack.sh start, then deploy again" >&2
            exit 1
        fi
        echo "stack $stack is up to date"
        ;;
    *)
        # The table and bucket are retained on delete, so a failed stack cannot simply be
        # recreated; a LocalStack restart gives a clean slate.
        echo "stack $stack is $status: reset with infra/localstack.sh stop && infra/localstack.sh start" >&2
        exit 1
        ;;
esac

aws cloudformation describe-stacks --stack-name "$stack" --output json \
    | python3 -c '
import json, sys
outputs = json.load(sys.stdin)["Stacks"][0].get("Outputs", [])
print(json.dumps({o["OutputKey"]: o["OutputValue"] for o in outputs}, indent=2, sort_keys=True))' \
    >.local/stack.json
echo "stack $stack deployed; outputs in .local/stack.json:"
cat .local/stack.json

# The functions' environment, for `cargo lambda watch --env-file .local/functions.env`.
python3 - <<'PY' >.local/functions.env
import json, os
o = json.load(open(".local/stack.json"))
env = {
    "TRAWL_TABLE": o["TableName"],
    "TRAWL_BUCKET": o["BucketName"],
    "TRAWL_WORK_QUEUE_URL": o["WorkQueueUrl"],
    "TRAWL_TICK_MINUTES": o["TickMinutes"],
    "TRAWL_MAX_RECEIVE_COUNT": o["MaxReceiveCount"],
    "TRAWL_HTTP_TIMEOUT_MS": o["HttpTimeoutMs"],
    "TRAWL_SESSION_DEADLINE_MINUTES": o["SessionDeadlineMinutes"],
    "TRAWL_WORK_VISIBILITY_TIMEOUT": o["WorkVisibilityTimeout"],
    "TRAWL_ALERT_TOPIC_ARN": o["AlertTopic"],
}
for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
          "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
    env[k] = os.environ[k]
print("\n".join(f"{k}={v}" for k, v in env.items()))
PY
echo "function environment for cargo lambda watch: .local/functions.env"

deploy_args=()
sources_file=${TRAWL_SOURCES_FILE:-sources.yaml}
if [ -n "${TRAWL_SOURCES_FILE:-}" ] && [ ! -f "$sources_file" ]; then
    echo "TRAWL_SOURCES_FILE=$sources_file: no such file" >&2
    exit 1
fi
if [ -f "$sources_file" ]; then
    deploy_args+=(--sources "$sources_file")
    if [ "${TRAWL_PRUNE_SOURCES:-0}" = 1 ]; then deploy_args+=(--prune); fi
fi
if [ "${TRAWL_HARVEST_ON_DEPLOY:-0}" = 1 ]; then deploy_args+=(--harvest); fi
if [ ${#deploy_args[@]} -gt 0 ]; then
    echo "applying the deployment: ${deploy_args[*]}"
    cargo run -q -p trawl-runner -- deploy "${deploy_args[@]}"
fi

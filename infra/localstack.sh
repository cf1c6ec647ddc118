#!/usr/bin/env bash
# Starts, stops or checks LocalStack in host mode (no Docker) on 127.0.0.1:4566.
#   infra/localstack.sh start|stop|status
# With a working Docker engine and TRAWL_LOCALSTACK_DOCKER=1, `start` runs the
# localstack/localstack:4.14.0 image instead (the last tag that needs no auth token).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=$root/.local/localstack
pidfile=$state/pid
logfile=$root/.local/localstack.log
endpoint=http://127.0.0.1:4566
services=s3,sqs,dynamodb,dynamodbstreams,kinesis,kms,cloudformation,iam,sts,lambda,scheduler,events,logs,sns,cloudwatch

healthy() {
    local body
    body=$(curl -fsS "$endpoint/_localstack/health" 2>/dev/null) || return 1
    python3 -c '
import json, sys
wanted = {"s3", "sqs", "dynamodb", "dynamodbstreams", "cloudformation"}
s = json.loads(sys.argv[1]).get("services", {})
sys.exit(0 if all(s.get(k) in ("available", "running") for k in wanted) else 1)' "$body"
}

start() {
    if healthy; then
        echo "LocalStack already running at $endpoint"
        return
    fi
    mkdir -p "$state"
    if [ "${TRAWL_LOCALSTACK_DOCKER:-0}" = 1 ] && docker info >/dev/null 2>&1; then
        docker run -d --rm --name trawl-localstack -p 127.0.0.1:4566:4566 \
            -e SERVICES=$services -e SQS_ENDPOINT_STRATEGY=path \
            -v /var/run/docker.sock:/var/run/docker.sock localstack/localstack:4.14.0 >/dev/null
    else
        [ -x .local/localstack-venv/bin/python ] || { echo "run infra/install.sh first" >&2; exit 1; }
        echo "starting LocalStack (host mode), log in $logfile"
        GATEWAY_LISTEN=127.0.0.1:4566 \
        LOCALSTACK_HOST=127.0.0.1:4566 \
        SQS_ENDPOINT_STRATEGY=path \
        LOCALSTACK_VOLUME_DIR=$state/volume \
        DNS_ADDRESS=0 \
        SKIP_SSL_CERT_DOWNLOAD=1 \
        DISABLE_EVENTS=1 \
        SERVICES=$services \
        nohup .local/localstack-venv/bin/python -m localstack.runtime.main >"$logfile" 2>&1 &
        echo $! >"$pidfile"
    fi
    for _ in $(seq 1 120); do
        if healthy; then
            echo "LocalStack ready at $endpoint"
            return
        fi
        if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "LocalStack exited during start-up:" >&2
            tail -40 "$logfile" >&2
            exit 1
        fi
        sleep 1
    done
    echo "LocalStack did not become healthy in 120 s:" >&2
    tail -40 "$logfile" >&2
    exit 1
}

stop() {
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    fi
    docker rm -f trawl-localstack >/dev/null 2>&1 || true
    echo "LocalStack stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if healthy; then echo running; else echo "not running"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

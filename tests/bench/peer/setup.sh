#!/usr/bin/env bash
# Creates (or reuses) the Python venv for the erddapy peer benchmark at $REPO/.local/bench-venv
# and installs requirements.txt into it. A stamp holding the requirements' sha256 makes a
# second run skip pip. The last line of stdout is the venv's python.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
VENV="$REPO/.local/bench-venv"
REQS="$HERE/requirements.txt"
PY="$VENV/bin/python"
STAMP="$VENV/.requirements.sha256"

if [[ ! -x "$PY" ]]; then
    mkdir -p "$REPO/.local"
    echo "creating venv at $VENV" >&2
    python3 -m venv "$VENV"
fi

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" != "$have" ]]; then
    echo "installing $REQS" >&2
    rm -f "$STAMP"
    # pip's own output goes to stderr, so stdout ends with the python path only.
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQS" 1>&2
    echo "$want" > "$STAMP"
fi

echo "$PY"

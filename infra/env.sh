# Source this to point the AWS CLI and SDKs at the local emulator and put the tools on PATH:
#   source infra/env.sh
_trawl_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-$AWS_REGION}
# Emulators mishandle the SDKs' default S3 integrity checksums.
export AWS_REQUEST_CHECKSUM_CALCULATION=when_required
export AWS_RESPONSE_CHECKSUM_VALIDATION=when_required
export PATH="$_trawl_root/.local/tools-venv/bin:$PATH"
unset _trawl_root

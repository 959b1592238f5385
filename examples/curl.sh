#!/usr/bin/env bash
# Call a comfy-worker endpoint with curl.
#
#   export RUNPOD_API_KEY=...  ENDPOINT_ID=...
#   examples/curl.sh runsync test_input.json      # wait for the result (RunPod caps it at 20 MB)
#   examples/curl.sh run test_input.json          # queue it: prints {"id": ..., "status": ...}
#   examples/curl.sh status JOB_ID                # state; the output once COMPLETED
#   examples/curl.sh cancel JOB_ID
#
# A request file is the whole body, {"input": {...}}, as test_input.json is. Responses are
# printed as they come (JSON); pipe them to `jq` to pick fields, e.g. `jq -r .id`.
# RUNPOD_ENDPOINT_BASE_URL changes the API base (default https://api.runpod.ai/v2), e.g. to
# examples/local_gateway.py in front of a local `python handler.py --rp_serve_api`.
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" >&2
  exit 2
}

[[ $# -eq 2 ]] || usage
: "${RUNPOD_API_KEY:?set RUNPOD_API_KEY}"
: "${ENDPOINT_ID:?set ENDPOINT_ID}"
endpoint="${RUNPOD_ENDPOINT_BASE_URL:-https://api.runpod.ai/v2}/${ENDPOINT_ID}"

# --fail-with-body: a non-2xx answer exits non-zero and still shows what the API said.
call() {
  curl --silent --show-error --fail-with-body \
    -H "Authorization: Bearer ${RUNPOD_API_KEY}" -H "Content-Type: application/json" "$@"
  echo
}

case "$1" in
  runsync | run)
    [[ -f "$2" ]] || { echo "no such file: $2" >&2; exit 2; }
    call -X POST --data-binary "@$2" "${endpoint}/$1"
    ;;
  status) call "${endpoint}/status/$2" ;;
  cancel) call -X POST "${endpoint}/cancel/$2" ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# Build-time smoke test of the assembled image: ComfyUI starts on the CPU, loads every built-in
# and custom node, and exits; the worker's own dependencies import in the same interpreter.
# ComfyUI's --quick-test-for-ci exits 0 even when a node fails to import (it only logs
# "IMPORT FAILED"), so the log is checked as well.
#
# Usage: check_comfyui.sh   (reads COMFYUI_DIR and COMFYUI_PYTHON)
set -euo pipefail

python=${COMFYUI_PYTHON:?COMFYUI_PYTHON is not set}
comfy_dir=${COMFYUI_DIR:?COMFYUI_DIR is not set}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

"$python" -c "import boto3, httpx, PIL, pydantic, pydantic_settings, runpod, websocket" ||
    { echo "check_comfyui: error: the worker's dependencies do not import" >&2; exit 1; }

status=0
(cd "$comfy_dir" && "$python" main.py --quick-test-for-ci --cpu --disable-auto-launch) \
    >"$log" 2>&1 || status=$?
cat "$log"
if ((status != 0)); then
    echo "check_comfyui: error: ComfyUI's quick test exited with $status" >&2
    exit 1
fi
if grep -q "IMPORT FAILED" "$log"; then
    echo "check_comfyui: error: some nodes failed to import:" >&2
    grep "IMPORT FAILED" "$log" >&2
    exit 1
fi
echo "check_comfyui: ComfyUI and every node import cleanly"

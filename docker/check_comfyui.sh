#!/usr/bin/env bash
# Build-time smoke test of the assembled image, in the image's own interpreter:
#  1. the worker itself: every module of comfy_runtime and handler.py import, Settings() builds
#     from the image's environment, and every bundled workflow loads (so a dependency the lock
#     lacks, or a module that only breaks on the image's Python, fails the build, not a job);
#  2. ComfyUI starts on the CPU, loads every built-in and custom node, and exits.
# ComfyUI's --quick-test-for-ci exits 0 even when a node fails to import (it only logs
# "IMPORT FAILED"), so the log is checked as well.
#
# Usage: check_comfyui.sh   (reads COMFYUI_DIR, COMFYUI_PYTHON, and WORKER_DIR: where
#                            handler.py and comfy_runtime/ are, default the current directory)
set -euo pipefail

python=${COMFYUI_PYTHON:?COMFYUI_PYTHON is not set}
comfy_dir=${COMFYUI_DIR:?COMFYUI_DIR is not set}
worker_dir=${WORKER_DIR:-$PWD}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

[[ -f "$worker_dir/handler.py" && -d "$worker_dir/comfy_runtime" ]] || {
    echo "check_comfyui: error: no handler.py and comfy_runtime/ in $worker_dir" \
        "(copy the worker's code before this check, or set WORKER_DIR)" >&2
    exit 1
}

# runpod is imported by handler.py only when it starts the SDK, so it is named here with the
# other dependencies. Walking the package (rather than naming modules) means a module added
# later is checked too.
# -I keeps the caller's PYTHONPATH and user site out, so only the image's packages count; the
# worker's directory is put on the path explicitly, as `python handler.py` would.
check_worker='
import importlib, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import boto3, httpx, PIL, pydantic, pydantic_settings, runpod, websocket
import comfy_runtime
modules = ["handler"] + [
    info.name for info in pkgutil.walk_packages(comfy_runtime.__path__, "comfy_runtime.")
]
for name in modules:
    importlib.import_module(name)
from comfy_runtime.settings import Settings
from comfy_runtime.workflows import WorkflowRegistry
settings = Settings()
graphs = sorted(
    path.stem for path in settings.workflows_dir.glob("*.json")
    if not path.name.endswith(".params.json")
)
loaded = WorkflowRegistry(settings.workflows_dir).names()
if not graphs or loaded != graphs:
    sys.exit(f"bundled workflows in {settings.workflows_dir}: found {graphs}, loaded {loaded}")
print(f"check_comfyui: the worker imports ({len(modules)} modules),",
      "settings load, workflows:", " ".join(loaded))
'
(cd "$worker_dir" && "$python" -I -c "$check_worker" "$worker_dir") || {
    echo "check_comfyui: error: the worker's code in $worker_dir does not import or load" \
        "with $python (the traceback is above)" >&2
    exit 1
}

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

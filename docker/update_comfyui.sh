#!/usr/bin/env bash
# Move the image to another ComfyUI release: everything the version decides, in one command.
#
#   docker/update_comfyui.sh <version> <commit> [--source DIR] [--record URL]
#
#   <version>  ComfyUI's release, e.g. 0.33.0 (the upstream tag is v<version>)
#   <commit>   the full 40-hex commit that tag names; the Dockerfile checks the clone against it
#   --source   a ComfyUI checkout or git directory holding <commit> (else the two files needed
#              are downloaded from raw.githubusercontent.com)
#   --record   the URL of that ComfyUI, running (--cpu is fine): re-record its protocol into
#              tests/protocol/v<version>/ with tests/protocol/record_protocol.py
#
# It writes docker/comfyui-v<version>-requirements.txt (byte for byte ComfyUI's list) in place
# of the previous copy, points the Dockerfile's COMFYUI_VERSION, COMFYUI_COMMIT and copy names
# at it, and remakes docker/requirements.lock with `uv pip compile` (pins already in the lock are
# kept where they still fit; UPGRADE=1 re-resolves every package). UV names the uv binary.
# What it cannot do is printed at the end: docs/deployment.md lists the checks to run next.
set -euo pipefail

usage() {
    echo "usage: $0 <version> <commit> [--source DIR] [--record URL]" >&2
    exit 2
}

[ $# -ge 2 ] || usage
version=$1
commit=$2
shift 2
source_dir=""
record_url=""
while [ $# -gt 0 ]; do
    case $1 in
        --source) [ $# -ge 2 ] || usage; source_dir=$2; shift 2 ;;
        --record) [ $# -ge 2 ] || usage; record_url=$2; shift 2 ;;
        *) usage ;;
    esac
done
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    echo "error: version '$version' is not N.N.N (no leading v)" >&2
    exit 2
fi
if ! [[ $commit =~ ^[0-9a-f]{40}$ ]]; then
    echo "error: commit '$commit' is not a full 40-hex commit id" >&2
    exit 2
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A file of ComfyUI at <commit>, from a git directory, a checkout of that commit, or GitHub.
comfy_file() {
    local name=$1
    if [ -z "$source_dir" ]; then
        curl -fsSL "https://raw.githubusercontent.com/Comfy-Org/ComfyUI/$commit/$name"
    elif git --git-dir="$source_dir" rev-parse --git-dir >/dev/null 2>&1; then
        git --git-dir="$source_dir" show "$commit:$name"
    elif git -C "$source_dir" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$source_dir" show "$commit:$name"
    else
        # A plain tree (extracted, no history): its version file vouches for it below.
        cat "$source_dir/$name"
    fi
}

comfy_file comfyui_version.py >"$work/version.py"
if ! grep -q "__version__ = \"$version\"" "$work/version.py"; then
    echo "error: ComfyUI at $commit is not version $version:" >&2
    grep __version__ "$work/version.py" >&2 || true
    exit 1
fi
comfy_file requirements.txt >"$work/requirements.txt"

copy="docker/comfyui-v$version-requirements.txt"
for old in "$repo"/docker/comfyui-v*-requirements.txt; do
    [ -e "$old" ] && [ "$old" != "$repo/$copy" ] && rm -- "$old"
done
cp "$work/requirements.txt" "$repo/$copy"
echo "wrote $copy"

# The Dockerfile: the tag, the commit it must be, and every mention of the copy's name.
sed -i -E \
    -e "s/^ARG COMFYUI_VERSION=.*/ARG COMFYUI_VERSION=v$version/" \
    -e "s/^ARG COMFYUI_COMMIT=.*/ARG COMFYUI_COMMIT=$commit/" \
    -e "s#docker/comfyui-v[0-9.]+-requirements\\.txt#$copy#g" \
    "$repo/Dockerfile"
sed -i -E "s#docker/comfyui-v[0-9.]+-requirements\\.txt#$copy#g" \
    "$repo/docker/torch-requirements.txt"
grep -q "^ARG COMFYUI_COMMIT=$commit\$" "$repo/Dockerfile" || {
    echo "error: the Dockerfile has no ARG COMFYUI_COMMIT line to update" >&2
    exit 1
}
echo "pinned the Dockerfile to v$version ($commit)"

upgrade=()
[ "${UPGRADE:-0}" = 1 ] && upgrade=(--upgrade)
(
    cd "$repo"
    "${UV:-uv}" pip compile --python-version 3.12 --python-platform x86_64-unknown-linux-gnu \
        "${upgrade[@]}" requirements.txt "$copy" docker/torch-requirements.txt \
        -o docker/requirements.lock
)
echo "remade docker/requirements.lock"

if [ -n "$record_url" ]; then
    python "$repo/tests/protocol/record_protocol.py" --comfyui-url "$record_url" \
        --out "$repo/tests/protocol/v$version"
fi

cat <<EOF

Next (docs/deployment.md, "Another ComfyUI version"):
  - build a ComfyUI $version venv from the lock; run docker/check_comfyui.sh against it
  - COMFYUI_DIR=<that checkout> COMFYUI_PYTHON=<its python> python -m pytest \
      tests/test_update_comfyui.py tests/test_image_lock.py
    (the model folder list in comfy_runtime/models/data/ must match its folder_paths.py)
  - COMFYUI_URL=<it, running> python -m pytest tests/test_real_comfyui.py
EOF

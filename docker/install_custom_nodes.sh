#!/usr/bin/env bash
# Install the custom nodes listed in a file into ComfyUI's custom_nodes directory, each at a
# pinned commit, with its Python requirements.
#
# Usage: install_custom_nodes.sh LIST CUSTOM_NODES_DIR
#   LIST lines: <git url> <40-hex commit>; blank lines and lines starting with # are skipped.
# Environment:
#   PIP_INSTALL   command that installs a requirements file given after it as "-r FILE"
#                 (default: uv pip install --python /opt/venv/bin/python)
#   KEEP_GIT      1 keeps each node's .git directory (default: removed, it is dead weight)
# Nodes' install.py scripts are NOT run: they can do anything at build time. A node that needs
# one is installed by adding the step to the Dockerfile explicitly.
set -euo pipefail

usage="usage: install_custom_nodes.sh LIST CUSTOM_NODES_DIR"
list=${1:?$usage}
nodes_dir=${2:?$usage}
read -ra pip_install <<<"${PIP_INSTALL:-uv pip install --python /opt/venv/bin/python}"

die() {
    echo "install_custom_nodes: error: $*" >&2
    exit 1
}

[[ -r "$list" ]] || die "cannot read $list"
mkdir -p "$nodes_dir"
count=0
line_no=0
while read -r url commit extra || [[ -n "${url:-}" ]]; do
    line_no=$((line_no + 1))
    [[ -z "${url:-}" || "$url" == \#* ]] && continue
    [[ -z "${extra:-}" ]] || die "$list:$line_no: expected '<git url> <commit>', got more fields"
    # A branch or tag can move; only a full commit id makes the image reproducible.
    [[ "${commit:-}" =~ ^[0-9a-f]{40}$ ]] ||
        die "$list:$line_no: '$url' needs a full 40-hex commit id, got '${commit:-}'"
    name=$(basename "${url%/}" .git)
    target="$nodes_dir/$name"
    [[ ! -e "$target" ]] || die "$list:$line_no: $target already exists (listed twice?)"

    echo "install_custom_nodes: $name at $commit"
    git init --quiet "$target"
    git -C "$target" remote add origin "$url"
    git -C "$target" fetch --quiet --depth 1 origin "$commit"
    git -C "$target" -c advice.detachedHead=false checkout --quiet FETCH_HEAD
    if [[ -f "$target/.gitmodules" ]]; then
        git -C "$target" submodule update --quiet --init --recursive --depth 1
    fi
    if [[ -f "$target/requirements.txt" ]]; then
        "${pip_install[@]}" -r "$target/requirements.txt"
    fi
    [[ "${KEEP_GIT:-0}" == "1" ]] || rm -rf "$target/.git"
    count=$((count + 1))
done <"$list"
echo "install_custom_nodes: $count node(s) installed in $nodes_dir"

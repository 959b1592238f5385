#!/usr/bin/env bash
# Install the custom nodes listed in a file into ComfyUI's custom_nodes directory, each at a
# pinned commit, with its Python requirements.
#
# Usage: install_custom_nodes.sh LIST CUSTOM_NODES_DIR
#   LIST lines: <git url> <40-hex commit>; blank lines and lines starting with # are skipped.
#   Windows line endings and upper-case commit ids are accepted (editors and web UIs make both).
# Environment:
#   PIP_INSTALL   command that installs a requirements file given after it as "-r FILE"
#                 (default: uv pip install --python /opt/venv/bin/python); the Dockerfile adds
#                 --constraint with the image's lock, so a node cannot replace a pinned package
#   KEEP_GIT      1 keeps each node's .git directory (default: removed, it is dead weight)
# Nodes' install.py scripts are NOT run: they can do anything at build time. A node that needs
# one is installed by adding the step to the Dockerfile explicitly.
# Every failure names the list's file and line, so a build log points at the line to fix.
set -euo pipefail

usage="usage: install_custom_nodes.sh LIST CUSTOM_NODES_DIR"
list=${1:?$usage}
nodes_dir=${2:?$usage}
read -ra pip_install <<<"${PIP_INSTALL:-uv pip install --python /opt/venv/bin/python}"

die() {
    echo "install_custom_nodes: error: $*" >&2
    exit 1
}

# Runs a git command quietly; on failure its own message is shown indented under ours, so the
# reader sees which line failed first and git's words ("not our ref", ...) as the detail.
git_or_die() { # what-failed git-args...
    local what=$1 out
    shift
    if ! out=$(git "$@" 2>&1); then
        die "$what$(printf '\n    git: %s' "${out//$'\n'/$'\n    git: '}")"
    fi
}

[[ -r "$list" ]] || die "cannot read $list"
mkdir -p "$nodes_dir"
count=0
line_no=0
while IFS= read -r line || [[ -n "$line" ]]; do
    line_no=$((line_no + 1))
    where="$list:$line_no"
    line=${line%$'\r'} # a CRLF file must read like an LF one
    read -r url commit extra <<<"$line"
    [[ -z "${url:-}" || "$url" == \#* ]] && continue
    [[ -z "${extra:-}" ]] || die "$where: expected '<git url> <commit>', got more fields"
    # A branch or tag can move; only a full commit id makes the image reproducible. git prints
    # and matches ids in lower case, so an upper-case copy is the same commit.
    commit=${commit:-}
    commit=${commit,,}
    [[ "$commit" =~ ^[0-9a-f]{40}$ ]] ||
        die "$where: '$url' needs a full 40-hex commit id, got $(printf '%q' "$commit")"
    name=$(basename "${url%/}" .git)
    target="$nodes_dir/$name"
    [[ ! -e "$target" ]] || die "$where: $target already exists (listed twice?)"

    echo "install_custom_nodes: $where: $name at $commit"
    git_or_die "$where: cannot create $target" init --quiet "$target"
    git_or_die "$where: bad git url '$url'" -C "$target" remote add origin "$url"
    fetch_hint="is the id right, and is the commit pushed to that repository?"
    git_or_die "$where: cannot fetch commit $commit of $name from $url ($fetch_hint)" \
        -C "$target" fetch --quiet --depth 1 origin "$commit"
    git_or_die "$where: cannot check out $commit of $name" \
        -C "$target" -c advice.detachedHead=false checkout --quiet FETCH_HEAD
    if [[ -f "$target/.gitmodules" ]]; then
        git_or_die "$where: cannot fetch the submodules of $name at $commit" \
            -C "$target" submodule update --quiet --init --recursive --depth 1
    fi
    if [[ -f "$target/requirements.txt" ]]; then
        # The installer's own output (above this line in the log) names the package at fault.
        "${pip_install[@]}" -r "$target/requirements.txt" ||
            die "$where: the requirements of $name ($target/requirements.txt) cannot be" \
                "installed alongside the image's pinned packages; the installer's message" \
                "above names the package"
    fi
    [[ "${KEEP_GIT:-0}" == "1" ]] || rm -rf "$target/.git"
    count=$((count + 1))
done <"$list"
echo "install_custom_nodes: $count node(s) installed in $nodes_dir"

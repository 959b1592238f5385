#!/usr/bin/env bash
# Download the files of one or more model sets (docker/models.tsv) into a models directory,
# each verified by size and sha256, and write a licence notice beside them (one line per file in
# DEST_DIR, however often and with whichever sets it is run).
#
# Usage: fetch_models.sh MODEL_SET DEST_DIR [MODELS_TSV]
#   MODEL_SET   a set name from the tsv, several joined by commas, or "none"
#   DEST_DIR    the models directory (files land in DEST_DIR/<folder>/<file>)
#   MODELS_TSV  tab-separated, nine non-empty columns a line (see docker/models.tsv); a line
#               that breaks this fails the run, named by its line number
# Environment:
#   HF_TOKEN_FILE       file holding a Hugging Face token for gated files
#                       (default /run/secrets/hf_token, where a BuildKit secret is mounted)
#   FETCH_ATTEMPTS      whole-file attempts per file (default 4)
#   FETCH_RETRY_DELAY   seconds between attempts, multiplied by the attempt number (default 5)
set -euo pipefail

usage="usage: fetch_models.sh MODEL_SET DEST_DIR [MODELS_TSV]"
model_sets=${1:?$usage}
dest=${2:?$usage}
tsv=${3:-"$(dirname "$0")/models.tsv"}
token_file=${HF_TOKEN_FILE:-/run/secrets/hf_token}
attempts=${FETCH_ATTEMPTS:-4}
delay=${FETCH_RETRY_DELAY:-5}

die() {
    echo "fetch_models: error: $*" >&2
    exit 1
}
say() { echo "fetch_models: $*"; }

[[ -r "$tsv" ]] || die "cannot read $tsv"
mkdir -p "$dest"
if [[ "$model_sets" == "none" ]]; then
    say "MODEL_SET=none: no models baked in"
    exit 0
fi

header_file=""
notice_tmp=""
cleanup() {
    [[ -z "$header_file" ]] || rm -f "$header_file"
    [[ -z "$notice_tmp" ]] || rm -f "$notice_tmp"
}
trap cleanup EXIT

# The token goes to curl through a header file, not the command line, so it never shows in
# the process list or in build logs; the file is removed on exit (and the Dockerfile puts /tmp
# on a tmpfs for this step, so it cannot reach a layer either).
ensure_header_file() {
    [[ -n "$header_file" ]] && return 0
    [[ -s "$token_file" ]] || return 1
    header_file=$(mktemp)
    chmod 600 "$header_file"
    printf 'Authorization: Bearer %s\n' "$(tr -d '\r\n' <"$token_file")" >"$header_file"
}

verified() { # file size sha256
    [[ -f "$1" ]] && [[ "$(stat -c %s "$1")" == "$2" ]] &&
        echo "$3  $1" | sha256sum --check --status
}

fetch_one() { # url out size sha256 gated
    local url=$1 out=$2 size=$3 sha=$4 gated=$5
    local part="$out.part" attempt
    local -a auth=()
    if verified "$out" "$size" "$sha"; then
        say "$out is already present and verified"
        return 0
    fi
    if [[ "$gated" == "yes" ]]; then
        ensure_header_file || die "$(basename "$out") is gated: accept its terms on Hugging" \
            "Face, then build with --secret id=hf_token,src=<file holding your token>"
        auth=(--header "@$header_file")
    fi
    mkdir -p "$(dirname "$out")"
    for ((attempt = 1; attempt <= attempts; attempt++)); do
        say "fetching $url (attempt $attempt of $attempts)"
        # curl retries transient network errors and resumes a partial file (-C -) itself;
        # this loop also covers a file that arrived complete but wrong, which starts over.
        if curl --fail --location --silent --show-error --connect-timeout 30 \
            --retry 5 --retry-delay "$delay" --retry-all-errors \
            --continue-at - "${auth[@]}" --output "$part" "$url"; then
            if verified "$part" "$size" "$sha"; then
                mv "$part" "$out"
                say "verified $out"
                return 0
            fi
            echo "fetch_models: $(basename "$out"): size or sha256 does not match," \
                "starting over" >&2
            rm -f "$part"
        else
            echo "fetch_models: $(basename "$out"): download failed" >&2
        fi
        ((attempt == attempts)) || sleep $((attempt * delay))
    done
    rm -f "$part"
    die "could not fetch a verified $(basename "$out") from $url"
}

# The table is parsed whole before anything is fetched, so a broken line fails at once with its
# line number. `read` with a tab IFS would merge two tabs into one separator (tab is IFS white
# space) and shift every later column; splitting on a non-white-space separator keeps an empty
# field empty, and counting the tabs catches missing or extra columns.
columns=(set folder file size sha256 gated url license license_url)
declare -a row_set=() row_folder=() row_file=() row_size=() row_sha=() row_gated=() row_url=()
declare -a row_license=() row_license_url=() row_line=()
line_no=0
while IFS= read -r line || [[ -n "$line" ]]; do
    line_no=$((line_no + 1))
    where="$tsv:$line_no"
    line=${line%$'\r'}
    [[ -z "${line//[[:space:]]/}" || "$line" == \#* ]] && continue
    tabs=${line//[^$'\t']/}
    ((${#tabs} == ${#columns[@]} - 1)) || die "$where: expected ${#columns[@]} tab-separated" \
        "columns (${columns[*]}), found $((${#tabs} + 1))"
    IFS=$'\x1f' read -r -a fields <<<"${line//$'\t'/$'\x1f'}"
    for i in "${!columns[@]}"; do
        value=${fields[i]:-}
        [[ -n "${value//[[:space:]]/}" ]] || die "$where: column ${columns[i]} is empty"
    done
    [[ "${fields[3]}" =~ ^[0-9]+$ ]] || die "$where: size '${fields[3]}' is not a number of bytes"
    [[ "${fields[4]}" =~ ^[0-9a-f]{64}$ ]] ||
        die "$where: sha256 '${fields[4]}' is not 64 hex digits"
    [[ "${fields[5]}" == yes || "${fields[5]}" == no ]] ||
        die "$where: gated must be yes or no, got '${fields[5]}'"
    row_set+=("${fields[0]}") row_folder+=("${fields[1]}") row_file+=("${fields[2]}")
    row_size+=("${fields[3]}") row_sha+=("${fields[4]}") row_gated+=("${fields[5]}")
    row_url+=("${fields[6]}") row_license+=("${fields[7]}") row_license_url+=("${fields[8]}")
    row_line+=("$line_no")
done <"$tsv"

known_sets=$(printf '%s\n' "${row_set[@]}" | sort -u | tr '\n' ' ')
IFS=',' read -ra wanted <<<"$model_sets"
for model_set in "${wanted[@]}"; do
    [[ " $known_sets " == *" $model_set "* ]] ||
        die "unknown MODEL_SET '$model_set' (known: none ${known_sets% })"
done

# A file can belong to several sets (a shared text encoder): it is fetched and counted once. Two
# lines that put different files at the same path would overwrite each other, so they fail.
declare -A line_of=() sha_of=()
declare -a fetched=() notice_lines=()
for model_set in "${wanted[@]}"; do
    for i in "${!row_set[@]}"; do
        [[ "${row_set[i]}" == "$model_set" ]] || continue
        path="${row_folder[i]}/${row_file[i]}"
        if [[ -n "${sha_of[$path]:-}" ]]; then
            [[ "${sha_of[$path]}" == "${row_sha[i]}" ]] ||
                die "$tsv:${row_line[i]}: $path is also on line ${line_of[$path]}" \
                    "with another sha256"
            continue
        fi
        sha_of[$path]=${row_sha[i]}
        line_of[$path]=${row_line[i]}
        fetch_one "${row_url[i]}" "$dest/$path" "${row_size[i]}" "${row_sha[i]}" "${row_gated[i]}"
        fetched+=("$path")
        notice_lines+=("$(printf '%s\t%s\t%s\t%s' "$path" "${row_license[i]}" \
            "${row_license_url[i]}" "${row_url[i]}")")
    done
done

# The notice holds one line per file in DEST_DIR: this run's files replace their old lines, and
# lines of files fetched by an earlier run (another set into the same directory) are kept, so
# fetching again never repeats a line. Written beside the target and renamed, so it is never
# seen half written.
notice="$dest/MODEL_LICENSES.txt"
notice_tmp=$(mktemp "$dest/.MODEL_LICENSES.XXXXXX")
{
    if [[ -f "$notice" ]]; then
        while IFS= read -r old || [[ -n "$old" ]]; do
            old_path=${old%%$'\t'*}
            if [[ -n "$old_path" && -z "${sha_of[$old_path]:-}" ]]; then
                printf '%s\n' "$old"
            fi
        done <"$notice"
    fi
    if ((${#notice_lines[@]} > 0)); then
        printf '%s\n' "${notice_lines[@]}"
    fi
} | sort -u >"$notice_tmp"
chmod 644 "$notice_tmp"
mv "$notice_tmp" "$notice"
say "done: ${#fetched[@]} file(s) of $model_sets; $(wc -l <"$notice") file(s) listed in $notice"

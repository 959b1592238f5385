#!/usr/bin/env bash
# Download the files of one or more model sets (docker/models.tsv) into a models directory,
# each verified by size and sha256, and write a licence notice beside them.
#
# Usage: fetch_models.sh MODEL_SET DEST_DIR [MODELS_TSV]
#   MODEL_SET   a set name from the tsv, several joined by commas, or "none"
#   DEST_DIR    the models directory (files land in DEST_DIR/<folder>/<file>)
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
cleanup() { [[ -z "$header_file" ]] || rm -f "$header_file"; }
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
            echo "fetch_models: $(basename "$out"): size or sha256 does not match, starting over" >&2
            rm -f "$part"
        else
            echo "fetch_models: $(basename "$out"): download failed" >&2
        fi
        ((attempt == attempts)) || sleep $((attempt * delay))
    done
    rm -f "$part"
    die "could not fetch a verified $(basename "$out") from $url"
}

known_sets=$(awk -F'\t' '!/^#/ && NF { print $1 }' "$tsv" | sort -u | tr '\n' ' ')
IFS=',' read -ra wanted <<<"$model_sets"
notice="$dest/MODEL_LICENSES.txt"
for model_set in "${wanted[@]}"; do
    [[ " $known_sets " == *" $model_set "* ]] ||
        die "unknown MODEL_SET '$model_set' (known: none ${known_sets% })"
    while IFS=$'\t' read -r set folder file size sha gated url license license_url; do
        [[ -z "$set" || "$set" == \#* || "$set" != "$model_set" ]] && continue
        [[ "$sha" =~ ^[0-9a-f]{64}$ ]] || die "$file: sha256 in $tsv is not 64 hex digits"
        fetch_one "$url" "$dest/$folder/$file" "$size" "$sha" "$gated"
        printf '%s/%s\t%s\t%s\t%s\n' "$folder" "$file" "$license" "$license_url" "$url" >>"$notice"
    done <"$tsv"
done
say "done: $(wc -l <"$notice") file(s); licences in $notice"

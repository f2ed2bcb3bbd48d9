#!/usr/bin/env bash
# Fetches the public datasets the demo migrates from the npm package vega-datasets, and prints the
# folder that holds them.
#
# Usage: scripts/fetch-datasets.sh
#
# The package is downloaded with `npm pack` (no install scripts run, no dependencies come along),
# its sha512 is checked against the value pinned below, and only the files the demo reads are
# extracted into .tools/datasets/vega-datasets-<version>/ (ignored by git). A second run finds
# them there and downloads nothing. Progress goes to stderr; the only line on stdout is the path
# of the data folder, so callers can write data_dir="$(scripts/fetch-datasets.sh)".
set -euo pipefail

# vega-datasets is published under the BSD-3-Clause license. 3.2.1 was the newest release when
# the demo was written; its data/flights-200k.json holds 200,000 {delay, distance, time} records.
VEGA_DATASETS_VERSION="3.2.1"
# The registry's dist.integrity for that version (npm view vega-datasets@3.2.1 dist.integrity).
VEGA_DATASETS_INTEGRITY="sha512-lTSwZA6yq6qSU2YZm+6bqILiIvTPPxn4itir7jPGFmHIdPvUfQ9pCzzcrklYywMJgLUbaIeSkZQdiJd6wBxPug=="
FILES=(package/README.md package/data/movies.json package/data/flights-200k.json package/data/earthquakes.json)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/.tools/datasets/vega-datasets-$VEGA_DATASETS_VERSION"
marker="$dest/.complete"

if [[ -f "$marker" ]]; then
    echo "$dest/data"
    exit 0
fi

for tool in npm node tar; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is not installed; the dataset fetch needs npm, node and tar" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "downloading vega-datasets@$VEGA_DATASETS_VERSION from the npm registry" >&2
(cd "$work" && npm pack --loglevel=error "vega-datasets@$VEGA_DATASETS_VERSION" >/dev/null)
tarball="$work/vega-datasets-$VEGA_DATASETS_VERSION.tgz"
if [[ ! -f "$tarball" ]]; then
    echo "error: npm pack did not produce $tarball" >&2
    exit 1
fi

# Compute the sha512 here rather than trusting npm's report, so a corrupted or altered npm cache
# cannot slip past the pin.
actual="sha512-$(node -e '
    const data = require("fs").readFileSync(process.argv[1]);
    process.stdout.write(require("crypto").createHash("sha512").update(data).digest("base64"));
' "$tarball")"
if [[ "$actual" != "$VEGA_DATASETS_INTEGRITY" ]]; then
    echo "error: vega-datasets-$VEGA_DATASETS_VERSION.tgz has integrity $actual," \
        "expected $VEGA_DATASETS_INTEGRITY; refusing to use it" >&2
    exit 1
fi

rm -rf "$dest"
mkdir -p "$dest"
tar -xzf "$tarball" -C "$dest" --strip-components=1 "${FILES[@]}"
touch "$marker"
echo "extracted ${#FILES[@]} files into $dest" >&2
echo "$dest/data"

#!/usr/bin/env bash
# Installs what the monitor page's browser test needs, idempotently:
#   - Debian's chromium package (apt-get), at /usr/bin/chromium;
#   - playwright-core from npm into .tools/playwright (ignored by git).
#
# playwright-core drives an existing browser and downloads none, so it works where only package
# registries are reachable. Prints the path of the installed node_modules folder on success.
set -euo pipefail

# playwright-core 1.49 still supports Node.js 18 and 20.
PLAYWRIGHT_VERSION="1.49.1"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/.tools/playwright"

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "chromium is missing and installing it needs root: run apt-get install chromium" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium >&2
fi

if [ ! -f "$tools_dir/node_modules/playwright-core/package.json" ] ||
    ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$tools_dir/node_modules/playwright-core/package.json"; then
    mkdir -p "$tools_dir"
    (cd "$tools_dir" && npm install --no-save --no-audit --no-fund --loglevel=error \
        "playwright-core@$PLAYWRIGHT_VERSION" >&2)
fi

echo "$tools_dir/node_modules"

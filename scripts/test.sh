#!/usr/bin/env bash
# Runs the whole test suite: starts Azurite (installing it on first use), runs every workspace
# test against it and the in-process MongoDB emulator, then stops Azurite.
#
# Environment:
#   MONGODB_TEST_URI   also run the emulator conformance suite against this real server
#   AZURITE_*_PORT     Azurite ports (see scripts/azurite.sh)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# shellcheck source=scripts/azurite-env.sh
source scripts/azurite-env.sh
export VCM_TEST_STORAGE="$AZURITE_CONNECTION_STRING"

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi

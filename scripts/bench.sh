#!/usr/bin/env bash
# Runs the copy benchmark: builds release binaries, starts Azurite, and copies documents
# emulator to emulator with a raw driver pipe and through the service.
#
# Usage: scripts/bench.sh [--documents N] [--parallel N] [--rounds N]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

cargo build --release -p vcore-migrate -p mongo-emulator -p vcore-migrate-bench

# shellcheck source=scripts/azurite-env.sh
source scripts/azurite-env.sh
export VCM_BENCH_STORAGE="$AZURITE_CONNECTION_STRING"

# cargo metadata reports the target directory, including CARGO_TARGET_DIR and a target-dir
# set in .cargo/config.toml.
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-${CARGO_TARGET_DIR:-target}}

"$target_dir/release/bench-copy" --bin-dir "$target_dir/release" "$@"

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

# shellcheck source=scripts/target-dir.sh
source scripts/target-dir.sh
target_dir=$(cargo_target_dir "$PWD")

"$target_dir/release/bench-copy" --bin-dir "$target_dir/release" "$@"

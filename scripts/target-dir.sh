# Sourced by scripts that run what cargo built (scripts/bench.sh, scripts/package.sh).
#
# Defines cargo_target_dir, which prints cargo's target directory for the repository at $1.
# cargo metadata reports it with CARGO_TARGET_DIR and a target-dir from .cargo/config.toml
# applied. When cargo metadata fails, the function falls back to CARGO_TARGET_DIR, then to
# $1/target.

cargo_target_dir() {
    local root="$1" dir
    dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    echo "${dir:-${CARGO_TARGET_DIR:-$root/target}}"
}

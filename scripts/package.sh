#!/usr/bin/env bash
# Build the Azure Functions deployment package: a static Linux x86-64 release
# binary plus host.json, one folder per function and the start-up wrapper.
#
# Usage: scripts/package.sh [--out FILE] [--binary FILE]
#   --out FILE     zip to write (default: target/package/vcore-migrate.zip)
#   --binary FILE  package this binary instead of building one (it must still
#                  be a static x86-64 executable)
#
# The binary is linked with `-C target-feature=+crt-static` on the installed
# x86_64-unknown-linux-gnu target, so it needs nothing from the host image but
# the kernel. That works because the service uses rustls (no OpenSSL) and the
# MongoDB driver's own DNS resolver (no NSS lookups at run time).
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
target_triple=x86_64-unknown-linux-gnu
out="$repo_root/target/package/vcore-migrate.zip"
binary=""

while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

for tool in zip file; do
    if ! command -v "$tool" >/dev/null; then
        echo "package.sh: '$tool' is required (Debian: apt-get install $tool)" >&2
        exit 1
    fi
done

if [ -z "$binary" ]; then
    # shellcheck source=scripts/target-dir.sh
    source "$repo_root/scripts/target-dir.sh"
    target_dir=$(cargo_target_dir "$repo_root")
    # --target keeps these flags away from build scripts and proc macros, which
    # must stay dynamically linked because cargo loads them into rustc.
    echo "package.sh: building the static release binary (target dir $target_dir)" >&2
    (
        cd "$repo_root"
        RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
            cargo build --release --locked --target "$target_triple" --bin vcore-migrate
    )
    binary="$target_dir/$target_triple/release/vcore-migrate"
fi

if [ ! -f "$binary" ]; then
    echo "package.sh: binary '$binary' not found" >&2
    exit 1
fi

# The Functions Linux image has no guaranteed glibc version for custom
# handlers, so reject a dynamically linked binary instead of shipping it.
description=$(file -b "$binary")
case "$description" in
    *x86-64*) ;;
    *) echo "package.sh: '$binary' is not an x86-64 executable: $description" >&2; exit 1 ;;
esac
case "$description" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) echo "package.sh: '$binary' is dynamically linked: $description" >&2; exit 1 ;;
esac

staging=$(mktemp -d "${TMPDIR:-/tmp}/vcm-package.XXXXXX")
trap 'rm -rf "$staging" "$staging.zip"' EXIT

cp "$repo_root/host.json" "$staging/host.json"
for function_dir in "$repo_root"/handlers/*/; do
    name=$(basename "$function_dir")
    if [ ! -f "$function_dir/function.json" ]; then
        echo "package.sh: handlers/$name has no function.json" >&2
        exit 1
    fi
    mkdir "$staging/$name"
    cp "$function_dir/function.json" "$staging/$name/function.json"
done
install -m 0755 "$repo_root/scripts/functions-start.sh" "$staging/start.sh"
install -m 0755 "$binary" "$staging/vcore-migrate"

mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
# zip records Unix mode bits, so the executable bits survive where the
# platform honours them. start.sh covers the platforms that do not.
(cd "$staging" && zip -q -X -r "$staging.zip" .)
# A rename replaces the zip atomically, so a concurrent run (parallel tests)
# never reads a half-written file.
mv -f "$staging.zip" "$out"

echo "package.sh: wrote $out ($(du -h "$out" | cut -f1))" >&2
echo "$out"

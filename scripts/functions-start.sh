#!/bin/sh
# Start-up wrapper that the Azure Functions host runs as `/bin/sh start.sh serve`
# (see host.json). Packaging copies it to the package root as start.sh.
#
# Flex Consumption mounts the deployment zip read-only, and some upload paths
# drop the Unix mode bits of zip entries, so the packaged binary can arrive
# without its executable bit and cannot be chmod-ed in place. The host starts
# /bin/sh instead of the binary, so this script runs either way. It executes
# the binary directly when it is executable. Otherwise it copies the binary to
# a writable temporary directory, sets the bit there and executes the copy.
set -eu

app_root=$(cd "$(dirname "$0")" && pwd)
binary="$app_root/vcore-migrate"

if [ ! -f "$binary" ]; then
    echo "start.sh: $binary is missing from the deployment package" >&2
    exit 1
fi

if [ ! -x "$binary" ]; then
    copy_dir=$(mktemp -d "${TMPDIR:-/tmp}/vcore-migrate.XXXXXX")
    cp "$binary" "$copy_dir/vcore-migrate"
    chmod 0755 "$copy_dir/vcore-migrate"
    binary="$copy_dir/vcore-migrate"
fi

exec "$binary" "$@"

#!/usr/bin/env bash
# Runs the end-to-end demo: migrates public datasets and a BSON type corpus from an emulated
# Cosmos DB for MongoDB (RU) account to an emulated vCore cluster with vcore-migrate, and checks
# that every collection arrived byte for byte. By default the job is online: a live workload
# writes to the source during the copy and replication, then the demo cuts over
# (--mode offline runs an offline job).
#
# Usage: scripts/demo.sh [demo options]   (scripts/demo.sh --help lists them)
#
# On first run it downloads the datasets (npm package vega-datasets) and Azurite into .tools/,
# which git ignores. It starts Azurite on free ports of 127.0.0.1, runs the demo binary in release
# mode, and stops Azurite when it exits, whether the demo passed, failed or was interrupted. The
# exit code is the demo's: 0 only when the job completed and every target collection is
# identical to its source.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

for tool in cargo node npm; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is not installed; the demo needs Rust (cargo) and Node.js (node, npm)" >&2
        exit 2
    fi
done
if [[ ! -x scripts/azurite.sh ]]; then
    echo "error: scripts/azurite.sh is missing; it installs and starts Azurite for the demo" >&2
    exit 2
fi

if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then
    exec cargo run --quiet --release -p vcore-migrate-demo -- --help
fi

# The demo's Azurite has its own pid file, so an Azurite started for the tests can keep running.
export AZURITE_INSTANCE="demo-$$"

data_dir="$(scripts/fetch-datasets.sh)"

# Ask the kernel for three free ports, so the demo does not collide with an Azurite on the default
# ports.
read -r blob_port queue_port table_port < <(node -e '
    const net = require("net");
    const servers = [0, 1, 2].map(() => net.createServer());
    Promise.all(servers.map((server) => new Promise((resolve) => {
        server.listen(0, "127.0.0.1", () => resolve(server.address().port));
    }))).then((ports) => {
        console.log(ports.join(" "));
        servers.forEach((server) => server.close());
    });
')
export AZURITE_BLOB_PORT="$blob_port" AZURITE_QUEUE_PORT="$queue_port" AZURITE_TABLE_PORT="$table_port"

stop_azurite() {
    local status=$?
    scripts/azurite.sh stop >&2 || echo "warning: stopping Azurite failed; run AZURITE_INSTANCE=$AZURITE_INSTANCE scripts/azurite.sh stop" >&2
    exit "$status"
}
trap stop_azurite EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

scripts/azurite.sh start >&2

echo "building the demo in release mode; a first build takes 5 to 20 minutes on 2 cores, with cargo's progress below" >&2
cargo build --release -p vcore-migrate-demo
cargo run --quiet --release -p vcore-migrate-demo -- --data-dir "$data_dir" "$@"

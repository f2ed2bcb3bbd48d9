#!/usr/bin/env bash
# Runs the copy benchmark: builds release binaries, starts Azurite, and copies documents
# emulator to emulator with a raw driver pipe and through the service.
#
# Usage: scripts/bench.sh [--documents N] [--parallel N] [--rounds N]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

cargo build --release -p vcore-migrate -p mongo-emulator -p vcore-migrate-bench

port_accepts() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# An Azurite that already accepts connections on the queue and table ports is used as it is,
# even one this script did not start. Otherwise this script starts one and stops it at exit.
started_azurite=0
if ! port_accepts "${AZURITE_QUEUE_PORT:-10001}" || ! port_accepts "${AZURITE_TABLE_PORT:-10002}"; then
    scripts/azurite.sh start
    started_azurite=1
fi
cleanup() {
    if [[ "$started_azurite" == 1 ]]; then
        scripts/azurite.sh stop || true
    fi
}
trap cleanup EXIT

queue_port="${AZURITE_QUEUE_PORT:-10001}"
table_port="${AZURITE_TABLE_PORT:-10002}"
blob_port="${AZURITE_BLOB_PORT:-10000}"
account_key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
export VCM_BENCH_STORAGE="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${account_key};BlobEndpoint=http://127.0.0.1:${blob_port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:${queue_port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:${table_port}/devstoreaccount1;"

target/release/bench-copy --bin-dir target/release "$@"

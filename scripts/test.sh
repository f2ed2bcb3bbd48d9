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

port_answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# An Azurite that already answers on the queue and table ports is used as it is, whoever
# started it; otherwise this script starts one and stops it at exit.
started_azurite=0
if ! port_answers "${AZURITE_QUEUE_PORT:-10001}" || ! port_answers "${AZURITE_TABLE_PORT:-10002}"; then
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
export VCM_TEST_STORAGE="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${account_key};BlobEndpoint=http://127.0.0.1:${blob_port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:${queue_port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:${table_port}/devstoreaccount1;"

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi

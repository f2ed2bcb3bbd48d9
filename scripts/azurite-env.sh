# Sourced by scripts that need Azurite (scripts/test.sh, scripts/bench.sh).
#
# Uses an Azurite that already accepts connections on the queue and table ports, even one this
# script did not start.
# Otherwise starts one with scripts/azurite.sh and stops it when the sourcing script exits.
# Sets AZURITE_CONNECTION_STRING to the storage connection string of that Azurite.
#
# Environment: AZURITE_BLOB_PORT, AZURITE_QUEUE_PORT, AZURITE_TABLE_PORT (see scripts/azurite.sh).

azurite_port_answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

azurite_queue_port="${AZURITE_QUEUE_PORT:-10001}"
azurite_table_port="${AZURITE_TABLE_PORT:-10002}"
azurite_blob_port="${AZURITE_BLOB_PORT:-10000}"

azurite_started_here=0
if ! azurite_port_answers "$azurite_queue_port" || ! azurite_port_answers "$azurite_table_port"; then
    "$(dirname "${BASH_SOURCE[0]}")/azurite.sh" start
    azurite_started_here=1
fi

azurite_stop_if_started_here() {
    if [[ "$azurite_started_here" == 1 ]]; then
        "$(dirname "${BASH_SOURCE[0]}")/azurite.sh" stop || true
    fi
}
trap azurite_stop_if_started_here EXIT

# The well-known key of Azurite's development account, published in Azurite's documentation.
azurite_account_key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${azurite_account_key};BlobEndpoint=http://127.0.0.1:${azurite_blob_port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:${azurite_queue_port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:${azurite_table_port}/devstoreaccount1;"

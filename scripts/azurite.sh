#!/usr/bin/env bash
# Starts, stops or reports on a local Azurite (Azure Storage emulator) for tests and the demo.
#
# Usage: scripts/azurite.sh start|stop|status
#
# Azurite is installed from npm into .tools/azurite (ignored by git) on first use. It listens on
# 127.0.0.1 only, keeps its data in memory, and runs in the background; its pid goes to
# .tools/azurite/<instance>.pid and its output to .tools/azurite/<instance>.log.
#
# Environment:
#   AZURITE_INSTANCE    name of this instance's pid and log files (default azurite); instances
#                       with different names and ports run side by side
#   AZURITE_BLOB_PORT   blob service port (default 10000)
#   AZURITE_QUEUE_PORT  queue service port (default 10001)
#   AZURITE_TABLE_PORT  table service port (default 10002)
#   AZURITE_START_TIMEOUT  seconds to wait for the queue and table ports to accept connections (default 60)
set -euo pipefail

# 3.35.0 is the newest release whose package.json accepts Node.js 20, because 3.36.0 requires Node.js 21 or later.
AZURITE_VERSION="3.35.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/.tools/azurite"
instance="${AZURITE_INSTANCE:-azurite}"
if [[ ! "$instance" =~ ^[A-Za-z0-9_-]+$ ]]; then
    echo "error: invalid AZURITE_INSTANCE '$instance': use only letters, digits, - and _" >&2
    exit 2
fi
pid_file="$tools_dir/$instance.pid"
log_file="$tools_dir/$instance.log"
bin="$tools_dir/node_modules/.bin/azurite"

blob_port="${AZURITE_BLOB_PORT:-10000}"
queue_port="${AZURITE_QUEUE_PORT:-10001}"
table_port="${AZURITE_TABLE_PORT:-10002}"
start_timeout="${AZURITE_START_TIMEOUT:-60}"

port_accepts() {
    # Bash's /dev/tcp opens a TCP connection without needing nc or curl.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running_pid() {
    if [[ -f "$pid_file" ]]; then
        local pid
        pid="$(cat "$pid_file")"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$pid"
            return 0
        fi
    fi
    return 1
}

install_azurite() {
    local installed=""
    if [[ -f "$tools_dir/node_modules/azurite/package.json" ]]; then
        installed="$(node -p "require('$tools_dir/node_modules/azurite/package.json').version")"
    fi
    if [[ "$installed" != "$AZURITE_VERSION" ]]; then
        echo "installing azurite@$AZURITE_VERSION into $tools_dir" >&2
        mkdir -p "$tools_dir"
        npm install --prefix "$tools_dir" --no-audit --no-fund --loglevel=error \
            "azurite@$AZURITE_VERSION" >&2
    fi
}

start() {
    local pid
    if pid="$(running_pid)"; then
        echo "azurite already running (pid $pid)"
        return 0
    fi
    for port in "$blob_port" "$queue_port" "$table_port"; do
        if port_accepts "$port"; then
            echo "error: port $port on 127.0.0.1 is already in use by another process;" \
                "set AZURITE_BLOB_PORT, AZURITE_QUEUE_PORT and AZURITE_TABLE_PORT to free ports" >&2
            return 1
        fi
    done

    install_azurite
    # setsid puts Azurite in its own session so it outlives the shell that started it. It runs from
    # the tools folder so that any file it writes stays out of the work tree.
    (cd "$tools_dir" && exec setsid "$bin" \
        --blobHost 127.0.0.1 --blobPort "$blob_port" \
        --queueHost 127.0.0.1 --queuePort "$queue_port" \
        --tableHost 127.0.0.1 --tablePort "$table_port" \
        --disableTelemetry --inMemoryPersistence --skipApiVersionCheck --loose --silent \
        >"$log_file" 2>&1 </dev/null) &
    pid=$!
    echo "$pid" >"$pid_file"

    local waited=0
    until port_accepts "$queue_port" && port_accepts "$table_port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: azurite exited during start; see $log_file" >&2
            rm -f "$pid_file"
            return 1
        fi
        if ((waited >= start_timeout * 10)); then
            echo "error: azurite did not accept connections on ports $queue_port and $table_port within" \
                "${start_timeout}s; see $log_file" >&2
            kill "$pid" 2>/dev/null || true
            rm -f "$pid_file"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "azurite started (pid $pid; blob $blob_port, queue $queue_port, table $table_port)"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        echo "azurite not running"
        rm -f "$pid_file"
        return 0
    fi
    kill "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "azurite (pid $pid) did not stop within 10s; sending SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
    echo "azurite stopped (pid $pid)"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        echo "azurite running (pid $pid)"
    else
        echo "azurite not running"
        return 3
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac

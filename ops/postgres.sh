#!/usr/bin/env bash
# A throw-away local PostgreSQL for tests and benchmarks: installs the Debian package when
# missing, then starts (or stops) a cluster listening only on a Unix socket and loopback.
#
#   bash ops/postgres.sh start    # prints the connection string
#   bash ops/postgres.sh stop
#
# MUSTER_PG_DIR (default /tmp/muster-pg) holds the cluster; MUSTER_PG_PORT (default 54329).
set -euo pipefail
dir=${MUSTER_PG_DIR:-/tmp/muster-pg}
port=${MUSTER_PG_PORT:-54329}

bin_dir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && echo "$d"
}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
start)
    if [ -z "$(bin_dir)" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq postgresql >/dev/null
    fi
    bin=$(bin_dir)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
    fi
    if ! as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on -c max_connections=200" start >/dev/null
    fi
    echo "host=$dir port=$port user=postgres dbname=postgres"
    ;;
stop)
    bin=$(bin_dir)
    if [ -n "$bin" ] && [ -f "$dir/data/PG_VERSION" ]; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac

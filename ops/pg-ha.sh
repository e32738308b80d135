#!/usr/bin/env bash
# A throw-away PostgreSQL 15 primary with a synchronous standby on this one machine, for tests
# and for the "several nodes" setup: two clusters (node a and node b) listening on loopback only.
# Installs the Debian package when missing; runs the servers as the postgres user when root.
#
#   bash ops/pg-ha.sh start         # idempotent: creates and starts what is missing, waits until the
#                                   # standby streams and is `sync`, prints the multi-host URL
#   bash ops/pg-ha.sh stop          # fast stop of both nodes (missing or stopped ones are fine)
#   bash ops/pg-ha.sh status        # which node is primary, which standby, the replication state
#   bash ops/pg-ha.sh kill-primary  # SIGKILL the current primary's postmaster (from postmaster.pid)
#   bash ops/pg-ha.sh promote       # promote the standby; waits until pg_is_in_recovery() is false
#   bash ops/pg-ha.sh rebuild       # after a failover: the old primary becomes a standby of the new
#                                   # one (pg_rewind, else a fresh pg_basebackup); waits until `sync`
#   bash ops/pg-ha.sh reset         # stop both nodes and delete them
#
# A failover round:  kill-primary; promote; rebuild  (start would also do what rebuild does).
#
# MUSTER_PG_HA_DIR (default /tmp/muster-pg-ha) holds the nodes' data directories (a/ and b/),
# their logs (a.log, b.log) and their Unix sockets. MUSTER_PG_HA_PORTS (default "54331 54332")
# are node a's and node b's ports. MUSTER_PG_HA_TIMEOUT (default 60) bounds every wait, in seconds.
#
# The roles swap at each failover, so nothing here assumes node a is the primary: a running node is
# asked (pg_is_in_recovery()); a stopped one is a standby when it has standby.signal, and when both
# stopped nodes look like primaries the one on the later timeline wins (the other gets rebuilt).
#
# Synchronous replication: the primary has synchronous_standby_names = the standby's
# application_name (node_a or node_b, set in primary_conninfo) and synchronous_commit = on, so a
# commit returns only once the standby has flushed it. The trade-off: `promote` clears
# synchronous_standby_names on the new primary, because with no standby attached every commit would
# wait forever; so between `promote` and `rebuild` the cluster runs WITHOUT a synchronous standby (a
# commit acknowledged then lives on one node only). `rebuild` names the new standby again and waits
# until it is `sync`.
set -euo pipefail

dir=${MUSTER_PG_HA_DIR:-/tmp/muster-pg-ha}
read -r port_a port_b extra <<<"${MUSTER_PG_HA_PORTS:-54331 54332}" || true
timeout=${MUSTER_PG_HA_TIMEOUT:-60}
bin=/usr/lib/postgresql/15/bin

die() {
    echo "pg-ha: $*" >&2
    exit 1
}

[[ ${port_a:-} =~ ^[0-9]+$ && ${port_b:-} =~ ^[0-9]+$ && -z ${extra:-} && $port_a != "$port_b" ]] ||
    die "MUSTER_PG_HA_PORTS must be two different port numbers, e.g. \"54331 54332\" (got \"${MUSTER_PG_HA_PORTS:-}\")"
[[ $timeout =~ ^[0-9]+$ ]] || die "MUSTER_PG_HA_TIMEOUT must be a number of seconds (got \"$timeout\")"
[[ $dir == /* ]] || dir=$PWD/$dir
[[ $dir != *[[:space:]\'\"]* ]] || die "MUSTER_PG_HA_DIR must not contain spaces or quotes (got \"$dir\")"

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_installed() {
    if [ ! -x "$bin/pg_ctl" ]; then
        [ "$(id -u)" = 0 ] || die "PostgreSQL 15 is not installed ($bin) and installing it needs root"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq postgresql-15 >/dev/null || die "apt-get install postgresql-15 failed"
        [ -x "$bin/pg_ctl" ] || die "postgresql-15 installed but $bin/pg_ctl is missing"
    fi
}

# --- nodes -------------------------------------------------------------------------------------

port_of() { if [ "$1" = a ]; then echo "$port_a"; else echo "$port_b"; fi; }
other() { if [ "$1" = a ]; then echo b; else echo a; fi; }
data() { echo "$dir/$1"; }
app() { echo "node_$1"; } # the node's application_name when it is a standby
desc() { echo "node $1 (127.0.0.1:$(port_of "$1"))"; }
exists() { [ -f "$(data "$1")/PG_VERSION" ]; }
has_signal() { [ -f "$(data "$1")/standby.signal" ]; }

# The postmaster is alive (pg_ctl checks the pid in postmaster.pid).
running() { exists "$1" && as_pg "$bin/pg_ctl" -D "$(data "$1")" status >/dev/null 2>&1; }

# One query on a node over loopback; prints the unaligned result.
q() {
    PGCONNECT_TIMEOUT=5 "$bin/psql" -X -Atq -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(port_of "$1")" \
        -U postgres -d postgres -c "$2"
}

# primary | standby | down (not running or not answering)
role() {
    local r
    running "$1" || { echo down; return; }
    r=$(q "$1" "SELECT pg_is_in_recovery()" 2>/dev/null) || { echo down; return; }
    if [ "$r" = f ]; then echo primary; elif [ "$r" = t ]; then echo standby; else echo down; fi
}

is_role() { [ "$(role "$1")" = "$2" ]; }

timeline() {
    LC_ALL=C as_pg "$bin/pg_controldata" -D "$(data "$1")" |
        sed -n "s/^Latest checkpoint's TimeLineID: *//p"
}

# Processes of a node (postmaster and backends all run with the data directory as cwd).
procs() {
    local d p
    d=$(readlink -f "$(data "$1")")
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/cwd" 2>/dev/null)" = "$d" ]; then echo "${p#/proc/}"; fi
    done
}
# The postmaster named in postmaster.pid still exists, alive or as a zombie its parent has not
# reaped yet: PostgreSQL (and pg_rewind's single-user crash recovery) would then refuse to start
# ("lock file postmaster.pid already exists"), as kill(pid, 0) succeeds on a zombie.
postmaster_lingers() {
    local d pid
    d=$(data "$1")
    pid=$(head -n 1 "$d/postmaster.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || return 1
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$d")" ] ||
        [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]
}
gone() { ! postmaster_lingers "$1" && [ -z "$(procs "$1")" ]; }

# wait_for DESCRIPTION COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
    local what=$1 deadline=$((SECONDS + timeout))
    shift
    until "$@"; do
        if ((SECONDS >= deadline)); then die "timed out after ${timeout}s waiting for $what"; fi
        sleep 0.1
    done
}

log_hint() { echo "see $dir/$1.log"; }

start_node() {
    local n=$1
    running "$n" && return 0
    local out
    wait_for "the old processes of $(desc "$n") to exit" gone "$n"
    # (pg_ctl's "another server might be running" after a kill is expected: the pid file is stale)
    out=$(as_pg "$bin/pg_ctl" -D "$(data "$n")" -l "$dir/$n.log" -w -t "$timeout" \
        -o "-p $(port_of "$n") -k '$dir' -c cluster_name=$(app "$n")" start 2>&1) ||
        die "could not start $(desc "$n"): $out; $(log_hint "$n")"
    wait_for "$(desc "$n") to accept connections" answers "$n"
}
answers() { q "$1" "SELECT 1" >/dev/null 2>&1; }

stop_node() {
    if running "$1"; then
        as_pg "$bin/pg_ctl" -D "$(data "$1")" -m fast -w -t "$timeout" stop >/dev/null ||
            die "could not stop $(desc "$1"); $(log_hint "$1")"
    fi
}

init_primary() {
    local n=$1 d
    d=$(data "$n")
    as_pg "$bin/initdb" -D "$d" -U postgres --auth=trust >"$dir/$n.initdb.log" 2>&1 ||
        die "initdb of $(desc "$n") failed; see $dir/$n.initdb.log"
    # Copied to the standby by pg_basebackup and pg_rewind, so both nodes share them. The port, the
    # socket directory and cluster_name are per node: they go on the command line (start_node).
    as_pg tee -a "$d/postgresql.conf" >/dev/null <<'EOF'

# --- ops/pg-ha.sh ---
listen_addresses = '127.0.0.1'
max_connections = 200
fsync = on
synchronous_commit = on
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 512MB          # lets a rewound or lagging standby catch up from the primary
hot_standby = on
wal_log_hints = on             # pg_rewind needs it (or data checksums)
wal_receiver_status_interval = 1s
EOF
    # TEST ONLY: anyone on loopback may connect, and replicate, as any user without a password.
    as_pg tee "$d/pg_hba.conf" >/dev/null <<'EOF'
# ops/pg-ha.sh -- TEST ONLY: trust on the Unix socket and loopback, for clients and replication.
local   all             all                     trust
host    all             all     127.0.0.1/32    trust
local   replication     all                     trust
host    replication     all     127.0.0.1/32    trust
EOF
}

# The conninfo a standby N uses to reach the primary P (also primary_conninfo, through -R).
upstream() { echo "host=127.0.0.1 port=$(port_of "$2") user=postgres application_name=$(app "$1")"; }

# A standby's own copy of synchronous_standby_names must be empty, or the moment it is promoted
# every commit on it waits for a standby that is not there (promote clears it as well).
clear_sync_names() {
    q "$1" "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null &&
        q "$1" "SELECT pg_reload_conf()" >/dev/null ||
        die "could not clear synchronous_standby_names on $(desc "$1")"
}

# Fresh copy of the primary P into node N, as a standby.
basebackup() {
    local n=$1 p=$2
    rm -rf "$(data "$n")"
    as_pg "$bin/pg_basebackup" -D "$(data "$n")" -d "$(upstream "$n" "$p")" -R -X stream -c fast \
        >"$dir/$n.basebackup.log" 2>&1 ||
        die "pg_basebackup of $(desc "$n") from $(desc "$p") failed; see $dir/$n.basebackup.log"
}

# Node N (stopped, not a standby: a former primary) becomes a standby of P: pg_rewind when it
# works, a fresh pg_basebackup otherwise.
rewind() {
    local n=$1 p=$2
    wait_for "the old processes of $(desc "$n") to exit" gone "$n"
    # The control file of a just-promoted primary names its new timeline only after a checkpoint;
    # pg_rewind reads it (and would otherwise say that no rewind is needed).
    q "$p" "CHECKPOINT" >/dev/null || die "CHECKPOINT on $(desc "$p") failed"
    if as_pg "$bin/pg_rewind" -D "$(data "$n")" --source-server="$(upstream "$n" "$p") dbname=postgres" \
        -R >"$dir/$n.rewind.log" 2>&1; then
        return 0
    fi
    echo "pg-ha: pg_rewind of $(desc "$n") failed (see $dir/$n.rewind.log); taking a fresh pg_basebackup" >&2
    basebackup "$n" "$p"
}

# Sets P (the primary) and S (the other node) from what the nodes say; see the header.
pick_primary() {
    local n ra rb
    ra=$(role a)
    rb=$(role b)
    if [ "$ra" = primary ] && [ "$rb" = primary ]; then
        die "both nodes run as primaries (split brain): stop the one to discard (pg_ctl -D $dir/<node> stop), then run rebuild"
    elif [ "$ra" = primary ]; then
        P=a
    elif [ "$rb" = primary ]; then
        P=b
    else
        local cands=()
        for n in a b; do
            # a running standby is a standby, whatever its files say
            if exists "$n" && ! has_signal "$n" && [ "$(role "$n")" != standby ]; then cands+=("$n"); fi
        done
        case ${#cands[@]} in
        1) P=${cands[0]} ;;
        2)
            local ta tb
            ta=$(timeline a)
            tb=$(timeline b)
            if ((ta > tb)); then P=a; elif ((tb > ta)); then P=b; else
                die "nodes a and b are both primaries on timeline $ta; cannot tell which one to keep (reset, or delete one of $dir/a $dir/b)"
            fi
            ;;
        *)
            if exists a || exists b; then
                die "no node is, or can become, the primary (both are standbys); promote one first"
            fi
            P=a
            ;;
        esac
    fi
    S=$(other "$P")
}

sync_ok() {
    [ "$(q "$1" "SELECT sync_state FROM pg_stat_replication
                 WHERE application_name = '$(app "$2")' AND state = 'streaming'" 2>/dev/null)" = sync ] &&
        [ "$(q "$2" "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" = streaming ]
}

# Standby S of primary P (both existing, P running): start S, name it in P's
# synchronous_standby_names, wait until it streams and is `sync`.
attach_standby() {
    local p=$1 s=$2 cur
    start_node "$s"
    [ "$(role "$s")" = standby ] || die "$(desc "$s") started but is not in recovery; $(log_hint "$s")"
    clear_sync_names "$s"
    cur=$(q "$p" "SHOW synchronous_standby_names") || die "cannot query $(desc "$p")"
    if [ "$cur" != "$(app "$s")" ]; then
        q "$p" "ALTER SYSTEM SET synchronous_standby_names = '$(app "$s")'" >/dev/null &&
            q "$p" "SELECT pg_reload_conf()" >/dev/null ||
            die "could not set synchronous_standby_names on $(desc "$p")"
    fi
    wait_for "$(desc "$s") to stream from $(desc "$p") as a sync standby ($(log_hint "$s"))" \
        sync_ok "$p" "$s"
}

# Everything up: the primary, then the standby (created, or rewound when it is an old primary).
converge() {
    local create=$1
    pick_primary
    if ! exists "$P"; then
        [ "$create" = yes ] || die "no cluster in $dir; run start first"
        init_primary "$P"
    fi
    start_node "$P"
    [ "$(role "$P")" = primary ] || die "$(desc "$P") should be the primary but is in recovery"
    if ! exists "$S"; then
        basebackup "$S" "$P"
    elif [ "$(role "$S")" = standby ]; then
        : # already a running standby
    elif ! has_signal "$S"; then
        rewind "$S" "$P" # an old primary
    fi
    attach_standby "$P" "$S"
}

url() {
    echo "postgresql://postgres@127.0.0.1:$port_a,127.0.0.1:$port_b/postgres?target_session_attrs=read-write"
}

# --- subcommands -------------------------------------------------------------------------------

cmd=${1:-}
case "$cmd" in
start)
    ensure_installed
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    converge yes
    url
    ;;
stop)
    [ -x "$bin/pg_ctl" ] || exit 0
    # The primary first: its shutdown checkpoint then reaches the standby.
    first=a
    if [ "$(role b)" = primary ]; then first=b; fi
    stop_node "$first"
    stop_node "$(other "$first")"
    ;;
status)
    [ -x "$bin/pg_ctl" ] || die "PostgreSQL 15 is not installed ($bin)"
    for n in a b; do
        if ! exists "$n"; then
            echo "$(desc "$n"): missing"
            continue
        fi
        r=$(role "$n")
        case $r in
        primary)
            echo "$(desc "$n"): primary, synchronous_standby_names='$(q "$n" "SHOW synchronous_standby_names")'"
            q "$n" "SELECT '  replication to ' || application_name || ': state=' || state || ' sync_state=' || sync_state
                    || ' replay_lag=' || coalesce(replay_lag::text, '0')
                    FROM pg_stat_replication ORDER BY application_name" || true
            ;;
        standby)
            echo "$(desc "$n"): standby, receiver=$(q "$n" "SELECT coalesce((SELECT status || ' from port ' || sender_port
                  FROM pg_stat_wal_receiver), 'not connected')")"
            ;;
        *)
            if has_signal "$n"; then w="a standby"; else w="a primary, or an old primary to rebuild"; fi
            echo "$(desc "$n"): down ($w)"
            ;;
        esac
    done
    ;;
kill-primary)
    [ -x "$bin/pg_ctl" ] || die "PostgreSQL 15 is not installed ($bin)"
    P=
    for n in a b; do if [ "$(role "$n")" = primary ]; then P=$n; fi; done
    [ -n "$P" ] || die "no running primary to kill"
    pid=$(head -n 1 "$(data "$P")/postmaster.pid" 2>/dev/null) || die "$(data "$P")/postmaster.pid is unreadable"
    [[ $pid =~ ^[0-9]+$ ]] || die "no pid in $(data "$P")/postmaster.pid"
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$(data "$P")")" ] ||
        die "pid $pid from $(data "$P")/postmaster.pid is not that node's postmaster"
    kill -KILL "$pid"
    # The backends notice the postmaster's death and exit on their own; wait for them, so that a
    # restart or pg_rewind does not find the old shared memory still in use.
    wait_for "the processes of $(desc "$P") to exit (and the parent of postmaster $pid to reap it)" gone "$P"
    echo "killed the primary, $(desc "$P"), postmaster pid $pid"
    ;;
promote)
    [ -x "$bin/pg_ctl" ] || die "PostgreSQL 15 is not installed ($bin)"
    S=
    for n in a b; do
        r=$(role "$n")
        if [ "$r" = primary ]; then
            die "$(desc "$n") is still running as the primary; kill-primary or stop it before promoting the standby"
        fi
        if [ "$r" = standby ]; then S=$n; fi
    done
    [ -n "$S" ] || die "no running standby to promote"
    as_pg "$bin/pg_ctl" -D "$(data "$S")" -w -t "$timeout" promote >/dev/null ||
        die "pg_ctl promote of $(desc "$S") failed; $(log_hint "$S")"
    wait_for "$(desc "$S") to leave recovery (pg_is_in_recovery() false)" is_role "$S" primary
    # No standby is attached now: without this every commit would wait forever. From here until
    # `rebuild` the cluster runs without a synchronous standby (see the header).
    q "$S" "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null &&
        q "$S" "SELECT pg_reload_conf()" >/dev/null ||
        die "could not clear synchronous_standby_names on $(desc "$S")"
    # Puts the new timeline in the control file (pg_rewind and `start` read it).
    q "$S" "CHECKPOINT" >/dev/null || die "CHECKPOINT on $(desc "$S") failed"
    echo "promoted $(desc "$S"); it is the primary now, without a synchronous standby until rebuild"
    ;;
rebuild)
    ensure_installed
    pick_primary
    [ "$(role "$P")" = primary ] || die "no running primary: promote the standby (or start) first"
    converge no
    echo "$(desc "$S") is a sync standby of $(desc "$P")"
    ;;
reset)
    if [ -x "$bin/pg_ctl" ]; then
        for n in a b; do stop_node "$n"; done
        for n in a b; do
            if exists "$n"; then wait_for "the processes of $(desc "$n") to exit" gone "$n"; fi
        done
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop|status|kill-primary|promote|rebuild|reset" >&2
    exit 2
    ;;
esac

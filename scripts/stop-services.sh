#!/usr/bin/env bash
# Stop the Redis / PostgreSQL servers that scripts/ensure-services.sh started from
# $DTQ_STATE_DIR (default <repo>/.dtq/services). Servers it did not start (a system
# Redis/PostgreSQL that already answered) are never touched.
#
# Usage: scripts/stop-services.sh [--purge]
#   --purge   also delete the state directory's data (redis/, pg/, logs)
# Same environment as ensure-services.sh (DTQ_STATE_DIR, DTQ_SERVICES_TIMEOUT).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=ensure-services.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ensure-services.sh"

PURGE=0
for arg in "$@"; do
    case $arg in
        --purge) PURGE=1 ;;
        -h | --help)
            sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument '$arg' (usage: $PROG [--purge])" ;;
    esac
done

wait_gone() {
    local pid=$1 i
    for ((i = 0; i < TIMEOUT * 4; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.25
    done
    return 1
}

stop_redis() {
    local pid
    if [[ ! -f $REDIS_PIDFILE ]]; then
        echo "redis: nothing started from $REDIS_DIR"
        return 0
    fi
    pid=$(<"$REDIS_PIDFILE")
    # Only a redis-server whose working directory is our data dir (redis chdirs to --dir).
    if ! pid_is "$pid" redis-server \
        || [[ $(readlink -f "/proc/$pid/cwd" 2>/dev/null) != "$(readlink -f "$REDIS_DIR")" ]]; then
        rm -f "$REDIS_PIDFILE"
        echo "redis: not running (removed stale $REDIS_PIDFILE)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true # graceful: flushes the AOF
    if ! wait_gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" || die "redis: pid $pid did not exit"
    fi
    rm -f "$REDIS_PIDFILE"
    echo "redis: stopped pid $pid ($REDIS_DIR)"
}

stop_postgres() {
    local ver
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        echo "postgres: nothing started from $PG_DATA"
        return 0
    fi
    ver=$(<"$PG_DATA/PG_VERSION")
    PG_BIN=$(find_pg_bin "$ver") || die "postgres: no pg_ctl found to stop $PG_DATA"
    choose_pg_user
    if ! as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        echo "postgres: not running from $PG_DATA"
        return 0
    fi
    as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop >/dev/null 2>&1 \
        || as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t "$TIMEOUT" stop >/dev/null 2>&1 \
        || die "postgres: pg_ctl stop failed for $PG_DATA (log $PG_LOG)"
    echo "postgres: stopped server of $PG_DATA"
}

purge() {
    [[ -n $STATE_DIR && $(readlink -f "$STATE_DIR") != / ]] || die "refusing to purge STATE_DIR='$STATE_DIR'"
    rm -rf -- "$REDIS_DIR" "$PG_DATA"
    rm -f -- "$PG_LOG" "$APT_LOG"
    rmdir -- "$STATE_DIR" 2>/dev/null || true
    echo "purged $STATE_DIR"
}

if ! [[ $TIMEOUT =~ ^[1-9][0-9]*$ ]]; then
    die "DTQ_SERVICES_TIMEOUT must be a positive integer"
fi
stop_redis
stop_postgres
if ((PURGE)); then
    purge
fi

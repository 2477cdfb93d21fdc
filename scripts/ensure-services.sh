#!/usr/bin/env bash
# Make sure a Redis and a PostgreSQL answer at DTQ_REDIS_URL / DTQ_DATABASE_URL.
#
# Used by .ci/run before the tests, and by developers. For each service:
#   - already answering            -> nothing is done;
#   - not answering, local address -> binaries are installed with apt-get if missing,
#     then a private server is started from $DTQ_STATE_DIR (default <repo>/.dtq/services).
# Prints one line per service. Exits non-zero with a one-line error on failure.
# scripts/stop-services.sh stops only the servers started here.
#
# Environment:
#   DTQ_REDIS_URL          default redis://127.0.0.1:6379/0
#   DTQ_DATABASE_URL       default postgresql://postgres@127.0.0.1:5432/dtq
#   DTQ_STATE_DIR          default <repo>/.dtq/services
#   DTQ_SERVICES_TIMEOUT   seconds to wait for a started server to answer (default 20)
#
# PostgreSQL refuses to run as root: when run as root the cluster is owned by and run as
# the `postgres` system user (or a `dtq` system user created on demand). The cluster is
# initialised with `initdb -A trust -U postgres`; databases are created by `dtq migrate`.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

REDIS_URL=${DTQ_REDIS_URL:-redis://127.0.0.1:6379/0}
DATABASE_URL=${DTQ_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/dtq}
STATE_DIR=${DTQ_STATE_DIR:-$REPO_ROOT/.dtq/services}
TIMEOUT=${DTQ_SERVICES_TIMEOUT:-20}

REDIS_DIR=$STATE_DIR/redis
REDIS_PIDFILE=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log
PG_DATA=$STATE_DIR/pg
PG_LOG=$STATE_DIR/pg.log
APT_LOG=$STATE_DIR/apt.log

APT_UPDATED=0
PROG=$(basename "$0")

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------- URLs

# parse_url VAR URL DEFAULT_PORT -> sets URL_SCHEME URL_HOST URL_PORT
# (messages name VAR, never the URL: it may hold a password)
parse_url() {
    local var=$1 url=$2 default_port=$3 rest after
    [[ $url == *://* ]] || die "$var: cannot parse (expected scheme://host:port/...)"
    URL_SCHEME=${url%%://*}
    rest=${url#*://}
    rest=${rest%%[/?#]*}   # drop path, query, fragment
    rest=${rest##*@}       # drop user:password@
    if [[ $rest == \[* ]]; then # [IPv6]:port
        URL_HOST=${rest%%]*}
        URL_HOST=${URL_HOST#[}
        after=${rest#*]}
        URL_PORT=${after#:}
    elif [[ $rest == *:* ]]; then
        URL_HOST=${rest%%:*}
        URL_PORT=${rest#*:}
    else
        URL_HOST=$rest
        URL_PORT=
    fi
    URL_HOST=${URL_HOST:-127.0.0.1}
    URL_PORT=${URL_PORT:-$default_port}
    if ! [[ $URL_PORT =~ ^[0-9]+$ ]] || ((URL_PORT < 1 || URL_PORT > 65535)); then
        die "$var: bad port '$URL_PORT'"
    fi
}

is_local_host() {
    case $1 in
        localhost | 127.* | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

# Address a started server listens on for a URL host.
listen_addr() {
    case $1 in
        localhost) echo 127.0.0.1 ;;
        *) echo "$1" ;;
    esac
}

# ---------------------------------------------------------------------------- helpers

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "cannot install $* (no apt-get on this machine)"
    mkdir -p "$STATE_DIR"
    if ((APT_UPDATED == 0)); then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >>"$APT_LOG" 2>&1 \
            || die "apt-get update failed (see $APT_LOG)"
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        install --no-install-recommends "$@" >>"$APT_LOG" 2>&1 \
        || die "apt-get install $* failed (see $APT_LOG)"
}

# The most telling recent line of a log: the last error among its last 30 lines, else
# its last line.
last_log_line() {
    local line='' recent=''
    if [[ -r $1 ]]; then
        recent=$(tail -n 30 "$1" | grep -v '^[[:space:]]*$' || true)
        line=$(grep -E 'FATAL|PANIC|ERROR|error|[0-9] # ' <<<"$recent" | tail -n 1 || true)
        [[ -n $line ]] || line=$(tail -n 1 <<<"$recent")
    fi
    printf '%s' "${line:-no log output}"
}

# True if PID is alive (not a zombie) and its command name starts with NAME.
pid_is() {
    local pid=$1 name=$2 comm stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # fields after "pid (comm) "; the first is the state
    [[ ${stat%% *} != Z && $comm == "$name"* ]]
}

# ---------------------------------------------------------------------------- Redis

# Exit 0 if a Redis answers at HOST PORT (PONG, or an auth error: it is up either way).
redis_answers() {
    local host=$1 port=$2 reply
    if command -v redis-cli >/dev/null 2>&1; then
        reply=$(timeout 3 redis-cli -h "$host" -p "$port" ping 2>/dev/null) || true
    else
        # shellcheck disable=SC2016 # expanded by the inner bash
        reply=$(timeout 3 bash -c '
            exec 3<>"/dev/tcp/$1/$2" || exit 1
            printf "PING\r\n" >&3
            IFS= read -r -t 2 line <&3 || exit 1
            printf "%s" "${line%$'"'\r'"'}"
        ' _ "$host" "$port" 2>/dev/null) || true
    fi
    reply=${reply#[+-]}
    [[ $reply == PONG* || $reply == NOAUTH* ]]
}

ensure_redis() {
    parse_url DTQ_REDIS_URL "$REDIS_URL" 6379
    local host=$URL_HOST port=$URL_PORT addr pid i

    case $URL_SCHEME in
        redis) ;;
        rediss | unix)
            # TLS / unix-socket Redis are never started here; just report.
            echo "redis: $URL_SCHEME:// URL, not checked or started (start it yourself)"
            return 0
            ;;
        *) die "DTQ_REDIS_URL: unsupported scheme '$URL_SCHEME://'" ;;
    esac

    if redis_answers "$host" "$port"; then
        echo "redis: answering on $host:$port"
        return 0
    fi
    is_local_host "$host" \
        || die "redis: nothing answers on $host:$port and it is not a local address, so not starting one"

    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server redis-tools
        # Debian's package starts its own server on 6379 when it can.
        if redis_answers "$host" "$port"; then
            echo "redis: installed redis-server; answering on $host:$port"
            return 0
        fi
        command -v redis-server >/dev/null 2>&1 || die "redis: redis-server still missing after apt-get install"
    fi

    mkdir -p "$REDIS_DIR"
    if [[ -f $REDIS_PIDFILE ]]; then
        pid=$(<"$REDIS_PIDFILE")
        if pid_is "$pid" redis-server; then
            die "redis: server from $REDIS_DIR (pid $pid) runs but does not answer on $host:$port (port changed? run scripts/stop-services.sh)"
        fi
        rm -f "$REDIS_PIDFILE"
    fi

    addr=$(listen_addr "$host")
    redis-server --daemonize yes --port "$port" --bind "$addr" --dir "$REDIS_DIR" \
        --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
        --logfile "$REDIS_LOG" --pidfile "$REDIS_PIDFILE" >/dev/null 2>&1 \
        || die "redis: redis-server failed to start: $(last_log_line "$REDIS_LOG")"

    for ((i = 0; i < TIMEOUT * 4; i++)); do
        if redis_answers "$host" "$port"; then
            echo "redis: started on $host:$port (data $REDIS_DIR, pid $(cat "$REDIS_PIDFILE" 2>/dev/null || echo '?'))"
            return 0
        fi
        if ((i >= 8)) && ! pid_is "$(cat "$REDIS_PIDFILE" 2>/dev/null)" redis-server; then
            die "redis: redis-server exited (log $REDIS_LOG: $(last_log_line "$REDIS_LOG"))"
        fi
        sleep 0.25
    done
    die "redis: started server does not answer on $host:$port after ${TIMEOUT}s (log $REDIS_LOG: $(last_log_line "$REDIS_LOG"))"
}

# ---------------------------------------------------------------------------- PostgreSQL

# Directory holding initdb, pg_ctl and postgres; prefers major version $1 if given.
# Looks at the binaries on PATH, then /usr/lib/postgresql/*/bin (newest first).
find_pg_bin() {
    local want=${1:-} dir exe candidates=()
    if [[ -n $want ]]; then
        candidates+=("/usr/lib/postgresql/$want/bin")
    fi
    for exe in pg_ctl initdb; do
        if command -v "$exe" >/dev/null 2>&1; then
            candidates+=("$(dirname "$(readlink -f "$(command -v "$exe")")")")
        fi
    done
    while IFS= read -r dir; do
        candidates+=("$dir")
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -t/ -k5,5 -V -r)
    for dir in "${candidates[@]}"; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            if [[ -z $want ]] || [[ $("$dir/pg_ctl" --version) =~ \ $want(\.|$|[^0-9]) ]]; then
                echo "$dir"
                return 0
            fi
        fi
    done
    if [[ -n $want ]]; then
        find_pg_bin "" # caller reports the version mismatch
        return
    fi
    return 1
}

# Exit 0 if a PostgreSQL accepts connections (or is starting / rejecting) at HOST PORT.
pg_answers() {
    local host=$1 port=$2 isready=
    if command -v pg_isready >/dev/null 2>&1; then
        isready=$(command -v pg_isready)
    elif [[ -n ${PG_BIN:-} && -x $PG_BIN/pg_isready ]]; then
        isready=$PG_BIN/pg_isready
    fi
    if [[ -n $isready ]]; then
        # 0 = accepting; 1 = rejecting (e.g. still starting) is not "answering" yet.
        timeout 5 "$isready" -q -h "$host" -p "$port" -t 3 >/dev/null 2>&1
        return
    fi
    # No pg_isready: send an SSLRequest; a PostgreSQL server replies 'S' or 'N'.
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "\x00\x00\x00\x08\x04\xd2\x16\x2f" >&3
        IFS= read -r -n 1 -t 2 c <&3 || exit 1
        [[ $c == S || $c == N ]]
    ' _ "$host" "$port" >/dev/null 2>&1
}

pg_login_ok() {
    PGCONNECT_TIMEOUT=3 psql -X -w -h "$1" -p "$2" -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1
}

# Debian's packaged cluster (created by apt-get install postgresql) authenticates TCP with
# scram-sha-256 and the postgres role has no password. Give it what `initdb -A trust` gives
# our own cluster: trust for loopback TCP. Connects as PG_USER over the unix socket (peer).
pg_trust_loopback() {
    local host=$1 port=$2 sockdir=${3:-/var/run/postgresql} hba tmp
    pg_login_ok "$host" "$port" && return 0
    command -v psql >/dev/null 2>&1 || return 1
    hba=$(as_pg_user psql -X -w -h "$sockdir" -p "$port" -U postgres -d postgres -Atc 'show hba_file' 2>/dev/null) \
        || return 1
    [[ -f $hba ]] || return 1
    if ! grep -q 'added by dtq scripts/ensure-services.sh' "$hba"; then
        tmp=$(mktemp)
        {
            printf '%s\n' '# added by dtq scripts/ensure-services.sh: trust loopback TCP (test machine)' \
                'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust'
            cat "$hba"
        } >"$tmp"
        cat "$tmp" >"$hba" # keeps owner and mode
        rm -f "$tmp"
    fi
    as_pg_user psql -X -w -h "$sockdir" -p "$port" -U postgres -d postgres -Atc 'select pg_reload_conf()' \
        >/dev/null 2>&1 || return 1
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pg_login_ok "$host" "$port" && return 0
        sleep 0.3
    done
    return 1
}

# Run a command as PG_USER (root cannot run PostgreSQL), from / so its cwd is readable.
as_pg_user() {
    if ((EUID != 0)); then
        (cd / && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    elif command -v setpriv >/dev/null 2>&1; then
        (cd / && setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --init-groups -- "$@")
    else
        local q
        printf -v q '%q ' "$@"
        (cd / && su -s /bin/sh "$PG_USER" -c "$q")
    fi
}

choose_pg_user() {
    if ((EUID != 0)); then
        PG_USER=$(id -un)
    elif [[ -d $PG_DATA ]] && [[ $(stat -c %u "$PG_DATA") != 0 ]]; then
        PG_USER=$(stat -c %U "$PG_DATA") # keep whoever owns an existing cluster
        [[ $PG_USER != UNKNOWN ]] || die "postgres: $PG_DATA is owned by an unknown uid; remove it"
    elif id -u postgres >/dev/null 2>&1; then
        PG_USER=postgres
    else
        if ! id -u dtq >/dev/null 2>&1; then
            command -v useradd >/dev/null 2>&1 || die "postgres: no postgres user and no useradd to create one"
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin dtq \
                || die "postgres: could not create system user dtq"
        fi
        PG_USER=dtq
    fi
}

ensure_postgres() {
    parse_url DTQ_DATABASE_URL "$DATABASE_URL" 5432
    local host=$URL_HOST port=$URL_PORT addr ver i
    PG_BIN=

    case $URL_SCHEME in
        postgresql | postgres | postgresql+* | postgres+*) ;;
        *) die "DTQ_DATABASE_URL: unsupported scheme '$URL_SCHEME://'" ;;
    esac

    if pg_answers "$host" "$port"; then
        echo "postgres: answering on $host:$port"
        return 0
    fi
    is_local_host "$host" \
        || die "postgres: nothing answers on $host:$port and it is not a local address, so not starting one"

    ver=
    [[ -r $PG_DATA/PG_VERSION ]] && ver=$(<"$PG_DATA/PG_VERSION")
    if ! PG_BIN=$(find_pg_bin "$ver"); then
        apt_install postgresql
        # Debian's maintainer scripts may have created and started a cluster on 5432.
        if pg_answers "$host" "$port"; then
            PG_USER=postgres
            pg_trust_loopback "$host" "$port" \
                || die "postgres: installed postgresql; its cluster answers on $host:$port but user postgres cannot log in over TCP without a password (edit its pg_hba.conf)"
            echo "postgres: installed postgresql; its cluster answers on $host:$port (loopback TCP set to trust)"
            return 0
        fi
        PG_BIN=$(find_pg_bin "$ver") || die "postgres: initdb/pg_ctl still missing after apt-get install postgresql"
    fi
    if [[ -n $ver ]] && ! [[ $("$PG_BIN/pg_ctl" --version) =~ \ $ver(\.|$|[^0-9]) ]]; then
        die "postgres: $PG_DATA is a PostgreSQL $ver cluster but only $("$PG_BIN/pg_ctl" --version) is installed; remove $PG_DATA"
    fi

    choose_pg_user
    mkdir -p "$STATE_DIR"
    if [[ ! -d $PG_DATA ]]; then
        install -d -m 0700 -o "$PG_USER" -g "$(id -g "$PG_USER")" "$PG_DATA"
    fi
    if [[ ! -f $PG_LOG ]]; then
        install -m 0640 -o "$PG_USER" -g "$(id -g "$PG_USER")" /dev/null "$PG_LOG"
    fi
    if [[ $(stat -c %U "$PG_DATA") != "$PG_USER" && -z $(ls -A "$PG_DATA") ]]; then
        chown "$PG_USER:" "$PG_DATA" && chmod 0700 "$PG_DATA"
    fi
    if [[ $(stat -c %U "$PG_LOG") != "$PG_USER" ]]; then
        chown "$PG_USER:" "$PG_LOG"
    fi
    { as_pg_user test -w "$PG_DATA" && as_pg_user test -w "$PG_LOG"; } \
        || die "postgres: user $PG_USER cannot write $PG_DATA or $PG_LOG (parent directories not searchable by it? set DTQ_STATE_DIR, e.g. /tmp/dtq-services)"

    local did=started
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        [[ -z $(ls -A "$PG_DATA") ]] || die "postgres: $PG_DATA is neither empty nor a cluster; remove it"
        as_pg_user "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --no-locale \
            >>"$PG_LOG" 2>&1 || die "postgres: initdb failed (see $PG_LOG)"
        did="initialised $PG_DATA and started"
    fi

    if [[ -f $PG_DATA/postmaster.pid ]] && pid_is "$(head -n 1 "$PG_DATA/postmaster.pid")" postgres; then
        # Our server is up but not (yet) accepting, e.g. crash recovery: give it time.
        for ((i = 0; i < TIMEOUT * 4; i++)); do
            if pg_answers "$host" "$port"; then
                echo "postgres: answering on $host:$port (server of $PG_DATA was starting)"
                return 0
            fi
            sleep 0.25
        done
        die "postgres: server from $PG_DATA runs but does not answer on $host:$port after ${TIMEOUT}s (port changed? run scripts/stop-services.sh)"
    fi

    addr=$(listen_addr "$host")
    as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" \
        -o "-p $port -k /tmp -c listen_addresses=$addr" start >/dev/null 2>&1 \
        || die "postgres: pg_ctl start failed (log $PG_LOG: $(last_log_line "$PG_LOG"))"

    for ((i = 0; i < TIMEOUT * 4; i++)); do
        if pg_answers "$host" "$port"; then
            echo "postgres: $did on $host:$port (as user $PG_USER, $PG_BIN)"
            return 0
        fi
        sleep 0.25
    done
    die "postgres: started server does not answer on $host:$port after ${TIMEOUT}s (log $PG_LOG: $(last_log_line "$PG_LOG"))"
}

main() {
    if ! [[ $TIMEOUT =~ ^[1-9][0-9]*$ ]]; then
        die "DTQ_SERVICES_TIMEOUT must be a positive integer"
    fi
    ensure_redis
    ensure_postgres
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi

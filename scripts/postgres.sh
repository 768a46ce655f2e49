#!/usr/bin/env bash
# A local PostgreSQL from Debian's packages (apt-get install postgresql), on loopback only,
# its data in a git-ignored directory, on a port of its own. Idempotent.
#
#   scripts/postgres.sh start    # initdb on first use, start, wait, print the store URL last
#   scripts/postgres.sh stop     # stop the server this script started (pg_ctl, by its pid file)
#   scripts/postgres.sh status
#   scripts/postgres.sh url      # print the store URL
#
# PG_PORT (default 15432) and PG_STATE_DIR (default .cache/postgres) choose another one.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PG_PORT=${PG_PORT:-15432}
STATE=${PG_STATE_DIR:-$PWD/.cache/postgres}
# As root, the server runs as the postgres user, which must be able to reach the data
# directory: a checkout under a private directory (mode 700) is out of its reach, and then
# the data goes to a directory of this checkout's own under /var/tmp instead.
if [[ -z ${PG_STATE_DIR:-} && $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1 &&
    ! runuser -u postgres -- test -x "$PWD" 2>/dev/null; then
    STATE=/var/tmp/journey-postgres-$(printf '%s' "$PWD" | md5sum | cut -c1-12)
fi
DATA=$STATE/data
DB=journey
ROLE=journey

say() { printf 'postgres: %s\n' "$*"; }

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $dir || ! -x $dir/pg_ctl ]]; then
        say "no PostgreSQL server binaries: apt-get install postgresql" >&2
        exit 1
    fi
    printf '%s\n' "$dir"
}

# PostgreSQL refuses to run as root: as root, run its programs as the postgres user.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url() { printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$ROLE" "$PG_PORT" "$DB"; }

running() { [[ -f $DATA/postmaster.pid ]] && as_owner "$(pg_bin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start() {
    local bin
    bin=$(pg_bin)
    mkdir -p "$STATE"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$STATE"
    fi
    if [[ ! -f $DATA/PG_VERSION ]]; then
        say "initdb in $DATA"
        # trust on loopback only: a developer's and CI's throw-away server, never exposed.
        as_owner "$bin/initdb" -D "$DATA" -U "$ROLE" -A trust -E UTF8 --no-instructions >/dev/null
        {
            echo "listen_addresses = '127.0.0.1'"
            echo "port = $PG_PORT"
            echo "unix_socket_directories = '$STATE'"
            echo "fsync = on"
            echo "max_connections = 200"
        } >>"$DATA/postgresql.conf"
    fi
    if running; then
        say "already running at 127.0.0.1:$PG_PORT"
    else
        as_owner "$bin/pg_ctl" -D "$DATA" -l "$STATE/server.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null
        say "started at 127.0.0.1:$PG_PORT (log $STATE/server.log)"
    fi
    if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$ROLE" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
        as_owner "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$ROLE" "$DB"
    fi
    url
}

stop() {
    if running; then
        as_owner "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

case ${1:-start} in
start) start ;;
stop) stop ;;
status) if running; then say "running at 127.0.0.1:$PG_PORT: $(url)"; else say "not running"; exit 1; fi ;;
url) url ;;
*) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac

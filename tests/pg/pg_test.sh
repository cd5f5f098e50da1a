#!/usr/bin/env bash
# Runs a test program of the PostgreSQL storage engine against a real, throwaway
# PostgreSQL server that this script starts and stops itself:
#
#   tests/pg/pg_test.sh PROGRAM [ARGS...]      (ctest unit.store.pg)
#
# - finds the server binaries (initdb, pg_ctl): ATR_PG_BINDIR, `pg_config --bindir`,
#   /usr/lib/postgresql/*/bin, then PATH; without them the test is skipped (exit 77),
#   except under CI=true, where that is a failure;
# - initdb into a new temporary folder (as the user postgres when run as root: initdb
#   refuses root), with a linguistic default collation (ICU en-US) when the server
#   has ICU, so that the engine's bytewise ordering is really tested;
# - starts the server listening only on a unix socket in that folder (no TCP port,
#   so parallel runs cannot collide), fsync off (a throwaway server);
# - creates the database "atrest" and runs PROGRAM with
#     ATREST_PG_URL    postgresql:///atrest?host=<folder>&user=postgres
#     ATREST_PG_STOP   a shell command that stops the server (reconnect tests)
#     ATREST_PG_START  a shell command that starts it again
# - stops the server and removes the folder on every exit (trap); everything is
#   bounded in time (ATR_PG_TEST_TIMEOUT seconds for PROGRAM, default 240).
# The exit status is PROGRAM's.
set -euo pipefail

if [ "$#" -lt 1 ]; then
    echo "usage: $0 PROGRAM [ARGS...]" >&2
    exit 2
fi
start_s=$SECONDS

have_server() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

find_bindir() {
    local d
    if [ -n "${ATR_PG_BINDIR:-}" ]; then
        have_server "$ATR_PG_BINDIR" && echo "$ATR_PG_BINDIR"
        return 0
    fi
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$d" ] && have_server "$d"; then
            echo "$d"
            return 0
        fi
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if have_server "$d"; then
            echo "$d"
            return 0
        fi
    done
    d=$(command -v initdb 2>/dev/null || true)
    if [ -n "$d" ] && have_server "$(dirname "$d")"; then
        dirname "$d"
    fi
    return 0
}

missing() {
    if [ "${CI:-}" = "true" ]; then
        echo "pg_test: FAIL: $* (CI=true: install the Debian package postgresql," \
            "scripts/install-deps)" >&2
        exit 1
    fi
    echo "pg_test: SKIP: $* (install the Debian package postgresql: scripts/install-deps)"
    exit 77
}

bindir=$(find_bindir)
[ -n "$bindir" ] || missing "no PostgreSQL server binaries (initdb, pg_ctl, postgres)"

# initdb refuses to run as root: the server then runs as the user postgres
as_db=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || missing "running as root and there is no user postgres"
    command -v runuser >/dev/null 2>&1 || missing "running as root without runuser"
    as_db=(runuser -u postgres --)
fi

# the folder must be reachable by the server's user: /tmp when TMPDIR is not
tmp=$(mktemp -d "${TMPDIR:-/tmp}/atr-pg-XXXXXX")
if [ "${#as_db[@]}" -gt 0 ]; then
    chown postgres "$tmp"
    if ! "${as_db[@]}" test -w "$tmp"; then
        rmdir "$tmp"
        tmp=$(mktemp -d /tmp/atr-pg-XXXXXX)
        chown postgres "$tmp"
    fi
fi
data=$tmp/data
log=$tmp/server.log
pg_ctl=("${as_db[@]}" "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 30)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -f "$data/postmaster.pid" ]; then
        "${pg_ctl[@]}" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -f "$log" ]; then
        echo "pg_test: server log (last 30 lines):" >&2
        tail -n 30 "$log" >&2 || true
    fi
    rm -rf "$tmp"
    echo "pg_test: done in $((SECONDS - start_s)) s (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ICU en-US as the default collation when the server was built with ICU
initdb_args=(-D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync)
# (the help is read whole first: grep -q under pipefail could see initdb die of SIGPIPE)
initdb_help=$("$bindir/initdb" --help 2>/dev/null || true)
if grep -q -- '--locale-provider' <<<"$initdb_help"; then
    if "${as_db[@]}" "$bindir/initdb" "${initdb_args[@]}" --locale-provider=icu \
        --icu-locale=en-US >"$tmp/initdb.log" 2>&1; then
        collation="ICU en-US"
    else
        rm -rf "$data"
    fi
fi
if [ ! -d "$data" ]; then
    "${as_db[@]}" "$bindir/initdb" "${initdb_args[@]}" >"$tmp/initdb.log" 2>&1 || {
        cat "$tmp/initdb.log" >&2
        exit 1
    }
    collation="C.UTF-8"
fi
cat >>"$data/postgresql.conf" <<CONF
# tests/pg/pg_test.sh: a throwaway server on a unix socket only
listen_addresses = ''
unix_socket_directories = '$tmp'
fsync = off
full_page_writes = off
max_connections = 60
shared_buffers = 32MB
log_min_messages = warning
log_min_error_statement = panic
CONF

timeout 60 "${pg_ctl[@]}" start >/dev/null
timeout 30 "${as_db[@]}" "$bindir/createdb" -h "$tmp" -U postgres atrest

q() { printf '%q ' "$@"; }
export ATREST_PG_URL="postgresql:///atrest?host=$tmp&user=postgres"
ATREST_PG_STOP="$(q "${pg_ctl[@]}") -m fast stop >/dev/null"
ATREST_PG_START="$(q "${pg_ctl[@]}") start >/dev/null"
export ATREST_PG_STOP ATREST_PG_START
echo "pg_test: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}')" \
    "from $bindir, collation $collation, socket in $tmp" \
    "(up in $((SECONDS - start_s)) s)"

set +e
timeout --kill-after=10 "${ATR_PG_TEST_TIMEOUT:-240}" "$@"
rc=$?
set -e
[ "$rc" -eq 124 ] && echo "pg_test: FAIL: $1 did not finish within ${ATR_PG_TEST_TIMEOUT:-240} s" >&2
exit "$rc"

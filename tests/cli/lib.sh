# Shared helpers of the CLI end-to-end scripts (sourced, not run).
#   atr_tmp                  a temporary folder removed at exit
#   atr_start NAME CMD...    runs CMD in the background (stdout NAME.out, stderr
#                            NAME.err), waits up to 10 s for the https:// URL it
#                            prints, and sets ATR_URL and ATR_PID_<NAME>
#   atr_stop NAME            SIGTERM, waits up to 10 s, fails unless it exits 0
#   atr_reap NAME            waits up to 10 s for NAME to die by itself (a crash
#                            test's kill -9), fails unless it was killed
#   fail MSG                 prints MSG and the tail of every server log, exits 1
# Every server started here is killed on any exit.
set -euo pipefail

atr_tmp=$(mktemp -d /tmp/atr-cli-XXXXXX)
declare -A atr_pids=()

atr_cleanup() {
    for name in "${!atr_pids[@]}"; do
        local pid=${atr_pids[$name]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$atr_tmp"
}
trap atr_cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$atr_tmp"/*.err; do
        [ -f "$f" ] || continue
        echo "  --- $(basename "$f")" >&2
        tail -n 15 "$f" | sed 's/^/  /' >&2
    done
    exit 1
}

atr_start() {
    local name=$1
    shift
    # a restart under the same name must not read the previous run's URL
    rm -f "$atr_tmp/$name.out"
    : >"$atr_tmp/$name.out"
    "$@" >"$atr_tmp/$name.out" 2>"$atr_tmp/$name.err" &
    local pid=$!
    atr_pids[$name]=$pid
    ATR_URL=
    for _ in $(seq 1 100); do
        ATR_URL=$(grep -m1 '^https://' "$atr_tmp/$name.out" 2>/dev/null || true)
        [ -n "$ATR_URL" ] && return 0
        kill -0 "$pid" 2>/dev/null || fail "$name exited early"
        sleep 0.1
    done
    fail "$name printed no URL within 10 s"
}

atr_stop() {
    local name=$1
    local pid=${atr_pids[$name]}
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "$name did not stop within 10 s of SIGTERM"
    local rc=0
    wait "$pid" || rc=$?
    unset "atr_pids[$name]"
    [ "$rc" -eq 0 ] || fail "$name exited $rc after SIGTERM, want 0"
}

atr_reap() {
    local name=$1
    local pid=${atr_pids[$name]}
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "$name is still running, want it killed"
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    unset "atr_pids[$name]"
    [ "$rc" -eq 137 ] || fail "$name exited $rc, want 137 (SIGKILL)"
}

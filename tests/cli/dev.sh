#!/usr/bin/env bash
# cli.dev: `atrest dev` as the README's "run it" command uses it.
#   starts in a fresh state folder on a free port, prints the URL and the
#   example commands, serves /healthz and /echo over TLS trusted through the
#   generated CA, reuses the CA on a second start, and stops cleanly (exit 0)
#   on SIGTERM. Every wait is bounded; the server is killed on any exit.
set -euo pipefail

bin=${1:?usage: dev.sh path/to/atrest}
tmp=$(mktemp -d /tmp/atr-dev-XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$tmp/out" ] && sed 's/^/  out: /' "$tmp/out" >&2
    [ -f "$tmp/err" ] && sed 's/^/  err: /' "$tmp/err" >&2
    exit 1
}

start() {
    "$bin" dev --dir "$tmp/state" --port 0 >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    url=
    for _ in $(seq 1 100); do
        url=$(grep -m1 '^https://' "$tmp/out" || true)
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || fail "atrest dev exited early"
        sleep 0.1
    done
    [ -n "$url" ] || fail "atrest dev printed no URL within 10 s"
}

stop() {
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "atrest dev did not stop within 10 s of SIGTERM"
    set +e
    wait "$pid"
    rc=$?
    set -e
    pid=
    [ "$rc" -eq 0 ] || fail "atrest dev exited $rc after SIGTERM, want 0"
}

echo "--- first start"
start
ca="$tmp/state/tls/ca.pem"
[ -f "$ca" ] || fail "no CA at $ca"
[ "$(stat -c %a "$tmp/state/tls/server.key")" = 600 ] || fail "server key is not 0600"
[ "$(stat -c %a "$tmp/state")" = 700 ] || fail "state folder is not 0700"
grep -q "curl --cacert $ca" "$tmp/out" || fail "no example command printed"
body=$(curl -sS --max-time 5 --cacert "$ca" "$url/healthz")
[ "$body" = '{"status":"ok"}' ] || fail "healthz answered: $body"
port=${url##*:}
body=$(curl -sS --max-time 5 --cacert "$ca" -H 'Content-Type: application/json' \
    -d '{"hello":"world"}' "https://localhost:$port/echo")
grep -q '"echo":{"hello":"world"}' <<<"$body" || fail "echo answered: $body"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$ca" "$url/nope")
[ "$code" = 404 ] || fail "unknown path answered $code"
stop

echo "--- second start reuses the CA"
sum=$(sha256sum "$ca")
start
[ "$(sha256sum "$ca")" = "$sum" ] || fail "the CA changed on restart"
grep -q 'reusing CA' "$tmp/out" || fail "second start did not say it reuses the CA"
curl -sS --max-time 5 --cacert "$ca" "$url/healthz" >/dev/null || fail "healthz after restart"
stop

echo "--- bad arguments"
set +e
"$bin" dev --port 70000 >/dev/null 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "--port 70000 exited $rc, want 2"
echo "cli.dev: all checks passed"

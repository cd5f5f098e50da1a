#!/usr/bin/env bash
# cli.basic: the atrest binary end to end.
#   help / version / unknown subcommand (exit codes, where usage goes);
#   `atrest cert` (files, key modes, chain verification, SAN, CA reuse, bad args);
#   `atrest echo` on a free port (--port 0, URL read from its stdout): /healthz and
#   /echo over TLS with the generated CA, error shape, request id, then SIGTERM and a
#   clean exit 0.
# Every wait is bounded; the server is killed on any exit.
set -euo pipefail

bin=${1:?usage: basic.sh path/to/atrest}
tmp=$(mktemp -d /tmp/atr-cli-XXXXXX)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() { echo "--- $*"; }

# runs "$@", stores the exit code in $rc without tripping set -e
run() {
    set +e
    "$@"
    rc=$?
    set -e
}

step "help, version, unknown subcommand"
run "$bin" help >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 0 ] || fail "help exited $rc"
grep -q '^usage: atrest' "$tmp/out" || fail "help printed no usage on stdout"
grep -q 'cert' "$tmp/out" || fail "help does not list cert"
run "$bin" version >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 0 ] || fail "version exited $rc"
grep -Eq '^atrest [0-9]+\.[0-9]+\.[0-9]+' "$tmp/out" || fail "version printed: $(cat "$tmp/out")"
run "$bin" no-such-command >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 2 ] || fail "unknown subcommand exited $rc, want 2"
grep -q 'usage: atrest' "$tmp/err" || fail "unknown subcommand: no usage on stderr"
[ ! -s "$tmp/out" ] || fail "unknown subcommand wrote to stdout"
run "$bin" >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 2 ] || fail "no subcommand exited $rc, want 2"

step "cert"
run "$bin" cert --help >"$tmp/out" 2>&1
[ "$rc" -eq 0 ] || fail "cert --help exited $rc"
grep -q -- '--dir' "$tmp/out" || fail "cert --help lacks --dir"
for args in "" "--dir" "--dir $tmp/x --days 0" "--dir $tmp/x --days abc" \
    "--dir $tmp/x --host bad_host!" "--dir $tmp/x --bogus" "--dir $tmp/x extra"; do
    # shellcheck disable=SC2086
    run "$bin" cert $args >"$tmp/out" 2>"$tmp/err"
    [ "$rc" -eq 2 ] || fail "cert $args exited $rc, want 2"
    grep -q 'atrest cert:' "$tmp/err" || fail "cert $args: no message on stderr"
done
[ ! -e "$tmp/x" ] || fail "a rejected cert command created files"

tls="$tmp/tls"
run "$bin" cert --dir "$tls" >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 0 ] || fail "cert exited $rc: $(cat "$tmp/err")"
for f in ca.pem ca.key server.pem server.key; do
    [ -s "$tls/$f" ] || fail "cert did not write $f"
done
for f in ca.key server.key; do
    mode=$(stat -c %a "$tls/$f")
    [ "$mode" = 600 ] || fail "$f has mode $mode, want 600"
done
[ "$(stat -c %a "$tls")" = 700 ] || fail "the directory is not 0700"
if command -v openssl >/dev/null; then
    openssl verify -CAfile "$tls/ca.pem" "$tls/server.pem" >"$tmp/out" 2>&1 ||
        fail "openssl verify: $(cat "$tmp/out")"
    openssl x509 -in "$tls/server.pem" -noout -ext subjectAltName >"$tmp/san"
    grep -q 'DNS:localhost' "$tmp/san" || fail "SAN lacks DNS:localhost: $(cat "$tmp/san")"
    grep -q 'IP Address:127.0.0.1' "$tmp/san" || fail "SAN lacks IP:127.0.0.1"
    openssl x509 -in "$tls/server.pem" -noout -ext extendedKeyUsage | grep -q 'Server Authentication' ||
        fail "no serverAuth EKU"
else
    echo "openssl not installed: skipping chain and SAN checks"
fi

# a second run reuses the CA and issues for other hosts
ca_before=$(sha256sum <"$tls/ca.pem")
run "$bin" cert --dir "$tls" --host svc.example.test --host ::1 --days 30 >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 0 ] || fail "second cert exited $rc: $(cat "$tmp/err")"
grep -q 'reusing CA' "$tmp/out" || fail "the CA was not reused"
[ "$ca_before" = "$(sha256sum <"$tls/ca.pem")" ] || fail "the CA changed"
if command -v openssl >/dev/null; then
    openssl verify -CAfile "$tls/ca.pem" "$tls/server.pem" >/dev/null 2>&1 || fail "second verify"
    openssl x509 -in "$tls/server.pem" -noout -ext subjectAltName >"$tmp/san"
    grep -q 'DNS:svc.example.test' "$tmp/san" || fail "SAN lacks svc.example.test"
    grep -q 'IP Address:0:0:0:0:0:0:0:1' "$tmp/san" || fail "SAN lacks ::1: $(cat "$tmp/san")"
fi
# half a CA is refused
mkdir "$tmp/half"
cp "$tls/ca.pem" "$tmp/half/ca.pem"
run "$bin" cert --dir "$tmp/half" >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 1 ] || fail "cert with ca.pem but no ca.key exited $rc, want 1"
# back to the default hosts for the echo test
run "$bin" cert --dir "$tls" >/dev/null 2>&1
[ "$rc" -eq 0 ] || fail "third cert exited $rc"

step "echo: usage errors"
run "$bin" echo >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 2 ] || fail "echo without --cert exited $rc, want 2"
run "$bin" echo --cert "$tls/server.pem" --key "$tls/server.key" --port 70000 >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 2 ] || fail "echo --port 70000 exited $rc, want 2"
run "$bin" echo --cert "$tmp/none.pem" --key "$tls/server.key" --port 0 >"$tmp/out" 2>"$tmp/err"
[ "$rc" -eq 1 ] || fail "echo with a missing certificate exited $rc, want 1"
run "$bin" echo --help >"$tmp/out" 2>&1
[ "$rc" -eq 0 ] || fail "echo --help exited $rc"

step "echo: start on a free port"
"$bin" echo --cert "$tls/server.pem" --key "$tls/server.key" --listen 127.0.0.1 --port 0 \
    >"$tmp/echo.out" 2>"$tmp/echo.log" &
server_pid=$!
url=
for _ in $(seq 1 100); do # at most 10 s
    url=$(head -n 1 "$tmp/echo.out" 2>/dev/null || true)
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail "echo exited early: $(cat "$tmp/echo.log")"
    sleep 0.1
done
[ -n "$url" ] || fail "echo printed no URL within 10 s"
[[ "$url" =~ ^https://127\.0\.0\.1:[0-9]+$ ]] || fail "unexpected URL '$url'"
echo "server at $url"

if command -v curl >/dev/null; then
    curl_() { curl -sS --max-time 10 --cacert "$tls/ca.pem" "$@"; }
    body=$(curl_ "$url/healthz")
    [ "$body" = '{"status":"ok"}' ] || fail "/healthz answered '$body'"
    body=$(curl_ -H 'Content-Type: application/json' -H 'X-Request-Id: cli-test-1' \
        -d '{"hello":"world","n":[1,2]}' "$url/echo")
    [ "$body" = '{"echo":{"hello":"world","n":[1,2]},"requestId":"cli-test-1"}' ] ||
        fail "/echo answered '$body'"
    code=$(curl_ -o "$tmp/bad.json" -w '%{http_code}' -d '{"hello":' "$url/echo")
    [ "$code" = 400 ] || fail "bad JSON gave HTTP $code"
    grep -q '"code":"BadRequest"' "$tmp/bad.json" || fail "bad JSON body: $(cat "$tmp/bad.json")"
    code=$(curl_ -o /dev/null -w '%{http_code}' "$url/nope")
    [ "$code" = 404 ] || fail "/nope gave HTTP $code"
    code=$(curl_ -o /dev/null -w '%{http_code}' -X DELETE "$url/echo")
    [ "$code" = 405 ] || fail "DELETE /echo gave HTTP $code"
    # without our CA the server is not trusted
    if curl -sS --max-time 10 "$url/healthz" >/dev/null 2>&1; then
        fail "curl trusted the server without the local CA"
    fi
else
    echo "curl not installed: skipping the HTTP checks"
fi

step "echo: SIGTERM and a clean exit"
kill -TERM "$server_pid"
for _ in $(seq 1 100); do # at most 10 s
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
    fail "echo still running 10 s after SIGTERM"
fi
run wait "$server_pid"
server_pid=
[ "$rc" -eq 0 ] || fail "echo exited $rc after SIGTERM: $(tail -5 "$tmp/echo.log")"
grep -q '"event":"http.access"' "$tmp/echo.log" || fail "no access log lines"
grep -q '"event":"http.stop"' "$tmp/echo.log" || fail "no stop log line"
if grep -q 'hello' "$tmp/echo.log"; then
    fail "a request body reached the log"
fi

echo "cli.basic: OK"

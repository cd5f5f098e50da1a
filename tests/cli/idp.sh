#!/usr/bin/env bash
# cli.idp: `atrest idp serve` and its admin CLI end to end.
#   starts the server on a free port, provisions a directory, an application
#   (secret printed once) and its service principal through the CLI, gets a
#   token, disables the principal (token refused with AADSTS7000112),
#   re-enables it (tokens flow), restarts the server (state survives) and
#   stops cleanly on SIGTERM. Every wait is bounded; the server is killed on
#   any exit.
set -euo pipefail

bin=${1:?usage: idp.sh path/to/atrest}
tmp=$(mktemp -d /tmp/atr-idp-XXXXXX)
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
    [ -f "$tmp/err" ] && tail -n 20 "$tmp/err" | sed 's/^/  server: /' >&2
    exit 1
}

"$bin" cert --dir "$tmp/tls" --host 127.0.0.1 --host localhost >/dev/null
ca="$tmp/tls/ca.pem"

start() {
    "$bin" idp serve --dir "$tmp/state" --cert "$tmp/tls/server.pem" \
        --key "$tmp/tls/server.key" --port "${1:-0}" >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    url=
    for _ in $(seq 1 100); do
        url=$(grep -m1 '^https://' "$tmp/out" || true)
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || fail "atrest idp serve exited early"
        sleep 0.1
    done
    [ -n "$url" ] || fail "no URL within 10 s"
}

stop() {
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "server did not stop within 10 s of SIGTERM"
    set +e
    wait "$pid"
    rc=$?
    set -e
    pid=
    [ "$rc" -eq 0 ] || fail "server exited $rc after SIGTERM, want 0"
}

start
[ "$(stat -c %a "$tmp/state/idp.db")" = 600 ] || fail "idp.db is not 0600"
[ "$(stat -c %a "$tmp/state/admin.secret")" = 600 ] || fail "admin.secret is not 0600"
adm=(--url "$url" --ca "$ca" --admin-secret-file "$tmp/state/admin.secret")

echo "--- provision"
tid=$("$bin" idp directory create "${adm[@]}" --name Contoso | jq -r .id)
[[ $tid =~ ^[0-9a-f-]{36}$ ]] || fail "directory id '$tid'"
app=$("$bin" idp app create "${adm[@]}" --tenant "$tid" --name byok)
appid=$(jq -r .appId <<<"$app")
secret=$(jq -r .secret <<<"$app")
[ ${#secret} -ge 32 ] || fail "no secret printed"
grep -q "$secret" "$tmp/state/idp.db" && fail "the secret is stored in clear"

echo "--- no service principal -> AADSTS700016"
if "$bin" idp token --url "$url" --ca "$ca" --tenant "$tid" --client-id "$appid" \
    --secret "$secret" >/dev/null 2>"$tmp/e"; then fail "token without SP"; fi
grep -q AADSTS700016 "$tmp/e" || fail "want AADSTS700016: $(cat "$tmp/e")"

spid=$("$bin" idp sp create "${adm[@]}" --tenant "$tid" --app-id "$appid" | jq -r .id)
"$bin" idp sp grant "${adm[@]}" --tenant "$tid" --id "$spid" --role Records.Write >/dev/null

token() {
    "$bin" idp token --url "$url" --ca "$ca" --tenant "$tid" --client-id "$appid" \
        --secret "$secret"
}
payload() {
    local p
    p=$(cut -d. -f2 <<<"$1" | tr '_-' '/+')
    while [ $((${#p} % 4)) -ne 0 ]; do p="$p="; done
    base64 -d <<<"$p"
}

echo "--- token"
tok=$(token) || fail "no token"
claims=$(payload "$tok")
[ "$(jq -r .oid <<<"$claims")" = "$spid" ] || fail "oid: $claims"
[ "$(jq -r .tid <<<"$claims")" = "$tid" ] || fail "tid: $claims"
[ "$(jq -r '.roles[0]' <<<"$claims")" = Records.Write ] || fail "roles: $claims"
[ "$(jq -r .aud <<<"$claims")" = https://vault.azure.net ] || fail "aud: $claims"

echo "--- disabled -> AADSTS7000112"
"$bin" idp sp disable "${adm[@]}" --tenant "$tid" --app-id "$appid" >/dev/null
if token >/dev/null 2>"$tmp/e"; then fail "token for a disabled SP"; fi
grep -q AADSTS7000112 "$tmp/e" || fail "want AADSTS7000112: $(cat "$tmp/e")"

echo "--- enabled -> tokens flow"
"$bin" idp sp enable "${adm[@]}" --tenant "$tid" --app-id "$appid" >/dev/null
token >/dev/null || fail "no token after enabling"

echo "--- restart keeps state"
port=${url##*:}
stop
start "$port"
token >/dev/null || fail "no token after restart"
"$bin" idp sp show "${adm[@]}" --tenant "$tid" --id "$spid" | jq -e '.accountEnabled == true' \
    >/dev/null || fail "sp lost after restart"
stop
echo "cli.idp: ok"

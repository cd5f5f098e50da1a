#!/usr/bin/env bash
# cli.vault: `atrest vault serve` and its management CLI end to end, with
# curl as the client (the Azure SDK suite is conformance.vault):
#   state files 0600; usage errors exit 2; management needs the bootstrap
#   secret; a token-less call gets the bearer challenge; access policy: each
#   of list, wrapKey, unwrapKey, get removed in turn refuses exactly its call
#   (403 AccessDenied naming the permission); firewall Deny refuses loopback
#   (403 ForbiddenByFirewall) until an IP rule admits it; throttling answers
#   429 with Retry-After; a token of another directory gets 401; purge
#   protection cannot be turned off; injected faults (503, refused
#   connections); a restart keeps keys and settings; the master key file
#   with the wrong mode stops the server with a clear message.
set -euo pipefail
bin=${1:?usage: vault.sh path/to/atrest}
. "$(dirname "$0")/lib.sh"
t=$atr_tmp

"$bin" cert --dir "$t/tls" --host 127.0.0.1 --host localhost >/dev/null
ca="$t/tls/ca.pem"
tls=(--cert "$t/tls/server.pem" --key "$t/tls/server.key")

atr_start idp "$bin" idp serve --dir "$t/idp" "${tls[@]}" --port 0
idp=$ATR_URL
iadm=(--url "$idp" --ca "$ca" --admin-secret-file "$t/idp/admin.secret")
tid=$("$bin" idp directory create "${iadm[@]}" --name Contoso | jq -r .id)
other=$("$bin" idp directory create "${iadm[@]}" --name Fabrikam | jq -r .id)
app=$("$bin" idp app create "${iadm[@]}" --tenant "$tid" --name byok --multi-tenant)
appid=$(jq -r .appId <<<"$app")
secret=$(jq -r .secret <<<"$app")
spid=$("$bin" idp sp create "${iadm[@]}" --tenant "$tid" --app-id "$appid" | jq -r .id)
"$bin" idp sp create "${iadm[@]}" --tenant "$other" --app-id "$appid" >/dev/null
token() {
    "$bin" idp token --url "$idp" --ca "$ca" --tenant "${1:-$tid}" --client-id "$appid" \
        --secret "$secret"
}
tok=$(token)

start_vault() {
    atr_start vault "$bin" vault serve --dir "$t/vault" "${tls[@]}" --port "${1:-0}" \
        --idp "$idp" --ca "$ca" --default-vault contoso --test-mode
    vurl=$ATR_URL
}
start_vault
vadm=(--url "$vurl" --ca "$ca" --admin-secret-file "$t/vault/admin.secret")
for f in vault.db master.key admin.secret; do
    [ "$(stat -c %a "$t/vault/$f")" = 600 ] || fail "$f is not 0600"
done

echo "--- usage errors exit 2"
set +e
"$bin" vault create >/dev/null 2>&1
[ $? -eq 2 ] || fail "create without a name must exit 2"
"$bin" vault create ab --directory x "${vadm[@]}" >/dev/null 2>&1
[ $? -eq 2 ] || fail "a 2-character vault name must exit 2"
"$bin" vault policy set contoso "${vadm[@]}" >/dev/null 2>&1
[ $? -eq 2 ] || fail "policy set without --object-id must exit 2"
"$bin" vault nonsense >/dev/null 2>&1
[ $? -eq 2 ] || fail "unknown verb must exit 2"
set -e

echo "--- management needs the bootstrap secret"
echo wrong-secret-wrong-secret >"$t/bad.secret"
if "$bin" vault list --url "$vurl" --ca "$ca" --admin-secret-file "$t/bad.secret" \
    >/dev/null 2>"$t/e"; then fail "wrong admin secret accepted"; fi
grep -q 401 "$t/e" || fail "want 401: $(cat "$t/e")"

"$bin" vault create contoso --directory "$tid" --purge-protection "${vadm[@]}" >/dev/null
"$bin" vault policy set contoso --object-id "$spid" --permissions all "${vadm[@]}" >/dev/null
"$bin" vault show contoso "${vadm[@]}" | jq -e '.recoveryLevel == "Recoverable"' >/dev/null ||
    fail "recoveryLevel"

# call METHOD PATH [BODY] -> prints "STATUS BODY"
call() {
    local m=$1 p=$2 b=${3:-}
    local args=(-s -o "$t/body" -w '%{http_code}' --cacert "$ca" -X "$m" -D "$t/hdr"
        -H "Authorization: Bearer ${TOK:-$tok}")
    [ -n "$b" ] && args+=(-H 'Content-Type: application/json' -d "$b")
    local code
    code=$(curl "${args[@]}" "$vurl$p")
    echo "$code $(cat "$t/body")"
}
av='api-version=7.4'
expect() { # expect STATUS PATTERN METHOD PATH [BODY]
    local want=$1 pat=$2
    shift 2
    local got
    got=$(call "$@")
    [ "${got%% *}" = "$want" ] || fail "$* -> $got (want $want)"
    grep -q -- "$pat" <<<"$got" || fail "$* -> $got (want /$pat/)"
}

echo "--- the bearer challenge"
code=$(curl -s -o "$t/body" -D "$t/hdr" -w '%{http_code}' --cacert "$ca" -X POST \
    "$vurl/keys/k1/create?$av")
[ "$code" = 401 ] || fail "no token: $code"
grep -qi "^WWW-Authenticate: Bearer authorization=\"$idp/$tid\", resource=\"https://vault.azure.net\"" \
    "$t/hdr" || fail "challenge header: $(cat "$t/hdr")"
grep -q AKV10000 "$t/body" || fail "challenge body: $(cat "$t/body")"

echo "--- keys"
expect 200 '"kty":"RSA"' POST "/keys/k1/create?$av" '{"kty":"RSA","key_size":2048}'
expect 400 'api-version' GET "/keys?api-version=6.0"
expect 400 'api-version' GET "/keys"
for v in 7.0 7.3 7.5 7.4-preview.1 7.5-preview.1; do
    expect 200 '"value"' GET "/keys?api-version=$v"
done
value=$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d =)
wrapped=$(call POST "/keys/k1//wrapkey?$av" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$value\"}" |
    cut -d' ' -f2- | jq -r .value)
back=$(call POST "/keys/k1/unwrapkey?$av" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$wrapped\"}" |
    cut -d' ' -f2- | jq -r .value)
[ "$back" = "$value" ] || fail "unwrap gave a different value"

echo "--- access policy: each permission removed in turn"
all=(get list create update import delete recover backup restore decrypt encrypt unwrapKey wrapKey
    verify sign purge rotate getrotationpolicy setrotationpolicy)
without() { # prints the permission list without $1
    local out=()
    for p in "${all[@]}"; do [ "$p" = "$1" ] || out+=("$p"); done
    (
        IFS=,
        echo "${out[*]}"
    )
}
check_perm() { # PERMISSION METHOD PATH [BODY]
    local perm=$1
    shift
    "$bin" vault policy set contoso --object-id "$spid" --permissions "$(without "$perm")" \
        "${vadm[@]}" >/dev/null
    expect 403 "does not have keys $perm permission" "$@"
    grep -q AccessDenied "$t/body" || fail "innererror AccessDenied missing for $perm"
    grep -q "oid=$spid" "$t/body" || fail "the caller is not named for $perm"
}
check_perm list GET "/keys?$av"
check_perm wrapKey POST "/keys/k1/wrapkey?$av" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$value\"}"
check_perm unwrapKey POST "/keys/k1/unwrapkey?$av" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$wrapped\"}"
check_perm get GET "/keys/k1?$av"
# with get removed the other three still work
expect 200 '"value"' GET "/keys?$av"
expect 200 '"kid"' POST "/keys/k1/wrapkey?$av" "{\"alg\":\"RSA-OAEP\",\"value\":\"$value\"}"
"$bin" vault policy delete contoso --object-id "$spid" "${vadm[@]}" >/dev/null
expect 403 AccessDenied GET "/keys?$av"
"$bin" vault policy set contoso --object-id "$spid" --permissions all "${vadm[@]}" >/dev/null

echo "--- token of another directory"
TOK=$(token "$other") expect 401 AKV10032 GET "/keys?$av"

echo "--- firewall"
"$bin" vault firewall contoso --default-action Deny --ip-rule 10.0.0.0/8 "${vadm[@]}" >/dev/null
expect 403 ForbiddenByFirewall GET "/keys?$av"
grep -q "127.0.0.1" "$t/body" || fail "the firewall error names no client address"
"$bin" vault firewall contoso --default-action Deny --ip-rule 10.0.0.0/8 --ip-rule 127.0.0.1/32 \
    "${vadm[@]}" >/dev/null
expect 200 '"value"' GET "/keys?$av"
"$bin" vault firewall contoso --default-action Allow "${vadm[@]}" >/dev/null

echo "--- throttling"
"$bin" vault update contoso --limit-ops 3 "${vadm[@]}" >/dev/null
got429=0
for _ in 1 2 3 4 5 6; do
    r=$(call GET "/keys?$av")
    if [ "${r%% *}" = 429 ]; then
        got429=1
        grep -qi '^Retry-After: [0-9]' "$t/hdr" || fail "429 without Retry-After"
        grep -q Throttled <<<"$r" || fail "429 body: $r"
        break
    fi
done
[ $got429 = 1 ] || fail "no 429 above the limit"
"$bin" vault update contoso --limit-ops 4000 "${vadm[@]}" >/dev/null

echo "--- purge protection cannot be turned off"
"$bin" vault update contoso --directory "$tid" "${vadm[@]}" >/dev/null # keeps it on
curl -s --cacert "$ca" -X PUT -H "Authorization: Bearer $(cat "$t/vault/admin.secret")" \
    -H 'Content-Type: application/json' -d '{"enablePurgeProtection":false}' \
    -o "$t/body" -w '%{http_code}' "$vurl/admin/vaults/contoso" >"$t/code"
[ "$(cat "$t/code")" = 409 ] || fail "turning purge protection off: $(cat "$t/code") $(cat "$t/body")"

echo "--- delete, purge refused, recover"
expect 200 recoveryId DELETE "/keys/k1?$av"
expect 404 KeyNotFound GET "/keys/k1?$av"
expect 409 ObjectIsDeletedButRecoverable POST "/keys/k1/create?$av" '{"kty":"RSA"}'
expect 403 PurgeProtected DELETE "/deletedkeys/k1?$av"
expect 200 '"kid"' POST "/deletedkeys/k1/recover?$av"
expect 200 '"kid"' GET "/keys/k1?$av"

echo "--- injected faults"
"$bin" vault faults --error-rate 1 --error-status 503 "${vadm[@]}" >/dev/null
expect 503 ServiceUnavailable GET "/keys?$av"
grep -qi '^Retry-After:' "$t/hdr" || fail "injected 503 without Retry-After"
"$bin" vault faults --error-rate 0 --refuse-seconds 2 "${vadm[@]}" >/dev/null
if curl -s --max-time 5 --cacert "$ca" -o /dev/null "$vurl/keys?$av"; then
    fail "a new connection was accepted while refusing"
fi
sleep 2.2
expect 200 '"value"' GET "/keys?$av"

echo "--- restart keeps keys and settings"
port=${vurl##*:}
atr_stop vault
start_vault "$port"
b2=$(call POST "/keys/k1/unwrapkey?$av" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$wrapped\"}" |
    cut -d' ' -f2- | jq -r .value)
[ "$b2" = "$value" ] || fail "unwrap after restart"
"$bin" vault show contoso "${vadm[@]}" | jq -e '.enablePurgeProtection == true' >/dev/null ||
    fail "settings lost"
grep -q -- "$value" "$t/vault/vault.db" && fail "a wrapped value appears in the store"
atr_stop vault

echo "--- master key with a wrong mode"
chmod 644 "$t/vault/master.key"
if "$bin" vault serve --dir "$t/vault" "${tls[@]}" --port 0 --idp "$idp" --ca "$ca" \
    >/dev/null 2>"$t/e"; then fail "started with a 0644 master key"; fi
grep -q "mode 0600" "$t/e" || fail "message: $(cat "$t/e")"
echo "cli.vault: ok"

#!/usr/bin/env bash
# cli.dev: `atrest dev` as the README's "run it" command uses it.
#   starts in a fresh state folder on free ports and prints the service URL
#   first, then a token and example commands; the identity server, the vault
#   and the service run with TLS trusted through the generated CA; the demo
#   tenant exists with its sample records, encrypted under managed keys; the
#   vault holds the demo key in a purge-protected vault; DIR/profile names
#   everything. DIR/dev.json (0600) holds the URLs, the CA, the customer key
#   URI, a records token and an encryption admin token (separate apps, valid
#   for hours), the vault administrator's credentials, which work against
#   the vault, and the paths of the service's and the vault's admin.secret
#   files, which open their /admin endpoints (the service's test hooks are on:
#   POST /admin/clock, POST /admin/monitor/run); it is removed on a clean
#   stop. The console page is served and a sign-in link with the printed
#   token is printed. A second start reuses the CA and
#   the demo (no second provisioning), writes dev.json again with fresh
#   tokens, and stops cleanly (exit 0) on SIGTERM. A state folder from before
#   dev.json (demo.json without the script apps) gets them on its next start.
#   Every wait is bounded; the process is killed on any exit.
set -euo pipefail
bin=${1:?usage: dev.sh path/to/atrest}
. "$(dirname "$0")/lib.sh"
t=$atr_tmp
state="$t/state"

# fixed ports across the restart: the customer key's URI names the vault's port
# below the ephemeral range (32768-60999), where port-0 servers and clients of parallel tests live
base=$((20000 + RANDOM % 12000))
start() {
    atr_start dev "$bin" dev --dir "$state" --port "$base"
    url=$ATR_URL
    for _ in $(seq 1 100); do
        grep -q '^  export TOKEN=' "$t/dev.out" && return 0
        sleep 0.1
    done
    fail "no token printed within 10 s"
}

echo "--- first start provisions the demo"
start
ca="$state/tls/ca.pem"
[ -f "$ca" ] || fail "no CA at $ca"
[ "$(stat -c %a "$state/tls/server.key")" = 600 ] || fail "server key is not 0600"
[ "$(stat -c %a "$state")" = 700 ] || fail "state folder is not 0700"
[ "$(stat -c %a "$state/demo.json")" = 600 ] || fail "demo.json is not 0600"
[ "$(stat -c %a "$state/service/srk.key")" = 600 ] || fail "srk.key is not 0600"
grep -q "curl --cacert $ca" "$t/dev.out" || fail "no example command printed"
. "$state/profile"
[ "$ATREST_URL" = "$url" ] || fail "profile URL $ATREST_URL, printed $url"
TOKEN=$(sed -n 's/^  export TOKEN=//p' "$t/dev.out")
tid=$ATREST_TENANT
curl -sS --max-time 5 --cacert "$ca" "$url/healthz" | jq -e '.status == "ok"' >/dev/null ||
    fail "healthz"
n=$(curl -sS --max-time 10 --cacert "$ca" -H "Authorization: Bearer $TOKEN" \
    "$url/v1/tenants/$tid/records?limit=10000" | wc -l)
[ "$n" -eq 60 ] || fail "demo tenant has $n records, want 60"
curl -sS --max-time 5 --cacert "$ca" -H "Authorization: Bearer $TOKEN" \
    "$url/v1/tenants/$tid/encryption" | jq -e '.mode == "customer" and .state == "customer"' \
    >/dev/null || fail "the demo tenant does not use the customer key"
# the vault: purge protection on, the demo key present (token from the demo app)
secret=$(jq -r .secret "$state/demo.json")
vtok=$("$bin" idp token --url "$ATREST_IDP_URL" --ca "$ca" --tenant "$tid" \
    --client-id "$ATREST_CLIENT_ID" --secret "$secret")
curl -sS --max-time 5 --cacert "$ca" -H "Authorization: Bearer $vtok" \
    "$ATREST_VAULT_URL/keys/tenant-key?api-version=7.4" |
    jq -e '.attributes.recoveryLevel == "Recoverable" and .key.kty == "RSA"' >/dev/null ||
    fail "demo key in the vault"
# the service's own application holds exactly list, wrapKey and unwrapKey
"$bin" vault show contoso --url "$ATREST_VAULT_URL" --ca "$ca" \
    --admin-secret-file "$state/vault/admin.secret" |
    jq -e --arg sp "$(jq -r .byokSpId "$state/demo.json")" \
        '.accessPolicies[] | select(.objectId == $sp) | .permissions.keys == ["list","unwrapKey","wrapKey"]' \
        >/dev/null || fail "the service's access policy"
# the records and encryption CLI with the dev profile
n=$("$bin" records query --profile "$state/profile" --all --limit 7 2>/dev/null | wc -l)
[ "$n" -eq 60 ] || fail "records query --all gave $n records, want 60"
printf '%s\nnot json\n' '{"time":"2026-01-01T00:00:00Z","user":"cli","app":"a","action":"x","ip":"192.0.2.9"}' |
    "$bin" records ingest --profile "$state/profile" --json >"$t/report"
jq -e '.accepted == 1 and .rejected == 1 and .errors[0].line == 2' "$t/report" >/dev/null ||
    fail "ingest report: $(cat "$t/report")"
n=$("$bin" records query --profile "$state/profile" --user cli | wc -l)
[ "$n" -eq 1 ] || fail "the record ingested with the CLI was not found ($n)"
"$bin" encryption status --profile "$state/profile" --json | jq -e '.mode == "customer"' \
    >/dev/null || fail "encryption status"
set +e
"$bin" records query --profile "$state/profile" --limit 0 >/dev/null 2>"$t/err"
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q limit "$t/err" || fail "limit 0: exit $rc, $(cat "$t/err")"

echo "--- dev.json"
dj="$state/dev.json"
# claims TOKEN: the JWT's payload
claims() {
    cut -d. -f2 <<<"$1" | tr '_-' '/+' | awk '{ while (length($0) % 4) $0 = $0 "="; print }' |
        base64 -d
}
# check_dev_json: dev.json is private, complete, and everything in it works
check_dev_json() {
    [ -f "$dj" ] || fail "no $dj"
    [ "$(stat -c %a "$dj")" = 600 ] || fail "dev.json is not 0600"
    local k
    for k in service_url console_url vault_url identity_url ca_file profile tenant_id key_uri \
        service_admin_secret_file vault_admin_secret_file tokens.records tokens.admin \
        vault_admin.tenant_id vault_admin.client_id vault_admin.client_secret; do
        jq -e --arg k "$k" 'getpath($k | split(".")) | type == "string" and length > 0' \
            "$dj" >/dev/null || fail "dev.json: $k missing or empty"
    done
    djca=$(jq -r .ca_file "$dj")
    case $djca in /*) ;; *) fail "ca_file $djca is not absolute" ;; esac
    [ -f "$djca" ] && cmp -s "$djca" "$ca" || fail "ca_file $djca is not the CA"
    [ "$(jq -r .profile "$dj")" = "$(realpath "$state/profile")" ] || fail "dev.json profile"
    [ "$(jq -r .service_url "$dj")" = "$url" ] || fail "dev.json service_url"
    [ "$(jq -r .console_url "$dj")" = "$url/console/" ] || fail "dev.json console_url"
    [ "$(jq -r .identity_url "$dj")" = "$ATREST_IDP_URL" ] || fail "dev.json identity_url"
    [ "$(jq -r .vault_url "$dj")" = "$ATREST_VAULT_URL" ] || fail "dev.json vault_url"
    [ "$(jq -r .tenant_id "$dj")" = "$tid" ] || fail "dev.json tenant_id"
    [ "$(jq -r .vault_admin.tenant_id "$dj")" = "$tid" ] || fail "dev.json vault_admin.tenant_id"
    grep -qF "$(realpath "$dj")" "$t/dev.out" || fail "the dev.json path is not printed"
    grep -qF "$(jq -r .key_uri "$dj")" "$t/dev.out" || fail "the key URI is not printed"
    grep -qF "$url/console/" "$t/dev.out" || fail "the console URL is not printed"
    # the console's sign-in link carries the printed token in the fragment
    local printed
    printed=$(sed -n 's/^  export TOKEN=//p' "$t/dev.out")
    grep -qxF "  $url/console/#token=$printed" "$t/dev.out" || fail "no console sign-in link"
    curl -sS --max-time 5 --cacert "$ca" -D "$t/console.h" -o "$t/console.html" "$url/console/"
    grep -qi "^content-security-policy: default-src 'self'" "$t/console.h" &&
        grep -q 'console.js' "$t/console.html" || fail "the console page: $(cat "$t/console.h")"
    # the admin secrets: absolute paths of the running parts' files, which open /admin
    local ssf vsf
    ssf=$(jq -r .service_admin_secret_file "$dj")
    vsf=$(jq -r .vault_admin_secret_file "$dj")
    [ "$ssf" = "$(realpath "$state/service/admin.secret")" ] || fail "service_admin_secret_file $ssf"
    [ "$vsf" = "$(realpath "$state/vault/admin.secret")" ] || fail "vault_admin_secret_file $vsf"
    [ "$(stat -c %a "$ssf")" = 600 ] && [ "$(stat -c %a "$vsf")" = 600 ] ||
        fail "the admin.secret files are not 0600"
    curl -sS --max-time 30 --cacert "$ca" -X POST -H "Authorization: Bearer $(cat "$ssf")" \
        "$url/admin/monitor/run" | jq -e '.tenants >= 1' >/dev/null ||
        fail "service_admin_secret_file does not run the monitor"
    curl -sS --max-time 5 --cacert "$ca" -X POST -H "Authorization: Bearer $(cat "$ssf")" \
        -H 'Content-Type: application/json' -d '{"advanceSeconds":0}' "$url/admin/clock" |
        jq -e '.offsetSeconds == 0' >/dev/null || fail "the service's test clock is not on"
    curl -sS --max-time 5 --cacert "$ca" -H "Authorization: Bearer $(cat "$vsf")" \
        "$ATREST_VAULT_URL/admin/vaults/contoso" | jq -e '.accessPolicies | length >= 1' \
        >/dev/null || fail "vault_admin_secret_file does not open the vault's /admin"
    # no secret of dev.json is logged
    for k in tokens.records tokens.admin vault_admin.client_secret; do
        if grep -qF "$(jq -r --arg k "$k" 'getpath($k | split("."))' "$dj")" "$t/dev.out" \
            "$t/dev.err"; then
            fail "$k is in the log"
        fi
    done
    for k in service_admin_secret_file vault_admin_secret_file; do
        if grep -qF "$(cat "$(jq -r ".$k" "$dj")")" "$t/dev.out" "$t/dev.err"; then
            fail "the secret of $k is in the log"
        fi
    done
    rtok=$(jq -r .tokens.records "$dj")
    atok=$(jq -r .tokens.admin "$dj")
    # valid for hours, separate apps with their roles
    claims "$rtok" | jq -e '.exp - .iat >= 4 * 3600 and (.roles | sort) == ["Records.Read","Records.Write"]' \
        >/dev/null || fail "records token: $(claims "$rtok" | jq -c '{iat, exp, roles}')"
    claims "$atok" | jq -e '.exp - .iat >= 4 * 3600 and .roles == ["DataEncryption.Admin"]' \
        >/dev/null || fail "admin token: $(claims "$atok" | jq -c '{iat, exp, roles}')"
    n=$(curl -sS --max-time 10 --cacert "$djca" -H "Authorization: Bearer $rtok" \
        "$url/v1/tenants/$tid/records?limit=10000" | wc -l)
    [ "$n" -ge 60 ] || fail "tokens.records found $n records"
    curl -sS --max-time 5 --cacert "$djca" -H "Authorization: Bearer $atok" \
        "$url/v1/tenants/$tid/encryption" >"$t/enc"
    jq -e --arg k "$(jq -r .key_uri "$dj")" '.mode == "customer" and .keyUri == $k' "$t/enc" \
        >/dev/null || fail "tokens.admin encryption status: $(cat "$t/enc")"
    # the vault administrator: a token from the identity server, then the demo key
    local cid csec code
    cid=$(jq -r .vault_admin.client_id "$dj")
    csec=$(jq -r .vault_admin.client_secret "$dj")
    vatok=$(curl -sS --max-time 5 --cacert "$djca" --data-urlencode grant_type=client_credentials \
        --data-urlencode "client_id=$cid" --data-urlencode "client_secret=$csec" \
        --data-urlencode scope=https://vault.azure.net/.default \
        "$(jq -r .identity_url "$dj")/$(jq -r .vault_admin.tenant_id "$dj")/oauth2/v2.0/token" |
        jq -r .access_token)
    [ -n "$vatok" ] && [ "$vatok" != null ] || fail "no vault token for vault_admin"
    curl -sS --max-time 5 --cacert "$djca" -H "Authorization: Bearer $vatok" \
        "$ATREST_VAULT_URL/keys/tenant-key/versions?api-version=7.4" |
        jq -e '.value | length >= 1' >/dev/null || fail "vault_admin cannot list the key's versions"
    curl -sS --max-time 5 --cacert "$djca" -H "Authorization: Bearer $vatok" \
        "$ATREST_VAULT_URL/keys/tenant-key?api-version=7.4" |
        jq -e '.key.kty == "RSA"' >/dev/null || fail "vault_admin cannot get the demo key"
    # every key permission on the vault (as the demo client's "all")
    "$bin" vault show contoso --url "$ATREST_VAULT_URL" --ca "$ca" \
        --admin-secret-file "$state/vault/admin.secret" >"$t/vault.json"
    jq -e --arg va "$(jq -r .vaultAdminSpId "$state/demo.json")" \
        --arg demo "$(jq -r .spId "$state/demo.json")" \
        '[.accessPolicies[] | select(.objectId == $va)][0].permissions.keys as $k |
         $k == [.accessPolicies[] | select(.objectId == $demo)][0].permissions.keys and
         ($k | index("purge")) != null and ($k | index("get")) != null' "$t/vault.json" \
        >/dev/null || fail "the vault administrator's access policy"
    # the tokens do not cross roles
    code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' --cacert "$djca" \
        -H "Authorization: Bearer $rtok" "$url/v1/tenants/$tid/encryption")
    [ "$code" = 403 ] || fail "tokens.records read the encryption status ($code)"
    code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' --cacert "$djca" \
        -H "Authorization: Bearer $vatok" "$url/v1/tenants/$tid/records")
    [ "$code" = 401 ] || [ "$code" = 403 ] || fail "the vault token read records ($code)"
}
check_dev_json
rtok1=$rtok
vadmin1=$(jq -r .vault_admin.client_id "$dj")

# the sample records are not stored in clear
atr_stop dev
[ ! -e "$dj" ] || fail "dev.json is left after a clean stop"
if grep -r -a -q 'contoso.example' "$state/service"; then fail "a record is stored in clear"; fi

echo "--- second start reuses the CA and the demo"
sum=$(sha256sum "$ca")
tenant_before=$tid
start
[ "$(sha256sum "$ca")" = "$sum" ] || fail "the CA changed on restart"
. "$state/profile"
[ "$ATREST_TENANT" = "$tenant_before" ] || fail "the demo was provisioned again"
TOKEN=$(sed -n 's/^  export TOKEN=//p' "$t/dev.out")
n=$(curl -sS --max-time 10 --cacert "$ca" -H "Authorization: Bearer $TOKEN" \
    "$url/v1/tenants/$tid/records?limit=10000" | wc -l)
[ "$n" -eq 61 ] || fail "after restart the demo tenant has $n records, want 61"
check_dev_json
[ "$rtok" != "$rtok1" ] || fail "dev.json has the previous start's token"
[ "$(jq -r .vault_admin.client_id "$dj")" = "$vadmin1" ] ||
    fail "the vault administrator was provisioned again"
atr_stop dev

echo "--- a state folder from before dev.json gets the script apps"
jq 'del(.recordsAppId, .recordsSecret, .recordsSpId, .adminAppId, .adminSecret, .adminSpId,
        .vaultAdminAppId, .vaultAdminSecret, .vaultAdminSpId)' "$state/demo.json" >"$t/old.json"
cat "$t/old.json" >"$state/demo.json"
start
[ "$(jq -r .tenant "$state/demo.json")" = "$tenant_before" ] || fail "the demo was provisioned again"
check_dev_json
[ "$(jq -r .vault_admin.client_id "$dj")" != "$vadmin1" ] ||
    fail "the vault administrator was not provisioned"
atr_stop dev

echo "--- bad arguments"
set +e
"$bin" dev --port 70000 >/dev/null 2>"$t/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "--port 70000 exited $rc, want 2"
echo "cli.dev: all checks passed"

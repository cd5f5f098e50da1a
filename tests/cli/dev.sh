#!/usr/bin/env bash
# cli.dev: `atrest dev` as the README's "run it" command uses it.
#   starts in a fresh state folder on free ports and prints the service URL
#   first, then a token and example commands; the identity server, the vault
#   and the service run with TLS trusted through the generated CA; the demo
#   tenant exists with its sample records, encrypted under managed keys; the
#   vault holds the demo key in a purge-protected vault; DIR/profile names
#   everything. A second start reuses the CA and the demo (no second
#   provisioning) and stops cleanly (exit 0) on SIGTERM. Every wait is
#   bounded; the process is killed on any exit.
set -euo pipefail
bin=${1:?usage: dev.sh path/to/atrest}
. "$(dirname "$0")/lib.sh"
t=$atr_tmp
state="$t/state"

# fixed ports across the restart: the customer key's URI names the vault's port
base=$((20000 + RANDOM % 20000))
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
# the sample records are not stored in clear
atr_stop dev
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
atr_stop dev

echo "--- bad arguments"
set +e
"$bin" dev --port 70000 >/dev/null 2>"$t/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "--port 70000 exited $rc, want 2"
echo "cli.dev: all checks passed"

#!/usr/bin/env bash
# cli.byok: enabling and disabling a customer key (bring your own key) on a
# real identity server, key vault and service, as a tenant admin does it:
#   each failing validation check with its own code and fix (malformed URI,
#   service principal missing/disabled, list or unwrapKey missing from the
#   access policy, firewall, disabled key, EC key, vault without purge
#   protection); the good URI enables the latest version (the version pasted
#   is ignored) and nothing but the customer layer is stored; after a restart
#   reads go through the vault; a revoked unwrapKey makes reads fail with the
#   reason; disabling removes only the customer layer (reads work with the
#   vault stopped); every step is audited.
set -euo pipefail
bin=${1:?usage: byok.sh path/to/atrest}
. "$(dirname "$0")/lib.sh"
t=$atr_tmp

"$bin" cert --dir "$t/tls" --host 127.0.0.1 --host localhost >/dev/null
ca="$t/tls/ca.pem"
tls=(--cert "$t/tls/server.pem" --key "$t/tls/server.key")
atr_start idp "$bin" idp serve --dir "$t/idp" "${tls[@]}" --port 0
idp=$ATR_URL
ia=(--url "$idp" --ca "$ca" --admin-secret-file "$t/idp/admin.secret")

# the customer's directory (the tenant) with an admin client; the service
# provider's directory with the service's multi-tenant application
tid=$("$bin" idp directory create "${ia[@]}" --name Contoso | jq -r .id)
home=$("$bin" idp directory create "${ia[@]}" --name atrest | jq -r .id)
adm=$("$bin" idp app create "${ia[@]}" --tenant "$tid" --name admin)
adm_id=$(jq -r .appId <<<"$adm")
adm_secret=$(jq -r .secret <<<"$adm")
adm_sp=$("$bin" idp sp create "${ia[@]}" --tenant "$tid" --app-id "$adm_id" | jq -r .id)
for r in DataEncryption.Admin Records.Write Records.Read; do
    "$bin" idp sp grant "${ia[@]}" --tenant "$tid" --id "$adm_sp" --role "$r" >/dev/null
done
svc=$("$bin" idp app create "${ia[@]}" --tenant "$home" --name atrest --multi-tenant)
svc_id=$(jq -r .appId <<<"$svc")
jq -r .secret <<<"$svc" >"$t/byok.secret"
token() { # SCOPE
    "$bin" idp token --url "$idp" --ca "$ca" --tenant "$tid" --client-id "$adm_id" \
        --secret "$adm_secret" --scope "$1"
}

atr_start vault "$bin" vault serve --dir "$t/vault" "${tls[@]}" --port 0 --idp "$idp" \
    --ca "$ca" --default-vault contoso --test-mode
vurl=$ATR_URL
va=(--url "$vurl" --ca "$ca" --admin-secret-file "$t/vault/admin.secret")
"$bin" vault create contoso --directory "$tid" "${va[@]}" >/dev/null
"$bin" vault policy set contoso --object-id "$adm_sp" --permissions all "${va[@]}" >/dev/null
vtok=$(token https://vault.azure.net/.default)
vcall() { # METHOD PATH [BODY]
    curl -sS --max-time 10 --cacert "$ca" -X "$1" -H "Authorization: Bearer $vtok" \
        -H 'Content-Type: application/json' ${3:+-d "$3"} "$vurl$2?api-version=7.4"
}
k1=$(vcall POST /keys/k1/create '{"kty":"RSA","key_size":2048}' | jq -r .key.kid)
vcall POST /keys/ec1/create '{"kty":"EC","crv":"P-256"}' >/dev/null

start_service() {
    atr_start service "$bin" serve --dir "$t/svc" "${tls[@]}" --port "${1:-0}" --idp "$idp" \
        --ca "$ca" --byok-client-id "$svc_id" --byok-secret-file "$t/byok.secret" \
        --byok-vault-host "${vurl#https://}"
    surl=$ATR_URL
}
start_service
stok=$(token api://atrest/.default)
scall() { # METHOD PATH [BODY] -> "STATUS BODY"
    local code
    code=$(curl -sS --max-time 30 -o "$t/body" -w '%{http_code}' --cacert "$ca" -X "$1" \
        -H "Authorization: Bearer $stok" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$surl$2")
    echo "$code $(cat "$t/body")"
}
enable() { scall PUT "/v1/tenants/$tid/encryption" "{\"keyUri\":\"$1\"}"; }
expect_fail() { # URI CODE CHECK [PATTERN]
    echo "    expect $2 at $3"
    local got
    got=$(enable "$1")
    [ "${got%% *}" != 200 ] || fail "enable $1 succeeded, want $2"
    jq -e --arg c "$2" '.error.code == $c' "$t/body" >/dev/null || fail "enable $1: $got (want $2)"
    jq -e --arg n "$3" '.error.checks[] | select(.name == $n) | .outcome == "failed"' "$t/body" \
        >/dev/null || fail "enable $1: check $3 not marked failed: $got"
    jq -e '.error.fix | length > 10' "$t/body" >/dev/null || fail "no fix in $got"
    [ -z "${4:-}" ] || grep -q -- "$4" "$t/body" || fail "enable $1: want /$4/ in $got"
}

scall PUT "/v1/tenants/$tid" >/dev/null
printf '{"time":"2026-11-29T01:00:00Z","user":"alice","app":"Mail","action":"login","ip":"192.0.2.1"}\n' |
    curl -sS --cacert "$ca" -H "Authorization: Bearer $stok" -H 'Content-Type: application/x-ndjson' \
        --data-binary @- "$surl/v1/tenants/$tid/records" >/dev/null
count() {
    curl -sS --max-time 30 --cacert "$ca" -H "Authorization: Bearer $stok" \
        "$surl/v1/tenants/$tid/records" | wc -l
}
[ "$(count)" -eq 1 ] || fail "record not stored"

echo "--- each check fails with its own code"
expect_fail "${vurl/https/http}/keys/k1" InvalidKeyUri uri
expect_fail "$vurl/secrets/k1" InvalidKeyUri uri
expect_fail "https://evil.example/keys/k1" InvalidKeyUri uri
expect_fail "$vurl/keys/k1" ServicePrincipalMissing servicePrincipal
svc_sp=$("$bin" idp sp create "${ia[@]}" --tenant "$tid" --app-id "$svc_id" | jq -r .id)
expect_fail "$vurl/keys/k1" PermissionMissing list list
"$bin" vault policy set contoso --object-id "$svc_sp" --permissions list,wrapKey "${va[@]}" >/dev/null
expect_fail "$vurl/keys/k1" PermissionMissing unwrap unwrapKey
"$bin" vault policy set contoso --object-id "$svc_sp" --permissions list,wrapKey,unwrapKey \
    "${va[@]}" >/dev/null
expect_fail "$vurl/keys/nokey" KeyNotFound list
expect_fail "$vurl/keys/ec1" KeyNotRsa wrap
"$bin" idp sp disable "${ia[@]}" --tenant "$tid" --id "$svc_sp" >/dev/null
expect_fail "$vurl/keys/k1" ServicePrincipalDisabled servicePrincipal
"$bin" idp sp enable "${ia[@]}" --tenant "$tid" --id "$svc_sp" >/dev/null
"$bin" vault firewall contoso --default-action Deny --ip-rule 10.0.0.0/8 "${va[@]}" >/dev/null
expect_fail "$vurl/keys/k1" VaultFirewall list
"$bin" vault firewall contoso --default-action Allow "${va[@]}" >/dev/null
v1=${k1##*/}
vcall PATCH "/keys/k1/$v1" '{"attributes":{"enabled":false}}' >/dev/null
expect_fail "$vurl/keys/k1" NoUsableVersion list
vcall PATCH "/keys/k1/$v1" '{"attributes":{"enabled":true}}' >/dev/null
expect_fail "$vurl/keys/k1" PurgeProtectionOff purgeProtection "Recoverable+Purgeable"
"$bin" vault update contoso --purge-protection "${va[@]}" >/dev/null
jq -e '.mode == "managed"' <<<"$(scall GET "/v1/tenants/$tid/encryption" | cut -d' ' -f2-)" \
    >/dev/null || fail "a refused enable changed the mode"

echo "--- enable: the latest version, whatever version was pasted"
k2=$(vcall POST /keys/k1/rotate | jq -r .key.kid)
got=$(enable "$k1")
[ "${got%% *}" = 200 ] || fail "enable: $got"
jq -e --arg k "$k2" '.mode == "customer" and .keyVersion == $k and .validation.ok' "$t/body" \
    >/dev/null || fail "enable answer: $got"
scall GET "/v1/tenants/$tid/encryption" >/dev/null
jq -e --arg k "$k2" '.mode == "customer" and .keyVersion == $k' "$t/body" >/dev/null ||
    fail "status after enable: $(cat "$t/body")"
[ "$(count)" -eq 1 ] || fail "records after enable"

echo "--- only the customer layer is stored; reads go through the vault after a restart"
port=${surl##*:}
atr_stop service
row=$(sqlite3 "$t/svc/atrest.db" "SELECT length(srk_blob), length(customer_blob) FROM tenants")
[ "${row%%|*}" = 0 ] && [ "${row##*|}" -gt 0 ] || fail "stored layers: $row"
start_service "$port"
[ "$(count)" -eq 1 ] || fail "records after restart"

echo "--- unwrapKey revoked: reads fail with the reason"
atr_stop service
"$bin" vault policy set contoso --object-id "$svc_sp" --permissions list,wrapKey "${va[@]}" >/dev/null
start_service "$port"
got=$(scall GET "/v1/tenants/$tid/records")
[ "${got%% *}" -ge 500 ] || fail "read with unwrapKey revoked: $got"
grep -q unwrapKey "$t/body" || fail "the reason does not name unwrapKey: $got"
"$bin" vault policy set contoso --object-id "$svc_sp" --permissions list,wrapKey,unwrapKey \
    "${va[@]}" >/dev/null
[ "$(count)" -eq 1 ] || fail "records after restoring unwrapKey"

echo "--- disable: managed keys only, readable without the vault"
got=$(scall DELETE "/v1/tenants/$tid/encryption")
[ "${got%% *}" = 200 ] || fail "disable: $got"
jq -e '.mode == "managed"' "$t/body" >/dev/null || fail "disable answer: $got"
atr_stop service
atr_stop vault
start_service "$port"
[ "$(count)" -eq 1 ] || fail "records after disable with the vault down"
scall GET "/v1/tenants/$tid/audit" >/dev/null
for a in encryption.enable.refused encryption.enable encryption.disable; do
    jq -e --arg a "$a" '[.value[].action] | index($a) != null' "$t/body" >/dev/null ||
        fail "audit lacks $a: $(cat "$t/body")"
done
grep -q "$k2" "$t/body" || fail "the audit does not name the key version"

echo "cli.byok: ok"

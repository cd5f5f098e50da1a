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

. "$(dirname "$0")/byok_env.sh"
start_service
stok=$(token api://atrest/.default)
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

echo "--- a certificate credential instead of the secret (client assertions)"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/byok.key" -out "$t/byok.crt" -days 2 \
    -subj /CN=atrest-byok 2>/dev/null
chmod 600 "$t/byok.key"
"$bin" idp app add-key "${ia[@]}" --app-id "$svc_id" --key-file "$t/byok.crt" >/dev/null
atr_stop service
if "$bin" serve --dir "$t/svc" "${tls[@]}" --port 0 --idp "$idp" --ca "$ca" \
    --byok-client-id "$svc_id" --byok-cert-file "$t/byok.crt" >/dev/null 2>"$t/err"; then
    fail "a certificate without its key was accepted"
fi
chmod 644 "$t/byok.key"
if "$bin" serve --dir "$t/svc" "${tls[@]}" --port 0 --idp "$idp" --ca "$ca" \
    --byok-client-id "$svc_id" --byok-cert-file "$t/byok.crt" --byok-key-file "$t/byok.key" \
    >/dev/null 2>"$t/err"; then
    fail "a key file readable by others was accepted"
fi
grep -q "chmod 600" "$t/err" || fail "no hint for the key file mode: $(cat "$t/err")"
chmod 600 "$t/byok.key"
atr_start service "$bin" serve --dir "$t/svc" "${tls[@]}" --port "$port" --idp "$idp" \
    --ca "$ca" --byok-client-id "$svc_id" --byok-cert-file "$t/byok.crt" \
    --byok-key-file "$t/byok.key" --byok-vault-host "${vurl#https://}"
surl=$ATR_URL
[ "$(count)" -eq 1 ] || fail "records through the vault with the certificate credential"
grep -q 'client_secret' "$t/idp.err" && fail "the idp log mentions a client secret"
atr_stop service
start_service "$port"

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

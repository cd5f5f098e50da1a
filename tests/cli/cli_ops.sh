#!/usr/bin/env bash
# cli.cli_ops: an administrator's whole procedure through the CLI, against a
# real identity server, key vault and service on loopback (TLS), no curl:
#   vault key create/list (all pages)/show/versions/rotate/update/import/delete/
#   recover/purge (refused under purge protection)/rotation-policy as Key Vault REST
#   clients with client-credential tokens; encryption enable refused (the
#   failed check and its fix shown, exit 1) then accepted (exit 0); status
#   --json; a key rotation rolled by `monitor run`; bulk enable and status
#   over 3 tenants from a file (progress lines on stderr, a refused tenant
#   makes exit 1; per-tenant tokens from client credentials or --token-dir);
#   disable --yes (and its refusal without a terminal); records ingest and
#   query; settings from flags over environment over profile; exit codes
#   0/1/2 and the server's error codes on stderr.
# Four vaults ({contoso,fab-a,fab-b,fab-c}.localhost, which libcurl resolves
# to loopback) belong to four directories, as each tenant's vault must.
set -euo pipefail
bin=${1:?usage: cli_ops.sh path/to/atrest}
. "$(dirname "$0")/lib.sh"
t=$atr_tmp
# nothing from the caller's environment or a .dev/profile in the way
for v in $(env | sed -n 's/^\(ATREST_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
cd "$t"

# run CMD... -> $rc, stdout in $t/out, stderr in $t/err
run() {
    set +e
    "$@" >"$t/out" 2>"$t/err"
    rc=$?
    set -e
}
expect_rc() { # WANT WHAT
    [ "$rc" -eq "$1" ] || fail "$2: exit $rc, want $1; stdout: $(head -c 600 "$t/out"); stderr: $(head -c 600 "$t/err")"
}

vaults=(contoso fab-a fab-b fab-c)
hosts=(--host 127.0.0.1 --host localhost)
for v in "${vaults[@]}"; do hosts+=(--host "$v.localhost"); done
"$bin" cert --dir "$t/tls" "${hosts[@]}" >/dev/null
ca="$t/tls/ca.pem"
tls=(--cert "$t/tls/server.pem" --key "$t/tls/server.key")

echo "--- identity: directories, the operator's and the service's applications"
atr_start idp "$bin" idp serve --dir "$t/idp" "${tls[@]}" --port 0
idp=$ATR_URL
ia=(--url "$idp" --ca "$ca" --admin-secret-file "$t/idp/admin.secret")
newdir() { "$bin" idp directory create "${ia[@]}" --name "$1" | jq -r .id; }
tid=$(newdir Contoso)
home=$(newdir atrest)
ta=$(newdir FabA)
tb=$(newdir FabB)
tc=$(newdir FabC)
dirs=("$tid" "$ta" "$tb" "$tc")
# the operator: one multi-tenant application with the service roles in every directory
ops=$("$bin" idp app create "${ia[@]}" --tenant "$home" --name operator --multi-tenant)
ops_id=$(jq -r .appId <<<"$ops")
(umask 077 && jq -r .secret <<<"$ops" >"$t/ops.secret")
svc=$("$bin" idp app create "${ia[@]}" --tenant "$home" --name atrest --multi-tenant)
svc_id=$(jq -r .appId <<<"$svc")
(umask 077 && jq -r .secret <<<"$svc" >"$t/byok.secret")
declare -A ops_sp svc_sp
for d in "${dirs[@]}"; do
    ops_sp[$d]=$("$bin" idp sp create "${ia[@]}" --tenant "$d" --app-id "$ops_id" | jq -r .id)
    for r in DataEncryption.Admin Records.Write Records.Read; do
        "$bin" idp sp grant "${ia[@]}" --tenant "$d" --id "${ops_sp[$d]}" --role "$r" >/dev/null
    done
    # the customer registers the service's application in its directory
    svc_sp[$d]=$("$bin" idp sp create "${ia[@]}" --tenant "$d" --app-id "$svc_id" --json |
        jq -r .id)
done

echo "--- vaults with soft delete and purge protection, access policies"
atr_start vault "$bin" vault serve --dir "$t/vault" "${tls[@]}" --port 0 --idp "$idp" \
    --ca "$ca" --dns-suffix localhost --default-vault contoso --test-mode
vport=${ATR_URL##*:}
va=(--url "$ATR_URL" --ca "$ca" --admin-secret-file "$t/vault/admin.secret")
vurl() { echo "https://$1.localhost:$vport"; }
for i in 0 1 2 3; do
    v=${vaults[$i]}
    d=${dirs[$i]}
    "$bin" vault create "$v" --directory "$d" --purge-protection "${va[@]}" >/dev/null
    "$bin" vault policy set "$v" --object-id "${ops_sp[$d]}" --permissions all "${va[@]}" \
        >/dev/null
    # Contoso forgets unwrapKey at first
    perms=list,wrapKey,unwrapKey
    [ "$v" = contoso ] && perms=list,wrapKey
    "$bin" vault policy set "$v" --object-id "${svc_sp[$d]}" --permissions "$perms" "${va[@]}" \
        >/dev/null
done
"$bin" vault show contoso "${va[@]}" | jq -e '.recoveryLevel == "Recoverable"' >/dev/null ||
    fail "contoso is not purge protected"

echo "--- vault key: the Key Vault data plane as the operator"
vc=$(vurl contoso)
cred=(--ca "$ca" --idp-url "$idp" --client-id "$ops_id" --secret-file "$t/ops.secret")
kv() { "$bin" vault key "$@" "${cred[@]}"; }
run kv create k1 --url "$vc" --tenant "$tid" --json
expect_rc 0 "key create"
k1v1=$(jq -r .key.kid "$t/out")
jq -e '.key.kty == "RSA" and (.key.key_ops | index("unwrapKey"))' "$t/out" >/dev/null ||
    fail "key create answer: $(cat "$t/out")"
[[ $k1v1 == "$vc/keys/k1/"* ]] || fail "kid $k1v1 is not in $vc"
# the environment names the vault and the tenant from here on
export ATREST_VAULT_URL=$vc ATREST_TENANT=$tid
run kv create tmp --kty EC --curve P-256 --tag purpose=test
expect_rc 0 "EC key create"
grep -q 'EC, P-256' "$t/out" || fail "key create text: $(cat "$t/out")"
run kv list
expect_rc 0 "key list"
grep -q '^k1 .*enabled' "$t/out" && grep -q '^tmp ' "$t/out" || fail "key list: $(cat "$t/out")"
run kv rotate k1 --json
expect_rc 0 "key rotate"
k1v2=$(jq -r .key.kid "$t/out")
[ "$k1v2" != "$k1v1" ] || fail "rotate made no new version"
run kv versions k1 --json
expect_rc 0 "key versions"
jq -e '.value | length == 2' "$t/out" >/dev/null || fail "versions: $(cat "$t/out")"
run kv show "$k1v1"
expect_rc 0 "key show by identifier"
grep -q "^kid *$k1v1\$" "$t/out" || fail "show by identifier: $(cat "$t/out")"
run kv update k1 --version "${k1v1##*/}" --disable --exp 2099-01-01 --json
expect_rc 0 "key update"
jq -e '.attributes.enabled == false and .attributes.exp == 4070908800' "$t/out" >/dev/null ||
    fail "update: $(cat "$t/out")"
run kv update k1 --version "${k1v1##*/}" --enable --exp none --json
expect_rc 0 "key update back"
jq -e '.attributes.enabled == true and (.attributes.exp == null)' "$t/out" >/dev/null ||
    fail "update back: $(cat "$t/out")"
run kv rotation-policy set k1 --rotate-after P90D --expiry-time P1Y
expect_rc 0 "rotation-policy set"
run kv rotation-policy get k1 --json
expect_rc 0 "rotation-policy get"
jq -e '.lifetimeActions[0].trigger.timeAfterCreate == "P90D" and .attributes.expiryTime == "P1Y"' \
    "$t/out" >/dev/null || fail "rotation policy: $(cat "$t/out")"
if command -v openssl >/dev/null; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$t/imp.pem" 2>/dev/null
    run kv import imported --key-file "$t/imp.pem" --json
    expect_rc 0 "key import (PEM)"
    jq -e '.key.kty == "RSA" and (.key | has("d") | not)' "$t/out" >/dev/null ||
        fail "import: $(cat "$t/out")"
fi
echo "    delete, purge refused, recover"
run kv delete tmp
expect_rc 0 "key delete"
grep -q 'recoveryId' "$t/out" || fail "delete text: $(cat "$t/out")"
run kv show tmp
expect_rc 1 "show of a deleted key"
grep -q 'HTTP 404 KeyNotFound' "$t/err" || fail "show deleted: $(cat "$t/err")"
run kv list --deleted
expect_rc 0 "list --deleted"
grep -q '^tmp .*purge' "$t/out" || fail "list --deleted: $(cat "$t/out")"
run kv purge tmp </dev/null
expect_rc 2 "purge without --yes and without a terminal"
run kv purge tmp --yes
expect_rc 1 "purge under purge protection"
grep -q 'PurgeProtected' "$t/err" || fail "purge refusal: $(cat "$t/err")"
run kv recover tmp
expect_rc 0 "key recover"
run kv show tmp
expect_rc 0 "show after recover"
echo "    paging: more keys than a page holds (25)"
"$bin" vault update contoso --limit-create 1000 "${va[@]}" >/dev/null
for i in $(seq 1 26); do kv create "page$i" --kty EC >/dev/null; done
run kv list --json
expect_rc 0 "list of many keys"
[ "$(jq '.value | map(.kid) | unique | length' "$t/out")" -ge 28 ] ||
    fail "paged list: $(jq -c '.value | length' "$t/out") keys"
echo "    usage errors and a missing permission"
run kv show
expect_rc 2 "show without a name"
run kv create 'bad name!'
expect_rc 2 "a bad key name"
run kv rotate k1 --exp +1d
expect_rc 2 "an option of another verb"
"$bin" vault policy set contoso --object-id "${ops_sp[$tid]}" --permissions get "${va[@]}" \
    >/dev/null
run kv list
expect_rc 1 "list without the permission"
grep -q 'HTTP 403 Forbidden (AccessDenied)' "$t/err" || fail "AccessDenied: $(cat "$t/err")"
"$bin" vault policy set contoso --object-id "${ops_sp[$tid]}" --permissions all "${va[@]}" \
    >/dev/null
unset ATREST_VAULT_URL ATREST_TENANT

echo "--- the service; the CLI configured by a profile"
allowed=()
for v in "${vaults[@]}"; do allowed+=(--byok-vault-host "$v.localhost:$vport"); done
atr_start service env ATREST_SERVE_TEST_CLOCK=true ATREST_SERVE_MONITOR_THREAD=false \
    "$bin" serve --dir "$t/svc" "${tls[@]}" --port 0 --idp "$idp" --ca "$ca" \
    --byok-client-id "$svc_id" --byok-secret-file "$t/byok.secret" "${allowed[@]}"
surl=$ATR_URL
cat >"$t/profile" <<EOF
# the operator's settings
ATREST_URL=$surl
export ATREST_IDP_URL="$idp"
ATREST_CA=$ca
ATREST_TENANT=$tid
ATREST_CLIENT_ID=$ops_id
ATREST_CLIENT_SECRET_FILE=$t/ops.secret
ATREST_SERVE_ADMIN_SECRET_FILE=$t/svc/admin.secret
EOF
export ATREST_PROFILE=$t/profile
rec='{"time":"2026-11-29T01:00:00Z","user":"alice","app":"Mail","action":"login","ip":"192.0.2.1"}'
for d in "${dirs[@]}"; do # the first write creates the tenant
    run "$bin" records ingest --tenant "$d" <<<"$rec"
    expect_rc 0 "records ingest for $d"
    grep -q 'accepted 1, rejected 0' "$t/out" || fail "ingest report: $(cat "$t/out")"
done
echo "    precedence: flag > environment > profile"
run env ATREST_TENANT=not-a-directory "$bin" encryption status
expect_rc 1 "status for the environment's (bad) tenant"
grep -q 'not-a-directory' "$t/err" || fail "the environment did not win: $(cat "$t/err")"
run env ATREST_TENANT=not-a-directory "$bin" encryption status --tenant "$tid" --json
expect_rc 0 "status with --tenant over the environment"
jq -e '.mode == "managed"' "$t/out" >/dev/null || fail "status: $(cat "$t/out")"

echo "--- enable refused: the failed check and its fix"
run "$bin" encryption enable --key-uri "$vc/keys/k1"
expect_rc 1 "enable without unwrapKey"
grep -Eq '^  passed +list' "$t/out" || fail "report lacks the passed list check: $(cat "$t/out")"
grep -Eq '^  FAILED +unwrap' "$t/out" || fail "report lacks the failed check: $(cat "$t/out")"
grep -Eq 'fix: .*unwrapKey' "$t/out" || fail "report lacks the fix: $(cat "$t/out")"
grep -Eq '^  not run +purgeProtection' "$t/out" || fail "report lacks not run: $(cat "$t/out")"
grep -q 'refused: HTTP 400 PermissionMissing' "$t/err" || fail "stderr: $(cat "$t/err")"
run "$bin" encryption enable --key-uri "$vc/keys/k1" --json
expect_rc 1 "enable refused, --json"
jq -e '.error.code == "PermissionMissing"' "$t/out" >/dev/null || fail "json: $(cat "$t/out")"
run "$bin" encryption enable
expect_rc 2 "enable without --key-uri"
"$bin" vault policy set contoso --object-id "${svc_sp[$tid]}" --permissions list,wrapKey,unwrapKey \
    "${va[@]}" >/dev/null

echo "--- enable: the latest version"
run "$bin" encryption enable --key-uri "$k1v1"
expect_rc 0 "enable"
grep -q "^Enabled: .*$k1v2" "$t/out" || fail "enable text: $(cat "$t/out")"
[ "$(grep -c '^  passed' "$t/out")" -eq 6 ] || fail "not 6 passed checks: $(cat "$t/out")"
run "$bin" encryption status --json
expect_rc 0 "status"
jq -e --arg k "$k1v2" '.mode == "customer" and .state == "customer" and .keyVersion == $k' \
    "$t/out" >/dev/null || fail "status: $(cat "$t/out")"
run "$bin" encryption status
grep -q '^state  *customer' "$t/out" || fail "status text: $(cat "$t/out")"

echo "--- rotation: the monitor rolls to the new version"
run "$bin" vault key rotate k1 --url "$vc" --json
expect_rc 0 "rotate through the profile's credentials"
k1v3=$(jq -r .key.kid "$t/out")
run "$bin" monitor run --advance 61
expect_rc 0 "monitor run"
grep -Eq '^rolled +1$' "$t/out" || fail "monitor run: $(cat "$t/out")"
grep -q 'one pass of the key monitor' "$t/err" || fail "no progress line: $(cat "$t/err")"
run "$bin" encryption status --json
jq -e --arg k "$k1v3" '.keyVersion == $k' "$t/out" >/dev/null || fail "not rolled: $(cat "$t/out")"
run "$bin" encryption audit
expect_rc 0 "audit"
grep -q 'encryption.roll' "$t/out" || fail "audit: $(cat "$t/out")"
run "$bin" monitor run --admin-secret-file "$t/ops.secret"
expect_rc 1 "monitor run with a wrong secret"
grep -q 'HTTP 401' "$t/err" || fail "wrong secret: $(cat "$t/err")"

echo "--- bulk enable over 3 tenants"
for i in 1 2 3; do
    run "$bin" vault key create tk --url "$(vurl "${vaults[$i]}")" --tenant "${dirs[$i]}"
    expect_rc 0 "key in ${vaults[$i]}"
done
{
    echo "# tenant key-uri"
    echo "$ta $(vurl fab-a)/keys/tk"
    echo "$tb $(vurl fab-b)/keys/nokey"
    echo
    echo "$tc $(vurl fab-c)/keys/tk"
} >"$t/bad.txt"
run "$bin" encryption enable --from "$t/bad.txt"
expect_rc 1 "bulk enable with a bad key"
grep -q '1/3 enabled, 0 refused, 0 failed' "$t/err" || fail "progress: $(cat "$t/err")"
grep -q '1/3 enabled, 1 refused, 0 failed' "$t/err" || fail "progress: $(cat "$t/err")"
grep -q '2/3 enabled, 1 refused, 0 failed' "$t/err" || fail "progress: $(cat "$t/err")"
grep -q "$tb: refused: HTTP 400 KeyNotFound" "$t/err" || fail "refusal note: $(cat "$t/err")"
grep -q '^3 tenants: 2 enabled, 1 refused, 0 failed' "$t/out" || fail "summary: $(cat "$t/out")"
sed "s|/keys/nokey|/keys/tk|" "$t/bad.txt" >"$t/good.txt"
run "$bin" encryption enable --from "$t/good.txt" --json
expect_rc 0 "bulk enable"
[ "$(grep -c '/3 enabled' "$t/err")" -eq 3 ] || fail "progress lines: $(cat "$t/err")"
jq -e '.total == 3 and .enabled == 3 and ([.results[].answer.mode] | unique == ["customer"])' \
    "$t/out" >/dev/null || fail "bulk summary: $(cat "$t/out")"
echo "    bulk status, tokens from files"
mkdir -p "$t/tokens"
for d in "$ta" "$tb" "$tc"; do
    (umask 077 && "$bin" idp token --url "$idp" --ca "$ca" --tenant "$d" --client-id "$ops_id" \
        --secret-file "$t/ops.secret" --scope api://atrest/.default >"$t/tokens/$d")
done
run "$bin" encryption status --from "$t/good.txt" --token-dir "$t/tokens"
expect_rc 0 "bulk status"
grep -q '3/3 read, 0 failed' "$t/err" || fail "status progress: $(cat "$t/err")"
[ "$(grep -Ec ' customer +customer ' "$t/out")" -eq 3 ] || fail "bulk status: $(cat "$t/out")"
run "$bin" encryption status --from "$t/good.txt" --tenant "$tid"
expect_rc 2 "--from with --tenant"
printf '%s\n%s\n' "$ta" "$ta" >"$t/dup.txt"
run "$bin" encryption status --from "$t/dup.txt"
expect_rc 2 "a tenant listed twice"
run "$bin" monitor run --json
expect_rc 0 "monitor run --json"
jq -e '.tenants == 4' "$t/out" >/dev/null || fail "monitor tenants: $(cat "$t/out")"

echo "--- disable"
run "$bin" encryption disable </dev/null
expect_rc 2 "disable without --yes and without a terminal"
run "$bin" encryption disable --yes
expect_rc 0 "disable"
grep -q 'service-managed keys' "$t/out" || fail "disable text: $(cat "$t/out")"
run "$bin" encryption status --json
jq -e '.mode == "managed" and .keyUri == null' "$t/out" >/dev/null ||
    fail "status after disable: $(cat "$t/out")"
run "$bin" encryption disable --yes
expect_rc 1 "disable twice"
grep -q 'HTTP 409 Conflict' "$t/err" || fail "second disable: $(cat "$t/err")"
run "$bin" records query
expect_rc 0 "records query"
[ "$(grep -c alice "$t/out")" -eq 1 ] || fail "records after disable: $(cat "$t/out")"

echo "cli.cli_ops: ok"

#!/usr/bin/env bash
# cli.byok_monitor: the key monitor end to end (design section 3, failure
# matrix) on a real identity server, key vault and service over TLS. The
# service runs with its default intervals (roll 1 min, probe 5 min, grace
# 1 h, locked probe 15 s) on a test clock that the test moves forward
# (POST /admin/clock), and each step runs one monitor pass
# (POST /admin/monitor/run) instead of waiting. For every fault it asserts
# the state, the reason and the audit event, and at the end that every
# record ingested before, during and after the faults is readable:
#   unwrapKey removed -> degraded, then locked after the grace (reads 423
#   TenantLocked with the reason, the key wiped; ingest accepted with the
#   reserve until it runs out, then 503 + Retry-After; disable and enable
#   refused) -> restored on the first good probe, blocks folded back;
#   key disabled; key soft-deleted then recovered; list removed (roll
#   check fails, data keeps working); firewall; service principal
#   disabled; vault 5xx; vault 429 with Retry-After; vault stopped then
#   started; key expired; vault slow; the vault's certificate from another
#   CA; roll after a rotation (audited, version shown), after the vault's
#   rotation policy fires, and while ingesting; restart; disable then
#   enable again; key purged (locked for good, with the reason).
set -euo pipefail
bin=${1:?usage: byok_monitor.sh path/to/atrest}
. "$(dirname "$0")/lib.sh"
t=$atr_tmp
. "$(dirname "$0")/byok_env.sh"

monitor_setup
start_service 0 "${svc_env[@]}"
sport=${surl##*:}
stok=$(token api://atrest/.default)
asecret=$(cat "$t/svc/admin.secret")
admin() { # PATH [BODY]
    curl -sS --max-time 60 --cacert "$ca" -X POST -H "Authorization: Bearer $asecret" \
        -H 'Content-Type: application/json' -d "${2:-{\}}" "$surl$1"
}
advance() { admin /admin/clock "{\"advanceSeconds\":$1}" >/dev/null; }
pass() { admin /admin/monitor/run >"$t/pass"; }
enc() { scall GET "/v1/tenants/$tid/encryption" >/dev/null; cat "$t/body"; }
expect_state() { # STATE [REASON [TEXT]]
    local got
    got=$(enc)
    jq -e --arg s "$1" '.state == $s' <<<"$got" >/dev/null || fail "state: want $1, got $got"
    [ -z "${2:-}" ] || jq -e --arg r "$2" '.reason == $r' <<<"$got" >/dev/null ||
        fail "reason: want $2, got $got"
    [ -z "${3:-}" ] || grep -q -- "$3" <<<"$got" || fail "reason text: want /$3/ in $got"
    echo "    state $1 ${2:-}"
}
audited() { # ACTION
    scall GET "/v1/tenants/$tid/audit?limit=200" >/dev/null
    jq -e --arg a "$1" '[.value[] | select(.actor == "monitor") | .action] | index($a) != null' \
        "$t/body" >/dev/null || fail "no monitor audit event $1: $(cat "$t/body")"
}
: >"$t/sent"
sent() { wc -l <"$t/sent"; } # batches acknowledged (ingest runs in a subshell)
ingest() { # TAG -> HTTP status; one record per call (one block: one reserve key)
    local code
    code=$(printf '{"time":"2026-11-29T02:00:00Z","user":"%s","app":"m","action":"x","ip":"192.0.2.7"}\n' "$1" |
        curl -sS --max-time 30 -o "$t/ingest" -D "$t/ingest.h" -w '%{http_code}' --cacert "$ca" \
            -H "Authorization: Bearer $stok" -H 'Content-Type: application/x-ndjson' \
            --data-binary @- "$surl/v1/tenants/$tid/records")
    [ "$code" != 200 ] || echo "$1" >>"$t/sent"
    echo "$code"
}
count() {
    curl -sS --max-time 60 --cacert "$ca" -H "Authorization: Bearer $stok" \
        "$surl/v1/tenants/$tid/records?limit=10000" | wc -l
}
# a fault found by the next probe (probe interval 5 min), then the fix found by the
# next one (after at most the backoff cap, 5 min)
probe_now() { advance 301; pass; }

scall PUT "/v1/tenants/$tid" >/dev/null
[ "$(ingest before)" = 200 ] || fail "ingest before enable"
got=$(scall PUT "/v1/tenants/$tid/encryption" "{\"keyUri\":\"$vurl/keys/k1\"}")
[ "${got%% *}" = 200 ] || fail "enable: $got"
[ "$(ingest enabled)" = 200 ] || fail "ingest after enable"
pass
jq -e '.tenants == 1' "$t/pass" >/dev/null || fail "the monitor does not watch the tenant: $(cat "$t/pass")"
expect_state customer
jq -e '.reserve.available == 3 and .lastSuccessfulCheck != null' <<<"$(enc)" >/dev/null ||
    fail "reserve not filled or no check time: $(enc)"

echo "--- unwrapKey removed: degraded, then locked after the grace, then restored"
grant list,wrapKey
probe_now
expect_state degraded PermissionMissing unwrapKey
audited encryption.degrade
[ "$(ingest degraded)" = 200 ] || fail "a degraded tenant must keep working (cached key)"
[ "$(count)" -eq "$(sent)" ] || fail "reads while degraded"
jq -e '.lockAt != null' <<<"$(enc)" >/dev/null || fail "no lockAt while degraded"
advance 3600
pass
expect_state locked PermissionMissing unwrapKey
audited encryption.lock
got=$(scall GET "/v1/tenants/$tid/records")
[ "${got%% *}" = 423 ] || fail "read while locked: $got"
jq -e '.error.code == "TenantLocked" and .error.reason == "PermissionMissing"' "$t/body" \
    >/dev/null || fail "locked answer: $got"
grep -q unwrapKey "$t/body" || fail "the locked answer does not name the permission: $got"
for i in 1 2 3; do
    [ "$(ingest "locked$i")" = 200 ] || fail "ingest $i while locked: $(cat "$t/ingest")"
    jq -e '.readableAfterRestore == true' "$t/ingest" >/dev/null || fail "locked ingest report"
done
[ "$(ingest locked4)" = 503 ] || fail "ingest with the reserve empty: $(cat "$t/ingest")"
grep -qi '^retry-after:' "$t/ingest.h" || fail "no Retry-After on the 503"
jq -e '.error.reason == "TenantLockedReserveEmpty"' "$t/ingest" >/dev/null || fail "503 body"
got=$(scall DELETE "/v1/tenants/$tid/encryption")
[ "${got%% *}" = 423 ] || fail "disable while locked: $got"
got=$(scall PUT "/v1/tenants/$tid/encryption" "{\"keyUri\":\"$vurl/keys/k1\"}")
[ "${got%% *}" = 423 ] || fail "enable while locked: $got"
# still failing: stays locked (probed again after 15 s)
advance 16
pass
expect_state locked
grant list,wrapKey,unwrapKey
advance 61 # the locked probe doubles after each failure (15 s, 30 s, 60 s, jittered): past the longest
pass
expect_state customer
audited encryption.restore
audited encryption.fold
[ "$(count)" -eq "$(sent)" ] || fail "records after restore: $(count), want $(sent)"
got=$(scall GET "/v1/tenants/$tid/records?user=locked2")
[ "$(grep -c locked2 <<<"$got")" -eq 1 ] || fail "a record written while locked: $got"
jq -e '.reserve.available == 3' <<<"$(enc)" >/dev/null || fail "reserve not refilled: $(enc)"

fault_cycle() { # NAME REASON TEXT BREAK FIX
    echo "--- $1"
    eval "$4"
    probe_now
    expect_state degraded "$2" "$3"
    [ "$(ingest "$1")" = 200 ] || fail "ingest while degraded ($1)"
    eval "$5"
    probe_now
    expect_state customer
    audited encryption.recover
}
v1=${k1##*/}
fault_cycle "key disabled" KeyDisabled "" \
    "vcall PATCH /keys/k1/$v1 '{\"attributes\":{\"enabled\":false}}' >/dev/null" \
    "vcall PATCH /keys/k1/$v1 '{\"attributes\":{\"enabled\":true}}' >/dev/null"
fault_cycle "key soft-deleted then recovered" KeyNotFound "" \
    "vcall DELETE /keys/k1 >/dev/null" \
    "vcall POST /deletedkeys/k1/recover >/dev/null"
fault_cycle "firewall denies the service" VaultFirewall "" \
    "\"\$bin\" vault firewall contoso --default-action Deny --ip-rule 10.0.0.0/8 \"\${va[@]}\" >/dev/null" \
    "\"\$bin\" vault firewall contoso --default-action Allow \"\${va[@]}\" >/dev/null"
fault_cycle "service principal disabled" ServicePrincipalDisabled "" \
    "\"\$bin\" idp sp disable \"\${ia[@]}\" --tenant \"\$tid\" --id \"\$svc_sp\" >/dev/null" \
    "\"\$bin\" idp sp enable \"\${ia[@]}\" --tenant \"\$tid\" --id \"\$svc_sp\" >/dev/null"
fault_cycle "vault answers 5xx" VaultError "" \
    "\"\$bin\" vault faults --error-rate 1 --error-status 503 \"\${va[@]}\" >/dev/null" \
    "\"\$bin\" vault faults --error-rate 0 \"\${va[@]}\" >/dev/null"
fault_cycle "vault throttles (429)" VaultThrottled "" \
    "\"\$bin\" vault faults --error-rate 1 --error-status 429 \"\${va[@]}\" >/dev/null" \
    "\"\$bin\" vault faults --error-rate 0 \"\${va[@]}\" >/dev/null"

echo "--- vault stopped, then started"
vport=${vurl##*:}
atr_stop vault
probe_now
expect_state degraded VaultUnreachable
atr_start vault "$bin" vault serve --dir "$t/vault" "${tls[@]}" --port "$vport" --idp "$idp" \
    --ca "$ca" --default-vault contoso --test-mode
probe_now
expect_state customer

echo "--- list removed: the roll check fails, data keeps working"
grant wrapKey,unwrapKey
advance 61
pass
expect_state degraded PermissionMissing list
[ "$(ingest nolist)" = 200 ] || fail "ingest with list removed"
grant list,wrapKey,unwrapKey
advance 61
pass
expect_state customer

echo "--- roll: a rotation in the vault is picked up within the roll interval"
old=$(enc | jq -r .keyVersion)
k2=$(vcall POST /keys/k1/rotate | jq -r .key.kid)
[ "${k2##*/}" != "${old##*/}" ] || fail "rotate gave no new version"
advance 61
pass
jq -e '.rolled == 1' "$t/pass" >/dev/null || fail "no roll: $(cat "$t/pass")"
got=$(enc)
jq -e --arg k "${k2##*/}" '(.keyVersion | endswith($k)) and .lastRoll != null' <<<"$got" \
    >/dev/null || fail "after the roll: $got"
audited encryption.roll
advance 61
pass
jq -e '.rolled == 0' "$t/pass" >/dev/null || fail "a second roll without a new version"
[ "$(count)" -eq "$(sent)" ] || fail "records after the roll"

echo "--- key expired (the vault's clock passes the version's exp)"
cur=$(enc | jq -r .keyVersion)
vnow=$("$bin" vault clock --advance 0 "${va[@]}" | jq -r .now) # the vault's time, Unix seconds
exp=$((vnow + 3600))
vcall PATCH "/keys/k1/${cur##*/}" "{\"attributes\":{\"exp\":$exp}}" >/dev/null
"$bin" vault clock --advance 7200 "${va[@]}" >/dev/null
probe_now
expect_state degraded KeyExpired
vcall PATCH "/keys/k1/${cur##*/}" '{"attributes":{"exp":4102444800}}' >/dev/null
probe_now
expect_state customer

echo "--- vault slow (1.5 s per call): still healthy"
"$bin" vault faults --latency-ms 1500 "${va[@]}" >/dev/null
probe_now
expect_state customer
"$bin" vault faults --latency-ms 0 "${va[@]}" >/dev/null

echo "--- vault TLS certificate from another CA, then the right one again"
vport=${vurl##*:}
"$bin" cert --dir "$t/tls-other" --host 127.0.0.1 --host localhost >/dev/null
atr_stop vault
atr_start vault "$bin" vault serve --dir "$t/vault" --cert "$t/tls-other/server.pem" \
    --key "$t/tls-other/server.key" --port "$vport" --idp "$idp" --ca "$ca" \
    --default-vault contoso --test-mode
probe_now
expect_state degraded VaultTlsError
atr_stop vault
atr_start vault "$bin" vault serve --dir "$t/vault" "${tls[@]}" --port "$vport" --idp "$idp" \
    --ca "$ca" --default-vault contoso --test-mode
probe_now
expect_state customer

echo "--- the vault's rotation policy fires: rolled within the roll interval"
before=$(enc | jq -r .keyVersion)
vcall PUT /keys/k1/rotationpolicy \
    '{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P7D"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P90D"}}' \
    >"$t/policy"
"$bin" vault clock --advance $((8 * 86400)) "${va[@]}" >"$t/vclock"
advance 61
pass
after=$(enc | jq -r .keyVersion)
[ "${after##*/}" != "${before##*/}" ] ||
    fail "no roll after the rotation policy fired: $(cat "$t/policy") $(cat "$t/vclock") $(vcall GET /keys/k1/rotationpolicy)"
vcall PUT /keys/k1/rotationpolicy '{"lifetimeActions":[],"attributes":{"expiryTime":"P90D"}}' \
    >/dev/null

echo "--- roll while ingesting"
for i in $(seq 1 20); do ingest "during-roll-$i" >/dev/null; done &
bg=$!
vcall POST /keys/k1/rotate >/dev/null
advance 61
pass
wait "$bg"
jq -e '.rolled == 1' "$t/pass" >/dev/null || fail "no roll while ingesting: $(cat "$t/pass")"
[ "$(count)" -eq "$(sent)" ] || fail "records after a roll during ingest: $(count), want $(sent)"

echo "--- restart: the monitor watches the tenant again, reads go through the new version"
atr_stop service
n=$(sqlite3 "$t/svc/atrest.db" "SELECT count(*) FROM blocks WHERE key_ref = 'reserve'")
[ "$n" -eq 0 ] || fail "$n blocks still under reserve keys after the restore"
start_service "$sport" "${svc_env[@]}"
[ "$(count)" -eq "$(sent)" ] || fail "records after restart"
enc | jq -e '.lastRoll != null' >/dev/null || fail "the last roll is forgotten after a restart: $(enc)"
pass
jq -e '.tenants == 1' "$t/pass" >/dev/null || fail "not watched after restart"

echo "--- disable, then enable again"
got=$(scall DELETE "/v1/tenants/$tid/encryption")
[ "${got%% *}" = 200 ] || fail "disable: $got"
pass
jq -e '.tenants == 0' "$t/pass" >/dev/null || fail "still watched after disable"
got=$(scall PUT "/v1/tenants/$tid/encryption" "{\"keyUri\":\"$vurl/keys/k1\"}")
[ "${got%% *}" = 200 ] || fail "enable again: $got"
expect_state customer
[ "$(count)" -eq "$(sent)" ] || fail "records after disable and enable: $(count), want $(sent)"
n=$(sent)
echo "--- key purged (deleted, then its retention passes): locked for good, with the reason"
vcall DELETE /keys/k1 >/dev/null
"$bin" vault clock --advance $((91 * 86400)) "${va[@]}" >/dev/null
got=$(vcall GET /deletedkeys/k1)
grep -q KeyNotFound <<<"$got" || fail "the key was not purged: $got"
probe_now
expect_state degraded KeyNotFound
advance 3600
pass
expect_state locked KeyNotFound
got=$(scall GET "/v1/tenants/$tid/records")
[ "${got%% *}" = 423 ] || fail "read with the key purged: $got"
for _ in 1 2 3; do
    advance 600
    pass
done
expect_state locked KeyNotFound
echo "cli.byok_monitor: ok ($n batches readable before the purge)"

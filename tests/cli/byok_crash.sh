#!/usr/bin/env bash
# cli.byok_crash: kill -9 at every step of enable, roll, lock, restore, fold
# and disable (failpoints: ATREST_FAILPOINT=<point> kills the service with
# SIGKILL right before or after the step's store write). After each crash
# the service restarts and the test asserts that the tenant is in either the
# old or the new state (never in between), that the audit log has the
# step's event exactly when the step was stored, and that every record
# acknowledged so far is readable exactly once. Real identity server, vault
# and service over TLS; the service on a test clock with the monitor driven
# by POST /admin/monitor/run.
set -euo pipefail
bin=${1:?usage: byok_crash.sh path/to/atrest}
. "$(dirname "$0")/lib.sh"
t=$atr_tmp
. "$(dirname "$0")/byok_env.sh"

monitor_setup
up() { # [FAILPOINT [ARM FILE]]
    start_service 0 "${svc_env[@]}" ${1:+ATREST_FAILPOINT=$1} ${2:+ATREST_FAILPOINT_ARM=$2}
    asecret=$(cat "$t/svc/admin.secret")
}
dies() { # the service was killed by its failpoint
    atr_reap service
    grep -q 'failpoint reached' "$t/service.err" || fail "the service died without its failpoint"
}
admin() { # PATH [BODY] (the service may die during the call)
    curl -sS --max-time 60 --cacert "$ca" -X POST -H "Authorization: Bearer $asecret" \
        -H 'Content-Type: application/json' -d "${2:-{\}}" "$surl$1" 2>/dev/null || true
}
advance() { admin /admin/clock "{\"advanceSeconds\":$1}" >/dev/null; }
pass() { admin /admin/monitor/run >"$t/pass"; }
call() { # METHOD PATH [BODY] -> HTTP status ("000" when the connection died)
    curl -sS --max-time 60 -o "$t/body" -w '%{http_code}' --cacert "$ca" -X "$1" \
        -H "Authorization: Bearer $stok" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$surl$2" 2>/dev/null || true
}
state() { call GET "/v1/tenants/$tid/encryption" >/dev/null; jq -r '.mode + "/" + .state' "$t/body"; }
kid() { call GET "/v1/tenants/$tid/encryption" >/dev/null; jq -r '.keyVersion // ""' "$t/body"; }
audit_count() { # ACTION
    call GET "/v1/tenants/$tid/audit?limit=200" >/dev/null
    jq --arg a "$1" '[.value[] | select(.action == $a)] | length' "$t/body"
}
: >"$t/sent"
ingest() { # TAG -> status
    local code
    code=$(printf '{"time":"2026-11-29T03:00:00Z","user":"%s","app":"c","action":"x","ip":"192.0.2.8"}\n' "$1" |
        curl -sS --max-time 30 -o "$t/ingest" -w '%{http_code}' --cacert "$ca" \
            -H "Authorization: Bearer $stok" -H 'Content-Type: application/x-ndjson' \
            --data-binary @- "$surl/v1/tenants/$tid/records" 2>/dev/null || true)
    [ "$code" != 200 ] || echo "$1" >>"$t/sent"
    echo "$code"
}
readable() { # every acknowledged record exactly once
    curl -sS --max-time 60 --cacert "$ca" -H "Authorization: Bearer $stok" \
        "$surl/v1/tenants/$tid/records?limit=10000" | jq -r .user | sort >"$t/got"
    sort "$t/sent" >"$t/want"
    diff -u "$t/want" "$t/got" >/dev/null || fail "records after $1: $(diff "$t/want" "$t/got" | head)"
    echo "    $(wc -l <"$t/got") records readable after $1"
}
crash() { # POINT STATE_BEFORE STATE_AFTER -> restarts and checks one of them ("" = skip)
    dies
    up
    local s
    s=$(state)
    echo "    after $1: $s"
    [ "$s" = "$2" ] || fail "after a crash at $1 the tenant is $s, want $2"
}

up
stok=$(token api://atrest/.default)
call PUT "/v1/tenants/$tid" >/dev/null
[ "$(ingest m1)" = 200 ] || fail "ingest"
body="{\"keyUri\":\"$vurl/keys/k1\"}"

echo "--- enable"
atr_stop service
up enable.before_store
[ "$(call PUT "/v1/tenants/$tid/encryption" "$body")" = 000 ] || fail "enable survived"
crash enable.before_store managed/managed
[ "$(audit_count encryption.enable)" = 0 ] || fail "an enable that was not stored is audited"
readable enable.before_store
atr_stop service
up enable.after_store
call PUT "/v1/tenants/$tid/encryption" "$body" >/dev/null
crash enable.after_store customer/customer
[ "$(audit_count encryption.enable)" = 1 ] || fail "the stored enable is not audited once"
readable enable.after_store
pass # tracks, refills the reserve
[ "$(ingest c1)" = 200 ] || fail "ingest after enable"

echo "--- roll"
for point in roll.before_store roll.after_store; do
    old=$(kid)
    new=$(vcall POST /keys/k1/rotate | jq -r .key.kid)
    atr_stop service
    up "$point"
    advance 61
    pass
    dies
    up
    got=$(kid)
    if [ "$point" = roll.before_store ]; then
        [ "$got" = "$old" ] || fail "after $point the key version is $got, want the old $old"
        [ "$(audit_count encryption.roll)" = 0 ] || fail "a roll that was not stored is audited"
        advance 61
        pass # the roll is simply done again
        [ "${got##*/}" != "$(kid | sed 's|.*/||')" ] || fail "no roll after the restart"
    else
        [ "${got##*/}" = "${new##*/}" ] || fail "after $point the key version is $got, want $new"
    fi
    readable "$point"
done
[ "$(audit_count encryption.roll)" = 2 ] || fail "two rolls, want two roll events"

echo "--- lock"
grant list,wrapKey
for point in lock.after_evict lock.after_store; do
    atr_stop service
    up "$point"
    pass # tracks (degraded or locked at start: probed now)
    advance 301
    pass
    advance 3600
    pass
    if [ "$point" = lock.after_evict ]; then
        crash "$point" customer/degraded
    else
        crash "$point" customer/locked
    fi
done
[ "$(call GET "/v1/tenants/$tid/records")" = 423 ] || fail "a locked tenant's records are readable"

echo "--- restore and fold"
for point in restore.after_store fold.after_block; do
    atr_stop service
    rm -f "$t/arm"
    up "$point" "$t/arm" # armed only once the reserve is in use
    # healthy first (the reserve is filled only then), then locked again
    grant list,wrapKey,unwrapKey
    pass
    advance 16
    pass
    [ "$(state)" = customer/customer ] || fail "not restored before the $point round: $(state)"
    pass # refill
    grant list,wrapKey
    advance 301
    pass
    advance 3600
    pass
    [ "$(state)" = customer/locked ] || fail "not locked for the $point round: $(state)"
    for i in 1 2 3; do
        [ "$(ingest "$point$i")" = 200 ] || fail "ingest $i while locked ($point): $(cat "$t/ingest")"
    done
    grant list,wrapKey,unwrapKey
    touch "$t/arm"
    advance 31 # the locked probe: 15 s, doubled after the failed one at the lock
    pass
    crash "$point" customer/customer
    pass # start-up tracking folds what is left
    readable "$point"
    [ "$(audit_count encryption.restore)" -ge 1 ] || fail "restore not audited"
done

echo "--- disable"
atr_stop service
up disable.before_store
[ "$(call DELETE "/v1/tenants/$tid/encryption")" = 000 ] || fail "disable survived"
crash disable.before_store customer/customer
readable disable.before_store
atr_stop service
up disable.after_store
call DELETE "/v1/tenants/$tid/encryption" >/dev/null
crash disable.after_store managed/managed
[ "$(audit_count encryption.disable)" = 1 ] || fail "the stored disable is not audited once"
atr_stop service
atr_stop vault
up
readable "disable (vault stopped)"
echo "cli.byok_crash: ok"

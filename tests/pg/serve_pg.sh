#!/usr/bin/env bash
# cli.serve_pg: `atrest serve` on PostgreSQL (serve.storage = postgres URL), run by
# pg_test.sh with ATREST_PG_URL set. Two service nodes share the database and the
# state folder (the service root key): records ingested through one are read
# through the other, tenants and audit are shared, and after the database restarts
# the nodes serve again (a call while it is down gets a clear error; nothing that
# was acknowledged is lost). Managed keys only; the customer-key coordination
# between nodes is a later part of the scale-out issue.
set -euo pipefail
bin=${1:?usage: serve_pg.sh path/to/atrest}
: "${ATREST_PG_URL:?run under tests/pg/pg_test.sh}"
. "$(dirname "$0")/../cli/lib.sh"
t=$atr_tmp

"$bin" cert --dir "$t/tls" --host 127.0.0.1 --host localhost >/dev/null
ca="$t/tls/ca.pem"
tls=(--cert "$t/tls/server.pem" --key "$t/tls/server.key")
atr_start idp "$bin" idp serve --dir "$t/idp" "${tls[@]}" --port 0
idp=$ATR_URL
ia=(--url "$idp" --ca "$ca" --admin-secret-file "$t/idp/admin.secret")
tid=$("$bin" idp directory create "${ia[@]}" --name Contoso | jq -r .id)
app=$("$bin" idp app create "${ia[@]}" --tenant "$tid" --name writer)
app_id=$(jq -r .appId <<<"$app")
app_secret=$(jq -r .secret <<<"$app")
sp=$("$bin" idp sp create "${ia[@]}" --tenant "$tid" --app-id "$app_id" | jq -r .id)
for r in DataEncryption.Admin Records.Write Records.Read; do
    "$bin" idp sp grant "${ia[@]}" --tenant "$tid" --id "$sp" --role "$r" >/dev/null
done
tok=$("$bin" idp token --url "$idp" --ca "$ca" --tenant "$tid" --client-id "$app_id" \
    --secret "$app_secret" --scope api://atrest/.default)

node() { # NAME
    atr_start "$1" env ATREST_SERVE_STORAGE="$ATREST_PG_URL" "$bin" serve --dir "$t/svc" \
        "${tls[@]}" --port 0 --idp "$idp" --ca "$ca"
}
node a
a=$ATR_URL
node b
b=$ATR_URL
[ ! -e "$t/svc/atrest.db" ] || fail "a SQLite file was made although the storage is PostgreSQL"

: >"$t/sent"
ingest() { # URL TAG -> status
    local code
    code=$(printf '{"time":"2026-11-29T04:00:00Z","user":"%s","app":"pg","action":"x","ip":"192.0.2.9"}\n' "$2" |
        curl -sS --max-time 30 -o "$t/ingest" -w '%{http_code}' --cacert "$ca" \
            -H "Authorization: Bearer $tok" -H 'Content-Type: application/x-ndjson' \
            --data-binary @- "$1/v1/tenants/$tid/records" 2>/dev/null || true)
    [ "$code" != 200 ] || echo "$2" >>"$t/sent"
    echo "$code"
}
readable() { # URL
    curl -sS --max-time 30 --cacert "$ca" -H "Authorization: Bearer $tok" \
        "$1/v1/tenants/$tid/records?limit=10000" | jq -r .user | sort >"$t/got"
    sort "$t/sent" >"$t/want"
    diff -u "$t/want" "$t/got" >/dev/null || fail "records through $1: $(diff "$t/want" "$t/got" | head)"
}

echo "--- two nodes, one database"
for i in 1 2 3; do
    [ "$(ingest "$a" "a$i")" = 200 ] || fail "ingest through node a: $(cat "$t/ingest")"
    [ "$(ingest "$b" "b$i")" = 200 ] || fail "ingest through node b: $(cat "$t/ingest")"
done
readable "$a"
readable "$b"
[ "$(wc -l <"$t/got")" -eq 6 ] || fail "want 6 records"
n=$(curl -sS --max-time 10 --cacert "$ca" -H "Authorization: Bearer $tok" \
    "$b/v1/tenants/$tid/audit" | jq '[.value[] | select(.action == "tenant.create")] | length')
[ "$n" -eq 1 ] || fail "the tenant was created $n times (want once, whichever node)"

echo "--- the database restarts"
sh -c "$ATREST_PG_STOP"
code=$(ingest "$a" down)
[ "$code" != 200 ] || fail "an ingest was acknowledged with the database down"
[ "$code" = 503 ] || fail "want 503 with the database down: $code $(cat "$t/ingest")"
sh -c "$ATREST_PG_START"
ok=0
for i in $(seq 1 20); do
    if [ "$(ingest "$a" "after$i")" = 200 ]; then
        ok=1
        break
    fi
    sleep 0.5
done
[ "$ok" = 1 ] || fail "node a does not serve after the database restarted: $(cat "$t/ingest")"
[ "$(ingest "$b" after-b)" = 200 ] || [ "$(ingest "$b" after-b2)" = 200 ] ||
    fail "node b does not serve after the database restarted"
readable "$a"
readable "$b"
atr_stop a
atr_stop b
echo "cli.serve_pg: ok ($(wc -l <"$t/sent") records through two nodes)"

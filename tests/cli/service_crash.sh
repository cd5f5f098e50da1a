#!/usr/bin/env bash
# cli.service_crash: `atrest serve` killed with SIGKILL in the middle of
# ingest, ATR_CRASH_ROUNDS times (default 15). Each round starts the service
# on the same data folder, checks the previous round after the restart, runs
# a writer (tests/cli/crash_writer.py: 3 keep-alive connections posting
# batches of 50 numbered records, noting which batches got a 2xx) and kills
# the server 100-800 ms after the first post. Checks, after every restart and
# over everything at the end: every query page answers 200 (no torn block is
# accepted); every acknowledged batch is there, each record exactly once;
# every batch that is there is complete (all or nothing) and was sent; the
# SQLite file (a copy, as the crash left it) passes integrity_check; the
# server never refused a well-formed batch. Total time is bounded
# (ATR_CRASH_BUDGET seconds of rounds, default 100).
set -euo pipefail
bin=${1:?usage: service_crash.sh path/to/atrest}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
t=$atr_tmp
rounds=${ATR_CRASH_ROUNDS:-15}
budget=${ATR_CRASH_BUDGET:-100}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
started=$SECONDS

"$bin" cert --dir "$t/tls" --host 127.0.0.1 --host localhost >/dev/null
ca="$t/tls/ca.pem"
tls=(--cert "$t/tls/server.pem" --key "$t/tls/server.key")
atr_start idp "$bin" idp serve --dir "$t/idp" "${tls[@]}" --port 0
idp=$ATR_URL
iadm=(--url "$idp" --ca "$ca" --admin-secret-file "$t/idp/admin.secret")
tid=$("$bin" idp directory create "${iadm[@]}" --name Contoso | jq -r .id)
j=$("$bin" idp app create "${iadm[@]}" --tenant "$tid" --name crash)
appid=$(jq -r .appId <<<"$j")
spid=$("$bin" idp sp create "${iadm[@]}" --tenant "$tid" --app-id "$appid" | jq -r .id)
for role in Records.Write Records.Read; do
    "$bin" idp sp grant "${iadm[@]}" --tenant "$tid" --id "$spid" --role "$role" >/dev/null
done
"$bin" idp token --url "$idp" --ca "$ca" --tenant "$tid" --client-id "$appid" \
    --secret "$(jq -r .secret <<<"$j")" --scope api://atrest/.default >"$t/token"

start_serve() {
    [ -f "$t/serve.err" ] && cat "$t/serve.err" >>"$t/serve.log.old"
    rm -f "$t/serve.out" # else atr_start may read the previous run's URL
    atr_start serve "$bin" serve --dir "$t/svc" "${tls[@]}" --port 0 --idp "$idp" --ca "$ca"
    svc=$ATR_URL
}
crash() {
    local pid=${atr_pids[serve]}
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    unset 'atr_pids[serve]'
}
verify() { # [ROUND]
    "$py" "$here/crash_writer.py" verify "$svc" "$tid" "$t/token" "$ca" "$t/w" "$@" \
        >"$t/verify" 2>&1 || fail "after the restart: $(cat "$t/verify")"
    sed 's/^/  /' "$t/verify"
}

mkdir -p "$t/w" "$t/copy"
done_rounds=0
for r in $(seq 1 "$rounds"); do
    start_serve
    [ "$r" = 1 ] || verify $((r - 1))
    timeout 30 "$py" "$here/crash_writer.py" write "$svc" "$tid" "$t/token" "$ca" "$r" "$t/w" 3 \
        2>"$t/writer.err" &
    wpid=$!
    atr_pids[writer]=$wpid
    for _ in $(seq 1 100); do
        grep -q "^$r " "$t/w/sent" 2>/dev/null && break
        kill -0 "$wpid" 2>/dev/null || fail "the writer exited early: $(cat "$t/writer.err")"
        sleep 0.05
    done
    grep -q "^$r " "$t/w/sent" || fail "round $r: the writer sent nothing within 5 s"
    ms=$((100 + RANDOM % 701))
    sleep "$(printf '0.%03d' "$ms")"
    crash
    rc=0
    wait "$wpid" || rc=$?
    unset 'atr_pids[writer]'
    [ "$rc" = 0 ] || fail "round $r: writer exit $rc: $(cat "$t/writer.err")"
    [ ! -s "$t/w/refused" ] || fail "round $r: the server refused batches: $(head -5 "$t/w/refused")"
    acked=$(grep -c "^$r " "$t/w/acked" 2>/dev/null || true)
    echo "round $r: killed after $ms ms, ${acked:-0} batches acknowledged"
    # the files exactly as the crash left them must form a sound database
    rm -f "$t/copy/"*
    cp "$t/svc/"atrest.db* "$t/copy/"
    ic=$(sqlite3 "$t/copy/atrest.db" 'PRAGMA integrity_check' 2>&1) || true
    [ "$ic" = ok ] || fail "round $r: integrity_check after the crash: $ic"
    done_rounds=$r
    if [ $((SECONDS - started)) -ge "$budget" ] && [ "$r" -lt "$rounds" ]; then
        echo "time budget of $budget s used: stopping after $r of $rounds rounds"
        break
    fi
done

start_serve
verify "$done_rounds"
verify
total=$(wc -l <"$t/w/acked" 2>/dev/null || echo 0)
[ "$total" -gt 0 ] || fail "no batch was ever acknowledged: the test proved nothing"
atr_stop serve
echo "cli.service_crash: ok ($done_rounds crashes, $total batches acknowledged, $((SECONDS - started)) s)"

#!/usr/bin/env bash
# browser.console: the admin console page in a real browser (Debian's chromium
# driven by playwright-core, no browser download) against a real `atrest dev`
# stack on free loopback ports. This script starts the stack, prepares what
# the scenario needs through the REST APIs (an EC key in the vault; the demo
# tenant back on service-managed keys so the page can walk the enable flow),
# then runs console.test.mjs, which drives the page and the admin endpoints
# (vault access policy, the service's clock and monitor). Screenshots of each
# state go to $ATR_ARTIFACTS (default: the second argument, else
# <dir of atrest>/artifacts/console).
#
# Exit 77 (skipped) when chromium, node or tests/browser/node_modules are
# missing, unless CI=true, where that fails. Every wait is bounded; the stack
# is stopped on any exit.
set -euo pipefail
bin=${1:?usage: run.sh path/to/atrest [artifacts-dir]}
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "$bin")
artifacts=${ATR_ARTIFACTS:-${2:-$(dirname "$bin")/artifacts/console}}
chromium=${ATR_CHROMIUM:-/usr/bin/chromium}

missing=()
[ -x "$chromium" ] || missing+=("$chromium (Debian package chromium)")
command -v node >/dev/null 2>&1 || missing+=("node (Debian package nodejs)")
[ -f "$here/node_modules/playwright-core/package.json" ] ||
    missing+=("tests/browser/node_modules (npm ci in tests/browser)")
command -v jq >/dev/null 2>&1 || missing+=("jq")
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "${CI:-}" = true ]; then
        echo "browser.console: FAILED: missing ${missing[*]}; run scripts/install-deps" >&2
        exit 1
    fi
    echo "browser.console: SKIPPED: missing ${missing[*]}; scripts/install-deps installs them"
    exit 77
fi

fail() {
    echo "browser.console: FAILED: $*" >&2
    exit 1
}

tmp=$(mktemp -d /tmp/atr-browser.XXXXXX)
dev_pid=
cleanup() {
    local rc=$?
    if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then
        kill -TERM "$dev_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$dev_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$dev_pid" 2>/dev/null || true
        wait "$dev_pid" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -f "$tmp/dev.err" ]; then
        echo "--- atrest dev stderr (last 40 lines)" >&2
        tail -n 40 "$tmp/dev.err" >&2 || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "--- starting atrest dev (free ports)"
start=$(date +%s)
"$bin" dev --dir "$tmp/state" --port 0 >"$tmp/dev.out" 2>"$tmp/dev.err" &
dev_pid=$!
dj="$tmp/state/dev.json"
for _ in $(seq 1 900); do # 90 s: first start makes a CA, keys and the demo
    [ -s "$dj" ] && grep -q '^URLs and ids for scripts' "$tmp/dev.out" && break
    kill -0 "$dev_pid" 2>/dev/null || fail "atrest dev exited early"
    sleep 0.1
done
[ -s "$dj" ] || fail "no dev.json within 90 s"
echo "    ready in $(($(date +%s) - start)) s"

j() { jq -er "$1" "$dj"; }
svc=$(j .service_url)
console=$(j .console_url)
vault=$(j .vault_url)
idp=$(j .identity_url)
ca=$(j .ca_file)
tid=$(j .tenant_id)
good_uri=$(j .key_uri)
admin_token=$(j .tokens.admin)
svc_secret_file=$(j .service_admin_secret_file)
vault_secret_file=$(j .vault_admin_secret_file)
[ -f "$svc_secret_file" ] && [ -f "$vault_secret_file" ] || fail "admin.secret files of dev.json"
byok_sp=$(jq -er .byokSpId "$tmp/state/demo.json")
grep -qF "$console#token=" "$tmp/dev.out" || fail "atrest dev printed no console sign-in link"

c() { curl -sS --max-time 30 --cacert "$ca" "$@"; }

echo "--- a token of the vault administrator, an EC key in the vault"
vtok=$(c --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$(j .vault_admin.client_id)" \
    --data-urlencode "client_secret=$(j .vault_admin.client_secret)" \
    --data-urlencode scope=https://vault.azure.net/.default \
    "$idp/$(j .vault_admin.tenant_id)/oauth2/v2.0/token" | jq -er .access_token) ||
    fail "no vault token for the vault administrator"
c -X POST -H "Authorization: Bearer $vtok" -H 'Content-Type: application/json' \
    -d '{"kty":"EC","crv":"P-256"}' "$vault/keys/console-ec-key/create?api-version=7.4" |
    jq -e '.key.kty == "EC"' >/dev/null || fail "creating the EC key"
ec_uri="$vault/keys/console-ec-key"

echo "--- the demo tenant back on service-managed keys (the page walks the enable flow)"
code=$(c -o "$tmp/del" -w '%{http_code}' -X DELETE -H "Authorization: Bearer $admin_token" \
    "$svc/v1/tenants/$tid/encryption")
[ "$code" = 200 ] || fail "disable the demo's customer key: $code $(cat "$tmp/del")"

mkdir -p "$artifacts"
echo "--- the browser test (screenshots in $artifacts)"
cd "$here"
set +e
ATR_CONSOLE_URL=$console ATR_SERVICE_URL=$svc ATR_VAULT_URL=$vault ATR_IDENTITY_URL=$idp \
    ATR_TENANT=$tid ATR_ADMIN_TOKEN=$admin_token ATR_GOOD_URI=$good_uri ATR_EC_URI=$ec_uri \
    ATR_SERVICE_ADMIN_SECRET_FILE=$svc_secret_file \
    ATR_VAULT_ADMIN_SECRET_FILE=$vault_secret_file ATR_BYOK_SP=$byok_sp \
    ATR_VAULT_CLIENT_ID=$(j .vault_admin.client_id) \
    ATR_VAULT_CLIENT_SECRET=$(j .vault_admin.client_secret) \
    ATR_ARTIFACTS=$artifacts ATR_CHROMIUM=$chromium NODE_EXTRA_CA_CERTS=$ca \
    timeout 240 node "$here/console.test.mjs"
rc=$?
set -e
echo "browser.console: total $(($(date +%s) - start)) s"
[ "$rc" -eq 0 ] || fail "console.test.mjs exited $rc"

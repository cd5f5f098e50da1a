# Shared set-up of the customer-key tests (sourced after lib.sh, with $bin
# and $t set): TLS files, an identity server with the customer's directory
# Contoso ($tid) and its admin client (all three service roles), the service
# provider's directory with the service's multi-tenant application
# ($svc_id, secret in $t/byok.secret), a key vault in test mode with the
# vault "contoso" of Contoso, an RSA key k1 ($k1) and an EC key ec1; helpers
# token, vcall (vault REST as the admin client), start_service [PORT
# [ENV...]] and scall (service REST as the tenant admin).
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

start_service() { # [PORT [NAME=VALUE...]]
    local port=${1:-0}
    shift || true
    atr_start service env "$@" "$bin" serve --dir "$t/svc" "${tls[@]}" --port "$port" --idp "$idp" \
        --ca "$ca" --byok-client-id "$svc_id" --byok-secret-file "$t/byok.secret" \
        --byok-vault-host "${vurl#https://}"
    surl=$ATR_URL
}
# the caller starts the service, then: stok=$(token api://atrest/.default)
scall() { # METHOD PATH [BODY] -> "STATUS BODY"
    local code
    code=$(curl -sS --max-time 30 -o "$t/body" -w '%{http_code}' --cacert "$ca" -X "$1" \
        -H "Authorization: Bearer $stok" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$surl$2")
    echo "$code $(cat "$t/body")"
}

# For the monitor tests: purge protection on, the service principal of the
# service's application ($svc_sp) with list, wrapKey and unwrapKey (grant
# PERMISSIONS changes them), and svc_env: the service on a test clock with a
# reserve of 3 and passes run only when the test asks (POST
# /admin/monitor/run; the thread is covered by unit.service.monitor).
monitor_setup() {
    "$bin" vault update contoso --purge-protection "${va[@]}" >/dev/null
    svc_sp=$("$bin" idp sp create "${ia[@]}" --tenant "$tid" --app-id "$svc_id" | jq -r .id)
    grant list,wrapKey,unwrapKey
    svc_env=(ATREST_SERVE_TEST_CLOCK=true ATREST_SERVE_RESERVE_SIZE=3
        ATREST_SERVE_MONITOR_THREAD=false)
}
grant() {
    "$bin" vault policy set contoso --object-id "$svc_sp" --permissions "$1" "${va[@]}" >/dev/null
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * identity/idp: the identity server over real HTTPS on loopback, with the
 * injectable clock: token success and every Entra error path, client
 * assertions (good, tampered, wrong audience, expired, foreign key), rate
 * limiting, oversized and malformed bodies, metadata, JWKS and key rotation,
 * and the Graph subset with bootstrap and directory-admin tokens.
 */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/secmem.h"
#include "crypto/jwk.h"
#include "crypto/rsa.h"
#include "crypto/x509.h"
#include "http/client.h"
#include "http/server.h"
#include "identity/idp.h"
#include "identity/idp_store.h"
#include "identity/jwt.h"

#define ADMIN "admin-secret-for-tests-0123456789"
#define T0_MS 1700000000000LL

struct env {
    char dir[64];
    char ca[128], srv_pem[128], srv_key[128], db[128];
    struct atr_test_clock clock;
    struct atr_idp *idp;
    struct atr_http_server *srv;
    struct atr_http_client *c;
    char url[128];
    struct atr_idp_store *st; /* a second connection for provisioning */
    struct atr_idp_directory a, b;
    struct atr_idp_app single, multi;
    struct atr_idp_sp sp_single, sp_multi_b;
    char secret[64];
};

static struct env E;

static int setup(void **state)
{
    (void)state;
    memset(&E, 0, sizeof(E));
    snprintf(E.dir, sizeof(E.dir), "/tmp/atr-idp-XXXXXX");
    assert_non_null(mkdtemp(E.dir));
    snprintf(E.ca, sizeof(E.ca), "%s/ca.pem", E.dir);
    char ca_key[128];
    snprintf(ca_key, sizeof(ca_key), "%s/ca.key", E.dir);
    snprintf(E.srv_pem, sizeof(E.srv_pem), "%s/srv.pem", E.dir);
    snprintf(E.srv_key, sizeof(E.srv_key), "%s/srv.key", E.dir);
    snprintf(E.db, sizeof(E.db), "%s/idp.db", E.dir);
    static const char *const hosts[] = {"127.0.0.1"};
    assert_int_equal(atr_x509_ca_create(E.ca, ca_key, NULL, NULL), ATR_OK);
    assert_int_equal(
        atr_x509_server_create(E.srv_pem, E.srv_key, E.ca, ca_key, hosts, 1, NULL, NULL), ATR_OK);
    assert_int_equal(atr_test_clock_init(&E.clock, T0_MS), ATR_OK);

    struct atr_idp_opts o;
    memset(&o, 0, sizeof(o));
    o.db_path = E.db;
    o.clock = &E.clock.base;
    o.admin_secret = ADMIN;
    o.rl_max_failures = 3;
    o.rl_window_s = 60;
    o.key_rollover_s = 100;
    o.key_retain_s = 200;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_idp_new(&E.idp, &o, &err) != ATR_OK) {
        fprintf(stderr, "idp: %s\n", atr_err_msg(&err));
        fail();
    }
    struct atr_http_server_opts so;
    memset(&so, 0, sizeof(so));
    so.name = "idp";
    so.cert_file = E.srv_pem;
    so.key_file = E.srv_key;
    so.threads = 2;
    so.auth = atr_idp_auth;
    so.auth_ctx = E.idp;
    size_t nr = 0;
    const struct atr_route *routes = atr_idp_routes(&nr);
    assert_int_equal(atr_http_server_new(&E.srv, &so, routes, nr, E.idp, &err), ATR_OK);
    assert_int_equal(atr_http_server_start(E.srv, &err), ATR_OK);
    assert_int_equal(atr_http_server_url(E.url, sizeof(E.url), E.srv), ATR_OK);
    assert_int_equal(atr_idp_set_authority(E.idp, E.url, NULL), ATR_OK);
    struct atr_http_client_opts co;
    memset(&co, 0, sizeof(co));
    co.ca_file = E.ca;
    co.timeout_ms = 10000;
    assert_int_equal(atr_http_client_new(&E.c, &co, NULL), ATR_OK);

    assert_int_equal(atr_idp_store_open(&E.st, E.db, NULL), ATR_OK);
    int64_t now = T0_MS / 1000;
    assert_int_equal(atr_idp_store_directory_create(&E.a, E.st, "A", now, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_directory_create(&E.b, E.st, "B", now, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_app_create(&E.single, E.st, E.a.id, "single", 0, now, NULL),
                     ATR_OK);
    assert_int_equal(atr_idp_store_app_create(&E.multi, E.st, E.a.id, "multi", 1, now, NULL),
                     ATR_OK);
    snprintf(E.secret, sizeof(E.secret), "correct-horse-battery-staple-01");
    assert_int_equal(atr_idp_store_secret_add(E.st, E.single.app_id, E.secret, 0, now, NULL),
                     ATR_OK);
    assert_int_equal(atr_idp_store_secret_add(E.st, E.multi.app_id, E.secret, 0, now, NULL),
                     ATR_OK);
    assert_int_equal(
        atr_idp_store_sp_create(&E.sp_single, E.st, E.a.id, E.single.app_id, 1, now, NULL), ATR_OK);
    assert_int_equal(
        atr_idp_store_sp_create(&E.sp_multi_b, E.st, E.b.id, E.multi.app_id, 1, now, NULL), ATR_OK);
    assert_int_equal(atr_idp_store_role_grant(E.st, E.a.id, E.sp_single.id, "Records.Read", NULL),
                     ATR_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atr_http_client_free(E.c);
    atr_http_server_free(E.srv);
    atr_idp_free(E.idp);
    atr_idp_store_free(E.st);
    atr_test_clock_cleanup(&E.clock);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", E.dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* One request; returns the parsed JSON body (or NULL) and the status. */
static json_t *req(unsigned *status, const char *method, const char *path, const char *ctype,
                   const char *auth, const char *dirhdr, const char *body)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", E.url, path);
    char authz[20000];
    struct atr_http_header h[3];
    size_t nh = 0;
    if (ctype != NULL)
        h[nh++] = (struct atr_http_header){"Content-Type", ctype};
    if (auth != NULL) {
        snprintf(authz, sizeof(authz), "Bearer %s", auth);
        h[nh++] = (struct atr_http_header){"Authorization", authz};
    }
    if (dirhdr != NULL)
        h[nh++] = (struct atr_http_header){ATR_IDP_DIRECTORY_HEADER, dirhdr};
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.url = url;
    rq.headers = h;
    rq.nheaders = nh;
    if (body != NULL)
        rq.body = atr_span_str(body);
    struct atr_http_client_resp r;
    atr_http_client_resp_init(&r);
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_send(&r, E.c, &rq, &err) != ATR_OK) {
        fprintf(stderr, "send: %s\n", atr_err_msg(&err));
        fail();
    }
    *status = r.status;
    const char *b = atr_buf_cstr(&r.body);
    json_t *j = b != NULL ? json_loads(b, 0, NULL) : NULL;
    atr_http_client_resp_cleanup(&r);
    return j;
}

static json_t *token_req(unsigned *status, const char *tid, const char *form)
{
    char path[128];
    snprintf(path, sizeof(path), "/%s/oauth2/v2.0/token", tid);
    return req(status, "POST", path, "application/x-www-form-urlencoded", NULL, NULL, form);
}

static json_t *secret_token(unsigned *status, const char *tid, const char *client,
                            const char *secret, const char *scope)
{
    char form[1024];
    snprintf(form, sizeof(form),
             "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", client, secret,
             scope);
    return token_req(status, tid, form);
}

/* Checks an Entra error: status, error, AADSTS code in codes and description. */
static void expect_aad(json_t *j, const unsigned *pstatus, unsigned want_status, const char *error,
                       long code)
{
    unsigned status = *pstatus;
    assert_non_null(j);
    if (status != want_status)
        fprintf(stderr, "%s\n", json_dumps(j, 0));
    assert_int_equal(status, want_status);
    assert_string_equal(json_string_value(json_object_get(j, "error")), error);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "error_codes"), 0)),
                     code);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "AADSTS%ld: ", code);
    const char *d = json_string_value(json_object_get(j, "error_description"));
    assert_non_null(d);
    assert_memory_equal(d, prefix, strlen(prefix));
    assert_non_null(json_object_get(j, "trace_id"));
    assert_non_null(json_object_get(j, "correlation_id"));
    assert_non_null(json_object_get(j, "timestamp"));
    json_decref(j);
}

#define VAULT_SCOPE "https%3A%2F%2Fvault.azure.net%2F.default"

/* Verifies @p tok against the JWKS with the expected issuer and audience. */
static atr_status verify_via_jwks(struct atr_jwt_claims *c, const char *tok, const char *tid,
                                  const char *aud)
{
    unsigned st;
    json_t *jwks = req(&st, "GET", "/common/discovery/v2.0/keys", NULL, NULL, NULL, NULL);
    assert_int_equal(st, 200);
    char iss[256];
    snprintf(iss, sizeof(iss), "%s/%s/v2.0", E.url, tid);
    struct atr_jwt_verify_opts o;
    memset(&o, 0, sizeof(o));
    o.clock = &E.clock.base;
    o.issuer = iss;
    o.audience = aud;
    o.require_exp = 1;
    atr_status rc = ATR_E_UNAUTHORIZED;
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(jwks, "keys"), i, k)
    {
        assert_string_equal(json_string_value(json_object_get(k, "use")), "sig");
        struct atr_rsa_key *key = NULL;
        assert_int_equal(atr_jwk_import(&key, k, NULL), ATR_OK);
        memset(c, 0, sizeof(*c));
        rc = atr_jwt_verify_with_key(c, tok, strlen(tok), key, &o, NULL);
        atr_rsa_key_free(key);
        if (rc == ATR_OK && strcmp(c->kid, json_string_value(json_object_get(k, "kid"))) == 0)
            break;
        atr_jwt_claims_cleanup(c);
        rc = ATR_E_UNAUTHORIZED;
    }
    json_decref(jwks);
    return rc;
}

static void test_token_ok_and_claims(void **state)
{
    (void)state;
    unsigned st;
    json_t *j = secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(j, "token_type")), "Bearer");
    assert_int_equal(json_integer_value(json_object_get(j, "expires_in")), 3599);
    assert_int_equal(json_integer_value(json_object_get(j, "ext_expires_in")), 3599);
    const char *tok = json_string_value(json_object_get(j, "access_token"));
    struct atr_jwt_claims c;
    assert_int_equal(verify_via_jwks(&c, tok, E.a.id, "https://vault.azure.net"), ATR_OK);
    assert_string_equal(c.tid, E.a.id);
    assert_string_equal(c.oid, E.sp_single.id);
    assert_string_equal(c.appid, E.single.app_id);
    assert_int_equal(c.nroles, 1);
    assert_string_equal(c.roles[0], "Records.Read");
    assert_int_equal(c.iat, T0_MS / 1000);
    assert_int_equal(c.exp, T0_MS / 1000 + 3599);
    atr_jwt_claims_cleanup(&c);
    /* the token expires by the injectable clock */
    atr_test_clock_advance(&E.clock, 3700 * 1000);
    assert_int_equal(verify_via_jwks(&c, tok, E.a.id, "https://vault.azure.net"),
                     ATR_E_UNAUTHORIZED);
    /* another tenant's issuer does not accept it */
    atr_test_clock_set(&E.clock, T0_MS);
    assert_int_equal(verify_via_jwks(&c, tok, E.b.id, "https://vault.azure.net"),
                     ATR_E_UNAUTHORIZED);
    json_decref(j);

    /* a multi-tenant app gets tokens in a directory where it has an SP */
    j = secret_token(&st, E.b.id, E.multi.app_id, E.secret, "api%3A%2F%2Fatrest%2F.default");
    assert_int_equal(st, 200);
    tok = json_string_value(json_object_get(j, "access_token"));
    assert_int_equal(verify_via_jwks(&c, tok, E.b.id, "api://atrest"), ATR_OK);
    assert_string_equal(c.oid, E.sp_multi_b.id);
    assert_int_equal(c.nroles, 0);
    atr_jwt_claims_cleanup(&c);
    json_decref(j);
}

static void test_token_errors(void **state)
{
    (void)state;
    unsigned st;
    const char *unknown = "00000000-0000-4000-8000-000000000000";
    expect_aad(secret_token(&st, unknown, E.single.app_id, E.secret, VAULT_SCOPE), &st, 400,
               "invalid_request", 90002);
    expect_aad(secret_token(&st, "contoso.example", E.single.app_id, E.secret, VAULT_SCOPE), &st,
               400, "invalid_request", 90002);
    expect_aad(secret_token(&st, E.a.id, E.single.app_id, E.secret,
                            "https%3A%2F%2Fevil.example%2F.default"),
               &st, 400, "invalid_scope", 70011);
    expect_aad(secret_token(&st, E.a.id, E.single.app_id, E.secret,
                            "https%3A%2F%2Fvault.azure.net%2Fuser_impersonation"),
               &st, 400, "invalid_scope", 70011);
    expect_aad(token_req(&st, E.a.id, "grant_type=password&client_id=x"), &st, 400,
               "unsupported_grant_type", 70003);
    expect_aad(token_req(&st, E.a.id, "client_id=x"), &st, 400, "invalid_request", 900144);
    expect_aad(secret_token(&st, E.a.id, E.single.app_id, "wrong-secret-wrong-secret", VAULT_SCOPE),
               &st, 401, "invalid_client", 7000215);
    /* unknown application, single-tenant app in another directory, no SP */
    expect_aad(secret_token(&st, E.a.id, unknown, E.secret, VAULT_SCOPE), &st, 400,
               "unauthorized_client", 700016);
    expect_aad(secret_token(&st, E.b.id, E.single.app_id, E.secret, VAULT_SCOPE), &st, 400,
               "unauthorized_client", 700016);
    expect_aad(secret_token(&st, E.a.id, E.multi.app_id, E.secret, VAULT_SCOPE), &st, 400,
               "unauthorized_client", 700016);
    /* disabled service principal, then enabled again */
    assert_int_equal(atr_idp_store_sp_set_enabled(E.st, E.a.id, E.sp_single.id, 0, NULL), ATR_OK);
    expect_aad(secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE), &st, 401,
               "unauthorized_client", 7000112);
    assert_int_equal(atr_idp_store_sp_set_enabled(E.st, E.a.id, E.sp_single.id, 1, NULL), ATR_OK);
    json_t *j = secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE);
    assert_int_equal(st, 200);
    json_decref(j);
    /* no credential; both credentials */
    char form[512];
    snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&scope=%s",
             E.single.app_id, VAULT_SCOPE);
    expect_aad(token_req(&st, E.a.id, form), &st, 401, "invalid_client", 7000218);
    /* malformed and duplicate fields, wrong content type */
    expect_aad(token_req(&st, E.a.id, "grant_type=client_credentials&grant_type=x"), &st, 400,
               "invalid_request", 9002313);
    expect_aad(token_req(&st, E.a.id, "grant_type=%zz"), &st, 400, "invalid_request", 9002313);
    expect_aad(req(&st, "POST", "/x/oauth2/v2.0/token", "application/json", NULL, NULL, "{}"), &st,
               400, "invalid_request", 9002313);
}

static void test_oversized_body(void **state)
{
    (void)state;
    size_t n = 200 * 1024;
    char *big = atr_malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    memcpy(big, "grant_type=", 11);
    unsigned st;
    json_t *j = token_req(&st, E.a.id, big);
    assert_int_equal(st, 413);
    json_decref(j);
    /* a huge header value is refused cleanly too */
    j = req(&st, "GET", "/v1.0/servicePrincipals", NULL, big + 100 * 1024, NULL, NULL);
    assert_true(st >= 400 && st < 500);
    json_decref(j);
    atr_free(big);
    j = req(&st, "GET", "/healthz", NULL, NULL, NULL, NULL);
    assert_int_equal(st, 200);
    json_decref(j);
}

static void test_rate_limit(void **state)
{
    (void)state;
    unsigned st;
    for (int i = 0; i < 3; i++)
        expect_aad(
            secret_token(&st, E.a.id, E.single.app_id, "wrong-secret-wrong-secret", VAULT_SCOPE),
            &st, 401, "invalid_client", 7000215);
    /* even the right secret is not checked now */
    expect_aad(secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE), &st, 429,
               "temporarily_unavailable", 50196);
    atr_test_clock_advance(&E.clock, 61 * 1000);
    json_t *j = secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE);
    assert_int_equal(st, 200);
    json_decref(j);
}

/* Signs a client assertion with @p key. */
static char *assertion(const struct atr_rsa_key *key, const char *client, const char *aud,
                       int64_t exp)
{
    json_t *cl =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "aud", aud, "iss", client, "sub", client, "exp",
                  (json_int_t)exp, "nbf", (json_int_t)(T0_MS / 1000 - 10), "jti", "j1");
    char *tok = NULL;
    assert_int_equal(atr_jwt_sign_rs256(&tok, key, "client-key", cl, NULL), ATR_OK);
    json_decref(cl);
    return tok;
}

static json_t *assertion_token(unsigned *st, const char *tok)
{
    char *form = atr_malloc(strlen(tok) + 512);
    sprintf(form,
            "grant_type=client_credentials&client_id=%s&scope=%s&client_assertion_type="
            "urn%%3Aietf%%3Aparams%%3Aoauth%%3Aclient-assertion-type%%3Ajwt-bearer&"
            "client_assertion=%s",
            E.single.app_id, VAULT_SCOPE, tok);
    json_t *j = token_req(st, E.a.id, form);
    atr_free(form);
    return j;
}

static void test_client_assertion(void **state)
{
    (void)state;
    struct atr_rsa_key *key = NULL, *other = NULL;
    assert_int_equal(atr_rsa_key_generate(&key, 2048, NULL), ATR_OK);
    assert_int_equal(atr_rsa_key_generate(&other, 2048, NULL), ATR_OK);
    struct atr_buf pub;
    atr_buf_init(&pub, 1 << 16);
    assert_int_equal(atr_rsa_key_format_pem_public(&pub, key, NULL), ATR_OK);
    assert_int_equal(
        atr_idp_store_cert_add(E.st, E.single.app_id, atr_buf_cstr(&pub), T0_MS / 1000, NULL),
        ATR_OK);
    atr_buf_cleanup(&pub);
    char aud[256];
    snprintf(aud, sizeof(aud), "%s/%s/oauth2/v2.0/token", E.url, E.a.id);
    int64_t now = T0_MS / 1000;
    unsigned st;

    char *tok = assertion(key, E.single.app_id, aud, now + 300);
    json_t *j = assertion_token(&st, tok);
    assert_int_equal(st, 200);
    const char *at = json_string_value(json_object_get(j, "access_token"));
    struct atr_jwt_claims c;
    assert_int_equal(verify_via_jwks(&c, at, E.a.id, "https://vault.azure.net"), ATR_OK);
    atr_jwt_claims_cleanup(&c);
    json_decref(j);

    /* tampered signature */
    size_t len = strlen(tok);
    tok[len - 5] = tok[len - 5] == 'A' ? 'B' : 'A';
    expect_aad(assertion_token(&st, tok), &st, 401, "invalid_client", 700027);
    atr_free(tok);
    /* wrong audience */
    tok = assertion(key, E.single.app_id, "https://login.example/token", now + 300);
    expect_aad(assertion_token(&st, tok), &st, 401, "invalid_client", 700027);
    atr_free(tok);
    /* expired */
    tok = assertion(key, E.single.app_id, aud, now - 3600);
    expect_aad(assertion_token(&st, tok), &st, 401, "invalid_client", 700027);
    atr_free(tok);
    atr_test_clock_advance(&E.clock, 61 * 1000); /* out of the rate-limit window */
    /* signed by a key that is not registered */
    tok = assertion(other, E.single.app_id, aud, now + 300);
    expect_aad(assertion_token(&st, tok), &st, 401, "invalid_client", 700027);
    atr_free(tok);
    /* alg none */
    expect_aad(
        assertion_token(&st, "eyJhbGciOiJub25lIiwia2lkIjoiY2xpZW50LWtleSJ9.eyJpc3MiOiJ4In0."), &st,
        401, "invalid_client", 700027);
    atr_rsa_key_free(key);
    atr_rsa_key_free(other);
}

static void test_metadata_and_rotation(void **state)
{
    (void)state;
    unsigned st;
    char path[256];
    snprintf(path, sizeof(path), "/%s/v2.0/.well-known/openid-configuration", E.a.id);
    json_t *m = req(&st, "GET", path, NULL, NULL, NULL, NULL);
    assert_int_equal(st, 200);
    char want[256];
    snprintf(want, sizeof(want), "%s/%s/v2.0", E.url, E.a.id);
    assert_string_equal(json_string_value(json_object_get(m, "issuer")), want);
    snprintf(want, sizeof(want), "%s/%s/oauth2/v2.0/token", E.url, E.a.id);
    assert_string_equal(json_string_value(json_object_get(m, "token_endpoint")), want);
    assert_non_null(json_object_get(m, "authorization_endpoint"));
    assert_non_null(json_object_get(m, "jwks_uri"));
    json_decref(m);
    m = req(&st, "GET",
            "/00000000-0000-4000-8000-000000000000/v2.0/.well-known/"
            "openid-configuration",
            NULL, NULL, NULL, NULL);
    assert_int_equal(st, 400);
    json_decref(m);

    /* rotation: publish first, sign after the rollover, retire later */
    char kid[ATR_IDP_KID_MAX + 1];
    json_t *j = secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE);
    struct atr_jwt_claims c;
    assert_int_equal(verify_via_jwks(&c, json_string_value(json_object_get(j, "access_token")),
                                     E.a.id, "https://vault.azure.net"),
                     ATR_OK);
    char old_kid[ATR_IDP_KID_MAX + 1];
    snprintf(old_kid, sizeof(old_kid), "%s", c.kid);
    atr_jwt_claims_cleanup(&c);
    json_decref(j);
    assert_int_equal(atr_idp_keys_rotate(E.idp, -1, kid, NULL), ATR_OK);
    json_t *ks = req(&st, "GET", "/common/discovery/v2.0/keys", NULL, NULL, NULL, NULL);
    assert_int_equal(json_array_size(json_object_get(ks, "keys")), 2);
    json_decref(ks);
    j = secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE);
    assert_int_equal(verify_via_jwks(&c, json_string_value(json_object_get(j, "access_token")),
                                     E.a.id, "https://vault.azure.net"),
                     ATR_OK);
    assert_string_equal(c.kid, old_kid);
    atr_jwt_claims_cleanup(&c);
    json_decref(j);
    atr_test_clock_advance(&E.clock, 101 * 1000);
    j = secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE);
    assert_int_equal(verify_via_jwks(&c, json_string_value(json_object_get(j, "access_token")),
                                     E.a.id, "https://vault.azure.net"),
                     ATR_OK);
    assert_string_equal(c.kid, kid);
    atr_jwt_claims_cleanup(&c);
    json_decref(j);
    atr_test_clock_advance(&E.clock, 200 * 1000);
    ks = req(&st, "GET", "/common/discovery/v2.0/keys", NULL, NULL, NULL, NULL);
    assert_int_equal(json_array_size(json_object_get(ks, "keys")), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(ks, "keys"), 0), "kid")),
        kid);
    json_decref(ks);
}

static void expect_graph(json_t *j, const unsigned *pst, unsigned want, const char *code)
{
    unsigned st = *pst;
    assert_non_null(j);
    if (st != want)
        fprintf(stderr, "%s\n", json_dumps(j, 0));
    assert_int_equal(st, want);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_non_null(json_object_get(e, "message"));
    assert_non_null(json_object_get(e, "innerError"));
    json_decref(j);
}

static void test_graph(void **state)
{
    (void)state;
    unsigned st;
    const char *b = E.b.id;
    /* no token, bad token, bootstrap without directory */
    expect_graph(req(&st, "GET", "/v1.0/servicePrincipals", NULL, NULL, NULL, NULL), &st, 401,
                 "InvalidAuthenticationToken");
    expect_graph(req(&st, "GET", "/v1.0/servicePrincipals", NULL, "abc.def.ghi", NULL, NULL), &st,
                 401, "InvalidAuthenticationToken");
    expect_graph(req(&st, "GET", "/v1.0/servicePrincipals", NULL, ADMIN, NULL, NULL), &st, 400,
                 "Request_BadRequest");
    /* create in B (single-tenant app of A is refused) */
    char body[256];
    snprintf(body, sizeof(body), "{\"appId\":\"%s\"}", E.single.app_id);
    expect_graph(req(&st, "POST", "/v1.0/servicePrincipals", "application/json", ADMIN, b, body),
                 &st, 400, "Request_BadRequest");
    snprintf(body, sizeof(body), "{\"appId\":\"%s\"}", E.multi.app_id);
    expect_graph(req(&st, "POST", "/v1.0/servicePrincipals", "application/json", ADMIN, b, body),
                 &st, 409, "Request_MultipleObjectsWithSameKeyValue");
    json_t *j =
        req(&st, "POST", "/v1.0/servicePrincipals", "application/json", ADMIN, E.a.id, body);
    assert_int_equal(st, 201);
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")));
    assert_string_equal(json_string_value(json_object_get(j, "appId")), E.multi.app_id);
    assert_true(json_is_true(json_object_get(j, "accountEnabled")));
    assert_non_null(json_object_get(j, "@odata.context"));
    json_decref(j);
    /* filter */
    char path[256];
    snprintf(path, sizeof(path), "/v1.0/servicePrincipals?$filter=appId%%20eq%%20'%s'",
             E.multi.app_id);
    j = req(&st, "GET", path, NULL, ADMIN, E.a.id, NULL);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(j, "value")), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "value"), 0), "id")),
        id);
    json_decref(j);
    expect_graph(req(&st, "GET", "/v1.0/servicePrincipals?$filter=displayName%20eq%20'x'", NULL,
                     ADMIN, E.a.id, NULL),
                 &st, 400, "Request_UnsupportedQuery");
    /* patch, get, directory isolation, delete */
    snprintf(path, sizeof(path), "/v1.0/servicePrincipals/%s", id);
    j = req(&st, "PATCH", path, "application/json", ADMIN, E.a.id, "{\"accountEnabled\":false}");
    assert_int_equal(st, 204);
    json_decref(j);
    j = req(&st, "GET", path, NULL, ADMIN, E.a.id, NULL);
    assert_int_equal(st, 200);
    assert_true(json_is_false(json_object_get(j, "accountEnabled")));
    json_decref(j);
    expect_graph(req(&st, "GET", path, NULL, ADMIN, b, NULL), &st, 404, "Request_ResourceNotFound");
    expect_graph(
        req(&st, "PATCH", path, "application/json", ADMIN, E.a.id, "{\"accountEnabled\":\"yes\"}"),
        &st, 400, "Request_BadRequest");
    j = req(&st, "DELETE", path, NULL, ADMIN, E.a.id, NULL);
    assert_int_equal(st, 204);
    json_decref(j);
    expect_graph(req(&st, "DELETE", path, NULL, ADMIN, E.a.id, NULL), &st, 404,
                 "Request_ResourceNotFound");

    /* a directory admin token: Application.ReadWrite.All for Graph, tid = its directory */
    assert_int_equal(
        atr_idp_store_role_grant(E.st, E.a.id, E.sp_single.id, ATR_IDP_GRAPH_ROLE, NULL), ATR_OK);
    j = secret_token(&st, E.a.id, E.single.app_id, E.secret,
                     "https%3A%2F%2Fgraph.microsoft.com%2F.default");
    assert_int_equal(st, 200);
    char *admin_tok = atr_strdup(json_string_value(json_object_get(j, "access_token")));
    json_decref(j);
    j = req(&st, "GET", "/v1.0/servicePrincipals", NULL, admin_tok, b, NULL);
    assert_int_equal(st, 200);
    /* the token's tid (A) wins over any header */
    assert_int_equal(json_array_size(json_object_get(j, "value")), 1);
    json_decref(j);
    /* admin surface refuses tokens */
    j = req(&st, "GET", "/admin/directories", NULL, admin_tok, NULL, NULL);
    assert_int_equal(st, 401);
    json_decref(j);
    /* a vault token is not a Graph token; an expired Graph token neither */
    j = secret_token(&st, E.a.id, E.single.app_id, E.secret, VAULT_SCOPE);
    expect_graph(req(&st, "GET", "/v1.0/servicePrincipals", NULL,
                     json_string_value(json_object_get(j, "access_token")), NULL, NULL),
                 &st, 401, "InvalidAuthenticationToken");
    json_decref(j);
    atr_test_clock_advance(&E.clock, 4000 * 1000);
    expect_graph(req(&st, "GET", "/v1.0/servicePrincipals", NULL, admin_tok, NULL, NULL), &st, 401,
                 "InvalidAuthenticationToken");
    atr_free(admin_tok);
}

static void test_admin(void **state)
{
    (void)state;
    unsigned st;
    json_t *j = req(&st, "POST", "/admin/directories", "application/json", "wrong-secret-abcdefgh",
                    NULL, "{}");
    assert_int_equal(st, 401);
    json_decref(j);
    j = req(&st, "POST", "/admin/directories", "application/json", ADMIN, NULL,
            "{\"displayName\":\"C\"}");
    assert_int_equal(st, 201);
    char tid[64];
    snprintf(tid, sizeof(tid), "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    char path[256];
    snprintf(path, sizeof(path), "/admin/directories/%s/applications", tid);
    j = req(&st, "POST", path, "application/json", ADMIN, NULL, "{\"displayName\":\"app\"}");
    assert_int_equal(st, 201);
    const char *secret = json_string_value(json_object_get(j, "secret"));
    assert_true(strlen(secret) >= 40);
    char app_id[64], sec[64];
    snprintf(app_id, sizeof(app_id), "%s", json_string_value(json_object_get(j, "appId")));
    snprintf(sec, sizeof(sec), "%s", secret);
    json_decref(j);
    j = req(&st, "POST", "/admin/directories/not-a-guid/applications", "application/json", ADMIN,
            NULL, "{}");
    assert_int_equal(st, 404);
    json_decref(j);
    struct atr_idp_sp sp;
    assert_int_equal(atr_idp_store_sp_create(&sp, E.st, tid, app_id, 1, 0, NULL), ATR_OK);
    snprintf(path, sizeof(path), "/admin/directories/%s/servicePrincipals/%s/roles", tid, sp.id);
    j = req(&st, "POST", path, "application/json", ADMIN, NULL, "{\"role\":\"Records.Write\"}");
    assert_int_equal(st, 200);
    json_decref(j);
    j = req(&st, "POST", path, "application/json", ADMIN, NULL, "{\"role\":\"God\"}");
    assert_int_equal(st, 400);
    json_decref(j);
    j = secret_token(&st, tid, app_id, sec, VAULT_SCOPE);
    assert_int_equal(st, 200);
    json_decref(j);
    j = req(&st, "POST", "/admin/keys/rotate", "application/json", ADMIN, NULL,
            "{\"rolloverSeconds\":10}");
    assert_int_equal(st, 200);
    json_decref(j);
    j = req(&st, "GET", "/admin/keys", NULL, ADMIN, NULL, NULL);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(j, "keys")), 2);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_ok_and_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_assertion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata_and_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graph, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin, setup, teardown),
    };
    return cmocka_run_group_tests(tests, atr_test_setup_secmem, NULL);
}

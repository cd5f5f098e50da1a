/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "crypto/jwk.h"
#include "crypto/rsa.h"
#include "crypto/x509.h"
#include "http/server.h"
#include "identity/jwks.h"
#include "identity/jwt.h"

#define NOW_S  ((int64_t)1700000000)
#define ISSUER "https://login.microsoftonline.com/" TENANT "/v2.0"
#define TENANT "11111111-2222-3333-4444-555555555555"
#define AUD    "api://atrest"

#define MIN_REFRESH_MS ((int64_t)60000)
#define RETRY_MS       ((int64_t)5000)
#define MAX_AGE_MS     ((int64_t)3600000)

static struct atr_rsa_key *keys[3]; /* k1, k2, k3: 2048-bit private keys */
static const char *const kids[3] = {"k1", "k2", "k3"};

/* ---- helpers: JWKS documents and tokens ---- */

/* The public JWK of keys[i] with kid and use. A new reference. */
static json_t *jwk_of(size_t i)
{
    json_t *j = NULL;
    assert_int_equal(atr_jwk_export(&j, keys[i], ATR_JWK_PUBLIC, NULL), ATR_OK);
    json_object_set_new(j, "kid", json_string(kids[i]));
    json_object_set_new(j, "use", json_string("sig"));
    json_object_set_new(j, "x5t", json_string("thumbprint"));
    return j;
}

/* {"keys":[...]} of the keys whose bit is set in @p mask, as text (owned). */
static char *jwks_text(unsigned mask)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < 3; i++) {
        if (mask & (1u << i))
            json_array_append_new(arr, jwk_of(i));
    }
    json_t *doc = json_pack("{s:o}", "keys", arr);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    char *copy = atr_strdup(s);
    free(s);
    return copy;
}

static char *token_for(size_t i, const char *kid)
{
    json_t *claims = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:[s]}", "iss", ISSUER, "aud", AUD, "tid",
                               TENANT, "oid", "o-1", "iat", (json_int_t)NOW_S, "exp",
                               (json_int_t)(NOW_S + 3600), "roles", "Vault.Read");
    char *tok = NULL;
    assert_int_equal(atr_jwt_sign_rs256(&tok, keys[i], kid, claims, NULL), ATR_OK);
    json_decref(claims);
    return tok;
}

static struct atr_test_clock tclock;

static struct atr_jwks_verify_opts vopts(void)
{
    struct atr_jwks_verify_opts o;
    memset(&o, 0, sizeof(o));
    o.jwt.clock = &tclock.base;
    o.jwt.issuer = ISSUER;
    o.jwt.audience = AUD;
    o.jwt.skew_s = 60;
    o.jwt.require_exp = 1;
    return o;
}

/* ---- the JWKS server: HTTPS on loopback, document changeable between calls ---- */

struct jwks_app {
    pthread_mutex_t lock;
    char *body;        /* the document served */
    unsigned status;   /* 200, or an error status */
    unsigned requests; /* GET /jwks seen */
    unsigned delay_ms; /* to make fetches overlap */
};

static struct jwks_app app;

static atr_status h_jwks(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)req;
    struct jwks_app *a = ctx;
    pthread_mutex_lock(&a->lock);
    a->requests++;
    unsigned delay = a->delay_ms;
    unsigned status = a->status;
    char *body = atr_strdup(a->body != NULL ? a->body : "");
    pthread_mutex_unlock(&a->lock);
    if (body == NULL)
        return ATR_E_NOMEM;
    if (delay > 0) {
        struct timespec ts = {0, (long)delay * 1000000L};
        nanosleep(&ts, NULL);
    }
    atr_status rc =
        atr_http_resp_body(resp, status, "application/json", atr_span_of(body, strlen(body)));
    atr_free(body);
    return rc;
}

static const struct atr_route routes[] = {
    {"GET", "/jwks", h_jwks, 0, 0, NULL},
};

static void app_set(unsigned mask, unsigned status)
{
    char *text = jwks_text(mask);
    pthread_mutex_lock(&app.lock);
    atr_free(app.body);
    app.body = text;
    app.status = status;
    pthread_mutex_unlock(&app.lock);
}

static void app_set_raw(const char *text, unsigned status)
{
    char *copy = atr_strdup(text);
    pthread_mutex_lock(&app.lock);
    atr_free(app.body);
    app.body = copy;
    app.status = status;
    pthread_mutex_unlock(&app.lock);
}

static unsigned app_requests(void)
{
    pthread_mutex_lock(&app.lock);
    unsigned n = app.requests;
    pthread_mutex_unlock(&app.lock);
    return n;
}

static char dir[64];
static char ca_pem[128], ca_key[128], srv_pem[128], srv_key[128];

static struct atr_http_server *server_start_port(char *url, size_t cap, uint16_t port)
{
    struct atr_http_server_opts o;
    memset(&o, 0, sizeof(o));
    o.port = port;
    o.name = "jwks-test";
    o.cert_file = srv_pem;
    o.key_file = srv_key;
    o.threads = 4;
    o.shutdown_grace_ms = 2000;
    struct atr_http_server *srv = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_server_new(&srv, &o, routes, ATR_ARRAY_LEN(routes), &app, &err) != ATR_OK ||
        atr_http_server_start(srv, &err) != ATR_OK) {
        fprintf(stderr, "server: %s\n", atr_err_msg(&err));
        fail();
    }
    char base[96];
    assert_int_equal(atr_http_server_url(base, sizeof(base), srv), ATR_OK);
    snprintf(url, cap, "%s/jwks", base);
    return srv;
}

static struct atr_http_server *server_start(char *url, size_t cap)
{
    return server_start_port(url, cap, 0);
}

static struct atr_jwks_cache *cache_new(const char *url)
{
    struct atr_jwks_cache_opts o;
    memset(&o, 0, sizeof(o));
    o.jwks_uri = url;
    o.ca_file = ca_pem;
    o.connect_timeout_ms = 2000;
    o.timeout_ms = 5000;
    o.min_refresh_interval_ms = MIN_REFRESH_MS;
    o.retry_interval_ms = RETRY_MS;
    o.max_age_ms = MAX_AGE_MS;
    o.clock = &tclock.base;
    struct atr_jwks_cache *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_jwks_cache_new(&c, &o, &err) != ATR_OK) {
        fprintf(stderr, "cache: %s\n", atr_err_msg(&err));
        fail();
    }
    return c;
}

static int setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    for (size_t i = 0; i < 3; i++) {
        if (atr_rsa_key_generate(&keys[i], 2048, NULL) != ATR_OK)
            return -1;
    }
    if (atr_test_clock_init(&tclock, NOW_S * 1000) != ATR_OK)
        return -1;
    snprintf(dir, sizeof(dir), "/tmp/atr-jwks-test-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
    snprintf(ca_key, sizeof(ca_key), "%s/ca.key", dir);
    snprintf(srv_pem, sizeof(srv_pem), "%s/server.pem", dir);
    snprintf(srv_key, sizeof(srv_key), "%s/server.key", dir);
    static const char *const hosts[] = {"localhost", "127.0.0.1"};
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_x509_ca_create(ca_pem, ca_key, NULL, &err) != ATR_OK ||
        atr_x509_server_create(srv_pem, srv_key, ca_pem, ca_key, hosts, 2, NULL, &err) != ATR_OK) {
        fprintf(stderr, "certificates: %s\n", atr_err_msg(&err));
        return -1;
    }
    pthread_mutex_init(&app.lock, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < 3; i++)
        atr_rsa_key_free(keys[i]);
    atr_test_clock_cleanup(&tclock);
    unlink(ca_pem);
    unlink(ca_key);
    unlink(srv_pem);
    unlink(srv_key);
    rmdir(dir);
    atr_free(app.body);
    pthread_mutex_destroy(&app.lock);
    return 0;
}

/* Each cache test starts with a fresh server state and clock. */
static int reset_app(void **state)
{
    (void)state;
    pthread_mutex_lock(&app.lock);
    app.requests = 0;
    app.delay_ms = 0;
    pthread_mutex_unlock(&app.lock);
    app_set(1u, 200);
    atr_test_clock_set(&tclock, NOW_S * 1000);
    return 0;
}

/* ---- parsing ---- */

static void test_parse_good(void **state)
{
    (void)state;
    json_t *arr = json_array();
    json_array_append_new(arr, jwk_of(0));
    /* skipped: EC, oct, an encryption key, an RS384-only key, a key without kid */
    json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256", "x",
                                         "AAAA", "y", "AAAA", "kid", "ec1"));
    json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "kty", "oct", "k", "AAAA", "kid", "o1"));
    json_t *enc = jwk_of(1);
    json_object_set_new(enc, "use", json_string("enc"));
    json_object_set_new(enc, "kid", json_string("enc1"));
    json_array_append_new(arr, enc);
    json_t *rs384 = jwk_of(1);
    json_object_set_new(rs384, "alg", json_string("RS384"));
    json_object_set_new(rs384, "kid", json_string("rs384"));
    json_array_append_new(arr, rs384);
    json_t *nokid = jwk_of(1);
    json_object_del(nokid, "kid");
    json_array_append_new(arr, nokid);
    /* kept: a key without "use", one with alg RS256, and kty RSA-HSM */
    json_t *k2 = jwk_of(1);
    json_object_del(k2, "use");
    json_object_set_new(k2, "alg", json_string("RS256"));
    json_array_append_new(arr, k2);
    json_t *k3 = jwk_of(2);
    json_object_set_new(k3, "kty", json_string("RSA-HSM"));
    json_array_append_new(arr, k3);
    json_t *doc = json_pack("{s:o,s:s}", "keys", arr, "extra", "ignored");

    struct atr_jwks *set = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_from_json(&set, doc, &err), ATR_OK);
    assert_int_equal(atr_jwks_count(set), 3);
    assert_string_equal(atr_jwks_kid_at(set, 0), "k1");
    assert_string_equal(atr_jwks_kid_at(set, 1), "k2");
    assert_string_equal(atr_jwks_kid_at(set, 2), "k3");
    assert_null(atr_jwks_kid_at(set, 3));
    assert_non_null(atr_jwks_get(set, "k1"));
    assert_null(atr_jwks_get(set, "ec1"));
    assert_null(atr_jwks_get(set, "enc1"));
    assert_null(atr_jwks_get(set, "rs384"));
    assert_null(atr_jwks_get(set, "K1"));
    assert_null(atr_jwks_get(set, NULL));
    assert_false(atr_rsa_key_has_private(atr_jwks_get(set, "k2")));

    /* the keys verify tokens of their kids, and only those */
    struct atr_jwks_verify_opts o = vopts();
    struct atr_jwt_claims c;
    for (size_t i = 0; i < 3; i++) {
        char *tok = token_for(i, kids[i]);
        assert_int_equal(atr_jwks_verify(&c, set, tok, strlen(tok), &o, NULL), ATR_OK);
        assert_string_equal(c.kid, kids[i]);
        assert_string_equal(c.tid, TENANT);
        atr_jwt_claims_cleanup(&c);
        atr_free(tok);
    }
    /* key 1 under kid k2: the kid picks k2's key, the signature fails */
    char *tok = token_for(0, "k2");
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_verify(&c, set, tok, strlen(tok), &o, &err), ATR_E_UNAUTHORIZED);
    assert_non_null(strstr(err.msg, "signature is invalid"));
    atr_free(tok);
    tok = token_for(0, "enc1");
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_verify(&c, set, tok, strlen(tok), &o, &err), ATR_E_UNAUTHORIZED);
    assert_string_equal(err.msg, "JWT: kid: no key has the token's kid");
    atr_free(tok);

    /* retain/release */
    atr_jwks_retain(set);
    atr_jwks_release(set);
    assert_int_equal(atr_jwks_count(set), 3);
    atr_jwks_release(set);
    atr_jwks_release(NULL);
    atr_jwks_retain(NULL);
    json_decref(doc);

    /* an empty set is valid */
    assert_int_equal(atr_jwks_parse(&set, "{\"keys\":[]}", 11, NULL), ATR_OK);
    assert_int_equal(atr_jwks_count(set), 0);
    assert_null(atr_jwks_get(set, "k1"));
    atr_jwks_release(set);
}

static void expect_parse(const char *text, atr_status want, const char *msg)
{
    static int dummy;
    struct atr_jwks *set = (struct atr_jwks *)(void *)&dummy; /* must be reset */
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwks_parse(&set, text, strlen(text), &err);
    if (rc != want || strstr(err.msg, msg) == NULL)
        fail_msg("want %s \"%s\", got %s \"%s\"", atr_status_name(want), msg, atr_status_name(rc),
                 err.msg);
    assert_null(set);
    assert_int_equal(strncmp(err.msg, "JWKS", 4), 0);
}

static void test_parse_bad(void **state)
{
    (void)state;
    expect_parse("", ATR_E_PARSE, "not valid JSON");
    expect_parse("garbage", ATR_E_PARSE, "not valid JSON");
    expect_parse("{\"keys\":[]", ATR_E_PARSE, "not valid JSON");
    expect_parse("[]", ATR_E_PARSE, "not a JSON object");
    expect_parse("{}", ATR_E_PARSE, "\"keys\" must be an array");
    expect_parse("{\"keys\":{}}", ATR_E_PARSE, "\"keys\" must be an array");
    expect_parse("{\"keys\":[],\"keys\":[]}", ATR_E_PARSE, "not valid JSON");
    expect_parse("{\"keys\":[1]}", ATR_E_PARSE, "key 0 is not an object");
    expect_parse("{\"keys\":[{}]}", ATR_E_PARSE, "key 0 has no \"kty\"");
    expect_parse("{\"keys\":[{\"kty\":1}]}", ATR_E_PARSE, "key 0: \"kty\" must be a string");
    expect_parse("{\"keys\":[{\"kty\":\"RSA\",\"kid\":[]}]}", ATR_E_PARSE,
                 "key 0: \"kid\" must be a string");
    expect_parse("{\"keys\":[{\"kty\":\"RSA\",\"use\":7}]}", ATR_E_PARSE, "\"use\" must be");
    expect_parse("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
                 ATR_E_INVALID, "\"kid\" must be 1..");
    /* RSA keys that do not import */
    expect_parse("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\"}]}", ATR_E_INVALID,
                 "key 0: JWK: \"n\" is missing");
    expect_parse("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
                 ATR_E_INVALID, "key 0: ");
    expect_parse("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"!!\",\"e\":\"AQAB\"}]}",
                 ATR_E_INVALID, "key 0: JWK");

    /* duplicates, private keys, too many keys */
    json_t *arr = json_array();
    json_array_append_new(arr, jwk_of(0));
    json_array_append_new(arr, jwk_of(1));
    json_t *dup = jwk_of(2);
    json_object_set_new(dup, "kid", json_string("k1"));
    json_array_append_new(arr, dup);
    json_t *doc = json_pack("{s:o}", "keys", arr);
    char *text = json_dumps(doc, JSON_COMPACT);
    expect_parse(text, ATR_E_INVALID, "key 2: duplicate \"kid\"");
    free(text);
    json_decref(doc);

    json_t *priv = NULL;
    assert_int_equal(atr_jwk_export(&priv, keys[0], ATR_JWK_PRIVATE, NULL), ATR_OK);
    json_object_set_new(priv, "kid", json_string("k1"));
    doc = json_pack("{s:[o]}", "keys", priv);
    text = json_dumps(doc, JSON_COMPACT);
    expect_parse(text, ATR_E_INVALID, "key 0 holds private key material");
    free(text);
    json_decref(doc);

    arr = json_array();
    for (int i = 0; i < ATR_JWKS_MAX_KEYS + 1; i++)
        json_array_append_new(arr, json_pack("{s:s}", "kty", "oct"));
    doc = json_pack("{s:o}", "keys", arr);
    text = json_dumps(doc, JSON_COMPACT);
    expect_parse(text, ATR_E_TOO_LARGE, "more than 64 keys");
    free(text);
    json_decref(doc);

    char *huge = atr_malloc(ATR_JWKS_MAX_TEXT + 2);
    memset(huge, ' ', ATR_JWKS_MAX_TEXT + 1);
    huge[ATR_JWKS_MAX_TEXT + 1] = '\0';
    expect_parse(huge, ATR_E_TOO_LARGE, "longer than");
    atr_free(huge);
}

static void test_verify_options(void **state)
{
    (void)state;
    char *text = jwks_text(3u);
    struct atr_jwks *set = NULL;
    assert_int_equal(atr_jwks_parse(&set, text, strlen(text), NULL), ATR_OK);
    atr_free(text);
    char *tok = token_for(1, "k2");
    struct atr_jwt_claims c;
    struct atr_err err;

    /* multi-tenant issuer template */
    struct atr_jwks_verify_opts o = vopts();
    o.jwt.issuer = NULL;
    o.issuer_template = "https://login.microsoftonline.com/{tenantid}/v2.0";
    assert_int_equal(atr_jwks_verify(&c, set, tok, strlen(tok), &o, NULL), ATR_OK);
    assert_string_equal(c.tid, TENANT);
    atr_jwt_claims_cleanup(&c);
    o.issuer_template = "https://sts.windows.net/{tenantid}/";
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_verify(&c, set, tok, strlen(tok), &o, &err), ATR_E_UNAUTHORIZED);
    assert_non_null(strstr(err.msg, "issuer does not match"));
    assert_null(c.tid);
    /* both, or a template without the placeholder: argument errors */
    o.jwt.issuer = ISSUER;
    assert_int_equal(atr_jwks_verify(&c, set, tok, strlen(tok), &o, NULL), ATR_E_INVALID);
    o.jwt.issuer = NULL;
    o.issuer_template = ISSUER;
    assert_int_equal(atr_jwks_verify(&c, set, tok, strlen(tok), &o, NULL), ATR_E_INVALID);

    /* malformed tokens and tokens without kid */
    o = vopts();
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_verify(&c, set, "a.b", 3, &o, &err), ATR_E_UNAUTHORIZED);
    assert_non_null(strstr(err.msg, "malformed"));
    atr_free(tok);
    json_t *claims = json_pack("{s:s}", "iss", ISSUER);
    assert_int_equal(atr_jwt_sign_rs256(&tok, keys[1], "k9", claims, NULL), ATR_OK);
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_verify(&c, set, tok, strlen(tok), &o, &err), ATR_E_UNAUTHORIZED);
    assert_string_equal(err.msg, "JWT: kid: no key has the token's kid");
    json_decref(claims);
    atr_free(tok);
    atr_jwks_release(set);
}

/* ---- the cache against a real HTTPS server ---- */

static void expect_get(struct atr_jwks_cache *c, const char *kid, atr_status want)
{
    struct atr_jwks *set = NULL;
    const struct atr_rsa_key *key = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = atr_jwks_cache_get(&set, &key, c, kid, &err);
    if (rc != want)
        fail_msg("get %s: want %s, got %s \"%s\"", kid, atr_status_name(want), atr_status_name(rc),
                 err.msg);
    if (rc == ATR_OK) {
        assert_non_null(set);
        assert_true(key == atr_jwks_get(set, kid));
    } else {
        assert_null(set);
        assert_null(key);
    }
    atr_jwks_release(set);
}

static void test_cache_unknown_kid_refetch(void **state)
{
    (void)state;
    char url[128];
    struct atr_http_server *srv = server_start(url, sizeof(url));
    struct atr_jwks_cache *c = cache_new(url);
    assert_int_equal(app_requests(), 0); /* nothing fetched at creation */

    expect_get(c, "k1", ATR_OK); /* first use fetches */
    assert_int_equal(app_requests(), 1);
    for (int i = 0; i < 5; i++)
        expect_get(c, "k1", ATR_OK); /* served from memory */
    assert_int_equal(app_requests(), 1);

    /* k2 is published; once the interval has passed, an unknown kid refetches once */
    app_set(3u, 200);
    atr_test_clock_advance(&tclock, MIN_REFRESH_MS);
    expect_get(c, "k2", ATR_OK);
    assert_int_equal(app_requests(), 2);
    expect_get(c, "k2", ATR_OK);
    expect_get(c, "k1", ATR_OK);
    assert_int_equal(app_requests(), 2);
    assert_int_equal(atr_jwks_cache_fetches(c), 2);

    atr_jwks_cache_free(c);
    atr_http_server_free(srv);
}

static void test_cache_rate_limit(void **state)
{
    (void)state;
    char url[128];
    struct atr_http_server *srv = server_start(url, sizeof(url));
    struct atr_jwks_cache *c = cache_new(url);
    expect_get(c, "k1", ATR_OK);
    assert_int_equal(app_requests(), 1);

    /* a flood of random kids right after a fetch: no request at all */
    for (int i = 0; i < 200; i++) {
        char kid[32];
        snprintf(kid, sizeof(kid), "random-%d", i);
        expect_get(c, kid, ATR_E_NOT_FOUND);
        atr_test_clock_advance(&tclock, 100); /* 20 s in all, below the interval */
    }
    assert_int_equal(app_requests(), 1);

    /* after the interval: exactly one refetch for the next unknown kid, then quiet again */
    atr_test_clock_advance(&tclock, MIN_REFRESH_MS);
    for (int i = 0; i < 50; i++)
        expect_get(c, "random-x", ATR_E_NOT_FOUND);
    assert_int_equal(app_requests(), 2);
    /* one millisecond short of the interval: still quiet */
    atr_test_clock_advance(&tclock, MIN_REFRESH_MS - 1);
    expect_get(c, "random-y", ATR_E_NOT_FOUND);
    assert_int_equal(app_requests(), 2);
    atr_test_clock_advance(&tclock, 1);
    expect_get(c, "random-y", ATR_E_NOT_FOUND);
    assert_int_equal(app_requests(), 3);
    /* known kids never fetched in between */
    expect_get(c, "k1", ATR_OK);
    assert_int_equal(app_requests(), 3);

    /* cache_verify: a bad alg or a missing kid never causes a fetch */
    atr_test_clock_advance(&tclock, MIN_REFRESH_MS);
    json_t *claims = json_pack("{s:s}", "iss", ISSUER);
    char *tok = NULL;
    assert_int_equal(atr_jwt_sign_rs256(&tok, keys[0], "unknown-kid", claims, NULL), ATR_OK);
    /* rewrite the header to HS256, keep the rest */
    static const char hs_hdr[] = "eyJhbGciOiJIUzI1NiIsImtpZCI6InVua25vd24ifQ";
    const char *dot = strchr(tok, '.');
    char *forged = atr_malloc(sizeof(hs_hdr) + strlen(dot));
    memcpy(forged, hs_hdr, sizeof(hs_hdr) - 1);
    strcpy(forged + sizeof(hs_hdr) - 1, dot);
    struct atr_jwks_verify_opts o = vopts();
    struct atr_jwt_claims cl;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_cache_verify(&cl, c, forged, strlen(forged), &o, &err),
                     ATR_E_UNAUTHORIZED);
    assert_string_equal(err.msg, "JWT: alg \"HS256\" is not allowed (only RS256)");
    assert_int_equal(app_requests(), 3);
    /* the real token with an unknown kid: one fetch, then kid rejection */
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_cache_verify(&cl, c, tok, strlen(tok), &o, &err), ATR_E_UNAUTHORIZED);
    assert_string_equal(err.msg, "JWT: kid: no key has the token's kid");
    assert_int_equal(app_requests(), 4);
    atr_free(forged);
    atr_free(tok);
    json_decref(claims);

    atr_jwks_cache_free(c);
    atr_http_server_free(srv);
}

static void test_cache_rotation(void **state)
{
    (void)state;
    char url[128];
    struct atr_http_server *srv = server_start(url, sizeof(url));
    struct atr_jwks_cache *c = cache_new(url);
    struct atr_jwks_verify_opts o = vopts();
    struct atr_jwt_claims cl;

    char *t1 = token_for(0, "k1");
    char *t2 = token_for(1, "k2");
    char *t3 = token_for(2, "k3");
    assert_int_equal(atr_jwks_cache_verify(&cl, c, t1, strlen(t1), &o, NULL), ATR_OK);
    atr_jwt_claims_cleanup(&cl);
    assert_int_equal(app_requests(), 1);

    /* rotation: k1 retired, k2 and k3 published. A token with k3 picks it up. */
    app_set(6u, 200);
    atr_test_clock_advance(&tclock, MIN_REFRESH_MS);
    assert_int_equal(atr_jwks_cache_verify(&cl, c, t3, strlen(t3), &o, NULL), ATR_OK);
    assert_string_equal(cl.kid, "k3");
    atr_jwt_claims_cleanup(&cl);
    assert_int_equal(app_requests(), 2);
    assert_int_equal(atr_jwks_cache_verify(&cl, c, t2, strlen(t2), &o, NULL), ATR_OK);
    atr_jwt_claims_cleanup(&cl);
    /* k1 is gone from the new set */
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_cache_verify(&cl, c, t1, strlen(t1), &o, &err), ATR_E_UNAUTHORIZED);
    assert_string_equal(err.msg, "JWT: kid: no key has the token's kid");
    assert_int_equal(app_requests(), 2); /* rate-limited: no fetch */

    /* rotation without unknown kids: after max_age a known kid refreshes the set */
    app_set(4u, 200); /* only k3 */
    atr_test_clock_advance(&tclock, MAX_AGE_MS);
    expect_get(c, "k2", ATR_E_NOT_FOUND); /* stale set refetched: k2 is retired */
    assert_int_equal(app_requests(), 3);
    expect_get(c, "k2", ATR_E_NOT_FOUND);
    expect_get(c, "k3", ATR_OK);
    assert_int_equal(app_requests(), 3);

    atr_free(t1);
    atr_free(t2);
    atr_free(t3);
    atr_jwks_cache_free(c);
    atr_http_server_free(srv);
}

static void test_cache_server_down(void **state)
{
    (void)state;
    char url[128];
    struct atr_http_server *srv = server_start(url, sizeof(url));
    struct atr_jwks_cache *c = cache_new(url);
    struct atr_err err;
    app_set(3u, 200);
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_cache_refresh(c, &err), ATR_OK);
    assert_int_equal(app_requests(), 1);

    /* the server answers errors or garbage: refresh fails, the keys stay */
    app_set_raw("{\"error\":\"down\"}", 500);
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_cache_refresh(c, &err), ATR_E_UPSTREAM);
    assert_non_null(strstr(err.msg, "HTTP 500"));
    app_set_raw("<html>not json</html>", 200);
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_cache_refresh(c, &err), ATR_E_UPSTREAM);
    assert_non_null(strstr(err.msg, "invalid document"));
    app_set_raw("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"k1\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", 200);
    assert_int_equal(atr_jwks_cache_refresh(c, &err), ATR_E_UPSTREAM);
    expect_get(c, "k1", ATR_OK);
    expect_get(c, "k2", ATR_OK);
    assert_int_equal(app_requests(), 4);

    /* the server goes away */
    uint16_t port = atr_http_server_port(srv);
    atr_http_server_free(srv);
    atr_test_clock_advance(&tclock, MAX_AGE_MS); /* stale, and every interval passed */
    unsigned long before = atr_jwks_cache_fetches(c);
    expect_get(c, "k1", ATR_OK); /* refresh attempted and failed: still served */
    assert_int_equal(atr_jwks_cache_fetches(c), before + 1);
    expect_get(c, "k2", ATR_OK);
    /* unknown kid within the retry interval: no new attempt, 503-style answer */
    atr_err_clear(&err);
    struct atr_jwks *set = NULL;
    const struct atr_rsa_key *key = NULL;
    assert_int_equal(atr_jwks_cache_get(&set, &key, c, "k9", &err), ATR_E_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "could not be fetched"));
    assert_int_equal(atr_jwks_cache_fetches(c), before + 1);
    /* after the retry interval: one more attempt */
    atr_test_clock_advance(&tclock, RETRY_MS);
    expect_get(c, "k9", ATR_E_UNAVAILABLE);
    assert_int_equal(atr_jwks_cache_fetches(c), before + 2);
    expect_get(c, "k9", ATR_E_UNAVAILABLE);
    assert_int_equal(atr_jwks_cache_fetches(c), before + 2);
    /* a stale set with known kids retries only after the long interval */
    atr_test_clock_advance(&tclock, RETRY_MS);
    expect_get(c, "k1", ATR_OK);
    assert_int_equal(atr_jwks_cache_fetches(c), before + 2);

    /* tokens with known kids still verify; unknown kids are "unavailable" */
    struct atr_jwks_verify_opts o = vopts();
    struct atr_jwt_claims cl;
    char *t1 = token_for(0, "k1");
    assert_int_equal(atr_jwks_cache_verify(&cl, c, t1, strlen(t1), &o, NULL), ATR_OK);
    atr_jwt_claims_cleanup(&cl);
    char *t3 = token_for(2, "k3");
    assert_int_equal(atr_jwks_cache_verify(&cl, c, t3, strlen(t3), &o, NULL), ATR_E_UNAVAILABLE);
    atr_free(t1);
    atr_free(t3);

    /* back up on the same port: the next allowed attempt succeeds, the new key is served */
    app_set(4u, 200);
    char url2[128];
    srv = server_start_port(url2, sizeof(url2), port);
    assert_string_equal(url, url2);
    expect_get(c, "k3", ATR_E_UNAVAILABLE); /* still within the retry interval */
    atr_test_clock_advance(&tclock, RETRY_MS);
    expect_get(c, "k3", ATR_OK);
    expect_get(c, "k1", ATR_E_NOT_FOUND); /* the new set replaced the old one */
    atr_jwks_cache_free(c);
    atr_http_server_free(srv);
}

static void test_cache_first_fetch_fails(void **state)
{
    (void)state;
    char url[128];
    struct atr_http_server *srv = server_start(url, sizeof(url));
    atr_http_server_free(srv); /* nothing listens there any more */
    struct atr_jwks_cache *c = cache_new(url);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_jwks_cache_refresh(c, &err), ATR_E_NETWORK);
    assert_int_equal(strncmp(err.msg, "JWKS fetch", 10), 0);
    atr_test_clock_advance(&tclock, RETRY_MS);
    expect_get(c, "k1", ATR_E_UNAVAILABLE);
    assert_int_equal(atr_jwks_cache_fetches(c), 2);
    atr_jwks_cache_free(c);

    /* configuration errors */
    struct atr_jwks_cache_opts o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(atr_jwks_cache_new(&c, &o, NULL), ATR_E_CONFIG);
    o.jwks_uri = "http://127.0.0.1/jwks";
    assert_int_equal(atr_jwks_cache_new(&c, &o, NULL), ATR_E_CONFIG);
    o.jwks_uri = "https://127.0.0.1/jwks";
    o.retry_interval_ms = -1;
    assert_int_equal(atr_jwks_cache_new(&c, &o, NULL), ATR_E_CONFIG);
    o.retry_interval_ms = 0;
    o.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(atr_jwks_cache_new(&c, &o, NULL), ATR_E_CONFIG);
    assert_null(c);
    o.ca_file = NULL; /* defaults and the system store */
    assert_int_equal(atr_jwks_cache_new(&c, &o, NULL), ATR_OK);
    atr_jwks_cache_free(c);
    atr_jwks_cache_free(NULL);
}

struct getter {
    struct atr_jwks_cache *c;
    atr_status rc;
};

static void *getter_main(void *arg)
{
    struct getter *g = arg;
    struct atr_jwks *set = NULL;
    const struct atr_rsa_key *key = NULL;
    g->rc = atr_jwks_cache_get(&set, &key, g->c, "k2", NULL);
    atr_jwks_release(set);
    return NULL;
}

/* Many threads asking for the same new kid cause one fetch (single flight). */
static void test_cache_single_flight(void **state)
{
    (void)state;
    char url[128];
    struct atr_http_server *srv = server_start(url, sizeof(url));
    struct atr_jwks_cache *c = cache_new(url);
    expect_get(c, "k1", ATR_OK);
    app_set(3u, 200);
    pthread_mutex_lock(&app.lock);
    app.delay_ms = 300;
    pthread_mutex_unlock(&app.lock);
    atr_test_clock_advance(&tclock, MIN_REFRESH_MS);

    enum { N = 8 };
    pthread_t th[N];
    struct getter g[N];
    for (int i = 0; i < N; i++) {
        g[i].c = c;
        g[i].rc = ATR_E_INTERNAL;
        assert_int_equal(pthread_create(&th[i], NULL, getter_main, &g[i]), 0);
    }
    /* known kids are served while the fetch runs */
    expect_get(c, "k1", ATR_OK);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(g[i].rc, ATR_OK);
    }
    assert_int_equal(app_requests(), 2);
    atr_jwks_cache_free(c);
    atr_http_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_verify_options),
        cmocka_unit_test_setup(test_cache_unknown_kid_refetch, reset_app),
        cmocka_unit_test_setup(test_cache_rate_limit, reset_app),
        cmocka_unit_test_setup(test_cache_rotation, reset_app),
        cmocka_unit_test_setup(test_cache_server_down, reset_app),
        cmocka_unit_test_setup(test_cache_first_fetch_fails, reset_app),
        cmocka_unit_test_setup(test_cache_single_flight, reset_app),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

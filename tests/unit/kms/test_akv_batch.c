/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kms/akv batches over the network: four fake Key Vaults (each its own
 * directory, each an in-process HTTPS server on 127.0.0.1 with a test CA)
 * and a fake token endpoint on the first of them. The vaults answer like
 * Azure: a request without a valid token gets 401 with the bearer challenge,
 * wrapkey/unwrapkey give {"kid","value"}, versions come in two pages, "hot*"
 * keys are throttled (429, Retry-After: 7), "gone*" keys are missing (404),
 * "slow*" keys hold the request until the test releases them. Every handler
 * takes about 50 ms and records how many requests were in flight at once.
 *
 * Checked: a batch's operations run concurrently and give the right values;
 * each directory's token is fetched once (in a run, across runs of several
 * threads, after a refused token); 429 and Retry-After reach exactly the
 * throttled operations; the batch's deadline ends the run with
 * VAULT_UNREACHABLE instead of waiting; an unknown host fails without a
 * request; a batch's results equal the blocking calls' results.
 */
#include "lib/testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/log.h"
#include "base/secmem.h"
#include "crypto/x509.h"
#include "http/server.h"
#include "kms/akv.h"

#define NVAULTS       4
#define HANDLER_MS    50
#define SLOW_MAX_MS   5000
#define RESOURCE      "https://vault.azure.net"
#define DEFAULT_VER   "00000000000000000000000000000abc"
#define XOR_BYTE      0x5a
#define CLIENT_ID     "app-1"
#define CLIENT_SECRET "s3cret&="

/* What the fake servers saw (shared by all of them). */
struct fake {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned inflight;
    unsigned max_inflight;
    unsigned requests; /* every request to any route */
    unsigned token_calls[NVAULTS];
    unsigned bad_forms;
    unsigned gen;     /* tokens of older generations are refused */
    unsigned release; /* bumped to release "slow" handlers */
    unsigned slow_entered;
};

struct vault_srv {
    struct fake *f;
    int dir;
    char url[64]; /* "https://127.0.0.1:PORT" */
    struct atr_http_server *srv;
};

struct world {
    char dir[64];
    char ca_pem[128], ca_key[128], srv_pem[128], srv_key[128];
    struct fake f;
    struct vault_srv v[NVAULTS];
};

static struct world W;

/* ---- the fake servers ---- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void enter(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    f->requests++;
    if (++f->inflight > f->max_inflight)
        f->max_inflight = f->inflight;
    pthread_mutex_unlock(&f->lock);
}

static void leave(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    f->inflight--;
    pthread_mutex_unlock(&f->lock);
}

static atr_status vault_error(struct atr_http_resp *resp, unsigned status, const char *code,
                              const char *message)
{
    return atr_http_resp_json(
        resp, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message));
}

/* 1 if the request carries the current token of this vault's directory; else answers 401. */
static int authorized(struct atr_http_req *req, struct atr_http_resp *resp, struct vault_srv *v,
                      atr_status *rc)
{
    char want[64];
    pthread_mutex_lock(&v->f->lock);
    snprintf(want, sizeof(want), "Bearer tok-dir-%d-g%u", v->dir, v->f->gen);
    pthread_mutex_unlock(&v->f->lock);
    const char *h = atr_http_req_header(req, "Authorization");
    if (h != NULL && strcmp(h, want) == 0)
        return 1;
    char chal[256];
    snprintf(chal, sizeof(chal), "Bearer authorization=\"%s/dir-%d\", resource=\"%s\"", W.v[0].url,
             v->dir, RESOURCE);
    *rc = atr_http_resp_header(resp, "WWW-Authenticate", chal);
    if (*rc == ATR_OK)
        *rc = vault_error(resp, 401, "Unauthorized",
                          "AKV10000: Request is missing a Bearer or PoP token.");
    return 0;
}

/* Holds a "slow" request until the test releases it (at most SLOW_MAX_MS). */
static void stall(struct fake *f)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += SLOW_MAX_MS / 1000;
    pthread_mutex_lock(&f->lock);
    unsigned gen = f->release;
    f->slow_entered++;
    int rc = 0;
    while (f->release == gen && rc == 0)
        rc = pthread_cond_timedwait(&f->cond, &f->lock, &ts);
    pthread_mutex_unlock(&f->lock);
}

static atr_status key_op(struct atr_http_req *req, struct atr_http_resp *resp, struct vault_srv *v)
{
    atr_status rc = ATR_OK;
    if (!authorized(req, resp, v, &rc))
        return rc;
    const char *name = atr_http_req_param(req, "name");
    const char *version = atr_http_req_param(req, "version");
    if (strncmp(name, "hot", 3) == 0) {
        ATR_TRY(atr_http_resp_header(resp, "Retry-After", "7"));
        return vault_error(resp, 429, "Throttled",
                           "Request was not processed because too many requests were received.");
    }
    if (strncmp(name, "gone", 4) == 0)
        return vault_error(resp, 404, "KeyNotFound",
                           "A key with (name/id) gone was not found in this key vault.");
    if (strncmp(name, "slow", 4) == 0)
        stall(v->f);
    struct atr_span body = atr_http_req_body(req);
    json_t *j = json_loadb((const char *)body.ptr, body.len, 0, NULL);
    const char *value = json_string_value(json_object_get(j, "value"));
    const char *alg = json_string_value(json_object_get(j, "alg"));
    struct atr_buf in;
    atr_buf_init(&in, 4096);
    if (value == NULL || alg == NULL || strcmp(alg, "RSA-OAEP-256") != 0 ||
        atr_b64url_decode(&in, value, strlen(value), NULL) != ATR_OK) {
        json_decref(j);
        atr_buf_cleanup(&in);
        return vault_error(resp, 400, "BadParameter", "Decryption failed.");
    }
    json_decref(j);
    for (size_t i = 0; i < in.len; i++)
        in.ptr[i] ^= XOR_BYTE;
    char *out = NULL;
    rc = atr_b64url_encode_str(&out, atr_buf_span(&in));
    atr_buf_cleanup(&in);
    ATR_TRY(rc);
    char kid[256];
    snprintf(kid, sizeof(kid), "%s/keys/%s/%s", v->url, name,
             version != NULL && version[0] != '\0' ? version : DEFAULT_VER);
    rc = atr_http_resp_json(resp, 200, json_pack("{s:s,s:s}", "kid", kid, "value", out));
    atr_free(out);
    return rc;
}

static atr_status h_key_op(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct vault_srv *v = ctx;
    enter(v->f);
    sleep_ms(HANDLER_MS);
    atr_status rc = key_op(req, resp, v);
    leave(v->f);
    return rc;
}

static json_t *version_item(const struct vault_srv *v, const char *name, int i)
{
    char kid[256];
    snprintf(kid, sizeof(kid), "%s/keys/%s/%031x%d", v->url, name, 0, i);
    return json_pack("{s:s,s:{s:b,s:i,s:i,s:s}}", "kid", kid, "attributes", "enabled", 1, "created",
                     1000 + i, "updated", 1000 + i, "recoveryLevel", "Recoverable");
}

static atr_status versions(struct atr_http_req *req, struct atr_http_resp *resp,
                           struct vault_srv *v)
{
    atr_status rc = ATR_OK;
    if (!authorized(req, resp, v, &rc))
        return rc;
    const char *name = atr_http_req_param(req, "name");
    const char *skip = atr_http_req_query(req, "$skiptoken");
    if (skip == NULL) {
        char next[256];
        snprintf(next, sizeof(next), "%s/keys/%s/versions?api-version=7.4&$skiptoken=p2", v->url,
                 name);
        return atr_http_resp_json(resp, 200,
                                  json_pack("{s:[o,o],s:s}", "value", version_item(v, name, 1),
                                            version_item(v, name, 2), "nextLink", next));
    }
    return atr_http_resp_json(
        resp, 200, json_pack("{s:[o],s:n}", "value", version_item(v, name, 3), "nextLink"));
}

static atr_status h_versions(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct vault_srv *v = ctx;
    enter(v->f);
    sleep_ms(HANDLER_MS);
    atr_status rc = versions(req, resp, v);
    leave(v->f);
    return rc;
}

static atr_status h_token(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    struct vault_srv *v = ctx;
    struct fake *f = v->f;
    enter(f);
    sleep_ms(HANDLER_MS);
    const char *tenant = atr_http_req_param(req, "tenant");
    struct atr_span body = atr_http_req_body(req);
    char form[1024] = "";
    if (body.len < sizeof(form))
        memcpy(form, body.ptr, body.len);
    int d = -1;
    if (strncmp(tenant, "dir-", 4) == 0 && tenant[4] >= '0' && tenant[4] < '0' + NVAULTS &&
        tenant[5] == '\0')
        d = tenant[4] - '0';
    int form_ok = strstr(form, "grant_type=client_credentials") != NULL &&
                  strstr(form, "client_id=" CLIENT_ID) != NULL &&
                  strstr(form, "client_secret=s3cret%26%3D") != NULL &&
                  strstr(form, "scope=https%3A%2F%2Fvault.azure.net%2F.default") != NULL;
    pthread_mutex_lock(&f->lock);
    if (d >= 0)
        f->token_calls[d]++;
    f->bad_forms += !form_ok;
    unsigned gen = f->gen;
    pthread_mutex_unlock(&f->lock);
    atr_status rc;
    if (d < 0 || !form_ok) {
        rc = atr_http_resp_json(resp, 400,
                                json_pack("{s:s,s:s,s:[i]}", "error", "invalid_request",
                                          "error_description", "AADSTS90002: Tenant not found.",
                                          "error_codes", 90002));
    } else {
        char tok[64];
        snprintf(tok, sizeof(tok), "tok-%s-g%u", tenant, gen);
        rc = atr_http_resp_json(resp, 200,
                                json_pack("{s:s,s:i,s:i,s:s}", "token_type", "Bearer", "expires_in",
                                          3599, "ext_expires_in", 3599, "access_token", tok));
    }
    leave(f);
    return rc;
}

static const struct atr_route routes[] = {
    {"POST", "/keys/{name}/wrapkey", h_key_op, 0, 0, NULL},
    {"POST", "/keys/{name}/unwrapkey", h_key_op, 0, 0, NULL},
    {"GET", "/keys/{name}/versions", h_versions, 0, 0, NULL},
    {"POST", "/keys/{name}/{version?}/wrapkey", h_key_op, 0, 0, NULL},
    {"POST", "/keys/{name}/{version?}/unwrapkey", h_key_op, 0, 0, NULL},
    {"POST", "/{tenant}/oauth2/v2.0/token", h_token, 0, 0, NULL},
};

static void release_slow(void)
{
    pthread_mutex_lock(&W.f.lock);
    W.f.release++;
    pthread_cond_broadcast(&W.f.cond);
    pthread_mutex_unlock(&W.f.lock);
}

static int world_setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    atr_log_set_level(ATR_LOG_WARN); /* no access log lines */
    memset(&W, 0, sizeof(W));
    pthread_mutex_init(&W.f.lock, NULL);
    pthread_cond_init(&W.f.cond, NULL);
    snprintf(W.dir, sizeof(W.dir), "/tmp/atr-akv-batch-XXXXXX");
    if (mkdtemp(W.dir) == NULL)
        return -1;
    snprintf(W.ca_pem, sizeof(W.ca_pem), "%s/ca.pem", W.dir);
    snprintf(W.ca_key, sizeof(W.ca_key), "%s/ca.key", W.dir);
    snprintf(W.srv_pem, sizeof(W.srv_pem), "%s/server.pem", W.dir);
    snprintf(W.srv_key, sizeof(W.srv_key), "%s/server.key", W.dir);
    static const char *const hosts[] = {"127.0.0.1"};
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_x509_ca_create(W.ca_pem, W.ca_key, NULL, &err) != ATR_OK ||
        atr_x509_server_create(W.srv_pem, W.srv_key, W.ca_pem, W.ca_key, hosts, 1, NULL, &err) !=
            ATR_OK) {
        fprintf(stderr, "certificates: %s\n", atr_err_msg(&err));
        return -1;
    }
    for (int i = 0; i < NVAULTS; i++) {
        struct vault_srv *v = &W.v[i];
        v->f = &W.f;
        v->dir = i;
        struct atr_http_server_opts o;
        memset(&o, 0, sizeof(o));
        o.name = "fake-vault";
        o.cert_file = W.srv_pem;
        o.key_file = W.srv_key;
        o.threads = 8;
        o.shutdown_grace_ms = 2000;
        if (atr_http_server_new(&v->srv, &o, routes, ATR_ARRAY_LEN(routes), v, &err) != ATR_OK ||
            atr_http_server_start(v->srv, &err) != ATR_OK ||
            atr_http_server_url(v->url, sizeof(v->url), v->srv) != ATR_OK) {
            fprintf(stderr, "server %d: %s\n", i, atr_err_msg(&err));
            return -1;
        }
    }
    return 0;
}

static int world_teardown(void **state)
{
    (void)state;
    release_slow();
    for (int i = 0; i < NVAULTS; i++)
        atr_http_server_free(W.v[i].srv);
    unlink(W.ca_pem);
    unlink(W.ca_key);
    unlink(W.srv_pem);
    unlink(W.srv_key);
    rmdir(W.dir);
    pthread_cond_destroy(&W.f.cond);
    pthread_mutex_destroy(&W.f.lock);
    return 0;
}

/* Resets the counters before a test. */
static void fake_reset(void)
{
    pthread_mutex_lock(&W.f.lock);
    W.f.max_inflight = 0;
    W.f.requests = 0;
    memset(W.f.token_calls, 0, sizeof(W.f.token_calls));
    W.f.slow_entered = 0;
    pthread_mutex_unlock(&W.f.lock);
}

static struct fake snapshot(void)
{
    pthread_mutex_lock(&W.f.lock);
    struct fake s = W.f;
    pthread_mutex_unlock(&W.f.lock);
    return s;
}

/* ---- client-side helpers ---- */

static struct atr_akv_client *new_client(unsigned max_host_connections)
{
    static const char *const vault_hosts[] = {"127.0.0.1"};
    struct atr_akv_client_opts o;
    memset(&o, 0, sizeof(o));
    o.client_id = CLIENT_ID;
    o.client_secret = CLIENT_SECRET;
    o.authority = W.v[0].url;
    o.vault_hosts = vault_hosts;
    o.nvault_hosts = 1;
    o.ca_file = W.ca_pem;
    o.connect_timeout_ms = 2000;
    o.timeout_ms = 5000;
    o.max_host_connections = max_host_connections;
    struct atr_akv_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_akv_client_new(&c, &o, &err) != ATR_OK)
        fail_msg("client: %s", atr_err_msg(&err));
    return c;
}

/* The key URI of @p name in vault @p d, with @p version (NULL: none). */
static struct atr_akv_key_uri key_at(int d, const char *name, const char *version)
{
    char uri[256];
    snprintf(uri, sizeof(uri), "%s/keys/%s%s%s", W.v[d].url, name, version != NULL ? "/" : "",
             version != NULL ? version : "");
    struct atr_akv_key_uri k;
    assert_int_equal(atr_akv_uri_parse(&k, uri, NULL), ATR_OK);
    return k;
}

/* A recognisable input value of @p n bytes. */
static void value_of(uint8_t *out, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(seed * 31u + i * 7u + 1u);
}

static struct atr_akv_batch *new_batch(struct atr_akv_client *c)
{
    struct atr_akv_batch *b = NULL;
    assert_int_equal(atr_akv_batch_new(&b, c, NULL), ATR_OK);
    return b;
}

static size_t add_unwrap(struct atr_akv_batch *b, const struct atr_akv_key_uri *k, unsigned seed)
{
    uint8_t v[48];
    value_of(v, sizeof(v), seed);
    size_t idx = 0;
    assert_int_equal(
        atr_akv_batch_add_unwrap(b, &idx, k, ATR_AKV_ALG_DEFAULT, atr_span_of(v, sizeof(v)), NULL),
        ATR_OK);
    return idx;
}

/* The unwrapped value of a successful operation equals the fake's answer for @p seed. */
static void check_unwrapped(struct atr_akv_batch *b, size_t idx, unsigned seed)
{
    uint8_t want[48];
    value_of(want, sizeof(want), seed);
    for (size_t i = 0; i < sizeof(want); i++)
        want[i] ^= XOR_BYTE;
    struct atr_secret s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(atr_akv_batch_take_unwrapped(&s, b, idx), ATR_OK);
    assert_int_equal(atr_secret_len(&s), sizeof(want));
    assert_memory_equal(atr_secret_cdata(&s), want, sizeof(want));
    atr_secret_cleanup(&s);
    assert_int_equal(atr_akv_batch_take_unwrapped(&s, b, idx), ATR_E_INVALID);
}

static const struct atr_akv_result *ok_result(struct atr_akv_batch *b, size_t idx)
{
    const struct atr_akv_result *r = atr_akv_batch_result(b, idx);
    assert_non_null(r);
    if (r->status != ATR_OK)
        fail_msg("operation %zu failed: %s (%s)", idx, atr_akv_cause_name(r->fail.cause),
                 atr_err_msg(&r->err));
    assert_int_equal(r->fail.cause, ATR_AKV_OK);
    return r;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- tests ---- */

/* 32 unwraps across 4 directories run concurrently; one token per directory. */
static void test_concurrent_unwraps(void **state)
{
    (void)state;
    fake_reset();
    struct atr_akv_client *c = new_client(0);
    struct atr_akv_batch *b = new_batch(c);
    size_t idx[NVAULTS][8];
    char name[16];
    char version[40];
    for (int d = 0; d < NVAULTS; d++) {
        for (int k = 0; k < 8; k++) {
            snprintf(name, sizeof(name), "k%d", k);
            snprintf(version, sizeof(version), "%031x%d", d, k);
            struct atr_akv_key_uri key = key_at(d, name, k % 2 == 0 ? version : NULL);
            idx[d][k] = add_unwrap(b, &key, (unsigned)(d * 8 + k));
        }
    }
    assert_int_equal(atr_akv_batch_count(b), 32);
    assert_int_equal(atr_akv_batch_run(b, 8000, NULL), ATR_OK);
    assert_int_equal(atr_akv_batch_run(b, 8000, NULL), ATR_E_INVALID); /* a batch runs once */
    for (int d = 0; d < NVAULTS; d++) {
        for (int k = 0; k < 8; k++) {
            const struct atr_akv_result *r = ok_result(b, idx[d][k]);
            char want[256];
            snprintf(version, sizeof(version), "%031x%d", d, k);
            snprintf(want, sizeof(want), "%s/keys/k%d/%s", W.v[d].url, k,
                     k % 2 == 0 ? version : DEFAULT_VER);
            assert_string_equal(r->kid, want);
            assert_int_equal(r->op, ATR_AKV_OP_UNWRAP);
            check_unwrapped(b, idx[d][k], (unsigned)(d * 8 + k));
        }
    }
    struct fake s = snapshot();
    assert_true(s.max_inflight >= 2); /* the operations overlapped */
    for (int d = 0; d < NVAULTS; d++)
        assert_int_equal(s.token_calls[d], 1);
    assert_int_equal(s.bad_forms, 0);
    struct atr_akv_stats st;
    atr_akv_client_stats(&st, c);
    assert_int_equal(st.token_requests, 4);
    assert_int_equal(st.challenges, 4);          /* one vault at a time learns its challenge */
    assert_int_equal(st.vault_requests, 32 + 4); /* the 4 challenge requests */
    atr_akv_batch_free(b);

    /* connections are kept between runs: later calls to the same vault open none */
    struct atr_akv_key_uri key = key_at(1, "k1", NULL);
    uint8_t v[48];
    value_of(v, sizeof(v), 9);
    for (int i = 0; i < 3; i++) {
        struct atr_secret out;
        memset(&out, 0, sizeof(out));
        char kid[ATR_AKV_KID_MAX];
        struct atr_akv_error fail;
        assert_int_equal(atr_akv_unwrap(&out, kid, c, &key, ATR_AKV_ALG_DEFAULT,
                                        atr_span_of(v, sizeof(v)), &fail, NULL),
                         ATR_OK);
        atr_secret_cleanup(&out);
        if (i == 0)
            atr_akv_client_stats(&st, c);
    }
    struct atr_akv_stats st2;
    atr_akv_client_stats(&st2, c);
    assert_int_equal(st2.connections, st.connections);
    assert_int_equal(st2.token_requests, 4); /* the cached token */
    atr_akv_client_free(c);
}

/* 429 with Retry-After reaches exactly the throttled operations. */
static void test_throttled(void **state)
{
    (void)state;
    fake_reset();
    struct atr_akv_client *c = new_client(4);
    struct atr_akv_batch *b = new_batch(c);
    size_t idx[12];
    int hot[12];
    for (int i = 0; i < 12; i++) {
        char name[16];
        hot[i] = i % 3 == 1;
        snprintf(name, sizeof(name), "%s%d", hot[i] ? "hot" : "k", i);
        struct atr_akv_key_uri key = key_at(1, name, NULL);
        idx[i] = add_unwrap(b, &key, (unsigned)i);
    }
    assert_int_equal(atr_akv_batch_run(b, 8000, NULL), ATR_OK);
    for (int i = 0; i < 12; i++) {
        const struct atr_akv_result *r = atr_akv_batch_result(b, idx[i]);
        if (!hot[i]) {
            ok_result(b, idx[i]);
            assert_int_equal(r->fail.retry_after_s, 0);
            check_unwrapped(b, idx[i], (unsigned)i);
            continue;
        }
        assert_int_equal(r->status, ATR_E_THROTTLED);
        assert_int_equal(r->fail.cause, ATR_AKV_THROTTLED);
        assert_int_equal(r->fail.retry_after_s, 7);
        assert_int_equal(r->fail.http_status, 429);
        assert_string_equal(r->fail.code, "Throttled");
        assert_non_null(strstr(atr_err_msg(&r->err), "throttling"));
        assert_string_equal(r->kid, "");
        struct atr_secret s;
        memset(&s, 0, sizeof(s));
        assert_int_equal(atr_akv_batch_take_unwrapped(&s, b, idx[i]), ATR_E_INVALID);
    }
    assert_int_equal(snapshot().token_calls[1], 1);
    atr_akv_batch_free(b);
    atr_akv_client_free(c);
}

/* The deadline ends the run: requests in flight and operations waiting for a connection fail. */
static void test_deadline(void **state)
{
    (void)state;
    fake_reset();
    struct atr_akv_client *c = new_client(2);
    struct atr_akv_batch *b = new_batch(c);
    size_t slow[6], fast[4];
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "slow%d", i);
        struct atr_akv_key_uri key = key_at(3, name, NULL);
        slow[i] = add_unwrap(b, &key, (unsigned)i);
    }
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "k%d", i);
        struct atr_akv_key_uri key = key_at(2, name, NULL);
        fast[i] = add_unwrap(b, &key, (unsigned)(100 + i));
    }
    int64_t t0 = now_ms();
    assert_int_equal(atr_akv_batch_run(b, 1500, NULL), ATR_OK);
    int64_t took = now_ms() - t0;
    release_slow();
    /* the slow requests hold for SLOW_MAX_MS unless released: the run did not wait for them */
    assert_true(took < SLOW_MAX_MS - 1000);
    for (int i = 0; i < 4; i++) {
        ok_result(b, fast[i]);
        check_unwrapped(b, fast[i], (unsigned)(100 + i));
    }
    int in_flight = 0, waiting = 0;
    for (int i = 0; i < 6; i++) {
        const struct atr_akv_result *r = atr_akv_batch_result(b, slow[i]);
        assert_int_equal(r->status, ATR_E_NETWORK);
        assert_int_equal(r->fail.cause, ATR_AKV_VAULT_UNREACHABLE);
        const char *msg = atr_err_msg(&r->err);
        if (strstr(msg, "did not answer before the deadline") != NULL) {
            in_flight++;
            assert_string_equal(r->fail.host, W.v[3].url + 8);
        } else {
            assert_non_null(strstr(msg, "deadline passed before this operation finished"));
            waiting++;
        }
    }
    assert_int_equal(in_flight, 2); /* max_host_connections */
    assert_int_equal(waiting, 4);
    atr_akv_batch_free(b);

    /* a deadline already passed: nothing is sent, each says what it would have called */
    struct fake before = snapshot();
    b = new_batch(c);
    struct atr_akv_key_uri key = key_at(0, "k1", NULL);
    size_t u = add_unwrap(b, &key, 1);
    size_t l = 0, t = 0;
    assert_int_equal(atr_akv_batch_add_list_versions(b, &l, &key, NULL), ATR_OK);
    assert_int_equal(atr_akv_batch_add_token(b, &t, "dir-0", NULL), ATR_OK);
    assert_int_equal(atr_akv_batch_run(b, 0, NULL), ATR_OK);
    assert_int_equal(atr_akv_batch_result(b, u)->fail.cause, ATR_AKV_VAULT_UNREACHABLE);
    assert_int_equal(atr_akv_batch_result(b, l)->fail.cause, ATR_AKV_VAULT_UNREACHABLE);
    assert_int_equal(atr_akv_batch_result(b, t)->fail.cause, ATR_AKV_AUTHORITY_UNREACHABLE);
    assert_non_null(strstr(atr_err_msg(&atr_akv_batch_result(b, t)->err),
                           "deadline passed before this operation ran"));
    assert_int_equal(snapshot().requests, before.requests);
    atr_akv_batch_free(b);
    atr_akv_client_free(c);
}

/* A host that is not allowed fails at once, without any request. */
static void test_unknown_host(void **state)
{
    (void)state;
    fake_reset();
    struct atr_akv_client *c = new_client(0);
    struct atr_akv_batch *b = new_batch(c);
    struct atr_akv_key_uri evil, other_port;
    assert_int_equal(atr_akv_uri_parse(&evil, "https://vault.evil.example/keys/k1", NULL), ATR_OK);
    assert_int_equal(atr_akv_uri_parse(&other_port, "https://localhost:1/keys/k1", NULL), ATR_OK);
    size_t a = add_unwrap(b, &evil, 1);
    size_t d = add_unwrap(b, &other_port, 2);
    assert_int_equal(atr_akv_batch_run(b, 5000, NULL), ATR_OK);
    const size_t bad[] = {a, d};
    for (size_t i = 0; i < 2; i++) {
        const struct atr_akv_result *r = atr_akv_batch_result(b, bad[i]);
        assert_int_equal(r->status, ATR_E_INVALID);
        assert_int_equal(r->fail.cause, ATR_AKV_URI_INVALID);
        assert_int_equal(r->fail.http_status, 0);
        assert_non_null(strstr(atr_err_msg(&r->err), "is not one this service may call"));
    }
    struct atr_akv_stats st;
    atr_akv_client_stats(&st, c);
    assert_int_equal(st.vault_requests, 0);
    assert_int_equal(st.token_requests, 0);
    assert_int_equal(st.connections, 0);
    assert_int_equal(snapshot().requests, 0);
    atr_akv_batch_free(b);
    atr_akv_client_free(c);
}

struct thread_run {
    struct atr_akv_client *c;
    int vault;
    unsigned seed;
    int ok;
};

static void *run_thread(void *arg)
{
    struct thread_run *t = arg;
    struct atr_akv_batch *b = NULL;
    if (atr_akv_batch_new(&b, t->c, NULL) != ATR_OK)
        return NULL;
    uint8_t v[48];
    size_t n = 0;
    for (int i = 0; i < 6; i++) {
        char uri[256];
        snprintf(uri, sizeof(uri), "%s/keys/k%d", W.v[t->vault].url, i);
        struct atr_akv_key_uri k;
        value_of(v, sizeof(v), t->seed + (unsigned)i);
        if (atr_akv_uri_parse(&k, uri, NULL) == ATR_OK &&
            atr_akv_batch_add_unwrap(b, NULL, &k, ATR_AKV_ALG_DEFAULT, atr_span_of(v, sizeof(v)),
                                     NULL) == ATR_OK)
            n++;
    }
    if (n == 6 && atr_akv_batch_run(b, 8000, NULL) == ATR_OK) {
        t->ok = 1;
        for (size_t i = 0; i < n; i++)
            t->ok &= atr_akv_batch_result(b, i)->status == ATR_OK;
    }
    atr_akv_batch_free(b);
    return NULL;
}

/* Concurrent needs of one directory's token fetch it once: in a run, across threads, after a
 * refused token. */
static void test_token_single_flight(void **state)
{
    (void)state;
    fake_reset();
    struct atr_akv_client *c = new_client(0);

    /* eight probes of one directory in one batch: one request (probes never use the cache) */
    struct atr_akv_batch *b = new_batch(c);
    for (int i = 0; i < 8; i++)
        assert_int_equal(atr_akv_batch_add_token(b, NULL, "dir-1", NULL), ATR_OK);
    assert_int_equal(atr_akv_batch_run(b, 5000, NULL), ATR_OK);
    for (size_t i = 0; i < 8; i++)
        ok_result(b, i);
    atr_akv_batch_free(b);
    assert_int_equal(snapshot().token_calls[1], 1);

    /* two threads, each a batch for the same directory, on one client */
    struct thread_run t[2] = {{c, 2, 10, 0}, {c, 2, 20, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, run_thread, &t[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_true(t[0].ok && t[1].ok);
    assert_int_equal(snapshot().token_calls[2], 1);

    /* the vault stops accepting the cached token: all refused operations share one new token */
    pthread_mutex_lock(&W.f.lock);
    W.f.gen++;
    pthread_mutex_unlock(&W.f.lock);
    struct thread_run again = {c, 2, 30, 0};
    run_thread(&again);
    assert_true(again.ok);
    assert_int_equal(snapshot().token_calls[2], 2);
    atr_akv_client_free(c);
}

/* What a batch and the blocking calls report for the same operations. */
struct outcome {
    atr_status status;
    struct atr_akv_error fail;
    char msg[ATR_ERR_MSG_MAX];
    char kid[ATR_AKV_KID_MAX];
    uint8_t value[ATR_AKV_VALUE_MAX];
    size_t value_len;
    size_t nversions;
    char last_kid[ATR_AKV_KID_MAX];
    int truncated;
};

enum {
    CMP_UNWRAP,
    CMP_UNWRAP_V,
    CMP_WRAP,
    CMP_LIST,
    CMP_HOT,
    CMP_GONE,
    CMP_MISMATCH,
    CMP_EVIL,
    CMP_PROBE,
    CMP_N
};

static struct atr_akv_key_uri cmp_key(int i)
{
    struct atr_akv_key_uri k;
    switch (i) {
    case CMP_UNWRAP_V:
        return key_at(0, "k1", "0123456789abcdef0123456789abcdef");
    case CMP_HOT:
        return key_at(1, "hot1", NULL);
    case CMP_GONE:
        return key_at(2, "gone1", NULL);
    case CMP_MISMATCH:
        k = key_at(3, "k1", NULL);
        snprintf(k.directory, sizeof(k.directory), "dir-2");
        return k;
    case CMP_EVIL:
        assert_int_equal(atr_akv_uri_parse(&k, "https://127.0.0.2:1/keys/k1", NULL), ATR_OK);
        return k;
    default:
        return key_at(0, "k1", NULL);
    }
}

static void outcome_of(struct outcome *o, atr_status st, const struct atr_akv_error *fail,
                       const struct atr_err *err, const char *kid, struct atr_span value,
                       const struct atr_akv_versions *vs)
{
    memset(o, 0, sizeof(*o));
    o->status = st;
    o->fail = *fail;
    memset(o->fail.request_id, 0, sizeof(o->fail.request_id)); /* differs per request */
    if (st != ATR_OK)
        snprintf(o->msg, sizeof(o->msg), "%s", atr_err_msg(err));
    if (kid != NULL)
        snprintf(o->kid, sizeof(o->kid), "%s", kid);
    if (value.len > 0 && value.len <= sizeof(o->value)) {
        memcpy(o->value, value.ptr, value.len);
        o->value_len = value.len;
    }
    if (vs != NULL) {
        o->nversions = vs->n;
        o->truncated = vs->truncated;
        if (vs->n > 0)
            snprintf(o->last_kid, sizeof(o->last_kid), "%s", vs->items[vs->n - 1].kid);
    }
}

static void blocking_outcome(struct outcome *o, struct atr_akv_client *c, int i)
{
    struct atr_akv_key_uri k = cmp_key(i);
    uint8_t v[48];
    value_of(v, sizeof(v), (unsigned)i);
    struct atr_akv_error fail;
    struct atr_err err;
    atr_err_clear(&err);
    char kid[ATR_AKV_KID_MAX] = "";
    atr_status st;
    if (i == CMP_WRAP) {
        struct atr_buf out;
        atr_buf_init(&out, ATR_AKV_VALUE_MAX);
        st = atr_akv_wrap(&out, kid, c, &k, ATR_AKV_ALG_DEFAULT, atr_span_of(v, sizeof(v)), &fail,
                          &err);
        outcome_of(o, st, &fail, &err, kid, atr_buf_span(&out), NULL);
        atr_buf_cleanup(&out);
    } else if (i == CMP_LIST) {
        struct atr_akv_versions vs;
        st = atr_akv_list_versions(&vs, c, &k, &fail, &err);
        outcome_of(o, st, &fail, &err, NULL, atr_span_of(NULL, 0), &vs);
        atr_akv_versions_cleanup(&vs);
    } else if (i == CMP_PROBE) {
        st = atr_akv_token_probe(c, "dir-3", &fail, &err);
        outcome_of(o, st, &fail, &err, NULL, atr_span_of(NULL, 0), NULL);
    } else {
        struct atr_secret s;
        memset(&s, 0, sizeof(s));
        st = atr_akv_unwrap(&s, kid, c, &k, ATR_AKV_ALG_DEFAULT, atr_span_of(v, sizeof(v)), &fail,
                            &err);
        outcome_of(o, st, &fail, &err, kid,
                   st == ATR_OK ? atr_span_of(atr_secret_cdata(&s), atr_secret_len(&s))
                                : atr_span_of(NULL, 0),
                   NULL);
        atr_secret_cleanup(&s);
    }
}

static void assert_same(const struct outcome *a, const struct outcome *b, int i)
{
    if (a->status != b->status || a->fail.cause != b->fail.cause || strcmp(a->msg, b->msg) != 0)
        fail_msg("operation %d: blocking %s \"%s\", batch %s \"%s\"", i,
                 atr_akv_cause_name(a->fail.cause), a->msg, atr_akv_cause_name(b->fail.cause),
                 b->msg);
    assert_memory_equal(&a->fail, &b->fail, sizeof(a->fail));
    assert_string_equal(a->kid, b->kid);
    assert_int_equal(a->value_len, b->value_len);
    assert_memory_equal(a->value, b->value, a->value_len);
    assert_int_equal(a->nversions, b->nversions);
    assert_int_equal(a->truncated, b->truncated);
    assert_string_equal(a->last_kid, b->last_kid);
}

/* A batch gives each operation what the blocking call gives. */
static void test_same_as_blocking(void **state)
{
    (void)state;
    fake_reset();
    static struct outcome blocking[CMP_N], batch[CMP_N];
    /* blocking calls on a fresh client (each learns challenges and tokens as it goes) */
    struct atr_akv_client *c = new_client(0);
    for (int i = 0; i < CMP_N; i++)
        blocking_outcome(&blocking[i], c, i);
    atr_akv_client_free(c);

    c = new_client(0);
    struct atr_akv_batch *b = new_batch(c);
    size_t idx[CMP_N];
    for (int i = 0; i < CMP_N; i++) {
        struct atr_akv_key_uri k = cmp_key(i);
        uint8_t v[48];
        value_of(v, sizeof(v), (unsigned)i);
        struct atr_span sv = atr_span_of(v, sizeof(v));
        if (i == CMP_WRAP)
            assert_int_equal(atr_akv_batch_add_wrap(b, &idx[i], &k, ATR_AKV_ALG_DEFAULT, sv, NULL),
                             ATR_OK);
        else if (i == CMP_LIST)
            assert_int_equal(atr_akv_batch_add_list_versions(b, &idx[i], &k, NULL), ATR_OK);
        else if (i == CMP_PROBE)
            assert_int_equal(atr_akv_batch_add_token(b, &idx[i], "dir-3", NULL), ATR_OK);
        else
            assert_int_equal(
                atr_akv_batch_add_unwrap(b, &idx[i], &k, ATR_AKV_ALG_DEFAULT, sv, NULL), ATR_OK);
    }
    assert_int_equal(atr_akv_batch_run(b, 8000, NULL), ATR_OK);
    for (int i = 0; i < CMP_N; i++) {
        const struct atr_akv_result *r = atr_akv_batch_result(b, idx[i]);
        struct atr_secret s;
        memset(&s, 0, sizeof(s));
        struct atr_span value = atr_span_of(NULL, 0);
        if (i == CMP_WRAP && r->status == ATR_OK) {
            value = atr_buf_span(&r->wrapped);
        } else if (r->op == ATR_AKV_OP_UNWRAP && r->status == ATR_OK) {
            assert_int_equal(atr_akv_batch_take_unwrapped(&s, b, idx[i]), ATR_OK);
            value = atr_span_of(atr_secret_cdata(&s), atr_secret_len(&s));
        }
        outcome_of(&batch[i], r->status, &r->fail, &r->err,
                   r->op == ATR_AKV_OP_LIST || r->op == ATR_AKV_OP_TOKEN ? NULL : r->kid, value,
                   r->op == ATR_AKV_OP_LIST ? &r->versions : NULL);
        atr_secret_cleanup(&s);
        assert_same(&blocking[i], &batch[i], i);
    }
    /* and the outcomes are the expected ones */
    assert_int_equal(batch[CMP_UNWRAP].status, ATR_OK);
    assert_string_equal(batch[CMP_UNWRAP_V].kid + strlen(batch[CMP_UNWRAP_V].kid) - 32,
                        "0123456789abcdef0123456789abcdef");
    assert_int_equal(batch[CMP_WRAP].value_len, 48);
    assert_int_equal(batch[CMP_LIST].nversions, 3);
    assert_int_equal(batch[CMP_HOT].fail.cause, ATR_AKV_THROTTLED);
    assert_int_equal(batch[CMP_HOT].fail.retry_after_s, 7);
    assert_int_equal(batch[CMP_GONE].fail.cause, ATR_AKV_KEY_NOT_FOUND);
    assert_int_equal(batch[CMP_MISMATCH].fail.cause, ATR_AKV_DIRECTORY_MISMATCH);
    assert_int_equal(batch[CMP_EVIL].fail.cause, ATR_AKV_URI_INVALID);
    assert_int_equal(batch[CMP_PROBE].status, ATR_OK);
    atr_akv_batch_free(b);
    atr_akv_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_unwraps),
        cmocka_unit_test(test_throttled),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_unknown_host),
        cmocka_unit_test(test_token_single_flight),
        cmocka_unit_test(test_same_as_blocking),
    };
    return cmocka_run_group_tests(tests, world_setup, world_teardown);
}

/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_TESTS_HTTP_FIXTURE_H
#define ATR_TESTS_HTTP_FIXTURE_H

/*
 * Shared set-up of the HTTPS round-trip tests: a temporary directory with a
 * CA and a server certificate made by crypto/x509 at test time, a second,
 * unrelated CA (for verification failures), and small client helpers.
 * Header-only (static inline) so each test program stays one .c file.
 */

#include "lib/testutil.h" /* cmocka, in the order it needs */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "crypto/x509.h"
#include "http/client.h"
#include "http/json.h"
#include "http/server.h"

struct tls_fixture {
    char dir[256];
    char ca_pem[320];
    char ca_key[320];
    char srv_pem[320];
    char srv_key[320];
    char other_ca_pem[320];
    char other_ca_key[320];
    char wrong_host_pem[320];
    char wrong_host_key[320];
};

static inline void fixture_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

/* Makes the directory and all certificates; fails the test on error. */
static inline void tls_fixture_init(struct tls_fixture *f)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/atr-http-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    fixture_path(f->ca_pem, sizeof(f->ca_pem), f->dir, "ca.pem");
    fixture_path(f->ca_key, sizeof(f->ca_key), f->dir, "ca.key");
    fixture_path(f->srv_pem, sizeof(f->srv_pem), f->dir, "server.pem");
    fixture_path(f->srv_key, sizeof(f->srv_key), f->dir, "server.key");
    fixture_path(f->other_ca_pem, sizeof(f->other_ca_pem), f->dir, "other-ca.pem");
    fixture_path(f->other_ca_key, sizeof(f->other_ca_key), f->dir, "other-ca.key");
    fixture_path(f->wrong_host_pem, sizeof(f->wrong_host_pem), f->dir, "wrong-host.pem");
    fixture_path(f->wrong_host_key, sizeof(f->wrong_host_key), f->dir, "wrong-host.key");
    struct atr_err err;
    atr_err_clear(&err);
    static const char *const hosts[] = {"localhost", "127.0.0.1"};
    static const char *const other_hosts[] = {"example.test"};
    if (atr_x509_ca_create(f->ca_pem, f->ca_key, NULL, &err) != ATR_OK ||
        atr_x509_server_create(f->srv_pem, f->srv_key, f->ca_pem, f->ca_key, hosts, 2, NULL,
                               &err) != ATR_OK ||
        atr_x509_ca_create(f->other_ca_pem, f->other_ca_key, NULL, &err) != ATR_OK ||
        atr_x509_server_create(f->wrong_host_pem, f->wrong_host_key, f->ca_pem, f->ca_key,
                               other_hosts, 1, NULL, &err) != ATR_OK) {
        fprintf(stderr, "certificates: %s\n", atr_err_msg(&err));
        fail();
    }
}

static inline void tls_fixture_cleanup(struct tls_fixture *f)
{
    const char *files[] = {f->ca_pem,       f->ca_key,       f->srv_pem,        f->srv_key,
                           f->other_ca_pem, f->other_ca_key, f->wrong_host_pem, f->wrong_host_key};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(f->dir);
}

/* One call with the given client; returns the status of the call. */
static inline atr_status call(struct atr_http_client_resp *out, struct atr_http_client *c,
                              const char *method, const char *url,
                              const struct atr_http_header *headers, size_t nheaders,
                              const char *body, struct atr_err *err)
{
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.url = url;
    rq.headers = headers;
    rq.nheaders = nheaders;
    if (body != NULL)
        rq.body = atr_span_str(body);
    return atr_http_client_send(out, c, &rq, err);
}

/* The body of a response as a NUL-terminated string (borrowed). */
static inline const char *body_str(struct atr_http_client_resp *r)
{
    const char *s = atr_buf_cstr(&r->body);
    return s != NULL ? s : "";
}

/* ---- the test application: handlers and route table ---- */

struct app {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned stall_entered; /* stall handlers entered so far */
    unsigned release_gen;   /* bumped to release stalled handlers */
};

static inline void app_init(struct app *a)
{
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
}

static inline void app_cleanup(struct app *a)
{
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
}

/* Releases every stalled handler. */
static inline void app_release(struct app *a)
{
    pthread_mutex_lock(&a->lock);
    a->release_gen++;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

/* Waits (at most 3 s) until @p n stall handlers have been entered. */
static inline int app_wait_entered(struct app *a, unsigned n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 3;
    int ok = 1;
    pthread_mutex_lock(&a->lock);
    while (a->stall_entered < n && ok)
        ok = pthread_cond_timedwait(&a->cond, &a->lock, &ts) == 0;
    ok = a->stall_entered >= n;
    pthread_mutex_unlock(&a->lock);
    return ok;
}

static atr_status h_health(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)req;
    (void)ctx;
    return atr_http_resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static atr_status h_echo(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)ctx;
    json_t *body = NULL;
    ATR_TRY(atr_http_req_json(&body, req));
    const char *ct = atr_http_req_header(req, "Content-Type");
    return atr_http_resp_json(resp, 200,
                              json_pack("{s:o,s:s,s:s?}", "echo", body, "requestId",
                                        atr_http_req_id(req), "contentType", ct));
}

static atr_status h_item(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)ctx;
    if (strcmp(atr_http_req_method(req), "DELETE") == 0)
        return atr_http_resp_body(resp, 204, NULL, atr_span_of(NULL, 0));
    return atr_http_resp_json(
        resp, 200,
        json_pack("{s:s,s:s,s:s?,s:s,s:s,s:s}", "t", atr_http_req_param(req, "t"), "id",
                  atr_http_req_param(req, "id"), "limit", atr_http_req_query(req, "limit"), "ip",
                  atr_http_req_client_ip(req), "path", atr_http_req_path(req), "route",
                  atr_http_req_route(req)->pattern));
}

static atr_status h_small(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)ctx;
    return atr_http_resp_json(resp, 200,
                              json_pack("{s:I}", "len", (json_int_t)atr_http_req_body(req).len));
}

#define BIG_BODY_LEN 65536

static atr_status h_big(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)req;
    (void)ctx;
    char *b = atr_malloc(BIG_BODY_LEN);
    if (b == NULL)
        return ATR_E_NOMEM;
    memset(b, 'x', BIG_BODY_LEN);
    atr_status rc = atr_http_resp_body(resp, 200, "text/plain", atr_span_of(b, BIG_BODY_LEN));
    atr_free(b);
    return rc;
}

/* Holds the request until released, at most 1.5 s (handlers must be bounded). */
static atr_status h_stall(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)req;
    struct app *a = ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 500000000L;
    ts.tv_sec += 1 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&a->lock);
    unsigned gen = a->release_gen;
    a->stall_entered++;
    pthread_cond_broadcast(&a->cond);
    int rc = 0;
    while (a->release_gen == gen && rc == 0)
        rc = pthread_cond_timedwait(&a->cond, &a->lock, &ts);
    pthread_mutex_unlock(&a->lock);
    return atr_http_resp_json(resp, 200, json_pack("{s:b}", "released", rc == 0));
}

struct ndjson {
    int i;
    int n;
    int fail_at; /* -1: never */
};

static atr_status ndjson_next(size_t *out_len, int *out_eof, uint8_t *buf, size_t cap, void *ctx)
{
    struct ndjson *s = ctx;
    if (s->i == s->fail_at)
        return ATR_E_IO;
    if (s->i == s->n) {
        *out_len = 0;
        *out_eof = 1;
        return ATR_OK;
    }
    int n = snprintf((char *)buf, cap, "{\"i\":%d}\n", s->i);
    if (n < 0 || (size_t)n >= cap)
        return ATR_E_INTERNAL;
    s->i++;
    *out_len = (size_t)n;
    return ATR_OK;
}

static void ndjson_free(void *ctx)
{
    atr_free(ctx);
}

static atr_status h_stream(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)ctx;
    struct ndjson *s = atr_calloc(1, sizeof(*s));
    if (s == NULL)
        return ATR_E_NOMEM;
    s->n = 1000;
    s->fail_at = strcmp(atr_http_req_path(req), "/badstream") == 0 ? 3 : -1;
    return atr_http_resp_stream(resp, 200, "application/x-ndjson", ndjson_next, s, ndjson_free);
}

static atr_status h_secure(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)ctx;
    return atr_http_resp_json(
        resp, 200, json_pack("{s:s}", "principal", (const char *)atr_http_req_principal(req)));
}

static atr_status h_fail(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)resp;
    (void)ctx;
    return atr_err_set(atr_http_req_err(req), ATR_E_IO, "disk /var/lib/secret-path exploded");
}

static atr_status h_conflict(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)resp;
    (void)ctx;
    return atr_err_set(atr_http_req_err(req), ATR_E_CONFLICT, "the key already exists");
}

static atr_status h_throttle(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)req;
    (void)ctx;
    ATR_TRY(atr_http_resp_header(resp, "Retry-After", "3"));
    return atr_http_resp_error(resp, ATR_E_THROTTLED, "slow down",
                               json_pack("{s:{s:s}}", "innererror", "code", "TooManyRequests"));
}

static atr_status h_noresp(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)req;
    (void)resp;
    (void)ctx;
    return ATR_OK;
}

/* The auth hook: "Bearer good" is alice; anything else is 401 with a challenge. */
static atr_status test_auth(struct atr_http_req *req, struct atr_http_resp *resp,
                            const struct atr_route *route, void *auth_ctx)
{
    (void)auth_ctx;
    const char *h = atr_http_req_header(req, "Authorization");
    if (h == NULL || strcmp(h, "Bearer good") != 0 || route->role == NULL ||
        strcmp(route->role, "reader") != 0) {
        ATR_TRY(atr_http_resp_header(resp, "WWW-Authenticate", "Bearer realm=\"atrest\""));
        return atr_err_set(atr_http_req_err(req), ATR_E_UNAUTHORIZED, "a bearer token is required");
    }
    char *who = atr_strdup("alice");
    if (who == NULL)
        return ATR_E_NOMEM;
    atr_http_req_set_principal(req, who, atr_free);
    return ATR_OK;
}

static const struct atr_route test_routes[] = {
    {"GET", "/healthz", h_health, 0, 0, NULL},
    {"POST", "/echo", h_echo, 0, 0, NULL},
    {"GET", "/v1/tenants/{t}/items/{id}", h_item, 0, 0, NULL},
    {"DELETE", "/v1/tenants/{t}/items/{id}", h_item, 0, 0, NULL},
    {"POST", "/small", h_small, 0, 1024, NULL},
    {"GET", "/big", h_big, 0, 0, NULL},
    {"GET", "/stall", h_stall, 0, 0, NULL},
    {"GET", "/stream", h_stream, 0, 0, NULL},
    {"GET", "/badstream", h_stream, 0, 0, NULL},
    {"GET", "/secure", h_secure, ATR_ROUTE_AUTH, 0, "reader"},
    {"GET", "/fail", h_fail, 0, 0, NULL},
    {"PUT", "/conflict", h_conflict, 0, 0, NULL},
    {"GET", "/throttle", h_throttle, 0, 0, NULL},
    {"GET", "/noresp", h_noresp, 0, 0, NULL},
};

/* Starts a server with the test routes on an ephemeral loopback port. */
static inline struct atr_http_server *start_test_server(const struct tls_fixture *f, struct app *a,
                                                        unsigned grace_ms, char *url,
                                                        size_t url_cap)
{
    struct atr_http_server_opts o;
    memset(&o, 0, sizeof(o));
    o.name = "test";
    o.cert_file = f->srv_pem;
    o.key_file = f->srv_key;
    o.threads = 4;
    o.shutdown_grace_ms = grace_ms;
    o.auth = test_auth;
    struct atr_http_server *srv = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), a, &err) != ATR_OK ||
        atr_http_server_start(srv, &err) != ATR_OK) {
        fprintf(stderr, "server: %s\n", atr_err_msg(&err));
        fail();
    }
    assert_true(atr_http_server_port(srv) != 0);
    assert_int_equal(atr_http_server_url(url, url_cap, srv), ATR_OK);
    return srv;
}

/* A client trusting @p ca_file with the given total timeout and body cap. */
static inline struct atr_http_client *new_client(const char *ca_file, unsigned timeout_ms,
                                                 size_t max_response)
{
    struct atr_http_client_opts o;
    memset(&o, 0, sizeof(o));
    o.ca_file = ca_file;
    o.timeout_ms = timeout_ms;
    o.connect_timeout_ms = 2000;
    o.max_response = max_response;
    struct atr_http_client *c = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_http_client_new(&c, &o, &err) != ATR_OK) {
        fprintf(stderr, "client: %s\n", atr_err_msg(&err));
        fail();
    }
    return c;
}

#endif /* ATR_TESTS_HTTP_FIXTURE_H */

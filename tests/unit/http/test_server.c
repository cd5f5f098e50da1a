/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTPS server end to end on loopback, with certificates made at test
 * time and our own client: JSON responses, request ids, 404/405/413/400 in
 * the one error shape, path and query parameters, the auth hook, error
 * detail rules (4xx detail, 5xx public), streamed NDJSON, HEAD, the access
 * log (and what it must never contain), graceful stop with a request in
 * flight, restarts and several servers in one process, and set-up errors.
 */
#include "fixture.h"
#include "lib/testutil.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"

static struct tls_fixture F;
static struct app A;
static struct atr_http_server *S;
static struct atr_http_client *C;
static char URL[128];

static int group_setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    tls_fixture_init(&F);
    app_init(&A);
    S = start_test_server(&F, &A, 3000, URL, sizeof(URL));
    C = new_client(F.ca_pem, 10000, 1 << 20);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    atr_http_client_free(C);
    atr_http_server_free(S);
    app_cleanup(&A);
    tls_fixture_cleanup(&F);
    return 0;
}

static void url_of(char *out, size_t cap, const char *base, const char *path)
{
    int n = snprintf(out, cap, "%s%s", base, path);
    assert_true(n > 0 && (size_t)n < cap);
}

/* GET/POST @p path on the shared server with the shared client; status must be ATR_OK. */
static void do_call(struct atr_http_client_resp *r, const char *method, const char *path,
                    const struct atr_http_header *h, size_t nh, const char *body)
{
    char url[512];
    url_of(url, sizeof(url), URL, path);
    struct atr_err err;
    atr_err_clear(&err);
    if (call(r, C, method, url, h, nh, body, &err) != ATR_OK)
        fail_msg("%s %s: %s", method, path, err.msg);
}

static json_t *json_body(struct atr_http_client_resp *r)
{
    json_t *v = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    if (atr_json_parse(&v, atr_buf_span(&r->body), &err) != ATR_OK)
        fail_msg("response is not JSON: %s", err.msg);
    return v;
}

/* Checks the one error shape: {"error":{"code":code,"message":...}}. */
static void expect_error(struct atr_http_client_resp *r, unsigned status, const char *code,
                         const char *msg_fragment)
{
    assert_int_equal(r->status, status);
    assert_non_null(atr_http_client_resp_header(r, "Content-Type"));
    assert_non_null(strstr(atr_http_client_resp_header(r, "Content-Type"), "application/json"));
    json_t *v = json_body(r);
    json_t *e = json_object_get(v, "error");
    assert_true(json_is_object(e));
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    const char *msg = json_string_value(json_object_get(e, "message"));
    assert_non_null(msg);
    if (msg_fragment != NULL && strstr(msg, msg_fragment) == NULL)
        fail_msg("message '%s' lacks '%s'", msg, msg_fragment);
    json_decref(v);
}

static int is_hex32(const char *s)
{
    if (s == NULL || strlen(s) != 32)
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    }
    return 1;
}

static void test_healthz(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    do_call(&r, "GET", "/healthz", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(body_str(&r), "{\"status\":\"ok\"}");
    assert_string_equal(atr_http_client_resp_header(&r, "content-type"),
                        "application/json; charset=utf-8");
    assert_string_equal(atr_http_client_resp_header(&r, "Cache-Control"), "no-store");
    assert_string_equal(atr_http_client_resp_header(&r, "X-Content-Type-Options"), "nosniff");
    const char *rid = atr_http_client_resp_header(&r, "X-Request-Id");
    assert_true(is_hex32(rid));
    assert_string_equal(atr_http_client_resp_header(&r, "x-ms-request-id"), rid);
    atr_http_client_resp_cleanup(&r);
}

static void test_request_id(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    /* a well-formed X-Request-Id is taken and echoed in both headers and to the handler */
    struct atr_http_header h1[] = {{"X-Request-Id", "client-req.42:a_b"}};
    do_call(&r, "POST", "/echo", h1, 1, "{\"a\":1}");
    assert_int_equal(r.status, 200);
    assert_string_equal(atr_http_client_resp_header(&r, "X-Request-Id"), "client-req.42:a_b");
    assert_string_equal(atr_http_client_resp_header(&r, "x-ms-request-id"), "client-req.42:a_b");
    json_t *v = json_body(&r);
    assert_string_equal(json_string_value(json_object_get(v, "requestId")), "client-req.42:a_b");
    json_decref(v);
    atr_http_client_resp_cleanup(&r);

    /* x-ms-client-request-id (Azure SDKs) wins and is echoed back too */
    struct atr_http_header h2[] = {
        {"X-Request-Id", "other"},
        {"x-ms-client-request-id", "6f1c2d3e-0000-4000-8000-123456789abc"}};
    do_call(&r, "GET", "/healthz", h2, 2, NULL);
    assert_string_equal(atr_http_client_resp_header(&r, "x-ms-request-id"),
                        "6f1c2d3e-0000-4000-8000-123456789abc");
    assert_string_equal(atr_http_client_resp_header(&r, "x-ms-client-request-id"),
                        "6f1c2d3e-0000-4000-8000-123456789abc");
    atr_http_client_resp_cleanup(&r);

    /* malformed ids are replaced by a generated one */
    char long_id[ATR_HTTP_REQ_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    const char *bad[] = {"has space", "<script>", long_id, "a\"b", "x;y"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        struct atr_http_header h3[] = {{"X-Request-Id", bad[i]}};
        do_call(&r, "GET", "/healthz", h3, 1, NULL);
        assert_int_equal(r.status, 200);
        assert_true(is_hex32(atr_http_client_resp_header(&r, "X-Request-Id")));
        assert_null(atr_http_client_resp_header(&r, "x-ms-client-request-id"));
        atr_http_client_resp_cleanup(&r);
    }
    /* the longest accepted id */
    long_id[ATR_HTTP_REQ_ID_MAX] = '\0';
    struct atr_http_header h4[] = {{"X-Request-Id", long_id}};
    do_call(&r, "GET", "/healthz", h4, 1, NULL);
    assert_string_equal(atr_http_client_resp_header(&r, "X-Request-Id"), long_id);
    atr_http_client_resp_cleanup(&r);
}

static void test_not_found_and_method(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    do_call(&r, "GET", "/nope", NULL, 0, NULL);
    expect_error(&r, 404, "NotFound", NULL);
    assert_true(is_hex32(atr_http_client_resp_header(&r, "X-Request-Id")));
    atr_http_client_resp_cleanup(&r);

    do_call(&r, "GET", "/echo", NULL, 0, NULL);
    expect_error(&r, 405, "MethodNotAllowed", "GET");
    assert_string_equal(atr_http_client_resp_header(&r, "Allow"), "POST");
    atr_http_client_resp_cleanup(&r);

    /* the connection survives these answers (no request body was left unread) */
    do_call(&r, "GET", "/healthz", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.new_connections, 0);
    atr_http_client_resp_cleanup(&r);

    /* with a body left unread, libmicrohttpd closes the connection after the answer */
    do_call(&r, "POST", "/v1/tenants/a/items/b", NULL, 0, "{}");
    expect_error(&r, 405, "MethodNotAllowed", NULL);
    assert_string_equal(atr_http_client_resp_header(&r, "Allow"), "GET, HEAD, DELETE");
    atr_http_client_resp_cleanup(&r);
    do_call(&r, "GET", "/healthz", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
}

static char *filled(size_t n, char c)
{
    char *s = atr_malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_body_limit(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    /* at the route's limit (1024): fine */
    char *b = filled(1024, 'a');
    do_call(&r, "POST", "/small", NULL, 0, b);
    assert_int_equal(r.status, 200);
    assert_string_equal(body_str(&r), "{\"len\":1024}");
    atr_http_client_resp_cleanup(&r);
    atr_free(b);

    /* over it with Content-Length: 413 before the body is read */
    b = filled(4096, 'a');
    do_call(&r, "POST", "/small", NULL, 0, b);
    expect_error(&r, 413, "PayloadTooLarge", "1024");
    atr_http_client_resp_cleanup(&r);

    /* over it with a chunked body: read and dropped, then 413 */
    struct atr_http_header chunked[] = {{"Transfer-Encoding", "chunked"}};
    do_call(&r, "POST", "/small", chunked, 1, b);
    expect_error(&r, 413, "PayloadTooLarge", "1024");
    atr_http_client_resp_cleanup(&r);
    atr_free(b);

    /* the default limit is 1 MiB */
    b = filled(((size_t)1 << 20) + 1, ' ');
    b[0] = '{';
    b[(1 << 20) - 1] = '}';
    do_call(&r, "POST", "/echo", NULL, 0, b);
    expect_error(&r, 413, "PayloadTooLarge", "1048576");
    atr_http_client_resp_cleanup(&r);
    b[1 << 20] = '\0';
    do_call(&r, "POST", "/echo", NULL, 0, b);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
    atr_free(b);

    /* and the server still answers */
    do_call(&r, "GET", "/healthz", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
}

static void test_bad_json(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    do_call(&r, "POST", "/echo", NULL, 0, "{\"a\": tru");
    expect_error(&r, 400, "BadRequest", "line 1");
    atr_http_client_resp_cleanup(&r);
    do_call(&r, "POST", "/echo", NULL, 0, "[1,2]");
    expect_error(&r, 400, "BadParameter", "must be a JSON object");
    atr_http_client_resp_cleanup(&r);
    do_call(&r, "POST", "/echo", NULL, 0, "");
    expect_error(&r, 400, "BadRequest", "empty");
    atr_http_client_resp_cleanup(&r);
    /* a good one: the client sends JSON content type by default */
    do_call(&r, "POST", "/echo", NULL, 0, "{\"hello\":[\"world\"]}");
    assert_int_equal(r.status, 200);
    json_t *v = json_body(&r);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_object_get(v, "echo"), "hello"), 0)),
        "world");
    assert_string_equal(json_string_value(json_object_get(v, "contentType")), "application/json");
    json_decref(v);
    atr_http_client_resp_cleanup(&r);
}

static void test_params_and_query(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    do_call(&r, "GET", "/v1/tenants/a%20b/items/42?limit=10&x=%41", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    json_t *v = json_body(&r);
    assert_string_equal(json_string_value(json_object_get(v, "t")), "a b");
    assert_string_equal(json_string_value(json_object_get(v, "id")), "42");
    assert_string_equal(json_string_value(json_object_get(v, "limit")), "10");
    assert_string_equal(json_string_value(json_object_get(v, "ip")), "127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(v, "path")),
                        "/v1/tenants/a%20b/items/42");
    assert_string_equal(json_string_value(json_object_get(v, "route")),
                        "/v1/tenants/{t}/items/{id}");
    json_decref(v);
    atr_http_client_resp_cleanup(&r);

    do_call(&r, "GET", "/v1/tenants/a%00b/items/42", NULL, 0, NULL);
    expect_error(&r, 400, "BadParameter", "path");
    atr_http_client_resp_cleanup(&r);
    /* (curl removes literal dot segments itself, so send them encoded) */
    do_call(&r, "GET", "/v1/tenants/%2E%2E/items/1", NULL, 0, NULL);
    expect_error(&r, 400, "BadParameter", NULL);
    atr_http_client_resp_cleanup(&r);
    do_call(&r, "GET", "/v1/tenants/a/items/42?limit=%zz", NULL, 0, NULL);
    expect_error(&r, 400, "BadParameter", "query");
    atr_http_client_resp_cleanup(&r);
    /* DELETE with no body: 204 */
    do_call(&r, "DELETE", "/v1/tenants/a/items/42", NULL, 0, NULL);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body.len, 0);
    atr_http_client_resp_cleanup(&r);
}

static void test_auth_hook(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    do_call(&r, "GET", "/secure", NULL, 0, NULL);
    expect_error(&r, 401, "Unauthorized", "bearer token is required");
    assert_string_equal(atr_http_client_resp_header(&r, "WWW-Authenticate"),
                        "Bearer realm=\"atrest\"");
    atr_http_client_resp_cleanup(&r);
    struct atr_http_header bad[] = {{"Authorization", "Bearer bad"}};
    do_call(&r, "GET", "/secure", bad, 1, NULL);
    expect_error(&r, 401, "Unauthorized", NULL);
    atr_http_client_resp_cleanup(&r);
    struct atr_http_header good[] = {{"Authorization", "Bearer good"}};
    do_call(&r, "GET", "/secure", good, 1, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(body_str(&r), "{\"principal\":\"alice\"}");
    atr_http_client_resp_cleanup(&r);
}

static void test_error_detail(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    /* 5xx: the public message only, never the internal detail */
    do_call(&r, "GET", "/fail", NULL, 0, NULL);
    expect_error(&r, 500, "InternalError", atr_status_str(ATR_E_IO));
    assert_null(strstr(body_str(&r), "secret-path"));
    atr_http_client_resp_cleanup(&r);
    /* 4xx: the handler's detail */
    do_call(&r, "PUT", "/conflict", NULL, 0, "{}");
    expect_error(&r, 409, "Conflict", "the key already exists");
    atr_http_client_resp_cleanup(&r);
    /* an explicit error body with headers and extra fields; not a client failure */
    do_call(&r, "GET", "/throttle", NULL, 0, NULL);
    expect_error(&r, 429, "Throttled", "slow down");
    assert_string_equal(atr_http_client_resp_header(&r, "retry-after"), "3");
    json_t *v = json_body(&r);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(v, "error"), "innererror"), "code")),
                        "TooManyRequests");
    json_decref(v);
    atr_http_client_resp_cleanup(&r);
    /* a handler that answers nothing is a 500 */
    do_call(&r, "GET", "/noresp", NULL, 0, NULL);
    expect_error(&r, 500, "InternalError", NULL);
    atr_http_client_resp_cleanup(&r);
}

static void test_stream(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    do_call(&r, "GET", "/stream", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(atr_http_client_resp_header(&r, "Content-Type"), "application/x-ndjson");
    assert_string_equal(atr_http_client_resp_header(&r, "Transfer-Encoding"), "chunked");
    const char *s = body_str(&r);
    size_t lines = 0;
    for (const char *p = s; *p != '\0'; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1000);
    assert_non_null(strstr(s, "{\"i\":0}\n{\"i\":1}\n"));
    assert_non_null(strstr(s, "{\"i\":999}\n"));
    atr_http_client_resp_cleanup(&r);

    /* a stream that fails midway aborts the connection: the client sees a broken reply */
    char url[512];
    url_of(url, sizeof(url), URL, "/badstream");
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(call(&r, C, "GET", url, NULL, 0, NULL, &err), ATR_E_NETWORK);
    atr_http_client_resp_cleanup(&r);
    do_call(&r, "GET", "/healthz", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
}

static void test_head(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    do_call(&r, "HEAD", "/healthz", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    assert_true(is_hex32(atr_http_client_resp_header(&r, "X-Request-Id")));
    atr_http_client_resp_cleanup(&r);
}

static void test_access_log(void **state)
{
    (void)state;
    FILE *log = tmpfile();
    assert_non_null(log);
    atr_log_set_output(log);
    struct atr_http_client_resp r;
    struct atr_http_header h[] = {{"Authorization", "Bearer sekrit-token-value"},
                                  {"X-Request-Id", "log-test-1"}};
    do_call(&r, "POST", "/echo?sig=query-secret", h, 2, "{\"password\":\"hunter2\"}");
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
    /* the line is written when the request completes, just after the reply */
    char text[8192];
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        fflush(log);
        rewind(log);
        n = fread(text, 1, sizeof(text) - 1, log);
        text[n] = '\0';
        if (strstr(text, "\"req\":\"log-test-1\"") != NULL)
            break;
        usleep(10000);
    }
    atr_log_set_output(NULL);
    fclose(log);
    const char *line = strstr(text, "\"req\":\"log-test-1\"");
    if (line == NULL)
        fail_msg("no access log line in: %s", text);
    assert_non_null(strstr(text, "\"event\":\"http.access\""));
    assert_non_null(strstr(text, "\"method\":\"POST\""));
    assert_non_null(strstr(text, "\"path\":\"/echo\""));
    assert_non_null(strstr(text, "\"status\":200"));
    assert_non_null(strstr(text, "\"ip\":\"127.0.0.1\""));
    assert_non_null(strstr(text, "\"ms\":"));
    assert_non_null(strstr(text, "\"bytes\":"));
    assert_null(strstr(text, "sekrit"));
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "query-secret"));
}

struct stall_call {
    const char *url;
    const char *ca;
    atr_status rc;
    unsigned status;
};

static void *stall_thread(void *arg)
{
    struct stall_call *sc = arg;
    struct atr_http_client *c = new_client(sc->ca, 10000, 1 << 20);
    struct atr_http_client_resp r;
    sc->rc = call(&r, c, "GET", sc->url, NULL, 0, NULL, NULL);
    sc->status = r.status;
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);
    return NULL;
}

static void *stop_thread(void *arg)
{
    atr_http_server_stop(arg);
    return NULL;
}

static void test_graceful_stop(void **state)
{
    (void)state;
    struct app a;
    app_init(&a);
    char base[128];
    struct atr_http_server *srv = start_test_server(&F, &a, 3000, base, sizeof(base));
    struct atr_http_client *keep = new_client(F.ca_pem, 5000, 1 << 20);
    struct atr_http_client_resp r;
    char url[256];
    url_of(url, sizeof(url), base, "/healthz");
    assert_int_equal(call(&r, keep, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);

    /* a request in flight */
    char stall_url[256];
    url_of(stall_url, sizeof(stall_url), base, "/stall");
    struct stall_call sc = {stall_url, F.ca_pem, ATR_E_INTERNAL, 0};
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, stall_thread, &sc), 0);
    assert_true(app_wait_entered(&a, 1));
    /* the earlier request completes just after its reply reached the client */
    for (int i = 0; i < 200 && atr_http_server_inflight(srv) != 1; i++)
        usleep(5000);
    assert_int_equal(atr_http_server_inflight(srv), 1);

    /* stop: no new connections, keep-alive requests get 503, the running one finishes */
    assert_int_equal(pthread_create(&t2, NULL, stop_thread, srv), 0);
    int saw_503 = 0;
    for (int i = 0; i < 200 && !saw_503; i++) {
        atr_status rc = call(&r, keep, "GET", url, NULL, 0, NULL, NULL);
        if (rc == ATR_OK && r.status == 503) {
            saw_503 = 1;
            expect_error(&r, 503, "ServiceUnavailable", "unavailable");
            assert_string_equal(atr_http_client_resp_header(&r, "Connection"), "close");
        }
        atr_http_client_resp_cleanup(&r);
        if (!saw_503)
            usleep(10000);
    }
    assert_true(saw_503);
    struct atr_http_client *fresh = new_client(F.ca_pem, 2000, 1 << 20);
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(call(&r, fresh, "GET", url, NULL, 0, NULL, &err), ATR_E_NETWORK);
    atr_http_client_resp_cleanup(&r);

    app_release(&a);
    assert_int_equal(pthread_join(t1, NULL), 0);
    assert_int_equal(pthread_join(t2, NULL), 0);
    assert_int_equal(sc.rc, ATR_OK);
    assert_int_equal(sc.status, 200);
    assert_int_equal(atr_http_server_port(srv), 0);
    assert_int_equal(atr_http_server_inflight(srv), 0);

    /* the same server starts again (any free port), next to a second one */
    struct atr_err e2;
    atr_err_clear(&e2);
    assert_int_equal(atr_http_server_start(srv, &e2), ATR_OK);
    assert_int_equal(atr_http_server_start(srv, &e2), ATR_E_INVALID);
    char base2[128];
    struct atr_http_server *srv2 = start_test_server(&F, &a, 1000, base2, sizeof(base2));
    assert_int_equal(atr_http_server_url(base, sizeof(base), srv), ATR_OK);
    url_of(url, sizeof(url), base, "/healthz");
    assert_int_equal(call(&r, fresh, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
    url_of(url, sizeof(url), base2, "/healthz");
    assert_int_equal(call(&r, fresh, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
    atr_http_server_stop(srv);
    atr_http_server_stop(srv); /* idempotent */
    atr_http_server_free(srv2);
    atr_http_server_free(srv);
    atr_http_server_free(NULL);
    atr_http_client_free(fresh);
    atr_http_client_free(keep);
    app_cleanup(&a);
}

static void test_grace_bounded(void **state)
{
    (void)state;
    struct app a;
    app_init(&a);
    char base[128];
    struct atr_http_server *srv = start_test_server(&F, &a, 200, base, sizeof(base));
    char stall_url[256];
    url_of(stall_url, sizeof(stall_url), base, "/stall");
    struct stall_call sc = {stall_url, F.ca_pem, ATR_OK, 0};
    pthread_t t1;
    assert_int_equal(pthread_create(&t1, NULL, stall_thread, &sc), 0);
    assert_true(app_wait_entered(&a, 1));
    struct timespec t0, t9;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* the grace period (200 ms) passes; stop then waits only for the bounded handler */
    atr_http_server_stop(srv);
    clock_gettime(CLOCK_MONOTONIC, &t9);
    long ms = (t9.tv_sec - t0.tv_sec) * 1000 + (t9.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 150);
    assert_true(ms < 2500);
    assert_int_equal(pthread_join(t1, NULL), 0);
    assert_int_equal(atr_http_server_inflight(srv), 0);
    atr_http_server_free(srv);
    app_cleanup(&a);
}

static void test_new_errors(void **state)
{
    (void)state;
    struct atr_http_server_opts o;
    struct atr_http_server *srv = (struct atr_http_server *)0x1;
    struct atr_err err;
    memset(&o, 0, sizeof(o));
    o.cert_file = F.srv_pem;
    o.key_file = F.srv_key;
    o.auth = test_auth;

    /* missing files, mismatched pair, no TLS */
    o.cert_file = "/nonexistent/server.pem";
    atr_err_clear(&err);
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), NULL, &err),
        ATR_E_CONFIG);
    assert_null(srv);
    assert_non_null(strstr(err.msg, "/nonexistent/server.pem"));
    o.cert_file = F.srv_pem;
    o.key_file = F.other_ca_key;
    atr_err_clear(&err);
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), NULL, &err),
        ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "does not match"));
    o.key_file = F.srv_pem; /* a certificate is not a key */
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), NULL, NULL),
        ATR_E_CONFIG);
    o.key_file = NULL;
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), NULL, NULL),
        ATR_E_CONFIG);
    o.key_file = F.srv_key;

    /* routes needing auth without an auth hook */
    o.auth = NULL;
    atr_err_clear(&err);
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), NULL, &err),
        ATR_E_CONFIG);
    assert_non_null(strstr(err.msg, "auth"));
    o.auth = test_auth;
    /* a bad table */
    static const struct atr_route bad[] = {{"GET", "nope", h_health, 0, 0, NULL}};
    assert_int_equal(atr_http_server_new(&srv, &o, bad, 1, NULL, NULL), ATR_E_CONFIG);

    /* the port of a running server is taken */
    o.port = atr_http_server_port(S);
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), NULL, NULL), ATR_OK);
    atr_err_clear(&err);
    assert_int_equal(atr_http_server_start(srv, &err), ATR_E_IO);
    assert_int_equal(atr_http_server_port(srv), 0);
    char url[64];
    assert_int_equal(atr_http_server_url(url, sizeof(url), srv), ATR_E_INVALID);
    atr_http_server_free(srv);
    /* an address that does not resolve */
    o.port = 0;
    o.listen_addr = "no-such-host.invalid";
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), NULL, NULL), ATR_OK);
    assert_int_equal(atr_http_server_start(srv, NULL), ATR_E_IO);
    atr_http_server_free(srv);
}

static void test_ipv6(void **state)
{
    (void)state;
    struct atr_http_server_opts o;
    memset(&o, 0, sizeof(o));
    o.cert_file = F.srv_pem;
    o.key_file = F.srv_key;
    o.auth = test_auth;
    o.listen_addr = "::1";
    struct atr_http_server *srv = NULL;
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), &A, NULL), ATR_OK);
    if (atr_http_server_start(srv, NULL) != ATR_OK) {
        /* no IPv6 loopback on this machine */
        atr_http_server_free(srv);
        skip();
    }
    char url[128];
    assert_int_equal(atr_http_server_url(url, sizeof(url), srv), ATR_OK);
    assert_non_null(strstr(url, "https://[::1]:"));
    atr_http_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_params_and_query),
        cmocka_unit_test(test_auth_hook),
        cmocka_unit_test(test_error_detail),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_access_log),
        cmocka_unit_test(test_graceful_stop),
        cmocka_unit_test(test_grace_bounded),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_ipv6),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTPS client against our server on loopback: connection reuse, the
 * response size cap (known length and chunked), client-side timeouts
 * against a stalled handler, TLS verification failures (unknown CA, wrong
 * host, system store), connection refused, request validation, methods and
 * bodies, and response headers of interest.
 */
#include "fixture.h"
#include "lib/testutil.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static struct tls_fixture F;
static struct app A;
static struct atr_http_server *S;
static char URL[128];

static int group_setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    tls_fixture_init(&F);
    app_init(&A);
    S = start_test_server(&F, &A, 3000, URL, sizeof(URL));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    app_release(&A);
    atr_http_server_free(S);
    app_cleanup(&A);
    tls_fixture_cleanup(&F);
    return 0;
}

static void url_of(char *out, size_t cap, const char *path)
{
    int n = snprintf(out, cap, "%s%s", URL, path);
    assert_true(n > 0 && (size_t)n < cap);
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_connection_reuse(void **state)
{
    (void)state;
    struct atr_http_client *c = new_client(F.ca_pem, 5000, 1 << 20);
    char url[256];
    url_of(url, sizeof(url), "/healthz");
    struct atr_http_client_resp r;
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.new_connections, 1);
    atr_http_client_resp_cleanup(&r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.new_connections, 0); /* kept alive */
        atr_http_client_resp_cleanup(&r);
    }
    /* a POST on the same connection */
    url_of(url, sizeof(url), "/echo");
    assert_int_equal(call(&r, c, "POST", url, NULL, 0, "{\"k\":\"v\"}", NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.new_connections, 0);
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);
}

static void test_response_limit(void **state)
{
    (void)state;
    struct atr_http_client *c = new_client(F.ca_pem, 5000, 1024);
    char url[256];
    struct atr_http_client_resp r;
    struct atr_err err;
    /* Content-Length above the cap */
    url_of(url, sizeof(url), "/big");
    atr_err_clear(&err);
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, &err), ATR_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "1024"));
    assert_int_equal(r.body.len, 0);
    assert_int_equal(r.status, 0);
    atr_http_client_resp_cleanup(&r);
    /* a chunked body passing the cap */
    url_of(url, sizeof(url), "/stream");
    atr_err_clear(&err);
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, &err), ATR_E_TOO_LARGE);
    assert_null(r.body.ptr);
    atr_http_client_resp_cleanup(&r);
    /* the client is still usable */
    url_of(url, sizeof(url), "/healthz");
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);
    /* a cap that fits */
    c = new_client(F.ca_pem, 5000, BIG_BODY_LEN);
    url_of(url, sizeof(url), "/big");
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.body.len, BIG_BODY_LEN);
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);
}

static void test_timeout(void **state)
{
    (void)state;
    struct atr_http_client *c = new_client(F.ca_pem, 300, 1 << 20);
    char url[256];
    url_of(url, sizeof(url), "/stall");
    struct atr_http_client_resp r;
    struct atr_err err;
    atr_err_clear(&err);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, &err), ATR_E_TIMEOUT);
    long ms = elapsed_ms(&t0);
    assert_true(ms >= 250);
    assert_true(ms < 2000);
    assert_non_null(strstr(err.msg, "300 ms"));
    assert_non_null(strstr(err.msg, "127.0.0.1"));
    assert_null(strstr(err.msg, "/stall")); /* no path in messages */
    atr_http_client_resp_cleanup(&r);
    app_release(&A);

    /* a per-request timeout overrides the client's */
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.url = url;
    rq.timeout_ms = 200;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(atr_http_client_send(&r, c, &rq, NULL), ATR_E_TIMEOUT);
    ms = elapsed_ms(&t0);
    assert_true(ms < 1000);
    atr_http_client_resp_cleanup(&r);
    app_release(&A);

    /* after a timeout the client works again (a new connection) */
    url_of(url, sizeof(url), "/healthz");
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);
}

static void test_tls_failures(void **state)
{
    (void)state;
    char url[256];
    url_of(url, sizeof(url), "/healthz");
    struct atr_http_client_resp r;
    struct atr_err err;

    /* a client that trusts a different CA */
    struct atr_http_client *c = new_client(F.other_ca_pem, 5000, 1 << 20);
    atr_err_clear(&err);
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, &err), ATR_E_TLS);
    assert_non_null(strstr(err.msg, "TLS"));
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);

    /* the system trust store does not know our local CA */
    c = new_client(NULL, 5000, 1 << 20);
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_E_TLS);
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);

    /* the right CA, but a certificate for another host */
    struct atr_http_server_opts o;
    memset(&o, 0, sizeof(o));
    o.cert_file = F.wrong_host_pem;
    o.key_file = F.wrong_host_key;
    o.auth = test_auth;
    struct atr_http_server *srv = NULL;
    assert_int_equal(
        atr_http_server_new(&srv, &o, test_routes, ATR_ARRAY_LEN(test_routes), &A, NULL), ATR_OK);
    assert_int_equal(atr_http_server_start(srv, NULL), ATR_OK);
    char base[128], url2[256];
    assert_int_equal(atr_http_server_url(base, sizeof(base), srv), ATR_OK);
    snprintf(url2, sizeof(url2), "%s/healthz", base);
    c = new_client(F.ca_pem, 5000, 1 << 20);
    atr_err_clear(&err);
    assert_int_equal(call(&r, c, "GET", url2, NULL, 0, NULL, &err), ATR_E_TLS);
    atr_http_client_resp_cleanup(&r);
    /* ... while the right host on the same client works */
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);
    atr_http_server_free(srv);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* a port nobody listens on: bind an ephemeral port and close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    unsigned port = ntohs(sa.sin_port);
    close(fd);
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/healthz", port);
    struct atr_http_client *c = new_client(F.ca_pem, 5000, 1 << 20);
    struct atr_http_client_resp r;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, &err), ATR_E_NETWORK);
    assert_non_null(strstr(err.msg, "127.0.0.1"));
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);
}

static void test_invalid_requests(void **state)
{
    (void)state;
    struct atr_http_client *c = new_client(F.ca_pem, 5000, 1 << 20);
    struct atr_http_client_resp r;
    char url[256];
    url_of(url, sizeof(url), "/healthz");
    char http_url[256];
    snprintf(http_url, sizeof(http_url), "http%s", URL + 5);
    assert_int_equal(call(&r, c, "GET", http_url, NULL, 0, NULL, NULL), ATR_E_INVALID);
    atr_http_client_resp_cleanup(&r);
    assert_int_equal(call(&r, c, "GET", "not a url", NULL, 0, NULL, NULL), ATR_E_INVALID);
    atr_http_client_resp_cleanup(&r);
    assert_int_equal(call(&r, c, "GET", NULL, NULL, 0, NULL, NULL), ATR_E_INVALID);
    atr_http_client_resp_cleanup(&r);
    struct atr_http_header crlf[] = {{"X-Test", "a\r\nInjected: 1"}};
    assert_int_equal(call(&r, c, "GET", url, crlf, 1, NULL, NULL), ATR_E_INVALID);
    atr_http_client_resp_cleanup(&r);
    struct atr_http_header badname[] = {{"X Test", "a"}};
    assert_int_equal(call(&r, c, "GET", url, badname, 1, NULL, NULL), ATR_E_INVALID);
    atr_http_client_resp_cleanup(&r);
    assert_int_equal(call(&r, c, "GET /x", url, NULL, 0, NULL, NULL), ATR_E_INVALID);
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);

    /* an unreadable CA file is a configuration error */
    struct atr_http_client_opts o;
    memset(&o, 0, sizeof(o));
    o.ca_file = "/nonexistent/ca.pem";
    struct atr_http_client *bad = (struct atr_http_client *)0x1;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_http_client_new(&bad, &o, &err), ATR_E_CONFIG);
    assert_null(bad);
    atr_http_client_free(NULL);
    atr_http_client_resp_cleanup(NULL);
}

static void test_methods_and_headers(void **state)
{
    (void)state;
    struct atr_http_client *c = new_client(F.ca_pem, 5000, 1 << 20);
    struct atr_http_client_resp r;
    char url[256];
    /* PUT with a body (custom method) */
    url_of(url, sizeof(url), "/conflict");
    assert_int_equal(call(&r, c, "PUT", url, NULL, 0, "{}", NULL), ATR_OK);
    assert_int_equal(r.status, 409);
    atr_http_client_resp_cleanup(&r);
    /* DELETE without a body */
    url_of(url, sizeof(url), "/v1/tenants/t/items/1");
    assert_int_equal(call(&r, c, "DELETE", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 204);
    atr_http_client_resp_cleanup(&r);
    /* an HTTP error status is an answer, with the headers of interest */
    url_of(url, sizeof(url), "/throttle");
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 429);
    assert_string_equal(atr_http_client_resp_header(&r, "Retry-After"), "3");
    assert_string_equal(atr_http_client_resp_header(&r, "RETRY-AFTER"), "3");
    assert_non_null(atr_http_client_resp_header(&r, "x-ms-request-id"));
    assert_null(atr_http_client_resp_header(&r, "No-Such-Header"));
    atr_http_client_resp_cleanup(&r);
    url_of(url, sizeof(url), "/secure");
    assert_int_equal(call(&r, c, "GET", url, NULL, 0, NULL, NULL), ATR_OK);
    assert_int_equal(r.status, 401);
    assert_string_equal(atr_http_client_resp_header(&r, "WWW-Authenticate"),
                        "Bearer realm=\"atrest\"");
    atr_http_client_resp_cleanup(&r);
    /* a caller-chosen content type is kept; an empty header value is sent as empty */
    url_of(url, sizeof(url), "/echo");
    struct atr_http_header h[] = {{"Content-Type", "application/json; charset=utf-8"},
                                  {"X-Empty", ""}};
    assert_int_equal(call(&r, c, "POST", url, h, 2, "{}", NULL), ATR_OK);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(body_str(&r), "\"contentType\":\"application/json; charset=utf-8\""));
    atr_http_client_resp_cleanup(&r);
    atr_http_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connection_reuse),
        cmocka_unit_test(test_response_limit),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_tls_failures),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_methods_and_headers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

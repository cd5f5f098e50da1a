/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console page's files and their handler (service/console.h): the
 * embedded files (every file of console/, byte for byte), content types, and
 * over HTTPS on loopback the answers of GET /console (301), /console/,
 * /console/{file} and an unknown file (404 in the JSON error shape), each
 * with the Content-Security-Policy and the other security headers; the
 * service's route table serves the console without authentication.
 */
#include "lib/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "crypto/x509.h"
#include "http/client.h"
#include "http/json.h"
#include "http/server.h"
#include "service/console.h"
#include "service/service.h"

static char DIR_[64];
static char CA[128], CA_KEY[128], CERT[128], KEY[128];
static char URL[128];
static struct atr_http_server *S;
static struct atr_http_client *C;

static const struct atr_route routes[] = {
    {"GET", "/console", atr_console_handle, 0, 0, NULL},
    {"GET", "/console/{file?}", atr_console_handle, 0, 0, NULL},
};

static int setup(void **state)
{
    if (atr_test_setup_secmem(state) != 0)
        return -1;
    snprintf(DIR_, sizeof(DIR_), "/tmp/atr-console-test-XXXXXX");
    if (mkdtemp(DIR_) == NULL)
        return -1;
    snprintf(CA, sizeof(CA), "%s/ca.pem", DIR_);
    snprintf(CA_KEY, sizeof(CA_KEY), "%s/ca.key", DIR_);
    snprintf(CERT, sizeof(CERT), "%s/server.pem", DIR_);
    snprintf(KEY, sizeof(KEY), "%s/server.key", DIR_);
    static const char *const hosts[] = {"127.0.0.1"};
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_http_server_opts so;
    memset(&so, 0, sizeof(so));
    so.name = "console-test";
    so.cert_file = CERT;
    so.key_file = KEY;
    so.threads = 2;
    struct atr_http_client_opts co;
    memset(&co, 0, sizeof(co));
    co.ca_file = CA;
    co.timeout_ms = 10000;
    co.max_response = 1 << 20;
    if (atr_x509_ca_create(CA, CA_KEY, NULL, &err) != ATR_OK ||
        atr_x509_server_create(CERT, KEY, CA, CA_KEY, hosts, 1, NULL, &err) != ATR_OK ||
        atr_http_server_new(&S, &so, routes, ATR_ARRAY_LEN(routes), NULL, &err) != ATR_OK ||
        atr_http_server_start(S, &err) != ATR_OK ||
        atr_http_server_url(URL, sizeof(URL), S) != ATR_OK ||
        atr_http_client_new(&C, &co, &err) != ATR_OK) {
        fprintf(stderr, "set-up: %s\n", atr_err_msg(&err));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atr_http_client_free(C);
    atr_http_server_free(S);
    const char *files[] = {CA, CA_KEY, CERT, KEY};
    for (size_t i = 0; i < ATR_ARRAY_LEN(files); i++)
        unlink(files[i]);
    rmdir(DIR_);
    return 0;
}

static void get(struct atr_http_client_resp *r, const char *path)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", URL, path);
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.url = url;
    struct atr_err err;
    atr_err_clear(&err);
    atr_http_client_resp_init(r);
    if (atr_http_client_send(r, C, &rq, &err) != ATR_OK)
        fail_msg("GET %s: %s", path, atr_err_msg(&err));
}

static void expect_security_headers(struct atr_http_client_resp *r)
{
    const char *csp = atr_http_client_resp_header(r, "Content-Security-Policy");
    assert_non_null(csp);
    assert_string_equal(csp, ATR_CONSOLE_CSP);
    assert_non_null(strstr(csp, "default-src 'self'"));
    assert_non_null(strstr(csp, "frame-ancestors 'none'"));
    assert_string_equal(atr_http_client_resp_header(r, "Referrer-Policy"), "no-referrer");
    assert_string_equal(atr_http_client_resp_header(r, "X-Content-Type-Options"), "nosniff");
    assert_string_equal(atr_http_client_resp_header(r, "Cache-Control"), "no-store");
}

/* Every file of console/ is embedded unchanged, and nothing else. */
static void test_embedded_files(void **state)
{
    (void)state;
    static const char *const names[] = {"console.css", "console.js", "favicon.svg", "index.html"};
    size_t n = 0;
    const struct atr_console_file *files = atr_console_files(&n);
    assert_int_equal(n, ATR_ARRAY_LEN(names));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(files[i].name, names[i]); /* name order */
        char rel[64];
        snprintf(rel, sizeof(rel), "console/%s", names[i]);
        FILE *f = fopen(atr_test_source_path(rel), "rb");
        assert_non_null(f);
        struct atr_buf want;
        atr_buf_init(&want, 1 << 20);
        unsigned char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
            assert_int_equal(atr_buf_append(&want, chunk, got), ATR_OK);
        fclose(f);
        assert_int_equal(files[i].len, want.len);
        assert_memory_equal(files[i].data, want.ptr, want.len);
        assert_int_equal(files[i].data[files[i].len], 0); /* NUL after the bytes */
        assert_ptr_equal(atr_console_find(names[i]), &files[i]);
        atr_buf_cleanup(&want);
    }
    assert_null(atr_console_find("nope.js"));
    assert_null(atr_console_find(""));
    assert_null(atr_console_find(NULL));
    assert_null(atr_console_find("../index.html"));
}

static void test_content_types(void **state)
{
    (void)state;
    assert_string_equal(atr_console_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(atr_console_content_type("console.js"), "text/javascript; charset=utf-8");
    assert_string_equal(atr_console_content_type("console.css"), "text/css; charset=utf-8");
    assert_string_equal(atr_console_content_type("favicon.svg"), "image/svg+xml");
    assert_string_equal(atr_console_content_type("a.png"), "image/png");
    assert_string_equal(atr_console_content_type("README"), "application/octet-stream");
    assert_string_equal(atr_console_content_type("x.html.bak"), "application/octet-stream");
    assert_string_equal(atr_console_content_type(NULL), "application/octet-stream");
}

/* The page itself references only its own files: no inline script or style. */
static void test_index_has_no_inline_code(void **state)
{
    (void)state;
    const struct atr_console_file *f = atr_console_find("index.html");
    assert_non_null(f);
    const char *html = (const char *)f->data;
    assert_non_null(strstr(html, "<script src=\"console.js\""));
    assert_non_null(strstr(html, "href=\"console.css\""));
    assert_null(strstr(html, "<script>"));
    assert_null(strstr(html, "<style"));
    assert_null(strstr(html, " style="));
    assert_null(strstr(html, " onclick="));
    assert_null(strstr(html, " onload="));
}

static void test_http_index(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    get(&r, "/console/");
    assert_int_equal(r.status, 200);
    assert_string_equal(atr_http_client_resp_header(&r, "Content-Type"),
                        "text/html; charset=utf-8");
    expect_security_headers(&r);
    const struct atr_console_file *f = atr_console_find("index.html");
    assert_int_equal(r.body.len, f->len);
    assert_memory_equal(r.body.ptr, f->data, f->len);
    atr_http_client_resp_cleanup(&r);

    get(&r, "/console/index.html");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, f->len);
    atr_http_client_resp_cleanup(&r);
}

static void test_http_files(void **state)
{
    (void)state;
    size_t n = 0;
    const struct atr_console_file *files = atr_console_files(&n);
    for (size_t i = 0; i < n; i++) {
        char path[96];
        snprintf(path, sizeof(path), "/console/%s", files[i].name);
        struct atr_http_client_resp r;
        get(&r, path);
        assert_int_equal(r.status, 200);
        assert_string_equal(atr_http_client_resp_header(&r, "Content-Type"),
                            atr_console_content_type(files[i].name));
        expect_security_headers(&r);
        assert_int_equal(r.body.len, files[i].len);
        assert_memory_equal(r.body.ptr, files[i].data, files[i].len);
        atr_http_client_resp_cleanup(&r);
    }
}

static void test_http_redirect(void **state)
{
    (void)state;
    struct atr_http_client_resp r;
    get(&r, "/console");
    assert_int_equal(r.status, 301);
    assert_string_equal(atr_http_client_resp_header(&r, "Location"), "/console/");
    expect_security_headers(&r);
    atr_http_client_resp_cleanup(&r);
}

static void test_http_unknown_file(void **state)
{
    (void)state;
    static const char *const paths[] = {"/console/nope.js", "/console/INDEX.HTML",
                                        "/console/index.html%00.js"};
    for (size_t i = 0; i < ATR_ARRAY_LEN(paths); i++) {
        struct atr_http_client_resp r;
        get(&r, paths[i]);
        if (i < 2) {
            assert_int_equal(r.status, 404);
            assert_non_null(
                strstr(atr_http_client_resp_header(&r, "Content-Type"), "application/json"));
            json_t *v = NULL;
            assert_int_equal(atr_json_parse(&v, atr_buf_span(&r.body), NULL), ATR_OK);
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(v, "error"), "code")),
                "NotFound");
            json_decref(v);
        } else {
            assert_int_equal(r.status, 400); /* the router refuses a NUL */
        }
        atr_http_client_resp_cleanup(&r);
    }
    /* deeper paths are not console files either */
    struct atr_http_client_resp r;
    get(&r, "/console/a/b");
    assert_int_equal(r.status, 404);
    atr_http_client_resp_cleanup(&r);
}

/* The data service's table serves the console, without authentication. */
static void test_service_routes(void **state)
{
    (void)state;
    size_t n = 0;
    const struct atr_route *rt = atr_service_routes(&n);
    int plain = 0, files = 0;
    for (size_t i = 0; i < n; i++) {
        if (rt[i].handler != atr_console_handle)
            continue;
        assert_string_equal(rt[i].method, "GET");
        assert_int_equal(rt[i].flags & ATR_ROUTE_AUTH, 0);
        plain += strcmp(rt[i].pattern, "/console") == 0;
        files += strcmp(rt[i].pattern, "/console/{file?}") == 0;
    }
    assert_int_equal(plain, 1);
    assert_int_equal(files, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_files),
        cmocka_unit_test(test_content_types),
        cmocka_unit_test(test_index_has_no_inline_code),
        cmocka_unit_test(test_http_index),
        cmocka_unit_test(test_http_files),
        cmocka_unit_test(test_http_redirect),
        cmocka_unit_test(test_http_unknown_file),
        cmocka_unit_test(test_service_routes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

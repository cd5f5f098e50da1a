/* SPDX-License-Identifier: Apache-2.0 */
#include "cli/rest.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/buf.h"
#include "cli/commands.h"
#include "crypto/rand.h"

int atr_cli_read_small_file(char *out, size_t cap, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    return n > 0;
}

int atr_cli_secret_read(char *out, size_t cap, const char *file, const char *env)
{
    out[0] = '\0';
    if (file != NULL) {
        if (!atr_cli_read_small_file(out, cap, file)) {
            fprintf(stderr, "atrest: cannot read %s\n", file);
            return 0;
        }
        return 1;
    }
    const char *e = getenv(env);
    if (e == NULL || e[0] == '\0') {
        fprintf(stderr, "atrest: give --admin-secret-file or %s\n", env);
        return 0;
    }
    snprintf(out, cap, "%s", e);
    return 1;
}

int atr_cli_rest_call(struct atr_http_client_resp *resp, const struct atr_cli_rest *t,
                      const char *method, const char *path, const char *body, const char *ctype,
                      unsigned want)
{
    struct atr_err err;
    atr_err_clear(&err);
    struct atr_http_client_opts co;
    memset(&co, 0, sizeof(co));
    co.ca_file = t->ca;
    co.timeout_ms = 30000;
    co.max_response = ATR_CLI_RESPONSE_MAX;
    struct atr_http_client *c = NULL;
    char url[4096];
    char *auth = NULL;
    snprintf(url, sizeof(url), "%s%s", t->url, path);
    struct atr_http_header hdrs[3];
    size_t nh = 0;
    if (t->bearer != NULL) {
        size_t alen = strlen(t->bearer) + 8;
        if ((auth = atr_malloc(alen)) == NULL) {
            fprintf(stderr, "atrest: out of memory\n");
            return 0;
        }
        snprintf(auth, alen, "Bearer %s", t->bearer);
        hdrs[nh++] = (struct atr_http_header){"Authorization", auth};
    }
    if (body != NULL)
        hdrs[nh++] =
            (struct atr_http_header){"Content-Type", ctype != NULL ? ctype : "application/json"};
    if (t->extra_name != NULL)
        hdrs[nh++] = (struct atr_http_header){t->extra_name, t->extra_value};
    struct atr_http_client_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.url = url;
    rq.headers = hdrs;
    rq.nheaders = nh;
    if (body != NULL)
        rq.body = atr_span_str(body);
    int ok = atr_http_client_new(&c, &co, &err) == ATR_OK &&
             atr_http_client_send(resp, c, &rq, &err) == ATR_OK;
    atr_http_client_free(c);
    if (auth != NULL) {
        OPENSSL_cleanse(auth, strlen(auth));
        atr_free(auth);
    }
    if (!ok) {
        fprintf(stderr, "atrest: %s %s: %s\n", method, url, atr_err_msg(&err));
        return 0;
    }
    if (resp->status != want) {
        char what[512];
        snprintf(what, sizeof(what), "atrest: %s %s", method, path);
        atr_cli_http_error_print(what, resp);
        return 0;
    }
    return 1;
}

int atr_cli_rest_run(const struct atr_cli_rest *t, const char *method, const char *path,
                     json_t *body, unsigned want, int print)
{
    char *b = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct atr_http_client_resp r;
    atr_http_client_resp_init(&r);
    int ok = atr_cli_rest_call(&r, t, method, path, b, NULL, want);
    if (ok && print) {
        const char *text = atr_buf_cstr(&r.body);
        printf("%s\n", text != NULL ? text : "");
    }
    atr_http_client_resp_cleanup(&r);
    free(b);
    return ok ? ATR_EXIT_OK : ATR_EXIT_FAIL;
}

int atr_cli_secret_file_ensure(char *out, size_t cap, const char *path)
{
    if (atr_cli_read_small_file(out, cap, path))
        return 1;
    uint8_t raw[32];
    char *b64 = NULL;
    if (atr_rand_bytes(raw, sizeof(raw), NULL) != ATR_OK ||
        atr_b64url_encode_str(&b64, atr_span_of(raw, sizeof(raw))) != ATR_OK)
        return 0;
    OPENSSL_cleanse(raw, sizeof(raw));
    int ok = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        size_t len = strlen(b64);
        ok = write(fd, b64, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
        close(fd);
    }
    if (ok)
        snprintf(out, cap, "%s", b64);
    OPENSSL_cleanse(b64, strlen(b64));
    atr_free(b64);
    return ok;
}

/* Copies @p s into @p out as one line: control characters become spaces. */
static void one_line(char *out, size_t cap, const char *s, int first_line_only)
{
    size_t n = 0;
    if (s != NULL) {
        for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && n + 1 < cap; p++) {
            if (first_line_only && (*p == '\r' || *p == '\n'))
                break;
            out[n++] = *p < 0x20 || *p == 0x7f ? ' ' : (char)*p;
        }
    }
    out[n] = '\0';
    while (n > 0 && out[n - 1] == ' ')
        out[--n] = '\0';
}

void atr_cli_http_error_parse(struct atr_cli_http_error *e, const struct atr_http_client_resp *r)
{
    memset(e, 0, sizeof(*e));
    e->status = r->status;
    one_line(e->retry_after, sizeof(e->retry_after), atr_http_client_resp_header(r, "Retry-After"),
             1);
    json_t *j =
        r->body.len > 0 ? json_loadb((const char *)r->body.ptr, r->body.len, 0, NULL) : NULL;
    json_t *err = json_object_get(j, "error");
    if (json_is_object(err)) {
        one_line(e->code, sizeof(e->code), json_string_value(json_object_get(err, "code")), 1);
        one_line(e->message, sizeof(e->message), json_string_value(json_object_get(err, "message")),
                 0);
        one_line(e->fix, sizeof(e->fix), json_string_value(json_object_get(err, "fix")), 0);
        const char *inner =
            json_string_value(json_object_get(json_object_get(err, "innererror"), "code"));
        if (inner == NULL)
            inner = json_string_value(json_object_get(err, "reason"));
        if (inner == NULL)
            inner = json_string_value(json_object_get(err, "cause"));
        one_line(e->inner, sizeof(e->inner), inner, 1);
    } else if (json_is_string(err)) {
        /* OAuth: the first line of the description (Entra appends trace ids) */
        one_line(e->code, sizeof(e->code), json_string_value(err), 1);
        one_line(e->message, sizeof(e->message),
                 json_string_value(json_object_get(j, "error_description")), 1);
    } else if (r->body.len > 0) {
        char text[301];
        size_t n = r->body.len < sizeof(text) - 1 ? r->body.len : sizeof(text) - 1;
        memcpy(text, r->body.ptr, n);
        text[n] = '\0';
        one_line(e->message, sizeof(e->message), text, 0);
    }
    json_decref(j);
}

void atr_cli_http_error_print(const char *prefix, const struct atr_http_client_resp *r)
{
    struct atr_cli_http_error *e = atr_malloc(sizeof(*e));
    if (e == NULL) {
        fprintf(stderr, "%s: HTTP %u\n", prefix, r->status);
        return;
    }
    atr_cli_http_error_parse(e, r);
    fprintf(stderr, "%s: HTTP %u%s%s%s%s%s%s%s\n", prefix, e->status, e->code[0] ? " " : "",
            e->code, e->inner[0] ? " (" : "", e->inner, e->inner[0] ? ")" : "",
            e->message[0] ? ": " : "", e->message);
    if (e->fix[0] != '\0')
        fprintf(stderr, "  fix: %s\n", e->fix);
    if (e->retry_after[0] != '\0')
        fprintf(stderr, "  retry after: %s s\n", e->retry_after);
    atr_free(e);
}

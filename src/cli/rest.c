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
        const char *b = atr_buf_cstr(&resp->body);
        fprintf(stderr, "atrest: %s %s: HTTP %u: %s\n", method, path, resp->status,
                b != NULL ? b : "");
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

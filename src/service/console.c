/* SPDX-License-Identifier: Apache-2.0 */
#include "service/console.h"

#include <string.h>

const struct atr_console_file *atr_console_find(const char *name)
{
    if (name == NULL)
        return NULL;
    size_t n = 0;
    const struct atr_console_file *files = atr_console_files(&n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(files[i].name, name) == 0)
            return &files[i];
    }
    return NULL;
}

const char *atr_console_content_type(const char *name)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".json", "application/json"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
    };
    const char *dot = name != NULL ? strrchr(name, '.') : NULL;
    for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* The headers every console answer carries (the server adds no-store and nosniff). */
static atr_status page_headers(struct atr_http_resp *resp)
{
    ATR_TRY(atr_http_resp_header(resp, "Content-Security-Policy", ATR_CONSOLE_CSP));
    return atr_http_resp_header(resp, "Referrer-Policy", "no-referrer");
}

atr_status atr_console_handle(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)ctx;
    ATR_TRY(page_headers(resp));
    const char *file = atr_http_req_param(req, "file");
    if (file == NULL) {
        /* GET /console: relative links of the page need the trailing slash */
        static const char moved[] = "the console is at /console/\n";
        ATR_TRY(atr_http_resp_header(resp, "Location", "/console/"));
        return atr_http_resp_body(resp, 301, "text/plain; charset=utf-8",
                                  atr_span_of(moved, sizeof(moved) - 1));
    }
    const struct atr_console_file *f = atr_console_find(file[0] != '\0' ? file : "index.html");
    if (f == NULL)
        return atr_err_set(atr_http_req_err(req), ATR_E_NOT_FOUND,
                           "the console has no such file; open /console/");
    return atr_http_resp_body(resp, 200, atr_console_content_type(f->name),
                              atr_span_of(f->data, f->len));
}

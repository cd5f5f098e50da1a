/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_SERVICE_CONSOLE_H
#define ATR_SERVICE_CONSOLE_H

/*
 * The admin console page (docs/console.md): the static files of console/
 * (index.html, console.js, console.css, favicon.svg), embedded in the binary
 * at build time (cmake/EmbedFiles.cmake writes them as C arrays into a
 * generated console_files.c in the build tree) and served by the data
 * service under /console/:
 *
 *   GET /console            301 to /console/
 *   GET /console/           index.html
 *   GET /console/{file}     one embedded file; unknown names are 404 in the
 *                           service's JSON error shape
 *
 * No authentication: the files hold no data; the page calls the /v1 API with
 * the bearer token the admin signs in with. Every answer carries
 * Content-Security-Policy (CONSOLE_CSP: scripts and styles from the files
 * only, no framing) and Referrer-Policy: no-referrer; the HTTP server adds
 * Cache-Control: no-store and X-Content-Type-Options: nosniff to every
 * response.
 *
 * Thread-safety: everything here reads constant data; the handler is
 * reentrant.
 */

#include <stddef.h>

#include "base/error.h"
#include "http/server.h"

/* The Content-Security-Policy of every console answer. */
#define ATR_CONSOLE_CSP                                                                            \
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

/* One embedded file: its name under /console/, its bytes and their length. */
struct atr_console_file {
    const char *name;
    const unsigned char *data;
    size_t len;
};

/**
 * The embedded files, in name order (defined in the generated
 * console_files.c). @param[out] out_n their count.
 */
const struct atr_console_file *atr_console_files(size_t *out_n);

/** The embedded file named @p name ("index.html"), or NULL; static storage. */
const struct atr_console_file *atr_console_find(const char *name);

/**
 * The Content-Type for a file name, by its extension (".html", ".js",
 * ".css", ".svg", ".json", ".png", ".ico"); "application/octet-stream" for
 * others. Static storage.
 */
const char *atr_console_content_type(const char *name);

/**
 * The route handler of GET /console and GET /console/{file?} (route
 * parameter "file"; an empty or missing value means index.html). @p ctx is
 * not used.
 * @return ATR_E_NOT_FOUND (no such file), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_console_handle(struct atr_http_req *req, struct atr_http_resp *resp,
                                             void *ctx);

#endif /* ATR_SERVICE_CONSOLE_H */

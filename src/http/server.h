/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_HTTP_SERVER_H
#define ATR_HTTP_SERVER_H

/*
 * The HTTPS server of every atrest part (libmicrohttpd with TLS through
 * GnuTLS, an internal thread pool).
 *
 * A server owns its libmicrohttpd daemon, a copy of the TLS certificate and
 * (in secure memory) of the private key, and every request object. Routes
 * come from a `static const struct atr_route[]` table (http/router.h) that
 * the server borrows for its lifetime. For each request the server:
 *  1. takes or makes a request id (a well-formed incoming
 *     x-ms-client-request-id or X-Request-Id, else 128 random bits in hex)
 *     and echoes it as X-Request-Id and x-ms-request-id;
 *  2. matches the route: malformed path or query -> 400, unknown path -> 404,
 *     known path with another method -> 405 with Allow;
 *  3. rejects a declared Content-Length above the route's body limit with
 *     413 before reading the body, and stops buffering (413) when a chunked
 *     body passes it;
 *  4. runs the auth hook for routes flagged ATR_ROUTE_AUTH, before the body
 *     is read;
 *  5. calls the handler with the whole body, and sends its response (a
 *     buffer, or a streamed body for NDJSON) or the JSON error shape built
 *     from the status it returned;
 *  6. writes one access-log line (event "http.access": method, path without
 *     the query, status, bytes, duration, request id, client address), never
 *     headers or body.
 * Every response carries Cache-Control: no-store and
 * X-Content-Type-Options: nosniff.
 *
 * Error detail: for a 4xx status the message recorded in the request's
 * atr_err (atr_http_req_err) goes to the client; for 5xx only the fixed
 * public message does, and the detail is logged with the request id.
 *
 * Shutdown: atr_http_server_stop() stops accepting, answers further requests
 * on open keep-alive connections with 503, waits up to the grace period for
 * running requests, then closes everything. Handlers must be bounded (their
 * upstream calls carry timeouts); stop waits for a handler that outlives the
 * grace period. atr_http_signals_block()/atr_http_signals_wait() give the
 * SIGINT/SIGTERM wait of a server process.
 *
 * Thread-safety: new/start/stop/free run on one controlling thread. Handlers
 * and the auth hook run concurrently on pool threads, so the application
 * context must be thread-safe; a request object belongs to the one thread
 * running its handler. There is no global state: several servers may run in
 * one process and a process may start and stop servers many times.
 */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/error.h"
#include "http/router.h"

struct atr_clock;
struct atr_http_server;
struct atr_http_req;
struct atr_http_resp;

/* Longest request id accepted from a client and echoed back. */
#define ATR_HTTP_REQ_ID_MAX 64

/*
 * Authentication hook, run before the body is read for routes flagged
 * ATR_ROUTE_AUTH (later: bearer JWT validation). Return ATR_OK to admit the
 * request (optionally after atr_http_req_set_principal), or an error status
 * (ATR_E_UNAUTHORIZED, ATR_E_FORBIDDEN ...), after optionally adding headers
 * such as WWW-Authenticate or an error body to @p resp.
 */
typedef atr_status (*atr_http_auth_fn)(struct atr_http_req *req, struct atr_http_resp *resp,
                                       const struct atr_route *route, void *auth_ctx);

/*
 * Streamed response body (NDJSON). Called on the connection's thread after
 * the handler returned, until it reports end of stream: write up to @p cap
 * bytes into @p buf, set *out_len, and set *out_eof when nothing follows.
 * It should block until it has data; returning 0 bytes without eof makes the
 * server call again. An error status aborts the connection (the status line
 * was already sent).
 */
typedef atr_status (*atr_http_stream_fn)(size_t *out_len, int *out_eof, uint8_t *buf, size_t cap,
                                         void *ctx);
typedef void (*atr_http_stream_free_fn)(void *ctx);

/* Settings; zero fields mean the documented default. */
struct atr_http_server_opts {
    const char *name;           /* for logs, e.g. "vault"; default "http" */
    const char *listen_addr;    /* IPv4/IPv6 literal or host name; default "127.0.0.1" */
    uint16_t port;              /* 0 = ephemeral (see atr_http_server_port) */
    const char *cert_file;      /* PEM certificate (chain); required */
    const char *key_file;       /* PEM private key; required */
    unsigned threads;           /* worker threads; default 4 */
    unsigned max_connections;   /* default 512 */
    unsigned max_per_ip;        /* connections per client address; default unlimited */
    unsigned idle_timeout_s;    /* idle connection timeout; default 60 */
    unsigned shutdown_grace_ms; /* wait for running requests on stop; default 5000 */
    atr_http_auth_fn auth;      /* required if any route has ATR_ROUTE_AUTH */
    void *auth_ctx;
    const struct atr_clock *clock; /* request durations; NULL = real clock */
    /*
     * Connection admission (fault injection, allow lists): called for each
     * new TCP connection before TLS with the client's address as text;
     * return 0 to close it at once. NULL admits every connection.
     */
    int (*accept)(const char *client_ip, void *accept_ctx);
    void *accept_ctx;
    /*
     * Called once per completed request, after the access log line, with
     * the matched route (NULL when none matched), the method, the status
     * sent and the duration; for metrics. Runs on a pool thread.
     */
    void (*observe)(const struct atr_route *route, const char *method, unsigned status,
                    int64_t duration_ms, void *observe_ctx);
    void *observe_ctx;
};

/**
 * Creates a server (not yet listening): checks the route table, loads the
 * certificate and key and checks that they belong together.
 * @param routes   the route table, borrowed until atr_http_server_free().
 * @param app_ctx  handed to every handler; borrowed.
 * @param[out] out the server, owned by the caller (atr_http_server_free).
 * @return ATR_E_CONFIG (bad table, missing auth hook, bad option, unreadable
 *         or mismatched certificate/key), ATR_E_UNSUPPORTED (libmicrohttpd
 *         without TLS), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_http_server_new(struct atr_http_server **out,
                                              const struct atr_http_server_opts *opts,
                                              const struct atr_route *routes, size_t nroutes,
                                              void *app_ctx, struct atr_err *err);

/**
 * Starts listening and serving. A stopped server may be started again.
 * @return ATR_E_IO (cannot resolve or bind the address, e.g. port in use),
 *         ATR_E_CONFIG (TLS set-up refused), ATR_E_INVALID (already running).
 */
ATR_MUST_CHECK atr_status atr_http_server_start(struct atr_http_server *srv, struct atr_err *err);

/** The bound TCP port (the real one when opts.port was 0); 0 when not running. */
uint16_t atr_http_server_port(const struct atr_http_server *srv);

/**
 * Formats the base URL ("https://127.0.0.1:8443", IPv6 in brackets) into
 * @p out. @return ATR_E_INVALID when not running or @p cap is too small.
 */
ATR_MUST_CHECK atr_status atr_http_server_url(char *out, size_t cap,
                                              const struct atr_http_server *srv);

/** Graceful stop (see the module comment). Idempotent; NULL is allowed. */
void atr_http_server_stop(struct atr_http_server *srv);

/** Stops the server if running and frees it. NULL is allowed. */
void atr_http_server_free(struct atr_http_server *srv);

/** Number of requests in progress (for tests and metrics). */
unsigned atr_http_server_inflight(const struct atr_http_server *srv);

/**
 * Blocks SIGINT and SIGTERM in the calling thread. Call it in main() before
 * starting any thread (servers, clients, loggers): threads inherit the mask,
 * so the signals then reach only atr_http_signals_wait().
 * @return ATR_E_INTERNAL.
 */
ATR_MUST_CHECK atr_status atr_http_signals_block(struct atr_err *err);

/**
 * Waits until SIGINT or SIGTERM arrives (they must be blocked).
 * @param[out] out_signo the signal received.
 * @return ATR_E_INTERNAL.
 */
ATR_MUST_CHECK atr_status atr_http_signals_wait(int *out_signo, struct atr_err *err);

/* ---- requests (borrowed by handlers; valid until the handler returns,
 *      strings until the request completes) ---- */

/** The method ("GET"). */
const char *atr_http_req_method(const struct atr_http_req *req);
/** The raw path without the query ("/v1/tenants/a%20b/records"). */
const char *atr_http_req_path(const struct atr_http_req *req);
/** The decoded path parameter @p name of the matched route, or NULL. */
const char *atr_http_req_param(const struct atr_http_req *req, const char *name);
/** The first decoded value of query parameter @p name, or NULL. */
const char *atr_http_req_query(const struct atr_http_req *req, const char *name);
/** Request header @p name (case-insensitive), or NULL. */
const char *atr_http_req_header(const struct atr_http_req *req, const char *name);
/** The request body (empty span when none). */
struct atr_span atr_http_req_body(const struct atr_http_req *req);
/** The client's IP address as text ("127.0.0.1", "::1"). */
const char *atr_http_req_client_ip(const struct atr_http_req *req);
/** The request id echoed in X-Request-Id. */
const char *atr_http_req_id(const struct atr_http_req *req);
/** The matched route. */
const struct atr_route *atr_http_req_route(const struct atr_http_req *req);
/** The request's error detail, for handlers that return an error status. */
struct atr_err *atr_http_req_err(struct atr_http_req *req);

/**
 * Parses the body as a JSON object (http/json.h rules), recording the 400
 * detail in the request's error.
 * @param[out] out the object, owned by the caller (json_decref).
 * @return as atr_json_parse_object().
 */
ATR_MUST_CHECK atr_status atr_http_req_json(json_t **out, struct atr_http_req *req);

/**
 * Attaches the authenticated principal (set by the auth hook); @p free_fn
 * (may be NULL) releases it when the request completes.
 */
void atr_http_req_set_principal(struct atr_http_req *req, void *principal, void (*free_fn)(void *));
/** The principal set by the auth hook, or NULL; borrowed. */
void *atr_http_req_principal(const struct atr_http_req *req);

/* ---- responses ---- */

/**
 * Adds a response header. Names must be tokens, values must not contain
 * CR, LF or NUL. @return ATR_E_INVALID, ATR_E_TOO_LARGE (over 32 headers),
 * ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_http_resp_header(struct atr_http_resp *resp, const char *name,
                                               const char *value);

/**
 * Sets status and a body copied from @p body (replacing any earlier body).
 * @return ATR_E_INVALID (status outside 100..599), ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_http_resp_body(struct atr_http_resp *resp, unsigned status,
                                             const char *content_type, struct atr_span body);

/**
 * Sets status and a JSON body. Takes the reference of @p body (even on
 * failure); NULL (a failed json_pack) is ATR_E_NOMEM.
 * @return ATR_E_INVALID, ATR_E_NOMEM.
 */
ATR_MUST_CHECK atr_status atr_http_resp_json(struct atr_http_resp *resp, unsigned status,
                                             json_t *body);

/**
 * Sets the JSON error shape of @p st (status atr_status_http(st)) with
 * @p message (NULL: the fixed public message) and @p extra members of the
 * "error" object (stolen; may be NULL). See atr_json_error_new().
 * @return ATR_E_NOMEM, ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_http_resp_error(struct atr_http_resp *resp, atr_status st,
                                              const char *message, json_t *extra);

/**
 * Answers with a streamed body (chunked transfer): @p fn produces it after
 * the handler returns. @p free_fn (may be NULL) releases @p ctx when the
 * response is done, also when it is never sent.
 * @return ATR_E_INVALID.
 */
ATR_MUST_CHECK atr_status atr_http_resp_stream(struct atr_http_resp *resp, unsigned status,
                                               const char *content_type, atr_http_stream_fn fn,
                                               void *ctx, atr_http_stream_free_fn free_fn);

#endif /* ATR_HTTP_SERVER_H */
